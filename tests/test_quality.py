"""The quality benchmark's runner, end to end on tiny generated images, and a hand-checked case."""
import json
import os

import numpy as np
import pytest
from PIL import Image

hintauc = pytest.importorskip("hintauc")

from bench.quality.__main__ import main as quality_main  # noqa: E402
from bench.quality.runner import EngineColorizer, list_set  # noqa: E402


def tiny_set(folder, n=2, size=96):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        gt = hintauc.synthetic_illustration(seed=i, size=size)            # BGR
        rgb = gt[..., ::-1]
        Image.fromarray(np.ascontiguousarray(rgb)).save(os.path.join(folder, f"img{i}.png"))
        dark = rgb.max(axis=2) < 60
        lines = np.where(dark, 0, 255).astype(np.uint8)
        edge = np.zeros_like(dark)
        q = rgb.astype(int).sum(axis=2)
        edge[:, 1:] |= q[:, 1:] != q[:, :-1]
        edge[1:] |= q[1:] != q[:-1]
        lines[edge] = 0
        Image.fromarray(lines).save(os.path.join(folder, f"img{i}_lines.png"))
    return folder


def test_runner_end_to_end(tmp_path, store_home):
    data = tiny_set(str(tmp_path / "set"))
    out_json, sheet = str(tmp_path / "r.json"), str(tmp_path / "sheet.png")
    assert quality_main(["--data", data, "--engine", "flats", "--ratios", "0", "0.5", "1",
                         "--json", out_json, "--sheet", sheet]) == 0
    r = json.load(open(out_json))
    assert r["engine"] == "flats" and r["images"] == 2 and r["ratios"] == [0.0, 0.5, 1.0]
    assert set(r["per_ratio"]) == {"0.0", "0.5", "1.0"}
    assert set(r["hint_auc"]) == {"mse", "psnr", "ssim"}
    # More hints never make flats worse on these flat-colored pictures, and full hints are good.
    psnr = [r["per_ratio"][k]["psnr"] for k in ("0.0", "0.5", "1.0")]
    assert psnr[0] < psnr[1] <= psnr[2] + 1e-6 and psnr[2] > 15
    assert "no hints" in next(iter(r["notes"]))          # ratio 0: scored as bare line art
    assert Image.open(sheet).size[0] == 4 * 160


def test_perfect_colorizer_scores_maximal(tmp_path):
    data = tiny_set(str(tmp_path / "set"), n=1)
    pairs = list_set(data)
    gts = {os.path.basename(gt): np.array(Image.open(gt).convert("RGB")) for _, gt in pairs}

    def oracle(sample):
        return np.ascontiguousarray(gts[sample["name"]][..., ::-1])

    res = hintauc.evaluate_colorizer(oracle, pairs, alphas=(0.0, 1.0), metrics=("mse", "psnr", "ssim"))
    for a in (0.0, 1.0):
        m = res["per_alpha"][a]
        assert m["mse"] == 0.0 and m["ssim"] == pytest.approx(1.0, abs=1e-4)  # torchmetrics: float32
        assert m["psnr"] == float("inf") or m["psnr"] >= 99


def test_colorizer_adapter_converts_colors_and_lines(store_home):
    gray = np.full((40, 60), 255, np.uint8)
    gray[:, 29:31] = 0
    color = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    color[5:10, 5:10] = (0, 0, 255)          # BGR red
    mask[5:10, 5:10] = 255
    out = EngineColorizer("flats")({"index": 0, "alpha": 0.1, "line_art": gray, "hint_color": color,
                                    "hint_mask": mask})
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert tuple(out[20, 10]) == (0, 0, 255)         # red region, returned as BGR
    assert tuple(out[20, 30]) == (0, 0, 0)           # line multiplied on top


def test_strokes_protocol_and_several_rows_share_the_hints(tmp_path, store_home):
    data = tiny_set(str(tmp_path / "set"), n=2)
    out_json = str(tmp_path / "s.json")
    assert quality_main(["--data", data, "--engine", "flats", "--hints", "strokes", "--ratios", "0", "0.5", "1",
                         "--json", out_json]) == 0
    r = json.load(open(out_json))
    assert r["protocol"] == "strokes" and r["ratios"] == [0.0, 0.5, 1.0] and r["images"] == 2
    psnr = [r["per_ratio"][k]["psnr"] for k in ("0.0", "0.5", "1.0")]
    assert psnr[0] < psnr[2]                               # strokes in every region beat none
    # The same strokes on every run (seeded by the image's index).
    from bench.quality.runner import stroke_samples
    pairs = list_set(data)
    a = [s["hint_mask"].copy() for _, s in stroke_samples(pairs, (0.0, 1.0))]
    b = [s["hint_mask"].copy() for _, s in stroke_samples(pairs, (0.0, 1.0))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and a[1].any() and not a[0].any()
    with pytest.raises(SystemExit, match="stroke amounts"):
        quality_main(["--data", data, "--engine", "flats", "--hints", "strokes", "--ratios", "0.5", "1"])


def test_auto_row_is_exactly_the_commands_default_request():
    col = EngineColorizer("auto")
    req = col.request(np.zeros((8, 8, 4), np.uint8), None)
    from krita_alac.engine.request import ColorizeRequest
    default = ColorizeRequest(lines=req.lines)
    for f in ("engine", "size", "snap", "compose", "gap", "fill", "backend", "device", "raw", "layers"):
        assert getattr(req, f) == getattr(default, f), f


def test_hintauc_scribbles_are_the_same_on_every_run():
    """FilFinder's medial axis breaks ties at random; seeded_scribbles pins it, so a Hint-AUC
    measured twice is the same number (it moved by up to 0.1 dB between runs before)."""
    import dataclasses

    from bench.quality.runner import SCRIBBLE_SEED, seeded_scribbles
    import fil_finder.filfinder2D as ff
    real = ff.medial_axis
    bgr = hintauc.synthetic_illustration(seed=3, size=128)
    with seeded_scribbles():
        seeded, calls = ff.medial_axis, []
        assert seeded.keywords == {"rng": SCRIBBLE_SEED}

        def counting(*args, **kw):                    # hintauc must go through the seeded one
            calls.append(1)
            return seeded(*args, **kw)
        ff.medial_axis = counting
        a = hintauc.generate_hints(bgr)
        ff.medial_axis = seeded
    assert calls and ff.medial_axis is real           # used, and put back afterwards
    with seeded_scribbles():
        b = hintauc.generate_hints(bgr)
    assert a.scribble_mask.any()
    for f in dataclasses.fields(a):
        assert np.array_equal(np.asarray(getattr(a, f.name)), np.asarray(getattr(b, f.name))), f.name


def _install_shading_model(store_home, reference_onnx, mid="shady"):
    import shutil
    folder = store_home / "models" / mid
    folder.mkdir(parents=True)
    shutil.copy(reference_onnx.path, folder / "model.onnx")
    (folder / "model.json").write_text(json.dumps({"id": mid, "onnx": "model.onnx", "snap": True, "size": 64}))
    return mid


def test_compose_tune_default_row_is_bench_quality_to_the_digit(tmp_path, store_home, reference_onnx, capsys):
    """The tuner re-composes the recorded network colors: its default row must be exactly what
    bench.quality measures for the command's default, and another option must change the score."""
    from bench import compose_tune
    mid = _install_shading_model(store_home, reference_onnx)
    data = tiny_set(str(tmp_path / "set"), n=2)
    for protocol in ("hintauc", "strokes"):
        q_json, t_json = str(tmp_path / f"q_{protocol}.json"), str(tmp_path / f"t_{protocol}.json")
        assert quality_main(["--data", data, "--engine", "alacgan", "--model", mid, "--hints", protocol,
                             "--json", q_json]) == 0
        compose_tune.main(["--data", data, "--engine", mid, "--hints", protocol,
                           "--vary", "strength=1", "unhinted=1", "--json", t_json])
        q, t = json.load(open(q_json)), json.load(open(t_json))
        assert t["rows"][0]["label"] == "(default)"
        assert t["rows"][0]["all"] == pytest.approx(q["hint_auc"]["psnr"], abs=1e-9)
        for k, v in q["per_ratio"].items():
            assert t["rows"][0]["per_ratio"][k] == pytest.approx(v["psnr"], abs=1e-9)
        assert [r["label"] for r in t["rows"]] == ["(default)", "unhinted=1.0", "strength=1.0",
                                                  "strength=1.0 unhinted=1.0"]
        assert t["rows"][3]["all"] != pytest.approx(t["rows"][0]["all"], abs=1e-6)
    out = capsys.readouterr().out
    assert "| (default) |" in out and "first half" in out


def test_compose_tune_refuses_unknown_options_and_flats(tmp_path, store_home):
    from bench import compose_tune
    data = tiny_set(str(tmp_path / "set"), n=1)
    with pytest.raises(SystemExit, match="bad option 'strenght=1'"):
        compose_tune.main(["--data", data, "--vary", "strenght=1"])
    with pytest.raises(SystemExit, match="bad value in 'strength=lots'"):
        compose_tune.main(["--data", data, "--vary", "strength=lots"])
    with pytest.raises(SystemExit, match="did not compose"):
        compose_tune.main(["--data", data])            # no model installed: the default is flats


def test_compose_tune_reuses_its_recording_and_refuses_another(tmp_path, store_home, reference_onnx, capsys,
                                                                 monkeypatch):
    from bench import compose_tune
    from krita_alac.engine.registry import Engines
    mid = _install_shading_model(store_home, reference_onnx)
    data = tiny_set(str(tmp_path / "set"), n=1)
    rec = str(tmp_path / "rec.pkl")
    first = str(tmp_path / "a.json")
    compose_tune.main(["--data", data, "--engine", mid, "--hints", "strokes", "--recorded", rec, "--json", first])
    assert os.path.isfile(rec)

    def no_network(*a, **k):
        raise AssertionError("the network ran again")
    monkeypatch.setattr(Engines, "colorize", no_network)
    again = str(tmp_path / "b.json")
    compose_tune.main(["--data", data, "--engine", mid, "--hints", "strokes", "--recorded", rec,
                       "--vary", "strength=0.5", "--json", again])
    a, b = json.load(open(first)), json.load(open(again))
    assert b["rows"][0]["all"] == a["rows"][0]["all"] and len(b["rows"]) == 2
    with pytest.raises(SystemExit, match="holds another recording"):
        compose_tune.main(["--data", data, "--engine", mid, "--hints", "hintauc", "--recorded", rec])
