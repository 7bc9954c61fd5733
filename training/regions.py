"""Region scribble hints for training, made by hintauc's own hint generator.

The quality benchmark hints with hintauc's deterministic region scribbles (one
longest-path scribble per segmented region, largest regions first).  A model
trained only on random dots never sees hints like that, and the first CPU run
got worse as hints were added.  So the training set gets the same kind of hints:
`python -m training regions DATA` runs `hintauc.generate_hints` once per
training image (padded to a white square, 64 x 64 hint map as in the
benchmark) and stores, per image,

  rank      64 x 64 uint16: the area rank of each cell's region (0 = largest)
  scribble  64 x 64 bool:   the region scribbles

in DATA/regions.npz.  At training time a hint ratio keeps the scribbles of the
largest int(n * ratio) regions (the protocol's rule), and their colors are the
region means of the augmented target, so hue shifts and crops stay consistent.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HINT_MAP = 64


def pad_square(img: np.ndarray, size: int) -> np.ndarray:
    """`img` (long side <= size) centred on a white size x size square."""
    h, w = img.shape[:2]
    out = np.full((size, size, 3), 255, np.uint8)
    y, x = (size - h) // 2, (size - w) // 2
    out[y:y + h, x:x + w] = img[..., :3]
    return out


def region_maps(rgb: np.ndarray):
    """(rank, scribble) of one padded RGB uint8 square, from hintauc's generator."""
    import hintauc
    from hintauc.hints import region_ids
    # geodesic: hintauc's deterministic path method, 20x faster than FilFinder.
    res = hintauc.generate_hints(np.ascontiguousarray(rgb[..., ::-1]), size=HINT_MAP, path_method="geodesic")
    ids = region_ids(res.region)
    vals, inverse, counts = np.unique(ids.reshape(-1), return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")           # the protocol's size order, stable ties
    rank_of = np.empty(len(vals), np.int64)
    rank_of[order] = np.arange(len(vals))
    rank = rank_of[inverse].reshape(ids.shape).astype(np.uint16)
    return rank, res.scribble_mask > 0


def _one(path_size):
    from PIL import Image
    path, size = path_size
    img = np.asarray(Image.open(path).convert("RGB"))
    return region_maps(pad_square(img, size))


def build(folder: str, workers: int = 2) -> str:
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    size = int(manifest["size"])
    if size % HINT_MAP:
        raise SystemExit(f"image size {size} is not a multiple of the {HINT_MAP}-cell hint map")
    files = [it["file"] for it in manifest["images"]]
    jobs = [(os.path.join(folder, f), size) for f in files]
    with ProcessPoolExecutor(workers) as ex:
        maps = list(ex.map(_one, jobs, chunksize=8))
    out = os.path.join(folder, "regions.npz")
    tmp = out + ".tmp.npz"
    np.savez_compressed(tmp, files=np.array(files), rank=np.stack([m[0] for m in maps]),
                        scribble=np.stack([m[1] for m in maps]))
    os.replace(tmp, out)
    return out


def load(folder: str):
    """{file: (rank, scribble)} or None when the folder has no regions.npz."""
    path = os.path.join(folder, "regions.npz")
    if not os.path.isfile(path):
        return None
    z = np.load(path, allow_pickle=False)
    return {str(f): (r, s) for f, r, s in zip(z["files"], z["rank"], z["scribble"])}
