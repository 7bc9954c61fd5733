"""Run AlacGAN: ONNX Runtime (preferred) or PyTorch, with a sketch-feature cache.

Both backends expose the same three calls on NumPy arrays:
    cache = c.encode(sketch)          # once per line art
    color = c.decode(cache, hint)     # per set of hints
    color = c.run(sketch, hint)
and report `backend` and `device` as really used (not as requested).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile

import numpy as np

from .errors import UserError
from .modelmeta import META_CACHE
from .process import configured_threads

log = logging.getLogger("krita_alac")

# Best first; CPU always last.
PROVIDER_ORDER = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                  "CoreMLExecutionProvider", "CPUExecutionProvider")
PROVIDER_NAMES = {"CUDAExecutionProvider": "CUDA", "ROCMExecutionProvider": "ROCm",
                  "DmlExecutionProvider": "DirectML", "CoreMLExecutionProvider": "CoreML",
                  "CPUExecutionProvider": "CPU", "TensorrtExecutionProvider": "TensorRT"}
DEVICE_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "rocm": "ROCMExecutionProvider", "directml": "DmlExecutionProvider",
                    "coreml": "CoreMLExecutionProvider"}
DEVICES = ("auto", *DEVICE_PROVIDERS, "mps")


def warn(msg, sink):
    log.warning(msg)
    if sink is not None:
        sink.append(msg)


def choose_providers(device: str, available) -> list:
    """Execution providers to ask for, best first, CPU last."""
    if device == "auto":
        return [p for p in PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]
    want = DEVICE_PROVIDERS.get(device)
    if want is None:
        raise UserError(f"unknown device {device!r} for onnxruntime: use one of auto, {', '.join(DEVICE_PROVIDERS)}")
    if want not in available:
        raise UserError(f"onnxruntime here has no {PROVIDER_NAMES[want]} support "
                        f"(available: {', '.join(PROVIDER_NAMES.get(p, p) for p in available)})")
    return [want] if want == "CPUExecutionProvider" else [want, "CPUExecutionProvider"]


def gpu_provider_available(device: str) -> bool:
    """Would `device` get a GPU execution provider from this onnxruntime?"""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return _is_gpu(choose_providers(device, ort.get_available_providers())[0])


def on_cpu(device: str) -> bool:
    """Whether a session for `device` starts on onnxruntime's CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        return True
    return choose_providers(device, ort.get_available_providers())[0] == "CPUExecutionProvider"


def _is_gpu(provider: str) -> bool:
    return provider != "CPUExecutionProvider"


def first_line(e, n=160) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:n]


class OrtSessions:
    """Named ONNX Runtime sessions on the best provider, falling back to the CPU
    when a GPU provider fails to start or fails during a run (out of memory)."""

    def __init__(self, graphs: dict, device: str, warnings: list, what: str, optimized: dict | None = None):
        """graphs: name -> ONNX bytes or file.  optimized: name -> a file where the CPU session
        saves its optimized graph (see OptimizedGraphs); graphs that are such files load as is."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed (pip install onnxruntime)")
        self._ort = ort
        self.graphs, self.warnings, self.what = graphs, warnings, what
        self.optimized = optimized or {}
        self.open(choose_providers(device, ort.get_available_providers()))

    def _session(self, blob, providers):
        ort = self._ort
        name = self._opening                 # which graph: its optimized copy goes to self.optimized[name]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        threads = configured_threads()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        # No arena: a 4096-px run would otherwise keep its peak for the worker's whole life.
        so.enable_cpu_mem_arena = False
        cpu = providers[0] == "CPUExecutionProvider"
        if isinstance(blob, str) and blob.endswith(OptimizedGraphs.SUFFIX):
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # already optimized
        else:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if cpu and name in self.optimized:
                so.optimized_model_filepath = self.optimized[name]
        return ort.InferenceSession(blob, sess_options=so, providers=providers)

    def open(self, providers):
        try:
            self.sessions = {}
            for k, v in self.graphs.items():
                self._opening = k
                self.sessions[k] = self._session(v, providers)
        except Exception as e:
            if not _is_gpu(providers[0]):
                raise UserError(f"{self.what} could not be loaded by onnxruntime: {first_line(e, 200)}")
            warn(f"{PROVIDER_NAMES.get(providers[0], providers[0])} failed to start ({first_line(e)}); "
                  "using the CPU", self.warnings)
            return self.open(["CPUExecutionProvider"])
        got = next(iter(self.sessions.values())).get_providers()[0]
        if got != providers[0]:
            warn(f"asked onnxruntime for {PROVIDER_NAMES.get(providers[0], providers[0])} but got "
                  f"{PROVIDER_NAMES.get(got, got)}", self.warnings)
        self.provider = got
        self.device = PROVIDER_NAMES.get(got, got)

    def run(self, name, feeds):
        try:
            return self.sessions[name].run(None, feeds)
        except Exception as e:
            if not _is_gpu(self.provider):
                raise
            # Out of GPU memory and driver failures: finish the job on the CPU.
            warn(f"{self.device} failed ({first_line(e)}); retrying on the CPU", self.warnings)
            self.open(["CPUExecutionProvider"])
            return self.sessions[name].run(None, feeds)


TORCH_DEVICE_NAMES = {"cuda": "CUDA", "mps": "MPS", "cpu": "CPU"}


def torch_device(torch, device: str) -> str:
    """The torch device for a user's choice: auto = CUDA, then MPS, then CPU."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device not in TORCH_DEVICE_NAMES:
        raise UserError(f"unknown device {device!r} for torch: use auto, cpu, cuda or mps")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("torch here has no CUDA support")
    if device == "mps" and not has_mps:
        raise UserError("torch here has no MPS support")
    return device


class OrtBacked:
    """What a runner on OrtSessions (self._ort) reports: the device and provider it really got."""

    @property
    def device(self):
        return self._ort.device

    @property
    def provider(self):
        return self._ort.provider


class OnnxColorizer(OrtBacked):
    backend = "onnxruntime"

    def __init__(self, path: str, device: str = "auto", warnings: list | None = None):
        self.path = path
        self.warnings = warnings if warnings is not None else []
        store = OptimizedGraphs.for_model(path, device)
        hit = store.load() if store else None
        if hit is not None:
            graphs, self._cache_names = hit
            self._ort = OrtSessions(graphs, device, self.warnings, os.path.basename(path))
            return
        graphs = _load_graphs(path, int8_activations=on_cpu(device))
        self._cache_names = graphs.pop("meta")["cache"]
        self._ort = OrtSessions(graphs, device, self.warnings, os.path.basename(path),
                                store.begin(graphs) if store else None)
        if store:
            store.commit(self._cache_names, self._ort.provider)

    @property
    def caches(self) -> bool:
        return bool(self._cache_names)

    def encode(self, sketch: np.ndarray):
        if not self.caches:
            return ("sketch", sketch)
        return tuple(self._ort.run("encoder", {"sketch": sketch}))

    def decode(self, cache, hint: np.ndarray) -> np.ndarray:
        if not self.caches:
            return self._ort.run("full", {"sketch": cache[1], "hint": hint})[0]
        return self._ort.run("decoder", {**dict(zip(self._cache_names, cache)), "hint": hint})[0]

    def run(self, sketch, hint):
        return self.decode(self.encode(sketch), hint)


class OptimizedGraphs:
    """ONNX Runtime's optimized CPU graphs of a model, kept on disk so a restarted worker
    skips the cutting and optimizing (0.8 s for alac-open, 0.1 s from here).  The folder is
    named by the model file's content, the onnxruntime version and the CPU, and is written
    complete or not at all."""
    SUFFIX = ".opt.onnx"

    def __init__(self, folder: str):
        self.folder = folder
        self._tmp = None

    @classmethod
    def for_model(cls, path: str, device: str):
        try:
            import onnxruntime as ort
            if choose_providers(device, ort.get_available_providers())[0] != "CPUExecutionProvider":
                return None
            from . import store
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            import platform
            h.update(f"{ort.__version__}|{platform.machine()}|{_cpu_flags()}".encode())
            return cls(os.path.join(store.home(), "cache", "ort", h.hexdigest()))
        except Exception:          # no cache is never an error
            return None

    def load(self):
        try:
            with open(os.path.join(self.folder, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
            graphs = {n: os.path.join(self.folder, n + self.SUFFIX) for n in meta["graphs"]}
            if not all(os.path.isfile(p) for p in graphs.values()):
                return None
            return graphs, list(meta["cache"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def begin(self, graphs: dict) -> dict | None:
        try:
            os.makedirs(os.path.dirname(self.folder), exist_ok=True)
            self._tmp = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(self.folder))
        except OSError:
            return None
        self._names = list(graphs)
        return {n: os.path.join(self._tmp, n + self.SUFFIX) for n in graphs}

    def commit(self, cache_names, provider):
        tmp, self._tmp = self._tmp, None
        if tmp is None:
            return
        try:
            if provider == "CPUExecutionProvider" and all(
                    os.path.isfile(os.path.join(tmp, n + self.SUFFIX)) for n in self._names):
                with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
                    json.dump({"graphs": self._names, "cache": list(cache_names)}, f)
                os.replace(tmp, self.folder)
                return
        except OSError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def _cpu_flags() -> str:
    """The CPU's feature flags (the optimized graph may use AVX-512 layouts)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return hashlib.blake2b(line.encode(), digest_size=8).hexdigest()
    except OSError:
        pass
    import platform
    return platform.processor()


def strip_activation_quantization(model) -> int:
    """The float graph of a model with int8 activations (QDQ): each activation's
    QuantizeLinear -> DequantizeLinear pair is bypassed, so the float tensor goes straight on.

    GPU providers run the float graph (their int8 convolutions are slower or missing, and the
    int8 path exists for the CPU); the weights stay as rounded to int8.  Returns the count."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    bypass, drop = {}, []
    for n in g.node:
        if n.op_type != "DequantizeLinear" or n.input[0] in inits or n.output[0] in outputs:
            continue
        q = producer.get(n.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            bypass[n.output[0]] = q.input[0]
            drop.append(n)
    for n in drop:
        g.node.remove(n)
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in bypass:
                n.input[i] = bypass[name]
    read = {i for n in g.node for i in n.input} | outputs
    for q in [n for n in g.node if n.op_type == "QuantizeLinear" and n.output[0] not in read]:
        g.node.remove(q)
    _drop_unread_initializers(g)
    return len(drop)


def _drop_unread_initializers(g) -> None:
    """Initializers no node reads any more (scales, zero points, int8 copies)."""
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for t in [t for t in g.initializer if t.name not in read]:
        g.initializer.remove(t)


def fold_weight_dequantize(model) -> int:
    """Weights stored as int8 (model.json "weights": "int8") become fp32 initializers again.

    onnxruntime keeps a DequantizeLinear of constant weights in the graph (it waits for a
    quantized activation to fuse with) and so dequantizes every weight on every run: 2-11 %
    of a decode.  Done once here, a weight-only int8 file runs exactly like its fp32 graph.
    A graph with QuantizeLinear nodes (int8 activations) is left as it is.  Returns the count."""
    from onnx import numpy_helper
    g = model.graph
    if any(n.op_type == "QuantizeLinear" for n in g.node):
        return 0
    inits = {t.name: t for t in g.initializer}
    folded = []
    for node in g.node:
        if node.op_type != "DequantizeLinear" or not all(n in inits for n in node.input if n):
            continue
        x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zero = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
                if len(node.input) > 2 and node.input[2] else np.zeros_like(scale))
        if scale.ndim == 1 and scale.size > 1:          # per-channel along `axis`
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % x.ndim
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        folded.append((node, numpy_helper.from_array(((x - zero) * scale).astype(np.float32), node.output[0])))
    if not folded:
        return 0
    for node, tensor in folded:
        g.node.remove(node)
        g.initializer.append(tensor)
    _drop_unread_initializers(g)
    return len(folded)


def _load_graphs(path: str, int8_activations: bool = True) -> dict:
    """Cut a krita_alac ONNX model at its cache tensors into encoder and decoder.

    Any other ONNX model with inputs sketch, hint and output color runs whole.  A model with
    int8 activations keeps them only where `int8_activations` (the CPU); else it runs as floats."""
    if not os.path.isfile(path):
        raise UserError(f"model file not found: {path}")
    try:
        import onnx
        model = onnx.load(path)
    except ImportError:
        raise UserError("the onnx package is not installed (pip install onnx)")
    except Exception as e:
        raise UserError(f"{os.path.basename(path)} is not an ONNX model ({str(e).splitlines()[0][:120]})")
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if sorted(inputs) != ["hint", "sketch"] or outputs != ["color"]:
        raise UserError(f"{os.path.basename(path)} is not a colorizer model: inputs {inputs}, outputs {outputs} "
                        "(expected sketch, hint -> color)")
    if not int8_activations:
        strip_activation_quantization(model)
    fold_weight_dequantize(model)
    meta = {p.key: p.value for p in model.metadata_props}
    cache = [n for n in meta.get(META_CACHE, "").split(",") if n]
    if not cache:
        return {"full": model.SerializeToString(), "meta": {"cache": []}}
    from onnx.utils import Extractor
    ex = Extractor(model)
    enc = ex.extract_model(["sketch"], cache)
    dec = ex.extract_model([*cache, "hint"], ["color"])
    for m in (enc, dec):
        m.ir_version, m.producer_name = model.ir_version, model.producer_name
        del m.opset_import[:]
        m.opset_import.extend(model.opset_import)
    return {"encoder": enc.SerializeToString(), "decoder": dec.SerializeToString(), "meta": {"cache": cache}}


class TorchBacked:
    """A torch module (self._module) on the chosen device; a run that fails on a GPU
    (out of memory, driver) warns and finishes on the CPU, which it then keeps."""
    backend = "torch"

    def _place(self, torch, module, device: str, warnings: list | None):
        self._torch, self._module = torch, module
        self.warnings = warnings if warnings is not None else []
        self._move(torch_device(torch, device))

    def _move(self, dev):
        self._module.to(dev)
        self._dev = dev
        self.device = TORCH_DEVICE_NAMES[dev]

    def _call(self, fn, *arrays):
        torch = self._torch
        try:
            with torch.inference_mode():
                out = fn(*[a if isinstance(a, torch.Tensor) else torch.from_numpy(a).to(self._dev) for a in arrays])
        except RuntimeError as e:
            if self._dev == "cpu":
                raise
            warn(f"{self.device} failed ({first_line(e)}); retrying on the CPU", self.warnings)
            self._move("cpu")
            with torch.inference_mode():
                out = fn(*[torch.as_tensor(a).cpu() if isinstance(a, torch.Tensor) else torch.from_numpy(a)
                           for a in arrays])
        return out


class TorchColorizer(TorchBacked):
    def __init__(self, model, device: str = "auto", warnings: list | None = None):
        import torch
        from ..convert.alacgan import SplitAlacGAN
        self._split = SplitAlacGAN(model).eval()
        self._place(torch, self._split, device, warnings)

    @property
    def caches(self) -> bool:
        return True

    def encode(self, sketch):
        # Cached tensors stay on the device: re-runs skip the upload too.
        return tuple(self._call(self._split.encode, sketch))

    def decode(self, cache, hint):
        out = self._call(self._split.decode, *[c.to(self._dev) for c in cache], hint)
        return out.float().cpu().numpy()

    def run(self, sketch, hint):
        return self.decode(self.encode(sketch), hint)


class LoadedModels:
    """The process's one cache of loaded models: at most `keep` at once, the
    least recently used one freed *before* a new one loads (a big model twice
    in memory is what runs a small machine out)."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._items: dict = {}

    def get(self, key, make):
        if key in self._items:
            self._items[key] = self._items.pop(key)      # most recently used last
            return self._items[key]
        while self._items and len(self._items) >= self.keep:
            self._items.pop(next(iter(self._items)))
        value = make()
        self._items[key] = value
        return value

    def clear(self):
        self._items.clear()


# One per process (worker or command line): a colorizer and a line extractor can
# both stay loaded while the artist alternates between them.
MODELS = LoadedModels()
