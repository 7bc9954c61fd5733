"""Torch-only code: network definitions, checkpoint loading, ONNX export.

Needed to convert checkpoints and to train; the engine imports it lazily, for
the torch backend only. It may import the engine (errors, metadata keys, the
ONNX runtimes for its parity checks); the engine never imports it at module level.
"""
