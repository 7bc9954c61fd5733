"""python -m bench.quality --data DIR --engine auto|flats|alacgan [more engines …]
                         [--compose default|shade|snap|raw …] [--model M] [--size N]
                         [--hints hintauc|strokes] [--ratios R …] [--json OUT.json] [--sheet OUT.png] [--limit N]

`--engine auto` with nothing else runs exactly `krita-alac colorize`'s default (model, its
working size, its composition).  Several engines and compositions make one row each, all
on the same hints, e.g. the README's table:

    python -m bench.quality --data evalset --engine flats auto --compose default raw snap
"""
import argparse
import json
import sys

from .runner import COMPOSE_CHOICES, PROTOCOLS, EngineColorizer, Sheet, evaluate_rows, side_by_side, table


def rows_of(a):
    """{label: EngineColorizer} for every engine x composition asked for."""
    from krita_alac.engine.registry import Engines
    engines = Engines()                     # one registry: rows share the loaded model and line-art caches
    rows = {}
    composes = a.compose or ["default"]
    for eng in a.engine:
        if eng == "flats":
            rows["flats"] = EngineColorizer("flats", engines=engines)
            continue
        model = (a.model or "auto") if eng == "alacgan" else "auto"
        for c in composes:
            compose = None if c == "default" else c
            snap = True if (a.snap and compose is None) else None
            label = model + ("" if compose is None and not snap else f" --compose {compose or 'snap'}")
            if a.size is not None:
                label += f" --size {a.size}"
            rows[label] = EngineColorizer(model, a.size, snap, compose=compose, engines=engines)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.quality", description="Hint-AUC of krita_alac engines")
    p.add_argument("--data", required=True, help="evaluation set (NAME.png + NAME_lines.png)")
    p.add_argument("--engine", nargs="+", choices=("auto", "flats", "alacgan"), required=True,
                   help="auto: the command's default engine; alacgan: --model's; flats")
    p.add_argument("--compose", nargs="+", choices=COMPOSE_CHOICES,
                   help="neural rows: default (the command's), shade, snap, raw (several: one row each)")
    p.add_argument("--model", help="alacgan: installed model id or model file (default: the default model)")
    p.add_argument("--snap", action="store_true", help="same as --compose snap (kept for old scripts)")
    p.add_argument("--size", type=int, default=None, help="working size for neural engines (default: the model's)")
    p.add_argument("--hints", choices=PROTOCOLS, default="hintauc",
                   help="hint protocol: hintauc's scribbles by ratio, or artist strokes by amount")
    p.add_argument("--ratios", type=float, nargs="+",
                   help="hint ratios (or stroke amounts), 0 … 1 (default: the protocol's)")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--sheet", help="write a contact sheet PNG (first row)")
    p.add_argument("--limit", type=int, help="only the first N images")
    a = p.parse_args(argv)
    rows = rows_of(a)
    first = next(iter(rows))
    if a.sheet:
        rows[first].sheet = Sheet(ratios=(0.0, 0.05, 0.25) if a.hints == "hintauc" else (0.0, 0.25, 0.5))
    try:
        res = evaluate_rows(a.data, rows, a.hints, a.ratios, a.limit, {first: a.sheet} if a.sheet else None)
    except ValueError as e:          # hintauc's checks, e.g. a ratio grid that does not span 0..1
        raise SystemExit(f"python -m bench.quality: error: {e}")
    n = next(iter(res.values()))["images"]
    print(f"{a.hints} protocol, {n} images")
    for label, r in res.items():
        print(f"\n{label}")
        print(table(r))
        for note, k in r["notes"].items():
            print(f"note: {k} runs: {note} (scored as the bare line art)")
    if len(res) > 1:
        print("\nPSNR by " + ("hint ratio" if a.hints == "hintauc" else "stroke amount"))
        print(side_by_side(res))
    if a.json:
        keys = ("engine", "protocol", "ratios", "per_ratio", "hint_auc", "images", "notes")
        out = {k: res[first][k] for k in keys}          # the first row at the top, as before
        out["rows"] = [{k: r[k] for k in keys} for r in res.values()]
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
