"""A run's generator weights in numbered chunks small enough to come back from a lent GPU.

A GPU machine returns at most 8 files of 16 MiB (64 MiB in all), and the full-size
generator is 75 MiB in fp32, so `python -m training export-weights RUN --out DIR`
writes

  DIR/generator.json     ngf, tunnel4_blocks, step, dtype, the run's config,
                         and each chunk's tensors and sha256
  DIR/generator-NN.pt    plain {name: tensor} dicts (torch.save; read with weights_only)

in fp32 when the whole state fits in `total_mib`, else in fp16 (`dtype` 'auto').
`python -m training train NEW --init DIR` starts from it (train.py), in fp32.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from krita_alac.engine.store import sha256_file

INDEX = "generator.json"
SLACK = 256 * 1024           # torch.save's container overhead per chunk, kept free under the limit


def read_run(run: str):
    """(generator state dict, step, config) of a run folder or a checkpoint file."""
    path = os.path.join(run, "last.pth") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise SystemExit(f"{run}: no checkpoint (last.pth)")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dictG" not in ck:
        raise SystemExit(f"{path}: not a training checkpoint of training/train.py (no state_dictG)")
    return ck["state_dictG"], int(ck.get("step", 0)), ck.get("config", {})


def export_weights(run: str, out: str, max_mib: float = 15.0, total_mib: float = 56.0,
                   dtype: str = "auto") -> dict:
    """Write the chunks and the index into `out` (created; its old chunks replaced); returns the index."""
    sd, step, config = read_run(run)
    n = sum(v.numel() for v in sd.values() if v.is_floating_point())
    if dtype == "auto":
        dtype = "fp32" if n * 4 <= total_mib * 2 ** 20 - SLACK * 8 else "fp16"
    if dtype not in ("fp32", "fp16"):
        raise SystemExit(f"--dtype {dtype}: use auto, fp32 or fp16")
    tdt = torch.float32 if dtype == "fp32" else torch.float16
    limit = int(max_mib * 2 ** 20) - SLACK
    if limit < 2 ** 16:
        raise SystemExit(f"--max-mib {max_mib}: too small")
    # Tensors fill the chunks in order; one that does not fit the rest of a chunk is cut
    # into flat pieces named "<name>@<offset>" (the index keeps its shape).
    chunks, cur, size, shapes = [], {}, 0, {}
    for k, v in sd.items():
        v = v.detach().to("cpu")
        v = (v.to(tdt) if v.is_floating_point() else v).contiguous()
        shapes[k] = list(v.shape)
        flat, es, off = v.reshape(-1), v.element_size(), 0
        if v.numel() * es <= limit - size:
            cur[k] = v.clone()
            size += v.numel() * es
            continue
        while off < flat.numel():
            take = min(flat.numel() - off, (limit - size) // es)
            if take < 1024 and cur:
                chunks.append(cur)
                cur, size = {}, 0
                continue
            cur[f"{k}@{off}"] = flat[off:off + take].clone()
            size += take * es
            off += take
    if cur:
        chunks.append(cur)
    total = sum(v.numel() * v.element_size() for c in chunks for v in c.values())
    if total > total_mib * 2 ** 20:
        raise SystemExit(f"the generator takes {total / 2**20:.1f} MiB in {dtype}, over --total-mib {total_mib}")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):                       # a previous export's chunks would be read as this one's
        if f == INDEX or (f.startswith("generator-") and f.endswith(".pt")):
            os.remove(os.path.join(out, f))
    files = []
    for i, c in enumerate(chunks):
        name = f"generator-{i:02d}.pt"
        p = os.path.join(out, name)
        torch.save(c, p + ".tmp")
        os.replace(p + ".tmp", p)
        if os.path.getsize(p) > max_mib * 2 ** 20:
            raise SystemExit(f"{p}: {os.path.getsize(p)} bytes, over --max-mib {max_mib}")
        files.append({"file": name, "tensors": list(c), "bytes": os.path.getsize(p), "sha256": sha256_file(p)})
    from krita_alac.convert.checkpoints import generator_config
    arch = generator_config(sd, run)
    index = {"format": "alac generator chunks 1", "step": step, "dtype": dtype,
             "ngf": arch["ngf"], "tunnel4_blocks": arch["tunnel4_blocks"],
             "params": n, "config": config, "shapes": shapes, "files": files}
    with open(os.path.join(out, INDEX + ".tmp"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)
    os.replace(os.path.join(out, INDEX + ".tmp"), os.path.join(out, INDEX))   # last: the folder is whole
    return index


def is_chunk_folder(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, INDEX))


def load_chunks(folder: str):
    """(fp32 state dict, index) from an export_weights folder; checks every chunk's sha256."""
    with open(os.path.join(folder, INDEX), encoding="utf-8") as f:
        index = json.load(f)
    pieces = {}
    for c in index["files"]:
        p = os.path.join(folder, c["file"])
        if not os.path.isfile(p):
            raise SystemExit(f"{folder}: chunk {c['file']} is missing")
        if sha256_file(p) != c["sha256"]:
            raise SystemExit(f"{p}: damaged (sha256 differs from {INDEX})")
        part = torch.load(p, map_location="cpu", weights_only=True)
        if sorted(part) != sorted(c["tensors"]):
            raise SystemExit(f"{p}: holds other tensors than {INDEX} lists")
        for k, v in part.items():
            name, _, off = k.rpartition("@") if "@" in k else (k, "", "0")
            pieces.setdefault(name, []).append((int(off), v))
    sd = {}
    for name, shape in index["shapes"].items():
        if name not in pieces:
            raise SystemExit(f"{folder}: no chunk holds {name}")
        parts = [v.reshape(-1) for _, v in sorted(pieces[name], key=lambda p: p[0])]
        v = torch.cat(parts) if len(parts) > 1 else parts[0]
        if v.numel() != int(np.prod(shape)):
            raise SystemExit(f"{folder}: {name} has {v.numel()} values, not {shape}")
        v = v.reshape(shape)
        sd[name] = v.float() if v.is_floating_point() else v
    return sd, index
