"""Generator weights from an exported AlacGAN ONNX file (e.g. the shipped alac-open).

The export (krita_alac.convert.onnx_export) runs `SplitAlacGAN`, which cuts
every convolution over a concatenation of a sketch-only and a hint-dependent
tensor into two convolutions, and names the initializers after the split
module's parameters: "enc/split.<name>" and "dec/split.<name>".  To invert
that without restating the split layout here, each NetG element is tagged with
its own flat index (exact in float32 below 2**24), a SplitAlacGAN is built from
the tagged net, and each split tensor then says, element by element, which NetG
element it holds.  Every NetG element must be found, with one value, and every
shape must match; afterwards the torch model is checked against ONNX Runtime.
Int8 weights (onnx_export.quantize_weights) are read back dequantized; each half
of a split convolution then had its own scales, so copies of one weight agree
only within a quantization step.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from krita_alac.convert.alacgan import AlacGAN, NetG, SplitAlacGAN

PREFIXES = ("enc/split.", "dec/split.")


def onnx_initializers(path: str) -> tuple[dict, bool]:
    """({name: float array}, whether any were int8), names without the enc/dec prefix.
    Read as the runtime's float graph: int8 activations dropped, int8 weights dequantized."""
    import onnx
    from onnx import numpy_helper
    from krita_alac.engine.runtime import fold_weight_dequantize, strip_activation_quantization
    m = onnx.load(path)
    strip_activation_quantization(m)
    quantized = fold_weight_dequantize(m) > 0
    out = {}
    for t in m.graph.initializer:
        for p in PREFIXES:
            if t.name.startswith(p):
                out[t.name[len(p):]] = numpy_helper.to_array(t)
    return out, quantized


def netg_state_from_onnx(path: str, ngf: int, tunnel4_blocks: int) -> dict:
    """A NetG(ngf, feat_channels=0, tunnel4_blocks) state dict from an exported ONNX file."""
    inits, quantized = onnx_initializers(path)
    # Tags in float64: exact up to 2**53 elements (the full-size generator has 19.6 M > 2**24).
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        g = NetG(ngf=ngf, feat_channels=0, tunnel4_blocks=tunnel4_blocks)
        sd = g.state_dict()
        total = sum(v.numel() for v in sd.values())
        tagged, start = {}, 0
        for k, v in sd.items():
            tagged[k] = torch.arange(start, start + v.numel(), dtype=torch.float64).view(v.shape)
            start += v.numel()
        g.load_state_dict(tagged)
        split = SplitAlacGAN(AlacGAN(g, None)).state_dict()
    finally:
        torch.set_default_dtype(default)
    extra = sorted(set(inits) - set(split))
    if extra:
        raise ValueError(f"{path}: weights the model has no place for (another ngf or block count?): "
                         f"{', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}")
    flat = np.full(total, np.nan, np.float64)
    for name, idx in split.items():
        if name not in inits:
            raise ValueError(f"{path}: no initializer for split.{name} (ngf {ngf}, {tunnel4_blocks} "
                             "tunnel4 blocks, no local features expected)")
        arr = inits[name]
        if tuple(arr.shape) != tuple(idx.shape):
            raise ValueError(f"{path}: split.{name} has shape {tuple(arr.shape)}, the model needs {tuple(idx.shape)}")
        pos = idx.numpy().astype(np.int64).ravel()
        vals = arr.astype(np.float64).ravel()
        seen = ~np.isnan(flat[pos])
        # Int8 copies of one weight may differ by up to a quantization step (max |w| / 127).
        tol = np.abs(vals).max(initial=0.0) / 100.0 if quantized else 0.0
        if seen.any() and not np.abs(flat[pos][seen] - vals[seen]).max() <= tol:
            raise ValueError(f"{path}: split.{name} disagrees with another copy of the same weights")
        flat[pos] = vals
    if np.isnan(flat).any():
        raise ValueError(f"{path}: {int(np.isnan(flat).sum())} generator weights are not in the file")
    out, start = {}, 0
    for k, v in sd.items():
        out[k] = torch.from_numpy(flat[start:start + v.numel()].astype(np.float32)).view(v.shape)
        start += v.numel()
    return out


def max_diff_vs_onnx(g: NetG, path: str, h: int = 96, w: int = 128, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| of the generator on a random sketch and hint.  A file
    with int8 activations is run as its float graph (what the weights are; the int8
    arithmetic is the CPU's faster approximation of it)."""
    import onnx
    import onnxruntime as ort
    from krita_alac.engine.runtime import strip_activation_quantization
    rng = np.random.default_rng(seed)
    sketch = rng.uniform(-1, 1, (1, 1, h, w)).astype(np.float32)
    hint = np.zeros((1, 4, h // 4, w // 4), np.float32)
    mask = rng.random((h // 4, w // 4)) < 0.2
    hint[0, :3] = rng.uniform(-1, 1, (3, h // 4, w // 4)) * mask
    hint[0, 3] = mask
    m = onnx.load(path)
    strip_activation_quantization(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(["color"], {"sketch": sketch, "hint": hint})[0]
    # On the CPU in fp32, whatever device g trains on (TF32 convolutions on a GPU differ by more).
    cpu = copy.deepcopy(g).cpu().float().eval()
    with torch.no_grad():
        out = cpu(torch.from_numpy(sketch), torch.from_numpy(hint), None).numpy()
    return float(np.abs(out - ref).max())
