"""The plugin's settings: a small JSON file in the user's krita_alac folder
(store.home()), never in the plugin folder, which an update replaces.
No Qt, no numpy: usable in Krita, the worker and tests alike."""
from __future__ import annotations

import json
import os

from ..engine import store
from ..engine.limits import ASK_ABOVE_PIXELS

DEFAULTS = {
    "python": "",            # worker interpreter chosen by the user; "" = detect
    "engine": "auto",        # "auto": the default model (the bundled alac-open), else flats
    "size": 512,             # working size (long side) for neural engines
    "colors": "",            # neural compose: "" (the model's default: shaded), "snap" or "raw"
    "layers": False,         # neural results as two layers, Flats + Shading (Grain Merge)
    "auto": False,
    "line_thickness": 1.0,   # Extract line art: XDoG line thickness
    "line_method": "xdog",   # Extract line art: "xdog" or "neural" (an installed line model)
    "max_pixels": ASK_ABOVE_PIXELS,   # above this, ask before colorizing
    "flavour": "cpu",        # engine setup: "cpu" (onnxruntime) or "gpu" (onnxruntime-gpu)
}


def path() -> str:
    return os.path.join(store.home(), "settings.json")


def load() -> dict:
    out = dict(DEFAULTS)
    try:
        with open(path(), encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            out.update({k: v for k, v in data.items() if k in DEFAULTS})
    except (OSError, ValueError):
        pass
    return out


def save(values: dict) -> None:
    data = load()
    data.update({k: v for k, v in values.items() if k in DEFAULTS})
    os.makedirs(os.path.dirname(path()), exist_ok=True)
    tmp = path() + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path())
