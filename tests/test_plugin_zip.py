"""The plugin zip is built and then imported by Krita's own importer
(plugin_importer.py, shipped with Krita) into a scratch resources folder."""
import builtins
import configparser
import glob
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORTER_GLOBS = ("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py",
                  "/usr/local/share/krita/pykrita/plugin_importer/plugin_importer.py",
                  "/opt/*/share/krita/pykrita/plugin_importer/plugin_importer.py")


def krita_importer():
    paths = [os.environ.get("KRITA_PLUGIN_IMPORTER", "")] + [p for g in IMPORTER_GLOBS for p in glob.glob(g)]
    path = next((p for p in paths if p and os.path.isfile(p)), None)
    if path is None:
        pytest.fail("Krita's plugin_importer.py was not found: install Krita or set KRITA_PLUGIN_IMPORTER")
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # Inside Krita, i18n is a builtin the importer uses in its error messages.
    mod.i18n = getattr(builtins, "i18n", lambda s: s)
    return mod


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "build_plugin.py"), str(out)],
                       capture_output=True, text=True, check=True)
    path = r.stdout.strip()
    assert os.path.isfile(path)
    return path


def test_zip_entries(plugin_zip):
    from krita_alac import __version__
    assert os.path.basename(plugin_zip) == f"krita_alac-{__version__}.zip"
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert "krita_alac.desktop" in names and "krita_alac.action" in names
    assert "krita_alac/" in names, "the importer needs an explicit directory entry"
    for required in ("__init__.py", "plugin/extension.py", "plugin/docker.py", "engine/worker.py",
                     "plugin/worker_client.py", "plugin/krita_io.py", "plugin/krita_api.py", "engine/registry.py",
                     "engine/flats.py", "convert/alacgan.py", "Manual.html", "LICENSE"):
        assert f"krita_alac/{required}" in names, required
    for room in ("plugin", "engine", "convert"):
        assert f"krita_alac/{room}/" in names and f"krita_alac/{room}/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]
    # every .py of the package is shipped
    shipped = {n.split("/", 1)[1] for n in names if n.startswith("krita_alac/") and n.endswith(".py")}
    pkg = os.path.join(ROOT, "krita_alac")
    assert shipped == {os.path.relpath(os.path.join(d, n), pkg).replace(os.sep, "/")
                       for d, _, files in os.walk(pkg) if "__pycache__" not in d for n in files if n.endswith(".py")}


def test_desktop_file(plugin_zip):
    cfg = configparser.ConfigParser()
    cfg.read_string(zipfile.ZipFile(plugin_zip).read("krita_alac.desktop").decode())
    e = cfg["Desktop Entry"]
    assert e["X-KDE-Library"] == "krita_alac"
    assert e["ServiceTypes"] == "Krita/PythonPlugin"
    assert e["X-Krita-Manual"] == "Manual.html"
    assert e["Name"] and e["Comment"]


def test_action_file(plugin_zip):
    import xml.etree.ElementTree as ET
    root = ET.fromstring(zipfile.ZipFile(plugin_zip).read("krita_alac.action"))
    actions = {a.get("name"): a for a in root.iter("Action")}
    assert set(actions) == {"krita_alac_colorize", "krita_alac_extract_lines"}
    assert actions["krita_alac_colorize"].findtext("shortcut") == "Ctrl+Shift+K"
    assert actions["krita_alac_extract_lines"].findtext("text") == "Extract Line Art"
    assert not actions["krita_alac_extract_lines"].findtext("shortcut")
    from_ext = open(os.path.join(ROOT, "krita_alac", "plugin", "extension.py")).read()
    assert 'ACTION_ID = "krita_alac_colorize"' in from_ext
    assert 'LINES_ACTION_ID = "krita_alac_extract_lines"' in from_ext


def test_krita_importer_installs_plugin(plugin_zip, tmp_path):
    mod = krita_importer()
    imported = mod.PluginImporter(plugin_zip, str(tmp_path), lambda plugin: True).import_all()
    assert [p["name"] for p in imported] == ["krita_alac"]
    pykrita = tmp_path / "pykrita"
    assert (pykrita / "krita_alac.desktop").is_file()
    assert (pykrita / "krita_alac" / "__init__.py").is_file()
    assert (pykrita / "krita_alac" / "Manual.html").is_file()
    assert (tmp_path / "actions" / "krita_alac.action").is_file()
    # The installed package imports outside Krita (no krita / Qt at import time).
    r = subprocess.run([sys.executable, "-c", "import krita_alac, sys; print(krita_alac.__file__)"],
                       cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(pykrita)),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(pykrita))


def test_bundled_open_weights_ship_in_the_zip_and_are_the_default(plugin_zip, tmp_path):
    z = zipfile.ZipFile(plugin_zip)
    names = z.namelist()
    for f in ("model.json", "alac-open.onnx", "MODEL_CARD.md"):
        assert f"krita_alac/models/alac-open/{f}" in names, f
    assert "krita_alac/models/" in names and "krita_alac/models/alac-open/" in names
    assert z.getinfo("krita_alac/models/alac-open/alac-open.onnx").file_size <= 30 * 2 ** 20
    mod = krita_importer()
    mod.PluginImporter(plugin_zip, str(tmp_path), lambda plugin: True).import_all()
    pykrita = tmp_path / "pykrita"
    env = {k: v for k, v in os.environ.items() if k != "KRITA_ALAC_BUNDLED"}
    env.update(PYTHONPATH=str(pykrita), KRITA_ALAC_HOME=str(tmp_path / "empty_home"))
    code = ("from krita_alac.engine import store; m = store.default_model(); "
            "print(m.id, m.bundled, m.folder, m.meta['snap'], m.onnx.endswith('alac-open.onnx'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["alac-open", "True", str(pykrita / "krita_alac" / "models" / "alac-open"),
                                "True", "True"]
