"""Krita's side of bench/memory.py (kritarunner -s krita_memory -f run); it lives here
because only the plugin and tests/ may import krita (tests/test_layout.py).

Builds an N x N document from raw BGRA files (a band at a time, so the setup
itself does not raise the peak), warms the worker on a small page, then
resets the kernel's peak-RSS mark and colorizes the big page once through
krita_alac.colorize, as the docker does.  Writes plain facts as JSON.
"""
import gc
import json
import os
import time
import traceback

from krita import Krita
from PyQt5.QtCore import QByteArray

import krita_alac
from krita_alac.plugin import krita_api, worker_client


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def load(node, path, n):
    rows = max(1, (16 << 20) // (n * 4))
    with open(path, "rb") as f:
        for y in range(0, n, rows):
            k = min(rows, n - y)
            node.setPixelData(QByteArray(f.read(n * 4 * k)), 0, y, n, k)


def small_warmup():
    doc = Krita.instance().createDocument(64, 64, "warm", "RGBA", "U8", "", 72.0)
    lines = doc.createNode("Lines", "paintlayer")
    doc.rootNode().addChildNode(lines, None)
    hints = doc.createNode("Hints", "paintlayer")
    doc.rootNode().addChildNode(hints, lines)
    row = b"\x00\x00\x00\xff" * 64
    lines.setPixelData(QByteArray(row * 2), 0, 31, 64, 2)
    hints.setPixelData(QByteArray(b"\x20\x20\xe0\xff" * 16), 4, 4, 4, 4)
    krita_alac.colorize(doc, lines, hints, engine="flats", timeout=300)
    doc.close()


def run(arg=None):
    with open(os.environ["KRITA_ALAC_BENCH"]) as f:
        cfg = json.load(f)
    out = {}
    try:
        n = cfg["size"]
        small_warmup()
        doc = Krita.instance().createDocument(n, n, "memory", "RGBA", "U8", "", 72.0)
        lines = doc.createNode("Lines", "paintlayer")
        doc.rootNode().addChildNode(lines, None)
        hints = doc.createNode("Hints", "paintlayer")
        doc.rootNode().addChildNode(hints, lines)
        load(lines, cfg["lines"], n)
        load(hints, cfg["hints"], n)
        doc.waitForDone()
        gc.collect()
        time.sleep(1.0)
        rss_before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")             # reset VmHWM to the current RSS
        t0 = time.perf_counter()
        res = krita_alac.colorize(doc, lines, hints, engine=cfg["engine"], force=True, timeout=1500)
        seconds = time.perf_counter() - t0
        hwm = status("VmHWM")
        job = krita_api.colorize.last_job
        out = {"rss_before": rss_before, "hwm": hwm, "rss_after": status("VmRSS"), "seconds": seconds,
               "engine": job.reply.get("engine"), "layer": res.name(), "timings": job.timings}
        doc.close()
    except Exception:  # noqa: BLE001  reported by bench/memory.py
        out = {"error": traceback.format_exc()}
    with open(cfg["out"], "w") as f:
        json.dump(out, f)
    worker_client.shared().kill_now()
