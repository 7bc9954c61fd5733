"""The inference worker: `python -m krita_alac.engine.worker`, one per Krita session.

It runs in its own Python environment, so a crash or out-of-memory here never
touches Krita.  It keeps the model loaded, the sketch features of the last
line art cached, and the last line art itself (so the plugin can skip
sending unchanged line art).

Wire format (both directions): one JSON header line, then the raw bytes the
header announces.

  -> {"op": "colorize", "id": 7, "width": W, "height": H, "format": "BGRA8"|"RGBA8",
      "lines": nbytes, "hints": nbytes|0, "engine": ..., "size": ..., ...request fields,
      optional: "lines_file": path       line art in a file instead of inline (then "lines": 0)
                "lines_digest": str      names the line art; with no line art attached the
                                         worker uses the one it last got under this digest
                "hints_file": path       hints in a file instead of inline (mapped read-only and
                                         let go before the answer: the client may delete it then)
                "hints_rect": [x, y, w, h]  the hints cover only this part of the canvas
                "result_file": path      write the result pixels there, not inline}
     <lines bytes><hints bytes>
  -> {"op": "lines", "id": 8, "width": W, "height": H, "format": ..., "image": nbytes,
      "thickness": 1.0, "transparent": true, "method": "xdog"|"neural", optional "image_file", "result_file",
      neural: optional "model" (installed id or file; default the line model), "size", "backend", "device"}
     <image bytes>                                   (answered with a "result" like colorize)
  -> {"op": "ping"} | {"op": "info"} | {"op": "quit"}

  <- {"type": "ready", "version": ..., "pid": ...}           once, at start
  <- {"type": "progress", "id": 7, "value": 0.5, "text": "colors"}
  <- {"type": "result", "id": 7, "width": W, "height": H, "format": ..., "bytes": n,
      "engine": ..., "device": ..., "seconds": ..., "cached": bool, "warnings": [...],
      "file": path (when the request named a result_file; then "bytes" is 0),
      "compose": "shade"|"snap"|"raw"|"flats", "size": working size or null,
      "layers": [{"name": "Flats", "blend": "normal", "bytes": n} | {..., "file": path}, ...]
                only when the request asked for "layers": true; bottom layer first; each
                in "<result_file>.layerN" when the request named a result_file, else inline}
     <n bytes of pixels, same format as the request><each inline layer's bytes, in order>
  <- {"type": "need_lines", "id": 7}     the worker does not hold the line art of that digest:
                                         send the same request again with the line art
  <- {"type": "error", "id": 7, "message": "one line", "kind": "user"|"internal"|"memory"}
  <- {"type": "pong"} | {"type": "info", ...}

Every byte a header announces is read before anything in the header is
checked, so a bad request is answered with an error and the next one is read
from the right place.  Only a header whose byte counts cannot be read at all
ends the worker (the stream position is then unknown; the plugin starts a new one).
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

from .limits import MAX_CANVAS_PIXELS, PEAK_BYTES_PER_PIXEL
from .process import configure_worker

PIXEL_FORMATS = ("BGRA8", "RGBA8")
REQUEST_FIELDS = ("engine", "size", "raw", "backend", "device", "i2v", "snap", "fill", "gap", "compose", "layers")
PAYLOAD_KEYS = ("lines", "hints", "image")     # inline payloads, in this order on the wire
DISCARD_CHUNK = 1 << 20
# Tests only: seconds to wait before each job's computation, so that a test can
# act (kill, cancel, stop) while the worker is certainly busy.
PAUSE_ENV = "KRITA_ALAC_WORKER_PAUSE"


class ProtocolError(Exception):
    """The stream cannot be followed any more (unreadable byte counts)."""


class Channel:
    def __init__(self, rin, wout):
        self.rin, self.wout = rin, wout

    def send(self, header: dict, payload=b""):
        self.wout.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        if len(payload):
            self.wout.write(payload)
        self.wout.flush()

    def receive(self):
        line = self.rin.readline()
        if not line:
            return None
        return json.loads(line)

    def read_into(self, buf) -> None:
        """Fill a writable buffer (a numpy array's memory: no intermediate copies)."""
        view = memoryview(buf).cast("B")
        got = 0
        while got < len(view):
            n = self.rin.readinto(view[got:])
            if not n:
                raise EOFError("input closed in the middle of a request")
            got += n

    def discard(self, n: int) -> None:
        while n > 0:
            b = self.rin.read(min(n, DISCARD_CHUNK))
            if not b:
                raise EOFError("input closed in the middle of a request")
            n -= len(b)


def payload_sizes(msg) -> dict:
    sizes = {}
    for k in PAYLOAD_KEYS:
        v = msg.get(k) or 0
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ProtocolError(f"malformed request: {k!r} must be a byte count, got {v!r}")
        sizes[k] = v
    return sizes


def _dims(msg):
    """(width, height, rect of each payload) or a UserError message; nothing raised."""
    w, h = msg.get("width"), msg.get("height")
    if isinstance(w, bool) or isinstance(h, bool) or not isinstance(w, int) or not isinstance(h, int) \
            or w <= 0 or h <= 0:
        return None, f"width and height must be positive whole numbers, got {w!r}x{h!r}"
    if w * h > MAX_CANVAS_PIXELS:
        side = int(MAX_CANVAS_PIXELS ** 0.5)
        return None, (f"canvas {w}x{h} is too large: the limit is {MAX_CANVAS_PIXELS} pixels ({side}x{side}); "
                      f"it would need about {w * h * PEAK_BYTES_PER_PIXEL / 2 ** 30:.0f} GB of memory")
    rects = {"lines": (0, 0, w, h), "image": (0, 0, w, h), "hints": (0, 0, w, h)}
    hr = msg.get("hints_rect")
    if hr is not None:
        ok = (isinstance(hr, list) and len(hr) == 4 and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in hr))
        if not ok or hr[2] <= 0 or hr[3] <= 0 or hr[0] < 0 or hr[1] < 0 or hr[0] + hr[2] > w or hr[1] + hr[3] > h:
            return None, f"hints_rect {hr!r} does not lie inside the {w}x{h} canvas"
        rects["hints"] = tuple(hr)
    return (w, h, rects), None


def read_payloads(chan, msg, wire_order=()) -> dict:
    """Read every inline payload the header announces, then check it.

    Returns {key: H x W x 4 uint8 array (RGBA order) or None}.  A payload of
    the wrong size is read and dropped (never allocated), then refused.  The
    payloads named in `wire_order` keep the request's byte order, and a file of
    theirs is mapped read-only instead of read (the caller looks at few pixels)."""
    from .errors import UserError
    sizes = payload_sizes(msg)
    dims, problem = _dims(msg)
    fmt = msg.get("format", "BGRA8")
    if problem is None and fmt not in PIXEL_FORMATS:
        problem = f"unknown pixel format {fmt!r}"
    out = {}
    for k in PAYLOAD_KEYS:
        n = sizes[k]
        if n == 0:
            out[k] = None
            continue
        rw, rh = (dims[2][k][2], dims[2][k][3]) if dims else (0, 0)
        if problem is not None or n != rw * rh * 4:
            chan.discard(n)
            if problem is None:
                problem = f"{k}: expected {rw * rh * 4} bytes for {rw}x{rh}, got {n}"
            continue
        a = np.empty((rh, rw, 4), np.uint8)
        chan.read_into(a)
        out[k] = a
    if problem is not None:
        raise UserError(problem)
    for k in PAYLOAD_KEYS:
        path = msg.get(f"{k}_file")
        if path:
            if out[k] is not None:
                raise UserError(f"{k} sent both inline and as a file")
            rw, rh = dims[2][k][2], dims[2][k][3]
            out[k] = _read_file(path, rw, rh, k, k in wire_order)
    for k, a in out.items():
        if a is not None and fmt == "BGRA8" and k not in wire_order:
            swap_red_blue(a)
    return out


def _read_file(path, w, h, what, mapped=False):
    from .errors import UserError
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise UserError(f"cannot read the {what} file: {e}")
    if size != w * h * 4:
        raise UserError(f"{what}: expected {w * h * 4} bytes for {w}x{h}, the file has {size}")
    try:
        if mapped:
            return np.memmap(path, np.uint8, "r", shape=(h, w, 4))
        return np.fromfile(path, np.uint8).reshape(h, w, 4)
    except OSError as e:
        raise UserError(f"cannot read the {what} file: {e}")


_SWAP_ROWS = 64     # rows per band of the red/blue exchange: its temporaries stay in the cache
_LOW, _HIGH = np.uint32(0x00FF00FF), np.uint32(0xFF00FF00)


def _exchange(x, out, t1, t2):
    """out = x with bytes 0 and 2 of every 32-bit word exchanged (RGBA <-> BGRA on a
    little-endian machine); out may be x.  Integer operations on whole words: a numpy
    fancy index over the channels is about ten times slower."""
    np.bitwise_and(x, _LOW, out=t1)             # red and blue
    np.bitwise_and(x, _HIGH, out=out)           # green and alpha stay
    np.right_shift(t1, 16, out=t2)
    np.bitwise_or(out, t2, out=out)
    np.left_shift(t1, 16, out=t2)
    np.bitwise_or(out, t2, out=out)


def _words(a):
    """a (H x W x 4 uint8, C-contiguous) as H x W 32-bit words, or None (then per byte)."""
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 4 and a.flags.c_contiguous and np.little_endian:
        return a.view(np.uint32).reshape(a.shape[:2])
    return None


def swap_red_blue(a, rows: int = _SWAP_ROWS):
    """BGRA <-> RGBA in place, a band of rows at a time (no canvas-sized temporary)."""
    w32 = _words(a)
    if w32 is None:
        for y in range(0, a.shape[0], rows):
            band = a[y:y + rows]
            tmp = band[..., 0].copy()
            band[..., 0] = band[..., 2]
            band[..., 2] = tmp
        return
    t1, t2 = np.empty((2, rows, w32.shape[1]), np.uint32)
    for y in range(0, w32.shape[0], rows):
        x = w32[y:y + rows]
        n = x.shape[0]
        _exchange(x, x, t1[:n], t2[:n])


def _bands(a, fmt, rows: int = _SWAP_ROWS, order: str = "RGBA"):
    """The pixels (in byte `order`) in the request's byte order, a band of rows at a
    time: the result array is neither copied whole nor changed (an engine may keep it).
    An exchanged band is made in one reused buffer: write it out before taking the next."""
    swap = fmt[:4] != order
    w32 = _words(a)
    if not swap or w32 is None:
        for y in range(0, a.shape[0], rows):
            band = a[y:y + rows]
            if swap:
                band = band[..., [2, 1, 0, 3]]
            yield memoryview(np.ascontiguousarray(band)).cast("B")
        return
    out, t1, t2 = np.empty((3, rows, w32.shape[1]), np.uint32)
    for y in range(0, w32.shape[0], rows):
        x = w32[y:y + rows]
        n = x.shape[0]
        _exchange(x, out[:n], t1[:n], t2[:n])
        yield memoryview(out[:n]).cast("B")


def _write_file(path, rgba, fmt, order="RGBA"):
    from .errors import UserError
    tmp = f"{path}.part"
    try:
        with open(tmp, "wb") as f:
            if fmt[:4] == order and rgba.flags.c_contiguous:
                f.write(memoryview(rgba).cast("B"))          # already in the file's order: one write
            else:
                for b in _bands(rgba, fmt, order=order):
                    f.write(b)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UserError(f"cannot write the result file: {e}")


def send_pixels(chan, msg, header: dict, rgba, layers=None, order="RGBA"):
    """Answer with `rgba` (and the `layers`, [(name, rgba, blend)]), all in byte `order`,
    inline or in the result file the request named (layer N in "<result_file>.layerN").
    Every file is complete before the header that names it is sent."""
    fmt = msg.get("format", "BGRA8")
    path = msg.get("result_file")
    layers = layers or []
    if path:
        described = []
        for i, (name, a, blend) in enumerate(layers):
            _write_file(f"{path}.layer{i}", a, fmt, order)
            described.append({"name": name, "blend": blend, "bytes": 0, "file": f"{path}.layer{i}"})
        _write_file(path, rgba, fmt, order)
        if layers:
            header = dict(header, layers=described)
        chan.send(dict(header, format=fmt, bytes=0, file=path))
    else:
        if layers:
            header = dict(header, layers=[{"name": name, "blend": blend, "bytes": int(a.nbytes)}
                                          for name, a, blend in layers])
        chan.send(dict(header, format=fmt, bytes=int(rgba.nbytes)))
        for a in [rgba] + [a for _, a, _ in layers]:
            for b in _bands(a, fmt, order=order):
                chan.wout.write(b)
        chan.wout.flush()


class LinesCache:
    """The line art of the last request, by the digest the plugin gave it.

    Each line art received under a digest also gets a key unique in this process (the
    digest and a serial number): the engines' caches know the content by it and never
    hash the pixels, and line art sent again (after need_lines) is analysed afresh."""

    def __init__(self):
        self.digest, self.lines, self.key = None, None, None
        self.serial = 0

    def put(self, digest, lines):
        self.serial += 1
        self.digest, self.lines = (digest, lines) if digest else (None, None)
        self.key = f"{self.serial}:{digest}" if digest else None
        return self.key

    def get(self, digest):
        return self.lines if digest and digest == self.digest else None


def _pause():
    try:
        t = float(os.environ.get(PAUSE_ENV) or 0)
    except ValueError:
        t = 0
    if t > 0:
        time.sleep(t)


def handle_colorize(chan, engines, msg, cache=None):
    from .errors import UserError
    from .request import ColorizeRequest
    rid = msg.get("id")
    p = read_payloads(chan, msg, wire_order=("hints",))
    w, h = msg["width"], msg["height"]
    digest = msg.get("lines_digest")
    cache = cache if cache is not None else LinesCache()
    lines = p["lines"]
    lines_key = None
    if lines is None and digest:
        lines = cache.get(digest)
        if lines is None:
            chan.send({"type": "need_lines", "id": rid})
            return
        lines_key = cache.key
    elif lines is not None:
        lines.flags.writeable = False     # kept for the next request: nothing may change it
        lines_key = cache.put(digest, lines)
    if lines is None:
        raise UserError("the line-art layer is empty")
    from .imaging import HintPixels, check_memory
    check_memory(w, h, held=lines.nbytes + (p["hints"].nbytes if p["hints"] is not None else 0))
    hints = p["hints"]
    if hints is not None:
        # Only the hint pixels that count go on (a crop stays a crop, a file is only mapped):
        # found on the wire's bytes, alpha is in the same place in both orders.
        origin = tuple(msg["hints_rect"][:2]) if msg.get("hints_rect") is not None else (0, 0)
        hints = HintPixels.find(hints, (h, w), origin)
        p["hints"] = None       # a mapped file is let go now (Windows cannot delete it while mapped)
        if msg.get("format", "BGRA8") == "BGRA8":
            hints.rgba[:, [0, 2]] = hints.rgba[:, [2, 0]]
    kw = {k: msg[k] for k in REQUEST_FIELDS if k in msg and msg[k] is not None}
    if "compose" in kw and not isinstance(kw["compose"], str):
        raise UserError(f"compose must be shade, snap or raw, got {kw['compose']!r}")
    if "layers" in kw and not isinstance(kw["layers"], bool):
        raise UserError(f"layers must be true or false, got {kw['layers']!r}")
    # Krita's layers are BGRA: engines that can make the result in the wire's order do.
    req = ColorizeRequest(lines=lines, hints=hints, lines_key=lines_key, channel_order=msg.get("format", "BGRA8")[:4],
                          **kw)

    def progress(value, text):
        chan.send({"type": "progress", "id": rid, "value": round(float(value), 3), "text": text})

    progress(0.0, "starting")
    _pause()
    res = engines.colorize(req, progress)
    send_pixels(chan, msg, {"type": "result", "id": rid, "width": w, "height": h, "engine": res.engine,
                            "device": res.device, "seconds": round(res.seconds, 4), "cached": res.cached,
                            "warnings": res.warnings, "compose": res.compose or None, "size": res.size},
                res.rgba, res.layers if req.layers else None, res.channel_order)
    engines.recycle(res)            # written out: its memory takes the next result


def handle_lines(chan, msg):
    """Line art from a colored layer (XDoG or a neural line generator): answered like a colorize result."""
    from .errors import UserError
    from .lines import extract
    rid = msg.get("id")
    image = read_payloads(chan, msg)["image"]
    if image is None:
        raise UserError("the layer is empty: nothing to extract lines from")
    neural = {}
    for key, kind, what in (("model", str, "a name"), ("size", int, "a whole number"), ("backend", str, "a name"),
                            ("device", str, "a name")):
        v = msg.get(key)
        if v is not None:
            if not isinstance(v, kind) or isinstance(v, bool):
                raise UserError(f"lines: {key} must be {what}, got {v!r}")
            neural[key] = v
    chan.send({"type": "progress", "id": rid, "value": 0.0, "text": "starting"})
    _pause()
    t0 = time.perf_counter()
    res = extract(image, msg.get("method", "xdog"), float(msg.get("thickness", 1.0)),
                  transparent=bool(msg.get("transparent", True)), **neural)
    send_pixels(chan, msg, {"type": "result", "id": rid, "width": msg["width"], "height": msg["height"],
                            "engine": res.engine, "device": res.device, "size": res.size,
                            "seconds": round(time.perf_counter() - t0, 4), "cached": False,
                            "warnings": res.warnings}, res.rgba)


def info():
    from .. import __version__
    from . import store
    d = {"type": "info", "version": __version__, "python": sys.version.split()[0], "executable": sys.executable,
         "models": [{"id": m.id, "name": m.label, "kind": m.kind, "lines": bool(store.lines_file(m))}
                    for m in store.installed_models()]}
    try:
        import onnxruntime as ort
        d["onnxruntime"] = ort.__version__
        d["providers"] = ort.get_available_providers()
    except ImportError:
        d["onnxruntime"] = None
    return d


def serve(rin, wout) -> int:
    from .. import __version__
    from .registry import Engines
    from .errors import UserError
    chan = Channel(rin, wout)
    engines = Engines()
    cache = LinesCache()
    chan.send({"type": "ready", "version": __version__, "pid": os.getpid()})
    while True:
        try:
            msg = chan.receive()
        except ValueError:
            chan.send({"type": "error", "id": None, "message": "malformed request header", "kind": "internal"})
            return 2
        if msg is None or msg.get("op") == "quit":
            return 0
        if not isinstance(msg, dict):
            chan.send({"type": "error", "id": None, "message": "malformed request header", "kind": "internal"})
            return 2
        op = msg.get("op")
        try:
            if op == "colorize":
                handle_colorize(chan, engines, msg, cache)
            elif op == "lines":
                handle_lines(chan, msg)
            else:
                payload_sizes(msg)   # nothing is read for these: a payload here breaks the stream
                if any(msg.get(k) for k in PAYLOAD_KEYS):
                    raise ProtocolError(f"op {op!r} takes no payload")
                if op == "ping":
                    chan.send({"type": "pong", "id": msg.get("id")})
                elif op == "info":
                    chan.send({**info(), "id": msg.get("id")})
                else:
                    chan.send({"type": "error", "id": msg.get("id"), "message": f"unknown op {op!r}",
                               "kind": "internal"})
        except ProtocolError as e:
            chan.send({"type": "error", "id": msg.get("id"), "message": str(e), "kind": "internal"})
            return 2
        except UserError as e:
            chan.send({"type": "error", "id": msg.get("id"), "message": str(e), "kind": "user"})
        except MemoryError:
            chan.send({"type": "error", "id": msg.get("id"), "kind": "memory",
                       "message": "the worker ran out of memory: try a smaller working size"})
        except EOFError:
            return 0
        except Exception as e:  # a bug: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            chan.send({"type": "error", "id": msg.get("id"), "kind": "internal",
                       "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]})


def main() -> int:
    configure_worker()          # cores - 1 threads and a lower priority: Krita stays responsive
    # stdout carries the protocol only: anything a library prints goes to stderr.
    wout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    rin = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    return serve(rin, wout)


if __name__ == "__main__":
    sys.exit(main())
