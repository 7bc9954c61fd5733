"""Line extraction against ground-truth line art.

    python -m bench.lines_quality --data DIR [--tolerance 2] [--method xdog|neural [--model M] [--size N]]
    python -m bench.lines_quality --examples      # color edges of examples/ colored with flats

On the quality benchmark's set, for the images whose line art comes from the
SVG's own strokes (true line art, not XDoG), extract lines from the colored
ground truth and compare line pixels: precision = share of extracted ink
within `tolerance` px of true ink, recall = share of true ink within
`tolerance` px of extracted ink.  `--method neural` without `--model` uses the
installed line model, as `krita-alac lines --method neural` does.
"""
import argparse
import json
import os

import numpy as np
from scipy import ndimage as ndi


def score(pred_ink, true_ink, tol):
    if not pred_ink.any() or not true_ink.any():
        return 0.0, 0.0
    d_true = ndi.distance_transform_edt(~true_ink)
    d_pred = ndi.distance_transform_edt(~pred_ink)
    return float((d_true[pred_ink] <= tol).mean()), float((d_pred[true_ink] <= tol).mean())


def color_edge_recall(colored, ink, tol=2.0):
    """{(color, color): share of that boundary's pixels with ink within tol px}."""
    rgb = colored[..., :3].astype(np.int64)
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    near = ndi.distance_transform_edt(~ink) <= tol
    out = {}
    for a, b, na, nb in ((key[:, 1:], key[:, :-1], near[:, 1:], near[:, :-1]),
                         (key[1:], key[:-1], near[1:], near[:-1])):
        edge = a != b
        ok = (na | nb)[edge]
        lo, hi = np.minimum(a, b)[edge], np.maximum(a, b)[edge]
        for pair in set(zip(lo.tolist(), hi.tolist())):
            sel = (lo == pair[0]) & (hi == pair[1])
            out.setdefault(pair, []).extend(ok[sel].tolist())
    return {k: float(np.mean(v)) for k, v in out.items()}


def examples(tol):
    """Colorize examples/ with flats, extract lines from the colors, report each color boundary."""
    from PIL import Image
    from krita_alac.engine.flats import compute_flats
    from krita_alac.engine.lines import extract_lines
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    lines = np.array(Image.open(os.path.join(here, "lineart.png")).convert("RGBA"))
    hints = np.array(Image.open(os.path.join(here, "hints.png")).convert("RGBA"))
    colored = compute_flats(lines, hints).rgba
    rec = color_edge_recall(colored, extract_lines(colored)[..., 3] >= 128, tol)
    worst = sorted(rec.items(), key=lambda kv: kv[1])
    for (a, b), r in worst[:5]:
        print(f"  #{a:06x} / #{b:06x}: {r:.3f}")
    print(f"examples: {len(rec)} color boundaries, {sum(r >= 0.95 for r in rec.values())} recovered "
          f"(>= 95% of their pixels within {tol:g} px), worst {worst[0][1]:.3f}")


def main(argv=None):
    from PIL import Image
    from krita_alac.engine.lines import extract_lines
    p = argparse.ArgumentParser(prog="python -m bench.lines_quality")
    p.add_argument("--data")
    p.add_argument("--examples", action="store_true", help="check the color edges of examples/ instead")
    p.add_argument("--tolerance", type=float, default=2.0)
    p.add_argument("--method", choices=("xdog", "neural"), default="xdog")
    p.add_argument("--model", help="neural: installed model id or generator file (default: the installed line "
                                   "model, cycle-open first)")
    p.add_argument("--size", type=int, help="neural: working size (default: the model's)")
    p.add_argument("--thickness", type=float, default=1.0)
    a = p.parse_args(argv)
    if a.examples:
        return examples(a.tolerance)
    if not a.data:
        p.error("--data DIR (the quality set) or --examples")
    with open(os.path.join(a.data, "manifest.json"), encoding="utf-8") as f:
        items = [it for it in json.load(f)["images"] if it["lines"] == "svg strokes"]
    if a.method == "neural":
        from krita_alac.engine.errors import UserError
        from krita_alac.engine.lines import neural_lines_model
        try:
            path, label, size = neural_lines_model(a.model)
        except UserError as e:
            raise SystemExit(f"lines_quality: {e}")
        print(f"neural: {label} ({path}), working size {a.size or size or 512}")
    ps, rs = [], []
    for it in items:
        rgb = np.array(Image.open(os.path.join(a.data, it["name"] + ".png")).convert("RGBA"))
        true_ink = np.array(Image.open(os.path.join(a.data, it["name"] + "_lines.png")).convert("L")) < 128
        if a.method == "neural":
            out = extract_lines(rgb, "neural", model=a.model, size=a.size)
        else:
            out = extract_lines(rgb, thickness=a.thickness)
        pr, rc = score(out[..., 3] >= 128, true_ink, a.tolerance)
        ps.append(pr)
        rs.append(rc)
    P, R = float(np.mean(ps)), float(np.mean(rs))
    print(f"{a.method} on {len(items)} images with true line art, tolerance {a.tolerance:g} px: "
          f"precision {P:.3f}, recall {R:.3f}, F1 {2 * P * R / max(P + R, 1e-9):.3f}")


if __name__ == "__main__":
    main()
