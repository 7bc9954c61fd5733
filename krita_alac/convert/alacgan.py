"""AlacGAN networks (Ci et al., ACM MM 2018) in PyTorch.

`NetG` and `LocalFeatures` reproduce the original generator and the
Illustration2Vec local-feature extractor parameter for parameter, so training
checkpoints of the original code load unchanged.  `AlacGAN` runs them together
at any size that is a multiple of 32.

`SplitAlacGAN` is the same function cut in two for interactive use: `encode`
does everything that depends only on the sketch, `decode` the rest.  Every
convolution whose input is a concatenation of a sketch-only tensor and a
hint-dependent one is linear in each part, so the sketch-only half of it (plus
the bias) is computed once per line art and cached; re-colorizing with new
hints then skips about a third of the network's work.

This module imports torch; import it only where a PyTorch model is needed.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Per-channel mean of the Illustration2Vec training images (RGB, 0..255).
I2V_MEAN = (164.76139251, 167.47864617, 181.13838569)
# Number of layers of the Illustration2Vec sequential kept as local features
# (up to and including the ReLU after conv4_2: 1/16 of the sketch, 512 channels).
I2V_LAYERS = 15
I2V_CONV_INDICES = (0, 3, 6, 8, 11, 13)
# All 12 convolutions of the published i2v.pth (index -> (out, in)).
I2V_FULL_CONVS = {0: (64, 3), 3: (128, 64), 6: (256, 128), 8: (256, 256), 11: (512, 256), 13: (512, 512),
                  16: (512, 512), 18: (512, 512), 21: (1024, 512), 23: (1024, 1024), 25: (1024, 1024),
                  28: (1539, 1024)}
SIZE_MULTIPLE = 32


def _lrelu(x):
    return F.leaky_relu(x, 0.2, True)


class ResNeXtBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, cardinality: int = 32, dilate: int = 1):
        super().__init__()
        d = out_channels // 2
        self.conv_reduce = nn.Conv2d(in_channels, d, 1, bias=False)
        self.conv_conv = nn.Conv2d(d, d, 3, padding=dilate, dilation=dilate, groups=cardinality, bias=False)
        self.conv_expand = nn.Conv2d(d, out_channels, 1, bias=False)

    def forward(self, x):
        y = _lrelu(self.conv_reduce(x))
        y = _lrelu(self.conv_conv(y))
        return x + self.conv_expand(y)


def _tunnel(in_ch, ch, out_ch, blocks, cardinality):
    """conv in -> ch, ResNeXt blocks, conv ch -> 4*out_ch, PixelShuffle(2)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, ch, 3, padding=1), nn.LeakyReLU(0.2, True),
        nn.Sequential(*[ResNeXtBottleneck(ch, ch, cardinality, d) for d in blocks]),
        nn.Conv2d(ch, out_ch * 4, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, True))


# Dilations of the original tunnels.
_MID_DILATIONS = (1, 1, 2, 2, 4, 4, 2, 1)
_TOP_DILATIONS = (1, 2, 4, 2, 1)


class NetG(nn.Module):
    """The original generator; parameter names match the training checkpoints."""

    def __init__(self, ngf: int = 64, feat_channels: int = 512, tunnel4_blocks: int = 20):
        super().__init__()
        self.ngf = ngf
        self.feat_channels = feat_channels
        self.toH = nn.Sequential(nn.Conv2d(4, ngf, 7, padding=3), nn.LeakyReLU(0.2, True))
        self.to0 = nn.Sequential(nn.Conv2d(1, ngf // 2, 3, padding=1), nn.LeakyReLU(0.2, True))
        self.to1 = nn.Sequential(nn.Conv2d(ngf // 2, ngf, 4, 2, 1), nn.LeakyReLU(0.2, True))
        self.to2 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 4, 2, 1), nn.LeakyReLU(0.2, True))
        self.to3 = nn.Sequential(nn.Conv2d(ngf * 3, ngf * 4, 4, 2, 1), nn.LeakyReLU(0.2, True))
        self.to4 = nn.Sequential(nn.Conv2d(ngf * 4, ngf * 8, 4, 2, 1), nn.LeakyReLU(0.2, True))
        self.tunnel4 = _tunnel(ngf * 8 + feat_channels, ngf * 8, ngf * 4, (1,) * tunnel4_blocks, 32)
        self.tunnel3 = _tunnel(ngf * 8, ngf * 4, ngf * 2, _MID_DILATIONS, 32)
        self.tunnel2 = _tunnel(ngf * 4, ngf * 2, ngf, _MID_DILATIONS, 32)
        self.tunnel1 = _tunnel(ngf * 2, ngf, ngf // 2, _TOP_DILATIONS, 16)
        self.exit = nn.Conv2d(ngf, 3, 3, padding=1)

    def forward(self, sketch, hint, sketch_feat):
        hint = self.toH(hint)
        x0 = self.to0(sketch)
        x1 = self.to1(x0)
        x2 = self.to2(x1)
        x3 = self.to3(torch.cat([x2, hint], 1))
        x4 = self.to4(x3)
        x = self.tunnel4(torch.cat([x4, sketch_feat], 1) if self.feat_channels else x4)
        x = self.tunnel3(torch.cat([x, x3], 1))
        x = self.tunnel2(torch.cat([x, x2], 1))
        x = self.tunnel1(torch.cat([x, x1], 1))
        return torch.tanh(self.exit(torch.cat([x, x0], 1)))


def i2v_sequential() -> nn.Sequential:
    """The first 15 layers of the Illustration2Vec sequential (indices as in i2v.pth)."""
    pool = lambda: nn.MaxPool2d(2, 2, ceil_mode=True)  # noqa: E731
    conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)  # noqa: E731
    return nn.Sequential(
        conv(3, 64), nn.ReLU(), pool(),
        conv(64, 128), nn.ReLU(), pool(),
        conv(128, 256), nn.ReLU(), conv(256, 256), nn.ReLU(), pool(),
        conv(256, 512), nn.ReLU(), conv(512, 512), nn.ReLU())


class LocalFeatures(nn.Module):
    """Illustration2Vec local features of a sketch in [-1, 1]: 512 channels at 1/16 size."""

    def __init__(self):
        super().__init__()
        self.model = i2v_sequential()
        self.register_buffer("mean", torch.tensor(I2V_MEAN, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, sketch):
        x = F.avg_pool2d(sketch, 2, 2)
        x = (x * 0.5 + 0.5) * 255.0
        return self.model(x.expand(-1, 3, -1, -1) - self.mean)


class AlacGAN(nn.Module):
    """sketch 1x1xHxW and hint 1x4x(H/4)x(W/4), both in [-1, 1] -> color 1x3xHxW in [-1, 1]."""

    def __init__(self, netg: NetG, local: LocalFeatures | None):
        super().__init__()
        self.netg = netg
        self.local = local

    def forward(self, sketch, hint):
        feat = None if self.local is None else self.local(sketch)
        return self.netg(sketch, hint, feat)


# --- the split form -------------------------------------------------------

def _split_conv(conv: nn.Conv2d, first: int, bias_on: str):
    """Cut a convolution over cat([a, b]) (a has `first` channels) into conv_a + conv_b.

    The bias goes with the part named by `bias_on` ("a" or "b")."""
    def make(lo, hi, with_bias):
        if hi == lo:
            return None
        c = nn.Conv2d(hi - lo, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, bias=with_bias)
        c.weight.data.copy_(conv.weight.data[:, lo:hi])
        if with_bias:
            c.bias.data.copy_(conv.bias.data)
        return c
    return make(0, first, bias_on == "a"), make(first, conv.in_channels, bias_on == "b")


CACHE_NAMES = ("p0", "p1", "p2", "p3", "p4")


class SplitAlacGAN(nn.Module):
    """AlacGAN as encode(sketch) -> cache and decode(*cache, hint) -> color.

    The cache holds the sketch-only halves of the convolutions that see a
    sketch-only tensor (exit over x0, tunnel1 over x1, tunnel2 and to3 over x2,
    tunnel4 over the local features), biases included:
      p0: 3 @ H      p1: ngf @ H/2     p2: 2ngf @ H/4
      p3: 4ngf @ H/8 (to3 before its activation)   p4: 8ngf @ H/16
    """

    def __init__(self, model: AlacGAN):
        super().__init__()
        g = model.netg
        ngf = g.ngf
        self.local = model.local
        self.feat_channels = g.feat_channels
        self.to0, self.to1, self.to2 = g.to0, g.to1, g.to2
        self.toH, self.to4 = g.toH, g.to4
        # to3 over cat([x2, hint]): x2 part cached (with bias).
        self.to3_x2, self.to3_h = _split_conv(g.to3[0], ngf * 2, "a")
        # tunnel4[0] over cat([x4, feat]): feat part cached (with bias).
        self.t4_x, self.t4_f = _split_conv(g.tunnel4[0], ngf * 8, "b")
        if self.t4_f is None:  # no local features: the cached part is only the bias
            self.register_buffer("t4_bias", g.tunnel4[0].bias.data.clone().view(1, -1, 1, 1))
        self.t4_rest = nn.Sequential(*list(g.tunnel4.children())[1:])
        # tunnel3 over cat([x, x3]): both depend on hints, nothing to cache.
        self.tunnel3 = g.tunnel3
        # tunnel2[0] over cat([x, x2]) and tunnel1[0] over cat([x, x1]): x2 / x1 parts cached.
        self.t2_x, self.t2_s = _split_conv(g.tunnel2[0], ngf * 2, "b")
        self.t2_rest = nn.Sequential(*list(g.tunnel2.children())[1:])
        self.t1_x, self.t1_s = _split_conv(g.tunnel1[0], ngf, "b")
        self.t1_rest = nn.Sequential(*list(g.tunnel1.children())[1:])
        # exit over cat([x, x0]).
        self.exit_x, self.exit_s = _split_conv(g.exit, ngf // 2, "b")

    def encode(self, sketch):
        x0 = self.to0(sketch)
        x1 = self.to1(x0)
        x2 = self.to2(x1)
        if self.feat_channels:
            p4 = self.t4_f(self.local(sketch))
        else:  # (1, C, 1, 1), broadcast by decode
            p4 = self.t4_bias + sketch[:, :1, :1, :1] * 0
        return self.exit_s(x0), self.t1_s(x1), self.t2_s(x2), self.to3_x2(x2), p4

    def decode(self, p0, p1, p2, p3, p4, hint):
        x3 = _lrelu(p3 + self.to3_h(self.toH(hint)))
        x4 = self.to4(x3)
        x = self.t4_rest(self.t4_x(x4) + p4)
        x = self.tunnel3(torch.cat([x, x3], 1))
        x = self.t2_rest(self.t2_x(x) + p2)
        x = self.t1_rest(self.t1_x(x) + p1)
        return torch.tanh(self.exit_x(x) + p0)

    def forward(self, sketch, hint):
        return self.decode(*self.encode(sketch), hint)


class _Encoder(nn.Module):
    def __init__(self, split, dtype):
        super().__init__()
        self.split, self.dtype = split, dtype

    def forward(self, sketch):
        return self.split.encode(sketch.to(self.dtype))


class _Decoder(nn.Module):
    def __init__(self, split, dtype):
        super().__init__()
        self.split, self.dtype = split, dtype

    def forward(self, p0, p1, p2, p3, p4, hint):
        return self.split.decode(p0, p1, p2, p3, p4, hint.to(self.dtype)).float()


def encoder_decoder(split: SplitAlacGAN):
    """The two halves as modules with plain forward(), for export.

    Sketch, hint and color stay float32 whatever the weights' precision; the
    cache tensors between the halves are in the weights' precision."""
    dtype = next(split.parameters()).dtype
    return _Encoder(split, dtype).eval(), _Decoder(split, dtype).eval()
