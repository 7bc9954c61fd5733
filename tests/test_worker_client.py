"""The worker client's state machine under a QCoreApplication with a real worker
process (tests/worker_client_driver.py, run by Debian's python3 with PyQt5 and
no numpy, like Krita's Python).  The promise checked everywhere: every job is
answered exactly once, and nothing is left pending, whatever happens —
kill -9 in each state (starting, ready, busy, stopping), stop, cancel, a
timeout, a Python that hangs, no Python at all."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QT_PYTHON = "/usr/bin/python3"
SCENARIOS = ["two_jobs", "kill_starting", "kill_ready", "kill_busy", "kill_stopping", "stop_starting", "cancel",
             "need_lines",
             "cropped_hints", "start_timeout", "no_python"]
RED, BLUE, GREEN = [20, 10, 250, 255], [250, 20, 10, 255], [20, 250, 10, 255]   # BGRA


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    if not os.path.isfile(QT_PYTHON) or subprocess.run([QT_PYTHON, "-c", "import PyQt5"]).returncode:
        pytest.fail(f"{QT_PYTHON} with PyQt5 (python3-pyqt5) is needed, as Krita's Python has it")
    if subprocess.run([QT_PYTHON, "-c", "import numpy"], capture_output=True).returncode == 0:
        pytest.fail(f"{QT_PYTHON} must lack numpy here: it plays the Python that cannot run the worker")
    tmp = tmp_path_factory.mktemp("client")
    bindir = tmp / "bin"
    bindir.mkdir()
    # The second Python found on PATH is this test's (after KRITA_ALAC_PYTHON).
    py3 = bindir / "python3"
    py3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    hang = tmp / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    for f in (py3, hang):
        f.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=ROOT, KRITA_ALAC_PYTHON=sys.executable, KRITA_ALAC_HOME=str(tmp / "home"),
               PATH=f"{bindir}:/usr/bin:/bin", DRIVER_HANGING_PYTHON=str(hang), DRIVER_BARE_PYTHON=QT_PYTHON,
               TMPDIR=str(tmp))
    env.pop("KRITA_ALAC_WORKER_PAUSE", None)
    r = subprocess.run([QT_PYTHON, os.path.join(ROOT, "tests", "worker_client_driver.py"), *SCENARIOS],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["_tmp"] = str(tmp)
    return out


def scenario(facts, name):
    f = facts[name]
    assert "error" not in f, f["error"]
    # The promise: each job answered exactly once, nothing left waiting.
    assert f["answer_counts"] and set(f["answer_counts"].values()) == {1}, f["answer_counts"]
    assert f["pending_left"] == []
    assert f["states"][-1] == "stopped"
    return f


def result(answer, left=RED):
    assert len(answer) == 1 and answer[0][0] == "result", answer
    assert answer[0][1]["left"] == left and answer[0][1]["right"] == BLUE
    return True


def failed(answer, kind):
    assert len(answer) == 1 and answer[0][:2] == ["failed", kind], answer
    return answer[0][2]


def test_two_queued_jobs(facts):
    f = scenario(facts, "two_jobs")
    assert result(f["a"]) and result(f["b"], GREEN)
    assert f["progress_a"][0] == "starting" and f["progress_a"][-1] == "done"
    assert f["states"] == ["starting", "ready", "busy", "ready", "busy", "ready", "stopping", "stopped"]


def test_kill_while_starting_tries_the_next_python(facts):
    f = scenario(facts, "kill_starting")
    assert f["state_at_kill"] == "starting" and f["killed"]
    assert result(f["a"])


def test_kill_while_ready_restarts_on_the_next_job(facts):
    f = scenario(facts, "kill_ready")
    assert f["state_at_kill"] == "ready" and f["after_kill"] == "stopped"
    assert f["a"] == "result" and result(f["b"])


def test_kill_while_busy_fails_that_job_only(facts):
    f = scenario(facts, "kill_busy")
    assert f["state_at_kill"] == "busy"
    assert "crashed or was killed" in failed(f["a"], "crash")
    assert result(f["b"]) and result(f["c"])


def test_stop_and_kill_while_stopping(facts):
    f = scenario(facts, "kill_stopping")
    assert f["state_at_kill"] == "stopping" and f["state_at_kill2"] == "stopping"
    assert failed(f["a"], "stopped").startswith("the engine worker was stopped")
    assert result(f["b"])                # asked for while stopping: runs on the new worker
    assert f["after"] == "stopped" and f["new_pid"]


def test_stop_while_starting_keeps_the_job_for_the_next_worker(facts):
    f = scenario(facts, "stop_starting")
    assert f["state_at_stop"] == "starting" and f["after_stop"] == "stopping"
    assert result(f["a"])
    assert f["states"][:4] == ["starting", "stopping", "stopped", "starting"]


def test_cancel_starting_queued_running_and_timeout(facts):
    f = scenario(facts, "cancel")
    assert f["starting"] == "starting" and f["after_start"] == "ready"
    assert failed(f["a"], "cancelled") == "cancelled"
    assert failed(f["b"], "timeout") == "no answer from the engine after 1 s"
    assert failed(f["c"], "cancelled") == "cancelled"
    assert result(f["d"])


def test_unchanged_line_art_is_not_sent_again(facts):
    f = scenario(facts, "need_lines")
    assert result(f["a"]) and result(f["b"], GREEN) and result(f["d"]) and result(f["e"])
    assert "hints_rect" in failed(f["c"], "user")
    assert f["sent"] == [
        {"lines": 19200, "file": False, "digest": "D1"},   # first time: sent
        {"lines": 0, "file": False, "digest": "D1"},       # unchanged: skipped
        {"lines": 19200, "file": False, "digest": "D2"},   # refused before the worker kept it...
        {"lines": 0, "file": False, "digest": "D2"},       # ...so the lean request gets "need_lines"
        {"lines": 0, "file": True, "digest": "D2"},        # and goes again with the line art (a file)
        {"lines": 19200, "file": False, "digest": "D2"},   # a new worker: sent at once
    ]
    assert f["files_left"] == []


def test_cropped_hints_and_result_file(facts):
    f = scenario(facts, "cropped_hints")
    assert result(f["a"]) and result(f["b"]) and f["result_file_removed"]


def test_hanging_python_is_given_up(facts):
    f = scenario(facts, "start_timeout")
    assert f["tried"] == [["hang", "no answer 1.5 s after start"]]
    assert result(f["a"])


def test_no_python_fails_every_job_once(facts):
    f = scenario(facts, "no_python")
    for k in ("a", "b"):
        msg = failed(f[k], "setup")
        assert msg.startswith("no Python with the engine's packages") and "No module named 'numpy'" in msg
    assert f["state"] == "stopped"
