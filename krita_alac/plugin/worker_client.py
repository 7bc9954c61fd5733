"""The Krita side of the worker protocol (see krita_alac/worker.py).

One persistent `python -m krita_alac.engine.worker` per Krita session, driven
asynchronously with QProcess: requests are queued into QProcess's write
buffer, replies are parsed as they arrive (readyReadStandardOutput), so the
GUI thread never waits on the engine.  If the worker dies (crash, kill, out of
memory) the pending request fails with a message and the next request starts
a fresh worker.
"""
from __future__ import annotations

import json
import os
import shutil

from PyQt5.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, pyqtSignal

from . import env_setup, settings

PLUGIN_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds krita_alac/
STDERR_KEEP = 8000
JOB_OPS = ("colorize", "lines")   # requests answered with a result or an error


def candidate_pythons(configured: str = "") -> list:
    """Interpreters to try, best first: the user's choice, KRITA_ALAC_PYTHON,
    the venv the plugin set up, then python3/python on PATH."""
    out = []
    for p in (configured, os.environ.get("KRITA_ALAC_PYTHON", ""), env_setup.venv_python()):
        if p and os.path.isfile(p) and p not in out:
            out.append(p)
    for name in ("python3", "python"):
        p = shutil.which(name)
        if p and p not in out:
            out.append(p)
    return out


def worker_environment() -> QProcessEnvironment:
    """Krita's environment minus its own Python settings, plus our package."""
    env = env_setup.clean_environment()
    env.insert("PYTHONPATH", PLUGIN_PARENT)
    env.insert("PYTHONIOENCODING", "utf-8")
    return env


class WorkerClient(QObject):
    """Signals carry plain Python objects; one request runs at a time."""
    started = pyqtSignal(dict)            # the worker's "info" reply
    progress = pyqtSignal(int, float, str)  # request id, 0..1, text
    result = pyqtSignal(int, dict, bytes)  # request id, header, BGRA8 pixels
    failed = pyqtSignal(int, str, str)    # request id (-1: none), message, kind
    stateChanged = pyqtSignal(str)        # "stopped", "starting", "ready", "busy"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.proc = None
        self.state = "stopped"
        self.info = {}
        self.python = ""
        self._buf = bytearray()
        self._expect = None          # header waiting for its payload
        self._queue = []             # (header, payload) written once ready
        self._pending = None         # id of the request in flight
        self._next_id = 1
        self._candidates = []
        self._tried = []             # (python, why it failed)
        self._stderr = bytearray()
        self._stopping = False

    # -- lifetime ---------------------------------------------------------
    def start(self):
        if self.proc is not None:
            return
        cfg = settings.load().get("python", "")
        self._candidates = candidate_pythons(cfg)
        self._tried = []
        self._set_state("starting")
        self._launch_next()

    def _launch_next(self):
        if not self._candidates:
            tried = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in self._tried) or "no Python found"
            self._set_state("stopped")
            self._fail_all("no Python with the engine's packages (numpy, scipy, onnxruntime) was found "
                           f"({tried}). Use 'Set up engine…' in the docker.", "setup")
            return
        self.python = self._candidates.pop(0)
        p = QProcess(self)
        p.setProcessEnvironment(worker_environment())
        p.setProgram(self.python)
        p.setArguments(["-m", "krita_alac.engine.worker"])
        p.readyReadStandardOutput.connect(self._on_stdout)
        p.readyReadStandardError.connect(self._on_stderr)
        p.finished.connect(self._on_finished)
        p.errorOccurred.connect(self._on_error)
        self.proc = p
        self._buf.clear()
        self._expect = None
        self._stderr.clear()
        p.start()

    def stop(self, grace_ms: int = 1500):
        """Ask the worker to quit; kill it if it does not."""
        p = self.proc
        if p is None:
            return
        self._stopping = True
        if p.state() == QProcess.Running:
            p.write(b'{"op":"quit"}\n')
            QTimer.singleShot(grace_ms, lambda: p.state() != QProcess.NotRunning and p.kill())
        else:
            p.kill()

    def kill_now(self):
        """Immediate stop, for application quit (no event loop left to wait in)."""
        if self.proc is not None:
            self._stopping = True
            self.proc.kill()
            self.proc.waitForFinished(1000)  # quitting: nothing left to keep responsive

    def cancel(self):
        """Stop the run in flight.  The engine cannot be interrupted inside a
        computation, so the worker is killed; the next request starts a new one."""
        rid = self._pending
        if self.proc is None or rid is None:
            return False
        self._pending = None
        self._queue.clear()
        self._stopping = True
        self.proc.kill()
        self.failed.emit(rid, "cancelled", "cancelled")
        return True

    def pid(self):
        return int(self.proc.processId()) if self.proc is not None else 0

    # -- requests ---------------------------------------------------------
    def request(self, header: dict, payload: bytes = b"") -> int:
        rid = self._next_id
        self._next_id += 1
        header = dict(header, id=rid)
        self._queue.append((header, payload))
        if self.proc is None:
            self.start()
        else:
            self._flush()
        return rid

    def colorize(self, width: int, height: int, lines: bytes, hints, options: dict) -> int:
        hints = hints or b""
        header = dict(options, op="colorize", width=width, height=height, format="BGRA8",
                      lines=len(lines), hints=len(hints))
        return self.request(header, lines + hints if hints else lines)

    def lines(self, width: int, height: int, image: bytes, thickness: float = 1.0, transparent: bool = True) -> int:
        """Line art of a colored picture (XDoG); answered with a result like colorize."""
        header = dict(op="lines", width=width, height=height, format="BGRA8", image=len(image),
                      thickness=float(thickness), transparent=bool(transparent), method="xdog")
        return self.request(header, image)

    def _flush(self):
        if self.state != "ready" or self._pending is not None or not self._queue:
            return
        header, payload = self._queue.pop(0)
        if header.get("op") in JOB_OPS:
            self._pending = header["id"]
            self._set_state("busy")
        # QProcess buffers the write and feeds the pipe from the event loop.
        self.proc.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        if payload:
            self.proc.write(payload)

    # -- replies ----------------------------------------------------------
    def _on_stdout(self):
        self._buf += bytes(self.proc.readAllStandardOutput())
        while True:
            if self._expect is not None:
                n = int(self._expect.get("bytes", 0))
                if len(self._buf) < n:
                    return
                payload = bytes(self._buf[:n])
                del self._buf[:n]
                header, self._expect = self._expect, None
                self._dispatch(header, payload)
                continue
            nl = self._buf.find(b"\n")
            if nl < 0:
                return
            line = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            try:
                header = json.loads(line)
            except ValueError:
                self._stderr += b"[stdout] " + line[:200] + b"\n"
                continue
            if header.get("type") == "result" and int(header.get("bytes", 0)) > 0:
                self._expect = header
            else:
                self._dispatch(header, b"")

    def _dispatch(self, header: dict, payload: bytes):
        kind = header.get("type")
        rid = header.get("id")
        if kind == "ready":
            self.request({"op": "info"})
            self._set_state("ready")
            self._flush()
        elif kind == "info":
            self.info = header
            self.started.emit(header)
        elif kind == "progress":
            if rid == self._pending:
                self.progress.emit(rid, float(header.get("value", 0)), str(header.get("text", "")))
        elif kind in ("result", "error"):
            if rid is not None and rid != self._pending:
                return  # a reply to a cancelled request
            self._pending = None
            self._set_state("ready")
            if kind == "result":
                self.result.emit(rid, header, payload)
            else:
                self.failed.emit(rid if rid is not None else -1, str(header.get("message", "")),
                                 str(header.get("kind", "internal")))
            self._flush()

    def _on_stderr(self):
        self._stderr += bytes(self.proc.readAllStandardError())
        if len(self._stderr) > STDERR_KEEP:
            del self._stderr[:-STDERR_KEEP]

    def last_stderr_line(self) -> str:
        lines = [ln for ln in self._stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else ""

    def _on_error(self, error):
        if error == QProcess.FailedToStart:
            self._tried.append((self.python, "could not be started"))
            self._drop_process()
            self._launch_next()

    def _on_finished(self, code, status):
        if self.proc is None or self.sender() is not self.proc:
            return
        was_ready = self.state in ("ready", "busy")
        why = self.last_stderr_line()
        self._drop_process()
        if self._stopping:
            self._stopping = False
            self._set_state("stopped")
            if self._queue:  # a request arrived after a cancel: start afresh
                self.start()
            return
        if not was_ready:
            # This interpreter cannot run the worker (missing packages...): try the next.
            self._tried.append((self.python, why or f"exit code {code}"))
            self._launch_next()
            return
        self._set_state("stopped")
        if status == QProcess.CrashExit:
            msg = "the engine worker crashed or was killed (out of memory?)"
        else:
            msg = f"the engine worker stopped (exit code {code})"
        self._fail_all(msg + (f": {why}" if why else "") + ". The next run starts it again.", "crash")

    def _drop_process(self):
        p, self.proc = self.proc, None
        if p is not None:
            p.deleteLater()

    def _fail_all(self, message, kind):
        rid = self._pending
        if rid is None and self._queue:
            rid = next((h["id"] for h, _ in self._queue if h.get("op") in JOB_OPS), None)
        self._pending = None
        self._queue.clear()
        self.failed.emit(rid if rid is not None else -1, message, kind)

    def _set_state(self, state):
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)


_shared = None


def shared() -> WorkerClient:
    """The one worker client of this Krita session, killed when Krita quits."""
    global _shared
    if _shared is None:
        from PyQt5.QtWidgets import QApplication
        app = QApplication.instance()
        _shared = WorkerClient(app)
        app.aboutToQuit.connect(_shared.kill_now)
    return _shared
