"""Engines behind one small registry, shared by the command line and the worker.

`Engines.colorize(request)` resolves `request.engine` ("auto", "flats", an
installed model id, or a model file), keeps the loaded model and the sketch
features of the last line art, and returns a `ColorizeResult`.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass

import numpy as np

from . import store
from .errors import UserError
from .compose import COMPOSE_MODES, DEFAULT_COMPOSE, SHADING_BLEND, compose
from .flats import FILL_MODES, LineArt, flat_palette, ink_mask, paint
from .imaging import HINT_SCALE, geometry, luminance, prepare_hints, prepare_sketch, to_rgba
from .modelmeta import KIND_ALACGAN, KIND_AUTO, check_backend, is_model_path, model_file_kind
from .runtime import MODELS
from .request import DEFAULT_SIZE, ENGINE_AUTO, ENGINE_FLATS, ColorizeRequest, ColorizeResult


@dataclass(frozen=True)
class ModelSpec:
    """A neural model resolved to files."""
    label: str
    onnx: str | None = None
    fp16: str | None = None
    netg: str | None = None
    i2v: str | None = None
    kind: str = KIND_ALACGAN
    snap: bool = False          # compose with flats unless asked otherwise (model.json "snap")
    size: int | None = None     # working size the model does best at (model.json "size")
    flip: str | None = None     # average with the mirrored picture's colors: "all" compositions, "raw" only
                                # (model.json "ensemble": "flip" / "flip-raw"), None: never

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


def model_size(meta: dict, key: str = "size") -> int | None:
    """model.json's "size" (or `key`, e.g. "lines_size") when it is a usable working size, else None."""
    v = meta.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 32 == 0 else None


ENSEMBLES = {"flip": "all", "flip-raw": "raw"}


def model_flip(meta: dict) -> str | None:
    """model.json's "ensemble": "flip" (every composition) or "flip-raw" (only the network alone,
    --compose raw); absent or "none": no ensemble; anything else is a mistake."""
    v = meta.get("ensemble")
    if v in (None, "none"):
        return None
    if isinstance(v, str) and v in ENSEMBLES:
        return ENSEMBLES[v]
    raise UserError(f"model {meta.get('id')!r}: unknown \"ensemble\" {v!r} in model.json "
                    "(use \"flip\", \"flip-raw\" or leave it out)")


def _from_installed(m: store.InstalledModel) -> ModelSpec:
    if m.kind in (KIND_AUTO, "cyclegan"):
        return ModelSpec(label=f"Auto colors ({m.label})", onnx=m.onnx, netg=m.netg, kind=KIND_AUTO,
                         snap=m.meta.get("snap") is True, size=model_size(m.meta))
    return ModelSpec(label=f"AlacGAN ({m.label})", onnx=m.onnx, fp16=m.fp16, netg=m.netg, i2v=m.i2v,
                     snap=m.meta.get("snap") is True, size=model_size(m.meta), flip=model_flip(m.meta))


def working_size(req: ColorizeRequest, spec: ModelSpec) -> int:
    return req.size if req.size is not None else (spec.size or DEFAULT_SIZE)


def compose_mode(req: ColorizeRequest, spec: ModelSpec) -> str:
    """The request's composition; else --snap/--no-snap (snap, raw); else the model's default
    (the full composition for models whose card recommends flats, the raw network otherwise)."""
    if req.compose is not None:
        if req.compose not in COMPOSE_MODES or req.compose == "flats":
            raise UserError(f"unknown composition {req.compose!r}: use shade, snap or raw")
        return req.compose
    if req.snap is not None:
        return "snap" if req.snap else "raw"
    return DEFAULT_COMPOSE if spec.snap else "raw"


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


class SketchCache:
    """The encoder's features of the last line art, and (made when first needed) those of its
    left-right mirror image, for the flip ensemble."""

    def __init__(self, sketch: np.ndarray, width: int, plain):
        self.sketch, self.plain = sketch, plain
        # Only the picture is mirrored (its width rounded up to the hint grid): the padding
        # stays on the right, where the network saw it in training.
        self.width = min(-(-width // HINT_SCALE) * HINT_SCALE, sketch.shape[-1])
        self._mirrored = None

    def mirrored(self, colorizer):
        if self._mirrored is None:
            self._mirrored = colorizer.encode(_mirror(self.sketch, self.width))
        return self._mirrored


def flip_decode(colorizer, cache: SketchCache, hint: np.ndarray) -> np.ndarray:
    """The mean of the network's colors for the page and, mirrored back, for its mirror image.
    A drawing's colors do not depend on which way it faces, but the network's guesses do a little:
    the mean has the lower expected error wherever they disagree (open areas, unhinted regions),
    for a second decoder run (and a second encoder run per new line art)."""
    w = cache.width
    a = colorizer.decode(cache.plain, hint)
    b = colorizer.decode(cache.mirrored(colorizer), _mirror(hint, w // HINT_SCALE))
    return (a + _mirror(b, w)) * 0.5


def _mirror(a: np.ndarray, w: int) -> np.ndarray:
    """`a` with its first `w` columns reversed."""
    out = a.copy()
    out[..., :w] = a[..., w - 1::-1] if w < a.shape[-1] else a[..., ::-1]
    return out


def digest(a: np.ndarray) -> tuple:
    """A cheap content key: shape plus CRC-32 and Adler-32 of the bytes (about 25 ms for a
    4096 x 3072 RGBA page, a quarter of a cryptographic hash)."""
    b = memoryview(np.ascontiguousarray(a)).cast("B")
    return (a.shape, str(a.dtype), zlib.crc32(b), zlib.adler32(b))


class LineArtCache:
    """The analyses (regions, adjacency, low-resolution tables) of the last few line
    arts, by content digest and gap: a re-run with new hints finds its line art here."""

    def __init__(self, keep: int = 2):
        self.keep, self._items = keep, {}
        self.hits = self.misses = 0
        self._last = (None, None)

    def key(self, lines: np.ndarray, name: str | None = None):
        """digest(lines), or the caller's `name` for this content (request.lines_key: the worker
        names each line art it receives); the very array of the last call (the worker hands the
        line art it kept back unchanged) is not hashed again.  Callers never modify a passed array."""
        if name is not None:
            return ("named", name, lines.shape)
        if lines is self._last[0]:
            return self._last[1]
        k = digest(lines)
        self._last = (lines, k)
        return k

    def get(self, lines: np.ndarray, gap: float | None, key=None, ink=None) -> LineArt:
        """The analysis of `lines` (made now on a miss; `ink`: flats.ink_mask, if the caller has it)."""
        key = (key or self.key(lines), gap)
        if key in self._items:
            self.hits += 1
            self._items[key] = self._items.pop(key)
            return self._items[key]
        self.misses += 1
        while self._items and len(self._items) >= self.keep:
            self._items.pop(next(iter(self._items)))      # free before the new one is built
        la = LineArt(lines, gap, ink)
        self._items[key] = la
        return la

    def clear(self):
        self._items.clear()


def _layers(rgba, flats, shading):
    return [("Flats", flats, "normal"), ("Shading", shading, SHADING_BLEND)]


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

    def colorize(self, req: ColorizeRequest, progress=None, lineart: LineArtCache | None = None,
                 out: np.ndarray | None = None) -> ColorizeResult:
        """`out`: a spare canvas-sized array the composed result may be written into."""
        h, w = req.size_hw
        size = working_size(req, self.spec)
        mode = compose_mode(req, self.spec)
        geo = geometry(h, w, size, req.raw)
        lineart = lineart or LineArtCache(1)
        lkey = lineart.key(req.lines, req.lines_key)
        hints = req.hint_pixels()
        key = (geo, lkey)
        cached = key == self._cache_key
        ink = None
        if not cached:
            _report(progress, 0.1, "line art features")
            self._cache_key, self._cache = None, None
            lum = luminance(req.lines)          # once for the sketch and the regions' ink
            sketch = prepare_sketch(req.lines, geo, lum)
            if mode != "raw":
                ink = ink_mask(lum)
            del lum
            self._cache = SketchCache(sketch, geo.w, self.colorizer.encode(sketch))
            self._cache_key = key
        _report(progress, 0.5, "colors")
        grid = prepare_hints(hints, geo)
        if self.spec.flip == "all" or (self.spec.flip == "raw" and mode == "raw"):
            color = flip_decode(self.colorizer, self._cache, grid)
        else:
            color = self.colorizer.decode(self._cache.plain, grid)
        label, labels, layers = self.spec.label, None, None
        warnings = []
        if mode == "raw":
            rgba = to_rgba(color, geo)
            if req.layers:
                warnings.append("the raw network result is one layer: use the flats composition for two")
        else:
            _report(progress, 0.8, "composing with flats")
            la = lineart.get(req.lines, req.gap, lkey, ink)
            del ink
            net = (color[0, :, :geo.h, :geo.w].transpose(1, 2, 0) + 1.0) * 127.5
            order = _order(req)
            c = compose(la, la.vote(hints), net, mode, layers=req.layers, bgra=order == "BGRA", out=out)
            rgba, labels = c.rgba, la.labels
            if req.layers:
                layers = _layers(c.rgba, c.flats, c.shading)
            label += " + flats" if mode == "snap" else " + flats and shading"
        return ColorizeResult(rgba=rgba, engine=label, device=self.device_label, cached=cached,
                              labels=labels if req.want_labels else None, layers=layers, compose=mode,
                              size=size, warnings=warnings, channel_order="RGBA" if mode == "raw" else order)


class AutoColorEngine:
    """A hint-free sketch -> color generator (CycleGAN layout); hints are ignored."""

    def __init__(self, spec: ModelSpec, backend: str, device: str):
        self.spec, self.backend, self.device = spec, backend, device
        self.warnings: list = []

    def colorize(self, req: ColorizeRequest, progress=None, lineart: LineArtCache | None = None) -> ColorizeResult:
        from PIL import Image
        from .image2image import auto_colors, load_image2image
        path = self.spec.onnx or self.spec.netg
        _report(progress, 0.2, "colors")
        size = working_size(req, self.spec)
        rgba = auto_colors(req.lines, path, size, req.backend, req.device, self.warnings)
        runner = load_image2image(path, req.backend, req.device)
        label, labels, layers = self.spec.label, None, None
        mode = compose_mode(req, self.spec)
        hp = req.hint_pixels()
        if hp is not None and hp.ys.size and mode == "raw":
            self.warnings.append("this model ignores color hints (use Snap to flats to apply them)")
        if mode != "raw":
            _report(progress, 0.8, "composing with flats")
            lineart = lineart or LineArtCache(1)
            la = lineart.get(req.lines, req.gap, lineart.key(req.lines, req.lines_key))
            geo = geometry(*req.size_hw, size)
            net = np.asarray(Image.fromarray(np.ascontiguousarray(rgba[..., :3])).resize(
                (geo.w, geo.h), Image.Resampling.BOX), np.float32)
            c = compose(la, la.vote(req.hint_pixels()), net, mode, layers=req.layers)
            rgba, labels = c.rgba, la.labels
            if req.layers:
                layers = _layers(c.rgba, c.flats, c.shading)
            label += " + flats" if mode == "snap" else " + flats and shading"
        return ColorizeResult(rgba=rgba, engine=label, device=f"{runner.backend} · {runner.device}",
                              labels=labels if req.want_labels else None, layers=layers, compose=mode, size=size)


def _report(progress, frac, what):
    if progress is not None:
        progress(frac, what)


def colorize_flats(req: ColorizeRequest, progress=None, lineart: LineArtCache | None = None) -> ColorizeResult:
    """Flats through the line-art cache: a re-run with new hints only votes over the hint
    pixels, walks the cached region graph and paints the cached label map."""
    if req.fill not in FILL_MODES or req.fill == "model":
        raise UserError(f"unknown fill mode {req.fill!r}: use nearest or none")
    _report(progress, 0.1, "regions")
    lineart = lineart or LineArtCache(1)
    la = lineart.get(req.lines, req.gap, lineart.key(req.lines, req.lines_key))
    votes = la.vote(req.hint_pixels())
    if not votes.hinted.any():
        raise UserError("no hints: paint color strokes on the hint layer (opaque pixels inside the regions)")
    palette, _ = flat_palette(la, votes, req.fill)
    order = _order(req)
    if order == "BGRA":
        palette = np.ascontiguousarray(palette[:, [2, 1, 0, 3]])
    rgba = paint(la.labels, palette)
    layers = [("Flats", rgba, "normal")] if req.layers else None
    return ColorizeResult(rgba=rgba, engine="Flats", device="CPU", warnings=list(la.warnings),
                          labels=la.labels if req.want_labels else None, layers=layers, compose="flats",
                          channel_order=order)


def _order(req: ColorizeRequest) -> str:
    """The byte order an engine that can choose makes its images in."""
    return "BGRA" if req.channel_order == "BGRA" else "RGBA"


class Engines:
    """The engines of one process; loaded models live in runtime.MODELS, line-art analyses
    in self.lineart."""

    def __init__(self):
        self.lineart = LineArtCache()
        self._spare = None

    def recycle(self, res: ColorizeResult):
        """The caller is done with `res` (the worker, once the result is written out): its
        canvas-sized array may take the next result, which saves the first-touch cost of
        fresh memory on every re-run.  Nobody may use res.rgba afterwards."""
        self._spare = res.rgba
        res.rgba = None

    def neural(self, spec: ModelSpec, backend: str, device: str) -> NeuralEngine:
        return MODELS.get(("alacgan", spec.key, backend, device), lambda: NeuralEngine(spec, backend, device))

    def colorize(self, req: ColorizeRequest, progress=None) -> ColorizeResult:
        t0 = time.perf_counter()
        spec = resolve(req.engine, req.i2v)
        notes = []
        if spec is None:
            if req.engine in ("", ENGINE_AUTO):
                notes.append("no neural model installed: using flats")
            res = colorize_flats(req, progress, self.lineart)
        else:
            if spec.kind == KIND_AUTO:
                eng = AutoColorEngine(spec, req.backend, req.device)
                res = eng.colorize(req, progress, self.lineart)
            else:
                eng = self.neural(spec, req.backend, req.device)
                spare, self._spare = self._spare, None
                res = eng.colorize(req, progress, self.lineart, out=spare)
            notes.extend(eng.warnings)
            eng.warnings.clear()
        res.warnings = notes + res.warnings
        res.seconds = time.perf_counter() - t0
        _report(progress, 1.0, "done")
        return res
