"""The worker process's wire protocol, driven the way the plugin drives it."""
import json
import subprocess
import sys

import numpy as np
import pytest


class Worker:
    def __init__(self, env=None):
        self.p = subprocess.Popen([sys.executable, "-m", "krita_alac.worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.ready = self.read()

    def send(self, header, *payloads):
        self.p.stdin.write(json.dumps(header).encode() + b"\n" + b"".join(payloads))
        self.p.stdin.flush()

    def read(self):
        line = self.p.stdout.readline()
        assert line, self.p.stderr.read().decode()
        msg = json.loads(line)
        if msg.get("bytes"):
            msg["payload"] = self.p.stdout.read(msg["bytes"])
        return msg

    def answer(self):
        """Skip progress messages; return the final one."""
        while True:
            m = self.read()
            if m["type"] != "progress":
                return m

    def close(self):
        self.send({"op": "quit"})
        assert self.p.wait(timeout=30) == 0


@pytest.fixture
def worker(store_home):
    import os
    w = Worker(dict(os.environ, KRITA_ALAC_HOME=str(store_home)))
    yield w
    if w.p.poll() is None:
        w.p.kill()


def bgra(rgba):
    return np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).tobytes()


def scene(h=60, w=80):
    lines = np.zeros((h, w, 4), np.uint8)
    lines[:, 39:41] = (0, 0, 0, 255)
    hints = np.zeros((h, w, 4), np.uint8)
    hints[10:20, 10:20] = (250, 10, 20, 255)
    hints[10:20, 60:70] = (10, 20, 250, 255)
    return lines, hints


def test_colorize_over_the_wire(worker):
    assert worker.ready["type"] == "ready"
    lines, hints = scene()
    worker.send({"op": "colorize", "id": 1, "width": 80, "height": 60, "format": "BGRA8",
                 "lines": lines.nbytes, "hints": hints.nbytes, "engine": "flats"}, bgra(lines), bgra(hints))
    progress = []
    while True:
        m = worker.read()
        if m["type"] != "progress":
            break
        progress.append(m["value"])
    assert progress and progress[-1] == 1.0
    assert m["type"] == "result" and m["id"] == 1 and m["engine"] == "Flats" and m["device"] == "CPU"
    out = np.frombuffer(m["payload"], np.uint8).reshape(60, 80, 4)
    assert tuple(out[30, 5]) == (20, 10, 250, 255)      # B, G, R, A of the red hint
    assert tuple(out[30, 75]) == (250, 20, 10, 255)
    worker.close()


def test_user_errors_keep_the_worker_serving(worker):
    lines, _ = scene()
    worker.send({"op": "colorize", "id": 2, "width": 80, "height": 60, "lines": lines.nbytes, "hints": 0,
                 "engine": "flats"}, bgra(lines))
    m = worker.answer()
    assert m == {"type": "error", "id": 2, "kind": "user",
                 "message": "no hints: paint color strokes on the hint layer (opaque pixels inside the regions)"}
    # Wrong byte count: refused, and the stream stays in step.
    worker.send({"op": "colorize", "id": 3, "width": 80, "height": 60, "lines": 100, "hints": 0}, b"\0" * 100)
    m = worker.answer()
    assert m["kind"] == "user" and "expected 19200 bytes for 80x60, got 100" in m["message"]
    worker.send({"op": "nope", "id": 4})
    assert worker.answer()["message"] == "unknown op 'nope'"
    worker.send({"op": "ping", "id": 5})
    assert worker.answer() == {"type": "pong", "id": 5}
    worker.close()


def test_lines_over_the_wire(worker):
    pic = np.full((40, 50, 4), 255, np.uint8)
    pic[10:30, 10:40, :3] = (200, 30, 30)
    worker.send({"op": "lines", "id": 6, "width": 50, "height": 40, "format": "RGBA8", "image": pic.nbytes},
                pic.tobytes())
    m = worker.answer()
    assert m["type"] == "result" and m["engine"] == "Lines (XDoG)"
    out = np.frombuffer(m["payload"], np.uint8).reshape(40, 50, 4)
    assert out[20, 10, 3] > 128 and out[20, 25, 3] == 0 and out[2, 2, 3] == 0
    worker.close()


def test_info_lists_models_and_providers(worker):
    worker.send({"op": "info", "id": 7})
    m = worker.answer()
    assert m["type"] == "info" and m["models"] == [] and "CPUExecutionProvider" in m["providers"]
    worker.close()
