"""Unpaired CycleGAN training (training/cycle.py): exact resume, logs, the engine reads its generators,
and the sampler never pairs a sketch with its own colors."""
import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from test_training import drawing, make_data as _make_data
from training import cycle
from training.cycle import CycleConfig, HistoryPool, train_cycle, unpaired_batch, unpaired_indices

# One thread: these models are tiny, and on busy shared cores more threads only wait for each other.
TINY = dict(size=64, batch=2, ngf=4, n_down=3, n_blocks=1, ndf=4, pool=2, identity=0.5,
            log_every=1, sample_every=2, threads=1)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()     # train_cycle sets the process-wide thread count from its config
    yield
    torch.set_num_threads(n)


def make_data(folder, n=3):
    _make_data(folder, n)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(str(tmp_path_factory.mktemp("cycle_data")))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """A run of 4 steps without a break."""
    run = str(tmp_path_factory.mktemp("straight"))
    assert train_cycle(run, 4, dict(TINY, data=data)) == 4
    return run


def _same_checkpoints(a, b):
    ca = torch.load(os.path.join(a, "last.pth"), weights_only=True)
    cb = torch.load(os.path.join(b, "last.pth"), weights_only=True)
    assert ca["step"] == cb["step"] == 4
    for net in ("G_A", "G_B", "D_A", "D_B"):
        for k, v in ca[net].items():
            assert torch.equal(v, cb[net][k]), f"{net}.{k}"
    assert torch.equal(ca["pool_A"], cb["pool_A"]) and torch.equal(ca["pool_B"], cb["pool_B"])
    for name in ("latest_net_G_A.pth", "latest_net_G_B.pth"):
        ga = torch.load(os.path.join(a, name), weights_only=True)
        gb = torch.load(os.path.join(b, name), weights_only=True)
        assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga), name


def test_two_plus_two_steps_equal_four_and_log_is_complete(straight, data, tmp_path, capsys):
    run = str(tmp_path / "resumed")
    assert train_cycle(run, 2, dict(TINY, data=data)) == 2
    # On resume only cadence settings may change; a fixed one is ignored with a note.
    assert train_cycle(run, 4, {"ngf": 99, "log_every": 1}) == 4
    assert "ngf is fixed" in capsys.readouterr().out
    _same_checkpoints(straight, run)

    logs = [json.loads(x) for x in open(os.path.join(straight, "log.jsonl"))]
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    for r in logs:
        for k in ("G_A", "G_B", "cyc_A", "cyc_B", "idt_A", "idt_B", "D_A", "D_B"):
            assert math.isfinite(r[k]) and r[k] >= 0, (k, r)
        assert r["lr"] == 2e-4
    assert [json.loads(x)["step"] for x in open(os.path.join(run, "log.jsonl"))] == [1, 2, 3, 4]
    sheet = Image.open(os.path.join(straight, "samples", "0000004.png"))
    assert sheet.size == (4 * 64, 2 * 64)     # sketch | G_A(sketch) | color | G_B(color), one row per sample
    cfg = json.load(open(os.path.join(straight, "config.json")))
    assert cfg["ngf"] == 4 and cfg["betas"] == [0.5, 0.999] and cfg["cycle"] == 10.0


def test_ctrl_c_stops_after_the_step_and_resumes_exactly(straight, data, tmp_path, monkeypatch):
    run = str(tmp_path / "interrupted")
    real = cycle.unpaired_batch

    def batch_then_ctrl_c(images, cfg, step):
        if step == 1:                        # Ctrl-C while step 2 is being drawn
            os.kill(os.getpid(), signal.SIGINT)
        return real(images, cfg, step)

    monkeypatch.setattr(cycle, "unpaired_batch", batch_then_ctrl_c)
    assert train_cycle(run, 4, dict(TINY, data=data)) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler given back
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


def test_cli_with_resnet_color_to_sketch(data, tmp_path):
    from krita_alac.convert.cyclegan import ResnetGenerator, load_generator
    from krita_alac.engine.image2image import neural_lines
    from training.__main__ import main
    run = str(tmp_path / "cli")
    assert main(["cycle", run, "--data", data, "--steps", "1", "--size", "32", "--batch", "1", "--ngf", "4",
                 "--n-down", "2", "--n-blocks", "1", "--ndf", "4", "--g-b", "resnet", "--pool", "0", "--threads", "1"]) == 0
    g_b = load_generator(os.path.join(run, "latest_net_G_B.pth"))
    assert isinstance(g_b, ResnetGenerator) and (g_b.in_nc, g_b.out_nc, g_b.n_down) == (3, 1, 2)
    pic = np.full((20, 24, 4), 255, np.uint8)
    assert neural_lines(pic, os.path.join(run, "latest_net_G_B.pth"), size=32, backend="torch").shape == (20, 24, 4)
    with pytest.raises(SystemExit):
        main(["cycle", str(tmp_path / "bad"), "--data", data, "--steps", "1", "--size", "36"])


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
        s, c, ia, ib = unpaired_batch(images, cfg, step)
        assert (ia != ib).all()
        assert s.shape == (4, 1, 32, 32) and c.shape == (4, 3, 32, 32)
        assert -1 <= s.min() and s.max() <= 1 and -1 <= c.min() and c.max() <= 1
    s2, c2, _, _ = unpaired_batch(images, cfg, 19)
    assert torch.equal(s, s2) and torch.equal(c, c2)


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
