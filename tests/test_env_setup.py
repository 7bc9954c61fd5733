"""Engine setup (env_setup.EnvSetup) driven by a Qt event loop, as in Krita:
the venv is really created; pip runs offline (--no-index), so the install step
fails and must be reported with its log, not crash.  Runs under Debian's
python3 (which has PyQt5, like Krita's embedded Python)."""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QT_PYTHON = "/usr/bin/python3"

DRIVER = r"""
import json, sys
from PyQt5.QtCore import QCoreApplication, QTimer
from krita_alac.plugin import env_setup
app = QCoreApplication([])
base, folder = sys.argv[1], sys.argv[2]
s = env_setup.EnvSetup(base, folder, flavour="gpu", pip_extra=["--no-index"])
out = {"log": [], "steps": [], "packages": env_setup.packages("gpu"), "python": s.python}
s.log.connect(out["log"].append)
s.step.connect(lambda i, n, what: out["steps"].append([i, n, what]))
s.finished.connect(lambda ok, msg: (out.update(ok=ok, message=msg), app.quit()))
QTimer.singleShot(0, s.start)
QTimer.singleShot(240000, app.quit)
app.exec_()
print(json.dumps(out))
"""


def test_setup_creates_venv_and_reports_pip_failure(tmp_path):
    if not os.path.isfile(QT_PYTHON) or subprocess.run([QT_PYTHON, "-c", "import PyQt5"]).returncode:
        pytest.fail(f"{QT_PYTHON} with PyQt5 (python3-pyqt5) is needed, as Krita's Python has it")
    base = shutil.which("python3", path="/usr/bin") or QT_PYTHON
    folder = str(tmp_path / "venv")
    env = dict(os.environ, PYTHONPATH=ROOT, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run([QT_PYTHON, "-c", DRIVER, base, folder], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["packages"] == ["numpy", "scipy", "pillow", "onnx", "onnxruntime-gpu"]
    assert out["steps"][0][2] == "creating the environment"
    if not os.path.isfile(out["python"]):
        # Debian without python3-venv: the failure must be reported as a message.
        assert out["ok"] is False and out["message"].startswith("creating the environment failed")
        return
    assert os.path.isfile(os.path.join(folder, "pyvenv.cfg"))
    assert out["ok"] is False
    # onnxruntime-gpu cannot come from no index: the install step fails, with its log.
    assert out["message"].startswith("installing numpy scipy pillow onnx onnxruntime-gpu failed (exit code")
    assert any(line.startswith("$ ") and "-m pip install" in line for line in out["log"])
    assert [s[0] for s in out["steps"]] == list(range(len(out["steps"])))
