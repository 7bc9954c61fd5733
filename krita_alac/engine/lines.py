"""Line art from a colored picture: eXtended Difference of Gaussians (XDoG).

XDoG (Winnemöller et al. 2012) compares a slightly blurred image with a more
blurred one: D = G_sigma(I) - tau * G_(k*sigma)(I).  Where D drops below eps
the pixel is darker than its surroundings, i.e. on a line; a soft threshold
1 + tanh(phi * (D - eps)) keeps the line edges anti-aliased.

I is the perceptual lightness L* (CIELAB), not luminance, and edges between
flat colors of similar lightness (sky blue against green hills) are found from
the CIELAB color difference: where the Lab image changes by more than
`color_edge` ΔE per pixel, a line is drawn on the darker side of the edge.

The "neural" method runs a color -> sketch generator instead (image2image.py),
by default the line generator of an installed model (model.json "lines",
cycle-open first).  `extract` is the one entry point of the command line, the
worker and the benchmarks for both methods.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .errors import UserError

METHODS = ("xdog", "neural")


@dataclass(frozen=True)
class XDoGParams:
    sigma: float = 0.8      # inner blur (pixels); line thickness grows with it
    k: float = 2.0          # outer blur = k * sigma; larger k gives thicker, bolder lines
    tau: float = 0.95
    eps: float = -0.005     # on lightness L*/100 in [0, 1]
    phi: float = 200.0      # softness of the threshold: large = hard, binary lines
    color_edge: float = 5.0  # CIELAB ΔE per pixel above which a color edge is a line (0: off)

    @classmethod
    def for_thickness(cls, thickness: float) -> "XDoGParams":
        if not (0 < thickness <= 20):
            raise UserError(f"line thickness must be between 0 and 20, got {thickness:g}")
        return cls(sigma=0.8 * thickness)


def _gauss_small(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian with a short kernel as shifted NumPy sums (float32 throughout)."""
    r = max(1, int(np.ceil(3 * sigma)))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    w /= w.sum()
    for axis in (0, 1):
        xt = x if axis == 0 else x.T          # blur along the first axis of xt
        n = xt.shape[0]
        xp = np.pad(xt, ((r, r), (0, 0)), mode="reflect")
        out = xp[r:r + n] * w[r]
        for i in range(1, r + 1):
            tmp = xp[r - i:r - i + n] + xp[r + i:r + i + n]
            tmp *= w[r + i]
            out += tmp
        x = out if axis == 0 else out.T
    return np.ascontiguousarray(x)


def _gauss_large(x: np.ndarray, sigma: float) -> np.ndarray:
    """A wide blur is smooth: compute it at reduced size and interpolate back."""
    f = max(1, int(sigma / 0.75))
    if f == 1:
        return _gauss_small(x, sigma)
    from PIL import Image
    h, w = x.shape
    small = Image.fromarray(x, "F").resize((max(1, w // f), max(1, h // f)), Image.Resampling.BOX)
    # Box reduction and bilinear enlargement blur too (variance ~(f^2 - 1) / 6): blur less.
    extra = (f * f - 1) / 6.0
    s = ndi.gaussian_filter(np.asarray(small, np.float32), np.sqrt(max(sigma ** 2 - extra, 0.25)) / f, truncate=3.0)
    return np.array(Image.fromarray(s, "F").resize((w, h), Image.Resampling.BILINEAR), np.float32)


def xdog_darkness(gray: np.ndarray, p: XDoGParams = XDoGParams()) -> np.ndarray:
    """Ink strength in [0, 1] (1 = black line) of a float32 gray image in [0, 1]."""
    gray = np.ascontiguousarray(gray, np.float32)
    g1 = _gauss_small(gray, p.sigma) if p.sigma <= 1.5 else ndi.gaussian_filter(gray, p.sigma, truncate=3.0)
    d = _gauss_large(gray, p.sigma * p.k)
    d *= -p.tau
    d += g1
    d -= p.eps
    # 1 - (1 + tanh(phi * d)) where d < 0, else 0.
    np.minimum(d, 0.0, out=d)
    d *= p.phi
    np.tanh(d, out=d)
    np.negative(d, out=d)
    return d


LAB_BITS = 6   # the RGB -> CIELAB table has (2^6)^3 entries: ΔE error ~1, far below an edge


def _lab_table() -> np.ndarray:
    """CIELAB (L*, a*, b*) of every sRGB color quantized to LAB_BITS per channel, float32."""
    n = 1 << LAB_BITS
    c = (np.arange(n, dtype=np.float64) * 255 / (n - 1)) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = np.meshgrid(lin, lin, lin, indexing="ij")
    rgb = np.stack([r.ravel(), g.ravel(), b.ravel()], 1)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = rgb @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), xyz * 7.787 + 16 / 116)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return lab.astype(np.float32)


_LAB = []


def _table():
    if not _LAB:
        _LAB.append(tuple(np.ascontiguousarray(c) for c in _lab_table().T))
    return _LAB[0]


def color_index(rgba: np.ndarray) -> np.ndarray:
    """Each pixel's entry in the CIELAB table (its color over white paper, LAB_BITS per channel)."""
    shift = 8 - LAB_BITS
    alpha = rgba[..., 3]
    opaque = bool(alpha.min() == 255)
    idx = np.zeros(rgba.shape[:2], np.int32)
    for c in range(3):
        ch = rgba[..., c]
        if not opaque:   # over white: 255 - a * (255 - c) / 255
            ch = (255 - ((255 - ch.astype(np.uint16)) * alpha + 127) // 255).astype(np.uint8)
        idx <<= LAB_BITS
        idx |= ch >> shift
    return idx


def lab_on_white(rgba: np.ndarray):
    """CIELAB (L* 0..100, a*, b*) of sRGB RGBA 8-bit composited over white paper:
    three float32 arrays."""
    idx = color_index(rgba)
    return tuple(np.take(t, idx) for t in _table())


def color_edge_darkness(idx: np.ndarray, lstar: np.ndarray, p: XDoGParams):
    """(rows, cols, ink) of the pixels on the darker side of steep color edges:
    the CIELAB difference between each pixel's two neighbours (both axes), per
    pixel of distance, against p.color_edge.  Only pixels whose neighbours differ
    are looked at, so flat-colored art costs little."""
    h, w = idx.shape
    L, A, B = _table()
    mag = {}
    for axis in (0, 1):
        a, b = (idx[:-2], idx[2:]) if axis == 0 else (idx[:, :-2], idx[:, 2:])
        ys, xs = np.nonzero(a != b)
        ia, ib = a[ys, xs], b[ys, xs]
        d2 = np.square(L[ia] - L[ib]) + np.square(A[ia] - A[ib]) + np.square(B[ia] - B[ib])
        ys, xs = (ys + 1, xs) if axis == 0 else (ys, xs + 1)
        flat = ys.astype(np.int64) * w + xs
        mag[axis] = (flat, d2)
    flat = np.concatenate([mag[0][0], mag[1][0]])
    d2 = np.concatenate([mag[0][1], mag[1][1]])
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    flat, inv = np.unique(flat, return_inverse=True)
    total = np.bincount(inv.ravel(), weights=d2, minlength=flat.size).astype(np.float32)
    ink = np.clip(np.sqrt(total) * np.float32(0.5 / p.color_edge) - np.float32(1.0), 0.0, 1.0)
    ys, xs = flat // w, flat % w
    # Only the darker side gets the line: at or below its four neighbours' mean lightness.
    here = lstar[ys, xs]
    around = (lstar[np.maximum(ys - 1, 0), xs] + lstar[np.minimum(ys + 1, h - 1), xs]
              + lstar[ys, np.maximum(xs - 1, 0)] + lstar[ys, np.minimum(xs + 1, w - 1)]) * np.float32(0.25)
    keep = (ink > 0) & (here <= around)
    return ys[keep], xs[keep], ink[keep]


def picture_darkness(rgba: np.ndarray, p: XDoGParams) -> np.ndarray:
    """Ink in [0, 1]: XDoG on L*, and the steep color edges."""
    idx = color_index(rgba)
    lstar = np.take(_table()[0], idx)
    ink = xdog_darkness(lstar * np.float32(0.01), p)
    if p.color_edge > 0:
        ys, xs, c = color_edge_darkness(idx, lstar, p)
        ink[ys, xs] = np.maximum(ink[ys, xs], c)
    return ink


@dataclass
class LinesResult:
    rgba: np.ndarray            # H x W x 4 uint8: black lines on transparency (or on white)
    engine: str                 # what ran: "Lines (XDoG)", "Lines (cycle-open)"
    device: str = "CPU"
    size: int | None = None     # the neural method's working size
    warnings: list = field(default_factory=list)


def neural_lines_model(model: str | None = None) -> tuple[str, str, int | None]:
    """(generator file, label, model.json working size or None) for the neural method.

    `model`: None, "" or "auto" for the installed model with a line generator
    (cycle-open first), an installed model id, or a generator file."""
    from . import store
    from .modelmeta import is_model_path
    if model in (None, "", "auto"):
        m = store.default_lines_model()
        if m is None:
            raise UserError("no model with a line generator is installed (such as cycle-open): put its folder "
                            f"in {store.models_dir()}, or name a color->sketch generator file "
                            "(--model G_B.onnx or latest_net_G_B.pth)")
    elif is_model_path(model):
        if not os.path.isfile(model):
            raise UserError(f"model file not found: {model}")
        return model, os.path.basename(model), None
    else:
        m = store.find_model(model)
        if m is None:
            ids = ", ".join(x.id for x in store.lines_models()) or "none installed"
            raise UserError(f"unknown line model {model!r}: use an installed model with a line generator "
                            f"({ids}) or a model file")
    path = store.lines_file(m)
    if path is None:
        raise UserError(f"the model {m.id!r} has no line generator (its model.json names no \"lines\" file)")
    from .registry import model_size
    # The line generator may do best at another size than the colors ("lines_size").
    return path, m.label, model_size(m.meta, "lines_size") or model_size(m.meta)


def _check_picture(rgba):
    if not (isinstance(rgba, np.ndarray) and rgba.ndim == 3 and rgba.shape[2] == 4 and rgba.dtype == np.uint8):
        raise UserError("the picture must be an RGBA 8-bit image")
    if min(rgba.shape[:2]) < 3:
        raise UserError("the picture is too small to extract lines from")


def extract(rgba: np.ndarray, method: str = "xdog", thickness: float = 1.0, transparent: bool = True,
            model: str | None = None, size: int | None = None, backend: str = "auto",
            device: str = "auto") -> LinesResult:
    """Line art of a picture with XDoG (`thickness`) or a neural generator (`model`, see
    neural_lines_model; `size`: working size, default the model's own, else 512)."""
    if method not in METHODS:
        raise UserError(f"unknown line extraction method {method!r}: use {', '.join(METHODS)}")
    _check_picture(rgba)
    if method == "neural":
        from .image2image import load_image2image, neural_lines
        from .request import DEFAULT_SIZE
        path, label, own = neural_lines_model(model)
        size = size or own or DEFAULT_SIZE
        warnings: list = []
        out = neural_lines(rgba, path, size, backend, device, warnings)
        runner = load_image2image(path, backend, device)      # the cached runner: what really ran
        res = LinesResult(out, f"Lines ({label})", f"{runner.backend} · {runner.device}", size, warnings)
        if not transparent:
            ink = out[..., 3]
            res.rgba = np.empty_like(out)
            res.rgba[..., :3] = (255 - ink)[..., None]
            res.rgba[..., 3] = 255
        return res
    ink = picture_darkness(rgba, XDoGParams.for_thickness(thickness))
    a = np.clip(ink * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.zeros(rgba.shape, np.uint8)
    if transparent:
        out[..., 3] = a
    else:
        out[..., :3] = (255 - a)[..., None]
        out[..., 3] = 255
    return LinesResult(out, "Lines (XDoG)")


def extract_lines(rgba: np.ndarray, method: str = "xdog", thickness: float = 1.0,
                  transparent: bool = True, **neural) -> np.ndarray:
    """RGBA line art (H x W x 4 uint8): black lines on transparency or on white
    (`neural`: extract's model, size, backend, device)."""
    return extract(rgba, method, thickness, transparent, **neural).rgba
