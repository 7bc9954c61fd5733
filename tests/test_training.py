"""Training code: sample synthesis, exact resume, and the checkpoint's compatibility with the engine."""
import json
import os

import numpy as np
import torch
from PIL import Image

from training.synth import hints, line_art, sample
from training.train import train


def drawing(seed, size=96):
    rng = np.random.default_rng(seed)
    a = np.full((size, size, 3), 255, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(3):
        cx, cy, r = rng.integers(20, size - 20, 2).tolist() + [int(rng.integers(8, 20))]
        d = np.hypot(xx - cx, yy - cy)
        a[d < r] = rng.integers(0, 256, 3)
        a[np.abs(d - r) < 1.5] = 0
    return a


def make_data(folder, n=3):
    os.makedirs(folder, exist_ok=True)
    items = []
    for i in range(n):
        Image.fromarray(drawing(i)).save(os.path.join(folder, f"{i}.png"))
        items.append({"file": f"{i}.png", "source": "generated", "license": "CC0"})
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump({"images": items}, f)


def test_samples_have_model_ranges_and_real_hints():
    rng = np.random.default_rng(0)
    s, h, t = sample(drawing(0), 64, rng)
    assert s.shape == (1, 64, 64) and h.shape == (4, 16, 16) and t.shape == (3, 64, 64)
    assert s.min() >= -1 and s.max() <= 1 and t.min() >= -1 and t.max() <= 1
    rgb = drawing(1, 64).astype(np.float32) / 255
    ink = line_art(rgb, np.random.default_rng(1)) < 0
    assert ink.any() and ink.mean() < 0.3                      # lines, not a blot
    counts = [hints(rgb, np.random.default_rng(i))[3].sum() for i in range(200)]
    empty = np.mean([c == 0 for c in counts])
    assert 0.35 < empty < 0.65                                 # about half the samples are hint-free
    hm = hints(rgb, np.random.default_rng(3), p_empty=0.0)
    m = hm[3] > 0
    small = rgb.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    assert np.allclose(hm[:3, m].T, small[m] * 2 - 1, atol=1e-5)  # hint colors are the target's


def test_resume_is_exact_and_checkpoint_loads_in_engine(tmp_path):
    data = str(tmp_path / "data")
    make_data(data)
    opts = dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1, log_every=1, sample_every=2)
    train(str(tmp_path / "a"), 4, dict(opts))
    train(str(tmp_path / "b"), 2, dict(opts))
    train(str(tmp_path / "b"), 4, {})
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k, v in a["state_dictG"].items():
        assert torch.equal(v, b["state_dictG"][k]), k
    logs = [json.loads(x) for x in open(tmp_path / "a" / "log.jsonl")]
    assert [r["step"] for r in logs] == [1, 2, 3, 4] and all(r["l1"] > 0 for r in logs)
    assert os.path.isfile(tmp_path / "a" / "samples" / "0000004.png")
    # The engine reads the training checkpoint as it is: no local features needed.
    from krita_alac.convert.checkpoints import load_alacgan
    m = load_alacgan(str(tmp_path / "a" / "last.pth"), None)
    assert m.local is None and m.netg.ngf == 32
    with torch.no_grad():
        out = m(torch.ones(1, 1, 64, 96), torch.zeros(1, 4, 16, 24))
    assert out.shape == (1, 3, 64, 96)


def test_model_without_local_features_exports_with_the_same_interface(tmp_path):
    from krita_alac.convert.alacgan import AlacGAN, NetG
    from krita_alac.convert.onnx_export import export_onnx, random_inputs
    from krita_alac.engine.runtime import OnnxColorizer, TorchColorizer
    torch.manual_seed(0)
    model = AlacGAN(NetG(ngf=32, feat_channels=0, tunnel4_blocks=1), None).eval()
    rep = export_onnx(model, str(tmp_path / "small.onnx"))
    assert rep.max_abs_diff < 1e-4
    c = OnnxColorizer(rep.path, "cpu")
    sketch, hint = random_inputs(96, 64, seed=2)
    _, hint2 = random_inputs(96, 64, seed=3)
    cache = c.encode(sketch)
    assert np.abs(c.decode(cache, hint2) - TorchColorizer(model, "cpu").run(sketch, hint2)).max() < 1e-4


def test_sigterm_stops_with_a_checkpoint(tmp_path):
    import subprocess
    import sys
    import time
    data = str(tmp_path / "data")
    make_data(data)
    run = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "training", "train", run, "--data", data, "--steps", "100000", "--size", "64",
           "--batch", "1", "--ngf", "32", "--tunnel4-blocks", "1", "--log-every", "1", "--threads", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 120
    while time.time() < deadline and p.stdout.readline().count('"step"') == 0:
        pass
    p.terminate()
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "stopped at step" in out
    step = torch.load(os.path.join(run, "last.pth"), weights_only=True)["step"]
    logged = [json.loads(x)["step"] for x in open(os.path.join(run, "log.jsonl"))]
    assert step >= 1 and logged[-1] == step          # nothing trained after the last checkpoint is lost


def test_region_hints_follow_the_benchmark_protocol(tmp_path):
    """Region maps come from hintauc; a ratio keeps the largest regions' scribbles in their mean colors."""
    from training.regions import build, load, pad_square
    from training.synth import region_hints, region_view
    data = str(tmp_path / "data")
    make_data(data, n=2)
    with open(os.path.join(data, "manifest.json")) as f:
        m = json.load(f)
    m["size"] = 256
    with open(os.path.join(data, "manifest.json"), "w") as f:
        json.dump(m, f)
    build(data, workers=1)
    maps = load(data)
    rank, scribble = maps["0.png"]
    assert rank.shape == scribble.shape == (64, 64)
    assert rank[0, 0] == 0                        # the white paper around the drawing is the largest region
    n = int(rank.max()) + 1
    assert n >= 4 and scribble.sum() > n          # the three disks and more, each with a scribble
    rgb = pad_square(drawing(0), 256).astype(np.float32) / 255
    assert region_hints(rgb, rank, scribble, 0)[3].sum() == 0
    h1 = region_hints(rgb, rank, scribble, 1)
    on = h1[3] > 0
    assert on.any() and (rank[on] == 0).all() and np.allclose(h1[:3, on], 1.0, atol=0.02)   # white paper, white hint
    hall = region_hints(rgb, rank, scribble, n)
    assert np.array_equal(hall[3] > 0, scribble)
    small = rgb.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    r = int(rank[32, 32])
    assert np.allclose(hall[:3, scribble & (rank == r)].T, small[rank == r].mean(0) * 2 - 1, atol=1e-5)
    # A training crop keeps crop, hint grid and region maps aligned.
    rgb_c, h = region_view(drawing(0), rank, scribble, 64, np.random.default_rng(5))
    assert rgb_c.shape == (64, 64, 3) and h.shape == (4, 16, 16)


def test_init_starts_a_run_from_another_runs_weights(tmp_path):
    data = str(tmp_path / "data")
    make_data(data)
    opts = dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1)
    train(str(tmp_path / "a"), 2, dict(opts))
    train(str(tmp_path / "b"), 0, dict(opts, init=str(tmp_path / "a" / "last.pth")))
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=True)["state_dictG"]
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)
    assert b["step"] == 0 and all(torch.equal(v, b["state_dictG"][k]) for k, v in a.items())
    import pytest
    from krita_alac.engine.errors import UserError
    with pytest.raises(UserError, match="does not fit the model"):
        train(str(tmp_path / "c"), 0, dict(opts, ngf=64, init=str(tmp_path / "a" / "last.pth")))


def test_cosine_decay_sets_the_generators_lr_from_the_step_alone(tmp_path):
    from training.train import Config, lr_at
    cfg = Config(lr=1e-4, decay_steps=4)
    lrs = [lr_at(cfg, s) for s in range(7)]
    assert lrs[0] == 1e-4 and abs(lrs[2] - 0.525e-4) < 1e-12
    assert abs(lrs[4] - 5e-6) < 1e-15 and lrs[6] == lrs[4]
    assert all(a > b for a, b in zip(lrs[:4], lrs[1:5]))
    assert lr_at(Config(lr=1e-4), 10 ** 6) == 1e-4
    data = str(tmp_path / "data")
    make_data(data)
    run = str(tmp_path / "r")
    train(run, 3, dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1, decay_steps=4, log_every=1))
    ck = torch.load(tmp_path / "r" / "last.pth", weights_only=True)
    # the last step taken (2) ran at lr_at(2); the stored config keeps the schedule for a resume
    assert ck["optimizerG"]["param_groups"][0]["lr"] == lr_at(cfg, 2)
    assert ck["config"]["decay_steps"] == 4
    import json
    logged = [json.loads(x)["lr"] for x in open(tmp_path / "r" / "log.jsonl")]
    assert logged == [float(f"{lr_at(cfg, s):.3g}") for s in range(3)]


def test_train_only_moves_the_named_parts_and_l2_is_logged(tmp_path):
    data = str(tmp_path / "data")
    make_data(data)
    opts = dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1, log_every=1, lr=1e-3)
    train(str(tmp_path / "a"), 1, dict(opts))
    init = str(tmp_path / "a" / "last.pth")
    train(str(tmp_path / "b"), 3, dict(opts, init=init, train_only="tunnel1,exit", pixel_loss="l2"))
    a = torch.load(init, weights_only=True)["state_dictG"]
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)
    moved = {k for k, v in a.items() if not torch.equal(v, b["state_dictG"][k])}
    assert moved and all(k.startswith(("tunnel1.", "exit.")) for k in moved), sorted(moved)[:5]
    assert "exit.weight" in moved and b["config"]["train_only"] == "tunnel1,exit"
    logs = [json.loads(x) for x in open(tmp_path / "b" / "log.jsonl")]
    assert len(logs) == 3 and all(r["l2"] > 0 and r["l1"] > 0 for r in logs)
    # psnr: each picture's log squared error; the logged value is the batch's mean PSNR in dB
    train(str(tmp_path / "e"), 2, dict(opts, init=init, pixel_loss="psnr"))
    logs = [json.loads(x) for x in open(tmp_path / "e" / "log.jsonl")]
    assert len(logs) == 2 and all(3.0 < r["psnr"] < 60.0 for r in logs)
    import pytest
    with pytest.raises(SystemExit, match="no part tunnel9"):
        train(str(tmp_path / "c"), 1, dict(opts, train_only="tunnel9"))
    with pytest.raises(SystemExit, match="pixel_loss 'l3'"):
        train(str(tmp_path / "d"), 1, dict(opts, pixel_loss="l3"))
