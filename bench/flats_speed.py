"""Flats engine and composition speed and memory at full resolution.

    python -m bench.flats_speed [--size 4096] [--strokes 200] [--compose] [--grid N]

Runs in a child process so the peak RSS is the engine's (plus its inputs).  With --compose
it measures the default composition instead (compose.py: flat regions + a network result's
shading + exact hints), given a smooth random 256 x 256 "network" result: the line art's
analysis once, then vote + composition (what a run costs beyond the network and beyond the
cached line art) and, for scale, one plain scipy.ndimage.label pass over the same page.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import sys, time
import numpy as np
from krita_alac.engine.flats import compute_flats
n, strokes = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
lines = np.zeros((n, n, 4), np.uint8)
# Overlapping circles and straight strokes of varying width: a busy page.
yy, xx = np.ogrid[:n, :n]
for _ in range(40):
    cx, cy = rng.integers(0, n, 2); r = rng.integers(n // 40, n // 5); w = rng.uniform(1.5, 3.5)
    ring = np.abs(np.hypot(xx - cx, yy - cy) - r) < w
    lines[ring] = (0, 0, 0, 255)
for _ in range(40):
    y = rng.integers(0, n); lines[max(0, y - 2):y + 2, :, :] = (0, 0, 0, 255)
    x = rng.integers(0, n); lines[:, max(0, x - 2):x + 2, :] = (0, 0, 0, 255)
grid = int(sys.argv[4])
if grid:
    # Many regions: a grid of thin lines every `grid` pixels.
    lines[::grid, :, :] = (0, 0, 0, 255)
    lines[:, ::grid, :] = (0, 0, 0, 255)
hints = np.zeros((n, n, 4), np.uint8)
for _ in range(strokes):
    y, x = rng.integers(0, n - 40, 2); c = rng.integers(0, 256, 3)
    hints[y:y + 5, x:x + 30, :3] = c; hints[y:y + 5, x:x + 30, 3] = 255
hwm = lambda: [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
base = hwm()
times = []
if sys.argv[3] == "compose":
    from scipy import ndimage as ndi
    from krita_alac.engine.compose import compose
    from krita_alac.engine.flats import LineArt
    t = time.perf_counter(); la = LineArt(lines); t_la = time.perf_counter() - t
    net = ndi.gaussian_filter(rng.uniform(0, 255, (256, 256, 3)).astype(np.float32), (4, 4, 0))
    for _ in range(3):
        t = time.perf_counter(); c = compose(la, la.vote(hints), net); times.append(time.perf_counter() - t)
    del c
    ref = []
    free = ~la.ink
    for _ in range(3):
        t = time.perf_counter(); ndi.label(free); ref.append(time.perf_counter() - t)
    peak = hwm()
    print(min(times), sorted(times)[1], peak, base, la.n, la.gap, t_la, sorted(ref)[1])
    sys.exit(0)
for _ in range(3):
    t = time.perf_counter(); f = compute_flats(lines, hints); times.append(time.perf_counter() - t)
peak = hwm()
print(min(times), sorted(times)[1], peak, base, int(f.labels.max()), f.gap)
"""


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.flats_speed")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--strokes", type=int, default=200)
    p.add_argument("--compose", action="store_true", help="time the default composition instead of flats")
    p.add_argument("--grid", type=int, default=0, help="also draw a grid of lines every N px (many regions)")
    a = p.parse_args(argv)
    r = subprocess.run([sys.executable, "-c", CHILD, str(a.size), str(a.strokes), "compose" if a.compose else "flats",
                        str(a.grid)],
                       capture_output=True, text=True, check=True)
    if a.compose:
        best, median, peak, base, regions, gap, t_la, ref = (float(v) for v in r.stdout.split())
        print(f"composition {a.size}x{a.size}, {a.strokes} hint strokes, {int(regions)} regions, gap {gap:g} px")
        print(f"line art analysis (once per line art): {t_la:.2f} s")
        print(f"vote + composition: best {best:.2f} s, median {median:.2f} s (target <= 1.0 s); "
              f"{median / ref:.1f}x one scipy label pass ({ref * 1000:.0f} ms)")
        print(f"peak RSS {peak:.0f} MB (inputs alone {base:.0f} MB; target <= 1536 MB)")
        return
    best, median, peak, base, regions, gap = r.stdout.split()
    print(f"flats {a.size}x{a.size}, {a.strokes} hint strokes, {regions} regions, gap {float(gap):g} px")
    print(f"time: best {float(best):.2f} s, median {float(median):.2f} s (target <= 2 s)")
    print(f"peak RSS {float(peak):.0f} MB (inputs alone {float(base):.0f} MB; target < 2048 MB)")


if __name__ == "__main__":
    main()
