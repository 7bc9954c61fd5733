"""CycleGAN generators for hint-free colorization and neural line extraction.

Zhang, Qu, Jin and Song, "Colorization for Anime Sketches with Cycle-Consistent
Adversarial Network" (IJPE 15(3), 2019) train a CycleGAN on unpaired sketches
and color pictures: one generator maps sketch -> color (colorization without
hints), the other color -> sketch (line extraction).  Their generators join a
U-Net (strided-convolution encoder, decoder that concatenates the encoder's
features) with a bottleneck of residual blocks.  No code or weights were
published, so two layouts are supported, both saved as plain state dicts
named like CycleGAN's (`latest_net_G_A.pth`, `latest_net_G_B.pth`):

ResnetGenerator -- exactly the layout that junyanz/pytorch-CycleGAN-and-pix2pix
writes for `--netG resnet_9blocks` / `resnet_6blocks`, so existing CycleGAN
checkpoints load unchanged.  One `nn.Sequential` called `model`
(n_down = 2 upstream; d = n_down, b = n_blocks):

    model.1          Conv2d(in, ngf, 7) after ReflectionPad2d(3)   [model.2 norm, model.3 ReLU]
    model.4, .7 ...  Conv2d(c, 2c, 3, stride 2, pad 1)             [norm, ReLU after each]
    model.{4+3d+j}   ResnetBlock j: conv_block.1 and conv_block.5 are its two Conv2d(3x3)
                     (conv_block.6 with `--use_dropout`: Dropout sits at index 4)
    model.{4+3d+b+3i} ConvTranspose2d(2c, c, 3, stride 2, pad 1, output_padding 1)
    model.{5+6d+b}   Conv2d(ngf, out, 7) after ReflectionPad2d(3), then tanh

With `--norm instance` (CycleGAN's default) the norms have no parameters and
every convolution has a bias; with `--norm batch` the norms hold
weight/bias/running statistics and the convolutions before them have no bias.
InstanceNorm running statistics that PyTorch < 0.4 saved are dropped on load,
as CycleGAN's own loader does.

UResGenerator -- the paper's U-Net + residual-block hybrid, our own layout
(c_k = ngf * min(2**k, 8); instance norm and ReLU after every convolution but
the last):

    stem.1             Conv2d(in, ngf, 7) after ReflectionPad2d(3)        -> skip 0
    down.{k}.0         Conv2d(c_k, c_{k+1}, 3, stride 2, pad 1)            -> skip k+1
    blocks.{j}.conv_block.1, .5   residual blocks at c_{n_down} (as CycleGAN's)
    up.{k}.2           Upsample x2 (nearest), ReflectionPad2d(1), Conv2d(c_{k+1}, c_k, 3)
    fuse.{k}.1         ReflectionPad2d(1), Conv2d(2 c_k, c_k, 3) on cat(up, skip k)
    head.1             Conv2d(ngf, out, 7) after ReflectionPad2d(3), then tanh

Decoding runs k = n_down-1 ... 0.  Both networks take and give images in
[-1, 1] at any size that is a multiple of 2**n_down.

This module imports torch; import it only where a PyTorch model is needed.
"""
from __future__ import annotations

import os
import re

import torch
import torch.nn as nn

from .checkpoints import MAX_LISTED, check_state_dict, read_tensors, strip_prefix
from ..engine.errors import UserError

DIRECTIONS = ("sketch2color", "color2sketch")
KIND_RESNET = "cyclegan-resnet"
KIND_HYBRID = "cyclegan-unet-res"
NORMS = ("instance", "batch")


def _norm(kind: str, c: int) -> nn.Module:
    # CycleGAN's 'instance': no affine parameters, no running statistics.
    return nn.InstanceNorm2d(c) if kind == "instance" else nn.BatchNorm2d(c)


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, [dropout], pad, conv3x3, norm)."""

    def __init__(self, dim: int, norm: str = "instance", dropout: bool = False):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResnetGenerator, parameter for parameter (see the module docstring)."""
    kind = KIND_RESNET

    def __init__(self, in_nc: int = 3, out_nc: int = 3, ngf: int = 64, n_blocks: int = 9, n_down: int = 2,
                 norm: str = "instance", dropout: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}")
        self.in_nc, self.out_nc, self.ngf = in_nc, out_nc, ngf
        self.n_blocks, self.n_down, self.norm, self.dropout = n_blocks, n_down, norm, dropout
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU(True)]
        c = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), _norm(norm, c * 2), nn.ReLU(True)]
            c *= 2
        layers += [ResnetBlock(c, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       _norm(norm, c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def multiple(self) -> int:
        return 2 ** self.n_down

    def config(self) -> dict:
        return {"in_nc": self.in_nc, "out_nc": self.out_nc, "ngf": self.ngf, "n_blocks": self.n_blocks,
                "n_down": self.n_down, "norm": self.norm, "dropout": self.dropout}

    def forward(self, x):
        return self.model(x)


def _conv_block(cin, cout, k=3, stride=1):
    """(pad,) conv, instance norm, ReLU; strided convolutions pad with zeros like CycleGAN's."""
    if stride == 1:
        return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k), nn.InstanceNorm2d(cout),
                             nn.ReLU(True))
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2), nn.InstanceNorm2d(cout),
                         nn.ReLU(True))


class UResGenerator(nn.Module):
    """U-Net encoder/decoder with skip concatenations around residual blocks."""
    kind = KIND_HYBRID

    def __init__(self, in_nc: int = 1, out_nc: int = 3, ngf: int = 64, n_down: int = 3, n_blocks: int = 6):
        super().__init__()
        if n_down < 1:
            raise ValueError("n_down must be at least 1")
        self.in_nc, self.out_nc, self.ngf, self.n_down, self.n_blocks = in_nc, out_nc, ngf, n_down, n_blocks
        ch = [self.channels(k) for k in range(n_down + 1)]
        self.stem = _conv_block(in_nc, ngf, 7)
        self.down = nn.ModuleList(_conv_block(ch[k], ch[k + 1], 3, stride=2) for k in range(n_down))
        self.blocks = nn.Sequential(*[ResnetBlock(ch[-1]) for _ in range(n_blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), *_conv_block(ch[k + 1], ch[k]))
            for k in range(n_down))
        self.fuse = nn.ModuleList(_conv_block(2 * ch[k], ch[k]) for k in range(n_down))
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh())

    def channels(self, k: int) -> int:
        return self.ngf * min(2 ** k, 8)

    @property
    def multiple(self) -> int:
        return 2 ** self.n_down

    def config(self) -> dict:
        return {"in_nc": self.in_nc, "out_nc": self.out_nc, "ngf": self.ngf, "n_down": self.n_down,
                "n_blocks": self.n_blocks}

    def forward(self, x):
        skips = [self.stem(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        y = self.blocks(skips[-1])
        for k in reversed(range(self.n_down)):
            y = self.up[k](y)
            y = self.fuse[k](torch.cat([y, skips[k]], 1))
        return self.head(y)


# --- loading ----------------------------------------------------------------

_STALE = (".running_mean", ".running_var", ".num_batches_tracked")


def _indices(sd, pattern):
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _first_keys(sd):
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(sd.items())[:MAX_LISTED])


def _need(sd, key, what, ndim=4):
    t = sd.get(key)
    if t is None or t.ndim != ndim:
        got = "missing" if t is None else f"shape {tuple(t.shape)}"
        raise UserError(f"{what}: {key} is {got}, expected a {ndim}-d convolution weight")
    return t


def resnet_config(sd: dict, what: str) -> dict:
    """ResnetGenerator hyper-parameters read off a CycleGAN state dict."""
    w = _need(sd, "model.1.weight", what)
    norm = "batch" if "model.2.weight" in sd else "instance"
    blocks = _indices(sd, r"model\.(\d+)\.conv_block\.")
    convs = _indices(sd, r"model\.(\d+)\.weight$")
    last = convs[-1] if convs else 1
    n_down, rem = divmod(last - 5 - len(blocks), 6)
    if rem or n_down < 0 or (blocks and blocks != list(range(4 + 3 * n_down, 4 + 3 * n_down + len(blocks)))):
        raise UserError(f"{what}: the layers of this ResnetGenerator do not line up "
                        f"(residual blocks at model.{blocks[:3]}..., last convolution model.{last})")
    # Dropout shifts the second convolution of each block from index 5 to 6.
    dropout = any(re.match(r"model\.\d+\.conv_block\.6\.weight$", k) and v.ndim == 4 for k, v in sd.items())
    out = sd[f"model.{last}.weight"]
    return {"in_nc": int(w.shape[1]), "out_nc": int(out.shape[0]), "ngf": int(w.shape[0]),
            "n_blocks": len(blocks), "n_down": n_down, "norm": norm, "dropout": dropout}


def hybrid_config(sd: dict, what: str) -> dict:
    """UResGenerator hyper-parameters read off a state dict in our layout."""
    w = _need(sd, "stem.1.weight", what)
    out = _need(sd, "head.1.weight", what)
    n_down = len(_indices(sd, r"down\.(\d+)\."))
    if n_down < 1:
        raise UserError(f"{what}: no down.0.0.weight: a U-Net+ResBlock generator needs at least one downsampling")
    return {"in_nc": int(w.shape[1]), "out_nc": int(out.shape[0]), "ngf": int(w.shape[0]), "n_down": n_down,
            "n_blocks": len(_indices(sd, r"blocks\.(\d+)\."))}


def generator_from_state_dict(sd: dict, what: str = "state dict") -> nn.Module:
    """The generator (in eval mode) whose layout and shapes `sd` has: keys and shapes checked."""
    sd = strip_prefix(dict(sd))
    if "model.1.weight" in sd:
        cls, cfg = ResnetGenerator, resnet_config(sd, what)
        if cfg["norm"] == "instance":
            # Checkpoints of PyTorch < 0.4 kept statistics of the instance norms.
            sd = {k: v for k, v in sd.items() if not k.endswith(_STALE)}
    elif "stem.1.weight" in sd:
        cls, cfg = UResGenerator, hybrid_config(sd, what)
    elif "model.model.0.weight" in sd:
        raise UserError(f"{what} is a pix2pix/CycleGAN UnetGenerator (--netG unet_*), which is not supported: "
                        "use a resnet_* generator or the U-Net+ResBlock layout")
    else:
        raise UserError(f"{what} is neither a CycleGAN ResnetGenerator (model.1.weight ...) nor a U-Net+ResBlock "
                        f"generator (stem.1.weight ...); first keys: {_first_keys(sd)}")
    if cfg["ngf"] < 1 or cfg["n_down"] > 8:
        raise UserError(f"{what}: unsupported generator shape {cfg}")
    net = cls(**cfg)
    check_state_dict(net.state_dict(), sd, what)
    net.load_state_dict(sd)
    return net.eval()


def load_generator(path: str) -> nn.Module:
    """A generator from `latest_net_G_A.pth`-style files (weights_only: no code is run)."""
    return generator_from_state_dict(read_tensors(path), os.path.basename(path))


def save_generator(net: nn.Module, path: str):
    """A plain state dict, as CycleGAN's save_networks writes it."""
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)


def guess_direction(net: nn.Module) -> str | None:
    """sketch2color for 1 -> 3 channels, color2sketch for 3 -> 1, None when the channels do not tell."""
    if (net.in_nc, net.out_nc) == (1, 3):
        return "sketch2color"
    if (net.in_nc, net.out_nc) == (3, 1):
        return "color2sketch"
    return None


def check_direction(direction: str | None):
    if direction is not None and direction not in DIRECTIONS:
        raise UserError(f"unknown direction {direction!r}: use {' or '.join(DIRECTIONS)}")
