"""One call on a lent GPU machine: train, then bring the generator back.

`python -m training gpu --out $OUT`, run from the repository root on the device
with the packed data carried (data/pack, `python -m training pack`), trains the
'full' preset (training.train.PRESETS) for `--minutes`, resuming runs/gpu-full
when an earlier call on the same (still warm) machine left a checkpoint there,
and writes to the output folder:

  gen/generator.json, gen/generator-NN.pt   the generator in <= 15 MiB chunks
                                            (fp16 for the full size: 37 MiB)
  log.jsonl                                 the run's log, all calls so far
  sample.png                                line art | hints | result | target on the
                                            same four crops every call (step 0's batch)

The device tool's call (the session's checkout must hold data/pack; data/ is ignored):

  run(command="PYTHONUNBUFFERED=1 python3 -m training gpu --out $OUT", carry=["data/pack"], timeout_s=600)

and, within the machine's 30 s warm window after it, the same with `--expect-resume` added
to the command for each further 8 minutes.

Each call is whole on its own: it ends with a checkpoint (kept on the machine for the
next call) and the chunks.  Only the generator comes back (the optimizer state would
not fit), so a run continued elsewhere (`train --init OUT/gen`) restarts Adam.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import torch


def _default_workers() -> int:
    return max(0, min(12, (os.cpu_count() or 2) - 2))


def sample_sheet(run: str, path: str, device) -> None:
    """The run's generator on step 0's batch (the same crops every call), as train.save_sheet."""
    from krita_alac.convert.alacgan import NetG

    from .train import Config, Dataset, run_config, save_sheet
    cfg = run_config(run, Config, {})
    data = Dataset(cfg.data)
    sk, hi, tg = data.batch(cfg, 0)
    ck = torch.load(os.path.join(run, "last.pth"), map_location="cpu", weights_only=True)
    g = NetG(ngf=cfg.ngf, feat_channels=0, tunnel4_blocks=cfg.tunnel4_blocks)
    g.load_state_dict(ck["state_dictG"])
    g.to(device).eval()
    with torch.no_grad():
        out = g(sk[:4].to(device), hi[:4].to(device), None).float().cpu()
    save_sheet(path, sk[:4], hi[:4], out, tg[:4])


def gpu_call(run: str, data: str, out: str | None, minutes: float, steps: int, preset: str | None,
             overrides: dict, device: str | None = None, workers: int | None = None, amp: str | None = "bf16",
             expect_resume: bool = False, vgg: str | None = None) -> int:
    from .train import apply_preset, pick_device, train
    from .weights import export_weights
    t0 = time.time()
    out = out or os.environ.get("OUT")
    if not out:
        raise SystemExit("no --out and no $OUT: say where the results go")
    dev = pick_device(device)
    if dev.type == "cuda":
        print(f"torch {torch.__version__} on {torch.cuda.get_device_name(dev)}", flush=True)
    resuming = os.path.isfile(os.path.join(run, "last.pth"))
    if not resuming:
        if expect_resume:
            raise SystemExit(f"{run} has no checkpoint (a fresh machine?) and --expect-resume was given")
        if not os.path.isfile(os.path.join(data, "manifest.json")):
            raise SystemExit(f"{data}: no packed data here (make it with 'python -m training pack "
                             f"/work/data/alac2 --out {data}' and carry it)")
        print(f"{run}: new run from {data}", flush=True)
    if workers is None:
        workers = _default_workers() if dev.type == "cuda" else 0
    # A resumed run keeps its settings: only what was given explicitly is passed on (and noted if fixed).
    cfg = apply_preset(preset, dict(overrides, data=data)) if not resuming else overrides
    step = train(run, steps, cfg, minutes, str(dev), workers, amp, vgg)
    os.makedirs(out, exist_ok=True)
    ix = export_weights(run, os.path.join(out, "gen"))
    shutil.copyfile(os.path.join(run, "log.jsonl"), os.path.join(out, "log.jsonl"))
    sample_sheet(run, os.path.join(out, "sample.png"), dev)
    with open(os.path.join(run, "log.jsonl"), encoding="utf-8") as f:
        recs = [json.loads(x) for x in f if x.strip()]
    last = recs[-1] if recs else {}
    print(f"step {step}; last log {json.dumps(last)}; wrote {len(ix['files'])} chunks ({ix['dtype']}) + "
          f"log.jsonl + sample.png to {out} in {time.time() - t0:.0f} s", flush=True)
    return step
