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
