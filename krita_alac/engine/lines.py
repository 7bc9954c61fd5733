"""Line art from a colored picture: eXtended Difference of Gaussians (XDoG).

XDoG (Winnemöller et al. 2012) compares a slightly blurred image with a more
blurred one: D = G_sigma(I) - tau * G_(k*sigma)(I).  Where D drops below eps
the pixel is darker than its surroundings, i.e. on a line; a soft threshold
1 + tanh(phi * (D - eps)) keeps the line edges anti-aliased.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .errors import UserError
from .imaging import luminance

METHODS = ("xdog",)


@dataclass(frozen=True)
class XDoGParams:
    sigma: float = 0.8      # inner blur (pixels); line thickness grows with it
    k: float = 2.0          # outer blur = k * sigma; larger k gives thicker, bolder lines
    tau: float = 0.95
    eps: float = -0.01      # on luminance in [0, 1]
    phi: float = 200.0      # softness of the threshold: large = hard, binary lines

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


def extract_lines(rgba: np.ndarray, method: str = "xdog", thickness: float = 1.0,
                  transparent: bool = True) -> np.ndarray:
    """RGBA line art (H x W x 4 uint8): black lines on transparency or on white."""
    if method not in METHODS:
        raise UserError(f"unknown line extraction method {method!r}: use {', '.join(METHODS)}")
    if not (isinstance(rgba, np.ndarray) and rgba.ndim == 3 and rgba.shape[2] == 4 and rgba.dtype == np.uint8):
        raise UserError("the picture must be an RGBA 8-bit image")
    if min(rgba.shape[:2]) < 3:
        raise UserError("the picture is too small to extract lines from")
    ink = xdog_darkness(luminance(rgba), XDoGParams.for_thickness(thickness))
    a = np.clip(ink * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.zeros(rgba.shape, np.uint8)
    if transparent:
        out[..., 3] = a
    else:
        out[..., :3] = (255 - a)[..., None]
        out[..., 3] = 255
    return out
