"""Krita layers <-> 8-bit sRGB BGRA bytes (Krita only; no numpy).

Krita stores RGBA U8 pixels as B, G, R, A, which is exactly the worker's
"BGRA8" wire format, so the common case is a plain copy.  Any other color
model, depth or profile is converted by Krita itself (lcms) inside a private
scratch document, so the user's document never changes and gets no undo steps
from reading.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import threading
import time

from krita import Krita
from PyQt5.QtCore import QByteArray
from PyQt5.QtGui import QImage, QPainter

SRGB8 = ("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
# Big layers are read and written a band of rows at a time, so that Krita's
# process holds one band beside the layer itself, never a second canvas.
BAND_BYTES = 16 << 20
# A plain copy (no color conversion) goes through buffers of about this size: in Krita's
# process a fresh allocation of several MB costs page faults worth ~10x the copy itself
# (64 MB read as bytes: 162 ms in 8 MB bands, 21 ms in 1 MB bands).
COPY_BYTES = 1 << 20
OPAQUE_SAMPLE = 16        # opaque_fraction of a dump looks at every 16th pixel
# Layers whose own paint device is what the artist drew; anything else
# (groups, vector, file, fill, clone layers) is read through its projection.
RAW_DEVICE_TYPES = ("paintlayer",)


def color_space(obj) -> tuple:
    """(model, depth, profile) of a Node or Document."""
    return (obj.colorModel(), obj.colorDepth(), obj.colorProfile())


def is_srgb8(space) -> bool:
    return tuple(space) == SRGB8


def convert_bytes(data, width: int, height: int, src_space, dst_space) -> bytes:
    """Pixels of one color space in another, converted by Krita in a scratch document."""
    if tuple(src_space) == tuple(dst_space):
        return bytes(data)
    doc = Krita.instance().createDocument(width, height, "krita_alac scratch", src_space[0], src_space[1],
                                          src_space[2], 72.0)
    try:
        layer = doc.topLevelNodes()[0]
        layer.setPixelData(QByteArray(bytes(data)), 0, 0, width, height)
        if not doc.setColorSpace(*dst_space):
            raise RuntimeError(f"Krita could not convert {'/'.join(src_space)} to {'/'.join(dst_space)}")
        doc.waitForDone()
        return bytes(layer.pixelData(0, 0, width, height))
    finally:
        doc.close()


def read_bgra8(node, rect) -> bytes:
    """The layer's pixels inside rect=(x, y, w, h) in image coordinates, as sRGB BGRA8.

    Layer offsets and content beyond the canvas need no special care: Krita's
    pixelData reads in image coordinates, so reading the canvas rect crops."""
    x, y, w, h = rect
    if node.type() in RAW_DEVICE_TYPES:
        data = node.pixelData(x, y, w, h)
    else:
        data = node.projectionPixelData(x, y, w, h)
    return convert_bytes(data, w, h, color_space(node), SRGB8)


def has_visible_pixels(bgra: bytes) -> bool:
    """Any pixel with alpha > 0 (a C-speed scan of the alpha bytes)."""
    return bgra[3::4].strip(b"\x00") != b""


def opaque_fraction(bgra: bytes, samples: int = 4096) -> float:
    """Share of sampled pixels that are fully opaque: a scan on white paper is ~1.0."""
    n = len(bgra) // 4
    if n == 0:
        return 0.0
    step = max(1, n // samples)
    alphas = bgra[3::4 * step]
    return alphas.count(255) / len(alphas)


def selection_mask(selection, rect) -> bytes | None:
    """One byte per pixel (0..255) of the selection inside rect, or None when there is none."""
    if selection is None:
        return None
    x, y, w, h = rect
    return bytes(selection.pixelData(x, y, w, h))


def apply_mask(bgra: bytes, mask: bytes, width: int, height: int) -> bytes:
    """Multiply alpha by the selection mask (QPainter DestinationIn, C speed, no numpy)."""
    # ARGB32_Premultiplied keeps opaque pixels byte-exact; partly selected
    # pixels get their color premultiplied, undone by the conversion below.
    img = _premultiplied(bgra, width, height)
    alpha = QImage(mask, width, height, width, QImage.Format_Alpha8)
    p = QPainter(img)
    p.setCompositionMode(QPainter.CompositionMode_DestinationIn)
    p.drawImage(0, 0, alpha)
    p.end()
    return _straight_bytes(img)


def _premultiplied(bgra: bytes, width: int, height: int) -> QImage:
    return QImage(bgra, width, height, width * 4, QImage.Format_ARGB32).convertToFormat(
        QImage.Format_ARGB32_Premultiplied)


def _straight_bytes(img: QImage) -> bytes:
    out = img.convertToFormat(QImage.Format_ARGB32)
    ptr = out.constBits()
    ptr.setsize(out.sizeInBytes())
    return bytes(ptr)


def blend_masked(before: bytes, after: bytes, mask: bytes, width: int, height: int) -> bytes:
    """before * (1 - mask) + after * mask: recolor only the selected pixels."""
    img = _premultiplied(before, width, height)
    alpha = QImage(mask, width, height, width, QImage.Format_Alpha8)
    p = QPainter(img)
    p.setCompositionMode(QPainter.CompositionMode_DestinationOut)
    p.drawImage(0, 0, alpha)
    p.setCompositionMode(QPainter.CompositionMode_Plus)
    p.drawImage(0, 0, _premultiplied(apply_mask(after, mask, width, height), width, height))
    p.end()
    return _straight_bytes(img)


def band_rows(width: int) -> int:
    return max(1, BAND_BYTES // max(1, width * 4))


def bands(h: int, w: int, step_rows: int, plain: bool):
    """(first row, rows, whether it ends a step) covering h rows of width w in
    steps of step_rows; a plain copy (no conversion: plain=True) goes in bands
    of COPY_BYTES within a step, a converted one a step at a time (each
    conversion has a fixed cost)."""
    sub = min(step_rows, max(1, COPY_BYTES // max(1, w * 4))) if plain else step_rows
    for s0 in range(0, h, step_rows):
        s1 = min(h, s0 + step_rows)
        for y0 in range(s0, s1, sub):
            n = min(sub, s1 - y0)
            yield y0, n, y0 + n == s1


def plain_read(node) -> bool:
    """read_bgra8 of this node is a plain copy (the node is 8-bit sRGB)."""
    return is_srgb8(color_space(node))


def read_bands(node, rect):
    """(row offset, rows, sRGB BGRA8 bytes) of rect, a band of rows at a time."""
    x, y, w, h = rect
    step = band_rows(w)
    for y0 in range(0, h, step):
        n = min(step, h - y0)
        yield y0, n, read_bgra8(node, (x, y + y0, w, n))


def dump_layer(node, rect, path) -> dict:
    """Write the layer's pixels in rect to `path` as sRGB BGRA8, a band at a
    time.  Returns {"digest": sha1 of size and pixels, "visible": any pixel
    with alpha > 0, "opaque": share of sampled pixels fully opaque}."""
    return drain(dump_layer_steps(node, rect, path))


def dump_layer_steps(node, rect, path, step_bytes: int = 0, digest: bool = True):
    """dump_layer, yielding after each band (of step_bytes, if given).  With
    digest=False "digest" is None (hashing a canvas-sized layer costs more than
    reading it)."""
    x, y, w, h = rect
    digest = hashlib.sha1(f"{w}x{h};".encode()) if digest else None
    visible, opaque, seen = False, 0, 0
    step = max(1, step_bytes // (w * 4)) if step_bytes else band_rows(w)
    with open(path, "wb") as f:
        for y0, n, end in bands(h, w, step, plain_read(node)):
            band = read_bgra8(node, (x, y + y0, w, n))
            f.write(band)
            if digest is not None:
                digest.update(band)
            visible = visible or has_visible_pixels(band)
            alphas = band[3::4 * OPAQUE_SAMPLE]
            opaque += alphas.count(255)
            seen += len(alphas)
            if end:
                yield
    return {"digest": digest.hexdigest() if digest is not None else None, "visible": visible,
            "opaque": opaque / seen if seen else 0.0}


def same_as_file_steps(node, rect, path, step_bytes: int = 0):
    """Whether the layer's pixels in rect (as sRGB BGRA8) are exactly the bytes of
    the file at `path` (a dump or a result we wrote), read a band at a time and
    yielding between bands; stops at the first band that differs.  A byte
    comparison: far cheaper than hashing the layer again."""
    x, y, w, h = rect
    try:
        if os.path.getsize(path) != w * h * 4:
            return False
        f = open(path, "rb")
    except OSError:
        return False
    step = max(1, step_bytes // (w * 4)) if step_bytes else band_rows(w)
    parts = list(bands(h, w, step, plain_read(node)))
    buf = bytearray(max(n for _, n, _ in parts) * w * 4)
    with f, memoryview(buf) as view:
        for y0, n, end in parts:
            band = read_bgra8(node, (x, y + y0, w, n))
            got = f.readinto(view[:len(band)])
            # bytearray == bytes is one memcmp (a memoryview compares item by item).
            if got != len(band) or (buf if got == len(buf) else buf[:got]) != band:
                return False
            del band
            if end:
                yield
    return True


def any_visible(node, rect) -> bool:
    """Any pixel with alpha > 0 in rect, read a band at a time."""
    return any(has_visible_pixels(band) for _, _, band in read_bands(node, rect))


def visible_crop(node, rect):
    """The part of rect=(x, y, w, h) the layer has pixels in (its exact
    bounds), relative to rect, or None."""
    b = node.bounds()
    x, y, w, h = rect
    x0, y0 = max(x, b.x()), max(y, b.y())
    x1, y1 = min(x + w, b.x() + b.width()), min(y + h, b.y() + b.height())
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0 - x, y0 - y, x1 - x0, y1 - y0)


def write_bgra8(node, bgra, rect, doc_space) -> None:
    """Write sRGB BGRA8 pixels (bytes, bytearray or a read-only mmap) into
    `node` (a paint layer in `doc_space`), a band of rows at a time.  The
    pages of an mmap already written are handed back to the system."""
    drain(write_bgra8_steps(node, bgra, rect, doc_space, band_rows(rect[2])))


def drain(steps):
    """Run a generator of steps to its end (a step's delay in ms is slept, not
    spun); its return value."""
    while True:
        try:
            delay = next(steps)
        except StopIteration as e:
            return e.value
        if delay:
            time.sleep(delay / 1000.0)


def write_bgra8_steps(node, bgra, rect, doc_space, step: int):
    """write_bgra8, yielding after each band of `step` rows (the caller may let
    Krita's event loop run in between: a new layer not yet in the document)."""
    x, y, w, h = rect
    row = w * 4
    view = memoryview(bgra)
    try:
        for y0, n, end in bands(h, w, step, is_srgb8(doc_space)):
            band = view[y0 * row:(y0 + n) * row]
            data = convert_bytes(band, w, n, SRGB8, doc_space)
            del band
            node.setPixelData(QByteArray(data), x, y + y0, w, n)
            del data
            if end:
                _drop_pages(bgra, (y0 + n) * row)
                yield
    finally:
        view.release()


def refresh_steps(document, poll_ms: int = 2):
    """Recompute the document's projection so pixels written with setPixelData show,
    without blocking Krita's GUI thread: Document.refreshProjection() waits for a
    recomposite of the whole image (0.1-0.3 s at 4096^2), the only update Krita 5.1's
    scripting API offers for such writes; PyKrita releases the GIL in the call, so it
    runs in a thread while this generator yields `poll_ms` steps to the event loop.
    The recomposite itself runs on Krita's own update threads either way.  Returns
    True when it ran, False when the document was closed meanwhile."""
    done = {}

    def work():
        try:
            document.refreshProjection()
            done["ok"] = True
        except RuntimeError:          # the document (its wrapper) is gone
            done["ok"] = False

    t = threading.Thread(target=work, name="krita_alac-refresh", daemon=True)
    t.start()
    while t.is_alive():
        yield poll_ms
    return done.get("ok", False)


def _drop_pages(buf, end: int):
    """madvise(DONTNEED) the mmap pages before `end`: they are read again from
    the file if touched, so this only lowers the resident size."""
    if isinstance(buf, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        end -= end % mmap.PAGESIZE
        if end > 0:
            try:
                buf.madvise(mmap.MADV_DONTNEED, 0, end)
            except (OSError, ValueError):
                pass


def find_node(document, unique_id: str):
    """The node with this uniqueId string anywhere in the document, or None."""
    if not unique_id:
        return None
    stack = list(document.rootNode().childNodes())
    while stack:
        n = stack.pop()
        if n.uniqueId().toString() == unique_id:
            return n
        stack.extend(n.childNodes())
    return None


def all_layers(document):
    """Every node below the root, depth first, top of the stack first."""
    out = []

    def walk(parent, depth):
        for n in reversed(parent.childNodes()):
            out.append((n, depth))
            walk(n, depth + 1)
    walk(document.rootNode(), 0)
    return out


def node_id(node) -> str:
    return node.uniqueId().toString()
