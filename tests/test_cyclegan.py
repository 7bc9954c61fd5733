"""CycleGAN generators (Zhang et al. 2019): checkpoint layouts, ONNX export, runtime."""
import os

import numpy as np
import pytest
import torch

from krita_alac.convert.cyclegan import (ResnetGenerator, UResGenerator, generator_from_state_dict, load_generator,
                                 save_generator)
from krita_alac.convert.cyclegan_export import META_DIRECTION, export_onnx
from krita_alac.engine.errors import UserError
from krita_alac.engine.image2image import OnnxImage2Image, auto_colors, load_image2image, neural_lines


def _same(a, b, x):
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A tiny sketch->color hybrid (G_A) and a tiny color->sketch ResnetGenerator (G_B)."""
    d = tmp_path_factory.mktemp("cyclegan")
    torch.manual_seed(0)
    ga, gb = UResGenerator(1, 3, ngf=4, n_down=3, n_blocks=1), ResnetGenerator(3, 1, ngf=4, n_blocks=2)
    save_generator(ga, str(d / "latest_net_G_A.pth"))
    save_generator(gb, str(d / "latest_net_G_B.pth"))
    return d, ga, gb


@pytest.fixture(scope="module")
def exported(ckpts):
    d, ga, gb = ckpts
    ra = export_onnx(ga, str(d / "colors.onnx"))
    rb = export_onnx(gb, str(d / "lines.onnx"))
    return ra, rb


# --- layouts ----------------------------------------------------------------

def test_resnet_layout_is_cyclegans():
    """The key names and shapes pytorch-CycleGAN-and-pix2pix saves for resnet_9blocks, instance norm."""
    sd = ResnetGenerator(3, 3, 64, 9).state_dict()
    assert len(sd) == 48
    expect = {"model.1.weight": (64, 3, 7, 7), "model.1.bias": (64,), "model.4.weight": (128, 64, 3, 3),
              "model.7.weight": (256, 128, 3, 3), "model.10.conv_block.1.weight": (256, 256, 3, 3),
              "model.18.conv_block.5.bias": (256,), "model.19.weight": (256, 128, 3, 3),
              "model.22.weight": (128, 64, 3, 3), "model.26.weight": (3, 64, 7, 7), "model.26.bias": (3,)}
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k


def test_standard_resnet_checkpoint_loads(ckpts):
    d, _, gb = ckpts
    net = load_generator(str(d / "latest_net_G_B.pth"))
    assert isinstance(net, ResnetGenerator) and not net.training
    assert net.config() == {"in_nc": 3, "out_nc": 1, "ngf": 4, "n_blocks": 2, "n_down": 2, "norm": "instance",
                            "dropout": False}
    assert _same(net, gb, torch.rand(1, 3, 24, 40) * 2 - 1)


@pytest.mark.parametrize("cfg", [dict(norm="batch"), dict(dropout=True), dict(n_blocks=0, n_down=3)])
def test_resnet_variants_load(cfg):
    torch.manual_seed(1)
    g = ResnetGenerator(3, 3, ngf=4, **{"n_blocks": 2, **cfg})
    if cfg.get("norm") == "batch":
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    net = generator_from_state_dict(g.state_dict())
    assert {k: v for k, v in net.config().items() if k in cfg} == cfg
    assert _same(net, g, torch.rand(1, 3, 32, 16))


def test_pre_04_instance_norm_statistics_are_dropped():
    g = ResnetGenerator(3, 1, ngf=4, n_blocks=1)
    sd = dict(g.state_dict())
    sd["model.2.running_mean"], sd["model.2.running_var"] = torch.zeros(4), torch.ones(4)
    sd["model.10.conv_block.2.num_batches_tracked"] = torch.tensor(3)
    assert _same(generator_from_state_dict(sd), g, torch.rand(1, 3, 16, 16))


def test_hybrid_checkpoint_loads(ckpts):
    d, ga, _ = ckpts
    net = load_generator(str(d / "latest_net_G_A.pth"))
    assert isinstance(net, UResGenerator) and net.multiple == 8
    assert net.config() == {"in_nc": 1, "out_nc": 3, "ngf": 4, "n_down": 3, "n_blocks": 1}
    assert {"stem.1.weight", "down.2.0.weight", "blocks.0.conv_block.5.weight", "up.0.2.weight", "fuse.2.1.bias",
            "head.1.weight"} <= set(net.state_dict())
    assert _same(net, ga, torch.rand(1, 1, 40, 24))


def test_module_prefix(tmp_path, ckpts):
    _, ga, gb = ckpts
    for g in (ga, gb):
        torch.save({"module." + k: v for k, v in g.state_dict().items()}, tmp_path / "latest_net_G_A.pth")
        assert _same(load_generator(str(tmp_path / "latest_net_G_A.pth")), g, torch.rand(1, g.in_nc, 16, 16))


def test_bad_state_dicts_name_keys_and_shapes(ckpts):
    _, ga, gb = ckpts
    sd = dict(gb.state_dict())
    sd["model.4.weight"] = torch.zeros(8, 4, 5, 5)
    with pytest.raises(UserError, match=r"mis-shaped model\.4\.weight \(8, 4, 5, 5\) \(expected \(8, 4, 3, 3\)\)"):
        generator_from_state_dict(sd, "latest_net_G_B.pth")
    sd = dict(gb.state_dict())
    del sd["model.4.bias"]
    sd["model.5.weight"] = torch.zeros(8)
    with pytest.raises(UserError, match=r"latest_net_G_B.pth does not fit.*missing model\.4\.bias \(8,\); "
                                        r"unexpected model\.5\.weight \(8,\)"):
        generator_from_state_dict(sd, "latest_net_G_B.pth")
    sd = dict(ga.state_dict())
    sd["fuse.1.1.weight"] = torch.zeros(8, 8, 3, 3)
    with pytest.raises(UserError, match=r"mis-shaped fuse\.1\.1\.weight \(8, 8, 3, 3\) \(expected \(8, 16, 3, 3\)\)"):
        generator_from_state_dict(sd, "g.pth")
    with pytest.raises(UserError, match=r"neither a CycleGAN ResnetGenerator.*first keys: conv\.weight \(2, 2\)"):
        generator_from_state_dict({"conv.weight": torch.zeros(2, 2)}, "g.pth")
    with pytest.raises(UserError, match="UnetGenerator.*not supported"):
        generator_from_state_dict({"model.model.0.weight": torch.zeros(4, 3, 4, 4)}, "g.pth")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_with_code_is_refused_unrun(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "latest_net_G_A.pth"
    torch.save({"model.1.weight": _Payload(marker)}, path)
    with pytest.raises(UserError, match="weights-only"):
        load_generator(str(path))
    assert not os.path.exists(marker)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        load_generator(str(tmp_path / "junk.pth"))


# --- ONNX -------------------------------------------------------------------

def test_onnx_matches_torch_on_non_square_inputs(ckpts, exported):
    d, ga, gb = ckpts
    ra, rb = exported
    assert ra.max_abs_diff < 1e-4 and rb.max_abs_diff < 1e-4
    assert ra.check_shape[0] != ra.check_shape[1]
    assert (ra.direction, rb.direction) == ("sketch2color", "color2sketch")
    # Dynamic H and W: another non-square size than the one exported and checked.
    for g, path, shape in ((ga, ra.path, (40, 72)), (gb, rb.path, (36, 20))):
        x = np.random.default_rng(5).uniform(-1, 1, (1, g.in_nc, *shape)).astype(np.float32)
        runner = OnnxImage2Image(path, device="cpu")
        with torch.no_grad():
            ref = g(torch.from_numpy(x)).numpy()
        assert np.abs(runner.run(x) - ref).max() < 1e-4
    import onnx
    meta = {p.key: p.value for p in onnx.load(ra.path).metadata_props}
    assert meta[META_DIRECTION] == "sketch2color" and meta["krita_alac.size_multiple"] == "8"


# --- runtime ----------------------------------------------------------------

def _lines(h=70, w=130):
    a = np.zeros((h, w, 4), np.uint8)
    a[30:34, 10:120, 3] = 255
    a[5:65, 60:63, 3] = 200
    return a


def _picture(h=50, w=90):
    a = np.full((h, w, 4), 255, np.uint8)
    a[10:40, 20:60, :3] = (200, 30, 30)
    return a


def test_auto_colors_canvas_sized_and_opaque(ckpts, exported):
    d, _, _ = ckpts
    lines = _lines()
    out_onnx = auto_colors(lines, exported[0].path, size=64)
    out_torch = auto_colors(lines, str(d / "latest_net_G_A.pth"), size=64)
    for out in (out_onnx, out_torch):
        assert out.shape == (70, 130, 4) and out.dtype == np.uint8 and (out[..., 3] == 255).all()
    assert np.abs(out_onnx.astype(int) - out_torch.astype(int)).max() <= 1


def test_neural_lines_black_on_transparent(ckpts, exported):
    d, _, _ = ckpts
    pic = _picture()
    for model in (exported[1].path, str(d / "latest_net_G_B.pth")):
        out = neural_lines(pic, model, size=48)
        assert out.shape == (50, 90, 4) and out.dtype == np.uint8
        assert (out[..., :3] == 0).all() and out[..., 3].std() > 0
    # Transparent pixels are white paper.
    clear = np.zeros_like(pic)
    white = np.full_like(pic, 255)
    assert np.array_equal(neural_lines(clear, exported[1].path, 32), neural_lines(white, exported[1].path, 32))


def test_bad_inputs(ckpts, exported, tmp_path):
    d, _, _ = ckpts
    colors, lines = exported[0].path, exported[1].path
    with pytest.raises(UserError, match=r"line art must be an RGBA 8-bit image .* got list"):
        auto_colors([[0, 0, 0, 0]], colors)
    with pytest.raises(UserError, match=r"picture must be an RGBA 8-bit image .* shape \(50, 90, 3\)"):
        neural_lines(_picture()[..., :3], lines)
    with pytest.raises(UserError, match="float32"):
        neural_lines(_picture().astype(np.float32), lines)
    with pytest.raises(UserError, match="working size must be a positive multiple of 8 for this model, got 100"):
        auto_colors(_lines(), colors, size=100)
    with pytest.raises(UserError, match="working size must be a positive whole number"):
        auto_colors(_lines(), colors, size=0)
    with pytest.raises(UserError, match="model file not found: .*missing.onnx"):
        auto_colors(_lines(), str(tmp_path / "missing.onnx"))
    with pytest.raises(UserError, match="model file not found"):
        neural_lines(_picture(), str(tmp_path / "latest_net_G_B.pth"))
    with pytest.raises(UserError, match="colors.onnx is a sketch2color model, not color2sketch"):
        neural_lines(_picture(), colors)
    with pytest.raises(UserError, match="latest_net_G_B.pth is a color2sketch model"):
        auto_colors(_lines(), str(d / "latest_net_G_B.pth"))
    with pytest.raises(UserError, match="is a PyTorch checkpoint: export it"):
        auto_colors(_lines(), str(d / "latest_net_G_A.pth"), backend="onnx")
    with pytest.raises(UserError, match="unknown backend"):
        load_image2image(colors, backend="tf")
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8  # what any onnxruntime reads
    onnx.save(m, tmp_path / "other.onnx")
    with pytest.raises(UserError, match=r"not an image-to-image model: inputs \['x'\], outputs \['y'\]"):
        auto_colors(_lines(), str(tmp_path / "other.onnx"))


def test_export_command(ckpts, tmp_path, capsys):
    from krita_alac.convert.cyclegan_export import main
    d, _, _ = ckpts
    assert main([str(d / "latest_net_G_B.pth"), "-o", str(tmp_path / "l.onnx"), "--no-check", "--fp16"]) == 0
    assert "color2sketch" in capsys.readouterr().out
    assert OnnxImage2Image(str(tmp_path / "l.onnx"), "cpu").direction == "color2sketch"
    # The fp16 copy takes and gives float32 arrays through the runtime like the fp32 graph.
    half = OnnxImage2Image(str(tmp_path / "l.fp16.onnx"), "cpu")
    pic = _picture()
    a, b = neural_lines(pic, str(tmp_path / "l.onnx"), 48), neural_lines(pic, half.path, 48)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3
    assert main([str(tmp_path / "nope.pth"), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_rgb_to_rgb_cyclegan_runs_both_ways(tmp_path):
    """Many CycleGAN datasets keep sketches as RGB: a 3 -> 3 generator serves either function."""
    torch.manual_seed(2)
    path = str(tmp_path / "latest_net_G_A.pth")
    save_generator(ResnetGenerator(3, 3, ngf=4, n_blocks=1), path)
    colors = auto_colors(_lines(), path, size=32, backend="torch", device="cpu")
    assert colors.shape == (70, 130, 4) and (colors[..., 3] == 255).all()
    ink = neural_lines(_picture(), path, size=32)
    assert ink.shape == (50, 90, 4) and (ink[..., :3] == 0).all()
