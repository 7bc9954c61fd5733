"""The default composition and the Flats + Shading layers inside real Krita
(kritarunner, offscreen), through krita_alac.colorize as the docker runs it.

One Krita start runs the "compose" scenario of tests/krita/krita_suite.py with
an installed model whose card recommends flats (its default is the shaded
composition); the engine's own result for the same inputs is computed here.
Krita must be installed: without it these tests fail, not skip.
"""
import json
import os
import shutil

import numpy as np
import pytest
from kritahelp import run_suite, scenario

W = H = 256


@pytest.fixture(scope="module")
def compose_run(tmp_path_factory, reference_onnx):
    tmp = str(tmp_path_factory.mktemp("krita_compose"))
    home = os.path.join(tmp, "alac_home")
    folder = os.path.join(home, "models", "carded")
    os.makedirs(folder)
    shutil.copy(reference_onnx.path, os.path.join(folder, "model.onnx"))
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump({"id": "carded", "name": "Carded", "onnx": "model.onnx", "snap": True, "size": 128}, f)
    facts = scenario(run_suite("krita_suite", tmp, ["compose"]), "compose")
    return facts, os.path.join(tmp, "out"), home


def rgba(out, name):
    """A dumped sRGB BGRA8 file as H x W x 4 RGBA."""
    a = np.fromfile(os.path.join(out, name), np.uint8).reshape(H, W, 4)
    return a[..., [2, 1, 0, 3]]


def test_default_docker_run_is_the_engines_shaded_composition(compose_run, monkeypatch):
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    f, out, home = compose_run
    assert f["compose"] == "shade" and f["size"] == 128 and f["engine"] == "AlacGAN (Carded) + flats and shading"
    assert "compose" not in f["sent"] and "snap" not in f["sent"]     # the engine's default applies
    assert f["single"] == "Colors (AlacGAN)" and f["same_parent"] and f["directly_below"]
    monkeypatch.setenv("KRITA_ALAC_HOME", home)
    files = f["files"]
    want = Engines().colorize(ColorizeRequest(lines=rgba(out, files["lines"]), hints=rgba(out, files["hints"])))
    assert want.compose == "shade"
    got = rgba(out, files["single"])
    assert np.abs(got.astype(int) - want.rgba).max() <= 1


def test_layers_stack_and_recompose_in_krita(compose_run):
    f, out, _ = compose_run
    lay = f["layers"]
    assert lay["below_lines"] == [["Flats", "normal"], ["Shading", "grain_merge"]], lay
    assert lay["reply_layers"] == [["Flats", "normal"], ["Shading", "grain_merge"]]
    assert lay["top"] == "Shading" and lay["single_gone"]
    assert lay["stack"].count("Flats") == 1 and lay["stack"].count("Shading") == 1
    assert lay["stack"][-2:] == ["Lines", "Hints"]        # the artist's layers keep their places
    assert f["record"] == {"result": True, "layers": [True]}
    single = rgba(out, f["files"]["single_projection"]).astype(int)
    merged = rgba(out, f["files"]["layers_projection"]).astype(int)
    assert np.abs(merged - single).max() <= 2, np.abs(merged - single).max()
    # The Flats layer holds flat colors: one per region (few distinct colors).
    flats = rgba(out, f["files"]["flats"])
    assert len(np.unique(flats[flats[..., 3] == 255][:, :3], axis=0)) <= 8


def test_rerun_replaces_both_and_keeps_edited(compose_run):
    f, _, _ = compose_run
    assert f["rerun"]["old_gone"]
    assert f["rerun"]["stack"].count("Flats") == 1 and f["rerun"]["stack"].count("Shading") == 1
    stack = f["edited"]["stack"]
    i = stack.index("Lines")
    assert stack[i - 2:i] == ["Flats", "Shading"] and "Shading (edited)" in stack[:i - 2], stack
    assert f["edited"]["status_kept"] == "Shading (edited)"
    back = f["back_to_one"]
    assert "Flats" not in back and "Shading" not in back and "Shading (edited)" in back
    assert back[back.index("Lines") - 1] == "Colors (AlacGAN)"
