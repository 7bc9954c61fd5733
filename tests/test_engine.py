"""AlacGAN engine: faithfulness to the original code, ONNX export, runtimes, caching."""
import os
import pickle

import numpy as np
import pytest
import torch

from conftest import reference_output
from krita_alac.convert.checkpoints import load_alacgan, load_generator, load_local_features
from krita_alac.engine.errors import UserError
from krita_alac.convert.onnx_export import random_inputs
from krita_alac.engine.runtime import OnnxColorizer, TorchColorizer, choose_providers

TOL = 1e-4


@pytest.mark.parametrize("case", ["dots", "empty"])
def test_torch_matches_original_outputs(reference, reference_model, case):
    sketch, hint = reference.case_inputs(case)
    with torch.no_grad():
        s = torch.from_numpy(sketch)
        out = reference_model(s, torch.from_numpy(hint)).numpy()
        feat = reference_model.local(s).numpy()
    assert np.abs(out - reference_output(case)).max() < TOL
    assert np.abs(feat - reference_output(case, "feat")).max() < TOL


@pytest.mark.parametrize("case", ["dots", "empty"])
def test_onnx_matches_original_outputs(reference, reference_onnx, case):
    sketch, hint = reference.case_inputs(case)
    c = OnnxColorizer(reference_onnx.path, device="cpu")
    assert c.caches and c.device == "CPU"
    assert np.abs(c.run(sketch, hint) - reference_output(case)).max() < TOL


def test_export_report_compares_onnxruntime_with_torch(reference_onnx):
    assert reference_onnx.max_abs_diff is not None and reference_onnx.max_abs_diff < TOL
    assert reference_onnx.check_shape[0] != reference_onnx.check_shape[1]  # non-square check input


def test_onnx_graph_interface(reference_onnx):
    import onnx
    m = onnx.load(reference_onnx.path)
    ins = {i.name: i for i in m.graph.input}
    assert set(ins) == {"sketch", "hint"} and [o.name for o in m.graph.output] == ["color"]
    dims = [d.dim_param or d.dim_value for d in ins["sketch"].type.tensor_type.shape.dim]
    assert dims[:2] == [1, 1] and all(isinstance(d, str) for d in dims[2:])  # H, W dynamic
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["krita_alac.cache_outputs"] == "p0,p1,p2,p3,p4"


def test_cached_rerun_equals_fresh_run(reference, reference_onnx, reference_model):
    sketch, hint = reference.case_inputs("dots")
    _, other = random_inputs(512, 512, seed=3)
    for c in (OnnxColorizer(reference_onnx.path, device="cpu"), TorchColorizer(reference_model, "cpu")):
        cache = c.encode(sketch)
        first = c.decode(cache, hint)
        second = c.decode(cache, other)  # new hints, same line art
        assert np.abs(second - c.run(sketch, other)).max() < 1e-5
        assert np.abs(first - reference_output("dots")).max() < TOL
        assert np.abs(second - first).max() > 1e-3  # the hints really changed the result


def test_backends_agree_on_non_square_input(reference_onnx, reference_model):
    sketch, hint = random_inputs(160, 96, seed=11)
    a = OnnxColorizer(reference_onnx.path, device="cpu").run(sketch, hint)
    b = TorchColorizer(reference_model, "cpu").run(sketch, hint)
    assert a.shape == b.shape == (1, 3, 160, 96)
    assert np.abs(a - b).max() < TOL


def test_fp16_copy(reference_onnx):
    import onnx
    assert os.path.getsize(reference_onnx.fp16_path) < 0.6 * os.path.getsize(reference_onnx.path)
    m = onnx.load(reference_onnx.fp16_path)
    kinds = {t.data_type for t in m.graph.initializer if len(t.dims) == 4}
    assert kinds == {onnx.TensorProto.FLOAT16}
    sketch, hint = random_inputs(128, 96, seed=5)
    try:
        half = OnnxColorizer(reference_onnx.fp16_path, device="cpu")
    except UserError as e:  # some onnxruntime CPU builds have no fp16 convolutions
        pytest.skip(f"fp16 not runnable on this CPU build: {e}")
    full = OnnxColorizer(reference_onnx.path, device="cpu").run(sketch, hint)
    assert np.abs(half.run(sketch, hint) - full).max() < 1e-2


def test_int8_weights_quarter_the_file_and_keep_the_colors(reference, reference_model, reference_onnx, tmp_path):
    import onnx
    from krita_alac.convert.onnx_export import export_onnx
    rep = export_onnx(reference_model, str(tmp_path / "q.onnx"), int8=True)
    assert rep.float_max_abs_diff < TOL            # the export was exact before quantizing
    assert rep.int8_weights > 0
    assert os.path.getsize(rep.path) < 0.3 * os.path.getsize(reference_onnx.path)
    m = onnx.load(rep.path)
    big = [t for t in m.graph.initializer if len(t.dims) == 4 and np.prod(t.dims) >= 1024]
    assert big and {t.data_type for t in big} == {onnx.TensorProto.INT8}
    assert sum(n.op_type == "DequantizeLinear" for n in m.graph.node) == rep.int8_weights
    c = OnnxColorizer(rep.path, device="cpu")
    assert c.caches                                 # still cut at the cache tensors
    sketch, hint = reference.case_inputs("dots")
    out = c.run(sketch, hint)
    err = out - reference_output("dots")
    assert 0 < np.abs(err).max() < 0.1              # quantized, not a copy of the float graph
    assert 10 * np.log10(4.0 / np.mean(err ** 2)) > 35   # PSNR over the [-1, 1] range
    _, other = random_inputs(512, 512, seed=3)
    cache = c.encode(sketch)
    assert np.abs(c.decode(cache, other) - c.run(sketch, other)).max() < 1e-5


def test_int8_weights_are_dequantized_once_when_the_model_opens(reference, reference_model, tmp_path):
    """The runtime's graphs hold fp32 weights (no per-run DequantizeLinear) and color exactly as
    onnxruntime colors the stored int8 file; a graph with int8 activations is left alone."""
    import onnx
    import onnxruntime as ort
    from onnx import helper
    from krita_alac.convert.onnx_export import export_onnx
    from krita_alac.engine.runtime import _load_graphs, fold_weight_dequantize
    rep = export_onnx(reference_model, str(tmp_path / "q.onnx"), int8=True, check=False)
    graphs = _load_graphs(rep.path)
    for name in ("encoder", "decoder"):
        m = onnx.load_from_string(graphs[name])
        assert not [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
        assert onnx.TensorProto.INT8 not in {t.data_type for t in m.graph.initializer}
    sketch, hint = reference.case_inputs("dots")
    stored = ort.InferenceSession(rep.path, providers=["CPUExecutionProvider"]).run(
        None, {"sketch": sketch, "hint": hint})[0]
    assert np.abs(OnnxColorizer(rep.path, device="cpu").run(sketch, hint) - stored).max() < 1e-4
    # A quantized activation in front of a convolution: nothing to fold, nothing changed.
    m = onnx.load(rep.path)
    n_before = len(m.graph.node)
    m.graph.node.append(helper.make_node("QuantizeLinear", ["color", "s", "z"], ["q"]))
    assert fold_weight_dequantize(m) == 0 and len(m.graph.node) == n_before + 1


def test_int8_activations_run_on_the_cpu_and_as_floats_elsewhere(reference, reference_model, tmp_path):
    """Calibrated int8 activations: the CPU session keeps them (QuantizeLinear in its graphs),
    a GPU session gets the float graph (none left); both stay close to PyTorch, the cut
    at the cache tensors still holds, and the weights keep their names."""
    import onnx
    from krita_alac.convert.onnx_export import export_onnx
    from krita_alac.engine.runtime import _load_graphs
    feeds = [dict(zip(("sketch", "hint"), random_inputs(96, 160, seed=s))) for s in range(6)]
    hold = [dict(zip(("sketch", "hint"), random_inputs(96, 160, seed=s))) for s in (10, 11)]
    rep = export_onnx(reference_model, str(tmp_path / "q.onnx"), int8=True, calibration=feeds, holdout=hold)
    assert rep.int8_activations > 20 and rep.int8_weights > 20
    assert rep.int8_psnr > 25
    m = onnx.load(rep.path)
    names = {t.name for t in m.graph.initializer}
    weights = [n for n in names if n.endswith("_quantized")]
    assert weights and all(w[:-len("_quantized")] in {i for n in m.graph.node for i in n.input} for w in weights)
    ops = lambda blob: {n.op_type for n in onnx.load_from_string(blob).graph.node}   # noqa: E731
    cpu, gpu = _load_graphs(rep.path, True), _load_graphs(rep.path, False)
    assert cpu["meta"]["cache"] == gpu["meta"]["cache"] != []
    for name in ("encoder", "decoder"):
        assert "QuantizeLinear" in ops(cpu[name])
        assert not {"QuantizeLinear", "DequantizeLinear"} & ops(gpu[name])
    sketch, hint = reference.case_inputs("dots")
    c = OnnxColorizer(rep.path, device="cpu")
    out = c.run(sketch, hint)
    cache = c.encode(sketch)
    assert np.abs(c.decode(cache, hint) - out).max() < 1e-6
    import onnxruntime as ort
    so = ort.SessionOptions()
    enc = ort.InferenceSession(gpu["encoder"], so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(gpu["decoder"], so, providers=["CPUExecutionProvider"])
    floats = dec.run(None, {**dict(zip(gpu["meta"]["cache"], enc.run(None, {"sketch": sketch}))), "hint": hint})[0]
    ref = reference_output("dots")
    psnr = lambda a: 10 * np.log10(4.0 / np.mean((a - ref) ** 2))                     # noqa: E731
    assert psnr(floats) > 35                         # 7-bit weights, float arithmetic
    assert 25 < psnr(out) < psnr(floats)             # int8 arithmetic: close, and really quantized


# --- checkpoint formats ---------------------------------------------------

def _sd(path):
    return torch.load(path, weights_only=True)


def test_generator_formats_load_identically(official_ckpt, tmp_path):
    netg, _ = official_ckpt
    ref = load_generator(netg).state_dict()
    g = _sd(netg)["state_dictG"]
    plain = {k[len("module."):]: v for k, v in g.items()}
    torch.save(g, tmp_path / "prefixed.pth")
    torch.save(plain, tmp_path / "plain.pth")
    from safetensors.torch import save_file
    save_file(plain, str(tmp_path / "g.safetensors"))
    for name in ("prefixed.pth", "plain.pth", "g.safetensors"):
        got = load_generator(str(tmp_path / name)).state_dict()
        assert all(torch.equal(got[k], ref[k]) for k in ref), name


def test_i2v_full_and_trimmed(official_ckpt, tmp_path):
    _, i2v = official_ckpt
    full = _sd(i2v)
    assert len(full) == 24
    trimmed = {k: v for k, v in full.items() if int(k.split(".")[0]) <= 13}
    torch.save(trimmed, tmp_path / "trim.pth")
    a = load_local_features(i2v).state_dict()
    b = load_local_features(str(tmp_path / "trim.pth")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mis_shaped_missing_and_unexpected_keys_are_named(official_ckpt, tmp_path):
    netg, i2v = official_ckpt
    g = dict(_sd(netg)["state_dictG"])
    g["module.exit.weight"] = torch.zeros(3, 32, 3, 3)
    del g["module.tunnel1.3.bias"]
    g["module.extra.weight"] = torch.zeros(2)
    torch.save({"state_dictG": g}, tmp_path / "bad.pth")
    with pytest.raises(UserError) as e:
        load_generator(str(tmp_path / "bad.pth"))
    msg = str(e.value)
    assert "exit.weight (3, 32, 3, 3) (expected (3, 64, 3, 3))" in msg
    assert "missing tunnel1.3.bias (128,)" in msg
    assert "unexpected extra.weight (2,)" in msg
    assert "\n" not in msg
    bad_i2v = dict(_sd(i2v))
    bad_i2v["3.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(bad_i2v, tmp_path / "bad_i2v.pth")
    with pytest.raises(UserError, match=r"3\.weight \(128, 64, 5, 5\) \(expected \(128, 64, 3, 3\)\)"):
        load_local_features(str(tmp_path / "bad_i2v.pth"))


def test_not_a_checkpoint(tmp_path, official_ckpt):
    p = tmp_path / "notes.pth"
    p.write_text("hello")
    with pytest.raises(UserError, match="notes.pth is not a PyTorch checkpoint"):
        load_generator(str(p))
    with pytest.raises(UserError, match="i2v.pth is not an AlacGAN generator"):
        load_generator(official_ckpt[1])  # the wrong kind of weights


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/krita_alac_pwned",))


def test_pickles_are_never_executed(tmp_path):
    if os.path.exists("/tmp/krita_alac_pwned"):
        os.unlink("/tmp/krita_alac_pwned")
    p = tmp_path / "evil.pth"
    torch.save({"state_dictG": {"x": torch.zeros(1)}, "payload": _Evil()}, p)
    with pytest.raises(UserError, match="weights-only"):
        load_generator(str(p))
    assert not os.path.exists("/tmp/krita_alac_pwned")
    with open(tmp_path / "raw.pkl", "wb") as f:
        pickle.dump(_Evil(), f, protocol=2)
    with pytest.raises(UserError):
        load_generator(str(tmp_path / "raw.pkl"))
    assert not os.path.exists("/tmp/krita_alac_pwned")


def test_i2v_required_for_generator_with_feature_input(official_ckpt):
    with pytest.raises(UserError, match="needs the Illustration2Vec weights"):
        load_alacgan(official_ckpt[0], None)


# --- providers ------------------------------------------------------------

def test_provider_order_puts_cpu_last():
    avail = ["CPUExecutionProvider", "AzureExecutionProvider", "CoreMLExecutionProvider", "CUDAExecutionProvider"]
    assert choose_providers("auto", avail) == ["CUDAExecutionProvider", "CoreMLExecutionProvider",
                                               "CPUExecutionProvider"]
    assert choose_providers("cpu", avail) == ["CPUExecutionProvider"]
    assert choose_providers("cuda", avail) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(UserError, match="no ROCm support"):
        choose_providers("rocm", avail)
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        choose_providers("tpu", avail)


def test_gpu_provider_failure_falls_back_to_cpu(reference_onnx, monkeypatch):
    import krita_alac.engine.runtime as rt
    real = rt.OrtSessions._session

    def fake_session(self, blob, providers):
        if providers[0] != "CPUExecutionProvider":
            raise RuntimeError("CUDA failure 2: out of memory\nmore")
        return real(self, blob, providers)

    monkeypatch.setattr(rt.OrtSessions, "_session", fake_session)
    monkeypatch.setattr(rt, "choose_providers", lambda d, a: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    warn = []
    c = rt.OnnxColorizer(reference_onnx.path, device="auto", warnings=warn)
    assert c.device == "CPU"
    assert warn == ["CUDA failed to start (CUDA failure 2: out of memory); using the CPU"]


def test_gpu_run_failure_retries_on_cpu(reference_onnx, monkeypatch):
    import krita_alac.engine.runtime as rt
    c = rt.OnnxColorizer(reference_onnx.path, device="cpu")
    sketch, hint = random_inputs(64, 64, seed=1)
    want = c.run(sketch, hint)
    c._ort.provider, c._ort.device = "CUDAExecutionProvider", "CUDA"  # pretend the session is on a GPU

    class Boom:
        def run(self, *a):
            raise RuntimeError("Failed to allocate memory for requested buffer of size 123")

    c._ort.sessions = {k: Boom() for k in c._ort.sessions}
    got = c.run(sketch, hint)
    assert c.device == "CPU" and np.array_equal(got, want)
    assert "CUDA failed (Failed to allocate memory" in c.warnings[0]


def test_engines_reuse_sketch_features_while_only_hints_change(reference_onnx, store_home):
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    lines = np.zeros((96, 128, 4), np.uint8)
    lines[40:44] = (0, 0, 0, 255)
    hints = np.zeros((96, 128, 4), np.uint8)
    hints[10:20, 10:20] = (255, 0, 0, 255)
    other = hints.copy()
    other[60:70, 60:70] = (0, 0, 255, 255)
    eng = Engines()
    req = lambda h, l=lines: ColorizeRequest(lines=l, hints=h, engine=reference_onnx.path, size=128)  # noqa: E731
    first = eng.colorize(req(hints))
    second = eng.colorize(req(other))
    assert not first.cached and second.cached
    assert first.device == "onnxruntime · CPU" and first.engine == "AlacGAN (ref.onnx)"
    fresh = Engines().colorize(req(other))
    assert np.abs(second.rgba.astype(int) - fresh.rgba.astype(int)).max() <= 1
    moved = lines.copy()
    moved[40:44] = 0
    moved[50:54] = (0, 0, 0, 255)
    assert not eng.colorize(req(other, moved)).cached    # new line art: features recomputed


def test_optimized_graphs_are_cached_on_disk_for_a_restarted_worker(reference_onnx, store_home):
    from krita_alac.engine.runtime import OnnxColorizer, OptimizedGraphs
    rng = np.random.default_rng(0)
    sketch = rng.uniform(-1, 1, (1, 1, 64, 64)).astype(np.float32)
    hint = rng.uniform(-1, 1, (1, 4, 16, 16)).astype(np.float32)
    first = OnnxColorizer(reference_onnx.path, "cpu")
    assert all(isinstance(g, bytes) for g in first._ort.graphs.values())
    folders = list((store_home / "cache" / "ort").iterdir())
    assert len(folders) == 1 and sorted(p.name for p in folders[0].iterdir()) == [
        "decoder" + OptimizedGraphs.SUFFIX, "encoder" + OptimizedGraphs.SUFFIX, "meta.json"]
    second = OnnxColorizer(reference_onnx.path, "cpu")          # a restarted worker
    assert all(str(g).endswith(OptimizedGraphs.SUFFIX) for g in second._ort.graphs.values())
    assert np.abs(first.run(sketch, hint) - second.run(sketch, hint)).max() <= 1e-5
    # A damaged cache is ignored, never an error.
    (folders[0] / "meta.json").write_text("{")
    third = OnnxColorizer(reference_onnx.path, "cpu")
    assert np.abs(third.run(sketch, hint) - second.run(sketch, hint)).max() <= 1e-5


def test_worker_leaves_a_core_and_runs_at_lower_priority(monkeypatch):
    from krita_alac.engine import process
    monkeypatch.setattr(process.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert process.worker_threads() == 3
    monkeypatch.setattr(process.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert process.worker_threads() == 1
    niced = []
    monkeypatch.setattr(process.os, "nice", lambda n: niced.append(n) or n)
    monkeypatch.delenv(process.THREADS_ENV, raising=False)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    assert process.configure_worker() == 1
    assert niced == [process.WORKER_NICENESS] and process.configured_threads() == 1


def test_model_json_size_and_composition_defaults(reference_onnx, store_home):
    import json
    import shutil
    from krita_alac.engine.compose import grain_merge
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    folder = store_home / "models" / "sized"
    folder.mkdir(parents=True)
    shutil.copy(reference_onnx.path, folder / "model.onnx")
    (folder / "model.json").write_text(json.dumps({"id": "sized", "onnx": "model.onnx", "snap": True, "size": 64}))
    lines = np.zeros((96, 128, 4), np.uint8)
    lines[:, 60:63] = (0, 0, 0, 255)
    hints = np.zeros((96, 128, 4), np.uint8)
    hints[40:46, 10:40] = (200, 30, 30, 255)
    eng = Engines()
    r = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="sized", layers=True))
    assert r.size == 64 and r.compose == "shade" and r.engine == "AlacGAN (sized) + flats and shading"
    assert [(n, b) for n, _, b in r.layers] == [("Flats", "normal"), ("Shading", "grain_merge")]
    assert np.abs(grain_merge(r.layers[0][1], r.layers[1][1]).astype(int) - r.rgba.astype(int)).max() <= 1
    # Where the artist painted: the stroke's color (the shading fades out around strokes).
    assert np.abs(r.rgba[40:46, 10:40, :3].astype(int) - (200, 30, 30)).max() <= 3
    assert eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="sized", size=96)).size == 96
    assert eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="sized", snap=True)).compose == "snap"
    assert eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="sized", snap=False)).compose == "raw"
    # A re-run with new hints analysed the line art once.
    assert eng.lineart.misses == 1 and eng.lineart.hits >= 2
    # A model file without a card: the network alone at the default size.
    r = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine=reference_onnx.path))
    assert r.compose == "raw" and r.size == 512


def test_flip_ensemble_makes_the_colors_mirror_with_the_drawing(reference_onnx, store_home, capsys):
    import json
    import shutil
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    for name, extra in (("plain", {}), ("flipped", {"ensemble": "flip"}), ("bad", {"ensemble": "rotate"}),
                        ("rawflip", {"ensemble": "flip-raw"})):
        folder = store_home / "models" / name
        folder.mkdir(parents=True)
        shutil.copy(reference_onnx.path, folder / "model.onnx")
        (folder / "model.json").write_text(json.dumps({"id": name, "onnx": "model.onnx", "size": 64, **extra}))
    rng = np.random.default_rng(3)
    lines = np.zeros((128, 96, 4), np.uint8)           # at 64: 64 x 48 content, padded to 64 x 64 on the right
    lines[:, 30:33] = (0, 0, 0, 255)
    lines[70:73] = (0, 0, 0, 255)
    hints = np.zeros((128, 96, 4), np.uint8)
    hints[10:30, 5:25] = (200, 30, 30, 255)
    hints[90:120, 60:80] = (rng.integers(0, 255, 3).tolist() + [255])
    eng = Engines()

    def run(engine, lines_, hints_):
        r = eng.colorize(ColorizeRequest(lines=lines_, hints=hints_, engine=engine))
        assert r.compose == "raw" and r.size == 64
        return r.rgba[..., :3].astype(int)

    def mirrored(engine):
        return np.abs(run(engine, lines[:, ::-1].copy(), hints[:, ::-1].copy())[:, ::-1] - run(engine, lines, hints))

    # The ensemble mirrors its colors with the drawing (only rounding differs); the network alone does not.
    assert mirrored("flipped").max() <= 2
    assert mirrored("plain").mean() > 5 * max(mirrored("flipped").mean(), 0.05)
    # ... and its colors are the network's, not something else: close to the plain run where both agree.
    assert np.abs(run("flipped", lines, hints) - run("plain", lines, hints)).mean() < 40
    # "flip-raw": the ensemble for the network alone only; composed results are the plain model's.
    assert np.array_equal(run("rawflip", lines, hints), run("flipped", lines, hints))
    composed = [eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine=m, compose="shade")).rgba
                for m in ("rawflip", "plain", "flipped")]
    assert np.array_equal(composed[0], composed[1]) and not np.array_equal(composed[0], composed[2])
    with pytest.raises(UserError, match='unknown "ensemble" \'rotate\''):
        eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="bad"))
    from krita_alac.engine.cli import main
    capsys.readouterr()
    assert main(["info"]) == 0
    listed = {ln.split(":")[0].strip(): ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")}
    assert listed["flipped"].endswith("working size 64, flip ensemble")
    assert listed["plain"].endswith("working size 64")
    assert listed["rawflip"].endswith("working size 64, flip ensemble for the network alone")
