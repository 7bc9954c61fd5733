"""Faults inside real Krita (kritarunner -s krita_faults -f run): the worker
stopped or killed while jobs run and wait, a script's timeout, a cancel
while the worker starts.  Driven by tests/test_krita_faults.py, with
KRITA_ALAC_WORKER_PAUSE set so that every job runs long enough to act on.

Every job here goes through ColorizeJob and the shared worker client, as the
docker, a second window's docker and scripts do; each scenario reports how
many times each job ended (done or failed), which must be once.
"""
import os
import signal
import time

from PyQt5.QtCore import QElapsedTimer, QEventLoop, QTimer

import krita_alac
from krita_alac.engine.errors import UserError
from krita_alac.plugin import krita_api, worker_client
from krita_suite import BLUE, RED, add_layer, box_lines, dots, new_doc, put, read8, rgb_at, run_scenarios

W = H = 128


def page():
    doc = new_doc(W, H)
    lines = add_layer(doc, "Lines")
    put(lines, box_lines(W, H, [(30, 30, 100, 100)]), W, H)
    hints = add_layer(doc, "Hints")
    put(hints, dots(W, H, {(64, 64): RED, (10, 10): BLUE}), W, H)
    return doc, lines, hints


def spin(cond, ms):
    loop = QEventLoop()
    clock = QElapsedTimer()
    clock.start()
    tick = QTimer()
    tick.start(20)
    while not cond() and clock.elapsed() < ms:
        loop.processEvents(QEventLoop.WaitForMoreEvents)
    tick.stop()
    return cond()


class Tracked:
    """A started job and every way it ended."""

    def __init__(self, job):
        self.job, self.ends, self.progress = job, [], []
        job.done.connect(lambda node: self.ends.append(["done", node.name()]))
        job.failed.connect(lambda msg, kind: self.ends.append(["failed", kind, msg]))
        job.progress.connect(lambda v, t: self.progress.append(t))

    @classmethod
    def start(cls, doc, lines, hints, timeout=None):
        t = cls(krita_api.ColorizeJob(doc, lines, hints, "flats").prepare())
        t.job.start(timeout)
        return t


def names(doc):
    return [n.name() for n in doc.rootNode().childNodes()]


def s_stop_during_run():
    """The setup dialog's "Use" (client.stop()) while a job runs and another waits."""
    client = worker_client.shared()
    doc, lines, hints = page()
    before = names(doc)
    a = Tracked.start(doc, lines, hints)
    b = Tracked.start(doc, lines, hints)
    spin(lambda: a.progress, 60000)
    state = client.state
    client.stop()
    spin(lambda: a.ends and b.ends, 60000)
    spin(lambda: False, 500)          # nothing more may arrive
    out = {"state_at_stop": state, "a": a.ends, "b": b.ends, "layers": names(doc), "before": before}
    res = doc.nodeByName("Flats")
    out["b_pixel"] = rgb_at(read8(res, doc), W, 64, 70) if res else None
    doc.close()
    return out


def s_crash_during_queue():
    """kill -9 of the worker while one job runs and three wait (two 'dockers' and a wait=False script)."""
    client = worker_client.shared()
    doc, lines, hints = page()
    lines2 = add_layer(doc, "Lines 2")
    put(lines2, box_lines(W, H, [(10, 10, 50, 50)]), W, H)
    a = Tracked.start(doc, lines, hints)
    b = Tracked.start(doc, lines, hints)
    c = Tracked(krita_alac.colorize(doc, lines2, hints, engine="flats", wait=False))
    spin(lambda: a.progress, 60000)
    pid = client.pid()
    os.kill(pid, signal.SIGKILL)
    spin(lambda: a.ends and b.ends and c.ends, 120000)
    spin(lambda: False, 500)
    out = {"a": a.ends, "b": b.ends, "c": c.ends, "new_pid": client.pid() not in (0, pid),
           "layers": names(doc)}
    doc.close()
    return out


def s_script_timeout():
    """colorize(wait=True, timeout=...) that times out: an error now, and no layer later."""
    doc, lines, hints = page()
    before = names(doc)
    t0 = time.perf_counter()
    try:
        krita_alac.colorize(doc, lines, hints, engine="flats", timeout=0.3)
        err = None
    except UserError as e:
        err = str(e)
    took = time.perf_counter() - t0
    job = krita_api.colorize.last_job
    spin(lambda: False, 3000)          # longer than the worker's pause: a late answer would be written now
    out = {"raised": err, "returned_before_answer": took < 2.0, "layers": names(doc), "before": before,
           "pending": worker_client.shared().pending(), "job_rid": job.rid}
    # wait=False with a timeout ends the same way.
    t = Tracked(krita_alac.colorize(doc, lines, hints, engine="flats", wait=False, timeout=0.3))
    spin(lambda: t.ends, 10000)
    spin(lambda: False, 3000)
    out["no_wait"] = t.ends
    out["layers_after_no_wait"] = names(doc)
    doc.close()
    return out


def s_cancel_while_starting():
    client = worker_client.shared()
    client.kill_now()
    doc, lines, hints = page()
    a = Tracked.start(doc, lines, hints)
    state = client.state
    a.job.cancel()
    spin(lambda: client.state == "ready", 60000)
    spin(lambda: False, 2500)
    out = {"state_at_cancel": state, "a": a.ends, "layers": names(doc), "state_after": client.state}
    b = Tracked.start(doc, lines, hints)
    spin(lambda: b.ends, 60000)
    out["b"] = b.ends
    doc.close()
    return out


def s_send_less():
    """Two runs on the same line art: the second sends no line art (the worker holds
    it by digest), and hints go cropped to the hint layer's bounds."""
    client = worker_client.shared()
    doc, lines, hints = page()
    put(lines, box_lines(W, H, [(24, 24, 104, 104)]), W, H)   # line art the worker has not seen yet
    sent = []
    write = client._write

    def spy(header, payloads):
        sent.append({k: header.get(k) for k in ("lines", "lines_file", "lines_digest", "hints", "hints_rect",
                                                "hints_file", "result_file")})
        write(header, payloads)
    client._write = spy
    try:
        first = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
        put(hints, dots(W, H, {(64, 64): BLUE, (10, 10): BLUE}), W, H)
        second = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
        px = read8(second, doc)
    finally:
        client._write = write
    out = {"sent": [{k: bool(v) if k.endswith("_file") else v for k, v in h.items()} for h in sent],
           "same_digest": sent[0]["lines_digest"] == sent[1]["lines_digest"] if len(sent) == 2 else None,
           "inside": rgb_at(px, W, 64, 70), "first": first.name(), "files_left": sorted(
               os.listdir(os.path.dirname(client.temp_path("x"))))}
    doc.close()
    return out


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}


def run(arg=None):
    run_scenarios(SCENARIOS)
