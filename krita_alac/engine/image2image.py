"""Run CycleGAN generators on RGBA pictures: hint-free colors and neural line art.

    auto_colors(rgba_lines, model)    line art -> opaque colors (sketch2color)
    neural_lines(rgba_picture, model) picture -> black lines on transparency (color2sketch)

`model` is an ONNX file from cyclegan_export.py (run by ONNX Runtime, GPU
first, CPU as the fallback) or a `latest_net_G_*.pth` checkpoint (run by
PyTorch).  The picture is scaled so its long side is `size`, padded (edge
pixels repeated) to a multiple of the generator's 2**n_down, run, cropped and
scaled back to the canvas size.  Transparent pixels count as white paper.

Images are H x W x 4 uint8 RGBA arrays (straight alpha), as in imaging.py.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import UserError
from .imaging import LUMA, Geometry, check_size, geometry, luminance, to_rgba
from .modelmeta import META_DIRECTION, META_MULTIPLE, check_backend
from .runtime import MODELS, OrtBacked, OrtSessions, TorchBacked


class OnnxImage2Image(OrtBacked):
    """One `image -> output` ONNX graph with GPU-first providers and CPU fallback."""
    backend = "onnxruntime"

    def __init__(self, path: str, device: str = "auto", warnings: list | None = None):
        if not os.path.isfile(path):
            raise UserError(f"model file not found: {path}")
        self.path = path
        self.warnings = warnings if warnings is not None else []
        self._ort = OrtSessions({"model": path}, device, self.warnings, os.path.basename(path))
        s = self._ort.sessions["model"]
        ins, outs = [i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]
        if ins != ["image"] or outs != ["output"]:
            raise UserError(f"{os.path.basename(path)} is not an image-to-image model: inputs {ins}, outputs {outs} "
                            "(expected image -> output)")
        meta = s.get_modelmeta().custom_metadata_map
        self.direction = meta.get(META_DIRECTION) or None
        try:
            self.multiple = int(meta.get(META_MULTIPLE, "32"))
        except ValueError:
            self.multiple = 32
        self.in_nc = _static(s.get_inputs()[0].shape, 1)
        self.out_nc = _static(s.get_outputs()[0].shape, 1)
        self._dtype = np.float16 if s.get_inputs()[0].type == "tensor(float16)" else np.float32
        self.label = os.path.basename(path)

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self._ort.run("model", {"image": x.astype(self._dtype, copy=False)})[0]
        return out.astype(np.float32, copy=False)


def _static(shape, axis):
    v = shape[axis] if len(shape) > axis else None
    return v if isinstance(v, int) else None


class TorchImage2Image(TorchBacked):
    """A cyclegan generator checkpoint run by PyTorch, with CPU fallback."""

    def __init__(self, path: str, device: str = "auto", warnings: list | None = None):
        try:
            import torch
        except ImportError:
            raise UserError("running a checkpoint needs PyTorch (pip install torch), or export it to ONNX")
        from ..convert.cyclegan import guess_direction, load_generator
        self.net = load_generator(path)
        self.in_nc, self.out_nc, self.multiple = self.net.in_nc, self.net.out_nc, self.net.multiple
        self.direction = guess_direction(self.net)
        self.label = os.path.basename(path)
        self._place(torch, self.net, device, warnings)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._call(self.net, x).float().cpu().numpy()


def load_image2image(path: str, backend: str = "auto", device: str = "auto", warnings: list | None = None):
    """An OnnxImage2Image or TorchImage2Image for `path`, kept in the process's model cache."""
    check_backend(backend)
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise UserError(f"model file not found: {path}")
    path = os.fspath(path)
    is_onnx = path.endswith(".onnx")
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "onnx" and not is_onnx:
        raise UserError(f"{os.path.basename(path)} is a PyTorch checkpoint: export it with "
                        "'python -m krita_alac.convert.cyclegan_export' or use the torch backend")
    if backend == "torch" and is_onnx:
        raise UserError(f"{os.path.basename(path)} is an ONNX model: the torch backend needs a checkpoint")
    st = os.stat(path)
    key = ("image2image", os.path.abspath(path), st.st_mtime_ns, st.st_size, backend, device)
    cls = OnnxImage2Image if backend == "onnx" else TorchImage2Image
    runner = MODELS.get(key, lambda: cls(path, device))
    if warnings is not None:
        warnings.extend(runner.warnings)
    runner.warnings.clear()
    return runner


# --- geometry and pixels ------------------------------------------------------

def check_image(rgba, what: str):
    if not isinstance(rgba, np.ndarray):
        raise UserError(f"the {what} must be an RGBA 8-bit image (H x W x 4 uint8 array), got {type(rgba).__name__}")
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8 or min(rgba.shape[:2]) < 1:
        raise UserError(f"the {what} must be an RGBA 8-bit image (H x W x 4 uint8 array), "
                        f"got a {rgba.dtype} array of shape {rgba.shape}")


def work_geometry(height: int, width: int, size: int, multiple: int) -> Geometry:
    """At least two multiples per side, so the bottleneck is wide enough for reflection padding."""
    return geometry(height, width, size, multiple=multiple, min_side=max(2 * multiple, 4), model=" for this model")


def _resize_planes(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """H x W x C float32 -> h x w x C (Lanczos)."""
    from PIL import Image
    if a.shape[:2] == (h, w):
        return a
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c]), "F")
                         .resize((w, h), Image.Resampling.LANCZOS), np.float32) for c in range(a.shape[2])]
    return np.clip(np.stack(planes, -1), 0.0, 1.0)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of the picture composited over white paper."""
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    a = rgba[..., 3:].astype(np.float32) / 255.0
    return rgb * a + (1.0 - a)


def _to_input(planes: np.ndarray, geo: Geometry, channels: int | None) -> np.ndarray:
    """h x w x C in [0, 1] -> 1 x channels x PH x PW in [-1, 1], edge padding."""
    c = planes.shape[2]
    if channels in (None, c):
        pass
    elif channels == 1 and c == 3:
        planes = planes @ LUMA[:, None]
    elif channels == 3 and c == 1:
        planes = np.repeat(planes, 3, axis=2)
    else:
        raise UserError(f"the model takes {channels}-channel images; only 1 (gray) or 3 (RGB) are supported")
    p = np.pad(planes, ((0, geo.ph - geo.h), (0, geo.pw - geo.w), (0, 0)), mode="edge")
    return np.ascontiguousarray((p * 2.0 - 1.0).transpose(2, 0, 1)[None], np.float32)


def _ink_to_rgba(out: np.ndarray, geo: Geometry) -> np.ndarray:
    """Generator output (1-channel gray or RGB, [-1, 1]) -> black lines on transparency."""
    from PIL import Image
    y = (out[0, :, :geo.h, :geo.w] + 1.0) * 0.5
    lum = y[0] if y.shape[0] == 1 else np.tensordot(LUMA, y[:3], 1)
    ink = np.clip(1.0 - lum, 0.0, 1.0).astype(np.float32)
    if not geo.identity:
        ink = np.asarray(Image.fromarray(ink, "F").resize((geo.width, geo.height), Image.Resampling.BICUBIC),
                         np.float32)
    rgba = np.zeros((geo.height, geo.width, 4), np.uint8)
    rgba[..., 3] = np.clip(ink * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgba


def _direction_error(runner, want: str):
    name = runner.label
    if runner.direction and runner.direction != want:
        use = "neural_lines (lines --method neural)" if runner.direction == "color2sketch" else "auto_colors"
        raise UserError(f"{name} is a {runner.direction} model, not {want}: use it with {use}")
    if want == "sketch2color" and runner.out_nc == 1:
        raise UserError(f"{name} gives 1-channel images: it draws lines rather than colors")
    if runner.direction is None:
        if want == "color2sketch" and (runner.in_nc, runner.out_nc) == (1, 3):
            raise UserError(f"{name} turns gray sketches into colors (1 -> 3 channels): it does not draw lines")
    if runner.in_nc not in (None, 1, 3) or runner.out_nc not in (None, 1, 3):
        raise UserError(f"{name} maps {runner.in_nc} to {runner.out_nc} channels; only 1 (gray) or 3 (RGB) "
                        "are supported")


# --- API ----------------------------------------------------------------------

def _runner_for(rgba, what, direction, model_path, size, backend, device, warnings):
    """The checked input's runner (going the wanted direction) and its working geometry."""
    check_image(rgba, what)
    check_size(size, 1)
    runner = load_image2image(model_path, backend, device, warnings)
    _direction_error(runner, direction)
    return runner, work_geometry(*rgba.shape[:2], size, runner.multiple)


def auto_colors(rgba_lines: np.ndarray, model_path: str, size: int = 512, backend: str = "auto",
                device: str = "auto", warnings: list | None = None) -> np.ndarray:
    """Colors for line art without hints: canvas-sized opaque RGBA uint8."""
    runner, geo = _runner_for(rgba_lines, "line art", "sketch2color", model_path, size, backend, device, warnings)
    gray = _resize_planes(luminance(rgba_lines)[..., None], geo.h, geo.w)
    out = runner.run(_to_input(gray, geo, runner.in_nc))
    return to_rgba(out[:, :3], geo)


def neural_lines(rgba_picture: np.ndarray, model_path: str, size: int = 512, backend: str = "auto",
                 device: str = "auto", warnings: list | None = None) -> np.ndarray:
    """Line art of a picture: canvas-sized RGBA uint8, black with the ink as alpha."""
    runner, geo = _runner_for(rgba_picture, "picture", "color2sketch", model_path, size, backend, device, warnings)
    rgb = _resize_planes(_over_white(rgba_picture), geo.h, geo.w)
    return _ink_to_rgba(runner.run(_to_input(rgb, geo, runner.in_nc)), geo)
