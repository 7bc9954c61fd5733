"""Where models live: one per-user folder shared by the plugin, the worker and
the command line (override with KRITA_ALAC_HOME).

Layout:  <home>/models/<id>/model.json  +  the files it names
model.json: {"id", "name", "kind": "alacgan", "onnx": "model.onnx",
             "fp16": "model.fp16.onnx" | null, "netg": ... | null, "i2v": ... | null,
             "license", "source"}
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

MODEL_JSON = "model.json"


def home() -> str:
    env = os.environ.get("KRITA_ALAC_HOME")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.expanduser("~\\AppData\\Roaming")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "krita_alac")


def models_dir() -> str:
    return os.path.join(home(), "models")


@dataclass
class InstalledModel:
    id: str
    folder: str
    name: str = ""
    kind: str = "alacgan"
    onnx: str | None = None        # absolute paths
    fp16: str | None = None
    netg: str | None = None
    i2v: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.id


def _inside(folder: str, rel: str | None) -> str | None:
    """Absolute path of a file named in model.json; never outside its folder."""
    if not rel:
        return None
    if os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        return None
    path = os.path.normpath(os.path.join(folder, rel))
    return path if path.startswith(os.path.normpath(folder) + os.sep) and os.path.isfile(path) else None


def read_model(folder: str) -> InstalledModel | None:
    try:
        with open(os.path.join(folder, MODEL_JSON), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    m = InstalledModel(id=str(meta.get("id") or os.path.basename(folder)), folder=folder,
                       name=str(meta.get("name") or ""), kind=str(meta.get("kind") or "alacgan"),
                       onnx=_inside(folder, meta.get("onnx")), fp16=_inside(folder, meta.get("fp16")),
                       netg=_inside(folder, meta.get("netg")), i2v=_inside(folder, meta.get("i2v")), meta=meta)
    return m if (m.onnx or m.netg) else None


def installed_models(root: str | None = None) -> list[InstalledModel]:
    root = root or models_dir()
    if not os.path.isdir(root):
        return []
    out = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if os.path.isdir(folder) and not name.startswith("."):
            m = read_model(folder)
            if m is not None:
                out.append(m)
    return out


def find_model(model_id: str) -> InstalledModel | None:
    for m in installed_models():
        if m.id == model_id:
            return m
    return None


# The model picked when the user asks for none: our open weights first.
PREFERRED_DEFAULTS = ("alac-open",)


def default_model() -> InstalledModel | None:
    models = installed_models()
    for pref in PREFERRED_DEFAULTS:
        for m in models:
            if m.id == pref:
                return m
    return models[0] if models else None
