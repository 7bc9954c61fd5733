"""How the worker process shares the machine with the artist (plain Python, no numpy:
it runs before numpy or ONNX Runtime are imported, so their thread pools see it)."""
from __future__ import annotations

import os

THREADS_ENV = "KRITA_ALAC_THREADS"
_POOL_ENVS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
WORKER_NICENESS = 5


def worker_threads() -> int:
    """cores - 1, at least 1: one core stays with Krita's GUI while the worker runs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def configure_worker():
    """Lower the worker's priority and size its thread pools (ONNX Runtime reads
    KRITA_ALAC_THREADS in runtime.py; numpy's BLAS the usual variables)."""
    n = worker_threads()
    os.environ.setdefault(THREADS_ENV, str(n))
    for k in _POOL_ENVS:
        os.environ.setdefault(k, str(n))
    try:
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):      # not on this platform, or not allowed: run as is
        pass
    return n


def configured_threads() -> int | None:
    v = os.environ.get(THREADS_ENV)
    try:
        return max(1, int(v)) if v else None
    except ValueError:
        return None
