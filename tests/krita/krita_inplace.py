"""Auto's in-place update of our result layer, inside real Krita
(kritarunner -s krita_inplace -f run), driven by tests/test_krita_inplace.py.

Every run goes through ColorizeJob and the real worker (flats: exact colors),
as the docker runs it: in_place=True is what Auto asks for, the Colorize
button and scripts leave it off.  Scenarios report facts (pixels, hashes, layer
ids and names, the record) for the pytest side to assert on.  To act in the
middle of an update, a scenario writes one tile row per step (STEP_BYTES) and
hooks the check the job makes before each step.
"""
import os
import signal

from PyQt5.QtCore import QByteArray, QElapsedTimer, QEventLoop, QTimer

import krita_alac
from krita_alac.plugin import krita_api, krita_io, worker_client
from krita_suite import BLUE, RED, add_layer, box_lines, dots, new_doc, put, rgb_at, run_scenarios

W = H = 512
GREEN = (40, 200, 60)
YELLOW = (240, 220, 20)
BOXES = [(40, 40, 470, 470)]     # one big region inside, the paper outside


def page():
    doc = new_doc(W, H)
    lines = add_layer(doc, "Lines")
    put(lines, box_lines(W, H, BOXES, width=4), W, H)
    hints = add_layer(doc, "Hints")
    put(hints, dots(W, H, {(250, 250): RED, (10, 10): BLUE}), W, H)
    return doc, lines, hints


def raw(node):
    return bytes(node.pixelData(0, 0, W, H))


def run_job(job, timeout_s=120):
    """Start a prepared job as the docker does and wait for its end: ("done", node) or ("failed", message, kind)."""
    loop = QEventLoop()
    out = []
    job.done.connect(lambda node: (out.append(("done", node)), loop.quit()))
    job.failed.connect(lambda m, k: (out.append(("failed", m, k)), loop.quit()))
    job.start()
    if not out:
        QTimer.singleShot(timeout_s * 1000, loop.quit)
        loop.exec_()
    return out[0] if out else ("timeout",)


def auto(doc, lines, hints, **kw):
    return krita_api.ColorizeJob(doc, lines, hints, "flats", in_place=True, **kw).prepare()


def result_of(doc, lines):
    rec = krita_api.load_records(doc).get(krita_io.node_id(lines)) or {}
    return krita_io.find_node(doc, rec.get("result", "")), rec


def stack(doc):
    return [n.name() for n in doc.rootNode().childNodes()]


def rows_differing(a, b):
    """How many 64-row bands of two canvas-sized BGRA8 buffers differ."""
    band = W * 4 * 64
    return sum(a[i:i + band] != b[i:i + band] for i in range(0, len(a), band))


def hook_steps(job, at, action):
    """Call action() when the job checks before its step number `at` (1: before the first write)."""
    check = job._check_in_place
    seen = {"n": 0}

    def hooked(*args):
        seen["n"] += 1
        if seen["n"] == at:
            action()
        return check(*args)
    job._check_in_place = hooked
    return seen


def s_update():
    """Manual Colorize makes the layer; Auto then updates it in place, exactly."""
    doc, lines, hints = page()
    # A small box (rows 200-300) inside the big one: recoloring it changes two tile rows.
    put(lines, box_lines(W, H, BOXES + [(200, 200, 300, 300)], width=4), W, H)
    put(hints, dots(W, H, {(250, 250): RED, (100, 100): YELLOW, (10, 10): BLUE}), W, H)
    first = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    first_id = krita_io.node_id(first)
    first.setOpacity(200)                        # the artist's layer settings stay
    before = raw(first)
    doc.setActiveNode(hints)
    stack_before = stack(doc)
    # A new hint color inside the box: Auto.
    put(hints, dots(W, H, {(250, 250): GREEN, (100, 100): YELLOW, (10, 10): BLUE}), W, H)
    job = auto(doc, lines, hints)
    end = run_job(job)
    node, rec = result_of(doc, lines)
    after = raw(node)
    out = {"end": end[0], "same_layer": krita_io.node_id(node) == first_id and krita_io.node_id(end[1]) == first_id,
           "stack_same": stack(doc) == stack_before, "opacity": node.opacity(),
           "in_place": job.timings.get("in_place"), "rows_written": job.timings.get("rows_written"),
           "bands_differing": rows_differing(before, after), "status_in_place": job.report.get("in_place"),
           "inside": rgb_at(after, W, 250, 280), "ring": rgb_at(after, W, 100, 300),
           "outside": rgb_at(after, W, 10, 300), "record_digest_ok": rec.get("digest") == krita_api.layer_digest(node),
           "projection_inside": rgb_at(bytes(doc.pixelData(0, 0, W, H)), W, 250, 280),
           "background": [rgb_at(bytes(n.pixelData(250, 280, 1, 1)), 1, 0, 0) for n in doc.rootNode().childNodes()
                          if n.name() == "Background"]}
    # The in-place result is exactly what a new layer gets for the same hints.
    fresh = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    out["equals_new_layer"] = raw(fresh) == after
    out["manual_new_layer"] = krita_io.find_node(doc, first_id) is None and krita_io.node_id(fresh) != first_id
    # Same hints again: nothing differs, nothing written.
    job = auto(doc, lines, hints)
    end = run_job(job)
    out["unchanged_rows_written"] = job.timings.get("rows_written")
    out["unchanged_same_layer"] = end[0] == "done" and krita_io.node_id(end[1]) == krita_io.node_id(fresh)
    # A fix painted where the new result does not change (rows 64-127, the ring): still never overwritten.
    fix = bytes((255, 0, 255, 255)) * (8 * 8)
    fresh.setPixelData(QByteArray(fix), 100, 100, 8, 8)
    painted = raw(fresh)
    put(hints, dots(W, H, {(250, 250): RED, (100, 100): YELLOW, (10, 10): BLUE}), W, H)
    job = auto(doc, lines, hints)
    end = run_job(job)
    out["fix_elsewhere"] = {"end": end[0], "in_place": job.timings.get("in_place"), "kept_pixels": raw(fresh) == painted,
                            "kept_name": fresh.name(), "new_inside": rgb_at(raw(end[1]), W, 250, 280),
                            "new_is_other": krita_io.node_id(end[1]) != krita_io.node_id(fresh)}
    doc.close()
    return out


def s_edited():
    """A result the artist painted on is never overwritten, before or during an update."""
    doc, lines, hints = page()
    first = krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    fix = bytes((255, 0, 255, 255)) * (8 * 8)
    first.setPixelData(QByteArray(fix), 300, 300, 8, 8)      # the artist's fix on the result
    painted = raw(first)
    put(hints, dots(W, H, {(250, 250): GREEN, (10, 10): BLUE}), W, H)
    job = auto(doc, lines, hints)
    end = run_job(job)
    out = {"before": {"end": end[0], "in_place": job.timings.get("in_place"), "stack": stack(doc),
                      "kept_pixels": raw(first) == painted, "kept_name": first.name(),
                      "new_inside": rgb_at(raw(end[1]), W, 250, 300), "kept_report": job.report.get("kept")}}
    # During an update: one tile row per step; the artist paints on a row not written yet.
    ours, _ = result_of(doc, lines)
    ours_id = krita_io.node_id(ours)
    old = raw(ours)
    put(hints, dots(W, H, {(250, 250): YELLOW, (10, 10): BLUE}), W, H)
    saved = krita_api.STEP_BYTES
    krita_api.STEP_BYTES = W * 4 * 64
    try:
        job = auto(doc, lines, hints)
        hook_steps(job, 3, lambda: ours.setPixelData(QByteArray(fix), 300, 400, 8, 8))
        end = run_job(job)
    finally:
        krita_api.STEP_BYTES = saved
    expect = bytearray(old)
    for yy in range(400, 408):
        expect[(yy * W + 300) * 4:(yy * W + 308) * 4] = fix[:32]
    new, rec = result_of(doc, lines)
    out["during"] = {"end": end[0], "in_place": job.timings.get("in_place"),
                     "kept_pixels": raw(ours) == bytes(expect), "kept_name": ours.name(),
                     "kept_id": krita_io.find_node(doc, ours_id) is not None,
                     "new_is_other": krita_io.node_id(new) != ours_id, "new_inside": rgb_at(raw(new), W, 250, 300),
                     "stack": stack(doc), "record_digest_ok": rec.get("digest") == krita_api.layer_digest(new)}
    doc.close()
    return out


def s_interrupted():
    """Cancelled, failing or with the worker killed in the middle of an update:
    the layer is exactly the old result (or, for the kill, the finished new one)."""
    client = worker_client.shared()
    doc, lines, hints = page()
    krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
    node, rec = result_of(doc, lines)
    node_id, old, old_digest = krita_io.node_id(node), raw(node), rec["digest"]
    put(hints, dots(W, H, {(250, 250): GREEN, (10, 10): BLUE}), W, H)
    out = {}
    saved = krita_api.STEP_BYTES
    krita_api.STEP_BYTES = W * 4 * 64
    try:
        job = auto(doc, lines, hints)
        seen = hook_steps(job, 4, lambda: job.cancel())
        end = run_job(job)
        now, rec = result_of(doc, lines)
        out["cancel"] = {"end": list(end[:1]) + list(end[2:]), "steps_seen": seen["n"],
                         "same_layer": krita_io.node_id(now) == node_id, "pixels_as_before": raw(now) == old,
                         "record_unchanged": rec.get("digest") == old_digest,
                         "record_matches_layer": rec.get("digest") == krita_api.layer_digest(now),
                         "stack": stack(doc)}

        def boom():
            raise RuntimeError("simulated failure in the middle of the update")
        job = auto(doc, lines, hints)
        hook_steps(job, 4, boom)
        end = run_job(job)
        now, rec = result_of(doc, lines)
        out["failure"] = {"end": end[0], "kind": end[2] if len(end) > 2 else None,
                          "message": end[1] if len(end) > 1 else None,
                          "pixels_as_before": raw(now) == old, "record_unchanged": rec.get("digest") == old_digest,
                          "stack": stack(doc)}

        job = auto(doc, lines, hints)
        killed = {}
        hook_steps(job, 4, lambda: killed.setdefault("pid", client.pid()) and os.kill(client.pid(), signal.SIGKILL))
        end = run_job(job)
        now, rec = result_of(doc, lines)
        out["worker_killed"] = {"end": end[0], "killed": bool(killed.get("pid")), "same_layer":
                                krita_io.node_id(now) == node_id, "inside": rgb_at(raw(now), W, 250, 300),
                                "record_matches_layer": rec.get("digest") == krita_api.layer_digest(now),
                                "stack": stack(doc)}
    finally:
        krita_api.STEP_BYTES = saved
    # The worker starts again for the next run (once the client has seen the old one end:
    # a request written to a worker already killed fails as a crash).
    clock = QElapsedTimer()
    clock.start()
    while client.pid() == killed.get("pid") and clock.elapsed() < 10000:
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec_()
    out["noticed_ms"] = clock.elapsed()
    end = run_job(auto(doc, lines, hints))
    out["next_run"] = [end[0]] + [str(v) for v in end[1:] if isinstance(v, str)]
    doc.close()
    return out


def s_line_art():
    """Unchanged line art is compared with our copy, not dumped and hashed; a
    changed pixel anywhere is never missed."""
    client = worker_client.shared()
    doc, lines, hints = page()
    sent = []
    write = client._write

    def spy(header, payloads):
        sent.append({"lines_file": bool(header.get("lines_file")), "digest": header.get("lines_digest")})
        write(header, payloads)
    client._write = spy
    # Two hints in the box: one region, red (the box's first hint) all over, until a wall splits it.
    put(hints, dots(W, H, {(250, 250): RED, (250, 445): GREEN, (10, 10): BLUE}), W, H)
    out = {}
    try:
        krita_alac.colorize(doc, lines, hints, engine="flats", timeout=120)
        out["no_wall_below"] = rgb_at(raw(result_of(doc, lines)[0]), W, 250, 455)
        job = auto(doc, lines, hints)
        run_job(job)
        out["unchanged"] = {"flag": job.timings.get("lines_unchanged"), "sent": sent[-1]}
        first_digest = sent[-1]["digest"]
        # A wall across the box, in the last row band: the box becomes two regions.
        wall = box_lines(W, H, BOXES + [(40, 420, 470, 424)], width=4)
        put(lines, wall, W, H)
        job = auto(doc, lines, hints)
        end = run_job(job)
        node = end[1]
        out["changed"] = {"flag": job.timings.get("lines_unchanged"), "sent": sent[-1],
                          "new_digest": sent[-1]["digest"] != first_digest,
                          "above_wall": rgb_at(raw(node), W, 250, 300), "below_wall": rgb_at(raw(node), W, 250, 455)}
        # One changed pixel in the middle of the page.
        px = bytearray(wall)
        i = (256 * W + 256) * 4
        px[i:i + 4] = b"\x00\x00\x00\xff"
        put(lines, bytes(px), W, H)
        job = auto(doc, lines, hints)
        run_job(job)
        out["one_pixel"] = {"flag": job.timings.get("lines_unchanged"), "new_digest":
                            sent[-1]["digest"] != sent[-2]["digest"]}
    finally:
        client._write = write
    doc.close()
    out["files_left"] = sorted(os.listdir(os.path.dirname(client.temp_path("x"))))
    return out


def s_layers():
    """Flats + Shading layers (the default model, small page): both updated in place."""
    n = 256
    doc = new_doc(n, n)
    lines = add_layer(doc, "Lines")
    put(lines, box_lines(n, n, [(40, 40, 200, 200), (90, 90, 150, 150)], width=3), n, n)
    hints = add_layer(doc, "Hints")
    put(hints, dots(n, n, {(120, 120): RED, (60, 60): YELLOW, (10, 10): BLUE}), n, n)
    krita_alac.colorize(doc, lines, hints, layers=True, timeout=300)
    rec = krita_api.load_records(doc)[krita_io.node_id(lines)]
    ids = [rec["result"]] + [r["result"] for r in rec.get("layers", [])]
    stack_before = stack(doc)
    put(hints, dots(n, n, {(120, 120): GREEN, (60, 60): YELLOW, (10, 10): BLUE}), n, n)
    job = krita_api.ColorizeJob(doc, lines, hints, "auto", in_place=True, layers=True).prepare()
    end = run_job(job, 300)
    rec = krita_api.load_records(doc)[krita_io.node_id(lines)]
    nodes = [krita_io.find_node(doc, i) for i in ids]
    got = [bytes(x.pixelData(0, 0, n, n)) for x in nodes]
    out = {"end": end[0], "in_place": job.timings.get("in_place"), "stack_same": stack(doc) == stack_before,
           "same_ids": [rec["result"]] + [r["result"] for r in rec.get("layers", [])] == ids,
           "names": [x.name() for x in nodes], "blends": [x.blendingMode() for x in nodes],
           "digests_ok": [r.get("digest") == krita_api.layer_digest(x)
                          for r, x in zip([rec] + rec.get("layers", []), nodes)],
           "flats_inside": rgb_at(got[0], n, 120, 130)}
    # The same as new layers for the same hints.
    krita_alac.colorize(doc, lines, hints, layers=True, timeout=300)
    rec = krita_api.load_records(doc)[krita_io.node_id(lines)]
    fresh = [krita_io.find_node(doc, i) for i in [rec["result"]] + [r["result"] for r in rec.get("layers", [])]]
    out["equal_to_new_layers"] = [bytes(x.pixelData(0, 0, n, n)) == g for x, g in zip(fresh, got)]
    doc.close()
    return out


def s_refresh():
    """krita_io.refresh_steps: the recomposite that makes written pixels show runs
    in another thread while the GUI thread's event loop keeps turning (a QTimer
    fires meanwhile), and afterwards the projection holds the written pixels."""
    import threading
    doc, lines, hints = page()
    layer = add_layer(doc, "Written")
    doc.refreshProjection()
    put(layer, bytes((20, 120, 240, 255)) * (W * H), W, H)     # BGRA: rgb (240, 120, 20)
    before = rgb_at(bytes(doc.pixelData(0, 0, W, H)), W, 100, 300)

    class Spy:                  # the real document, and which thread refreshed it
        threads = []

        def refreshProjection(self):
            Spy.threads.append(threading.current_thread() is threading.main_thread())
            doc.refreshProjection()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(0)
    steps = krita_io.refresh_steps(Spy(), poll_ms=1)
    result, yielded = None, 0
    while True:
        try:
            next(steps)
            yielded += 1
            QEventLoop().processEvents(QEventLoop.AllEvents, 5)
        except StopIteration as e:
            result = e.value
            break
    timer.stop()
    return {"before": before, "after": rgb_at(bytes(doc.pixelData(0, 0, W, H)), W, 100, 300),
            "on_main_thread": Spy.threads, "result": result, "yielded": yielded, "ticks": len(ticks)}


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}


def run(arg=None):
    run_scenarios(SCENARIOS)
