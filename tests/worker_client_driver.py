"""Drives krita_alac.plugin.worker_client.WorkerClient under a QCoreApplication
with a real worker process (no Krita, nothing faked): run by
tests/test_worker_client.py with Debian's python3 (PyQt5, no numpy, like
Krita's Python).  Each scenario returns plain facts; every scenario also
reports how often each job was answered, which must be exactly once.

  python3 tests/worker_client_driver.py SCENARIO...   -> one JSON line
"""
import json
import os
import signal
import sys
import traceback

from PyQt5.QtCore import QCoreApplication, QElapsedTimer, QEventLoop, QTimer

from krita_alac.plugin import worker_client as wc

W, H = 80, 60
PAUSE = "KRITA_ALAC_WORKER_PAUSE"
app = QCoreApplication(sys.argv[:1])


def scene(color_left=(250, 10, 20)):
    """BGRA8 line art (a vertical bar) and hints (left and right dots)."""
    lines = bytearray(W * H * 4)
    hints = bytearray(W * H * 4)
    for y in range(H):
        for x in (39, 40):
            lines[(y * W + x) * 4:(y * W + x) * 4 + 4] = b"\x00\x00\x00\xff"
    for y in range(10, 20):
        for x in range(10, 20):
            r, g, b = color_left
            hints[(y * W + x) * 4:(y * W + x) * 4 + 4] = bytes((b, g, r, 255))
        for x in range(60, 70):
            hints[(y * W + x) * 4:(y * W + x) * 4 + 4] = bytes((250, 20, 10, 255))
    return bytes(lines), bytes(hints)


def px(payload, x, y):
    i = (y * W + x) * 4
    return list(payload[i:i + 4])


class Probe:
    """A client plus the record of everything it said."""

    def __init__(self, **kw):
        self.c = wc.WorkerClient(**kw)
        self.answers = {}        # rid -> list of ("result", facts) / ("failed", kind, message)
        self.states = []
        self.progress = {}
        self.written = []        # headers the client wrote to the worker
        self.c.result.connect(self._result)
        self.c.failed.connect(lambda rid, msg, kind: self.answers.setdefault(rid, []).append(["failed", kind, msg]))
        self.c.stateChanged.connect(self.states.append)
        self.c.progress.connect(lambda rid, v, t: self.progress.setdefault(rid, []).append(t))
        write = self.c._write

        def spy(header, payloads):
            self.written.append({k: v for k, v in header.items() if k != "engine"})
            write(header, payloads)
        self.c._write = spy

    def _result(self, rid, header, payload):
        if header.get("file"):
            with open(header["file"], "rb") as f:
                payload = f.read()
        self.answers.setdefault(rid, []).append(["result", {"left": px(payload, 5, 30), "right": px(payload, 75, 30),
                                                            "engine": header.get("engine")}])

    def colorize(self, color_left=(250, 10, 20), **kw):
        lines, hints = scene(color_left)
        if kw.pop("lines_in_file", False):
            path = self.c.temp_path(f"lines{len(self.written)}-{id(kw)}")
            with open(path, "wb") as f:
                f.write(lines)
            kw["lines_file"], lines = path, None
        return self.c.colorize(W, H, lines, kw.pop("hints", hints), {"engine": "flats"}, **kw)

    def wait(self, cond, ms=60000):
        loop = QEventLoop()
        clock = QElapsedTimer()
        clock.start()
        tick = QTimer()
        tick.start(20)
        while not cond() and clock.elapsed() < ms:
            loop.processEvents(QEventLoop.WaitForMoreEvents)
        tick.stop()
        return cond()

    def settle(self, ms):
        self.wait(lambda: False, ms)

    def answered(self, *rids):
        return lambda: all(r in self.answers for r in rids)

    def kill9(self):
        pid = self.c.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        return pid

    def finish(self, facts):
        """Stop the client and add the invariant facts."""
        facts["answer_counts"] = {str(k): len(v) for k, v in self.answers.items()}
        facts["pending_left"] = self.c.pending()
        facts["states"] = self.states
        self.c.kill_now()
        return facts


RED_BGRA, BLUE_BGRA = [20, 10, 250, 255], [250, 20, 10, 255]


def s_two_jobs():
    p = Probe()
    a, b = p.colorize(), p.colorize(color_left=(10, 250, 20))
    p.wait(p.answered(a, b))
    return p.finish({"a": p.answers[a], "b": p.answers[b], "progress_a": p.progress.get(a)})


def s_kill_starting():
    """kill -9 before the worker said ready: the client tries the next Python, the job runs there."""
    p = Probe()
    a = p.colorize()
    p.wait(lambda: p.c.pid() != 0, 10000)
    state = p.c.state
    killed = p.kill9()
    p.wait(p.answered(a))
    return p.finish({"state_at_kill": state, "killed": killed, "a": p.answers.get(a)})


def s_kill_ready():
    p = Probe()
    a = p.colorize()
    p.wait(p.answered(a))
    state = p.c.state
    p.kill9()
    p.wait(lambda: p.c.state == wc.STOPPED, 10000)
    after_kill = p.c.state
    b = p.colorize()
    p.wait(p.answered(b))
    return p.finish({"state_at_kill": state, "after_kill": after_kill, "a": p.answers[a][0][0], "b": p.answers[b]})


def s_kill_busy():
    """Killed while running the first of three jobs: that one fails "crash", the others run."""
    os.environ[PAUSE] = "1.5"
    p = Probe()
    a, b, c = p.colorize(), p.colorize(), p.colorize()
    p.wait(lambda: a in p.progress, 30000)
    state = p.c.state
    p.kill9()
    os.environ.pop(PAUSE)
    p.wait(p.answered(a, b, c))
    return p.finish({"state_at_kill": state, "a": p.answers.get(a), "b": p.answers.get(b), "c": p.answers.get(c)})


def s_kill_stopping():
    """stop() while a job runs (answered "stopped"), kill -9 while stopping, a job queued meanwhile runs."""
    os.environ[PAUSE] = "1.5"
    p = Probe()
    a = p.colorize()
    p.wait(lambda: a in p.progress, 30000)
    os.environ.pop(PAUSE)
    pid = p.c.pid()
    p.c.stop()
    state = p.c.state
    b = p.colorize()                 # asked for while stopping
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(p.answered(a, b))
    # stop() from READY sends quit; kill -9 during the grace period.
    p.c.stop()
    state2 = p.c.state
    p.kill9()
    p.wait(lambda: p.c.state == wc.STOPPED, 10000)
    return p.finish({"state_at_kill": state, "a": p.answers.get(a), "b": p.answers.get(b),
                     "state_at_kill2": state2, "after": p.c.state, "new_pid": pid != p.c.pid()})


def s_stop_starting():
    """stop() while the worker starts (e.g. another Python chosen): the job waits and runs on the next worker."""
    p = Probe()
    a = p.colorize()
    state = p.c.state
    p.c.stop()
    stopping = p.c.state
    p.wait(p.answered(a))
    return p.finish({"state_at_stop": state, "after_stop": stopping, "a": p.answers.get(a)})


def s_cancel():
    """Cancel while starting, while queued and while running; a timeout is a cancel with its own kind."""
    p = Probe()
    a = p.colorize()
    starting = p.c.state
    p.c.cancel(a)                               # while the worker starts
    p.wait(lambda: p.c.state == wc.READY, 60000)
    after_start = p.c.state
    os.environ[PAUSE] = "1.5"
    p.c.stop()
    p.wait(lambda: p.c.state == wc.STOPPED, 10000)
    b, c, d = p.colorize(), p.colorize(), p.colorize()
    p.wait(lambda: b in p.progress, 60000)
    os.environ.pop(PAUSE)
    p.c.cancel(c)                               # queued
    p.c.cancel(b, "no answer from the engine after 1 s", "timeout")   # running
    p.wait(p.answered(d))
    p.settle(300)
    return p.finish({"starting": starting, "after_start": after_start, "a": p.answers.get(a),
                     "b": p.answers.get(b), "c": p.answers.get(c), "d": p.answers.get(d)})


def s_need_lines():
    """Skipping unchanged line art, and the transparent resend when the worker lacks it."""
    p = Probe()
    a = p.colorize(lines_digest="D1")
    p.wait(p.answered(a))
    b = p.colorize(color_left=(10, 250, 20), lines_digest="D1")       # unchanged: not sent
    p.wait(p.answered(b))
    # A request the worker refuses before keeping its line art (hints outside the canvas)...
    c = p.colorize(lines_digest="D2", hints_rect=(70, 0, 20, 10), hints=b"\0" * (20 * 10 * 4))
    p.wait(p.answered(c))
    # ...so it does not hold D2: it answers need_lines and the client sends the lines after all.
    d = p.colorize(lines_digest="D2", lines_in_file=True)
    p.wait(p.answered(d))
    files_left = os.listdir(os.path.dirname(p.c.temp_path("x")))
    # A fresh worker holds nothing: the client sends the line art at once.
    p.kill9()
    p.wait(lambda: p.c.state == wc.STOPPED, 10000)
    e = p.colorize(lines_digest="D2")
    p.wait(p.answered(e))
    sent = [{"lines": h.get("lines"), "file": bool(h.get("lines_file")), "digest": h.get("lines_digest")}
            for h in p.written if h.get("op") == "colorize"]
    return p.finish({"a": p.answers[a], "b": p.answers[b], "c": p.answers[c], "d": p.answers[d],
                     "e": p.answers[e], "sent": sent, "files_left": files_left})


def s_cropped_hints():
    """Hints cropped to their bounds give the same result as full-canvas hints."""
    p = Probe()
    _, hints = scene()
    x0, y0, x1, y1 = 10, 10, 70, 20
    crop = b"".join(hints[(y * W + x0) * 4:(y * W + x1) * 4] for y in range(y0, y1))
    a = p.colorize(hints=crop, hints_rect=(x0, y0, x1 - x0, y1 - y0))
    result = p.c.temp_path("result-a")
    b = p.colorize(result_file=result)
    p.wait(p.answered(a, b))
    return p.finish({"a": p.answers[a], "b": p.answers[b], "result_file_removed": not os.path.exists(result)})


def s_start_timeout():
    """A Python that never says ready is given up on; the next one runs the job."""
    hang = os.environ["DRIVER_HANGING_PYTHON"]
    real = os.environ["KRITA_ALAC_PYTHON"]
    os.environ["KRITA_ALAC_PYTHON"] = hang
    try:
        p = Probe(start_timeout_ms=1500)
        a = p.colorize()
        p.wait(p.answered(a), 60000)
    finally:
        os.environ["KRITA_ALAC_PYTHON"] = real
    return p.finish({"a": p.answers.get(a), "tried": [[os.path.basename(x), why] for x, why in p.c._tried]})


def s_no_python():
    """No usable Python at all: every queued job fails once with "setup"."""
    saved = {k: os.environ.get(k) for k in ("PATH", "KRITA_ALAC_PYTHON")}
    os.environ["PATH"] = "/nonexistent"
    os.environ["KRITA_ALAC_PYTHON"] = os.environ["DRIVER_BARE_PYTHON"]
    try:
        p = Probe()
        a, b = p.colorize(), p.colorize()
        p.wait(p.answered(a, b), 60000)
    finally:
        for k, v in saved.items():
            os.environ[k] = v
    return p.finish({"a": p.answers.get(a), "b": p.answers.get(b), "state": p.c.state})


def main(names):
    out = {}
    for name in names:
        try:
            out[name] = globals()["s_" + name]()
        except Exception:  # noqa: BLE001  reported to pytest
            out[name] = {"error": traceback.format_exc()}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
