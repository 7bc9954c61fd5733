"""krita_alac: colorize line art from color hints, in Krita or on the command line.

Three rooms:
  plugin/   Krita and Qt only (the docker, layer I/O, the worker client)
  engine/   numpy, scipy, ONNX Runtime (flats, runtimes, registry, worker, CLI)
  convert/  torch only (networks, checkpoints, ONNX export)
Data flows one way: Krita layer -> bytes -> worker -> engine -> bytes -> Krita
layer.  Inside Krita this package also registers the Colorize docker and its
actions; elsewhere `import krita_alac` imports nothing heavy.
"""
__version__ = "0.1.0"


def colorize(document, line_layer, hint_layer=None, engine="auto", wait=True, **options):
    """Colorize `line_layer` of `document` in Krita; returns the result node.

    The same code path as the docker's Colorize button (Krita only)."""
    from .plugin.krita_api import colorize as _colorize
    return _colorize(document, line_layer, hint_layer, engine=engine, wait=wait, **options)


def extract_lines(document, layer, thickness=1.0, wait=True, **options):
    """Extract line art (XDoG) from `layer` of `document` into a new layer
    "Line art (XDoG)" directly above it; returns the new node.

    The same code path as the docker's Extract line art button (Krita only).
    Options: timeout (seconds), force (skip the size limit), client, method ("xdog", or
    "neural": an installed model's line generator, "Line art (Neural)"), model (its id)."""
    from .plugin.krita_api import extract_lines as _extract_lines
    return _extract_lines(document, layer, thickness=thickness, wait=wait, **options)


def _in_krita():
    try:
        import krita
    except ImportError:
        return False
    # A stray folder named "krita" on sys.path imports as an empty namespace package.
    return hasattr(krita, "Krita")


if _in_krita():
    from .plugin import extension  # noqa: E402

    extension.register()
