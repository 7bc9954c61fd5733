"""CycleGAN training (training/cycle.py): the paired warm start learns, exact resume (also across
the paired -> cycle switch), logs, the sampler never pairs a sketch with its own colors, and a
release folder (training/cycle_release.py) that the engine loads."""
import hashlib
import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from test_training import drawing
from training import cycle
from training.cycle import (CycleConfig, HistoryPool, PairedLoss, build_models, paired_batch, paired_step,
                            train_cycle, unpaired_batch, unpaired_indices)

# One thread: these models are tiny, and on busy shared cores more threads only wait for each other.
TINY = dict(size=64, batch=2, ngf=4, n_down=3, n_blocks=1, ndf=4, pool=2, identity=0.5,
            log_every=1, sample_every=2, threads=1, paired_steps=2, perceptual=1.0, perceptual_size=32)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()     # train_cycle sets the process-wide thread count from its config
    yield
    torch.set_num_threads(n)


def exact_lines(rgb):
    """The drawings' outlines are pure black: their exact line art (255 = paper)."""
    return np.where((rgb == 0).all(2), 0, 255).astype(np.uint8)


def make_data(folder, n=3, with_lines=2):
    """n drawings; the first `with_lines` have exact line art, as artdata's vector sources do."""
    os.makedirs(folder, exist_ok=True)
    items = []
    for i in range(n):
        rgb = drawing(i)
        Image.fromarray(rgb).save(os.path.join(folder, f"{i}.png"))
        it = {"file": f"{i}.png", "source": "generated", "license": "CC0"}
        if i < with_lines:
            Image.fromarray(exact_lines(rgb)).save(os.path.join(folder, f"{i}_lines.png"))
            it["lines"] = f"{i}_lines.png"
        items.append(it)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump({"images": items}, f)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(str(tmp_path_factory.mktemp("cycle_data")))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """2 paired + 2 cycle steps without a break."""
    run = str(tmp_path_factory.mktemp("straight"))
    assert train_cycle(run, 4, dict(TINY, data=data)) == 4
    return run


def _same_checkpoints(a, b, step=4):
    ca = torch.load(os.path.join(a, "last.pth"), weights_only=True)
    cb = torch.load(os.path.join(b, "last.pth"), weights_only=True)
    assert ca["step"] == cb["step"] == step
    for net in ("G_A", "G_B", "D_A", "D_B"):
        for k, v in ca[net].items():
            assert torch.equal(v, cb[net][k]), f"{net}.{k}"
    assert torch.equal(ca["pool_A"], cb["pool_A"]) and torch.equal(ca["pool_B"], cb["pool_B"])
    for name in ("latest_net_G_A.pth", "latest_net_G_B.pth", "paired_net_G_A.pth", "paired_net_G_B.pth"):
        ga = torch.load(os.path.join(a, name), weights_only=True)
        gb = torch.load(os.path.join(b, name), weights_only=True)
        assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga), name


def test_paired_phase_lowers_l1_on_a_fixed_batch(data):
    images = [np.asarray(Image.open(os.path.join(data, f"{i}.png"))) for i in range(3)]
    lines = [exact_lines(im) for im in images[:2]] + [None]
    cfg = CycleConfig(data=data, size=32, batch=4, ngf=8, n_down=2, n_blocks=1, perceptual=0.0, lr=2e-3)
    torch.manual_seed(0)
    g_a, g_b, _, _ = build_models(cfg)
    opt = torch.optim.Adam(list(g_a.parameters()) + list(g_b.parameters()), lr=cfg.lr, betas=cfg.betas)
    v = paired_batch(images, lines, cfg, 0)
    # The batch's G_B targets: exact line art only (image 2 has none, so it does not count there).
    assert v.has_lines.tolist() == [int(i) < 2 for i in v.index]
    loss = PairedLoss(cfg)
    first = [paired_step(g_a, g_b, opt, loss, v, 0) for _ in range(1)][0]
    for s in range(1, 12):
        last = paired_step(g_a, g_b, opt, loss, v, s)
    assert last["l1_A"] < 0.8 * first["l1_A"], (first["l1_A"], last["l1_A"])
    assert last["l1_B"] < 0.8 * first["l1_B"], (first["l1_B"], last["l1_B"])


def test_line_targets_are_exact_lines_or_fixed_xdog(data):
    images = [np.asarray(Image.open(os.path.join(data, f"{i}.png"))) for i in range(3)]
    lines = [exact_lines(im) for im in images]
    cfg = CycleConfig(data=data, size=96, batch=3, exact_lines=0.0)
    # A full-size crop without scaling or flips is not guaranteed, so compare ink amounts:
    # the exact target has the drawing's outline ink, XDoG's also the edges of fills.
    v = paired_batch(images, lines, cfg, 3)
    assert v.has_lines.all()
    ink = (v.lines < 0).float().mean().item()
    assert 0.01 < ink < 0.2
    vx = paired_batch(images, lines, CycleConfig(data=data, size=96, batch=3, exact_lines=0.0, line_target="xdog"), 3)
    assert vx.has_lines.all() and not torch.equal(vx.lines, v.lines)
    # Same step, same crops and colors whatever the target.
    assert torch.equal(vx.color, v.color)
    for i in range(3):
        rgb = ((vx.color[i].permute(1, 2, 0) + 1) / 2).numpy()
        assert np.mean(cycle.target_lines(rgb, None) != vx.lines[i, 0].numpy()) < 1e-3   # fixed XDoG
    # On data without any exact line art, "exact" falls back to XDoG targets that count.
    vn = paired_batch(images, None, cfg, 3)
    assert vn.has_lines.all()
    rgb = ((vn.color[0].permute(1, 2, 0) + 1) / 2).numpy()
    assert np.mean(cycle.target_lines(rgb, None) != vn.lines[0, 0].numpy()) < 1e-3


def test_resume_across_the_paired_to_cycle_switch_is_exact_and_log_is_complete(straight, data, tmp_path, capsys):
    run = str(tmp_path / "resumed")
    assert train_cycle(run, 1, dict(TINY, data=data)) == 1        # inside the paired phase
    assert train_cycle(run, 3, {}) == 3                           # through the switch
    # On resume only cadence settings may change; a fixed one is ignored with a note.
    assert train_cycle(run, 4, {"ngf": 99, "paired_steps": 3, "log_every": 1}) == 4
    out = capsys.readouterr().out
    assert "ngf is fixed" in out and "paired_steps is fixed" in out
    _same_checkpoints(straight, run)

    logs = [json.loads(x) for x in open(os.path.join(straight, "log.jsonl"))]
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    assert [r["phase"] for r in logs] == ["paired", "paired", "cycle", "cycle"]
    for r in logs[:2]:
        assert {"l1_A", "perc_A", "l1_B"} <= r.keys() and "G_A" not in r
    for r in logs[2:]:
        for k in ("G_A", "G_B", "cyc_A", "cyc_B", "idt_A", "idt_B", "D_A", "D_B", "l1_A", "perc_A"):
            assert math.isfinite(r[k]) and r[k] >= 0, (k, r)
        # G_B's paired L1 is logged when a B image of the step has exact line art (images 0 and 1 do).
        assert ("l1_B" in r) == any(i < 2 for i in cycle.unpaired_batch(
            [drawing(0)] * 3, None, CycleConfig(**{k: v for k, v in TINY.items()}), r["step"] - 1)[1].index)
    assert all(r["lr"] == 2e-4 for r in logs)
    assert logs == [{**r, "img_s": logs[i]["img_s"]} for i, r in
                    enumerate(json.loads(x) for x in open(os.path.join(run, "log.jsonl")))]
    # The generators at the switch are kept, and differ from the final ones.
    pa = torch.load(os.path.join(straight, "paired_net_G_A.pth"), weights_only=True)
    la = torch.load(os.path.join(straight, "latest_net_G_A.pth"), weights_only=True)
    assert not all(torch.equal(pa[k], la[k]) for k in pa)
    for step in (2, 4):
        sheet = Image.open(os.path.join(straight, "samples", f"{step:07d}.png"))
        assert sheet.size == (4 * 64, 2 * 64)  # sketch | G_A(sketch) | color | G_B(color), one row per sample
    cfg = json.load(open(os.path.join(straight, "config.json")))
    assert cfg["ngf"] == 4 and cfg["betas"] == [0.5, 0.999] and cfg["cycle"] == 10.0 and cfg["paired_steps"] == 2


def test_prefetching_workers_give_the_same_run(straight, data, tmp_path):
    run = str(tmp_path / "workers")
    assert train_cycle(run, 4, dict(TINY, data=data), workers=2) == 4
    _same_checkpoints(straight, run)


def test_ctrl_c_stops_after_the_step_and_resumes_exactly(straight, data, tmp_path, monkeypatch):
    run = str(tmp_path / "interrupted")
    real = cycle.unpaired_batch

    def batch_then_ctrl_c(images, lines, cfg, step):
        if step == 2:                        # Ctrl-C while the first cycle step's batch is drawn
            os.kill(os.getpid(), signal.SIGINT)
        return real(images, lines, cfg, step)

    monkeypatch.setattr(cycle, "unpaired_batch", batch_then_ctrl_c)
    # The handler found before (Python's default, or SIG_IGN where a shell started the tests in the
    # background), not whatever the run installed.
    before = signal.getsignal(signal.SIGINT)
    assert train_cycle(run, 4, dict(TINY, data=data)) == 3
    assert signal.getsignal(signal.SIGINT) is before   # handler given back
    monkeypatch.setattr(cycle, "unpaired_batch", real)
    assert train_cycle(run, 4, {}) == 4
    _same_checkpoints(straight, run)


def test_engine_runs_the_generators(straight):
    from krita_alac.convert.cyclegan import UResGenerator, load_generator
    from krita_alac.engine.image2image import auto_colors, neural_lines
    g_a = load_generator(os.path.join(straight, "latest_net_G_A.pth"))
    g_b = load_generator(os.path.join(straight, "latest_net_G_B.pth"))
    assert isinstance(g_a, UResGenerator) and (g_a.in_nc, g_a.out_nc, g_a.ngf, g_a.n_down) == (1, 3, 4, 3)
    assert isinstance(g_b, UResGenerator) and (g_b.in_nc, g_b.out_nc) == (3, 1)
    pic = np.zeros((40, 56, 4), np.uint8)
    pic[..., :3] = drawing(5, 56)[:40]
    pic[..., 3] = 255
    pic[:8, :8, 3] = 0                                      # some transparency
    colors = auto_colors(pic, os.path.join(straight, "latest_net_G_A.pth"), size=64, backend="torch")
    assert colors.shape == (40, 56, 4) and colors.dtype == np.uint8 and (colors[..., 3] == 255).all()
    lines = neural_lines(pic, os.path.join(straight, "latest_net_G_B.pth"), size=64, backend="torch")
    assert lines.shape == (40, 56, 4) and lines.dtype == np.uint8 and (lines[..., :3] == 0).all()


def test_release_folder_loads_in_the_engine(straight, tmp_path, monkeypatch):
    from krita_alac.engine import registry
    from krita_alac.engine.image2image import auto_colors, neural_lines
    from training.__main__ import main
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    out = bundled / "cycle-open"
    assert main(["release-cycle", straight, "--out", str(out)]) == 0
    assert sorted(os.listdir(bundled)) == ["cycle-open"]                 # no staging folder left behind
    meta = json.load(open(out / "model.json"))
    assert meta["id"] == "cycle-open" and meta["kind"] == "image2image" and meta["size"] == 256
    assert (meta["training_step"], meta["phase"], meta["paired_steps"]) == (4, "cycle", 2)
    for name, key in ((meta["onnx"], "sha256"), (meta["lines"], "sha256_lines")):
        assert hashlib.sha256(open(out / name, "rb").read()).hexdigest() == meta[key]
        assert meta["onnx_vs_torch"][name] < 1e-4
    assert (out / "MODEL_CARD.md").is_file()
    # As the engine finds a bundled model: by id, an Auto colors engine.
    monkeypatch.setenv("KRITA_ALAC_BUNDLED", str(bundled))
    monkeypatch.setenv("KRITA_ALAC_HOME", str(tmp_path / "home"))
    spec = registry.resolve("cycle-open")
    assert spec.kind == "image2image" and spec.label == "Auto colors (cycle-open)" and spec.size == 256
    pic = np.zeros((40, 56, 4), np.uint8)
    pic[..., :3] = drawing(5, 56)[:40]
    pic[..., 3] = 255
    # The exported graphs give the checkpoints' pictures (ONNX Runtime vs PyTorch).
    c_onnx = auto_colors(pic, spec.onnx, size=64, backend="onnx", device="cpu")
    c_torch = auto_colors(pic, os.path.join(straight, "latest_net_G_A.pth"), size=64, backend="torch", device="cpu")
    assert np.abs(c_onnx.astype(int) - c_torch.astype(int)).max() <= 1
    l_onnx = neural_lines(pic, str(out / meta["lines"]), size=64, backend="onnx", device="cpu")
    l_torch = neural_lines(pic, os.path.join(straight, "latest_net_G_B.pth"), size=64, backend="torch", device="cpu")
    assert np.abs(l_onnx.astype(int) - l_torch.astype(int)).max() <= 1
    # --from paired exports the generators of the switch.
    assert main(["release-cycle", straight, "--out", str(tmp_path / "paired"), "--from", "paired"]) == 0
    pm = json.load(open(tmp_path / "paired" / "model.json"))
    assert (pm["training_step"], pm["phase"]) == (2, "paired") and pm["sha256"] != meta["sha256"]


def test_release_refuses_runs_it_cannot_export(data, tmp_path):
    from training.cycle_release import release_cycle
    with pytest.raises(SystemExit, match="last.pth not found"):
        release_cycle(str(tmp_path / "nothing"), str(tmp_path / "out"))
    run = str(tmp_path / "early")
    assert train_cycle(run, 1, dict(TINY, data=data)) == 1
    with pytest.raises(SystemExit, match="not finished its paired phase"):
        release_cycle(run, str(tmp_path / "out"), "paired")
    with pytest.raises(SystemExit, match="multiple of 32"):
        release_cycle(run, str(tmp_path / "out"), size=100)
    assert not os.path.exists(tmp_path / "out")


def test_cli_with_resnet_color_to_sketch(data, tmp_path):
    from krita_alac.convert.cyclegan import ResnetGenerator, load_generator
    from krita_alac.engine.image2image import neural_lines
    from training.__main__ import main
    run = str(tmp_path / "cli")
    assert main(["cycle", run, "--data", data, "--steps", "1", "--size", "32", "--batch", "1", "--ngf", "4",
                 "--n-down", "2", "--n-blocks", "1", "--ndf", "4", "--g-b", "resnet", "--pool", "0", "--threads", "1",
                 "--perceptual", "0", "--device", "cpu"]) == 0
    g_b = load_generator(os.path.join(run, "latest_net_G_B.pth"))
    assert isinstance(g_b, ResnetGenerator) and (g_b.in_nc, g_b.out_nc, g_b.n_down) == (3, 1, 2)
    pic = np.full((20, 24, 4), 255, np.uint8)
    assert neural_lines(pic, os.path.join(run, "latest_net_G_B.pth"), size=32, backend="torch").shape == (20, 24, 4)
    for bad in (["--size", "36"], ["--line-target", "fuzzy"], ["--exact-lines", "2"], ["--paired-steps", "-1"]):
        with pytest.raises(SystemExit):
            main(["cycle", str(tmp_path / "bad"), "--data", data, "--steps", "1"] + bad)


def test_sampler_never_pairs_a_sketch_with_its_own_image():
    rng = np.random.default_rng(0)
    ia, ib = unpaired_indices(3, 30000, rng)
    assert (ia != ib).all()
    # A is uniform; B is uniform over the other images: each of the 6 (a, b) pairs about 1/6.
    assert np.allclose(np.bincount(ia, minlength=3) / ia.size, 1 / 3, atol=0.02)
    pairs = np.bincount(ia * 3 + ib, minlength=9).reshape(3, 3) / ia.size
    assert np.allclose(pairs[~np.eye(3, dtype=bool)], 1 / 6, atol=0.02) and pairs.diagonal().sum() == 0
    one_a, one_b = unpaired_indices(1, 4, rng)             # a single image cannot be avoided
    assert (one_a == 0).all() and (one_b == 0).all()
    # The batches the loop uses: the same for a step, other images for A and B, model ranges.
    images = [drawing(i) for i in range(3)]
    cfg = CycleConfig(size=32, batch=4)
    for step in range(20):
        a, b = unpaired_batch(images, None, cfg, step)
        assert (a.index != b.index).all()
        assert a.sketch.shape == (4, 1, 32, 32) and b.color.shape == (4, 3, 32, 32)
        for t in (a.sketch, a.color, b.color, b.lines):
            assert -1 <= t.min() and t.max() <= 1
    a2, b2 = unpaired_batch(images, None, cfg, 19)
    assert torch.equal(a.sketch, a2.sketch) and torch.equal(b.color, b2.color)


def test_history_pool_mixes_old_images_and_round_trips():
    pool = HistoryPool(3)
    rng = np.random.default_rng(0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first, rng), first)      # filling up: returned as they are
    out = torch.cat([pool.query(torch.full((1, 1, 1, 1), 10.0 + i), rng) for i in range(40)])
    assert (out < 10).any() and (out >= 10).any()          # some swapped for older ones
    copy = HistoryPool(3)
    copy.load(pool.state())
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    x = torch.full((4, 1, 1, 1), 99.0)
    assert torch.equal(pool.query(x, r1), copy.query(x, r2))
    assert torch.equal(HistoryPool(0).query(x, r1), x)


def test_init_starts_from_another_runs_generators_and_refuses_other_shapes(straight, data, tmp_path):
    run = str(tmp_path / "warm")
    # 0 steps: the saved generators are exactly the ones it started from.
    assert train_cycle(run, 0, dict(TINY, data=data, init=os.path.join(straight, "paired"))) == 0
    for name in ("G_A", "G_B"):
        src = torch.load(os.path.join(straight, f"paired_net_{name}.pth"), weights_only=True)
        got = torch.load(os.path.join(run, f"latest_net_{name}.pth"), weights_only=True)
        assert src.keys() == got.keys() and all(torch.equal(src[k], got[k]) for k in src), name
    # Another generator shape: a clear refusal before any step.
    with pytest.raises(SystemExit, match="does not fit this run's generator"):
        train_cycle(str(tmp_path / "wide"), 1, dict(TINY, data=data, ngf=TINY["ngf"] * 2,
                                                       init=os.path.join(straight, "paired")))
    with pytest.raises(SystemExit, match="no .*nothing_net_G_A.pth"):
        train_cycle(str(tmp_path / "none"), 1, dict(TINY, data=data, init=str(tmp_path / "nothing")))


def test_crop_min_zooms_in_so_strokes_get_thicker():
    from training.synth import random_views
    img = np.full((256, 256, 3), 255, np.uint8)
    img[:, 127:129] = 0                           # a 2-px vertical stroke
    lines = np.where(img[..., 0] > 0, 255, 0).astype(np.uint8)

    def widths(crop_min):
        out = []
        for seed in range(40):
            rgb, ln = random_views(img, 64, np.random.default_rng(seed), lines, crop_min)
            dark = (ln < 128).sum(axis=1)         # dark pixels per row
            out.append(dark.max())
        return np.array(out)
    default, zoomed = widths(0.6), widths(0.25)
    # 64 px from crops of 154-256 px: the stroke is at most 1 px; from 64-256 px, up to 2 px.
    assert default.max() <= 1 and zoomed.max() == 2 and zoomed.mean() > default.mean()
    with pytest.raises(SystemExit, match="--crop-min"):
        CycleConfig(data="x", crop_min=0.0).check()
