"""Images in and out of the networks: plain NumPy arrays, no Krita, no torch.

Conventions: images are H x W x 4 uint8 RGBA arrays (straight alpha).  The
network sees a sketch 1x1xHxW in [-1, 1] (1 = paper, -1 = ink) and hints
1x4x(H/4)x(W/4): RGB in [-1, 1] multiplied by the mask, then the mask.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .limits import MAX_CANVAS_PIXELS, MAX_WORK_SIZE, PEAK_BYTES_PER_PIXEL

SIZE_MULTIPLE = 32
HINT_SCALE = 4
# A hint pixel counts when it is at least half opaque: soft stroke edges and
# stray faint pixels do not paint whole grid cells.
HINT_ALPHA_MIN = 128
# ITU-R BT.601 luma, as PIL's convert("L") that the original code trained with.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Images bigger than the canvas limit are refused before they are decoded;
# this environment variable raises the limit (Pillow's own bomb check included).
MAX_PIXELS_ENV = "KRITA_ALAC_MAX_PIXELS"
READ_BAND_BYTES = 16 << 20


def max_pixels() -> int:
    v = os.environ.get(MAX_PIXELS_ENV, "")
    try:
        return max(1, int(v)) if v else MAX_CANVAS_PIXELS
    except ValueError:
        raise UserError(f"{MAX_PIXELS_ENV} must be a whole number of pixels, got {v!r}")


def memory_needed(width: int, height: int) -> str:
    """About how much memory colorizing a page this big takes, for messages."""
    return f"about {width * height * PEAK_BYTES_PER_PIXEL / 2 ** 30:.1f} GB of memory"


def available_memory() -> int | None:
    """Bytes the system can still give (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(width: int, height: int, held: int = 0):
    """Refuse a page that cannot fit in the memory left (beside `held` bytes this
    process already holds for it), rather than being killed half-way."""
    free = available_memory()
    need = width * height * PEAK_BYTES_PER_PIXEL - held
    if free is not None and need > free:
        raise UserError(f"a {width}x{height} page needs {memory_needed(width, height)} and only "
                        f"{free / 2 ** 30:.1f} GB are free: close other programs or colorize a part of it")


def check_pixels(width: int, height: int, what: str, path: str = ""):
    limit = max_pixels()
    if width * height > limit:
        where = f" {path}" if path else ""
        raise UserError(f"{what}{where} is {width}x{height} = {width * height} pixels, over the limit of {limit} "
                        f"pixels: colorizing it would need {memory_needed(width, height)}; to try anyway set "
                        f"{MAX_PIXELS_ENV}={width * height}")


# --- files ----------------------------------------------------------------

def read_rgba(path: str, what: str = "image") -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"{what} is a folder, not an image: {path}")
    # Pillow's decompression-bomb check is replaced by ours (the same purpose,
    # checked before decoding too), whose message says the way around.
    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            check_pixels(im.width, im.height, what, path)
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                # 16-bit or float grayscale: scale to 8 bits before RGBA.
                a = np.asarray(im, np.float64)
                top = 65535.0 if a.max() > 255 else 255.0
                im = Image.fromarray(np.clip(a / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
            return _rgba_bands(im)
    except UnidentifiedImageError:
        raise UserError(f"{what} is not an image: {path}")
    except Image.DecompressionBombError:
        raise UserError(f"{what} {path} is over Pillow's decompression-bomb limit; to allow it set "
                        f"{MAX_PIXELS_ENV} to its size in pixels")
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e}")
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


def _rgba_bands(im) -> np.ndarray:
    """The decoded image as RGBA, converted a band of rows at a time straight
    into the array: beside Pillow's own copy there is only the result (a
    whole-image convert() and np.array() would each add another)."""
    w, h = im.size
    out = np.empty((h, w, 4), np.uint8)
    rows = max(1, READ_BAND_BYTES // max(1, w * 4))
    for y in range(0, h, rows):
        band = im.crop((0, y, w, min(h, y + rows)))
        if band.mode != "RGBA":
            band = band.convert("RGBA")
        out[y:y + band.height] = np.asarray(band)
    return out


def write_png(path: str, rgba: np.ndarray):
    """Write atomically: a failed run never leaves a half-written file."""
    write_outputs([(path, rgba)])


def _save(tmp: str, path: str, a: np.ndarray):
    from PIL import Image
    if path.endswith(".npy"):
        with open(tmp, "wb") as f:
            np.save(f, a)
    elif a.ndim == 2:
        Image.fromarray(np.ascontiguousarray(a)).save(tmp, format="PNG")
    else:
        mode = "RGBA" if a.shape[2] == 4 else "RGB"
        Image.fromarray(np.ascontiguousarray(a), mode).save(tmp, format="PNG")


def write_outputs(items):
    """Write every (path, array) — PNG (RGBA, RGB or 16-bit gray) or .npy by the
    path's ending — to a temporary file first, and rename them all into place
    only once all are written: a failed run leaves no output, old or half-new."""
    tmps = []
    for path, _ in items:
        if os.path.isdir(path):
            raise UserError(f"cannot write {path}: it is a folder")
    try:
        for path, a in items:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise UserError(f"output folder does not exist: {folder}")
            tmp = f"{path}.part{os.getpid()}"
            tmps.append(tmp)
            try:
                _save(tmp, path, a)
            except OSError as e:
                raise UserError(f"cannot write {path}: {e.strerror or e}")
        for (path, _), tmp in zip(items, tmps):
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise UserError(f"cannot write {path}: {e.strerror or e}")
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)


# --- line art -------------------------------------------------------------

_LUM_ROWS = 64       # rows per band in luminance(): the temporaries stay in the cache


def luminance(rgba: np.ndarray) -> np.ndarray:
    """Luminance in [0, 1] of the image composited over white paper (float32).

    A band of rows at a time (the same operations in the same order per pixel as on the
    whole array, about three times faster on a big page)."""
    k = (LUMA / 255.0).astype(np.float32)
    h, w = rgba.shape[:2]
    lum = np.empty((h, w), np.float32)
    alpha = rgba[..., 3]
    over_white = alpha.min() < 255 if alpha.size else False
    c255 = np.float32(1 / 255.0)
    t = np.empty((min(_LUM_ROWS, h), w), np.float32)
    for y in range(0, h, _LUM_ROWS):
        band, out = rgba[y:y + _LUM_ROWS], lum[y:y + _LUM_ROWS]
        tb = t[:out.shape[0]]
        np.multiply(band[..., 0], k[0], out=out)
        np.multiply(band[..., 1], k[1], out=tb)
        out += tb
        np.multiply(band[..., 2], k[2], out=tb)
        out += tb
        if over_white:
            # lum * a + (1 - a)  ==  1 - a * (1 - lum)
            out -= 1.0
            np.multiply(band[..., 3], c255, out=tb)
            out *= tb
            out += 1.0
    return lum


def line_darkness(rgba: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1]: 1 - luminance over white, computed in 8-bit steps."""
    return 1.0 - luminance(rgba)


# --- working-size geometry ------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """How a canvas maps onto the network's input."""
    height: int          # canvas
    width: int
    h: int               # scaled content
    w: int
    ph: int              # padded to a multiple of 32
    pw: int

    @property
    def identity(self):
        return (self.h, self.w) == (self.height, self.width)


def check_size(size: int, multiple: int = SIZE_MULTIPLE, model: str = ""):
    """A working size the network can take: a whole multiple of its stride, not absurdly large."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size > MAX_WORK_SIZE:
        raise UserError(f"working size must be a positive whole number of pixels up to {MAX_WORK_SIZE}, "
                        f"got {size!r}")
    if size < multiple or size % multiple:
        raise UserError(f"working size must be a positive multiple of {multiple}{model}, got {size}")


def geometry(height: int, width: int, size: int, raw: bool = False, multiple: int = SIZE_MULTIPLE,
             min_side: int = 0, model: str = "") -> Geometry:
    """Long side scaled to `size`, padded to `multiple` (and to at least
    `min_side`, for generators whose bottleneck needs room to pad)."""
    check_size(size, multiple, model)
    if raw:
        if height % multiple or width % multiple:
            raise UserError(f"--raw needs a size that is a multiple of {multiple}, got {width}x{height}")
        return Geometry(height, width, height, width, height, width)
    scale = size / max(height, width)
    h = max(1, min(size, round(height * scale)))
    w = max(1, min(size, round(width * scale)))
    up = lambda v: max(-(-v // multiple) * multiple, min_side)  # noqa: E731
    return Geometry(height, width, h, w, up(h), up(w))


def _resize_gray(a: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(a, "F").resize((w, h), Image.Resampling.LANCZOS), np.float32)


def prepare_sketch(lines: np.ndarray, geo: Geometry, lum: np.ndarray | None = None) -> np.ndarray:
    """1x1xPHxPW float32 in [-1, 1], white padding right and bottom.  `lum`: luminance(lines),
    when the caller has it already."""
    lum = luminance(lines) if lum is None else lum
    if not geo.identity:
        lum = np.clip(_resize_gray(lum, geo.h, geo.w), 0.0, 1.0)
    out = np.ones((geo.ph, geo.pw), np.float32)
    out[:geo.h, :geo.w] = lum
    return (out * 2.0 - 1.0)[None, None]


@dataclass
class HintPixels:
    """The hint pixels that count (alpha >= HINT_ALPHA_MIN) on a canvas, found in one pass over
    the hint layer (or the crop of it the plugin sent): the vote and the network's hint grid
    look only at these, never at the whole layer again."""
    shape: tuple                 # the canvas (H, W)
    ys: np.ndarray               # canvas rows and columns (int64), in row-major order
    xs: np.ndarray
    rgba: np.ndarray             # K x 4 uint8

    @classmethod
    def find(cls, hints: np.ndarray, shape=None, origin=(0, 0)) -> "HintPixels":
        """`hints`: H x W x 4 uint8 RGBA, the canvas's or a crop lying at `origin` (x, y) on a
        canvas of `shape` (H, W; None: the hints are the canvas)."""
        h, w = hints.shape[:2]
        x0, y0 = origin
        shape = tuple(shape) if shape is not None else (h, w)
        if x0 < 0 or y0 < 0 or x0 + w > shape[1] or y0 + h > shape[0]:
            raise UserError(f"the {w}x{h} hints at ({x0}, {y0}) do not lie inside the "
                            f"{shape[1]}x{shape[0]} canvas")
        if hints.flags.c_contiguous and np.little_endian:
            # One comparison per pixel on 32-bit words: alpha is the top byte.
            flat = np.flatnonzero(hints.view(np.uint32).reshape(h, w) >= np.uint32(HINT_ALPHA_MIN << 24))
            rgba = hints.reshape(-1, 4)[flat]
        else:
            flat = np.flatnonzero(hints[..., 3] >= HINT_ALPHA_MIN)
            rgba = hints.reshape(-1, 4)[flat] if hints.flags.c_contiguous else hints[hints[..., 3] >= HINT_ALPHA_MIN]
        ys, xs = np.divmod(flat, w)
        return cls(shape, ys + y0, xs + x0, rgba)

    @property
    def flat(self) -> np.ndarray:
        """Flat canvas indices, sorted."""
        return self.ys * self.shape[1] + self.xs


def prepare_hints(hints, geo: Geometry) -> np.ndarray:
    """1x4x(PH/4)x(PW/4): each grid cell with any opaque hint pixel gets mask 1
    and the alpha-weighted mean color of those pixels.  `hints`: canvas-sized RGBA,
    HintPixels, or None."""
    gh, gw = geo.ph // HINT_SCALE, geo.pw // HINT_SCALE
    out = np.zeros((1, 4, gh, gw), np.float32)
    if hints is None:
        return out
    if not isinstance(hints, HintPixels):
        hints = HintPixels.find(hints)
    ys, xs = hints.ys, hints.xs
    if ys.size == 0:
        return out
    # Canvas pixel -> cell of the quarter-resolution grid of the scaled content.
    cy = np.minimum((ys * geo.h // geo.height) // HINT_SCALE, gh - 1)
    cx = np.minimum((xs * geo.w // geo.width) // HINT_SCALE, gw - 1)
    cell = cy * gw + cx
    wgt = hints.rgba[:, 3].astype(np.float64)
    wsum = np.bincount(cell, weights=wgt, minlength=gh * gw)
    hit = wsum > 0
    for c in range(3):
        s = np.bincount(cell, weights=wgt * hints.rgba[:, c], minlength=gh * gw)
        mean = np.where(hit, s / np.where(hit, wsum, 1.0), 0.0) / 255.0
        out[0, c] = np.where(hit, mean * 2.0 - 1.0, 0.0).reshape(gh, gw)
    out[0, 3] = hit.reshape(gh, gw)
    return out


def to_rgba(color: np.ndarray, geo: Geometry) -> np.ndarray:
    """Network output 1x3xPHxPW in [-1, 1] -> canvas-sized opaque RGBA uint8."""
    from PIL import Image
    rgb = np.clip((color[0, :, :geo.h, :geo.w].transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    if not geo.identity:
        rgb = np.asarray(Image.fromarray(rgb, "RGB").resize((geo.width, geo.height), Image.Resampling.BICUBIC))
    out = np.empty((geo.height, geo.width, 4), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255
    return out
