"""Export a CycleGAN generator to ONNX: image 1xCxHxW in [-1, 1] -> output 1xC'xHxW.

H and W are dynamic multiples of 2**n_down.  The metadata records the kind of
generator, the size multiple and the direction ("sketch2color" or
"color2sketch"), which the runtime (image2image.py) reads back.

    python -m krita_alac.convert.cyclegan_export latest_net_G_B.pth -o lines.onnx --direction color2sketch
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from ..engine.errors import UserError
from ..engine.limits import MAX_CANVAS_SIDE
from ..engine.modelmeta import META_DIRECTION, META_KIND, META_MULTIPLE  # noqa: F401  (re-exported)
from .onnx_export import export_graph, fp16_path, save_atomic

INPUT, OUTPUT = "image", "output"


@dataclass
class CycleExportReport:
    path: str
    direction: str | None
    max_abs_diff: float | None     # ONNX Runtime vs PyTorch on fresh random inputs
    check_shape: tuple | None
    fp16_path: str | None = None
    fp16_max_abs_diff: float | None = None   # only where this onnxruntime can run the fp16 graph


def check_shape_for(multiple: int, size=(96, 160)) -> tuple:
    """The smallest multiples of `multiple` at least `size` (non-square on purpose)."""
    return tuple(-(-s // multiple) * multiple for s in size)


def build_graph(net, direction: str | None, half: bool = False):
    """The ModelProto of `net` (a cyclegan generator) with its metadata."""
    import copy
    import onnx
    import torch
    from .cyclegan import check_direction
    check_direction(direction)
    m = net.multiple
    net = net.eval()
    if half:
        net = copy.deepcopy(net).half()
    x = torch.zeros(1, net.in_nc, 2 * m, 3 * m, dtype=torch.float16 if half else torch.float32)
    kh = torch.export.Dim("kh", min=1, max=MAX_CANVAS_SIDE // m)
    kw = torch.export.Dim("kw", min=1, max=MAX_CANVAS_SIDE // m)
    dyn = ({2: kh * m if m > 1 else kh, 3: kw * m if m > 1 else kw},)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        p = os.path.join(tmp, "g.onnx")
        export_graph(net, (x,), [INPUT], [OUTPUT], p, dyn)
        model = onnx.load(p)
    del model.metadata_props[:]
    meta = {META_KIND: net.kind, META_MULTIPLE: str(m)}
    if direction:
        meta[META_DIRECTION] = direction
    for k, v in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
    model.producer_name = "krita_alac"
    model.doc_string = f"CycleGAN generator ({net.kind}, {direction or 'direction unknown'}): image -> output"
    return model


def export_onnx(net, path: str, direction: str | None = None, fp16: bool = False, check: bool = True,
                check_size=(96, 160)) -> CycleExportReport:
    """Write `path` (and `<stem>.fp16.onnx` with fp16=True) atomically; compare
    ONNX Runtime with PyTorch on fresh random inputs of a non-square size."""
    import onnx
    from .cyclegan import guess_direction
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")
    direction = direction or guess_direction(net)
    save_atomic(onnx, build_graph(net, direction), path)
    report = CycleExportReport(path=path, direction=direction, max_abs_diff=None, check_shape=None)
    shape = check_shape_for(net.multiple, check_size)
    if check:
        report.max_abs_diff = compare(net, path, shape)
        report.check_shape = shape
    if fp16:
        half = fp16_path(path)
        save_atomic(onnx, build_graph(net, direction, half=True), half)
        report.fp16_path = half
        if check:
            try:
                report.fp16_max_abs_diff = compare(net, half, shape)
            except Exception:
                pass  # fp16 kernels are often GPU-only: the fp16 copy is for GPUs
    return report


def random_image(c: int, h: int, w: int, seed: int | None = None) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, c, h, w)).astype(np.float32)


def compare(net, path: str, shape=(96, 160)) -> float:
    """Max |ONNX Runtime (CPU) - PyTorch| on a fresh random image."""
    import torch
    from ..engine.image2image import OnnxImage2Image
    x = random_image(net.in_nc, *shape)
    with torch.no_grad():
        ref = net.float()(torch.from_numpy(x)).numpy()
    out = OnnxImage2Image(path, device="cpu").run(x)
    if out.shape != ref.shape:
        raise UserError(f"the exported graph gives {out.shape}, PyTorch {ref.shape}")
    return float(np.abs(out.astype(np.float32) - ref).max())


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m krita_alac.convert.cyclegan_export", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="latest_net_G_A.pth / latest_net_G_B.pth (CycleGAN resnet or U-Net+ResBlock)")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--direction", choices=("sketch2color", "color2sketch"),
                   help="what the generator does (default: from its channels, 1->3 or 3->1)")
    p.add_argument("--fp16", action="store_true", help="also write an fp16 copy (<name>.fp16.onnx) for GPUs")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    a = p.parse_args(argv)
    try:
        from .cyclegan import load_generator
        r = export_onnx(load_generator(a.checkpoint), a.output, a.direction, a.fp16, not a.no_check)
    except UserError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {r.path} ({r.direction or 'direction unknown: pass --direction'})")
    if r.max_abs_diff is not None:
        print(f"ONNX Runtime vs PyTorch at {r.check_shape[1]}x{r.check_shape[0]}: max abs diff {r.max_abs_diff:.2e}")
    if r.fp16_path:
        extra = f" (max abs diff {r.fp16_max_abs_diff:.2e})" if r.fp16_max_abs_diff is not None else ""
        print(f"wrote {r.fp16_path}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
