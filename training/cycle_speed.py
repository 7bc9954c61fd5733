"""Training speed of cycle-open configurations: images per CPU-second, one thread.

    nice -n 19 python -m training.cycle_speed [--data DIR] [--steps 2] [--configs 16x2,16x4,24x4,32x4]

For each generator size (ngf x residual blocks, n_down 3) at --size 128, batch 4, it
times one paired step (both directions, VGG16 perceptual on a 64-px window) and one
cycle step (G_A, G_B, cycle, paired terms on the same passes, both PatchGANs, ndf
32) after a warm-up step, and prints images per CPU-second of this process
(time.process_time, so other jobs on the shared cores do not count) with the
generators' multiply-adds per 128-px image.  Batches are real views of --data when
given (the first 64 images), else random images; the data preparation (crop, XDoG,
exact line crop) is timed on its own.  A measurement, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn

from .cycle import (CycleConfig, HistoryPool, PairedLoss, build_models, cycle_step, paired_batch,
                    paired_step, unpaired_batch)


def macs(net: nn.Module, shape) -> int:
    """Multiply-adds of the convolutions of one forward pass on a tensor of `shape`."""
    total = [0]

    def hook(m, i, o):
        total[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(*shape))
    for h in hs:
        h.remove()
    return total[0]


def _images(data: str | None, n: int = 64):
    if data:
        from PIL import Image
        man = json.load(open(os.path.join(data, "manifest.json"), encoding="utf-8"))["images"][:n]
        imgs = [np.asarray(Image.open(os.path.join(data, it["file"])).convert("RGB")) for it in man]
        lines = [np.asarray(Image.open(os.path.join(data, it["lines"])).convert("L")) if it.get("lines") else None
                 for it in man]
        return imgs, lines
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(8)], None


def measure(cfg: CycleConfig, images, lines, steps: int) -> dict:
    torch.manual_seed(0)
    g_a, g_b, d_a, d_b = build_models(cfg)
    opt_g = torch.optim.Adam(list(g_a.parameters()) + list(g_b.parameters()), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=cfg.lr, betas=cfg.betas)
    loss = PairedLoss(cfg)
    pools = (HistoryPool(cfg.pool), HistoryPool(cfg.pool))
    out = {"ngf": cfg.ngf, "blocks": cfg.n_blocks,
           "params_M": round(sum(p.numel() for n in (g_a, g_b) for p in n.parameters()) / 1e6, 3),
           "gmac_GA": round(macs(g_a, (1, 1, cfg.size, cfg.size)) / 1e9, 3),
           "gmac_GB": round(macs(g_b, (1, 3, cfg.size, cfg.size)) / 1e9, 3)}
    pb = [paired_batch(images, lines, cfg, s) for s in range(steps + 1)]
    ub = [unpaired_batch(images, lines, cfg, s) for s in range(steps + 1)]
    for name, fn in (("paired", lambda s: paired_step(g_a, g_b, opt_g, loss, pb[s], s)),
                     ("cycle", lambda s: cycle_step((g_a, g_b, d_a, d_b), (opt_g, opt_d), pools, loss,
                                                    *ub[s], cfg, s))):
        fn(0)                                   # warm-up: allocations, first-call overheads
        t = time.process_time()
        for s in range(1, steps + 1):
            fn(s)
        out[f"{name}_img_cpu_s"] = round(steps * cfg.batch / (time.process_time() - t), 3)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.cycle_speed")
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--configs", default="16x2,16x4,24x4,32x4", help="ngf x residual blocks, comma-separated")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    images, lines = _images(a.data)
    base = dict(data="-", size=a.size, batch=a.batch, ndf=32, paired_steps=0)
    cfg = CycleConfig(**base)
    t = time.process_time()
    for s in range(8):
        paired_batch(images, lines, cfg, s)
    prep = (time.process_time() - t) / (8 * a.batch)
    print(f"data preparation: {prep * 1000:.1f} CPU-ms per sample (paired), twice that per cycle sample (A and B)")
    print("| ngf | res. blocks | params G_A+G_B (M) | GMAC/img G_A, G_B | paired img/CPU-s | cycle img/CPU-s |")
    print("|---|---|---|---|---|---|")
    for c in a.configs.split(","):
        ngf, blocks = (int(x) for x in c.split("x"))
        r = measure(CycleConfig(**base, ngf=ngf, n_blocks=blocks), images, lines, a.steps)
        print(f"| {ngf} | {blocks} | {r['params_M']} | {r['gmac_GA']}, {r['gmac_GB']} | "
              f"{r['paired_img_cpu_s']} | {r['cycle_img_cpu_s']} |", flush=True)


if __name__ == "__main__":
    main()
