"""The registry of known models (models.json beside this file).

Every entry is validated before anything is fetched: a safe id, https URLs,
plain file names, sizes and sha256 digests, so a bad or tampered registry
cannot write outside the store or skip the checksum.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from krita_alac.engine import store
from krita_alac.engine.errors import UserError

from .urls import check_url

DEFAULT_REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.json")
KINDS = ("alacgan",)
ROLES = ("netg", "i2v")
SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RemoteFile:
    role: str        # "netg" (generator checkpoint) or "i2v" (Illustration2Vec weights)
    name: str        # plain file name, used for the download and, if kept, in the model folder
    url: str
    sha256: str
    size: int | None = None


@dataclass
class RegistryModel:
    id: str
    name: str
    kind: str
    available: bool
    files: list = field(default_factory=list)
    license: str = ""
    source: str = ""
    note: str = ""
    bundled: bool = False       # comes inside the plugin (krita_alac/models/<id>); nothing to download

    def file(self, role: str) -> RemoteFile | None:
        return next((f for f in self.files if f.role == role), None)


def check_sha256(text: str, what: str = "sha256") -> str:
    digest = (text or "").strip().lower()
    if not SHA256_RE.fullmatch(digest):
        raise UserError(f"{what} must be 64 hexadecimal digits, got {text!r}")
    return digest


def parse_file(entry, model_id: str) -> RemoteFile:
    if not isinstance(entry, dict):
        raise UserError(f"registry: {model_id}: a file entry is not an object")
    role = entry.get("role")
    if role not in ROLES:
        raise UserError(f"registry: {model_id}: unknown file role {role!r} (expected {', '.join(ROLES)})")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise UserError(f"registry: {model_id}: {role} size must be a positive number of bytes")
    return RemoteFile(role=role, name=store.check_file_name(entry.get("name")), url=check_url(entry.get("url")),
                      sha256=check_sha256(entry.get("sha256"), f"registry: {model_id}: {role} sha256"), size=size)


def parse_model(entry) -> RegistryModel:
    if not isinstance(entry, dict):
        raise UserError("registry: a model entry is not an object")
    model_id = store.check_model_id(entry.get("id"))
    kind = entry.get("kind", "alacgan")
    if kind not in KINDS:
        raise UserError(f"registry: {model_id}: unsupported kind {kind!r}")
    available = entry.get("available", True) is not False
    files = [parse_file(f, model_id) for f in entry.get("files") or []]
    roles = [f.role for f in files]
    if len(set(roles)) != len(roles) or len({f.name for f in files}) != len(files):
        raise UserError(f"registry: {model_id}: duplicate file role or name")
    bundled = entry.get("bundled", False) is True
    if available and not bundled and "netg" not in roles:
        raise UserError(f"registry: {model_id}: no generator (netg) file")
    return RegistryModel(id=model_id, name=str(entry.get("name") or model_id), kind=kind, available=available,
                         files=files, license=str(entry.get("license") or ""),
                         source=str(entry.get("source") or ""), note=str(entry.get("note") or ""),
                         bundled=bundled)


def load_registry(path: str | None = None) -> list[RegistryModel]:
    path = path or DEFAULT_REGISTRY
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UserError(f"cannot read the model registry {path}: {e.strerror or e}")
    except ValueError as e:
        raise UserError(f"the model registry {path} is not valid JSON ({e})")
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"the model registry {path} has no \"models\" list")
    models = [parse_model(e) for e in entries]
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise UserError(f"the model registry {path} lists an id twice")
    return models


def find(models: list[RegistryModel], model_id: str) -> RegistryModel:
    for m in models:
        if m.id == model_id:
            return m
    known = ", ".join(m.id for m in models) or "none"
    raise UserError(f"unknown model {model_id!r} (known: {known}; see --list)")
