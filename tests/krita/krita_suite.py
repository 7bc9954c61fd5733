"""Scenarios run inside real Krita (kritarunner), one Krita start for all.

Driven by tests/test_krita.py:
  KRITA_ALAC_SUITE=<config.json> kritarunner -s krita_suite -f run
The config names the scenarios, an output folder and the ONNX model; each
scenario returns plain facts (layer order, pixel values, hashes, timings) that
the pytest side asserts on.  Everything goes through krita_alac.colorize /
ColorizeJob (krita_alac.extract_lines / LinesJob) and the real worker
process, as the docker does.
"""
import hashlib
import json
import os
import signal
import sys
import time
import traceback

from krita import Krita, Selection
from PyQt5.QtCore import QByteArray, QElapsedTimer, QEventLoop, QTimer

import krita_alac
from krita_alac.plugin import krita_api, krita_io, settings, worker_client
from krita_alac.engine.errors import UserError

INK = b"\x00\x00\x00\xff"
RED = (230, 40, 30)      # RGB
BLUE = (30, 60, 220)
CFG = {}


# -- building documents ----------------------------------------------------
def new_doc(w, h, model="RGBA", depth="U8", profile=""):
    d = Krita.instance().createDocument(w, h, "krita_alac test", model, depth, profile, 72.0)
    return d


def add_layer(doc, name, parent=None, above=None):
    n = doc.createNode(name, "paintlayer")
    (parent or doc.rootNode()).addChildNode(n, above)
    return n


def box_lines(w, h, boxes, width=3):
    """BGRA8 bytes: transparent paper with the outlines of axis-aligned boxes."""
    buf = bytearray(w * h * 4)
    ink_row = INK * w
    for (x0, y0, x1, y1) in boxes:
        for y in range(max(0, y0), min(h, y1 + 1)):
            if y < y0 + width or y > y1 - width:
                a, b = max(0, x0), min(w, x1 + 1)
                buf[(y * w + a) * 4:(y * w + b) * 4] = ink_row[: (b - a) * 4]
            else:
                for xs in (x0, x1 - width + 1):
                    a, b = max(0, xs), min(w, xs + width)
                    if b > a:
                        buf[(y * w + a) * 4:(y * w + b) * 4] = ink_row[: (b - a) * 4]
    return bytes(buf)


def dots(w, h, spots, r=4):
    """BGRA8 bytes: square color dots {(x, y): (R, G, B)}."""
    buf = bytearray(w * h * 4)
    for (cx, cy), (R, G, B) in spots.items():
        px = bytes((B, G, R, 255)) * (2 * r)
        for y in range(cy - r, cy + r):
            buf[(y * w + cx - r) * 4:(y * w + cx + r) * 4] = px
    return bytes(buf)


def put(node, bgra8, w, h):
    """Write sRGB BGRA8 into a node of any color space (test setup only)."""
    data = krita_io.convert_bytes(bgra8, w, h, krita_io.SRGB8, krita_io.color_space(node))
    node.setPixelData(QByteArray(data), 0, 0, w, h)


def rgb_at(bgra, w, x, y):
    i = (y * w + x) * 4
    b, g, r, a = bgra[i:i + 4]
    return [r, g, b, a]


def raw_hash(node, doc):
    return hashlib.sha1(bytes(node.pixelData(0, 0, doc.width(), doc.height()))).hexdigest()


def siblings(node):
    return [n.name() for n in node.parentNode().childNodes()]   # bottom first


def place(result, line):
    """Facts about where the result went relative to the line art."""
    names = [krita_io.node_id(n) for n in line.parentNode().childNodes()]
    return {"same_parent": krita_io.node_id(result.parentNode()) == krita_io.node_id(line.parentNode()),
            "directly_below": names.index(krita_io.node_id(result)) == names.index(krita_io.node_id(line)) - 1}


def read8(node, doc):
    return krita_io.read_bgra8(node, (0, 0, doc.width(), doc.height()))


def scene(doc_args=(256, 256), **kw):
    """Background + Lines (one box) + Hints (red inside, blue outside)."""
    w, h = doc_args[:2]
    doc = new_doc(*doc_args, **kw)
    lines = add_layer(doc, "Lines")
    put(lines, box_lines(w, h, [(60, 60, 190, 190)]), w, h)
    hints = add_layer(doc, "Hints")
    hints_bgra = dots(w, h, {(120, 120): RED, (20, 20): BLUE})
    return doc, lines, hints, hints_bgra


def expect_error(fn):
    try:
        fn()
    except UserError as e:
        return {"type": type(e).__name__, "message": str(e)}
    return None


# -- scenarios ----------------------------------------------------------------
def s_rgba8():
    w = h = 256
    doc, lines, hints, hb = scene()
    put(hints, hb, w, h)
    before = {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    job = krita_api.colorize.last_job
    px = read8(res, doc)
    facts = {"name": res.name(), "type": res.type(), "order": siblings(lines), **place(res, lines),
             "inside": rgb_at(px, w, 120, 140), "outside": rgb_at(px, w, 10, 240), "bytes": len(px),
             "engine": job.reply.get("engine"), "device": job.reply.get("device"),
             "depth": res.colorDepth(), "notes": job.notes}
    first_id = krita_io.node_id(res)
    res2 = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    facts["rerun_order"] = siblings(lines)
    facts["rerun_replaced"] = krita_io.find_node(doc, first_id) is None and krita_io.node_id(res2) != first_id
    res2.setName("My flats")                    # the artist keeps this one
    res3 = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    facts["after_rename_order"] = siblings(lines)
    facts["after_rename_kept"] = krita_io.find_node(doc, krita_io.node_id(res2)) is not None
    res3.setLocked(True)
    res4 = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    facts["after_lock_kept"] = krita_io.find_node(doc, krita_io.node_id(res3)) is not None
    facts["after_lock_order"] = siblings(lines)
    facts["sources_unchanged"] = before == {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}
    path = os.path.join(CFG["out"], "rgba8.kra")
    doc.saveAs(path)
    doc.waitForDone()
    facts["records"] = krita_api.load_records(doc)
    lines_id, res4_id = krita_io.node_id(lines), krita_io.node_id(res4)
    doc.close()
    re = Krita.instance().openDocument(path)
    rl = krita_io.find_node(re, lines_id)
    rr = krita_io.find_node(re, res4_id)
    facts["reopened"] = {"order": siblings(rl), "result_found": rr is not None,
                         "record": krita_api.load_records(re).get(lines_id, {}).get("result") == res4_id,
                         "inside": rgb_at(read8(rr, re), w, 120, 140), **place(rr, rl)}
    re.close()
    return facts


def s_rgba16():
    w = h = 256
    doc, lines, hints, hb = scene((w, h), model="RGBA", depth="U16", profile="sRGB-elle-V2-g10.icc")
    put(hints, hb, w, h)
    before = {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    px = read8(res, doc)
    out = {"space": krita_io.color_space(res), "doc_space": krita_io.color_space(doc), **place(res, lines),
           "inside": rgb_at(px, w, 120, 140), "outside": rgb_at(px, w, 10, 240),
           "sources_unchanged": before == {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}}
    doc.close()
    return out


def s_graya():
    w = h = 256
    doc, lines, hints, hb = scene((w, h), model="GRAYA", depth="U8", profile="")
    hints.setColorSpace(*krita_io.SRGB8)          # colored hints in a gray document
    put(hints, hb, w, h)
    before = {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    raw = bytes(res.pixelData(0, 0, w, h))
    expect = {k: list(krita_io.convert_bytes(bytes((c[2], c[1], c[0], 255)), 1, 1, krita_io.SRGB8,
                                             krita_io.color_space(doc))) for k, c in (("red", RED), ("blue", BLUE))}
    out = {"space": krita_io.color_space(res), "hint_space": krita_io.color_space(hints), **place(res, lines),
           "raw_bytes_per_px": len(raw) // (w * h), "inside_gray": list(raw[(140 * w + 120) * 2:(140 * w + 120) * 2 + 2]),
           "outside_gray": list(raw[(240 * w + 10) * 2:(240 * w + 10) * 2 + 2]), "expect": expect,
           "sources_unchanged": before == {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}}
    doc.close()
    return out


def s_offset_group():
    """Line art moved by an offset (partly off canvas) inside a group, at the bottom of it."""
    w = h = 256
    doc = new_doc(w, h)
    group = doc.createGroupLayer("Inks")
    doc.rootNode().addChildNode(group, None)
    lines = add_layer(doc, "Lines", parent=group)
    put(lines, box_lines(w, h, [(60, 60, 190, 190)]), w, h)
    lines.move(100, 0)                                  # box now spans x=160..290, beyond the canvas
    doc.waitForDone()
    hints = add_layer(doc, "Hints")
    put(hints, dots(w, h, {(220, 120): RED, (40, 40): BLUE}), w, h)
    b = lines.bounds()
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    px = read8(res, doc)
    out = {"bounds": [b.x(), b.y(), b.width(), b.height()], "group_children": siblings(lines), **place(res, lines),
           "inside": rgb_at(px, w, 220, 140), "left_of_box": rgb_at(px, w, 100, 140), "bytes": len(px),
           "result_bounds_in_canvas": res.bounds().right() < w}
    doc.close()
    # A group layer as line art is read through its projection (a fresh group:
    # the one above now also holds the colors).
    doc = new_doc(w, h)
    group = doc.createGroupLayer("Inks")
    doc.rootNode().addChildNode(group, None)
    inner = add_layer(doc, "Lines", parent=group)
    put(inner, box_lines(w, h, [(60, 60, 190, 190)]), w, h)
    hints = add_layer(doc, "Hints")
    put(hints, dots(w, h, {(120, 120): RED, (20, 20): BLUE}), w, h)
    doc.refreshProjection()
    res_g = krita_alac.colorize(doc, group, hints, engine="flats", timeout=120)
    pg = read8(res_g, doc)
    out["group_as_lines"] = {"order": [n.name() for n in doc.rootNode().childNodes()], **place(res_g, group),
                             "inside": rgb_at(pg, w, 120, 140), "outside": rgb_at(pg, w, 10, 240)}
    doc.close()
    return out


def s_selection():
    w = h = 256
    doc, lines, hints, hb = scene()
    put(hints, hb, w, h)
    sel = Selection()
    sel.select(100, 100, 120, 40, 255)    # inside the box and across its right edge
    doc.setSelection(sel)
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    job = krita_api.colorize.last_job
    px = read8(res, doc)
    b = res.bounds()
    out = {"rect": list(job.rect), "bounds": [b.x(), b.y(), b.width(), b.height()],
           "in_sel": rgb_at(px, w, 120, 120), "out_sel": rgb_at(px, w, 120, 170), "far": rgb_at(px, w, 10, 10)}
    # A selection holding no ink at all (inside one region) is fine too.
    sel_in = Selection()
    sel_in.select(100, 100, 40, 40, 255)
    doc.setSelection(sel_in)
    inner = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    out["no_ink_selection"] = rgb_at(read8(inner, doc), w, 120, 120)
    # Recolor part of an existing result: outside the new selection the old colors stay.
    doc.setSelection(None)
    full = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    put(hints, dots(w, h, {(120, 120): BLUE, (20, 20): BLUE}), w, h)
    sel2 = Selection()
    sel2.select(60, 60, 130, 60, 255)   # top part of the box only
    doc.setSelection(sel2)
    part = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    pp = read8(part, doc)
    out["partial"] = {"replaced_full": krita_io.find_node(doc, krita_io.node_id(full)) is None,
                      "top": rgb_at(pp, w, 120, 100), "bottom": rgb_at(pp, w, 120, 170),
                      "outside_box": rgb_at(pp, w, 10, 240)}
    doc.close()
    return out


def s_onnx():
    w = h = 256
    doc, lines, hints, hb = scene()
    put(hints, hb, w, h)
    before = raw_hash(lines, doc)
    res = krita_alac.colorize(doc, lines, hints, engine=CFG["onnx"], size=256, timeout=300)
    job = krita_api.colorize.last_job
    px = read8(res, doc)
    alphas = set(px[3::4])
    out = {"name": res.name(), "engine": job.reply.get("engine"), "device": job.reply.get("device"),
           **place(res, lines), "bytes": len(px), "alpha_values": sorted(alphas)[:5],
           "inside": rgb_at(px, w, 120, 140), "sources_unchanged": before == raw_hash(lines, doc),
           "seconds": job.reply.get("seconds")}
    # Snap-to-flats goes through the same path.
    snapped = krita_alac.colorize(doc, lines, hints, engine=CFG["onnx"], size=256, snap=True, timeout=300)
    out["snap_engine"] = krita_api.colorize.last_job.reply.get("engine")
    out["snap_replaced"] = krita_io.find_node(doc, krita_io.node_id(res)) is None and snapped is not None
    doc.close()
    return out


def s_auto_colors():
    """A hint-free generator (a tiny cycle-open, by its file): its own layer name."""
    w = h = 256
    doc, lines, hints, hb = scene()
    put(hints, hb, w, h)
    res = krita_alac.colorize(doc, lines, hints, engine=CFG["cycle_onnx"], timeout=300)
    job = krita_api.colorize.last_job
    out = {"name": res.name(), "engine": job.reply.get("engine"), **place(res, lines),
           "alpha_values": sorted(set(read8(res, doc)[3::4]))[:5]}
    again = krita_alac.colorize(doc, lines, hints, engine=CFG["cycle_onnx"], timeout=300)
    out["again_name"] = again.name()
    out["old_gone"] = krita_io.find_node(doc, krita_io.node_id(res)) is None
    out["names"] = [n.name() for n in doc.rootNode().childNodes()]
    doc.close()
    return out


def grid_scene(n, cells=8):
    doc = new_doc(n, n)
    step = n // cells
    boxes = [(i * step + 4, j * step + 4, (i + 1) * step - 4, (j + 1) * step - 4)
             for i in range(cells) for j in range(cells)]
    lines = add_layer(doc, "Lines")
    lines.setPixelData(QByteArray(box_lines(n, n, boxes, width=4)), 0, 0, n, n)
    hints = add_layer(doc, "Hints")
    spots = {(i * step + step // 2, j * step + step // 2): (RED if (i + j) % 2 else BLUE)
             for i in range(cells) for j in range(cells)}
    hints.setPixelData(QByteArray(dots(n, n, spots, r=6)), 0, 0, n, n)
    return doc, lines, hints


def run_job_measured(job_factory, timeout_s=120):
    """Run a job the way the docker does (wait=False) with a 10 ms heartbeat
    timer; returns (outcome, seconds, max heartbeat gap in ms)."""
    loop = QEventLoop()
    outcome = {}
    gaps = {"max": 0.0}
    clock = QElapsedTimer()
    clock.start()
    last = {"t": clock.elapsed()}

    def beat():
        now = clock.elapsed()
        gaps["max"] = max(gaps["max"], now - last["t"])
        last["t"] = now
    hb = QTimer()
    hb.setInterval(10)
    hb.timeout.connect(beat)
    hb.start()
    t0 = time.perf_counter()
    # The "click": let the heartbeat run first, then start in the event loop.
    def click():
        last["t"] = clock.elapsed()
        try:
            job = job_factory()
            outcome["job"] = job
            job.done.connect(lambda node: (outcome.setdefault("node", node), loop.quit()))
            job.failed.connect(lambda m, k: (outcome.setdefault("error", (m, k)), loop.quit()))
            job.prepare().start() if job.rect is None else job.start()
        except UserError as e:
            outcome["error"] = (str(e), "user")
            loop.quit()
    QTimer.singleShot(30, click)
    QTimer.singleShot(timeout_s * 1000, loop.quit)
    t0 = time.perf_counter()
    loop.exec_()
    hb.stop()
    beat()
    return outcome, time.perf_counter() - t0 - 0.03, gaps["max"]


def s_timing_2048():
    client = worker_client.shared()
    doc, lines, hints = grid_scene(2048)
    # Warm the worker (first start imports numpy/scipy) like a second click would.
    krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    outcome, secs, gap = run_job_measured(lambda: krita_api.ColorizeJob(doc, lines, hints, "flats", client=client))
    job = outcome.get("job")
    out = {"ok": "node" in outcome, "failure": outcome.get("error"), "seconds": secs, "max_gap_ms": gap,
           "timings": job.timings if job else None, "worker_seconds": job.reply.get("seconds") if job else None}
    px = read8(outcome["node"], doc) if "node" in outcome else b""
    out["cell_colors"] = [rgb_at(px, 2048, 128, 100), rgb_at(px, 2048, 384, 100)] if px else None
    doc.close()
    return out


def s_stroke():
    """bench.interactive's Krita part: stroke -> finished layer, as Auto runs it.

    The page (line art and hints, sRGB BGRA8 files from the bench) goes into a new
    document; one fresh colorize warms the worker and shows the line art; then each
    stroke lands on the hint layer and, in the same event-loop turn, Auto's work
    follows: the hint signature (the poll's thumbnail hash) and the ColorizeJob the
    docker starts, until the result layer is written.  A 10 ms heartbeat timer
    records the GUI thread's longest gap.  Auto's poll interval (docker.POLL_MS,
    debounced over one poll) is a setting, reported, not timed."""
    from krita_alac.plugin import docker
    n = int(CFG["page_size"])
    engine = CFG.get("engine", "auto")
    doc = new_doc(n, n)
    lines = add_layer(doc, "Lines")
    with open(CFG["page_lines"], "rb") as f:
        lines.setPixelData(QByteArray(f.read()), 0, 0, n, n)
    hints = add_layer(doc, "Hints")
    with open(CFG["page_hints"], "rb") as f:
        hints.setPixelData(QByteArray(f.read()), 0, 0, n, n)
    doc.refreshProjection()
    doc.waitForDone()
    reads = []
    for _ in range(3):      # the reference: Krita's own read of one canvas-sized layer
        t0 = time.perf_counter()
        bytes(lines.pixelData(0, 0, n, n))
        reads.append(time.perf_counter() - t0)
    out = {"page_size": n, "layer_read_s": sorted(reads)[1], "poll_ms": docker.POLL_MS, "runs": []}

    def auto_job(stroke):
        def start():
            if stroke is not None:
                x, y, rgb = stroke
                hints.setPixelData(QByteArray(bytes((rgb[2], rgb[1], rgb[0], 255)) * (50 * 8)), x, y, 50, 8)
            docker.hint_signature(hints)
            # As the docker's Auto does (in place once there is our result to update).
            return krita_api.ColorizeJob(doc, lines, hints, engine, in_place=True).prepare_first()
        return start

    for i, stroke in enumerate([None] + [tuple(s) for s in CFG["strokes"]]):
        outcome, secs, gap = run_job_measured(auto_job(stroke), timeout_s=600)
        job = outcome.get("job")
        if "node" not in outcome:
            raise RuntimeError(f"run {i} failed: {outcome.get('error')}")
        out["runs"].append({"fresh": stroke is None, "seconds": secs, "max_gap_ms": gap,
                            "timings": job.timings, "worker_seconds": job.reply.get("seconds"),
                            "layer_id": krita_io.node_id(outcome["node"]),
                            "engine": job.reply.get("engine"), "compose": job.reply.get("compose"),
                            "size": job.reply.get("size"), "layer": outcome["node"].name()})
    # What single calls on the GUI thread cost (the heartbeat's longest gap is one of them).
    probe = {}
    t0 = time.perf_counter()
    docker.hint_signature(hints)
    probe["hint_signature"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    job = krita_api.ColorizeJob(doc, lines, hints, engine).prepare_first()
    probe["prepare_first"] = time.perf_counter() - t0
    job._cleanup()
    out["probe"] = probe
    doc.close()
    return out


def s_io_4096():
    n = 4096
    doc = new_doc(n, n)
    lines = add_layer(doc, "Lines")
    lines.setPixelData(QByteArray(box_lines(n, n, [(100, 100, 4000, 4000)])), 0, 0, n, n)
    t0 = time.perf_counter()
    data = krita_io.read_bgra8(lines, (0, 0, n, n))
    t_read = time.perf_counter() - t0
    fake = bytes((40, 80, 200, 255)) * (n * n)
    t0 = time.perf_counter()
    node = krita_api.write_result(doc, lines, fake, (0, 0, n, n), None, "Flats")
    t_write = time.perf_counter() - t0
    sample = rgb_at(read8(node, doc), n, 2000, 2000)
    doc.close()
    return {"read_s": t_read, "write_s": t_write, "read_bytes": len(data), "sample": sample}


def s_kill_midrun():
    client = worker_client.shared()
    doc, lines, hints = grid_scene(2048, cells=16)
    before = {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}
    layers_before = [n.name() for n in doc.rootNode().childNodes()]
    loop = QEventLoop()
    outcome = {}
    job = krita_api.ColorizeJob(doc, lines, hints, "flats", client=client).prepare()
    job.failed.connect(lambda m, k: (outcome.setdefault("error", [m, k]), loop.quit()))
    job.done.connect(lambda node: (outcome.setdefault("node", True), loop.quit()))
    job.start()
    pid_holder = {}

    def kill():
        pid_holder["pid"] = client.pid()
        if pid_holder["pid"]:
            os.kill(pid_holder["pid"], signal.SIGKILL)
    # Kill as soon as the worker has the request (first progress report), else after 0.3 s.
    job.progress.connect(lambda v, t: "pid" not in pid_holder and kill())
    QTimer.singleShot(300, lambda: "pid" not in pid_holder and kill())
    QTimer.singleShot(60000, loop.quit)
    loop.exec_()
    out = {"outcome": outcome, "killed_pid": pid_holder.get("pid"), "state_after": client.state,
           "layers_after": [n.name() for n in doc.rootNode().childNodes()], "layers_before": layers_before,
           "sources_unchanged": before == {"lines": raw_hash(lines, doc), "hints": raw_hash(hints, doc)}}
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    out["next_run"] = {"name": res.name(), "new_pid": client.pid(), "layers": [n.name() for n in doc.rootNode().childNodes()]}
    # Cancel (the docker's button) ends a run the same way, without an error.
    job2 = krita_api.ColorizeJob(doc, lines, hints, "flats", client=client).prepare()
    got = {}
    job2.failed.connect(lambda m, k: (got.setdefault("failed", [m, k]), loop.quit()))
    job2.done.connect(lambda node: (got.setdefault("done", True), loop.quit()))
    # At the first progress report, the worker certainly busy with it: a re-run of cached
    # line art may be done in less than any fixed delay.
    job2.progress.connect(lambda v, t: "failed" not in got and "done" not in got and job2.cancel())
    job2.start()
    loop.exec_()
    out["cancel"] = got
    out["after_cancel"] = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120).name()
    doc.close()
    return out


def s_errors():
    w = h = 128
    out = {}
    out["no_document"] = expect_error(lambda: krita_alac.colorize(None, None))
    doc = new_doc(w, h)
    empty = add_layer(doc, "Empty")
    out["no_layer"] = expect_error(lambda: krita_alac.colorize(doc, None))
    out["empty_lines"] = expect_error(lambda: krita_alac.colorize(doc, empty, None, timeout=60))
    lines = add_layer(doc, "Lines")
    put(lines, box_lines(w, h, [(20, 20, 100, 100)]), w, h)
    out["no_hints"] = expect_error(lambda: krita_alac.colorize(doc, lines, None, timeout=60))
    hints = add_layer(doc, "Hints")
    put(hints, dots(w, h, {(60, 60): RED}), w, h)
    out["missing_model"] = expect_error(lambda: krita_alac.colorize(doc, lines, hints, engine="no-such-model",
                                                                    timeout=60))
    settings.save({"max_pixels": 100 * 100})
    out["too_large"] = expect_error(lambda: krita_alac.colorize(doc, lines, hints, timeout=60))
    forced = krita_alac.colorize(doc, lines, hints, force=True, timeout=60)
    out["too_large_forced"] = forced.name()
    settings.save({"max_pixels": 6000 * 6000})
    # Opaque line art (a scan on white) is noticed and can be set to Multiply.
    scan = add_layer(doc, "Scan")
    white = bytearray(b"\xff" * (w * h * 4))
    ink = box_lines(w, h, [(20, 20, 100, 100)])
    for i in range(0, len(ink), 4):
        if ink[i + 3]:
            white[i:i + 3] = b"\x00\x00\x00"
    put(scan, bytes(white), w, h)
    krita_alac.colorize(doc, scan, hints, timeout=60)
    out["opaque_notes"] = krita_api.colorize.last_job.notes
    krita_api.set_multiply(scan)
    out["blending_after"] = scan.blendingMode()
    # No usable Python: a fresh client with nothing on PATH and a Python without numpy.
    saved = {k: os.environ.get(k) for k in ("PATH", "KRITA_ALAC_PYTHON")}
    os.environ["PATH"] = "/nonexistent"
    os.environ["KRITA_ALAC_PYTHON"] = CFG["bare_python"]
    try:
        client = worker_client.WorkerClient()
        out["no_python"] = expect_error(lambda: krita_alac.colorize(doc, lines, hints, client=client, timeout=60))
        out["no_python_state"] = client.state
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    doc.close()
    return out


def square_on_white(w, h, box, color=RED):
    """BGRA8 bytes: opaque white with a filled square box=(x0, y0, x1, y1) (inclusive)."""
    buf = bytearray(b"\xff" * (w * h * 4))
    x0, y0, x1, y1 = box
    px = bytes((color[2], color[1], color[0], 255)) * (x1 - x0 + 1)
    for y in range(y0, y1 + 1):
        buf[(y * w + x0) * 4:(y * w + x1 + 1) * 4] = px
    return bytes(buf)


def alpha_row(bgra, w, y, x0, x1):
    return [bgra[(y * w + x) * 4 + 3] for x in range(x0, x1)]


def darkest_line(bgra, w, y, x0, x1):
    """[R, G, B, A] of the most opaque pixel of row y between x0 and x1."""
    best = max(range(x0, x1), key=lambda x: bgra[(y * w + x) * 4 + 3])
    return rgb_at(bgra, w, best, y)


def lines_facts(res, src, doc, w):
    """Where the extracted layer went and what it holds (square at x 80..199, y 70..189)."""
    ids = [krita_io.node_id(n) for n in src.parentNode().childNodes()]
    px = read8(res, doc)
    return {"name": res.name(), "type": res.type(), "space": krita_io.color_space(res),
            "same_parent": krita_io.node_id(res.parentNode()) == krita_io.node_id(src.parentNode()),
            "directly_above": ids.index(krita_io.node_id(res)) == ids.index(krita_io.node_id(src)) + 1,
            "left_edge": darkest_line(px, w, 130, 74, 87), "right_edge": darkest_line(px, w, 130, 193, 206),
            "top_edge_alpha": max(px[(y * w + 140) * 4 + 3] for y in range(64, 77)),
            "interior": rgb_at(px, w, 140, 130), "outside": rgb_at(px, w, 30, 230),
            "offset_gap": rgb_at(px, w, 10, 130),     # uncovered by the moved layer: transparent = white
            "ink_px_row": sum(a > 128 for a in alpha_row(px, w, 130, 60, 100))}


def s_lines():
    """Extract line art from a colored layer (moved by an offset) inside a group."""
    w = h = 256
    doc = new_doc(w, h)
    paper = add_layer(doc, "Paper")
    put(paper, b"\xff" * (w * h * 4), w, h)
    group = doc.createGroupLayer("Art")
    doc.rootNode().addChildNode(group, paper)
    src = add_layer(doc, "Colors", parent=group)
    add_layer(doc, "Top", parent=group, above=src)
    put(src, square_on_white(w, h, (60, 60, 179, 179)), w, h)
    src.move(20, 10)                                 # the square now spans x 80..199, y 70..189
    doc.waitForDone()
    b = src.bounds()
    before = (raw_hash(src, doc), [b.x(), b.y(), b.width(), b.height()])
    t0 = time.perf_counter()
    res = krita_alac.extract_lines(doc, src, thickness=1.0, timeout=120)
    first_s = time.perf_counter() - t0
    job = krita_api.extract_lines.last_job
    out = {"bounds": before[1], "first": lines_facts(res, src, doc, w), "first_s": first_s,
           "order": siblings(src), "root_order": [n.name() for n in doc.rootNode().childNodes()],
           "engine": job.reply.get("engine"), "device": job.reply.get("device"),
           "active_kept": doc.activeNode() is None or krita_io.node_id(doc.activeNode()) != krita_io.node_id(res),
           "records": krita_api.load_records(doc, "lines").get(krita_io.node_id(src), {}),
           "colorize_records": krita_api.load_records(doc)}
    first_id = krita_io.node_id(res)
    # Rerun, thicker: replaces the first layer.
    res2 = krita_alac.extract_lines(doc, src, thickness=2.5, timeout=120)
    out["rerun"] = {"replaced": krita_io.find_node(doc, first_id) is None, "order": siblings(src),
                    **lines_facts(res2, src, doc, w)}
    # Renamed: kept; a selection limits the new layer to the selected pixels.
    res2.setName("My lines")
    sel = Selection()
    sel.select(60, 60, 80, 150, 255)               # the square's left edge only
    doc.setSelection(sel)
    res3 = krita_alac.extract_lines(doc, src, timeout=120)
    doc.setSelection(None)
    out["selection"] = {"kept": krita_io.find_node(doc, krita_io.node_id(res2)) is not None,
                        "order": siblings(src), "rect": list(krita_api.extract_lines.last_job.rect),
                        **lines_facts(res3, src, doc, w)}
    out["source_unchanged"] = before == (raw_hash(src, doc), [src.bounds().x(), src.bounds().y(),
                                                              src.bounds().width(), src.bounds().height()])
    empty = add_layer(doc, "Empty")
    out["errors"] = {"empty": expect_error(lambda: krita_alac.extract_lines(doc, empty, timeout=60)),
                     "no_document": expect_error(lambda: krita_alac.extract_lines(None, None)),
                     "no_layer": expect_error(lambda: krita_alac.extract_lines(doc, None)),
                     "thickness": expect_error(lambda: krita_alac.extract_lines(doc, src, thickness=0))}
    doc.close()
    return out


def s_lines16():
    w = h = 256
    doc = new_doc(w, h, model="RGBA", depth="U16", profile="sRGB-elle-V2-g10.icc")
    src = add_layer(doc, "Colors")
    add_layer(doc, "Top")
    put(src, square_on_white(w, h, (60, 60, 179, 179)), w, h)
    src.move(20, 10)
    doc.waitForDone()
    before = raw_hash(src, doc)
    res = krita_alac.extract_lines(doc, "Colors", timeout=120)
    out = {"doc_space": krita_io.color_space(doc), "raw_bytes_per_px": len(bytes(src.pixelData(0, 0, 1, 1))),
           "order": siblings(src), **lines_facts(res, src, doc, w), "source_unchanged": before == raw_hash(src, doc)}
    doc.close()
    return out


def ids_names(parent):
    return [(krita_io.node_id(n), n.name()) for n in parent.childNodes()]


def paint_square(node, x, y, size, rgb):
    """A hand-painted fix: size x size opaque pixels at (x, y) (sRGB, into the node's color space)."""
    px = bytes((rgb[2], rgb[1], rgb[0], 255)) * (size * size)
    node.setPixelData(QByteArray(krita_io.convert_bytes(px, size, size, krita_io.SRGB8,
                                                       krita_io.color_space(node))), x, y, size, size)


def s_policy():
    """Layer policy on a document opened from a PNG (the line art is its only,
    bottom layer), deeper stacks, groups, engine switches, Multiply; edited results kept."""
    out = {}
    doc = Krita.instance().openDocument(CFG["lineart_png"])
    w, h = doc.width(), doc.height()
    root = doc.rootNode()
    line = root.childNodes()[0]
    out["opened"] = siblings(line)
    hints = doc.createNode("Hints", "paintlayer")
    root.addChildNode(hints, line)                  # what the docker's New does
    put(hints, dots(w, h, {(200, 110): RED, (470, 480): BLUE, (800, 600): (90, 170, 70)}), w, h)
    doc.setActiveNode(hints)
    line_before = raw_hash(line, doc)
    runs = []
    for _ in range(4):
        res = krita_alac.colorize(doc, line, hints, engine="flats", timeout=120)
        runs.append({"order": siblings(line), "active": doc.activeNode().name() if doc.activeNode() else None,
                     "result_below": place(res, line)["directly_below"]})
    out["runs"] = runs
    out["line_unchanged"] = line_before == raw_hash(line, doc)
    # The artist paints a 20x20 fix onto the result: it survives every re-run.
    paint_square(res, 600, 620, 20, (250, 0, 250))
    fixed_id = krita_io.node_id(res)
    edits = []
    for _ in range(3):
        krita_alac.colorize(doc, line, hints, engine="flats", timeout=120)
        kept = krita_io.find_node(doc, fixed_id)
        edits.append({"order": siblings(line), "kept": kept is not None,
                      "kept_name": kept.name() if kept else None,
                      "fix": rgb_at(read8(kept, doc), w, 610, 630) if kept else None,
                      "active": doc.activeNode().name() if doc.activeNode() else None,
                      "report": dict(krita_api.colorize.last_job.report)})
    out["edits"] = edits
    # Engine switch: the AlacGAN result replaces our (untouched) Flats.
    krita_alac.colorize(doc, line, hints, engine=CFG["onnx"], size=256, timeout=300)
    out["switch_order"] = siblings(line)
    # Line art set to Multiply, then back to flats.
    krita_api.set_multiply(line)
    krita_alac.colorize(doc, line, hints, engine="flats", timeout=120)
    out["multiply_order"] = siblings(line)
    out["multiply_blending"] = line.blendingMode()
    out["active_end"] = doc.activeNode().name() if doc.activeNode() else None
    doc.setModified(False)
    doc.close()

    # A deeper stack with the line art at the bottom: the artist's layers keep their order and ids.
    doc = new_doc(256, 256)
    root = doc.rootNode()
    lines = root.childNodes()[0]
    lines.setName("Lines")
    put(lines, box_lines(256, 256, [(60, 60, 190, 190)]), 256, 256)
    for name in ("Shade", "Notes", "Hints"):
        add_layer(doc, name)
    hints = [n for n in root.childNodes() if n.name() == "Hints"][0]
    put(hints, dots(256, 256, {(120, 120): RED, (20, 20): BLUE}), 256, 256)
    doc.setActiveNode([n for n in root.childNodes() if n.name() == "Notes"][0])
    before = ids_names(root)
    res = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    after = ids_names(root)
    out["deep"] = {"order": [n for _, n in after], "others_kept": after[1:] == before,
                   "active": doc.activeNode().name() if doc.activeNode() else None, "inside": rgb_at(read8(res, doc), 256, 120, 140)}
    # Line art at the bottom of a group with a layer above it inside the group.
    group = doc.createGroupLayer("Inks")
    root.addChildNode(group, hints)
    glines = add_layer(doc, "Lines 2", parent=group)
    add_layer(doc, "Inks top", parent=group, above=glines)
    put(glines, box_lines(256, 256, [(60, 60, 190, 190)]), 256, 256)
    root_before = ids_names(root)
    krita_alac.colorize(doc, glines, hints, engine="flats", timeout=120)
    out["group"] = {"children": siblings(glines), "root_kept": ids_names(root) == root_before}
    doc.close()
    return out


def projection(doc, hide):
    """Krita's own merged image (sRGB BGRA8) with the `hide` layers hidden (then shown again)."""
    for n in hide:
        n.setVisible(False)
    doc.refreshProjection()
    doc.waitForDone()
    px = bytes(doc.pixelData(0, 0, doc.width(), doc.height()))
    for n in hide:
        n.setVisible(True)
    doc.refreshProjection()
    doc.waitForDone()
    return px


def dump(name, data):
    with open(os.path.join(CFG["out"], name), "wb") as f:
        f.write(data)
    return name


def s_compose():
    """The default colorize of an installed model whose card recommends flats (the
    shaded composition), then the same as two layers, Flats + Shading (Grain Merge)."""
    w = h = 256
    doc, lines, hints, hb = scene()
    put(hints, hb, w, h)
    res = krita_alac.colorize(doc, lines, hints, timeout=300)      # every option at its default
    job = krita_api.colorize.last_job
    out = {"engine": job.reply.get("engine"), "compose": job.reply.get("compose"), "size": job.reply.get("size"),
           "sent": {k: v for k, v in job.options.items()}, "single": res.name(), **place(res, lines),
           "files": {"lines": dump("compose_lines.bgra", read8(lines, doc)),
                     "hints": dump("compose_hints.bgra", read8(hints, doc)),
                     "single": dump("compose_single.bgra", read8(res, doc)),
                     "single_projection": dump("compose_single_proj.bgra", projection(doc, [lines, hints]))}}
    single_id = krita_io.node_id(res)
    top = krita_alac.colorize(doc, lines, hints, layers=True, timeout=300)
    kids = lines.parentNode().childNodes()
    names = [n.name() for n in kids]
    i = names.index("Lines")
    out["layers"] = {"stack": names, "below_lines": [(n.name(), n.blendingMode()) for n in kids[i - 2:i]],
                     "top": top.name(), "single_gone": krita_io.find_node(doc, single_id) is None,
                     "reply_layers": [(d["name"], d["blend"]) for d in job_reply_layers()]}
    flats, shading = kids[i - 2], kids[i - 1]
    out["files"]["flats"] = dump("compose_flats.bgra", read8(flats, doc))
    out["files"]["layers_projection"] = dump("compose_layers_proj.bgra", projection(doc, [lines, hints]))
    rec = krita_api.load_records(doc)[krita_io.node_id(lines)]
    out["record"] = {"result": rec["result"] == krita_io.node_id(flats),
                     "layers": [r["result"] == krita_io.node_id(shading) for r in rec.get("layers", [])]}
    # A re-run replaces both ...
    old_ids = {krita_io.node_id(flats), krita_io.node_id(shading)}
    krita_alac.colorize(doc, lines, hints, layers=True, timeout=300)
    kids = lines.parentNode().childNodes()
    out["rerun"] = {"stack": [n.name() for n in kids],
                    "old_gone": all(krita_io.find_node(doc, i) is None for i in old_ids)}
    # ... except one the artist painted on: kept as "(edited)".
    shading = kids[[n.name() for n in kids].index("Lines") - 1]
    paint_square(shading, 10, 10, 8, (0, 255, 0))
    krita_alac.colorize(doc, lines, hints, layers=True, timeout=300)
    out["edited"] = {"stack": [n.name() for n in lines.parentNode().childNodes()],
                     "status_kept": krita_api.colorize.last_job.report.get("kept")}
    # Back to one layer: both of ours go, the edited one stays.
    krita_alac.colorize(doc, lines, hints, timeout=300)
    out["back_to_one"] = [n.name() for n in lines.parentNode().childNodes()]
    doc.close()
    return out


def job_reply_layers():
    return krita_api.colorize.last_job.reply.get("layers") or []


def s_docker_rules():
    """The docker's size limits and hint-layer names (pure functions of the plugin)."""
    from krita_alac.plugin import docker
    c = docker.clamp_size
    doc = new_doc(64, 64)
    add_layer(doc, "Hints")
    add_layer(doc, "Hints 2")
    out = {"canvas": c(4096, (0, 0, 960, 720), False), "cpu": c(4096, (0, 0, 8000, 6000), False),
           "gpu": c(8192, (0, 0, 8000, 6000), True), "round": c(500, (0, 0, 2000, 2000), False),
           "small": c(512, (0, 0, 100, 40), False), "selection": c(1024, (10, 10, 300, 200), True),
           "model_size_flats": docker.model_size("flats"), "unique_hint": krita_api.unique_hint_name(doc),
           "hint_names": [krita_api.is_hint_name(n) for n in ("Hints", "Hints 2", "Hints copy", "My Hints")]}
    doc.close()
    return out


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}


def run_scenarios(scenarios: dict):
    """Run the scenarios the pytest side named (KRITA_ALAC_SUITE's json) from `scenarios`, writing
    results.json after each one, so a crash still leaves what ran; the other suite files use it too."""
    with open(os.environ["KRITA_ALAC_SUITE"], encoding="utf-8") as f:
        cfg = json.load(f)
    results = {"python": sys.version}
    for name in cfg["scenarios"]:
        try:
            results[name] = scenarios[name]()
        except Exception:  # noqa: BLE001  reported to pytest, which fails the test
            results[name] = {"error": traceback.format_exc()}
        with open(os.path.join(cfg["out"], "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)
    worker_client.shared().kill_now()


def run(arg=None):
    global CFG
    with open(os.environ["KRITA_ALAC_SUITE"], encoding="utf-8") as f:
        CFG = json.load(f)
    results = {"python": sys.version, "krita": Krita.instance().version()}
    for name in CFG["scenarios"]:
        t0 = time.perf_counter()
        try:
            results[name] = SCENARIOS[name]()
        except Exception:  # noqa: BLE001  reported to pytest, which fails the test
            results[name] = {"error": traceback.format_exc()}
        results[name]["_seconds"] = round(time.perf_counter() - t0, 3)
        with open(os.path.join(CFG["out"], "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)
        print(f"krita_suite: {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    worker_client.shared().kill_now()
