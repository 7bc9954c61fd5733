"""Environment for starting Krita from tests: private config/data/cache dirs,
a private krita_alac home, and this test Python as the engine worker."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE_DIR = os.path.join(ROOT, "tests", "krita")


def krita_env(tmp, **extra):
    env = dict(os.environ)
    for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[k] = os.path.join(tmp, k.lower())
        os.makedirs(env[k], exist_ok=True)
    env.update(KRITA_ALAC_HOME=os.path.join(tmp, "alac_home"), KRITA_ALAC_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([SUITE_DIR, ROOT]))
    env.update(extra)
    env.pop("PYTHONHOME", None)
    # Importing cv2 (opencv-python, pulled in by hintauc for the quality tests) points Qt at
    # its own plugins through these variables; Krita's Qt must use its own.
    for k in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR", "QT_PLUGIN_PATH"):
        env.pop(k, None)
    # Krita's embedded Python finds its prefix through PATH: an active venv
    # (this one) would hide Debian's dist-packages, PyQt5 included.
    venv = os.path.abspath(env.pop("VIRTUAL_ENV", None) or sys.prefix)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not os.path.abspath(p).startswith(venv))
    return env


def run_suite(module: str, tmp: str, scenarios, timeout: int = 600, **env) -> dict:
    """Run `scenarios` of tests/krita/`module`.py in kritarunner (offscreen, private dirs under
    `tmp`) and return its results.json, with the tail of Krita's output as "_log"."""
    import json
    import shutil
    import subprocess
    import pytest
    runner = shutil.which("kritarunner")
    if runner is None:
        pytest.fail("kritarunner not found: these tests need Krita installed")
    out = os.path.join(tmp, "out")
    os.makedirs(out, exist_ok=True)
    cfg_path = os.path.join(tmp, "suite.json")
    with open(cfg_path, "w") as f:
        json.dump({"scenarios": list(scenarios), "out": out}, f)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    r = subprocess.run([runner, "-s", module, "-f", "run"], env=krita_env(tmp, KRITA_ALAC_SUITE=cfg_path, **env),
                       capture_output=True, text=True, timeout=timeout)
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        pytest.fail(f"Krita wrote no results (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    with open(path) as f:
        results = json.load(f)
    results["_log"] = (r.stdout + r.stderr)[-3000:]
    return results


def scenario(results: dict, name: str) -> dict:
    """One scenario's facts; fails the test with Krita's log or the scenario's traceback."""
    f = results.get(name)
    assert f is not None, f"scenario {name} did not run:\n{results['_log']}"
    assert "error" not in f, f["error"]
    return f
