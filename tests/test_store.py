"""The per-user model store: where it is, what counts as installed, safe names, atomic writes."""
import json
import os
import sys

import pytest

from krita_alac.engine import store
from krita_alac.engine.errors import UserError


def make_model(root, model_id, **meta):
    folder = root / "models" / model_id
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "model.json").write_text(json.dumps({"id": model_id, "onnx": "model.onnx", **meta}))
    return folder


# --- where ---------------------------------------------------------------------

def test_home_override(monkeypatch, tmp_path):
    monkeypatch.setenv("KRITA_ALAC_HOME", str(tmp_path / "h"))
    assert store.home() == str(tmp_path / "h")
    assert store.models_dir() == os.path.join(str(tmp_path / "h"), "models")


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"XDG_DATA_HOME": ""}, os.path.join("~", ".local", "share", "krita_alac")),
    ("linux", {"XDG_DATA_HOME": "/data"}, os.path.join("/data", "krita_alac")),
    ("darwin", {}, os.path.join("~", "Library", "Application Support", "krita_alac")),
    ("win32", {"APPDATA": "/appdata"}, os.path.join("/appdata", "krita_alac")),
])
def test_home_per_platform(monkeypatch, platform, env, expected):
    monkeypatch.delenv("KRITA_ALAC_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", platform)
    for k, v in env.items():
        monkeypatch.setenv(k, v) if v else monkeypatch.delenv(k, raising=False)
    assert store.home() == os.path.expanduser(expected)


# --- what is installed -------------------------------------------------------------

def test_installed_models_skips_work_areas_and_broken_folders(store_home):
    make_model(store_home, "b-model", name="B")
    make_model(store_home, "a-model")
    (store_home / "models" / store.PARTIAL).mkdir()
    (store_home / "models" / store.STAGING / "half-built").mkdir(parents=True)
    (store_home / "models" / "no-json").mkdir()
    broken = store_home / "models" / "broken-json"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    assert [m.id for m in store.installed_models()] == ["a-model", "b-model"]
    assert store.find_model("b-model").label == "B"
    assert store.default_model().id == "a-model"


def test_alac_open_is_the_default(store_home):
    make_model(store_home, "a-model")
    make_model(store_home, "alac-open")
    assert store.default_model().id == "alac-open"


@pytest.mark.parametrize("rel", ["../outside.onnx", "/etc/passwd", "sub/../../outside.onnx", "..\\outside.onnx"])
def test_model_json_cannot_point_outside_its_folder(store_home, rel):
    (store_home / "models" / "outside.onnx").parent.mkdir(parents=True)
    (store_home / "models" / "outside.onnx").write_bytes(b"x")
    folder = store_home / "models" / "sneaky"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"id": "sneaky", "onnx": rel}))
    assert store.installed_models() == []


# --- names ---------------------------------------------------------------------------

@pytest.mark.parametrize("good", ["alac-open", "my_model.v2", "a", "x" * 64])
def test_safe_model_ids(good):
    assert store.check_model_id(good) == good


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "/abs", "C:x", "Upper", "-dash",
                                 ".hidden", "a..b", "trailing.", "con", "nul.txt", "x" * 65, "sp ace", None])
def test_unsafe_model_ids(bad):
    with pytest.raises(UserError, match="invalid model id"):
        store.check_model_id(bad)


@pytest.mark.parametrize("bad", ["", ".", "..", "../netG.pth", "a/netG.pth", "a\\netG.pth", "/etc/passwd",
                                 "C:netG.pth", ".hidden", " netG.pth", "aux.pth", None])
def test_unsafe_file_names(bad):
    with pytest.raises(UserError, match="invalid file name"):
        store.check_file_name(bad)


# --- writing ---------------------------------------------------------------------------

def test_staging_commit_is_all_or_nothing(store_home):
    with store.Staging("new-model") as st:
        (open(os.path.join(st.folder, "model.onnx"), "wb")).close()
        assert store.installed_models() == []          # invisible while being built
        m = st.commit({"name": "New", "onnx": "model.onnx", "fp16": None})
    assert m.id == "new-model" and m.label == "New" and m.onnx.endswith("model.onnx")
    assert json.loads((store_home / "models" / "new-model" / "model.json").read_text())["id"] == "new-model"
    assert os.listdir(store_home / "models" / store.STAGING) == []


def test_staging_without_commit_leaves_nothing(store_home):
    with pytest.raises(RuntimeError):
        with store.Staging("failed") as st:
            open(os.path.join(st.folder, "model.onnx"), "wb").close()
            raise RuntimeError("conversion failed")
    assert store.installed_models() == []
    assert os.listdir(store_home / "models" / store.STAGING) == []


def test_staging_refuses_missing_files_and_existing_ids(store_home):
    make_model(store_home, "taken")
    with store.Staging("taken") as st:
        with pytest.raises(UserError, match="was not written"):
            st.commit({"onnx": "model.onnx"})
        open(os.path.join(st.folder, "model.onnx"), "wb").close()
        with pytest.raises(UserError, match="already installed"):
            st.commit({"onnx": "model.onnx"})
    assert (store_home / "models" / "taken" / "model.onnx").read_bytes() == b"onnx"  # untouched


def test_staging_replace_swaps_the_folder(store_home):
    make_model(store_home, "swap")
    with store.Staging("swap", replace=True) as st:
        with open(os.path.join(st.folder, "new.onnx"), "wb") as f:
            f.write(b"new")
        st.commit({"onnx": "new.onnx"})
    assert sorted(os.listdir(store_home / "models" / "swap")) == ["model.json", "new.onnx"]
    assert os.listdir(store_home / "models" / store.STAGING) == []


def test_remove_model(store_home):
    make_model(store_home, "gone")
    assert store.remove_model("gone") is True
    assert store.remove_model("gone") is False
    assert store.installed_models() == []
    with pytest.raises(UserError):
        store.remove_model("../models")


def test_bundled_models_are_listed_after_the_users_and_can_be_overridden(store_home, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    folder = bundled / "alac-open"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "model.json").write_text(json.dumps({"id": "alac-open", "name": "Open", "onnx": "model.onnx"}))
    monkeypatch.setenv("KRITA_ALAC_BUNDLED", str(bundled))
    make_model(store_home, "a-model")
    models = store.installed_models()
    assert [(m.id, m.bundled) for m in models] == [("a-model", False), ("alac-open", True)]
    assert store.default_model().id == "alac-open" and store.default_model().bundled
    assert store.remove_model("alac-open") is False and (folder / "model.onnx").is_file()   # read-only
    make_model(store_home, "alac-open", name="mine")    # the user's own copy wins
    assert [(m.id, m.bundled) for m in store.installed_models()] == [("a-model", False), ("alac-open", False)]
    assert store.default_model().folder == str(store_home / "models" / "alac-open")
