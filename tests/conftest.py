"""Shared fixtures: the AlacGAN reference checkpoints and one ONNX export per session."""
import importlib.util
import os
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(ROOT, "..", "shared", "fixtures", "alacgan_reference")

# Tests see no bundled model (the shipped open weights) unless they add one themselves;
# set here so that worker processes and Krita inherit it.
os.environ["KRITA_ALAC_BUNDLED"] = tempfile.mkdtemp(prefix="alac_bundled_")


def _load_reference():
    path = os.path.join(REFERENCE_DIR, "alacgan_reference.py")
    if not os.path.isfile(path):
        raise RuntimeError(f"the shared AlacGAN reference fixture is missing: {path}")
    spec = importlib.util.spec_from_file_location("alacgan_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def reference():
    return _load_reference()


@pytest.fixture(scope="session")
def official_ckpt(reference, tmp_path_factory):
    """(netG.pth, i2v.pth) written in the original training format."""
    d = tmp_path_factory.mktemp("official")
    reference.save_official_format(str(d))
    return str(d / "netG.pth"), str(d / "i2v.pth")


@pytest.fixture(scope="session")
def reference_model(official_ckpt):
    from krita_alac.convert.checkpoints import load_alacgan
    return load_alacgan(*official_ckpt)


@pytest.fixture(scope="session")
def reference_onnx(reference_model, tmp_path_factory):
    """The reference model exported once (fp32 and fp16) for the whole session."""
    from krita_alac.convert.onnx_export import export_onnx
    path = str(tmp_path_factory.mktemp("onnx") / "ref.onnx")
    report = export_onnx(reference_model, path, fp16=True, check=True)
    return report


def reference_output(case, kind="out"):
    return np.load(os.path.join(REFERENCE_DIR, f"{case}_{kind}.npy"))


@pytest.fixture
def store_home(tmp_path, monkeypatch):
    """An empty per-user store, never the real one."""
    home = tmp_path / "alac_home"
    monkeypatch.setenv("KRITA_ALAC_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def cycle_model(tmp_path_factory):
    """A tiny random-weight cycle-open folder (G_A, G_B, model.json with "lines", size 64) made by
    the real release code; tests copy it into a store or a bundled folder of their own."""
    from cyclehelp import make_cycle_model
    return make_cycle_model(str(tmp_path_factory.mktemp("cycle_model") / "cycle-open"))
