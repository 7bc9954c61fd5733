"""Engines behind one small registry, shared by the command line and the worker.

`Engines.colorize(request)` resolves `request.engine` ("auto", "flats", an
installed model id, or a model file), keeps the loaded model and the sketch
features of the last line art, and returns a `ColorizeResult`.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from . import store
from .errors import UserError
from .flats import compute_flats
from .imaging import geometry, prepare_hints, prepare_sketch, to_rgba
from .modelmeta import KIND_ALACGAN, KIND_AUTO, check_backend, is_model_path, model_file_kind
from .runtime import MODELS
from .request import ENGINE_AUTO, ENGINE_FLATS, ColorizeRequest, ColorizeResult


@dataclass(frozen=True)
class ModelSpec:
    """A neural model resolved to files."""
    label: str
    onnx: str | None = None
    fp16: str | None = None
    netg: str | None = None
    i2v: str | None = None
    kind: str = KIND_ALACGAN
    snap: bool = False          # snap to flats unless asked otherwise (model.json "snap")

    @property
    def key(self):
        return (self.onnx, self.fp16, self.netg, self.i2v)


def resolve(engine: str, i2v: str | None = None) -> ModelSpec | None:
    """None means flats."""
    if engine == ENGINE_FLATS:
        return None
    if engine in ("", ENGINE_AUTO):
        m = store.default_model()
        return _from_installed(m) if m else None
    if is_model_path(engine):
        if not os.path.isfile(engine):
            raise UserError(f"model file not found: {engine}")
        name = os.path.basename(engine)
        if model_file_kind(engine) == KIND_AUTO:
            path = dict(onnx=engine) if engine.endswith(".onnx") else dict(netg=engine)
            return ModelSpec(label=f"Auto colors ({name})", kind=KIND_AUTO, **path)
        if engine.endswith(".onnx"):
            return ModelSpec(label=f"AlacGAN ({name})", onnx=engine)
        if i2v is None:
            sibling = os.path.join(os.path.dirname(os.path.abspath(engine)), "i2v.pth")
            i2v = sibling if os.path.isfile(sibling) else None
        return ModelSpec(label=f"AlacGAN ({name})", netg=engine, i2v=i2v)
    m = store.find_model(engine)
    if m is None:
        ids = ", ".join(x.id for x in store.installed_models()) or "none installed"
        raise UserError(f"unknown engine or model {engine!r}: use flats, an installed model ({ids}) or a model file")
    return _from_installed(m)


def _from_installed(m: store.InstalledModel) -> ModelSpec:
    if m.kind in (KIND_AUTO, "cyclegan"):
        return ModelSpec(label=f"Auto colors ({m.label})", onnx=m.onnx, netg=m.netg, kind=KIND_AUTO,
                         snap=m.meta.get("snap") is True)
    return ModelSpec(label=f"AlacGAN ({m.label})", onnx=m.onnx, fp16=m.fp16, netg=m.netg, i2v=m.i2v,
                     snap=m.meta.get("snap") is True)


def _onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def load_colorizer(spec: ModelSpec, backend: str = "auto", device: str = "auto", warnings=None):
    """An OnnxColorizer or TorchColorizer for `spec`."""
    check_backend(backend)
    if backend == "auto":
        backend = "onnx" if spec.onnx and (_onnxruntime_available() or not spec.netg) else "torch"
    if backend == "onnx":
        if not spec.onnx:
            raise UserError(f"{os.path.basename(spec.netg)} is a PyTorch checkpoint: convert it with "
                            "'krita-alac convert' or use --backend torch")
        from .runtime import OnnxColorizer, gpu_provider_available
        if spec.fp16 and gpu_provider_available(device):
            # fp16 only pays off on a GPU; keep fp32 when the GPU did not start.
            c = OnnxColorizer(spec.fp16, device, warnings)
            if c.device != "CPU":
                return c
        return OnnxColorizer(spec.onnx, device, warnings)
    if not spec.netg:
        raise UserError(f"{os.path.basename(spec.onnx)} is an ONNX model: the torch backend needs a checkpoint "
                        "(use --backend onnx)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("the torch backend needs PyTorch (pip install torch)")
    from ..convert.checkpoints import load_alacgan
    from .runtime import TorchColorizer
    return TorchColorizer(load_alacgan(spec.netg, spec.i2v), device, warnings)


def _digest(a: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8), digest_size=16).hexdigest()


class NeuralEngine:
    def __init__(self, spec: ModelSpec, backend: str, device: str):
        self.spec = spec
        self.warnings: list = []
        self.colorizer = load_colorizer(spec, backend, device, self.warnings)
        self._cache_key = None
        self._cache = None

    @property
    def device_label(self):
        return f"{self.colorizer.backend} · {self.colorizer.device}"

    def colorize(self, req: ColorizeRequest, progress=None) -> ColorizeResult:
        h, w = req.size_hw
        geo = geometry(h, w, req.size, req.raw)
        sketch = prepare_sketch(req.lines, geo)
        key = (geo, _digest(sketch))
        cached = key == self._cache_key
        if not cached:
            _report(progress, 0.1, "line art features")
            self._cache_key, self._cache = None, None
            self._cache = self.colorizer.encode(sketch)
            self._cache_key = key
        _report(progress, 0.5, "colors")
        color = self.colorizer.decode(self._cache, prepare_hints(req.hints, geo))
        rgba = to_rgba(color, geo)
        label = self.spec.label
        labels = None
        if _snap(req, self.spec):
            _report(progress, 0.8, "snapping to flats")
            f = compute_flats(req.lines, req.hints, req.gap, fill="model", model_rgb=rgba[..., :3])
            rgba, labels = f.rgba, f.labels
            label += " + flats"
        return ColorizeResult(rgba=rgba, engine=label, device=self.device_label, cached=cached,
                              labels=labels if req.want_labels else None)


class AutoColorEngine:
    """A hint-free sketch -> color generator (CycleGAN layout); hints are ignored."""

    def __init__(self, spec: ModelSpec, backend: str, device: str):
        self.spec, self.backend, self.device = spec, backend, device
        self.warnings: list = []

    def colorize(self, req: ColorizeRequest, progress=None) -> ColorizeResult:
        from .image2image import auto_colors, load_image2image
        path = self.spec.onnx or self.spec.netg
        _report(progress, 0.2, "colors")
        rgba = auto_colors(req.lines, path, req.size, req.backend, req.device, self.warnings)
        runner = load_image2image(path, req.backend, req.device)
        label, labels = self.spec.label, None
        snap = _snap(req, self.spec)
        if req.hints is not None and (req.hints[..., 3] > 0).any() and not snap:
            self.warnings.append("this model ignores color hints (use Snap to flats to apply them)")
        if snap:
            _report(progress, 0.8, "snapping to flats")
            f = compute_flats(req.lines, req.hints, req.gap, fill="model", model_rgb=rgba[..., :3])
            rgba, labels = f.rgba, f.labels
            label += " + flats"
        return ColorizeResult(rgba=rgba, engine=label, device=f"{runner.backend} · {runner.device}",
                              labels=labels if req.want_labels else None)


def _snap(req: ColorizeRequest, spec: ModelSpec) -> bool:
    """The request's choice, or the model's default when the request leaves it open."""
    return spec.snap if req.snap is None else bool(req.snap)


def _report(progress, frac, what):
    if progress is not None:
        progress(frac, what)


def colorize_flats(req: ColorizeRequest, progress=None) -> ColorizeResult:
    _report(progress, 0.1, "regions")
    f = compute_flats(req.lines, req.hints, req.gap, fill=req.fill)
    return ColorizeResult(rgba=f.rgba, engine="Flats", device="CPU", warnings=list(f.warnings),
                          labels=f.labels if req.want_labels else None)


class Engines:
    """The engines of one process; loaded models live in runtime.MODELS."""

    def neural(self, spec: ModelSpec, backend: str, device: str) -> NeuralEngine:
        return MODELS.get(("alacgan", spec.key, backend, device), lambda: NeuralEngine(spec, backend, device))

    def colorize(self, req: ColorizeRequest, progress=None) -> ColorizeResult:
        t0 = time.perf_counter()
        spec = resolve(req.engine, req.i2v)
        notes = []
        if spec is None:
            if req.engine in ("", ENGINE_AUTO):
                notes.append("no neural model installed: using flats")
            res = colorize_flats(req, progress)
        else:
            eng = (AutoColorEngine(spec, req.backend, req.device) if spec.kind == KIND_AUTO
                   else self.neural(spec, req.backend, req.device))
            res = eng.colorize(req, progress)
            notes.extend(eng.warnings)
            eng.warnings.clear()
        res.warnings = notes + res.warnings
        res.seconds = time.perf_counter() - t0
        _report(progress, 1.0, "done")
        return res
