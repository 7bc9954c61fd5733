"""Where models live: one per-user folder shared by the plugin, the worker and
the command line (override with KRITA_ALAC_HOME).

Layout:  <home>/models/<id>/model.json  +  the files it names
model.json: {"id", "name", "kind": "alacgan", "onnx": "model.onnx",
             "fp16": "model.fp16.onnx" | null, "netg": ... | null, "i2v": ... | null,
             "license", "source"}
            image-to-image pairs (kind "image2image") may add "lines": a color -> sketch
            generator's file, used by line extraction's neural method
Work areas, skipped by `installed_models()` because they start with a dot:
         <home>/models/.partial/   downloads in progress (resumable)
         <home>/models/.staging/   model folders being built, renamed into place when complete

Bundled models: the plugin ships models of its own in krita_alac/models/<id>/
(same layout, read-only).  They are listed after the user's models, and a
model the user installs under the same id takes precedence.

Model ids and the file names in model.json are plain names: they can never
point outside the store.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

from .errors import UserError


def sha256_file(path: str) -> str:
    """The file's sha256, read 1 MB at a time (model files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

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


# Models that come with the plugin (the open weights), beside this file.
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def bundled_dir() -> str:
    """BUNDLED_DIR, or KRITA_ALAC_BUNDLED (tests point it at a folder of their own)."""
    return os.environ.get("KRITA_ALAC_BUNDLED", BUNDLED_DIR)


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
    bundled: bool = False          # shipped inside the plugin, not in the user's store

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


def _models_in(root: str) -> list[InstalledModel]:
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


def bundled_models() -> list[InstalledModel]:
    out = _models_in(bundled_dir())
    for m in out:
        m.bundled = True
    return out


def installed_models(root: str | None = None) -> list[InstalledModel]:
    """The user's models, then the bundled ones the user has not replaced (or only `root`'s)."""
    if root is not None:
        return _models_in(root)
    own = _models_in(models_dir())
    ids = {m.id for m in own}
    return own + [m for m in bundled_models() if m.id not in ids]


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


# Line extraction's neural method: a model whose model.json names a color -> sketch
# generator ("lines": file), e.g. the cycle pair's G_B.
LINES_KEY = "lines"
PREFERRED_LINES = ("cycle-open",)


def lines_file(m: InstalledModel) -> str | None:
    """Absolute path of the model's line-art generator (model.json "lines"), if it has one."""
    return _inside(m.folder, m.meta.get(LINES_KEY)) if isinstance(m.meta.get(LINES_KEY), str) else None


def lines_models() -> list[InstalledModel]:
    """Installed and bundled models with a line-art generator."""
    return [m for m in installed_models() if lines_file(m)]


def default_lines_model() -> InstalledModel | None:
    """The model `lines --method neural` uses when none is named: cycle-open first."""
    models = lines_models()
    for pref in PREFERRED_LINES:
        for m in models:
            if m.id == pref:
                return m
    return models[0] if models else None


# --- writing to the store -------------------------------------------------

# Ids become folder names on every platform: lower-case ASCII, digits, '.', '_', '-'.
MODEL_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Names Windows refuses for files and folders, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
PARTIAL = ".partial"
STAGING = ".staging"


def check_model_id(model_id: str) -> str:
    """`model_id` if it is a safe folder name, else UserError."""
    if (not isinstance(model_id, str) or not MODEL_ID_RE.fullmatch(model_id) or ".." in model_id
            or model_id.endswith(".") or model_id.split(".")[0] in _RESERVED):
        raise UserError(f"invalid model id {model_id!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return model_id


def check_file_name(name: str) -> str:
    """`name` if it is a plain file name (no folders, no '..', not absolute), else UserError."""
    bad = (not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".")
           or "/" in name or "\\" in name or ":" in name or "\0" in name or os.path.isabs(name)
           or name != name.strip() or len(name) > 128 or name.split(".")[0].lower() in _RESERVED)
    if bad:
        raise UserError(f"invalid file name {name!r}: a model file must be a plain name inside its folder")
    return name


def model_folder(model_id: str) -> str:
    return os.path.join(models_dir(), check_model_id(model_id))


def partial_dir() -> str:
    """Where downloads are written until verified; on the store's file system so moves are renames."""
    path = os.path.join(models_dir(), PARTIAL)
    os.makedirs(path, exist_ok=True)
    return path


class Staging:
    """A model folder under construction inside the store.

        with store.Staging("my-model") as st:
            ... write files into st.folder ...
            st.commit({"name": ..., "onnx": "model.onnx", ...})

    Leaving the block without `commit` (an error, Ctrl-C) removes the folder,
    so the store never shows a half-built model.
    """

    def __init__(self, model_id: str, replace: bool = False):
        self.model_id = check_model_id(model_id)
        self.replace = replace
        self.folder = ""
        self.committed = False

    def __enter__(self):
        root = os.path.join(models_dir(), STAGING)
        os.makedirs(root, exist_ok=True)
        self.folder = tempfile.mkdtemp(prefix=self.model_id + "-", dir=root)
        return self

    def __exit__(self, *exc):
        if not self.committed:
            shutil.rmtree(self.folder, ignore_errors=True)
        return False

    def commit(self, meta: dict) -> InstalledModel:
        """Write model.json and move the folder into place in one rename."""
        meta = {"id": self.model_id, **{k: v for k, v in meta.items() if k != "id"}}
        for role in ("onnx", "fp16", "netg", "i2v"):
            rel = meta.get(role)
            if rel is not None and not os.path.isfile(os.path.join(self.folder, check_file_name(rel))):
                raise UserError(f"{self.model_id}: {role} file {rel} was not written")
        _write_json(os.path.join(self.folder, MODEL_JSON), meta)
        target = os.path.join(models_dir(), self.model_id)
        old = None
        if os.path.lexists(target):
            if not self.replace:
                raise UserError(f"a model {self.model_id!r} is already installed in {target}")
            # Directories cannot be renamed over one another everywhere: move the old one aside first.
            old = tempfile.mkdtemp(prefix=self.model_id + "-old-", dir=os.path.dirname(self.folder))
            os.rmdir(old)
            os.rename(target, old)
        try:
            os.rename(self.folder, target)
        except OSError:
            if old:
                os.rename(old, target)
            raise
        self.committed = True
        if old:
            shutil.rmtree(old, ignore_errors=True)
        m = read_model(target)
        if m is None:
            raise UserError(f"{self.model_id}: the model folder was written but cannot be read back")
        return m


def _write_json(path: str, data: dict):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def remove_model(model_id: str) -> bool:
    """Delete an installed model; False if there was none."""
    target = model_folder(model_id)
    if not os.path.isdir(target):
        return False
    # Rename first so a half-deleted folder is never seen as a model.
    root = os.path.join(models_dir(), STAGING)
    os.makedirs(root, exist_ok=True)
    trash = tempfile.mkdtemp(prefix=model_id + "-removed-", dir=root)
    os.rmdir(trash)
    os.rename(target, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True
