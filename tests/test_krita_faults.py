"""Worker faults inside real Krita (tests/krita/krita_faults.py): every job
ends exactly once, a failed job writes no layer, the jobs that waited run.
Krita must be installed: without it these tests fail, not skip."""

import pytest
from kritahelp import run_suite, scenario

SCENARIOS = ["stop_during_run", "crash_during_queue", "script_timeout", "cancel_while_starting", "send_less"]
RED = [230, 40, 30, 255]


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("krita_faults"))
    # Every job waits 1 s in the worker before computing: time to stop, kill or time out.
    return run_suite("krita_faults", tmp, SCENARIOS, KRITA_ALAC_WORKER_PAUSE="1")


facts = scenario


def once(ends, kind):
    assert len(ends) == 1, ends
    assert ends[0][0] == kind if kind == "done" else ends[0][:2] == ["failed", kind], ends
    return ends[0][-1]


def test_stop_during_run(faults):
    f = facts(faults, "stop_during_run")
    assert f["state_at_stop"] == "busy"
    assert once(f["a"], "stopped").startswith("the engine worker was stopped")
    assert once(f["b"], "done") == "Flats"             # the waiting job runs on the new worker
    assert f["layers"] == ["Background", "Flats", "Lines", "Hints"] and f["before"] == ["Background", "Lines", "Hints"]
    assert f["b_pixel"] == RED


def test_crash_during_queue(faults):
    f = facts(faults, "crash_during_queue")
    assert "crashed or was killed" in once(f["a"], "crash")
    assert once(f["b"], "done") == "Flats" and once(f["c"], "done") == "Flats"
    assert f["new_pid"]
    assert f["layers"] == ["Background", "Flats", "Lines", "Hints", "Flats", "Lines 2"]


def test_script_timeout_writes_no_layer_later(faults):
    f = facts(faults, "script_timeout")
    assert f["raised"] == "no answer from the engine after 0.3 s" and f["returned_before_answer"]
    assert f["layers"] == f["before"] == ["Background", "Lines", "Hints"]
    assert f["pending"] == []
    assert once(f["no_wait"], "timeout") == "no answer from the engine after 0.3 s"
    assert f["layers_after_no_wait"] == ["Background", "Lines", "Hints"]


def test_cancel_while_the_worker_starts(faults):
    f = facts(faults, "cancel_while_starting")
    assert f["state_at_cancel"] == "starting"
    assert once(f["a"], "cancelled") == "cancelled"
    assert f["layers"] == ["Background", "Lines", "Hints"] and f["state_after"] == "ready"
    assert once(f["b"], "done") == "Flats"


def test_send_less(faults):
    f = facts(faults, "send_less")
    first, second = f["sent"]
    assert first["lines_file"] and first["lines"] == 0 and first["lines_digest"]
    assert second == dict(first, lines_file=False)       # the line art is not sent again
    assert f["same_digest"]
    assert first["hints_rect"] == [6, 6, 62, 62] and first["hints"] == 62 * 62 * 4   # cropped, inline
    assert not first["hints_file"] and first["result_file"]
    assert f["inside"] == [30, 60, 220, 255]              # the second run's hints (blue)
    # Payload files are gone once answered; what stays is this session's copy of the line art
    # and of our result layer (compared with the layers by the next run).
    kinds = [n.split("-")[0] for n in f["files_left"]]
    assert set(kinds) <= {"lines", "result"} and kinds.count("lines") <= 1 and kinds.count("result") <= 2, kinds
