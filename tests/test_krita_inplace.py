"""Auto's in-place update of our result layer, in real Krita
(tests/krita/krita_inplace.py, one kritarunner start for all scenarios).
Krita must be installed: without it these tests fail, not skip."""
import json
import os
import shutil

import pytest
from kritahelp import run_suite, scenario

SCENARIOS = ["update", "edited", "interrupted", "line_art", "layers", "refresh"]
RED, GREEN, YELLOW, BLUE = [230, 40, 30, 255], [40, 200, 60, 255], [240, 220, 20, 255], [30, 60, 220, 255]
STACK = ["Background", "Flats", "Lines", "Hints"]


@pytest.fixture(scope="module")
def res(tmp_path_factory, reference_onnx):
    tmp = str(tmp_path_factory.mktemp("krita_inplace"))
    # The layers scenario needs a neural model: the small reference model, installed (128 px; its
    # card recommends flats, so its default is the shaded composition, which has layers).
    folder = os.path.join(tmp, "alac_home", "models", "small")
    os.makedirs(folder)
    shutil.copy(reference_onnx.path, os.path.join(folder, "model.onnx"))
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump({"id": "small", "name": "Small", "onnx": "model.onnx", "snap": True, "size": 128}, f)
    return run_suite("krita_inplace", tmp, SCENARIOS)


facts = scenario


def test_auto_updates_our_layer_in_place(res):
    f = facts(res, "update")
    assert f["end"] == "done" and f["in_place"] and f["status_in_place"]
    assert f["same_layer"] and f["stack_same"]         # no layer added or removed
    assert f["opacity"] == 200                          # the artist's layer settings stay
    assert f["inside"] == GREEN and f["ring"] == YELLOW and f["outside"] == BLUE
    # Shown: the projection was refreshed (our layer at opacity 200 over the background).
    bg = (f["background"] or [[255, 255, 255, 0]])[0]
    a = 200 / 255 if bg[3] else 1.0
    want = [g * a + b * (1 - a) for g, b in zip(GREEN[:3], bg[:3])]
    assert all(abs(p - q) <= 2 for p, q in zip(f["projection_inside"][:3], want)), (f["projection_inside"], want)
    assert f["record_digest_ok"]                        # the record's fingerprint is the layer's


def test_refresh_runs_off_the_gui_thread(res):
    f = facts(res, "refresh")
    # Written pixels do not show until the projection is recomputed; then they do.
    assert f["before"][:3] != [240, 120, 20]
    assert f["after"][:3] == [240, 120, 20] and f["result"] is True
    # Krita's recomposite ran in a thread of ours, not the GUI thread, once.
    assert f["on_main_thread"] == [False]


def test_in_place_writes_exactly_the_differing_rows(res):
    f = facts(res, "update")
    assert f["equals_new_layer"]                        # byte for byte what a new layer gets
    assert f["bands_differing"] == 2                    # the small box's rows 200-300: tile rows 3 and 4
    assert f["rows_written"] == 64 * f["bands_differing"]
    assert f["unchanged_same_layer"] and f["unchanged_rows_written"] == 0


def test_colorize_button_still_adds_a_new_layer(res):
    assert facts(res, "update")["manual_new_layer"]


def test_edited_result_is_never_overwritten(res):
    f = facts(res, "edited")["before"]
    assert f["end"] == "done" and not f["in_place"]
    assert f["kept_pixels"] and f["kept_name"] == "Flats (edited)" == f["kept_report"]
    assert f["new_inside"] == GREEN
    assert f["stack"] == ["Background", "Flats (edited)", "Flats", "Lines", "Hints"]


def test_fix_where_the_result_does_not_change_is_never_overwritten(res):
    f = facts(res, "update")["fix_elsewhere"]
    assert f["end"] == "done" and not f["in_place"] and f["new_is_other"]
    assert f["kept_pixels"] and f["kept_name"] == "Flats (edited)" and f["new_inside"] == RED


def test_painted_on_during_the_update_is_kept_as_it_was(res):
    f = facts(res, "edited")["during"]
    assert f["end"] == "done" and not f["in_place"]
    # The rows written before the artist's stroke was found are put back: old result plus their fix.
    assert f["kept_pixels"] and f["kept_id"] and f["kept_name"] == "Flats (edited 2)"
    assert f["new_is_other"] and f["new_inside"] == YELLOW and f["record_digest_ok"]
    assert f["stack"] == ["Background", "Flats (edited)", "Flats (edited 2)", "Flats", "Lines", "Hints"]


def test_cancel_in_the_middle_leaves_the_old_layer(res):
    f = facts(res, "interrupted")["cancel"]
    assert f["end"] == ["failed", "cancelled"] and f["steps_seen"] == 4
    assert f["same_layer"] and f["pixels_as_before"] and f["record_unchanged"] and f["record_matches_layer"]
    assert f["stack"] == STACK


def test_failure_in_the_middle_leaves_the_old_layer(res):
    f = facts(res, "interrupted")["failure"]
    assert f["end"] == "failed" and f["kind"] == "internal" and "simulated failure" in f["message"]
    assert f["pixels_as_before"] and f["record_unchanged"] and f["stack"] == STACK


def test_worker_killed_in_the_middle_does_not_matter(res):
    f = facts(res, "interrupted")
    k = f["worker_killed"]
    # The result was whole before the first row was written: the update ends.
    assert k["end"] == "done" and k["killed"] and k["same_layer"] and k["inside"] == GREEN
    assert k["record_matches_layer"] and k["stack"] == STACK
    assert f["next_run"] == ["done"], f["next_run"]


def test_unchanged_line_art_is_not_sent_and_changes_are_never_missed(res):
    f = facts(res, "line_art")
    assert f["unchanged"]["flag"] is True and not f["unchanged"]["sent"]["lines_file"]
    assert f["no_wall_below"] == RED
    c = f["changed"]
    assert c["flag"] is False and c["new_digest"] and c["sent"]["lines_file"]
    assert c["above_wall"] == RED and c["below_wall"] == GREEN     # the worker used the new line art
    assert f["one_pixel"]["flag"] is False and f["one_pixel"]["new_digest"]
    # Only this session's copies stay in the temporary folder: the line art and our result.
    assert all(n.startswith(("lines-", "result-")) for n in f["files_left"]), f["files_left"]
    assert len(f["files_left"]) <= 1 + 2


def test_flats_and_shading_layers_update_in_place(res):
    f = facts(res, "layers")
    assert f["end"] == "done" and f["in_place"] and f["stack_same"] and f["same_ids"], f
    assert f["names"] == ["Flats", "Shading"] and f["blends"] == ["normal", "grain_merge"]
    assert f["digests_ok"] == [True, True] and f["equal_to_new_layers"] == [True, True]
    assert f["flats_inside"] == GREEN
