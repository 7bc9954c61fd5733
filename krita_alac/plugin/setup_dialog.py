"""Engine setup dialog: choose the worker's Python, or create a private venv
and pip-install the engine's packages there (env_setup), with a live log."""
from __future__ import annotations

import os

from PyQt5.QtWidgets import (QButtonGroup, QComboBox, QDialog, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                             QPlainTextEdit, QProgressBar, QPushButton, QRadioButton, QVBoxLayout)

from . import env_setup, settings


class SetupDialog(QDialog):
    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client
        self.setup = None
        self.setWindowTitle("krita_alac engine setup")
        box = QVBoxLayout(self)
        info = client.info or {}
        now = (f"Worker: Python {info.get('python')} at {info.get('executable')}, "
               f"onnxruntime {info.get('onnxruntime') or 'missing'}") if info else "The worker has not started yet."
        box.addWidget(QLabel(now))
        box.addWidget(QLabel("Python for the engine worker (empty: detect):"))
        row = QHBoxLayout()
        self.python_edit = QLineEdit(settings.load().get("python", ""))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        use = QPushButton("Use")
        use.clicked.connect(self._use_python)
        for wdg in (self.python_edit, browse, use):
            row.addWidget(wdg)
        box.addLayout(row)
        box.addWidget(QLabel(f"Or create a private environment in\n{env_setup.venv_dir()}\nfrom:"))
        self.base_combo = QComboBox()
        self.base_combo.setEditable(True)
        self.base_combo.addItems(env_setup.base_pythons())
        box.addWidget(self.base_combo)
        flav = QHBoxLayout()
        self.cpu = QRadioButton("CPU (onnxruntime)")
        self.gpu = QRadioButton("NVIDIA GPU (onnxruntime-gpu)")
        group = QButtonGroup(self)
        for b in (self.cpu, self.gpu):
            group.addButton(b)
            flav.addWidget(b)
        (self.gpu if settings.load().get("flavour") == "gpu" else self.cpu).setChecked(True)
        box.addLayout(flav)
        self.bar = QProgressBar()
        self.bar.setRange(0, 4)
        box.addWidget(self.bar)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMinimumSize(520, 220)
        box.addWidget(self.log)
        buttons = QHBoxLayout()
        self.start_btn = QPushButton("Create environment")
        self.start_btn.clicked.connect(self._start)
        self.cancel_btn = QPushButton("Cancel setup")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(lambda: self.setup and self.setup.cancel())
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        for b in (self.start_btn, self.cancel_btn, close):
            buttons.addWidget(b)
        box.addLayout(buttons)

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Python interpreter")
        if path:
            self.python_edit.setText(path)

    def _use_python(self):
        path = self.python_edit.text().strip()
        if path and not os.path.isfile(path):
            self.log.appendPlainText(f"not a file: {path}")
            return
        settings.save({"python": path})
        self.client.stop()   # the next run starts the worker with this Python
        self.log.appendPlainText(f"worker Python set to {path or '(detect)'}")

    def _start(self):
        base = self.base_combo.currentText().strip()
        if not base:
            self.log.appendPlainText("no Python found on PATH: install Python 3.9 or newer first")
            return
        flavour = "gpu" if self.gpu.isChecked() else "cpu"
        settings.save({"flavour": flavour})
        self.setup = env_setup.EnvSetup(base, flavour=flavour, parent=self)
        self.setup.log.connect(self.log.appendPlainText)
        self.setup.step.connect(lambda i, n, what: self.bar.setValue(i))
        self.setup.finished.connect(self._done)
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.setup.start()

    def _done(self, ok, message):
        self.log.appendPlainText(message)
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if ok:
            self.bar.setValue(4)
            settings.save({"python": self.setup.python})
            self.python_edit.setText(self.setup.python)
            self.client.stop()
