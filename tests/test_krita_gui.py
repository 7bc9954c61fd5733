"""The full Krita GUI under Xvfb with the plugin installed from its zip by
Krita's own importer and enabled in kritarc: the docker opens, finds the
layers, colorizes through the worker, and a screenshot is kept for review in
test-artifacts/ (or $KRITA_ALAC_ARTIFACTS).  A test-only plugin
(tests/krita/gui_probe) presses the buttons from inside Krita."""
import json
import os
import shutil
import subprocess

import pytest
from kritahelp import ROOT, krita_env
from test_plugin_zip import krita_importer

PROBE = os.path.join(ROOT, "tests", "krita", "gui_probe")


@pytest.fixture(scope="module")
def gui_facts(tmp_path_factory, cycle_model):
    for tool in ("krita", "xvfb-run"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: the GUI test needs Krita and Xvfb installed")
    tmp = str(tmp_path_factory.mktemp("krita_gui"))
    artifacts = os.environ.get("KRITA_ALAC_ARTIFACTS") or os.path.join(ROOT, "test-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    for old in ("gui.json", "krita_alac_docker.png"):
        if os.path.exists(os.path.join(artifacts, old)):
            os.unlink(os.path.join(artifacts, old))
    dump = os.path.join(tmp, "dump")
    os.makedirs(dump)
    env = krita_env(tmp, HOME=tmp, KRITA_ALAC_GUI_OUT=artifacts, KRITA_ALAC_GUI_DUMP=dump)
    # A model with a line generator (a tiny cycle-open) in the user's store: the docker offers
    # it as "Auto colors" and Extract line art offers Neural.  Colorize stays on Flats (exact
    # colors to check), as the artist's saved choice.
    shutil.copytree(cycle_model, os.path.join(env["KRITA_ALAC_HOME"], "models", "cycle-open"))
    with open(os.path.join(env["KRITA_ALAC_HOME"], "settings.json"), "w") as f:
        json.dump({"engine": "flats"}, f)
    env.pop("PYTHONPATH")            # Krita must load the *installed* plugin
    env.pop("QT_QPA_PLATFORM", None)
    # Install the plugin the way users do: the zip through Krita's importer.
    out = subprocess.run(["python3", os.path.join(ROOT, "build_plugin.py"), os.path.join(tmp, "dist")],
                         capture_output=True, text=True, check=True).stdout.strip()
    resources = os.path.join(env["XDG_DATA_HOME"], "krita")
    os.makedirs(resources, exist_ok=True)
    krita_importer().PluginImporter(out, resources, lambda p: True).import_all()
    pykrita = os.path.join(resources, "pykrita")
    shutil.copy(os.path.join(PROBE, "krita_alac_guiprobe.desktop"), pykrita)
    shutil.copytree(os.path.join(PROBE, "krita_alac_guiprobe"), os.path.join(pykrita, "krita_alac_guiprobe"))
    with open(os.path.join(env["XDG_CONFIG_HOME"], "kritarc"), "w") as f:
        f.write("[python]\nenable_krita_alac=true\nenable_krita_alac_guiprobe=true\n")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "krita", "--nosplash"]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        log = (r.stdout + r.stderr)[-4000:]
    except subprocess.TimeoutExpired as e:
        log = f"Krita did not quit within 240 s\n{(e.stdout or b'')[-2000:]!r}"
    path = os.path.join(artifacts, "gui.json")
    if not os.path.isfile(path):
        pytest.fail(f"the GUI probe wrote nothing:\n{log}")
    with open(path) as f:
        facts = json.load(f)
    facts["_log"] = log
    facts["_dump"] = dump
    facts["_model"] = os.path.join(env["KRITA_ALAC_HOME"], "models", "cycle-open")
    return facts


def test_gui_probe_completed(gui_facts):
    assert not gui_facts.get("errors"), gui_facts["errors"]
    assert gui_facts.get("done"), (gui_facts["steps"], gui_facts["_log"])


def test_docker_defaults(gui_facts):
    assert gui_facts["docker_found"]
    assert gui_facts["plugin_module"].endswith(os.path.join("pykrita", "krita_alac", "plugin", "docker.py"))
    assert gui_facts["line_choice"] == "Lines"         # the active layer
    assert gui_facts["hint_choice"] == "Hints"         # the layer named Hints
    assert gui_facts["engines"] == ["Flats (no model)", "Auto colors: cycle-open"]   # a hint-free model
    assert gui_facts["colors"] == [["Shaded", None], ["Flat regions only", "snap"], ["Network only", "raw"]]
    # Flats (the saved engine): no Colors, no layers, and nothing of them in the request.
    assert not gui_facts["colors_enabled"] and not gui_facts["layers_enabled"]
    assert set(gui_facts["options"]) == {"size"}
    assert gui_facts["layers_saved"] is True


def test_action_and_shortcut(gui_facts):
    assert gui_facts["action_found"]
    assert gui_facts["action_shortcut"] == "Ctrl+Shift+K"
    assert gui_facts["shortcut_clashes"] == []
    assert gui_facts["lines_action_found"] and gui_facts["lines_action_text"] == "Extract Line Art"
    assert gui_facts["lines_action_shortcut"] == ""          # no default shortcut: nothing to clash with
    assert gui_facts["lines_shortcut_clashes"] == []


def test_colorize_button(gui_facts):
    first = gui_facts["first"]
    assert first["layers"] == ["Background", "Flats", "Lines", "Hints"]
    assert first["status"].startswith("Flats on CPU"), first["status"]
    # The GUI's responsiveness is measured, not asserted (shared, noisy machines): see bench/.
    print(f"\nColorize click→layer {first['seconds']:.2f} s, longest GUI pause {first['max_gap_ms']} ms")
    second = gui_facts["second"]
    assert second["layers"] == ["Background", "Flats", "Lines", "Hints"]   # replaced, not stacked


def test_screenshot_saved(gui_facts):
    assert gui_facts["screenshot"] and os.path.getsize(gui_facts["screenshot"]) > 10000


def test_undo_steps(gui_facts):
    """What Ctrl+Z does after Colorize (see Manual.html, 'Undo')."""
    before = gui_facts["layers_before"]
    assert gui_facts["after_undo_1"] == before                       # one step removes the result
    assert gui_facts["after_redo_1"] == gui_facts["first"]["layers"]
    # A rerun: one step removes the new result, the next brings the previous one back.
    assert gui_facts["after_undo_2a"] == ["Background", "Lines", "Hints"]
    assert gui_facts["after_undo_2b"] == ["Background", "Flats", "Lines", "Hints"]
    assert gui_facts["after_redo_2"] == ["Background", "Lines", "Hints"]
    assert gui_facts["after_redo_2b"] == ["Background", "Flats", "Lines", "Hints"]


def test_auto_recolorizes_when_hints_change(gui_facts):
    assert gui_facts["auto_result_before"] and gui_facts["auto_result_after"]
    # Our result (brought back by Redo) is untouched: Auto updates that same layer in place.
    assert gui_facts["auto_result_after"] == gui_facts["auto_result_before"], gui_facts["auto_status"]
    assert gui_facts["auto_status"].startswith("Flats on CPU") and "(updated)" in gui_facts["auto_status"]
    assert gui_facts["auto_layers"] == gui_facts["auto_layers_before"]       # nothing stacked


def test_extract_line_art_button(gui_facts):
    before = gui_facts["extract_layers_before"]
    assert before[-1] == "Hints"                        # the active (colored) layer, top of the stack
    f = gui_facts["extract"]
    assert f["layers"] == before + ["Line art (XDoG)"], f      # directly above the active layer
    assert f["status"].startswith("Lines (XDoG) on CPU"), f["status"]
    print(f"\nExtract click→layer {f['seconds']:.2f} s, longest GUI pause {f['max_gap_ms']} ms")
    assert gui_facts["extract_after_undo"] == before    # one undo step removes it
    # The docker's layer choices do not follow the new layer (#18).
    assert gui_facts["line_choice_after_extract"] == "Lines"
    assert gui_facts["hint_choice_after_extract"] == "Hints"


def test_extract_line_art_error_in_status_line(gui_facts):
    assert gui_facts["extract_empty_status"] == "The layer 'Empty' is empty: nothing to extract lines from"
    assert gui_facts["extract_empty_layers"][-1] == "Empty"    # nothing was added


def test_extract_line_art_neural(gui_facts):
    """The Neural method (offered because a line model is installed) puts the model's line
    generator's ink, at the model's working size, in a layer directly above the source."""
    import numpy as np
    from krita_alac.engine.image2image import neural_lines
    assert gui_facts["line_methods"] == [["XDoG", "xdog"], ["Neural", "neural"]]
    assert gui_facts["line_method"] == "xdog"                  # the default
    assert gui_facts["neural_saved"] == "neural" and not gui_facts["neural_thickness_enabled"]
    before = gui_facts["neural_layers_before"]
    i = before.index("Hints")
    f = gui_facts["extract_neural"]
    assert f["layers"] == before[:i + 1] + ["Line art (Neural)"] + before[i + 1:], f
    assert gui_facts["neural_result"] == "Line art (Neural)"
    assert f["status"].startswith("Lines (cycle-open) on onnxruntime · CPU"), f["status"]
    n = 1024
    src = np.fromfile(os.path.join(gui_facts["_dump"], "neural_source.bgra"), np.uint8).reshape(n, n, 4)
    got = np.fromfile(os.path.join(gui_facts["_dump"], "neural_result.bgra"), np.uint8).reshape(n, n, 4)
    meta = json.load(open(os.path.join(gui_facts["_model"], "model.json")))
    want = neural_lines(src[..., [2, 1, 0, 3]], os.path.join(gui_facts["_model"], meta["lines"]), size=meta["size"])
    assert (got[..., :3] == 0).all() and got[..., 3].std() > 0
    assert np.abs(got[..., 3].astype(int) - want[..., 3]).max() <= 1
