"""Export AlacGAN to one ONNX graph: sketch 1x1xHxW, hint 1x4x(H/4)x(W/4) -> color 1x3xHxW.

The graph is built from the two halves of `SplitAlacGAN` joined at the
sketch-only cache tensors (p0..p4), whose names are recorded in the model's
metadata; the runtime cuts the graph there again to re-colorize with new
hints without recomputing the sketch half.  H and W are dynamic.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from ..engine.errors import UserError
from ..engine.modelmeta import META_CACHE, META_KIND, META_MULTIPLE  # noqa: F401  (re-exported)
OPSET = 18


@dataclass
class ExportReport:
    path: str
    max_abs_diff: float | None   # ONNX Runtime vs PyTorch on fresh random inputs
    check_shape: tuple | None
    fp16_path: str | None = None
    fp16_max_abs_diff: float | None = None
    int8_weights: int = 0                      # convolution weights stored as int8 (int8=True)
    float_max_abs_diff: float | None = None    # the float graph before quantizing, vs PyTorch
    int8_activations: int = 0                  # activation tensors quantized (calibration=...)
    int8_psnr: float | None = None             # PSNR vs PyTorch on held-out training feeds


def export_graph(module, args, names_in, names_out, path, dynamic):
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The exporter is chatty on stdout/stderr; keep the command line readable.
        for name in ("torch.onnx", "torch.export", "onnxscript"):
            logging.getLogger(name).setLevel(logging.ERROR)
        prog = torch.onnx.export(module, args, input_names=names_in, output_names=names_out,
                                 dynamic_shapes=dynamic, dynamo=True, opset_version=OPSET, verbose=False,
                                 external_data=False, optimize=True)
    prog.save(path)


def _dims(scale):
    """Dynamic H, W as multiples of the network's stride: H = 32*kh at full size,
    so a tensor at 1/`scale` of the sketch has H = (32/scale)*kh."""
    import torch
    kh, kw = torch.export.Dim("kh", min=1, max=512), torch.export.Dim("kw", min=1, max=512)
    f = 32 // scale
    return {2: kh * f if f > 1 else kh, 3: kw * f if f > 1 else kw}


def build_graph(model, half: bool = False):
    """The merged ModelProto for `model` (an AlacGAN)."""
    import contextlib
    import io
    import onnx
    import torch
    from onnx import compose

    from .alacgan import CACHE_NAMES, SplitAlacGAN, encoder_decoder
    split = SplitAlacGAN(model).eval()
    if half:
        split = split.half()
    enc, dec = encoder_decoder(split)
    s = torch.zeros(1, 1, 64, 96)
    h = torch.zeros(1, 4, 16, 24)
    with torch.no_grad():
        cache = enc(s) if not half else tuple(
            torch.zeros(t, dtype=torch.float16) for t in _cache_shapes(split, 64, 96))
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        ep, dp = os.path.join(tmp, "enc.onnx"), os.path.join(tmp, "dec.onnx")
        export_graph(enc, (s,), ["sketch"], list(CACHE_NAMES), ep, {"sketch": _dims(1)})
        dyn = {n: _dims(f) for n, f in zip(CACHE_NAMES, (1, 2, 4, 8, 16))}
        if split.t4_f is None:
            dyn["p4"] = None  # a (1, C, 1, 1) bias when there are no local features
        dyn["hint"] = _dims(4)
        export_graph(dec, (*cache, h), [*CACHE_NAMES, "hint"], ["color"], dp, dyn)
        em, dm = onnx.load(ep), onnx.load(dp)
    em = compose.add_prefix(em, "enc/", rename_inputs=False, rename_outputs=False)
    dm = compose.add_prefix(dm, "dec/", rename_inputs=False, rename_outputs=False)
    merged = compose.merge_models(em, dm, io_map=[(n, n) for n in CACHE_NAMES])
    # The cache tensors stay addressable by name for the runtime to split at.
    del merged.metadata_props[:]
    for k, v in ((META_CACHE, ",".join(CACHE_NAMES)), (META_KIND, "alacgan"), (META_MULTIPLE, "32")):
        p = merged.metadata_props.add()
        p.key, p.value = k, v
    # merge_models lists the default domain once per half; quantization tools want it once.
    opsets = {}
    for o in merged.opset_import:
        opsets[o.domain] = max(o.version, opsets.get(o.domain, 0))
    del merged.opset_import[:]
    for domain, version in opsets.items():
        merged.opset_import.add(domain=domain, version=version)
    merged.producer_name = "krita_alac"
    merged.doc_string = "AlacGAN line art colorization: sketch, hint -> color"
    return merged


def _cache_shapes(split, h, w):
    """Shapes of p0..p4 for a 1x1xhxw sketch (fp16 cannot be run on CPU to find out)."""
    ngf = split.to1[0].out_channels
    p4 = (1, ngf * 8, h // 16, w // 16) if split.t4_f is not None else (1, ngf * 8, 1, 1)
    return [(1, 3, h, w), (1, ngf, h // 2, w // 2), (1, ngf * 2, h // 4, w // 4),
            (1, ngf * 4, h // 8, w // 8), p4]


def export_onnx(model, path: str, fp16: bool = False, check: bool = True, check_size=(96, 160),
                int8: bool = False, calibration: list | None = None, holdout: list | None = None) -> ExportReport:
    """Write `path` (and `<stem>.fp16.onnx` with fp16=True), atomically, and
    compare ONNX Runtime with PyTorch on fresh random inputs.  int8=True stores the
    convolution weights as int8 (quantize_weights): a quarter of the size, computed in fp32.
    With `calibration` (feeds from training pictures) the activations are int8 as well
    (quantize_activations); `holdout` (other such feeds) then measures report.int8_psnr."""
    import onnx
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")
    graph = build_graph(model)
    report = ExportReport(path=path, max_abs_diff=None, check_shape=None)
    if int8:
        if check:
            # The export itself must be exact before quantizing says anything.
            with tempfile.TemporaryDirectory() as tmp:
                fp = os.path.join(tmp, "float.onnx")
                save_atomic(onnx, graph, fp)
                report.float_max_abs_diff = compare(model, fp, check_size)
        if calibration:
            graph, report.int8_activations = quantize_activations(graph, calibration)
            report.int8_weights = sum(t.name.endswith("_quantized") and t.data_type == onnx.TensorProto.INT8
                                      for t in graph.graph.initializer)
        else:
            graph, report.int8_weights = quantize_weights(graph)
    save_atomic(onnx, graph, path)
    if check:
        report.max_abs_diff = compare(model, path, check_size)
        report.check_shape = check_size
        if int8 and calibration and holdout:
            report.int8_psnr = psnr_vs_torch(model, path, holdout)
    if fp16:
        import copy
        half_path = fp16_path(path)
        save_atomic(onnx, build_graph(copy.deepcopy(model), half=True), half_path)
        report.fp16_path = half_path
    return report


def quantize_weights(graph, min_elements: int = 1024):
    """(graph, count): each Conv/ConvTranspose weight of at least `min_elements` becomes an
    int8 initializer with one fp32 scale per output channel and a DequantizeLinear node in
    front of its convolution, so the arithmetic stays fp32 and any onnxruntime runs it.
    Symmetric (zero point 0), scale = max |w| / 127 per channel."""
    from onnx import helper, numpy_helper
    users = {}
    for node in graph.graph.node:
        for i, name in enumerate(node.input):
            users.setdefault(name, []).append((node, i))
    new_nodes, count = [], 0
    for t in list(graph.graph.initializer):
        name = t.name
        uses = users.get(name, [])
        if not uses or any(n.op_type not in ("Conv", "ConvTranspose") or i != 1 for n, i in uses):
            continue          # not (only) a convolution's weight: biases, shapes, ...
        w = numpy_helper.to_array(t)
        if w.dtype != np.float32 or w.size < min_elements:
            continue
        # Conv weights are (out, in/g, kh, kw); ConvTranspose weights (in, out/g, kh, kw).
        axis = 1 if uses[0][0].op_type == "ConvTranspose" else 0
        other = tuple(a for a in range(w.ndim) if a != axis)
        scale = (np.abs(w).max(axis=other) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.graph.initializer.remove(t)
        graph.graph.initializer.extend([numpy_helper.from_array(q, name + "_int8"),
                                        numpy_helper.from_array(scale, name + "_scale"),
                                        numpy_helper.from_array(np.zeros(scale.shape, np.int8), name + "_zero")])
        new_nodes.append(helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero"],
                                          [name], name=name + "_dequantize", axis=axis))
        count += 1
    # Producers first: a graph's nodes must be in topological order.
    nodes = new_nodes + list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return graph, count


def quantize_activations(graph, feeds: list, method: str = "average") -> tuple:
    """(graph, count): the float `graph` with int8 activations as well (QDQ), the way
    onnxruntime's CPU provider runs convolutions as int8 x int8 (1.4x faster decodes).

    Calibrated on `feeds`, a list of {"sketch", "hint"} arrays from training pictures:
    method "average" takes each tensor's min and max averaged over the pictures (one odd
    picture widening a range cost 10 dB on others with "minmax", the global extremes);
    the inputs' ranges are fixed at [-1, 1] (averaged over hint-free pictures they
    shrank and clipped the hints).  Weights per output channel in 7 bits (reduce_range): CPUs without VNNI
    multiply uint8 x int8 pairs into 16 bits, which 8-bit weights can overflow.
    Activations uint8 with a zero point.  Each weight keeps its name (the int8 copy is
    `<name>_quantized`), so the runtime's float graph and training's reader find it.
    `count`: quantized activation tensors."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if method not in ("average", "minmax"):
        raise ValueError(f"calibration method must be average or minmax, got {method!r}")

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("float.onnx", "pre.onnx", "q.onnx"))
        onnx.save(graph, src)
        chatty = logging.getLogger()                    # the quantizer logs through the root logger
        level = chatty.level
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chatty.setLevel(logging.ERROR)
            try:
                quant_pre_process(src, pre, skip_symbolic_shape=True)
                quantize_static(pre, dst, Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                                reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax,
                                op_types_to_quantize=["Conv", "ConvTranspose"],
                                extra_options={
                                    "ActivationSymmetric": False,
                                    # The inputs' ranges are known; hint-free pictures say nothing of them.
                                    "TensorQuantOverrides": {
                                        n: [{"rmin": np.float32(-1.0), "rmax": np.float32(1.0)}]
                                        for n in ("sketch", "hint")},
                                    # Per-picture ranges averaged: one odd picture does not widen them.
                                    "CalibMovingAverage": method == "average"})
            finally:
                chatty.setLevel(level)
        q = onnx.load(dst)
    inits = {t.name for t in q.graph.initializer}
    rename = {}
    for n in q.graph.node:
        w = n.input[0][:-len("_quantized")] if n.input and n.input[0].endswith("_quantized") else None
        if n.op_type == "DequantizeLinear" and w and w not in inits and all(i in inits for i in n.input if i):
            rename[n.output[0]] = w
            n.output[0] = w
    for n in q.graph.node:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    del q.metadata_props[:]
    q.metadata_props.extend(graph.metadata_props)
    q.producer_name, q.doc_string = graph.producer_name, graph.doc_string
    return q, sum(n.op_type == "QuantizeLinear" for n in q.graph.node)


def psnr_vs_torch(model, path: str, feeds: list) -> float:
    """PSNR (dB over the [-1, 1] range, all `feeds` pooled) of ONNX Runtime's CPU colors
    against PyTorch's."""
    import torch
    from ..engine.runtime import OnnxColorizer
    c = OnnxColorizer(path, device="cpu")
    se = n = 0.0
    for f in feeds:
        with torch.no_grad():
            ref = model(torch.from_numpy(f["sketch"]), torch.from_numpy(f["hint"])).numpy()
        se += float(np.sum((c.run(f["sketch"], f["hint"]).astype(np.float64) - ref) ** 2))
        n += ref.size
    return float(10 * np.log10(4.0 / max(se / n, 1e-12)))


def fp16_path(path: str) -> str:
    stem = path[:-5] if path.endswith(".onnx") else path
    return stem + ".fp16.onnx"


def save_atomic(onnx, graph, path):
    tmp = f"{path}.part{os.getpid()}"
    try:
        onnx.save(graph, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def random_inputs(h: int, w: int, seed: int | None = None):
    """A sketch of random ink on paper and sparse random hints, in model ranges."""
    rng = np.random.default_rng(seed)
    sketch = np.where(rng.random((1, 1, h, w)) < 0.1, -1.0, 1.0).astype(np.float32)
    sketch += rng.uniform(-0.05, 0.05, sketch.shape).astype(np.float32)
    np.clip(sketch, -1, 1, out=sketch)
    hint = np.zeros((1, 4, h // 4, w // 4), np.float32)
    mask = rng.random((h // 4, w // 4)) < 0.05
    hint[0, :3] = rng.uniform(-1, 1, (3, h // 4, w // 4)) * mask
    hint[0, 3] = mask
    return sketch, hint


def compare(model, path: str, size=(96, 160)) -> float:
    """Max |ONNX Runtime - PyTorch| on fresh random inputs (CPU)."""
    import torch
    from ..engine.runtime import OnnxColorizer
    sketch, hint = random_inputs(*size)
    with torch.no_grad():
        ref = model(torch.from_numpy(sketch), torch.from_numpy(hint)).numpy()
    out = OnnxColorizer(path, device="cpu").run(sketch, hint)
    return float(np.abs(out - ref).max())
