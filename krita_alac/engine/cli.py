"""`krita-alac`: convert, colorize, flats, lines, info.

User errors print one line ("krita-alac: error: ...") and exit 1; argparse
usage errors exit 2.  Tracebacks are for bugs only.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from .errors import UserError

PROG = "krita-alac"


def _size(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"working size must be an integer, got {text!r}")


def _gap(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"gap must be a number of pixels, got {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError("gap must be zero or more pixels")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Colorize line art from color hints (AlacGAN and flats).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="convert AlacGAN training checkpoints to ONNX")
    c.add_argument("--netg", required=True, help="generator checkpoint (training checkpoint, state dict or safetensors)")
    c.add_argument("--i2v", help="Illustration2Vec weights (i2v.pth); omit for generators trained without them")
    c.add_argument("-o", "--output", required=True, help="ONNX file to write")
    c.add_argument("--fp16", action="store_true", help="also write an fp16 copy (<name>.fp16.onnx) for GPUs")
    c.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")

    z = sub.add_parser("colorize", help="colorize line art")
    z.add_argument("lineart", help="line art image (black lines on transparent or on white)")
    z.add_argument("--hints", help="RGBA hint strokes of the same size as the line art")
    z.add_argument("--model", "--engine", dest="engine", default="auto",
                   help="flats, an installed model id, an .onnx file or a checkpoint (default: auto)")
    z.add_argument("--i2v", help="Illustration2Vec weights for a checkpoint model")
    z.add_argument("-o", "--output", required=True, help="PNG to write")
    z.add_argument("--size", type=_size, default=None,
                   help="working size of the long side, multiple of 32 (default: the model's, see 'info')")
    z.add_argument("--raw", action="store_true", help="no resizing: input size must be a multiple of 32")
    z.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    z.add_argument("--device", default="auto", help="auto, cpu, cuda, rocm, directml, coreml or mps")
    z.add_argument("--snap", action=argparse.BooleanOptionalAction, default=None,
                   help="--snap: one color per flat region (--compose snap); --no-snap: the raw network "
                        "(--compose raw)")
    z.add_argument("--compose", choices=("shade", "snap", "raw"), default=None,
                   help="neural: shade = flat regions in the hint colors with the network's shading (the default "
                        "for models that recommend flats), snap = one color per region, raw = the network alone")
    z.add_argument("--layers", action="store_true",
                   help="also write OUT-flats.png and OUT-shading.png: the Shading layer in Grain Merge mode "
                        "over the Flats layer gives OUT.png")
    z.add_argument("--gap", type=_gap, default=None, help="flats: close line gaps up to this many pixels")
    z.add_argument("--fill", choices=("nearest", "none"), default="nearest",
                   help="flats: color of regions without hints")

    f = sub.add_parser("flats", help="flat colors from hint strokes (no model needed)")
    f.add_argument("lineart")
    f.add_argument("--hints", required=True)
    f.add_argument("-o", "--output", required=True)
    f.add_argument("--gap", type=_gap, default=None, help="close line gaps up to this many pixels (default: from line width)")
    f.add_argument("--fill", choices=("nearest", "none"), default="nearest")
    f.add_argument("--labels", help="also write the region map (16-bit PNG, or .npy)")

    ln = sub.add_parser("lines", help="extract line art from a colored picture")
    ln.add_argument("image")
    ln.add_argument("-o", "--output", required=True)
    ln.add_argument("--method", choices=("xdog", "neural"), default="xdog")
    ln.add_argument("--model", help="neural: an installed model with a line generator (default: cycle-open, "
                                    "else any such model) or a color->sketch generator (.onnx or latest_net_G_B.pth)")
    ln.add_argument("--size", type=_size, default=None,
                    help="neural: working size of the long side (default: the model's, else 512)")
    ln.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    ln.add_argument("--device", default="auto", help="neural: auto, cpu, cuda, rocm, directml, coreml or mps")
    ln.add_argument("--thickness", type=float, default=1.0, help="line thickness factor (default 1)")
    ln.add_argument("--white", action="store_true", help="black lines on white instead of on transparency")

    sub.add_parser("info", help="versions, execution providers, devices and installed models")
    return p


def _read_pair(args):
    from .imaging import read_rgba
    lines = read_rgba(args.lineart, "line art")
    hints = read_rgba(args.hints, "hints") if args.hints else None
    if hints is not None and hints.shape[:2] != lines.shape[:2]:
        raise UserError(f"hints are {hints.shape[1]}x{hints.shape[0]} but the line art is "
                        f"{lines.shape[1]}x{lines.shape[0]}: they must be the same size")
    from .imaging import check_memory
    check_memory(lines.shape[1], lines.shape[0], held=lines.nbytes + (hints.nbytes if hints is not None else 0))
    return lines, hints


def _check_output(path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")


def cmd_convert(args):
    # Checked first, so that a missing extra is said before a long load.
    import onnxscript  # noqa: F401
    import torch  # noqa: F401
    from ..convert.checkpoints import load_alacgan
    from ..convert.onnx_export import export_onnx
    _check_output(args.output)
    model = load_alacgan(args.netg, args.i2v)
    rep = export_onnx(model, args.output, fp16=args.fp16, check=not args.no_check)
    print(f"wrote {rep.path}")
    if rep.max_abs_diff is not None:
        print(f"onnxruntime vs torch on random {rep.check_shape[1]}x{rep.check_shape[0]} input: "
              f"max abs diff {rep.max_abs_diff:.2e}")
    if rep.fp16_path:
        print(f"wrote {rep.fp16_path}")


def cmd_colorize(args):
    from .registry import Engines
    from .imaging import check_size, write_png
    from .request import ColorizeRequest
    if args.size is not None:
        check_size(args.size)
    _check_output(args.output)
    lines, hints = _read_pair(args)
    req = ColorizeRequest(lines=lines, hints=hints, engine=args.engine, size=args.size, raw=args.raw,
                          backend=args.backend, device=args.device, i2v=args.i2v, snap=args.snap,
                          gap=args.gap, fill=args.fill, compose=args.compose, layers=args.layers)
    res = Engines().colorize(req)
    for w in res.warnings:
        print(f"{PROG}: note: {w}", file=sys.stderr)
    outs = [(args.output, res.rgba)]
    for name, rgba, blend in res.layers or []:
        outs.append((_layer_path(args.output, name), rgba))
    for path, rgba in outs:
        write_png(path, rgba)
    size = f" at {res.size} px" if res.size else ""
    print(f"{res.engine} on {res.device}{size}: {res.seconds:.2f} s -> {args.output}")
    for name, _, blend in res.layers or []:
        print(f"  layer {name} ({blend}) -> {_layer_path(args.output, name)}")


def _layer_path(output, name):
    root, ext = os.path.splitext(output)
    return f"{root}-{name.lower()}{ext or '.png'}"


def cmd_flats(args):
    import numpy as np
    from .flats import compute_flats
    from .imaging import write_outputs
    _check_output(args.output)
    if args.labels:
        _check_output(args.labels)
    lines, hints = _read_pair(args)
    f = compute_flats(lines, hints, args.gap, fill=args.fill)
    for w in f.warnings:
        print(f"{PROG}: note: {w}", file=sys.stderr)
    outs = [(args.output, f.rgba)]
    if args.labels:
        if args.labels.endswith(".npy"):
            outs.append((args.labels, f.labels))
        elif f.labels.max() > 65535:
            raise UserError("more than 65535 regions: write the region map as .npy")
        else:
            outs.append((args.labels, f.labels.astype(np.uint16)))
    write_outputs(outs)     # both or neither
    print(f"{int(f.labels.max())} regions, gap {f.gap:g} px -> {args.output}")


def cmd_lines(args):
    from .imaging import read_rgba, write_png
    from .lines import extract
    _check_output(args.output)
    picture = read_rgba(args.image, "picture")
    res = extract(picture, args.method, args.thickness, transparent=not args.white, model=args.model,
                  size=args.size, backend=args.backend, device=args.device)
    for w in res.warnings:
        print(f"{PROG}: note: {w}", file=sys.stderr)
    write_png(args.output, res.rgba)
    if args.method == "neural":
        print(f"{res.engine} on {res.device} at {res.size} px -> {args.output}")
    else:
        print(f"{args.method} lines -> {args.output}")


def cmd_info(args):
    from . import store
    print(f"krita_alac {__version__}, Python {sys.version.split()[0]}")
    try:
        import onnxruntime as ort
        print(f"onnxruntime {ort.__version__}: providers {', '.join(ort.get_available_providers())}")
    except ImportError:
        print("onnxruntime: not installed")
    try:
        import torch
        devs = ["cpu"] + (["cuda: " + torch.cuda.get_device_name(0)] if torch.cuda.is_available() else [])
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            devs.append("mps")
        print(f"torch {torch.__version__}: devices {', '.join(devs)}")
    except ImportError:
        print("torch: not installed")
    print(f"model store: {store.models_dir()}")
    models = store.installed_models()
    if not models:
        print("installed models: none (colorize uses flats)")
    from .registry import ENSEMBLES, model_size
    from .request import DEFAULT_SIZE
    for m in models:
        files = ", ".join(os.path.basename(p) for p in (m.onnx, m.fp16, m.netg, m.i2v) if p)
        if store.lines_file(m):
            files += f" + line generator {os.path.basename(store.lines_file(m))}"
        size = model_size(m.meta)
        size = f"working size {size}" if size else f"working size {DEFAULT_SIZE} (model.json names none)"
        extra = {"all": ", flip ensemble", "raw": ", flip ensemble for the network alone"}.get(
            ENSEMBLES.get(str(m.meta.get("ensemble"))), "")
        print(f"  {m.id}: {m.label} [{m.kind}] {files}, {size}{extra}")


COMMANDS = {"convert": cmd_convert, "colorize": cmd_colorize, "flats": cmd_flats, "lines": cmd_lines,
            "info": cmd_info}


# Optional modules and the pip command that brings each.
EXTRAS = {"torch": "torch", "onnxscript": "torch", "safetensors": "torch", "h5py": "torch",
          "hintauc": "bench", "skimage": "bench", "torchmetrics": "bench"}


def missing_module_message(e: ModuleNotFoundError) -> str | None:
    """One line naming what to install, for a module the package does not always have."""
    top = (e.name or "").split(".")[0]
    if top in EXTRAS:
        extra = EXTRAS[top]
        return f"this needs the {extra} extra ({top} is not installed): pip install 'krita-alac[{extra}]'"
    if top in ("numpy", "scipy", "PIL", "onnx", "onnxruntime"):
        return f"{top} is not installed: pip install krita-alac (or pip install {'pillow' if top == 'PIL' else top})"
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.cmd](args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        msg = missing_module_message(e)
        if msg is None:
            raise
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG}: error: out of memory (try a smaller --size)", file=sys.stderr)
        return 1
    return 0
