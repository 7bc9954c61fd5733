"""Composition variants side by side, from the network's colors computed once.

    python -m bench.compose_tune --data evalset --hints hintauc \\
        --vary strength=0.1,0.2,0.3 unhinted=0.25,0.5 [--limit N] [--json OUT]

The default composition's knobs (`ComposeOptions`) were chosen for the network of their day;
a better network deserves a look again.  Running `bench.quality` once per setting would run
the network every time, although only the composition changes: here every sample (image x
hint ratio) goes once through exactly `krita-alac colorize`'s default path (the same
`Engines.colorize`, with the composition step recorded on its way), and then each variant
re-composes the recorded network colors with its options and is scored by hintauc exactly as
`bench.quality` scores it.  The default options' row therefore equals `bench.quality --engine
auto` to the digit (tests/test_quality.py checks it).

`--vary` takes NAME=V1,V2,... per option; every combination is a row (the default's values
are added to each list).  `--set NAME=V` changes an option in every row.  Each row prints its
Hint-AUC PSNR on all images and, to show whether a gain holds up, on the first and the second
half of the set separately.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pickle

import numpy as np

from krita_alac.engine import compose as compose_mod
from krita_alac.engine import registry
from krita_alac.engine.compose import ComposeOptions
from krita_alac.engine.errors import UserError
from krita_alac.engine.registry import Engines
from krita_alac.engine.request import ColorizeRequest

from .quality.runner import (PROTOCOLS, SCRIBBLE_SEED, STROKE_SEED, as_seen, list_set, protocol_samples,
                             sample_layers)


@dataclasses.dataclass
class Recorded:
    """One sample's composition inputs, as the engine handed them to `compose`."""
    index: int
    alpha: float
    gray: np.ndarray          # the line art as hintauc gives it (H x W uint8)
    gt: np.ndarray
    la: object                # flats.LineArt (shared by an image's samples)
    votes: object
    net: np.ndarray           # h x w x 3 float32, 0..255
    bgra: bool


def record(data: str, protocol: str, engine: str = "auto", limit: int | None = None) -> tuple[list, list]:
    """Run every sample through the command's default path once; returns (Recorded list,
    ratios).  Samples whose composition never ran (no model: flats) are an error."""
    try:
        alphas, samples = protocol_samples(list_set(data)[:limit], protocol)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    engines = Engines()
    seen = []
    real = registry.compose

    def spy(la, votes, net, mode="shade", options=None, layers=False, bgra=False, out=None):
        seen.append((la, votes, np.array(net, np.float32), mode, options, bgra))
        return real(la, votes, net, mode, options, layers, bgra, out)

    out = []
    registry.compose = spy
    try:
        for gt, s in samples:
            lines, hints = sample_layers(s)
            seen.clear()
            try:
                engines.colorize(ColorizeRequest(lines=lines, hints=hints, engine=engine))
            except UserError:
                pass                       # e.g. flats with no hints: nothing composed, said below
            if len(seen) != 1 or seen[0][3] != "shade" or seen[0][4] is not None:
                raise SystemExit("the default path did not compose with the default options once "
                                 "(is a model with the shade composition installed?)")
            la, votes, net, _, _, bgra = seen[0]
            out.append(Recorded(s["index"], s["alpha"], s["line_art"], gt, la, votes, net, bgra))
    finally:
        registry.compose = real
    return out, list(alphas)


def score(recs: list, alphas: list, options: ComposeOptions, metric_size: int = 256) -> dict:
    """Hint-AUC (psnr) of `options` over all images, the first half and the second half.  PSNR
    only: SSIM took three quarters of the time and is not what the variants are chosen by."""
    import hintauc
    ev = hintauc.Evaluator(metrics=("psnr",), resize=metric_size)
    n_img = max(r.index for r in recs) + 1
    halves = {"all": range(n_img), "first": range(n_img // 2), "second": range(n_img // 2, n_img)}
    per_img = {}
    for r in recs:
        rgba = compose_mod.compose(r.la, r.votes, r.net, "shade", options, bgra=r.bgra).rgba
        if r.bgra:
            rgba = rgba[..., [2, 1, 0, 3]]
        m = ev(as_seen(rgba, r.gray), r.gt)
        per_img[(r.index, r.alpha)] = {k: float(v) for k, v in m.items()}
    res = {}
    for name, idx in halves.items():
        if not len(idx):
            continue
        per = {a: {"psnr": float(np.mean([per_img[(i, a)]["psnr"] for i in idx]))} for a in alphas}
        res[name] = hintauc.hint_auc_table(per)["psnr"]
        if name == "all":
            res["per_ratio"] = {str(a): per[a]["psnr"] for a in alphas}
    return res


def _value(field: dataclasses.Field, text: str):
    if text in ("none", "None"):
        return None
    if field.type in ("bool", bool):
        if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(text)
        return text.lower() in ("1", "true", "yes")
    if text in ("inf", "Infinity"):
        return float("inf")
    if field.type in ("int", int):
        return int(text)
    return float(text)


def parse_options(items: list[str], multi: bool) -> dict:
    fields = {f.name: f for f in dataclasses.fields(ComposeOptions)}
    out = {}
    for item in items or []:
        name, _, vals = item.partition("=")
        if name not in fields or not vals:
            raise SystemExit(f"bad option {item!r}: use NAME=VALUE with NAME one of {', '.join(fields)}")
        try:
            vs = [_value(fields[name], v) for v in vals.split(",")]
        except ValueError:
            raise SystemExit(f"bad value in {item!r}: numbers, inf, none, true or false") from None
        if not multi and len(vs) != 1:
            raise SystemExit(f"--set takes one value: {item!r}")
        out[name] = vs if multi else vs[0]
    return out


def variants(vary: dict, fixed: dict) -> list[ComposeOptions]:
    """The default options first, then every combination of the varied values."""
    base = dataclasses.replace(ComposeOptions(), **fixed)
    rows = [ComposeOptions(), base] if base != ComposeOptions() else [base]
    names = list(vary)
    # Each varied option also takes its base value, so every single change has its own row.
    lists = [[getattr(base, n)] + [v for v in vary[n] if v != getattr(base, n)] for n in names]
    for combo in itertools.product(*lists):
        o = dataclasses.replace(base, **dict(zip(names, combo)))
        if o not in rows:
            rows.append(o)
    return rows


def describe(o: ComposeOptions) -> str:
    d = ComposeOptions()
    diff = [f"{f.name}={getattr(o, f.name)}" for f in dataclasses.fields(o) if getattr(o, f.name) != getattr(d, f.name)]
    return " ".join(diff) or "(default)"


RECORDING_FORMAT = 1


def recording_key(a) -> dict:
    """What a recording depends on: the set, the protocol and its seeds, the model's file (size
    and modification time) and this file's format."""
    spec = registry.resolve(a.engine)
    model = (spec.onnx or spec.netg) if spec is not None else None
    st = os.stat(model) if model and os.path.isfile(model) else None
    return {"format": RECORDING_FORMAT, "data": os.path.abspath(a.data), "hints": a.hints, "engine": a.engine,
            "limit": a.limit, "seeds": [SCRIBBLE_SEED, STROKE_SEED],
            "model": [model, st.st_size, st.st_mtime_ns] if st else model}


def load_or_record(a) -> tuple[list, list]:
    key = recording_key(a)
    if a.recorded and os.path.isfile(a.recorded):
        with open(a.recorded, "rb") as f:
            got = pickle.load(f)
        if not isinstance(got, dict) or got.get("key") != key:
            raise SystemExit(f"{a.recorded} holds another recording (other set, protocol, model or format): "
                             "delete it or name another file")
        recs = [Recorded(**r) for r in got["recs"]]
        for r in recs:
            r.la.forget_tables()             # made by the code of the day it was recorded
        return recs, got["alphas"]
    recs, alphas = record(a.data, a.hints, a.engine, a.limit)
    if a.recorded:
        for r in recs:
            r.la.forget_tables()
        tmp = a.recorded + ".part"
        with open(tmp, "wb") as f:
            # Plain dicts: the file stays readable whether this module ran as __main__ or not.
            pickle.dump({"key": key, "recs": [vars(r) for r in recs], "alphas": alphas}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, a.recorded)
    return recs, alphas


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.compose_tune", description=__doc__.split("\n\n")[1])
    p.add_argument("--data", required=True)
    p.add_argument("--hints", choices=PROTOCOLS, default="hintauc")
    p.add_argument("--engine", default="auto", help="an installed model with the shade composition (default: the command's)")
    p.add_argument("--vary", nargs="*", default=[], metavar="NAME=V1,V2")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=V")
    p.add_argument("--limit", type=int)
    p.add_argument("--json")
    p.add_argument("--recorded", metavar="FILE",
                   help="keep the recorded samples in FILE (pickle, this tool's own) and reuse them "
                        "on the next call with the same FILE, so new variants skip the network")
    a = p.parse_args(argv)
    vary, fixed = parse_options(a.vary, True), parse_options(a.set, False)
    recs, alphas = load_or_record(a)
    n = max(r.index for r in recs) + 1
    print(f"{a.hints} protocol, {n} images, network colors recorded once; Hint-AUC PSNR (dB)")
    print("| options | all | first half | second half |\n|---|---|---|---|", flush=True)
    out = []
    for o in variants(vary, fixed):
        r = score(recs, alphas, o)
        out.append({"options": dataclasses.asdict(o), "label": describe(o), **r})
        print(f"| {describe(o)} | {r['all']:.3f} | {r.get('first', float('nan')):.3f} | "
              f"{r.get('second', float('nan')):.3f} |", flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"protocol": a.hints, "images": n, "rows": out}, f, indent=1)


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)          # PSNR only; the two protocols run side by side, a process each
    main()
