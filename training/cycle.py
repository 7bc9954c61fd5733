"""Unpaired CycleGAN training: sketch <-> color, as Zhang et al. (2019) trained it.

    python -m training cycle RUN --data DIR --steps N [--minutes M] [--size 128] ...

Domain A is line art (`synth.line_art` of a random crop of one training image),
domain B is color (`synth.random_view` of a crop of another image).  The two
images of a sample are drawn independently, except that B never reuses A's
image when the data has more than one, so no sketch is ever seen with its own
colors.  (No loss couples an A image with a B image anyway -- the adversarial
and cycle terms each stay within one domain -- so this is belt and braces.)

Models (CycleGAN's names): G_A sketch(1) -> color(3), a `UResGenerator` (the
paper's U-Net + residual blocks); G_B color(3) -> sketch(1), a `UResGenerator`
or, with --g-b resnet, CycleGAN's `ResnetGenerator`; D_A judges colors (real B
vs G_A's), D_B judges sketches (real A vs G_B's), both 70x70-style PatchGANs.
Losses as in CycleGAN: LSGAN, cycle L1 with lambda 10 both ways, optional
identity term (weight --identity, relative to lambda as in CycleGAN; since the
domains have different channel counts it is G_A(gray(color)) ~ color and
G_B(sketch as RGB) ~ sketch), Adam 2e-4 (0.5, 0.999) with optional linear decay,
and CycleGAN's 50-image history pool for the discriminators (--pool 0: off).

A run lives in one folder:
  config.json            the run's settings (fixed at the first start; only
                         ckpt_minutes, log_every, sample_every, threads may change)
  last.pth               everything needed to resume exactly: step, G_A, G_B,
                         D_A, D_B, both optimizers, both history pools, torch RNG
  latest_net_G_A.pth     sketch -> color, a plain state dict (krita_alac.convert.cyclegan),
  latest_net_G_B.pth     color -> sketch; both load in the engine as they are
                         (image2image.auto_colors / neural_lines, cyclegan_export)
  log.jsonl              one line per logged step: losses, lr, images/s
  samples/NNNNNNN.png    rows of sketch | G_A(sketch) | color | G_B(color)

Each step's batch (and the pool's choices) come from RNGs seeded by
(seed, step), so stopping and resuming reproduces an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from krita_alac.convert.cyclegan import ResnetGenerator, UResGenerator, save_generator

from .synth import LUMA, line_art, random_view
from .train import Dataset, _atomic_save, run_config

G_B_KINDS = ("ures", "resnet")


@dataclass
class CycleConfig:
    data: str = ""
    size: int = 128              # training crop, a multiple of 2**n_down
    batch: int = 4
    ngf: int = 32                # generators' base width
    n_down: int = 3
    n_blocks: int = 4            # residual blocks in each generator's bottleneck
    g_b: str = "ures"            # color -> sketch generator: ures (U-Net + ResBlocks) or resnet (CycleGAN's)
    ndf: int = 64                # discriminators' base width
    d_layers: int = 3            # 3 = CycleGAN's 70x70 PatchGAN
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)  # as in CycleGAN
    lr_decay_start: int = 0      # linear decay of lr to 0 from this step ...
    lr_decay_end: int = 0        # ... to this one; 0 = constant lr
    cycle: float = 10.0          # lambda of the cycle-consistency L1, both ways
    identity: float = 0.0        # identity weight, relative to `cycle` (CycleGAN's default is 0.5)
    pool: int = 50               # discriminators' history of generated images; 0 = none
    seed: int = 2019
    ckpt_minutes: float = 5.0
    log_every: int = 20
    sample_every: int = 500
    threads: int = 0             # torch intra-op threads; 0 = default

    def check(self):
        m = 2 ** self.n_down
        if self.n_down < 1 or self.size < 2 * m or self.size % m:
            raise SystemExit(f"--size must be a multiple of 2**n_down = {m} and at least {2 * m}, got {self.size}")
        if self.g_b not in G_B_KINDS:
            raise SystemExit(f"--g-b must be one of {G_B_KINDS}, got {self.g_b!r}")
        if min(self.batch, self.ngf, self.ndf, self.d_layers) < 1 or self.n_blocks < 0 or self.pool < 0:
            raise SystemExit("batch, ngf, ndf and d-layers must be positive; n-blocks and pool not negative")
        if self.lr_decay_end and self.lr_decay_end <= self.lr_decay_start:
            raise SystemExit("--lr-decay-end must come after --lr-decay-start")


class PatchDiscriminator(nn.Module):
    """CycleGAN's NLayerDiscriminator with instance norm (70x70 receptive field for 3 layers):
    4x4 convolutions, stride 2 then 1, LeakyReLU 0.2, a final 1-channel convolution."""

    def __init__(self, in_nc: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = ndf
        for n in range(1, n_layers + 1):
            o = ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(c, o, 4, 2 if n < n_layers else 1, 1), nn.InstanceNorm2d(o),
                       nn.LeakyReLU(0.2, True)]
            c = o
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class HistoryPool:
    """CycleGAN's ImagePool (Shrivastava et al.): with probability 1/2 a generated image is
    swapped for an older one once the pool is full.  Choices come from the `rng` passed in,
    and the pool's contents go into the checkpoint, so resuming is exact."""

    def __init__(self, size: int):
        self.size = size
        self.images: list = []

    def query(self, batch: torch.Tensor, rng) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for im in batch.detach():
            im = im.unsqueeze(0).clone()
            if len(self.images) < self.size:
                self.images.append(im)
                out.append(im)
            elif rng.random() > 0.5:
                i = int(rng.integers(0, self.size))
                out.append(self.images[i].clone())
                self.images[i] = im
            else:
                out.append(im)
        return torch.cat(out, 0)

    def state(self):
        return torch.cat(self.images, 0) if self.images else torch.zeros(0)

    def load(self, t: torch.Tensor):
        self.images = [x.unsqueeze(0).clone() for x in t] if t.numel() else []


def unpaired_indices(n: int, batch: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(image indices of the A samples, of the B samples): uniform, and a sample's B image is
    never its A image when n > 1 (B is uniform over the other n - 1 images)."""
    ia = rng.integers(0, n, batch)
    if n == 1:
        return ia, ia.copy()
    return ia, (ia + rng.integers(1, n, batch)) % n


def unpaired_batch(images: list, cfg: CycleConfig, step: int):
    """(sketches Bx1xSxS, colors Bx3xSxS, A indices, B indices) for training step `step`."""
    rng = np.random.default_rng([cfg.seed, step])
    ia, ib = unpaired_indices(len(images), cfg.batch, rng)
    sketches, colors = [], []
    for a, b in zip(ia, ib):
        sketches.append(line_art(random_view(images[a], cfg.size, rng), rng)[None])
        colors.append(random_view(images[b], cfg.size, rng).transpose(2, 0, 1) * 2.0 - 1.0)
    return (torch.from_numpy(np.stack(sketches).astype(np.float32)),
            torch.from_numpy(np.stack(colors).astype(np.float32)), ia, ib)


def build_models(cfg: CycleConfig):
    g_a = UResGenerator(1, 3, ngf=cfg.ngf, n_down=cfg.n_down, n_blocks=cfg.n_blocks)
    if cfg.g_b == "resnet":
        g_b = ResnetGenerator(3, 1, ngf=cfg.ngf, n_blocks=cfg.n_blocks, n_down=cfg.n_down)
    else:
        g_b = UResGenerator(3, 1, ngf=cfg.ngf, n_down=cfg.n_down, n_blocks=cfg.n_blocks)
    d_a = PatchDiscriminator(3, cfg.ndf, cfg.d_layers)   # colors
    d_b = PatchDiscriminator(1, cfg.ndf, cfg.d_layers)   # sketches
    return g_a, g_b, d_a, d_b


def lr_at(cfg: CycleConfig, step: int) -> float:
    """Learning rate for step `step` (0-based): constant, then linear decay to 0 if asked."""
    if not cfg.lr_decay_end or step < cfg.lr_decay_start:
        return cfg.lr
    return cfg.lr * max(0.0, (cfg.lr_decay_end - step) / (cfg.lr_decay_end - cfg.lr_decay_start))


def _check_config(cfg: CycleConfig):
    if not cfg.data:
        raise SystemExit("--data is needed to start a run")
    cfg.check()


def load_config(run: str, overrides: dict) -> CycleConfig:
    return run_config(run, CycleConfig, overrides, _check_config)


def save_sheet(path, sketch, fake_color, color, fake_sketch, n=4):
    """Rows of sketch | G_A(sketch) | color | G_B(color)."""
    from PIL import Image
    rgb = lambda t: t.expand(3, -1, -1).permute(1, 2, 0).numpy()  # noqa: E731
    rows = [np.concatenate([rgb(sketch[i]), rgb(fake_color[i]), rgb(color[i]), rgb(fake_sketch[i])], 1)
            for i in range(min(n, sketch.shape[0]))]
    img = ((np.concatenate(rows, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


class _StopFlag:
    """Ctrl-C (SIGINT) asks the loop to stop after the current step; a second one interrupts at once."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.set = True
        print("\nstopping after this step (Ctrl-C again to stop now)", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def train_cycle(run: str, steps: int, overrides: dict, minutes: float | None = None) -> int:
    """Train (or resume) the run in folder `run` until step `steps`; returns the step reached."""
    cfg = load_config(run, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = Dataset(cfg.data)
    torch.manual_seed(cfg.seed)
    g_a, g_b, d_a, d_b = build_models(cfg)
    opt_g = torch.optim.Adam(list(g_a.parameters()) + list(g_b.parameters()), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=cfg.lr, betas=cfg.betas)
    pool_a, pool_b = HistoryPool(cfg.pool), HistoryPool(cfg.pool)   # generated sketches, generated colors
    ckpt_path = os.path.join(run, "last.pth")
    step = 0
    if os.path.isfile(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        for net, key in ((g_a, "G_A"), (g_b, "G_B"), (d_a, "D_A"), (d_b, "D_B")):
            net.load_state_dict(ck[key])
        opt_g.load_state_dict(ck["optimizer_G"])
        opt_d.load_state_dict(ck["optimizer_D"])
        pool_a.load(ck["pool_A"])
        pool_b.load(ck["pool_B"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        print(f"resumed {run} at step {step}", flush=True)
    os.makedirs(os.path.join(run, "samples"), exist_ok=True)

    def checkpoint():
        for net, name in ((g_a, "latest_net_G_A.pth"), (g_b, "latest_net_G_B.pth")):
            p = os.path.join(run, name)
            save_generator(net, p + ".tmp")
            os.replace(p + ".tmp", p)
        _atomic_save({"step": step, "G_A": g_a.state_dict(), "G_B": g_b.state_dict(),
                      "D_A": d_a.state_dict(), "D_B": d_b.state_dict(),
                      "optimizer_G": opt_g.state_dict(), "optimizer_D": opt_d.state_dict(),
                      "pool_A": pool_a.state(), "pool_B": pool_b.state(),
                      "torch_rng": torch.get_rng_state(),
                      "config": {k: v for k, v in asdict(cfg).items() if k != "betas"}}, ckpt_path)

    nets = (g_a, g_b, d_a, d_b)
    for n in nets:
        n.train()
    t_start = t_ckpt = t_log = time.time()
    seen = 0
    clean = True        # False while a step is half done: such a state is not saved
    log = open(os.path.join(run, "log.jsonl"), "a", encoding="utf-8")
    try:
        with _StopFlag() as stop:
            while step < steps and not stop.set:
                if minutes is not None and time.time() - t_start > minutes * 60:
                    break
                real_a, real_b, _, _ = unpaired_batch(data.images, cfg, step)
                pool_rng = np.random.default_rng([cfg.seed, step, 1])
                lr = lr_at(cfg, step)
                clean = False
                for opt in (opt_g, opt_d):
                    for grp in opt.param_groups:
                        grp["lr"] = lr

                # Generators: fool both discriminators, close both cycles.
                fake_b = g_a(real_a)          # sketch -> color
                rec_a = g_b(fake_b)
                fake_a = g_b(real_b)          # color -> sketch
                rec_b = g_a(fake_a)
                for d in (d_a, d_b):
                    d.requires_grad_(False)
                gan_a = _lsgan(d_a(fake_b), True)
                gan_b = _lsgan(d_b(fake_a), True)
                cyc_a = F.l1_loss(rec_a, real_a)
                cyc_b = F.l1_loss(rec_b, real_b)
                loss_g = gan_a + gan_b + cfg.cycle * (cyc_a + cyc_b)
                rec = {"step": step + 1, "G_A": gan_a.item(), "G_B": gan_b.item(),
                       "cyc_A": cyc_a.item(), "cyc_B": cyc_b.item()}
                if cfg.identity > 0:
                    idt_a = F.l1_loss(g_a((real_b * 0.5 + 0.5).permute(0, 2, 3, 1).matmul(
                        torch.from_numpy(LUMA)).unsqueeze(1) * 2.0 - 1.0), real_b)
                    idt_b = F.l1_loss(g_b(real_a.expand(-1, 3, -1, -1)), real_a)
                    loss_g = loss_g + cfg.cycle * cfg.identity * (idt_a + idt_b)
                    rec.update(idt_A=idt_a.item(), idt_B=idt_b.item())
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()

                # Discriminators: real vs generated (from the history pool), LSGAN, halved.
                for d in (d_a, d_b):
                    d.requires_grad_(True)
                old_b = pool_b.query(fake_b, pool_rng)
                old_a = pool_a.query(fake_a, pool_rng)
                loss_da = 0.5 * (_lsgan(d_a(real_b), True) + _lsgan(d_a(old_b.detach()), False))
                loss_db = 0.5 * (_lsgan(d_b(real_a), True) + _lsgan(d_b(old_a.detach()), False))
                opt_d.zero_grad(set_to_none=True)
                (loss_da + loss_db).backward()
                opt_d.step()
                step += 1
                clean = True
                rec.update(D_A=loss_da.item(), D_B=loss_db.item())

                seen += real_a.shape[0]
                if step % cfg.log_every == 0:
                    rec = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in rec.items()}
                    rec["lr"] = lr
                    rec["img_s"] = round(seen / max(time.time() - t_log, 1e-9), 2)
                    t_log, seen = time.time(), 0
                    if not all(math.isfinite(v) for v in rec.values()):
                        print(f"warning: non-finite loss at step {step}", flush=True)
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    print(json.dumps(rec), flush=True)
                if step % cfg.sample_every == 0:
                    save_sheet(os.path.join(run, "samples", f"{step:07d}.png"), real_a, fake_b.detach(),
                               real_b, fake_a.detach())
                if time.time() - t_ckpt > cfg.ckpt_minutes * 60:
                    checkpoint()
                    t_ckpt = time.time()
    finally:
        log.close()
        if clean:
            checkpoint()
        else:
            print(f"interrupted inside a step: kept the last checkpoint, not the half-done step {step + 1}",
                  flush=True)
    print(f"stopped at step {step}; checkpoint {ckpt_path}", flush=True)
    return step
