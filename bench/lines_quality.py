"""Line extraction against ground-truth line art.

    python -m bench.lines_quality --data DIR [--tolerance 2] [--method xdog|neural --model M]

On the quality benchmark's set, for the images whose line art comes from the
SVG's own strokes (true line art, not XDoG), extract lines from the colored
ground truth and compare line pixels: precision = share of extracted ink
within `tolerance` px of true ink, recall = share of true ink within
`tolerance` px of extracted ink.
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


def main(argv=None):
    from PIL import Image
    from krita_alac.engine.lines import extract_lines
    p = argparse.ArgumentParser(prog="python -m bench.lines_quality")
    p.add_argument("--data", required=True)
    p.add_argument("--tolerance", type=float, default=2.0)
    p.add_argument("--method", choices=("xdog", "neural"), default="xdog")
    p.add_argument("--model")
    p.add_argument("--thickness", type=float, default=1.0)
    a = p.parse_args(argv)
    with open(os.path.join(a.data, "manifest.json"), encoding="utf-8") as f:
        items = [it for it in json.load(f)["images"] if it["lines"] == "svg strokes"]
    ps, rs = [], []
    for it in items:
        rgb = np.array(Image.open(os.path.join(a.data, it["name"] + ".png")).convert("RGBA"))
        true_ink = np.array(Image.open(os.path.join(a.data, it["name"] + "_lines.png")).convert("L")) < 128
        if a.method == "neural":
            from krita_alac.engine.image2image import neural_lines
            out = neural_lines(rgb, a.model)
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
