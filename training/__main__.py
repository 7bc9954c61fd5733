"""python -m training data|train|cycle|export|release|release-cycle …"""
import argparse
import sys


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

    t = sub.add_parser("train", help="train or resume a run")
    t.add_argument("run", help="run folder (resumed if it has a checkpoint)")
    t.add_argument("--data", help="folder made by 'data' (first start only)")
    t.add_argument("--steps", type=int, required=True, help="train until this step")
    t.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    for name, typ in (("size", int), ("batch", int), ("ngf", int), ("tunnel4_blocks", int), ("lr", float),
                      ("gan", float), ("seed", int), ("ckpt_minutes", float), ("log_every", int),
                      ("sample_every", int), ("threads", int), ("init", str), ("perceptual", float),
                      ("perceptual_layers", str), ("perceptual_size", int)):
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=typ)

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
                      ("perceptual_layers", str), ("perceptual_size", int), ("exact_lines", float)):
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
    rc = sub.add_parser("release-cycle", help="export a cycle run's two generators as a cycle-open model folder")
    rc.add_argument("run")
    rc.add_argument("--out", required=True, help="model folder to write (nothing is bundled by default)")
    rc.add_argument("--from", dest="source", choices=("latest", "paired"), default="latest",
                    help="the generators at the run's last checkpoint, or at the end of its paired phase")
    rc.add_argument("--size", type=int, default=256, help="working size recorded in model.json (multiple of 32)")
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
    elif a.cmd == "train":
        from .train import train
        keys = ("data", "size", "batch", "ngf", "tunnel4_blocks", "lr", "gan", "seed", "ckpt_minutes",
                "log_every", "sample_every", "threads", "init", "perceptual", "perceptual_layers", "perceptual_size")
        train(a.run, a.steps, {k: getattr(a, k) for k in keys}, a.minutes)
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
        print(release_cycle(a.run, a.out, a.source, a.size))
    elif a.cmd == "release":
        from .release import release
        print(release(a.run, a.out, a.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
