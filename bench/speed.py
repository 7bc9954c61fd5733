"""AlacGAN speed on this machine, measured side by side in one run.

    python -m bench.speed [--sizes 512 1024] [--reps 3]

For each size: ONNX Runtime fp32 (fresh: sketch + hints), PyTorch eager with
the original module structure (how the reference code runs), and ONNX Runtime
re-colorizing the same line art with new hints (cached sketch features), and
ONNX Runtime on the same weights stored as int8 (onnx_export.quantize_weights), and
with int8 activations as well (quantize_activations: how alac-open ships, the CPU's
int8 x int8 convolutions), fresh and re-run.
Runs are interleaved and the median is reported, since the machine is shared.
Also the peak RSS of a separate process doing one 512x512 ONNX Runtime run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


GFLOP_512 = 139.0  # multiply-adds x2 of the full 512x512 graph


def build_model(folder):
    import torch
    from krita_alac.convert.alacgan import AlacGAN, LocalFeatures, NetG
    from krita_alac.convert.onnx_export import export_onnx
    torch.manual_seed(0)
    model = AlacGAN(NetG(), LocalFeatures()).eval()
    path = os.path.join(folder, "bench.onnx")
    export_onnx(model, path, check=False)
    int8 = os.path.join(folder, "bench.int8.onnx")
    export_onnx(model, int8, check=False, int8=True)
    from krita_alac.convert.onnx_export import random_inputs
    q8 = os.path.join(folder, "bench.q8.onnx")
    # Speed does not depend on what the ranges were calibrated on.
    feeds = [dict(zip(("sketch", "hint"), random_inputs(256, 256, seed=s))) for s in range(4)]
    export_onnx(model, q8, check=False, int8=True, calibration=feeds)
    return model, path, int8, q8


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_size(model, path, int8, q8, size, reps):
    import torch
    from krita_alac.convert.onnx_export import random_inputs
    from krita_alac.engine.runtime import OnnxColorizer
    ort = OnnxColorizer(path, device="cpu")
    ort8 = OnnxColorizer(int8, device="cpu")
    ortq = OnnxColorizer(q8, device="cpu")
    sketch, hint = random_inputs(size, size, seed=1)
    _, hint2 = random_inputs(size, size, seed=2)
    ts, th = torch.from_numpy(sketch), torch.from_numpy(hint)
    cache = ort.encode(sketch)
    cache_q = ortq.encode(sketch)

    def eager():
        with torch.no_grad():
            model(ts, th)

    runs = {"onnxruntime fresh": lambda: ort.run(sketch, hint),
            "torch eager": eager,
            "onnxruntime cached re-run": lambda: ort.decode(cache, hint2),
            "onnxruntime int8 weights": lambda: ort8.run(sketch, hint),
            "onnxruntime int8 activations": lambda: ortq.run(sketch, hint),
            "int8 activations re-run": lambda: ortq.decode(cache_q, hint2)}
    for fn in runs.values():  # warm-up: first runs allocate and pick kernels
        fn()
        fn()
    times = {k: [] for k in runs}
    for _ in range(reps):
        for k, fn in runs.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
PEAK_CODE = """
import sys
from krita_alac.engine.runtime import OnnxColorizer
from krita_alac.convert.onnx_export import random_inputs
c = OnnxColorizer(sys.argv[1], device="cpu")
s, h = random_inputs(512, 512, seed=1)
c.run(s, h)
print([int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024)
"""


def peak_rss_mb(path):
    r = subprocess.run([sys.executable, "-c", PEAK_CODE, path], capture_output=True, text=True, check=True)
    return float(r.stdout.split()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    import torch
    print(f"torch {torch.__version__} threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        model, path, int8, q8 = build_model(tmp)
        rows = []
        for size in args.sizes:
            t = bench_size(model, path, int8, q8, size, args.reps)
            gflop = GFLOP_512 * (size / 512) ** 2
            rows.append((size, t, gflop))
        print()
        print("| size | ONNX Runtime fp32 | PyTorch eager | ORT / eager | cached re-run | re-run / fresh "
              "| int8 weights | int8 / fp32 | int8 activations | / fp32 | its re-run | / fp32 re-run | ORT GFLOP/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for size, t, gflop in rows:
            f, e, c = t["onnxruntime fresh"], t["torch eager"], t["onnxruntime cached re-run"]
            q = t["onnxruntime int8 weights"]
            a, ac = t["onnxruntime int8 activations"], t["int8 activations re-run"]
            print(f"| {size}² | {f:.2f} s | {e:.2f} s | {f / e:.2f}× | {c:.2f} s | {c / f:.2f}× | {q:.2f} s "
                  f"| {q / f:.2f}× | {a:.2f} s | {a / f:.2f}× | {ac:.2f} s | {ac / c:.2f}× | {gflop / f:.0f} |")
        print(f"\npeak RSS of one 512² ONNX Runtime run (separate process): {peak_rss_mb(path):.0f} MB")


if __name__ == "__main__":
    main()
