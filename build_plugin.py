#!/usr/bin/env python3
"""Build dist/krita_alac-<version>.zip for Krita's
"Tools > Scripts > Import Python Plugin from File...".

Layout (what Krita's importer looks for):
  krita_alac.desktop          plugin entry, X-KDE-Library=krita_alac
  krita_alac.action           copied by the importer to Krita's actions folder
  krita_alac/                 explicit directory entry: the importer finds the
  krita_alac/__init__.py      package by its "krita_alac/" entry, then copies it
  krita_alac/*.py, Manual.html, LICENSE
  krita_alac/plugin/          runs in Krita's Python (krita, PyQt5)
  krita_alac/engine/          runs in the worker's Python (numpy, scipy, ONNX Runtime)
  krita_alac/convert/         torch-only: loaded by the worker only for .pth models
"""
from __future__ import annotations

import os
import re
import sys
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "krita_alac"
PACKAGE_FILES = (".py", ".html")   # what goes into the package folder besides LICENSE and the .action
ROOMS = ("plugin", "engine", "convert")   # sub-packages: the plugin and everything its worker runs


def version() -> str:
    with open(os.path.join(ROOT, PACKAGE, "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def package_files() -> list:
    out = []
    for sub in ("", *ROOMS):
        folder = os.path.join(ROOT, PACKAGE, sub)
        names = sorted(n for n in os.listdir(folder)
                       if n.endswith(PACKAGE_FILES) and os.path.isfile(os.path.join(folder, n)))
        out += [os.path.join(PACKAGE, sub, n) if sub else os.path.join(PACKAGE, n) for n in names]
    return out


MODEL_FILES = (".json", ".onnx", ".md")   # what a bundled model folder ships


def bundled_model_files() -> list:
    """krita_alac/models/<id>/<file>: the models that come with the plugin (the open weights)."""
    root = os.path.join(ROOT, PACKAGE, "models")
    out = []
    if os.path.isdir(root):
        for mid in sorted(os.listdir(root)):
            folder = os.path.join(root, mid)
            if os.path.isdir(folder) and not mid.startswith("."):
                out += [os.path.join(PACKAGE, "models", mid, n) for n in sorted(os.listdir(folder))
                        if n.endswith(MODEL_FILES) and os.path.isfile(os.path.join(folder, n))]
    return out


def _add_dir(z: zipfile.ZipFile, name: str):
    info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = (0o40755 << 16) | 0x10   # a directory, for every unzip tool
    z.writestr(info, b"")


def _add_file(z: zipfile.ZipFile, src: str, arcname: str):
    info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as f:
        z.writestr(info, f.read())


def build(out_dir: str | None = None) -> str:
    out_dir = out_dir or os.path.join(ROOT, "dist")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{PACKAGE}-{version()}.zip")
    tmp = path + ".part"
    with zipfile.ZipFile(tmp, "w") as z:
        _add_file(z, os.path.join(ROOT, f"{PACKAGE}.desktop"), f"{PACKAGE}.desktop")
        _add_file(z, os.path.join(ROOT, PACKAGE, f"{PACKAGE}.action"), f"{PACKAGE}.action")
        _add_dir(z, PACKAGE)
        for sub in ROOMS:
            _add_dir(z, f"{PACKAGE}/{sub}")
        for rel in package_files():
            _add_file(z, os.path.join(ROOT, rel), rel.replace(os.sep, "/"))
        models = bundled_model_files()
        for d in sorted({os.path.dirname(r) for r in models} | ({os.path.join(PACKAGE, "models")} if models else set())):
            _add_dir(z, d.replace(os.sep, "/"))
        for rel in models:
            _add_file(z, os.path.join(ROOT, rel), rel.replace(os.sep, "/"))
        _add_file(z, os.path.join(ROOT, "LICENSE"), f"{PACKAGE}/LICENSE")
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else None))
