"""The inference worker: `python -m krita_alac.engine.worker`, one per Krita session.

It runs in its own Python environment, so a crash or out-of-memory here never
touches Krita.  It keeps the model loaded and the sketch features of the last
line art cached between requests.

Wire format (both directions): one JSON header line, then the raw bytes the
header announces.

  -> {"op": "colorize", "id": 7, "width": W, "height": H, "format": "BGRA8"|"RGBA8",
      "lines": nbytes, "hints": nbytes|0, "engine": ..., "size": ..., ...request fields}
     <lines bytes><hints bytes>
  -> {"op": "lines", "id": 8, "width": W, "height": H, "format": ..., "image": nbytes,
      "thickness": 1.0, "transparent": true, "method": "xdog"}
     <image bytes>                                   (answered with a "result" like colorize)
  -> {"op": "ping"} | {"op": "info"} | {"op": "quit"}

  <- {"type": "ready", "version": ..., "pid": ...}           once, at start
  <- {"type": "progress", "id": 7, "value": 0.5, "text": "colors"}
  <- {"type": "result", "id": 7, "width": W, "height": H, "format": ..., "bytes": n,
      "engine": ..., "device": ..., "seconds": ..., "cached": bool, "warnings": [...]}
     <n bytes of pixels, same format as the request>
  <- {"type": "error", "id": 7, "message": "one line", "kind": "user"|"internal"|"memory"}
  <- {"type": "pong"} | {"type": "info", ...}
"""
from __future__ import annotations

import json
import os
import sys
import traceback

from .limits import MAX_CANVAS_PIXELS

PIXEL_FORMATS = ("BGRA8", "RGBA8")
REQUEST_FIELDS = ("engine", "size", "raw", "backend", "device", "i2v", "snap", "fill", "gap")


class Channel:
    def __init__(self, rin, wout):
        self.rin, self.wout = rin, wout

    def send(self, header: dict, payload: bytes = b""):
        self.wout.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        if payload:
            self.wout.write(payload)
        self.wout.flush()

    def receive(self):
        line = self.rin.readline()
        if not line:
            return None
        return json.loads(line)

    def read_exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            b = self.rin.read(left)
            if not b:
                raise EOFError("input closed in the middle of a request")
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)


def _pixels(chan, msg, key):
    import numpy as np
    from .errors import UserError
    n = int(msg.get(key) or 0)
    if n == 0:
        return None
    buf = chan.read_exact(n)
    w, h = int(msg["width"]), int(msg["height"])
    if n != w * h * 4:
        raise UserError(f"{key}: expected {w * h * 4} bytes for {w}x{h}, got {n}")
    a = np.frombuffer(buf, np.uint8).reshape(h, w, 4)
    return a[..., [2, 1, 0, 3]] if msg.get("format", "BGRA8") == "BGRA8" else a


def handle_colorize(chan, engines, msg):
    import numpy as np
    from .errors import UserError
    from .request import ColorizeRequest
    rid = msg.get("id")
    fmt = msg.get("format", "BGRA8")
    # Read the whole payload first so the stream stays in step even on bad input.
    w, h = int(msg.get("width", 0)), int(msg.get("height", 0))
    lines = _pixels(chan, msg, "lines")
    hints = _pixels(chan, msg, "hints")
    if fmt not in PIXEL_FORMATS:
        raise UserError(f"unknown pixel format {fmt!r}")
    if lines is None or w <= 0 or h <= 0:
        raise UserError("the line-art layer is empty")
    if w * h > MAX_CANVAS_PIXELS:
        raise UserError(f"canvas {w}x{h} is too large")
    kw = {k: msg[k] for k in REQUEST_FIELDS if k in msg and msg[k] is not None}
    req = ColorizeRequest(lines=np.ascontiguousarray(lines), hints=hints, **kw)

    def progress(value, text):
        chan.send({"type": "progress", "id": rid, "value": round(float(value), 3), "text": text})

    res = engines.colorize(req, progress)
    out = res.rgba if fmt == "RGBA8" else res.rgba[..., [2, 1, 0, 3]]
    payload = np.ascontiguousarray(out).tobytes()
    chan.send({"type": "result", "id": rid, "width": w, "height": h, "format": fmt, "bytes": len(payload),
               "engine": res.engine, "device": res.device, "seconds": round(res.seconds, 4),
               "cached": res.cached, "warnings": res.warnings}, payload)


def handle_lines(chan, msg):
    """Line art from a colored layer (XDoG): answered like a colorize result."""
    import time
    import numpy as np
    from .errors import UserError
    from .lines import extract_lines
    rid = msg.get("id")
    fmt = msg.get("format", "BGRA8")
    image = _pixels(chan, msg, "image")
    if fmt not in PIXEL_FORMATS:
        raise UserError(f"unknown pixel format {fmt!r}")
    if image is None:
        raise UserError("the layer is empty: nothing to extract lines from")
    t0 = time.perf_counter()
    out = extract_lines(np.ascontiguousarray(image), msg.get("method", "xdog"), float(msg.get("thickness", 1.0)),
                        transparent=bool(msg.get("transparent", True)))
    if fmt == "BGRA8":
        out = out[..., [2, 1, 0, 3]]
    payload = np.ascontiguousarray(out).tobytes()
    chan.send({"type": "result", "id": rid, "width": int(msg["width"]), "height": int(msg["height"]),
               "format": fmt, "bytes": len(payload), "engine": "Lines (XDoG)", "device": "CPU",
               "seconds": round(time.perf_counter() - t0, 4), "cached": False, "warnings": []}, payload)


def info():
    from .. import __version__
    from . import store
    d = {"type": "info", "version": __version__, "python": sys.version.split()[0], "executable": sys.executable,
         "models": [{"id": m.id, "name": m.label} for m in store.installed_models()]}
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
    chan.send({"type": "ready", "version": __version__, "pid": os.getpid()})
    while True:
        try:
            msg = chan.receive()
        except ValueError:
            chan.send({"type": "error", "id": None, "message": "malformed request header", "kind": "internal"})
            return 2
        if msg is None or msg.get("op") == "quit":
            return 0
        op = msg.get("op")
        try:
            if op == "colorize":
                handle_colorize(chan, engines, msg)
            elif op == "lines":
                handle_lines(chan, msg)
            elif op == "ping":
                chan.send({"type": "pong", "id": msg.get("id")})
            elif op == "info":
                chan.send({**info(), "id": msg.get("id")})
            else:
                chan.send({"type": "error", "id": msg.get("id"), "message": f"unknown op {op!r}", "kind": "internal"})
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
    # stdout carries the protocol only: anything a library prints goes to stderr.
    wout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    rin = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    return serve(rin, wout)


if __name__ == "__main__":
    sys.exit(main())
