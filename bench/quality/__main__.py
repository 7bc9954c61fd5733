"""python -m bench.quality --data DIR --engine flats|alacgan [--model M] [--snap] [--size N]
                         [--ratios R …] [--json OUT.json] [--sheet OUT.png] [--limit N]"""
import argparse
import json
import sys

from .runner import evaluate, table


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.quality", description="Hint-AUC of a krita_alac engine")
    p.add_argument("--data", required=True, help="evaluation set (NAME.png + NAME_lines.png)")
    p.add_argument("--engine", choices=("flats", "alacgan"), required=True)
    p.add_argument("--model", help="alacgan: installed model id or model file (default: the default model)")
    p.add_argument("--snap", action="store_true", help="alacgan: snap colors to flat regions")
    p.add_argument("--size", type=int, default=512, help="working size for neural engines")
    p.add_argument("--ratios", type=float, nargs="+", help="hint ratios, 0 … 1 (default: hintauc's)")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--sheet", help="write a contact sheet PNG")
    p.add_argument("--limit", type=int, help="only the first N images")
    a = p.parse_args(argv)
    engine = "flats" if a.engine == "flats" else (a.model or "auto")
    try:
        r = evaluate(a.data, engine, a.size, a.ratios, a.snap, a.sheet, a.limit)
    except ValueError as e:          # hintauc's checks, e.g. a ratio grid that does not span 0..1
        raise SystemExit(f"python -m bench.quality: error: {e}")
    if a.engine == "alacgan":
        r["engine"] = f"alacgan ({engine})" + (" + snap" if a.snap else "")
    print(f"{r['engine']} on {r['images']} images")
    print(table(r))
    for note, n in r["notes"].items():
        print(f"note: {n} runs: {note} (scored as the bare line art)")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({k: r[k] for k in ("engine", "ratios", "per_ratio", "hint_auc", "images", "notes")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
