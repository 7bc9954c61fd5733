"""XDoG line extraction speed at full resolution.

    python -m bench.lines_speed [--size 4096]
"""
import argparse
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.lines_speed")
    p.add_argument("--size", type=int, default=4096)
    n = p.parse_args(argv).size
    from krita_alac.engine.lines import extract_lines
    rng = np.random.default_rng(0)
    pic = np.full((n, n, 4), 255, np.uint8)
    yy, xx = np.ogrid[:n, :n]
    for _ in range(30):  # colored disks: a picture with many edges
        cx, cy, r = rng.integers(0, n), rng.integers(0, n), rng.integers(n // 40, n // 6)
        pic[np.hypot(xx - cx, yy - cy) < r, :3] = rng.integers(0, 256, 3)
    from krita_alac.engine.imaging import luminance
    from krita_alac.engine.lines import XDoGParams, picture_darkness, xdog_darkness

    def reference(pic):
        """Luminance-only XDoG (before color edges), measured side by side on this machine."""
        return xdog_darkness(luminance(pic), XDoGParams())
    times, ink, ref = [], [], []
    for _ in range(3):
        for out, fn in ((times, extract_lines), (ink, lambda p: picture_darkness(p, XDoGParams())),
                        (ref, reference)):
            t = time.perf_counter()
            fn(pic)
            out.append(time.perf_counter() - t)
    med, imed, rmed = sorted(times)[1], sorted(ink)[1], sorted(ref)[1]
    print(f"xdog {n}x{n}: best {min(times):.2f} s, median {med:.2f} s (target <= 1 s); ink alone {imed:.2f} s "
          f"against luminance-only XDoG {rmed:.2f} s: {imed / rmed:.2f}x")


if __name__ == "__main__":
    main()
