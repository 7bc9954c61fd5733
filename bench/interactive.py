"""Hint iteration speed in the worker process, through the real worker protocol.

    python -m bench.interactive [--sizes 2048x2048 4096x4096 4096x3072] [--engines flats auto] [--reps 3]

For each page size and engine: a *fresh* colorize (line art the worker has not seen) and a
*re-run* after adding one hint stroke (the line art named by its digest and not sent again,
the hints cropped to their bounds, as the plugin sends them).  Times are from the request
leaving this process to the result's last byte arriving.  By default (--transfer files) the
payloads travel as the plugin sends them: BGRA, the line art and hint crops over 4 MiB in
files written before the clock starts (in Krita the layer read writes them), the result in a
file that is complete when its header arrives; --transfer inline sends everything through
the pipe in RGBA.  Each is printed as a ratio to one
plain `scipy.ndimage.label` pass over the same page's ink, measured here in the same run
(median of --reps), so the numbers compare across machines.  The page: 120 outlined shapes
(circles, boxes) and 60 hint strokes, as in issue 14.

Then (unless --no-krita) the same page in real Krita (kritarunner, offscreen, the
scenario "stroke" of tests/krita/krita_suite.py): stroke -> finished layer as the
docker's Auto runs it (the hint signature, then the ColorizeJob, until the result
layer is written), default engine, and the GUI thread's longest block (a 10 ms
QTimer heartbeat).  Printed as ratios to one scipy labelling pass of the page and
to Krita's own read of the line-art layer, both measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from krita_alac.engine.compose import COMPOSE_MODES


def make_page(h: int, w: int, seed: int = 0, shapes: int = 120, strokes: int = 60):
    rng = np.random.default_rng(seed)
    ink = np.zeros((h, w), bool)
    for i in range(shapes):
        r = int(rng.integers(min(h, w) // 60, min(h, w) // 8))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1, x0, x1 = max(cy - r - 3, 0), min(cy + r + 4, h), max(cx - r - 3, 0), min(cx + r + 4, w)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        if i % 2:
            d = np.hypot(yy - cy, xx - cx)
            ink[y0:y1, x0:x1] |= np.abs(d - r) < 1.5
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            edge = (np.abs(yy - cy) >= r - 2) | (np.abs(xx - cx) >= r - 2)
            ink[y0:y1, x0:x1] |= inside & edge
    lines = np.zeros((h, w, 4), np.uint8)
    lines[ink, 3] = 255
    hints = np.zeros((h, w, 4), np.uint8)
    for _ in range(strokes):
        add_stroke(hints, rng)
    return lines, hints, ink


def add_stroke(hints, rng):
    h, w = hints.shape[:2]
    y, x = int(rng.integers(0, h - 12)), int(rng.integers(0, w - 60))
    hints[y:y + 8, x:x + 50, :3] = rng.integers(0, 256, 3)
    hints[y:y + 8, x:x + 50, 3] = 255


def label_times(ink, reps):
    """Median wall and CPU seconds of one labelling pass."""
    from scipy import ndimage as ndi
    free = ~ink
    ts, cs = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        ndi.label(free)
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return statistics.median(ts), statistics.median(cs)


INLINE_HINT_BYTES = 4 << 20     # as the plugin (krita_api.INLINE_HINT_BYTES): bigger hint crops go in a file


class Worker:
    """A worker driven as the plugin drives it (transfer "files": BGRA, the line art and big hint
    crops in files written before the clock starts, as Krita's layer read writes them, and the
    result in a file the header names) or with every payload inline in RGBA ("inline")."""

    def __init__(self, transfer: str = "files"):
        import tempfile
        self.p = subprocess.Popen([sys.executable, "-m", "krita_alac.engine.worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.id = 0
        self.transfer = transfer
        self.tmp = tempfile.mkdtemp(prefix="bench_worker_")
        hello = self.read()
        assert hello["type"] == "ready", hello

    def read(self):
        return json.loads(self.p.stdout.readline())

    def cpu(self):
        """The worker's CPU seconds so far (all its threads; Linux), or None."""
        try:
            with open(f"/proc/{self.p.pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def colorize(self, lines, hints, digest, engine, send_lines=True):
        """Seconds from sending to the result's last byte (with files: to the header naming the
        complete result file), and the result header."""
        h, w = hints.shape[:2]
        self.id += 1
        ys, xs = np.nonzero(hints[..., 3])
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = np.ascontiguousarray(hints[y0:y1, x0:x1])
        msg = {"op": "colorize", "id": self.id, "width": w, "height": h, "format": "RGBA8", "lines": 0, "hints": 0,
               "hints_rect": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], "lines_digest": digest,
               "engine": engine}
        name, _, compose = engine.rpartition(":")
        if compose in COMPOSE_MODES:        # ENGINE:COMPOSE, e.g. alac-open:raw
            msg["engine"], msg["compose"] = name, compose
        payloads, files = [], []
        if self.transfer == "inline":
            if send_lines:
                payloads.append(lines)
                msg["lines"] = lines.nbytes
            payloads.append(crop)
            msg["hints"] = crop.nbytes
        else:
            msg["format"] = "BGRA8"
            bgra = lambda a: np.ascontiguousarray(a[..., [2, 1, 0, 3]])  # noqa: E731
            if send_lines:
                msg["lines_file"] = os.path.join(self.tmp, f"lines-{self.id}")
                bgra(lines).tofile(msg["lines_file"])
                files.append(msg["lines_file"])
            if crop.nbytes <= INLINE_HINT_BYTES:
                payloads.append(bgra(crop))
                msg["hints"] = crop.nbytes
            else:
                msg["hints_file"] = os.path.join(self.tmp, f"hints-{self.id}")
                bgra(crop).tofile(msg["hints_file"])
                files.append(msg["hints_file"])
            msg["result_file"] = os.path.join(self.tmp, f"result-{self.id}")
            files.append(msg["result_file"])
        try:
            t = time.perf_counter()
            self.p.stdin.write(json.dumps(msg).encode() + b"\n")
            for a in payloads:
                self.p.stdin.write(memoryview(a).cast("B"))
            self.p.stdin.flush()
            while True:
                r = self.read()
                if r["type"] == "progress":
                    continue
                if r["type"] != "result":
                    raise RuntimeError(r)
                if r["bytes"]:
                    self.p.stdout.read(r["bytes"])
                return time.perf_counter() - t, r
        finally:
            for f in files:
                if os.path.exists(f):
                    os.unlink(f)

    def close(self):
        import shutil
        self.p.stdin.write(b'{"op": "quit"}\n')
        self.p.stdin.flush()
        self.p.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def krita_part(size: int, engine: str, strokes: int, reps: int):
    """Run the Krita scenario; print its table.  Returns the facts (None without Krita)."""
    import shutil
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tests"))
    from kritahelp import krita_env
    runner = shutil.which("kritarunner")
    if runner is None:
        print("Krita part: kritarunner not found, not measured")
        return None
    lines, hints, ink = make_page(size, size)
    ref = label_times(ink, reps)[0]
    rng = np.random.default_rng(7)
    spots = [(int(rng.integers(0, size - 60)), int(rng.integers(0, size - 12)),
              [int(v) for v in rng.integers(0, 256, 3)]) for _ in range(strokes)]
    with tempfile.TemporaryDirectory(prefix="bench_krita_") as tmp:
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        paths = {}
        for name, a in (("lines", lines), ("hints", hints)):
            paths[name] = os.path.join(tmp, f"{name}.bgra")
            a[..., [2, 1, 0, 3]].tofile(paths[name])
        cfg = {"scenarios": ["stroke"], "out": out, "page_size": size, "page_lines": paths["lines"],
               "page_hints": paths["hints"], "strokes": spots, "engine": engine}
        with open(os.path.join(tmp, "suite.json"), "w") as f:
            json.dump(cfg, f)
        env = krita_env(tmp, KRITA_ALAC_SUITE=os.path.join(tmp, "suite.json"), QT_QPA_PLATFORM="offscreen")
        env["KRITA_ALAC_HOME"] = os.environ.get("KRITA_ALAC_HOME") or env["KRITA_ALAC_HOME"]
        r = subprocess.run([runner, "-s", "krita_suite", "-f", "run"], env=env, capture_output=True, text=True,
                           timeout=1800)
        try:
            with open(os.path.join(out, "results.json")) as f:
                facts = json.load(f)["stroke"]
        except (OSError, ValueError, KeyError):
            raise RuntimeError(f"Krita wrote no results (exit {r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
    if "error" in facts:
        raise RuntimeError(facts["error"])
    fresh = facts["runs"][0]
    runs = facts["runs"][1:]
    t = statistics.median(x["seconds"] for x in runs)
    gap = max(x["max_gap_ms"] for x in runs) / 1000
    read = facts["layer_read_s"]
    print()
    print(f"Krita {size}x{size}: {fresh['engine']} ({fresh['compose']}, working size {fresh['size']}); "
          f"Auto polls every {facts['poll_ms']} ms (not timed)")
    print("| in Krita | time | / label pass | / Krita layer read | GUI longest block | block / label pass |")
    print("|---|---|---|---|---|---|")
    print(f"| references | label {ref * 1000:.0f} ms, layer read {read * 1000:.0f} ms | 1 | "
          f"{ref / read:.2f} / {1:.0f} | | |")
    print(f"| fresh (first colorize of the page) | {fresh['seconds']:.2f} s | {fresh['seconds'] / ref:.1f}x | "
          f"{fresh['seconds'] / read:.1f}x | {fresh['max_gap_ms']:.0f} ms | {fresh['max_gap_ms'] / 1000 / ref:.1f}x |")
    print(f"| stroke -> finished layer (median of {len(runs)}) | {t:.2f} s | {t / ref:.1f}x | {t / read:.1f}x "
          f"| {gap * 1000:.0f} ms (max) | {gap / ref:.1f}x |")
    for x in [fresh] + runs:
        tm = x["timings"]
        how = (f"in place, {tm.get('rows_written', 0)} of {size} rows written" if tm.get("in_place")
               else "new layer")
        print(f"  {'fresh' if x is fresh else 'stroke'}: {x['seconds']:.3f} s = read {tm.get('read', 0):.3f} (line art "
              f"{tm.get('read_lines', 0):.3f}) + worker {tm.get('worker', 0):.3f} "
              f"(engine {x['worker_seconds']}) + write {tm.get('write', 0):.3f} ({how}; line art "
              f"{'unchanged: not dumped' if tm.get('lines_unchanged') else 'dumped'}); longest GUI block "
              f"{x['max_gap_ms']:.0f} ms (longest read step {tm.get('read_longest_step', 0) * 1000:.0f} ms, "
              f"write step {tm.get('write_longest_step', 0) * 1000:.0f} ms, projection refresh "
              f"{tm.get('refresh', 0) * 1000:.0f} ms)", flush=True)
    print("  single GUI-thread calls: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in facts.get("probe", {}).items()))
    return facts


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.interactive")
    ap.add_argument("--sizes", nargs="+", default=["2048x2048", "4096x4096", "4096x3072"])
    ap.add_argument("--engines", nargs="+", default=["flats", "auto"],
                    help="flats, auto, a model id or file; ENGINE:COMPOSE (e.g. auto:raw) for another composition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-krita", action="store_true", help="skip the part in real Krita")
    ap.add_argument("--krita-size", type=int, default=4096)
    ap.add_argument("--krita-engine", default="auto")
    ap.add_argument("--strokes", type=int, default=3, help="strokes timed in Krita")
    ap.add_argument("--krita-only", action="store_true")
    ap.add_argument("--transfer", choices=("files", "inline"), default="files",
                    help="worker table: payloads as the plugin sends them (BGRA, files for the line art, big "
                         "hint crops and the result) or all inline in RGBA")
    a = ap.parse_args(argv)
    if not a.no_krita:
        # First, at normal priority: Krita inherits this process's niceness.
        krita_part(a.krita_size, a.krita_engine, a.strokes, a.reps)
        if a.krita_only:
            return
        print()
    w = Worker(a.transfer)
    # The worker lowers its own priority; measure the reference at the same priority, so a busy
    # machine slows both alike.
    from krita_alac.engine.process import WORKER_NICENESS
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass
    print(f"Worker, payloads {'as the plugin sends them (BGRA, files)' if a.transfer == 'files' else 'inline (RGBA)'}:")
    print("| page | engine | scipy label | fresh | fresh / label | re-run (1 stroke) | re-run / label |")
    print("|---|---|---|---|---|---|---|")
    cpu_lines = []
    try:
        for size in a.sizes:
            pw, ph = (int(v) for v in size.split("x"))
            lines, hints, ink = make_page(ph, pw)
            ref, ref_cpu = label_times(ink, a.reps)
            for eng in a.engines:
                fresh, rerun, cpu_f, cpu_r = [], [], [], []
                for rep in range(a.reps):
                    # A line art the worker has not seen: one more dot each time.
                    ln = lines.copy()
                    ln[rep, rep + 1, 3] = 255
                    digest = f"{size}-{eng}-{rep}-{os.getpid()}"
                    c0 = w.cpu()
                    t, r = w.colorize(ln, hints, digest, eng)
                    c1 = w.cpu()
                    fresh.append(t)
                    hh = hints.copy()
                    add_stroke(hh, np.random.default_rng(100 + rep))
                    t, r = w.colorize(ln, hh, digest, eng, send_lines=False)
                    c2 = w.cpu()
                    rerun.append(t)
                    if c0 is not None:
                        cpu_f.append(c1 - c0)
                        cpu_r.append(c2 - c1)
                f, rr = statistics.median(fresh), statistics.median(rerun)
                print(f"| {pw}x{ph} | {eng} ({r['engine']}) | {ref * 1000:.0f} ms | {f:.2f} s | {f / ref:.1f}x "
                      f"| {rr:.3f} s | {rr / ref:.1f}x |", flush=True)
                if cpu_f:
                    # CPU seconds hardly depend on how busy the machine is: a check on the wall ratios.
                    cf, cr = statistics.median(cpu_f), statistics.median(cpu_r)
                    cpu_lines.append(f"| {pw}x{ph} | {eng} | {ref_cpu * 1000:.0f} ms | {cf:.2f} s | "
                                     f"{cf / ref_cpu:.1f}x | {cr:.3f} s | {cr / ref_cpu:.1f}x |")
        if cpu_lines:
            print("\nCPU seconds (the worker's, all threads; the label pass's), same runs:")
            print("| page | engine | label CPU | fresh CPU | / label | re-run CPU | / label |")
            print("|---|---|---|---|---|---|---|")
            print("\n".join(cpu_lines), flush=True)
    finally:
        w.close()


if __name__ == "__main__":
    main()
