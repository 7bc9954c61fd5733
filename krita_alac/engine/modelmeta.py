"""What kind of model a file is, and the ONNX metadata keys that say so.

Both the exporters (krita_alac/convert/) and the runtimes (this room) import
this module; it imports neither, so neither imports the other to learn a key.
"""
from __future__ import annotations

import os

# Custom metadata written by the exporters and read back by the runtimes.
META_CACHE = "krita_alac.cache_outputs"      # AlacGAN: sketch-only tensors the graph can be cut at
META_KIND = "krita_alac.kind"                # generator family
META_MULTIPLE = "krita_alac.size_multiple"   # input H and W must be multiples of this
META_DIRECTION = "krita_alac.direction"      # image-to-image: "sketch2color" or "color2sketch"

CHECKPOINT_EXTS = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")
BACKENDS = ("auto", "onnx", "torch")

KIND_ALACGAN = "alacgan"        # sketch + hints -> colors
KIND_AUTO = "image2image"       # hint-free CycleGAN-style sketch -> colors (or colors -> lines)


def check_backend(backend: str):
    from .errors import UserError
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: use auto, onnx or torch")


def is_model_path(engine: str) -> bool:
    """An engine name that points at a file rather than naming an installed model."""
    return os.path.sep in engine or "/" in engine or engine.endswith((".onnx", *CHECKPOINT_EXTS))


_KINDS: dict = {}


def model_file_kind(path: str) -> str:
    """KIND_ALACGAN or KIND_AUTO for a model file (remembered per file version).

    An image-to-image graph has the single input "image"; a CycleGAN checkpoint
    is named latest_net_G*."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _KINDS:
        kind = KIND_ALACGAN
        if path.endswith(".onnx"):
            try:
                import onnx
                m = onnx.load(path, load_external_data=False)
                if [i.name for i in m.graph.input] == ["image"]:
                    kind = KIND_AUTO
            except Exception:
                pass  # the runtime reports unreadable models with a proper message
        elif os.path.basename(path).startswith("latest_net_G"):
            kind = KIND_AUTO
        _KINDS[key] = kind
    return _KINDS[key]
