"""`python -m model_download`: install AlacGAN models into the krita_alac store."""
from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse

from krita_alac.engine import store
from krita_alac.engine.errors import UserError

from .fetch import FetchOptions
from .install import Options, Plan, install
from .registry import RemoteFile, check_sha256, find, load_registry
from .urls import check_url

PROG = "python -m model_download"

EPILOG = """examples:
  python -m model_download --list
  python -m model_download alac-open
  python -m model_download --netg netG.pth --i2v i2v.pth --name my-alacgan
  python -m model_download --url https://example.org/netG.pth --sha256 HEX --i2v i2v.pth

Models go to the per-user store (set KRITA_ALAC_HOME to use another folder);
the Krita plugin, its worker and krita-alac all use it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage dump: the same shape as every other error of this command.
        print(f"{PROG}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Download, convert and install AlacGAN models for krita_alac.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("id", nargs="?", help="a model id from the registry (see --list)")
    p.add_argument("--list", action="store_true", help="list the registry's models and the installed ones")
    p.add_argument("--remove", metavar="ID", help="delete an installed model")
    g = p.add_argument_group("files from elsewhere")
    g.add_argument("--netg", metavar="CKPT", help="a local generator checkpoint (netG.pth)")
    g.add_argument("--i2v", metavar="I2V", help="local Illustration2Vec weights (i2v.pth)")
    g.add_argument("--url", help="download the generator checkpoint from URL (https)")
    g.add_argument("--sha256", metavar="HEX", help="sha256 of the file at --url (required)")
    g.add_argument("--i2v-url", metavar="URL", help="download the Illustration2Vec weights from URL")
    g.add_argument("--i2v-sha256", metavar="HEX", help="sha256 of the file at --i2v-url (required)")
    g.add_argument("--name", help="id to install under (default: from the checkpoint's file name)")
    g.add_argument("--license", default="", help="license of the weights, recorded in model.json")
    c = p.add_argument_group("conversion")
    c.add_argument("--fp16", action="store_true", help="also write an fp16 ONNX copy for GPUs")
    c.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    c.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the PyTorch checkpoints beside the ONNX model (for --backend torch)")
    c.add_argument("--force", action="store_true", help="replace an installed model with the same id")
    d = p.add_argument_group("download")
    d.add_argument("--stall-timeout", type=_positive, default=30.0, metavar="S",
                   help="give up when no data arrives for S seconds (default 30)")
    d.add_argument("--retries", type=_count, default=4, metavar="N",
                   help="attempts after a dropped connection, with growing waits (default 4)")
    d.add_argument("--retry-wait", type=_positive, default=1.0, metavar="S",
                   help="first wait between attempts, doubled each time (default 1)")
    d.add_argument("--registry", metavar="FILE", help="use another registry file than the bundled models.json")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _positive(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not v > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return v


def _count(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def id_from_file_name(name: str) -> str:
    """A safe model id from a file name: 'My netG (v2).pth' -> 'my-netg-v2'."""
    stem = os.path.basename(name).split(".")[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:64]
    return slug or "model"


def _file_name_from_url(url: str, default: str) -> str:
    base = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    try:
        return store.check_file_name(base)
    except UserError:
        return default


def cmd_list(args):
    models = load_registry(args.registry)
    installed = {m.id: m for m in store.installed_models()}
    print(f"model store: {store.models_dir()}")
    for m in models:
        if m.id in installed:
            state = "bundled" if installed[m.id].bundled else "installed"
        elif not m.available:
            state = "not yet available"
        else:
            size = sum(f.size or 0 for f in m.files)
            state = f"download {size / 1e6:.0f} MB" if size else "download"
        print(f"  {m.id:<20} {state:<18} {m.name}" + (f"  [{m.license}]" if m.license else ""))
        if not m.available and m.note:
            print(f"  {'':<20} {m.note}")
    for mid, m in installed.items():
        if mid not in {r.id for r in models}:
            print(f"  {mid:<20} {'bundled' if m.bundled else 'installed':<18} {m.label} (not in the registry)")


def cmd_remove(args):
    if not store.remove_model(args.remove):
        m = store.find_model(args.remove)
        if m is not None and m.bundled:
            raise UserError(f"{args.remove} comes with the plugin and cannot be removed")
        raise UserError(f"no installed model {args.remove!r}")
    print(f"removed {args.remove}")


def plan_registry(args) -> Plan | None:
    entry = find(load_registry(args.registry), args.id)
    have = store.find_model(entry.id)
    if entry.bundled and entry.available and not entry.files:
        if have is None:
            raise UserError(f"{entry.id} comes with the plugin, but this copy has no krita_alac/models/{entry.id}: "
                            "reinstall the plugin")
        print(f"{entry.id} comes with the plugin ({have.folder}); nothing to download")
        return None
    if not entry.available:
        raise UserError(f"{entry.id} is not available yet: {entry.note or 'no files are published'}")
    if not args.force and have is not None and not have.bundled:
        print(f"{entry.id} is already installed in {store.model_folder(entry.id)} (--force reinstalls it)")
        return None
    return Plan(model_id=entry.id, name=entry.name, remote={f.role: f for f in entry.files},
                license=entry.license, source=entry.source, kind=entry.kind)


def plan_files(args) -> Plan:
    if args.netg and args.url:
        raise UserError("give either --netg or --url, not both")
    if args.i2v and args.i2v_url:
        raise UserError("give either --i2v or --i2v-url, not both")
    local, remote, sources = {}, {}, []
    if args.netg:
        local["netg"] = _local_file(args.netg)
        sources.append(f"local file {os.path.basename(args.netg)}")
    else:
        if not args.sha256:
            raise UserError("--url needs --sha256 HEX: downloads are always checked")
        name = _file_name_from_url(args.url, "netG.pth")
        remote["netg"] = RemoteFile("netg", name, check_url(args.url), check_sha256(args.sha256, "--sha256"))
        sources.append(args.url)
    if args.i2v:
        local["i2v"] = _local_file(args.i2v)
        sources.append(f"local file {os.path.basename(args.i2v)}")
    elif args.i2v_url:
        if not args.i2v_sha256:
            raise UserError("--i2v-url needs --i2v-sha256 HEX: downloads are always checked")
        name = _file_name_from_url(args.i2v_url, "i2v.pth")
        if "netg" in remote and name == remote["netg"].name:
            name = "i2v-" + name
        remote["i2v"] = RemoteFile("i2v", name, check_url(args.i2v_url), check_sha256(args.i2v_sha256, "--i2v-sha256"))
        sources.append(args.i2v_url)
    elif args.i2v_sha256:
        raise UserError("--i2v-sha256 goes with --i2v-url")
    model_id = args.name or id_from_file_name(args.netg or remote["netg"].name)
    return Plan(model_id=store.check_model_id(model_id), name=args.name or model_id, local=local, remote=remote,
                license=args.license or "unknown", source="; ".join(sources))


def _local_file(path: str) -> str:
    if not os.path.isfile(path):
        raise UserError(f"file not found: {path}")
    return os.path.abspath(path)


def cmd_install(args):
    if args.id:
        if args.netg or args.url or args.name or args.i2v or args.i2v_url or args.sha256:
            raise UserError("give a registry id or --netg/--url files, not both")
        plan = plan_registry(args)
    else:
        plan = plan_files(args)
    if plan is None:
        return
    opts = Options(fp16=args.fp16, check=not args.no_check, keep_checkpoints=args.keep_checkpoints,
                   replace=args.force, fetch=FetchOptions(stall_timeout=args.stall_timeout, retries=args.retries,
                                                          retry_wait=args.retry_wait, quiet=args.quiet))
    model = install(plan, opts)
    print(f"installed {model.id} in {model.folder}; use it with: krita-alac colorize --engine {model.id} ...")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if sum(map(bool, (args.list, args.remove, args.id or args.netg or args.url))) != 1:
            raise UserError("give one of: a model ID, --list, --remove ID, --netg CKPT or --url URL (see --help)")
        if args.list:
            cmd_list(args)
        elif args.remove:
            cmd_remove(args)
        else:
            cmd_install(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        # Converting checkpoints needs the torch extra: say which, not a traceback.
        from krita_alac.engine.cli import missing_module_message
        msg = missing_module_message(e)
        if msg is None:
            raise
        print(f"{PROG}: error: {msg}; nothing was installed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: the store is unchanged; run the same command again to resume",
              file=sys.stderr)
        return 130
    except OSError as e:
        # Disk full, permissions: say what and where, without a traceback.
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"{PROG}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    return 0
