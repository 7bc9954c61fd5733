"""Every size limit in one table: canvases, working sizes, exports.

No imports, so the plugin (Krita's Python, maybe without numpy) can read it too.
"""
MAX_CANVAS_SIDE = 16384                  # the widest page the worker or an exported graph accepts
MAX_CANVAS_PIXELS = MAX_CANVAS_SIDE ** 2
MAX_WORK_SIZE = 8192                     # network working size (long side); beyond it activations are many GB
ASK_ABOVE_PIXELS = 6000 * 6000           # the plugin asks before a run over this many pixels (a setting)
PEAK_BYTES_PER_PIXEL = 32                # about what colorizing takes per canvas pixel (bench/memory.py), for messages
