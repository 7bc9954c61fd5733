"""The worker process's wire protocol, driven the way the plugin drives it."""
import json
import subprocess
import sys

import numpy as np
import pytest


class Worker:
    def __init__(self, env=None):
        self.p = subprocess.Popen([sys.executable, "-m", "krita_alac.engine.worker"], stdin=subprocess.PIPE,
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


def test_bad_requests_never_desynchronise_the_stream(worker):
    """Every announced byte is read before the header is checked: each bad
    request gets its error and the good one after it a correct result."""
    lines, hints = scene()
    bad = [
        ({"width": 81}, "lines: expected 19440 bytes for 81x60, got 19200"),
        ({"format": "XYZ8"}, "unknown pixel format 'XYZ8'"),
        ({"width": -5}, "width and height must be positive whole numbers, got -5x60"),
        ({"height": "60"}, "width and height must be positive whole numbers, got 80x'60'"),
        ({"width": 70000, "height": 70000}, "canvas 70000x70000 is too large"),
        ({"hints": 99}, "hints: expected 19200 bytes for 80x60, got 99"),
        ({"hints_rect": [70, 0, 20, 10]}, "hints_rect [70, 0, 20, 10] does not lie inside the 80x60 canvas"),
    ]
    for i, (change, message) in enumerate(bad):
        header = {"op": "colorize", "id": 10 + i, "width": 80, "height": 60, "format": "BGRA8",
                  "lines": lines.nbytes, "hints": hints.nbytes, "engine": "flats", **change}
        worker.send(header, bgra(lines), b"\x07" * header["hints"])
        m = worker.answer()
        assert m["type"] == "error" and m["id"] == 10 + i and m["kind"] == "user", m
        assert m["message"].startswith(message), m
        worker.send({"op": "colorize", "id": 50 + i, "width": 80, "height": 60, "format": "BGRA8",
                     "lines": lines.nbytes, "hints": hints.nbytes, "engine": "flats"}, bgra(lines), bgra(hints))
        m = worker.answer()
        assert m["type"] == "result" and m["id"] == 50 + i, m
        out = np.frombuffer(m["payload"], np.uint8).reshape(60, 80, 4)
        assert tuple(out[30, 5]) == (20, 10, 250, 255) and tuple(out[30, 75]) == (250, 20, 10, 255)
    worker.close()


def test_unreadable_byte_count_ends_the_worker_with_an_error(worker):
    worker.send({"op": "colorize", "id": 9, "width": 80, "height": 60, "lines": "lots"})
    m = worker.answer()
    assert m == {"type": "error", "id": 9, "kind": "internal",
                 "message": "malformed request: 'lines' must be a byte count, got 'lots'"}
    assert worker.p.wait(timeout=30) == 2


def test_line_art_kept_by_digest_files_and_cropped_hints(worker, tmp_path):
    lines, hints = scene()
    # Without the line art and with a digest it does not hold: the worker asks for it.
    worker.send({"op": "colorize", "id": 1, "width": 80, "height": 60, "lines": 0, "lines_digest": "abc",
                 "hints": hints.nbytes, "engine": "flats"}, bgra(hints))
    assert worker.answer() == {"type": "need_lines", "id": 1}
    # The line art in a file, the result into a file.
    path, out_path = tmp_path / "lines.bgra", tmp_path / "result.bgra"
    path.write_bytes(bgra(lines))
    worker.send({"op": "colorize", "id": 2, "width": 80, "height": 60, "lines": 0, "lines_file": str(path),
                 "lines_digest": "abc", "hints": hints.nbytes, "engine": "flats", "result_file": str(out_path)},
                bgra(hints))
    m = worker.answer()
    assert m["type"] == "result" and m["file"] == str(out_path) and m["bytes"] == 0
    first = out_path.read_bytes()
    path.unlink()
    # Same digest, no line art, hints cropped to their bounds (rows 10..19, columns 10..69).
    crop = np.ascontiguousarray(hints[10:20, 10:70])
    worker.send({"op": "colorize", "id": 3, "width": 80, "height": 60, "lines": 0, "lines_digest": "abc",
                 "hints": crop.nbytes, "hints_rect": [10, 10, 60, 10], "engine": "flats"}, bgra(crop))
    m = worker.answer()
    assert m["type"] == "result" and m["payload"] == first
    # Other line art sent under the same digest replaces it (and its analysis) at once.
    wall = np.zeros((60, 80, 4), np.uint8)
    wall[:, 64:66] = (0, 0, 0, 255)                   # the wall moved right: x 50 is on the red side now
    worker.send({"op": "colorize", "id": 4, "width": 80, "height": 60, "lines": wall.nbytes, "lines_digest": "abc",
                 "hints": crop.nbytes, "hints_rect": [10, 10, 60, 10], "engine": "flats"}, bgra(wall), bgra(crop))
    m = worker.answer()
    got = np.frombuffer(m["payload"], np.uint8).reshape(60, 80, 4)
    assert m["type"] == "result" and tuple(got[50, 50]) == (20, 10, 250, 255)      # BGRA
    assert tuple(np.frombuffer(first, np.uint8).reshape(60, 80, 4)[50, 50]) == (250, 20, 10, 255)
    worker.close()


def test_hints_in_a_file_or_inline_in_either_byte_order_give_one_result(worker, tmp_path):
    """The worker finds the hint pixels on the wire's bytes (a hints file is only mapped) and
    exchanges red and blue of those pixels alone: the same result as canvas-sized RGBA hints."""
    lines, hints = scene()
    hints[40:45, 5:30] = (30, 200, 90, 255)
    hints[50:52, 50:60] = (250, 250, 0, 90)          # too faint to count
    rgba = lambda m: np.frombuffer(m["payload"], np.uint8).reshape(60, 80, 4)
    head = {"op": "colorize", "width": 80, "height": 60, "engine": "flats"}
    worker.send(dict(head, id=1, format="RGBA8", lines=lines.nbytes, hints=hints.nbytes), lines.tobytes(),
                hints.tobytes())
    want = rgba(worker.answer())
    assert tuple(want[42, 10]) == (30, 200, 90, 255)
    crop = np.ascontiguousarray(hints[10:52, 5:70])
    path = tmp_path / "hints.bgra"
    path.write_bytes(bgra(crop))
    for i, (fmt, extra, payload) in enumerate([("BGRA8", {"hints_file": str(path)}, b""),
                                               ("BGRA8", {"hints": crop.nbytes}, bgra(crop)),
                                               ("RGBA8", {"hints": crop.nbytes}, crop.tobytes())], 2):
        worker.send(dict(head, id=i, format=fmt, lines=lines.nbytes, hints_rect=[5, 10, 65, 42], **extra),
                    bgra(lines) if fmt == "BGRA8" else lines.tobytes(), payload)
        got = rgba(worker.answer())
        assert np.array_equal(got[..., [2, 1, 0, 3]] if fmt == "BGRA8" else got, want), fmt
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


def test_neural_lines_over_the_wire(worker, store_home, cycle_model):
    """The lines op with method neural: the installed line model (or the one named), its own working size."""
    import shutil
    from krita_alac.engine.image2image import neural_lines
    pic = np.full((40, 50, 4), 255, np.uint8)
    pic[10:30, 10:40, :3] = (200, 30, 30)
    pic[10:12, 10:40, :3] = 0
    g_b = str(store_home / "models" / "cycle-open" / "cycle-open-lines.onnx")
    header = {"op": "lines", "id": 1, "width": 50, "height": 40, "format": "RGBA8", "image": pic.nbytes,
              "method": "neural"}
    worker.send(header, pic.tobytes())
    m = worker.answer()
    assert m["type"] == "error" and m["kind"] == "user" and m["message"].startswith(
        "no model with a line generator is installed (such as cycle-open)")
    shutil.copytree(cycle_model, store_home / "models" / "cycle-open")
    worker.send({**header, "id": 2}, pic.tobytes())
    m = worker.answer()
    assert m["type"] == "result" and (m["engine"], m["size"]) == ("Lines (cycle-open)", 64), m
    assert m["device"] == "onnxruntime · CPU"
    out = np.frombuffer(m["payload"], np.uint8).reshape(40, 50, 4)
    assert np.array_equal(out, neural_lines(pic, g_b, size=64))
    worker.send({**header, "id": 3, "model": "cycle-open", "size": 96}, pic.tobytes())
    m = worker.answer()
    assert m["type"] == "result" and m["size"] == 96
    assert np.array_equal(np.frombuffer(m["payload"], np.uint8).reshape(40, 50, 4), neural_lines(pic, g_b, size=96))
    worker.send({**header, "id": 4, "size": "big"}, pic.tobytes())
    assert worker.answer() == {"type": "error", "id": 4, "kind": "user",
                               "message": "lines: size must be a whole number, got 'big'"}
    worker.send({"op": "info", "id": 5})
    assert worker.answer()["models"] == [{"id": "cycle-open", "name": "cycle-open", "kind": "image2image",
                                          "lines": True}]
    worker.close()


def test_info_lists_models_and_providers(worker):
    worker.send({"op": "info", "id": 7})
    m = worker.answer()
    assert m["type"] == "info" and m["models"] == [] and "CPUExecutionProvider" in m["providers"]
    worker.close()


def install_card_model(store_home, reference_onnx, model_id="snappy"):
    """An installed model whose card recommends flats: its default composition is "shade"."""
    import shutil
    folder = store_home / "models" / model_id
    folder.mkdir(parents=True)
    shutil.copy(reference_onnx.path, folder / "model.onnx")
    (folder / "model.json").write_text(json.dumps({"id": model_id, "onnx": "model.onnx", "snap": True,
                                                   "size": 128}))


def read_layers(worker, m):
    """The inline layers that follow the result's pixels, as H x W x 4 arrays."""
    out = []
    for d in m.get("layers", []):
        if d.get("file"):
            data = open(d["file"], "rb").read()
        else:
            data = worker.p.stdout.read(d["bytes"])
        out.append((d["name"], d["blend"], np.frombuffer(data, np.uint8).reshape(60, 80, 4)))
    return out


def test_compose_and_layers_over_the_wire(worker, store_home, reference_onnx, tmp_path):
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    install_card_model(store_home, reference_onnx)
    lines, hints = scene()
    base = {"op": "colorize", "width": 80, "height": 60, "format": "BGRA8", "lines": lines.nbytes,
            "hints": hints.nbytes, "engine": "snappy"}
    here = Engines()
    # No compose: the model's default composition, reported with the working size from its card.
    worker.send(dict(base, id=1), bgra(lines), bgra(hints))
    m = worker.answer()
    assert m["type"] == "result" and m["compose"] == "shade" and m["size"] == 128 and "layers" not in m, m
    want = here.colorize(ColorizeRequest(lines=lines, hints=hints, engine="snappy"))
    got = np.frombuffer(m["payload"], np.uint8).reshape(60, 80, 4)[..., [2, 1, 0, 3]]
    assert np.abs(got.astype(int) - want.rgba).max() <= 1
    # Layers inline: the result's bytes, then Flats, then Shading, in the request's byte order.
    worker.send(dict(base, id=2, layers=True), bgra(lines), bgra(hints))
    m = worker.answer()
    layers = read_layers(worker, m)
    assert [(n, b) for n, b, _ in layers] == [("Flats", "normal"), ("Shading", "grain_merge")]
    assert [d["bytes"] for d in m["layers"]] == [80 * 60 * 4] * 2
    want = here.colorize(ColorizeRequest(lines=lines, hints=hints, engine="snappy", layers=True))
    for (_, _, a), (_, b, _) in zip(layers, want.layers):
        assert np.abs(a[..., [2, 1, 0, 3]].astype(int) - b).max() <= 1
    flats = layers[0][2]
    assert tuple(flats[30, 5]) == (20, 10, 250, 255)       # the red hint's region, exactly (B, G, R, A)
    # The stream is in step after the layers: a snapped run, everything in files.
    out = tmp_path / "result.bgra"
    worker.send(dict(base, id=3, compose="snap", layers=True, result_file=str(out)), bgra(lines), bgra(hints))
    m = worker.answer()
    assert m["compose"] == "snap" and m["file"] == str(out) and m["bytes"] == 0
    assert [d["file"] for d in m["layers"]] == [f"{out}.layer0", f"{out}.layer1"]
    layers = read_layers(worker, m)
    assert len(out.read_bytes()) == 80 * 60 * 4 and layers[0][2][30, 75, 0] == 250
    worker.close()


def test_bad_compose_is_one_line_and_the_stream_stays_in_step(worker, store_home, reference_onnx):
    install_card_model(store_home, reference_onnx)
    lines, hints = scene()
    base = {"op": "colorize", "width": 80, "height": 60, "format": "BGRA8", "lines": lines.nbytes,
            "hints": hints.nbytes, "engine": "snappy"}
    for i, (compose, message) in enumerate([("blur", "unknown composition 'blur': use shade, snap or raw"),
                                            (5, "compose must be shade, snap or raw, got 5")]):
        worker.send(dict(base, id=10 + i, compose=compose), bgra(lines), bgra(hints))
        assert worker.answer() == {"type": "error", "id": 10 + i, "kind": "user", "message": message}
    worker.send(dict(base, id=20, layers="yes"), bgra(lines), bgra(hints))
    assert worker.answer()["message"] == "layers must be true or false, got 'yes'"
    worker.send(dict(base, id=21, compose="raw"), bgra(lines), bgra(hints))
    m = worker.answer()
    assert m["type"] == "result" and m["id"] == 21 and m["compose"] == "raw" and len(m["payload"]) == 80 * 60 * 4
    worker.close()


@pytest.mark.parametrize("shape", [(130, 77, 4), (1, 5, 4), (64, 64, 4)])
def test_red_blue_exchange_on_words_equals_the_channel_swap(shape):
    """BGRA <-> RGBA by 32-bit word operations (bands of rows, ragged last band), in place and
    into the reused band buffer the result is written from; views fall back to bytes."""
    from krita_alac.engine.worker import _bands, swap_red_blue
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    want = np.ascontiguousarray(a[..., [2, 1, 0, 3]])
    assert b"".join(bytes(b) for b in _bands(a, "BGRA8")) == want.tobytes()
    assert b"".join(bytes(b) for b in _bands(a, "RGBA8")) == a.tobytes()
    assert b"".join(bytes(b) for b in _bands(a[:, ::-1], "BGRA8")) == np.ascontiguousarray(want[:, ::-1]).tobytes()
    c = a.copy()
    swap_red_blue(c)
    assert np.array_equal(c, want)
    v = a.copy()[:, ::2]
    swap_red_blue(v)
    assert np.array_equal(v, want[:, ::2])


def test_a_recycled_result_takes_the_next_one_with_the_same_pixels(store_home, reference_onnx):
    """The worker hands each written-out result back (Engines.recycle): the next composition
    is written into that memory, with exactly the pixels a fresh registry makes."""
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    install_card_model(store_home, reference_onnx)
    lines, hints = scene()
    eng = Engines()
    first = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="snappy"))
    memory = first.rgba
    eng.recycle(first)
    assert first.rgba is None
    more = hints.copy()
    more[40:45, 60:70] = (10, 200, 30, 255)
    again = eng.colorize(ColorizeRequest(lines=lines, hints=more, engine="snappy"))
    assert again.rgba is memory
    assert np.array_equal(again.rgba, Engines().colorize(ColorizeRequest(lines=lines, hints=more,
                                                                         engine="snappy")).rgba)
