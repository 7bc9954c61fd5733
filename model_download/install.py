"""Fetch (or take local) checkpoints, convert them, register the model in the store.

The store changes in one step only: the model folder is built under
`.staging` and renamed into place once everything is written.  Downloads
wait in `.partial` and are removed after a successful install; after a
failure they stay there, verified or resumable, and nothing else changes.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from krita_alac.engine import store
from krita_alac.engine.errors import UserError

from . import convert as converter
from .fetch import FetchOptions, fetch
from .registry import RemoteFile

KEPT_NAMES = {"netg": "netG.pth", "i2v": "i2v.pth"}


@dataclass
class Plan:
    """What to install: one local path or one remote file per role."""
    model_id: str
    name: str = ""
    local: dict = field(default_factory=dict)    # role -> path
    remote: dict = field(default_factory=dict)   # role -> RemoteFile
    license: str = ""
    source: str = ""
    kind: str = "alacgan"


@dataclass
class Options:
    fp16: bool = False
    check: bool = True
    keep_checkpoints: bool = False
    replace: bool = False
    fetch: FetchOptions = field(default_factory=FetchOptions)


def install(plan: Plan, opts: Options | None = None) -> store.InstalledModel:
    opts = opts or Options()
    store.check_model_id(plan.model_id)
    if not opts.replace and store.find_model(plan.model_id):
        raise UserError(f"a model {plan.model_id!r} is already installed; use --force to replace it")
    paths = dict(plan.local)
    downloaded = []
    for role, rf in plan.remote.items():
        rf: RemoteFile
        paths[role] = fetch(rf.url, rf.name, rf.sha256, rf.size, opts.fetch)
        downloaded.append(paths[role])
    with store.Staging(plan.model_id, replace=opts.replace) as st:
        files = converter.convert(paths["netg"], paths.get("i2v"), st.folder, fp16=opts.fp16, check=opts.check,
                                  quiet=opts.fetch.quiet)
        if opts.keep_checkpoints:
            for role, path in paths.items():
                dst = os.path.join(st.folder, KEPT_NAMES[role])
                if path in downloaded:
                    _link_or_copy(path, dst)
                else:
                    shutil.copyfile(path, dst)  # a link would let later edits of the user's file change the store
                files[role] = KEPT_NAMES[role]
        meta = {"name": plan.name or plan.model_id, "kind": plan.kind, **{"fp16": None, "netg": None, "i2v": None},
                **files, "license": plan.license, "source": plan.source,
                "sha256": {role: rf.sha256 for role, rf in plan.remote.items()}}
        model = st.commit(meta)
    for path in downloaded:
        os.unlink(path)
    return model


def _link_or_copy(src: str, dst: str):
    """Downloads are linked, not moved: until the final rename the store must stay as it was."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
