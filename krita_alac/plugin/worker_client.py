"""The Krita side of the worker protocol (see krita_alac/engine/worker.py).

One persistent `python -m krita_alac.engine.worker` per Krita session, driven
asynchronously with QProcess, so the GUI thread never waits on the engine.

The client is an explicit state machine.  Its promise: every job request
(`colorize`, `lines`) is answered exactly once, by `result(id, ...)` or by
`failed(id, message, kind)`, whatever happens to the worker.  `kind` is the
worker's ("user", "internal", "memory") or the client's: "cancelled",
"timeout" (a caller's timeout, given to cancel()), "crash" (the worker died
while running it), "stopped" (stop() or Krita quitting while it ran),
"setup" (no Python can run the worker).

  state      what is true                                   events -> next state
  STOPPED    no process                                     request -> STARTING
  STARTING   a process runs, no "ready" yet                 ready -> READY (then BUSY if queued)
                                                            exit, failed to start, start timeout ->
                                                              STARTING (next Python) | STOPPED (none
                                                              left: every queued job fails "setup")
                                                            stop -> STOPPING
  READY      ready, nothing written                         request -> BUSY; exit -> STOPPED
                                                            stop -> STOPPING
  BUSY       one request written, its answer awaited        result/error -> READY (-> BUSY if queued)
                                                            need_lines -> BUSY (same request, with lines)
                                                            cancel(it) -> STOPPING (answered "cancelled")
                                                            stop -> STOPPING (answered "stopped")
                                                            exit/crash -> STOPPED (answered "crash")
  STOPPING   quit sent or killed, exit awaited              exit -> STOPPED
  any state                                                 cancel(queued id) -> same state
                                                              (that job answered "cancelled")
  After reaching STOPPED with jobs still queued, the client starts a new
  worker for them (a cancel or crash ends one job, never the queue).

Large pixel payloads travel through files in a private temporary folder (the
job names them); the client deletes a job's files once it is answered.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from PyQt5.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, pyqtSignal

from . import env_setup, settings

PLUGIN_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds krita_alac/
STDERR_KEEP = 8000
JOB_OPS = ("colorize", "lines")   # requests answered with a result or an error
START_TIMEOUT_MS = 180_000        # a worker that never says "ready" is given up on
STOP_GRACE_MS = 1500

STOPPED, STARTING, READY, BUSY, STOPPING = "stopped", "starting", "ready", "busy", "stopping"


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


class _Request:
    """One request: the header and inline payloads to write, the files it owns."""
    __slots__ = ("rid", "header", "payloads", "files", "full_header", "full_payloads", "answered")

    def __init__(self, rid, header, payloads=(), files=(), full=None):
        self.rid = rid
        self.header = header
        self.payloads = list(payloads)
        self.files = [f for f in files if f]
        # The same request with the line art attached, for a worker that answers "need_lines".
        self.full_header, self.full_payloads = full if full is not None else (None, None)
        self.answered = False

    @property
    def is_job(self):
        return self.header.get("op") in JOB_OPS


class _Incoming:
    """A reply header whose inline payload is still arriving."""
    __slots__ = ("header", "buf", "got")

    def __init__(self, header, n):
        self.header, self.buf, self.got = header, bytearray(n), 0


class WorkerClient(QObject):
    """Signals carry plain Python objects; one request runs at a time."""
    started = pyqtSignal(dict)              # the worker's "info" reply
    progress = pyqtSignal(int, float, str)  # request id, 0..1, text
    result = pyqtSignal(int, dict, object)  # request id, header, pixels (bytes-like; b"" when in header["file"])
    failed = pyqtSignal(int, str, str)      # request id, message, kind
    stateChanged = pyqtSignal(str)          # one of the states above

    def __init__(self, parent=None, start_timeout_ms: int = START_TIMEOUT_MS):
        super().__init__(parent)
        self.proc = None
        self.state = STOPPED
        self.info = {}
        self.python = ""
        self.start_timeout_ms = int(start_timeout_ms)
        self._buf = bytearray()
        self._incoming = None        # _Incoming
        self._queue = []             # _Request, not yet written
        self._inflight = None        # the _Request written to the worker
        self._next_id = 1
        self._candidates = []
        self._tried = []             # (python, why it failed)
        self._stderr = bytearray()
        self._lines_digest = None    # line art the current worker holds (by the digest we sent)
        self._tmpdir = None
        self._start_timer = QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.timeout.connect(self._on_start_timeout)

    # -- state ----------------------------------------------------------------
    def _set_state(self, state):
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

    def pending(self) -> list:
        """Ids of the jobs not answered yet (the one in flight first)."""
        reqs = ([self._inflight] if self._inflight is not None else []) + self._queue
        return [r.rid for r in reqs if r.is_job]

    def pid(self):
        return int(self.proc.processId()) if self.proc is not None else 0

    def temp_path(self, name: str) -> str:
        """A path in this client's private temporary folder (payload files)."""
        if self._tmpdir is None or not os.path.isdir(self._tmpdir):
            self._tmpdir = tempfile.mkdtemp(prefix="krita_alac-")
        return os.path.join(self._tmpdir, name)

    # -- answering: the one place a job ends -------------------------------
    def _answer(self, req, header=None, payload=b"", message="", kind=""):
        if req is None or req.answered:
            return
        req.answered = True
        try:
            if req.is_job:
                if header is not None:
                    self.result.emit(req.rid, header, payload)
                else:
                    self.failed.emit(req.rid, message, kind)
        finally:
            for path in req.files + [f"{p}.part" for p in req.files]:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _fail_queue(self, message, kind):
        queue, self._queue = self._queue, []
        for req in queue:
            self._answer(req, message=message, kind=kind)

    # -- lifetime ---------------------------------------------------------
    def start(self):
        if self.proc is not None:
            return
        cfg = settings.load().get("python", "")
        self._candidates = candidate_pythons(cfg)
        self._tried = []
        self._set_state(STARTING)
        self._launch_next()

    def _launch_next(self):
        if not self._candidates:
            tried = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in self._tried) or "no Python found"
            self._set_state(STOPPED)
            self._fail_queue("no Python with the engine's packages (numpy, scipy, onnxruntime) was found "
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
        self._incoming = None
        self._stderr.clear()
        self._lines_digest = None
        self._start_timer.start(self.start_timeout_ms)
        p.start()

    def _on_start_timeout(self):
        if self.state == STARTING and self.proc is not None:
            self._stderr += f"no answer {self.start_timeout_ms / 1000:g} s after start\n".encode()
            self.proc.kill()      # -> _on_finished: the next Python is tried

    def stop(self, grace_ms: int = STOP_GRACE_MS):
        """Stop the worker (e.g. to use another Python).  The job in flight is
        answered "stopped"; queued jobs run on a new worker afterwards."""
        p = self.proc
        if p is None or self.state == STOPPING:
            return
        self._start_timer.stop()
        req, self._inflight = self._inflight, None
        self._set_state(STOPPING)
        if p.state() == QProcess.Running and req is None:
            p.write(b'{"op":"quit"}\n')
            QTimer.singleShot(grace_ms, lambda: self.proc is p and p.state() != QProcess.NotRunning and p.kill())
        else:
            p.kill()
        self._answer(req, message="the engine worker was stopped (its settings changed): run again", kind="stopped")

    def kill_now(self):
        """Immediate stop, for application quit (no event loop left to wait in)."""
        req, self._inflight = self._inflight, None
        self._answer(req, message="Krita is quitting", kind="stopped")
        self._fail_queue("Krita is quitting", "stopped")
        if self.proc is not None:
            self._set_state(STOPPING)
            self.proc.kill()
            self.proc.waitForFinished(1000)  # quitting: nothing left to keep responsive
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def cancel(self, rid=None, message: str = "cancelled", kind: str = "cancelled") -> bool:
        """End job `rid` (None: every job) now, answered with `kind`.  A queued job
        is dropped; the one in flight cannot be interrupted inside the engine, so
        the worker is killed and the next job starts a new one."""
        hit = False
        keep = []
        for req in self._queue:
            if req.is_job and (rid is None or req.rid == rid):
                hit = True
                self._answer(req, message=message, kind=kind)
            else:
                keep.append(req)
        self._queue = keep
        req = self._inflight
        if req is not None and req.is_job and (rid is None or req.rid == rid):
            hit = True
            self._inflight = None
            self._set_state(STOPPING)
            self.proc.kill()
            self._answer(req, message=message, kind=kind)
        return hit

    # -- requests ---------------------------------------------------------
    def request(self, header: dict, payloads=(), files=(), full=None) -> int:
        rid = self._next_id
        self._next_id += 1
        header = dict(header, id=rid)
        if full is not None:
            full = (dict(full[0], id=rid), full[1])
        self._queue.append(_Request(rid, header, payloads, files, full))
        if self.proc is None:
            self.start()
        else:
            self._flush()
        return rid

    def colorize(self, width: int, height: int, lines, hints, options: dict, *, lines_file=None,
                 lines_digest=None, hints_rect=None, hints_file=None, result_file=None, keep=()) -> int:
        """Line art inline (`lines` bytes) or in `lines_file`; hints inline, in
        `hints_file`, or None, covering `hints_rect` (x, y, w, h) or the canvas;
        the result inline, or in `result_file`.  With `lines_digest`, line art
        the worker already holds is not sent again.  The payload files are
        deleted once answered, except those in `keep` (the caller's)."""
        header = dict(options, op="colorize", width=width, height=height, format="BGRA8",
                      lines=len(lines) if lines else 0, hints=len(hints) if hints else 0)
        payloads = [p for p in (lines, hints) if p]
        for key, val in (("lines_file", lines_file), ("lines_digest", lines_digest), ("hints_file", hints_file),
                         ("result_file", result_file)):
            if val:
                header[key] = val
        if hints_rect is not None:
            header["hints_rect"] = [int(v) for v in hints_rect]
        files = [f for f in (lines_file, hints_file, result_file) if f not in keep]
        if not lines_digest:
            return self.request(header, payloads, files)
        lean = dict(header, lines=0)
        lean.pop("lines_file", None)
        lean_payloads = [hints] if hints else []
        return self.request(lean, lean_payloads, files, full=(header, payloads))

    def lines(self, width: int, height: int, image, thickness: float = 1.0, transparent: bool = True, *,
              image_file=None, result_file=None, method: str = "xdog", model=None) -> int:
        """Line art of a colored picture (XDoG, or "neural": the line generator of `model`,
        None for the engine's default); answered with a result like colorize."""
        header = dict(op="lines", width=width, height=height, format="BGRA8", image=len(image) if image else 0,
                      thickness=float(thickness), transparent=bool(transparent), method=method)
        if model:
            header["model"] = model
        for key, val in (("image_file", image_file), ("result_file", result_file)):
            if val:
                header[key] = val
        return self.request(header, [image] if image else [], [image_file, result_file])

    def _flush(self):
        while self.state == READY and self._inflight is None and self._queue:
            req = self._queue.pop(0)
            header, payloads = req.header, req.payloads
            if req.full_header is not None and req.full_header.get("lines_digest") != self._lines_digest:
                header, payloads = req.full_header, req.full_payloads
            if req.is_job:
                self._inflight = req
                self._set_state(BUSY)
            self._write(header, payloads)

    def _write(self, header, payloads):
        if header.get("lines") or header.get("lines_file"):
            self._lines_digest = header.get("lines_digest")
        # QProcess buffers the write and feeds the pipe from the event loop.
        self.proc.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        for p in payloads:
            self.proc.write(bytes(p))

    # -- replies ----------------------------------------------------------
    def _on_stdout(self):
        p = self.proc
        if p is None or self.sender() is not p:
            return
        self._buf += bytes(p.readAllStandardOutput())
        while self._buf and self.proc is p:
            inc = self._incoming
            if inc is not None:
                n = min(len(self._buf), len(inc.buf) - inc.got)
                with memoryview(self._buf) as mv:
                    inc.buf[inc.got:inc.got + n] = mv[:n]
                del self._buf[:n]
                inc.got += n
                if inc.got < len(inc.buf):
                    return
                self._incoming = None
                self._dispatch(inc.header, inc.buf)
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
            if not isinstance(header, dict):
                continue
            n = header.get("bytes", 0)
            if header.get("type") == "result" and isinstance(n, int):
                # Inline layers follow the result's own pixels: one buffer, the job splits it.
                n += sum(d.get("bytes") or 0 for d in header.get("layers") or () if isinstance(d, dict)
                         and isinstance(d.get("bytes"), int))
            if header.get("type") == "result" and isinstance(n, int) and n > 0:
                self._incoming = _Incoming(header, n)
            else:
                self._dispatch(header, b"")

    def _dispatch(self, header: dict, payload):
        kind = header.get("type")
        rid = header.get("id")
        req = self._inflight
        if kind == "ready":
            if self.state != STARTING:
                return
            self._start_timer.stop()
            self._queue.insert(0, _Request(0, {"op": "info", "id": 0}))
            self._set_state(READY)
            self._flush()
        elif kind in ("info", "pong"):
            if kind == "info":
                self.info = header
                self.started.emit(header)
            if req is None and self.state == READY:
                self._flush()
        elif kind == "progress":
            if req is not None and rid == req.rid:
                self.progress.emit(rid, float(header.get("value", 0)), str(header.get("text", "")))
        elif kind == "need_lines":
            if req is None or rid != req.rid or req.full_header is None or self.state != BUSY:
                return
            # The worker restarted or holds other line art: the same request, with the lines.
            self._write(req.full_header, req.full_payloads)
        elif kind in ("result", "error"):
            if req is None or rid != req.rid:
                if kind == "error" and rid is None:
                    self._stderr += ("[worker] " + str(header.get("message", ""))[:200] + "\n").encode()
                return  # a reply to a cancelled request
            self._inflight = None
            self._set_state(READY)
            if kind == "result":
                self._answer(req, header=header, payload=payload)
            else:
                self._answer(req, message=str(header.get("message", "")), kind=str(header.get("kind", "internal")))
            self._flush()

    def _on_stderr(self):
        p = self.proc
        if p is None or self.sender() is not p:
            return
        self._stderr += bytes(p.readAllStandardError())
        if len(self._stderr) > STDERR_KEEP:
            del self._stderr[:-STDERR_KEEP]

    def last_stderr_line(self) -> str:
        lines = [ln for ln in self._stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else ""

    def _on_error(self, error):
        if self.sender() is not self.proc or self.proc is None:
            return
        if error == QProcess.FailedToStart:
            self._start_timer.stop()
            self._tried.append((self.python, "could not be started"))
            self._drop_process()
            if self.state == STARTING:
                self._launch_next()
            else:
                self._after_stop()

    def _on_finished(self, code, status):
        if self.proc is None or self.sender() is not self.proc:
            return
        self._start_timer.stop()
        state = self.state
        why = self.last_stderr_line()
        self._drop_process()
        if state == STARTING:
            # This interpreter cannot run the worker (missing packages...): try the next.
            self._tried.append((self.python, why or f"exit code {code}"))
            self._launch_next()
            return
        req, self._inflight = self._inflight, None
        if state != STOPPING:
            if status == QProcess.CrashExit:
                msg = "the engine worker crashed or was killed (out of memory?)"
            else:
                msg = f"the engine worker stopped (exit code {code})"
            self._answer(req, message=msg + (f": {why}" if why else "") + ". The next run starts it again.",
                         kind="crash")
        else:
            self._answer(req, message="cancelled", kind="cancelled")   # (already answered when stopped on purpose)
        self._after_stop()

    def _after_stop(self):
        self._set_state(STOPPED)
        if any(r.is_job for r in self._queue):
            self.start()     # jobs that were waiting get a fresh worker
        else:
            self._queue.clear()

    def _drop_process(self):
        p, self.proc = self.proc, None
        self._lines_digest = None
        self._incoming = None
        self._buf.clear()
        if p is not None:
            p.deleteLater()


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
