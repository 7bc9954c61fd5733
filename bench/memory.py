"""Peak memory of a big page, through the command line and inside Krita.

    python -m bench.memory [--size 8192] [--engine auto] [--no-krita] [--krita-engine flats]

1. The command line: `krita-alac colorize` of an N x N page (rings, straight
   strokes, a screentone-like patch of small dots, a few hundred hint
   strokes) in a child process; its peak resident memory (ru_maxrss) is
   printed against the bytes of its two RGBA inputs (2 N^2 4; target <= 4x),
   beside a reference child that only reads the two PNGs.
2. Krita (kritarunner, offscreen): the growth of Krita's own process during
   one colorize of the same page (VmHWM after the run, the peak reset just
   before it through /proc/self/clear_refs, minus VmRSS before) against the
   canvas bytes N^2 4 (target <= 2x).  The worker is started (warm) first.
Linux only (/proc).  Memory, not time: no timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20

READ_ONLY = """
import sys
from krita_alac.engine.imaging import read_rgba
a, b = read_rgba(sys.argv[1]), read_rgba(sys.argv[2])
print(a.nbytes + b.nbytes)
"""


def make_page(n: int, seed: int = 0):
    """RGBA line art and hints of a busy N x N page."""
    rng = np.random.default_rng(seed)
    lines = np.zeros((n, n, 4), np.uint8)
    ink = np.zeros((n, n), bool)
    for _ in range(60):
        cx, cy = rng.integers(0, n, 2)
        r = int(rng.integers(n // 40, n // 6))
        w = float(rng.uniform(1.5, 3.5))
        y0, y1, x0, x1 = max(0, cy - r - 4), min(n, cy + r + 4), max(0, cx - r - 4), min(n, cx + r + 4)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        ink[y0:y1, x0:x1] |= np.abs(np.hypot(xx - cx, yy - cy) - r) < w
    for _ in range(30):
        y, x = rng.integers(0, n, 2)
        ink[max(0, y - 2):y + 2, :] = True
        ink[:, max(0, x - 2):x + 2] = True
    # Screentone: 2 px dots every 6 px over an eighth of the page (tens of thousands of specks).
    t = n // 8
    ty, tx = n // 3, n // 3
    tone = np.zeros((t, t), bool)
    tone[::6, ::6] = True
    tone[1::6, ::6] = True
    tone[::6, 1::6] = True
    tone[1::6, 1::6] = True
    ink[ty:ty + t, tx:tx + t] |= tone
    lines[ink] = (0, 0, 0, 255)
    hints = np.zeros((n, n, 4), np.uint8)
    for _ in range(300):
        y, x = rng.integers(0, n - 60, 2)
        hints[y:y + 6, x:x + 50, :3] = rng.integers(0, 256, 3)
        hints[y:y + 6, x:x + 50, 3] = 255
    return lines, hints


def peak_of(cmd, env=None):
    """(exit code, stdout+stderr, peak RSS in bytes) of a child process."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    out = p.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, out, usage.ru_maxrss * 1024


def cli_part(tmp, lines_png, hints_png, n, engine):
    inputs = 2 * n * n * 4
    rc, out, ref_peak = peak_of([sys.executable, "-c", READ_ONLY, lines_png, hints_png])
    if rc:
        raise SystemExit(f"reading the inputs failed: {out}")
    cmd = [sys.executable, "-m", "krita_alac", "colorize", lines_png, "--hints", hints_png,
           "--engine", engine, "-o", os.path.join(tmp, "out.png")]
    rc, out, peak = peak_of(cmd)
    print(f"command line, {n}x{n}, engine {engine}: {out.strip().splitlines()[-1] if out.strip() else ''}")
    if rc:
        print(f"  failed (exit {rc}): {out.strip()[-500:]}")
    print(f"  two RGBA inputs {inputs / MiB:.0f} MiB; reading them alone peaks at {ref_peak / MiB:.0f} MiB "
          f"({ref_peak / inputs:.2f}x)")
    print(f"  colorize peak RSS {peak / MiB:.0f} MiB = {peak / inputs:.2f}x the inputs (target <= 4x)")
    return {"inputs": inputs, "reference_peak": ref_peak, "peak": peak, "ok": rc == 0}


def krita_env(tmp):
    env = dict(os.environ)
    for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[k] = os.path.join(tmp, k.lower())
        os.makedirs(env[k], exist_ok=True)
    env.update(KRITA_ALAC_PYTHON=sys.executable, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "tests", "krita"), ROOT]))
    env.pop("PYTHONHOME", None)
    for k in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR", "QT_PLUGIN_PATH"):
        env.pop(k, None)
    # Krita's embedded Python finds its prefix through PATH: keep this venv off it.
    venv = os.path.abspath(env.pop("VIRTUAL_ENV", None) or sys.prefix)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not os.path.abspath(p).startswith(venv))
    return env


def krita_part(tmp, lines, hints, n, engine):
    runner = shutil.which("kritarunner")
    if runner is None:
        print("Krita: kritarunner not found, skipped")
        return None
    cfg = {"lines": os.path.join(tmp, "lines.bgra"), "hints": os.path.join(tmp, "hints.bgra"), "size": n,
           "engine": engine, "out": os.path.join(tmp, "krita.json")}
    for path, a in ((cfg["lines"], lines), (cfg["hints"], hints)):
        np.ascontiguousarray(a[..., [2, 1, 0, 3]]).tofile(path)
    with open(os.path.join(tmp, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    env = krita_env(tmp)
    env["KRITA_ALAC_BENCH"] = os.path.join(tmp, "cfg.json")
    r = subprocess.run([runner, "-s", "krita_memory", "-f", "run"], env=env, capture_output=True, text=True,
                       timeout=1800)
    if not os.path.isfile(cfg["out"]):
        print(f"Krita: no result (exit {r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
        return None
    with open(cfg["out"]) as f:
        k = json.load(f)
    if "error" in k:
        print(f"Krita: {k['error']}")
        return k
    canvas = n * n * 4
    growth = k["hwm"] - k["rss_before"]
    print(f"Krita, {n}x{n}, engine {engine}: {k['engine']} -> layer '{k['layer']}' in {k['seconds']:.1f} s")
    print(f"  canvas {canvas / MiB:.0f} MiB; Krita's RSS before {k['rss_before'] / MiB:.0f} MiB, peak during the run "
          f"{k['hwm'] / MiB:.0f} MiB, after {k['rss_after'] / MiB:.0f} MiB")
    print(f"  growth at the peak {growth / MiB:.0f} MiB = {growth / canvas:.2f}x the canvas (target <= 2x; "
          f"the new layer itself is 1x)")
    return k


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.memory")
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--engine", default="auto", help="engine of the command-line run (default: auto)")
    p.add_argument("--krita-engine", default="flats", help="engine of the Krita run (Krita's memory does not "
                                                          "depend on it; flats is the quickest)")
    p.add_argument("--no-krita", action="store_true")
    p.add_argument("--no-cli", action="store_true")
    a = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="alac_mem_")
    try:
        lines, hints = make_page(a.size)
        lp, hp = os.path.join(tmp, "lines.png"), os.path.join(tmp, "hints.png")
        from PIL import Image
        Image.fromarray(lines).save(lp, compress_level=1)
        Image.fromarray(hints).save(hp, compress_level=1)
        if not a.no_cli:
            cli_part(tmp, lp, hp, a.size, a.engine)
        if not a.no_krita:
            krita_part(tmp, lines, hints, a.size, a.krita_engine)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
