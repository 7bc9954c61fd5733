"""Engine setup: a private venv for the worker in Krita's user data folder.

Krita's own Python never gets packages installed into it: the venv is made
from a Python the user already has, and the engine's dependencies are
pip-installed there, step by step through QProcess so Krita stays responsive.
"""
from __future__ import annotations

import os
import shutil
import sys

from PyQt5.QtCore import QObject, QProcess, QProcessEnvironment, QStandardPaths, pyqtSignal

BASE_PACKAGES = ["numpy", "scipy", "pillow", "onnx"]
RUNTIME = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu"}
CHECK = "import numpy, scipy, onnxruntime, sys; print('engine packages OK on Python', sys.version.split()[0])"


def venv_dir() -> str:
    env = os.environ.get("KRITA_ALAC_VENV")
    if env:
        return env
    base = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or os.path.expanduser("~/.krita_alac")
    return os.path.join(base, "krita_alac", "venv")


def venv_python(folder: str | None = None) -> str:
    folder = folder or venv_dir()
    if sys.platform == "win32":
        return os.path.join(folder, "Scripts", "python.exe")
    return os.path.join(folder, "bin", "python")


def base_pythons() -> list:
    """Pythons on PATH that could create the venv (Krita's own is fine to *create*
    a venv from: nothing is installed into it)."""
    out = []
    for name in ("python3", "python", "py"):
        p = shutil.which(name)
        if p and p not in out:
            out.append(p)
    return out


def packages(flavour: str = "cpu") -> list:
    return BASE_PACKAGES + [RUNTIME.get(flavour, RUNTIME["cpu"])]


def clean_environment() -> QProcessEnvironment:
    env = QProcessEnvironment.systemEnvironment()
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.remove(key)
    return env


class EnvSetup(QObject):
    """Runs the setup steps one after another; emits a log line for every line
    a step prints, and finished(ok, message) at the end."""
    log = pyqtSignal(str)
    step = pyqtSignal(int, int, str)     # index, count, what
    finished = pyqtSignal(bool, str)

    def __init__(self, base_python: str, folder: str | None = None, flavour: str = "cpu",
                 pip_extra=(), parent=None):
        super().__init__(parent)
        self.folder = folder or venv_dir()
        self.python = venv_python(self.folder)
        py = self.python
        self.steps = [
            ("creating the environment", base_python, ["-m", "venv", self.folder]),
            ("updating pip", py, ["-m", "pip", "install", "--upgrade", "pip", *pip_extra]),
            ("installing " + " ".join(packages(flavour)), py,
             ["-m", "pip", "install", "--upgrade", *pip_extra, *packages(flavour)]),
            ("checking", py, ["-c", CHECK]),
        ]
        self.proc = None
        self.index = -1
        self.running = False

    def start(self):
        if self.running:
            return
        os.makedirs(os.path.dirname(self.folder), exist_ok=True)
        self.running = True
        self.index = -1
        self._next()

    def cancel(self):
        if self.proc is not None:
            self.running = False
            self.proc.kill()
            self.log.emit("cancelled")
            self.finished.emit(False, "setup cancelled")

    def _next(self):
        self.index += 1
        if self.index >= len(self.steps):
            self.running = False
            self.finished.emit(True, f"engine ready: {self.python}")
            return
        what, program, args = self.steps[self.index]
        self.step.emit(self.index, len(self.steps), what)
        self.log.emit(f"$ {program} {' '.join(args)}")
        p = QProcess(self)
        p.setProcessEnvironment(clean_environment())
        p.setProcessChannelMode(QProcess.MergedChannels)
        p.readyReadStandardOutput.connect(self._on_output)
        p.finished.connect(self._on_finished)
        p.errorOccurred.connect(self._on_error)
        self.proc = p
        p.start(program, args)

    def _on_output(self):
        text = bytes(self.proc.readAllStandardOutput()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self.log.emit(line.rstrip())

    def _on_error(self, error):
        if error == QProcess.FailedToStart and self.running:
            self.running = False
            what, program, _ = self.steps[self.index]
            self.proc = None
            self.finished.emit(False, f"{what}: could not start {program}")

    def _on_finished(self, code, status):
        if not self.running:
            return
        self._on_output()
        self.proc = None
        what = self.steps[self.index][0]
        if status != QProcess.NormalExit or code != 0:
            self.running = False
            self.finished.emit(False, f"{what} failed (exit code {code}); see the log")
            return
        self._next()
