"""python -m model_download against a loopback HTTP server: downloads, resumes,
bad files, stalls, safety checks, and local conversion into the store.

One real ONNX export per session (the --netg/--i2v install); the download
tests swap the exporter for a copy of that export, since what they test is
everything around it.
"""
import hashlib
import http.server
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest

from krita_alac.engine import store
from krita_alac.convert.onnx_export import ExportReport
from model_download import convert as converter
from model_download.cli import main
from model_download.fetch import FetchOptions, fetch

SERVER_DEADLINE_S = 120   # the server stops itself even if a test forgets to
STALL_HOLD_S = 10         # how long a "stall" route keeps its connection silent
CUT_AT = 1_000_000


# --- a bounded loopback server ----------------------------------------------

class Route:
    def __init__(self, path=None, data=None, mode="ok", location=None):
        self.path, self.data, self.mode, self.location = path, data, mode, location
        self.hits = 0

    def size(self):
        return len(self.data) if self.data is not None else os.path.getsize(self.path)

    def read(self, start):
        if self.data is not None:
            return [self.data[start:]]
        return _file_chunks(self.path, start)


def _file_chunks(path, start):
    with open(path, "rb") as f:
        f.seek(start)
        yield from iter(lambda: f.read(1 << 20), b"")


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        route.hits += 1
        if route.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = route.size()
        start = 0
        rng = self.headers.get("Range")
        honour_range = not (route.mode == "cut" and route.hits == 1)
        if rng and honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if route.mode == "stall":
            self.wfile.write(b"\0" * 1000)
            self.wfile.flush()
            srv.stop.wait(STALL_HOLD_S)
            return
        sent = 0
        for chunk in route.read(start):
            if route.mode == "cut" and route.hits == 1:
                # First request: drop the connection part way through.
                self.wfile.write(chunk[:CUT_AT - sent])
                self.wfile.flush()
                sent += len(chunk[:CUT_AT - sent])
                if sent >= CUT_AT:
                    self.close_connection = True
                    return
                continue
            self.wfile.write(chunk)


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes, self.requests = {}, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.deadline = threading.Timer(SERVER_DEADLINE_S, self.close)
        self.deadline.daemon = True

    def handle_error(self, request, client_address):
        pass  # clients that give up (stall tests, rejected files) are expected here

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def start(self):
        self.thread.start()
        self.deadline.start()
        return self

    def close(self):
        self.stop.set()
        self.shutdown()
        self.server_close()
        self.deadline.cancel()


@pytest.fixture
def server():
    srv = LoopbackServer().start()
    yield srv
    srv.close()


# --- store, registry and exporter helpers -----------------------------------

def sha256_of(path=None, data=None):
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="session")
def fixture_files(official_ckpt):
    """{role: (path, size, sha256)} of the reference checkpoints in the official layout."""
    return {role: (p, os.path.getsize(p), sha256_of(p)) for role, p in zip(("netg", "i2v"), official_ckpt)}


@pytest.fixture(scope="session")
def local_install(fixture_files, tmp_path_factory):
    """The one real conversion of the session: --netg/--i2v into a store of its own."""
    home = tmp_path_factory.mktemp("local_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KRITA_ALAC_HOME", str(home))
        code = main(["--netg", fixture_files["netg"][0], "--i2v", fixture_files["i2v"][0],
                     "--name", "fixture-local", "--no-check", "--quiet"])
        assert code == 0
        models = store.installed_models()
    return home, models


@pytest.fixture
def fake_export(local_install, monkeypatch):
    """The exporter replaced by a copy of the session's real export."""
    onnx = local_install[1][0].onnx
    calls = []

    def export(model, path, fp16=False, check=True, **kw):
        calls.append((model, fp16, check))
        shutil.copyfile(onnx, path)
        half = path[:-5] + ".fp16.onnx" if fp16 else None
        if half:
            shutil.copyfile(onnx, half)
        return ExportReport(path=path, max_abs_diff=0.0 if check else None, check_shape=None, fp16_path=half)

    monkeypatch.setattr(converter, "export_onnx", export)
    return calls


@pytest.fixture
def home(store_home):
    """A store that already holds one model, so 'unchanged' means something."""
    folder = store_home / "models" / "existing"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"not really onnx")
    (folder / "model.json").write_text(json.dumps({"id": "existing", "onnx": "model.onnx"}))
    return store_home


def listing(root):
    """Every file under the store, relative, except resumable downloads."""
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if not rel.startswith(os.path.join("models", store.PARTIAL) + os.sep):
                out.append(rel)
    return sorted(out)


def partial_files(root):
    d = os.path.join(root, "models", store.PARTIAL)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def write_registry(tmp_path, *models):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format": 1, "models": list(models)}))
    return str(path)


def model_entry(model_id, **files):
    """files: role=(url, size, sha256, name)"""
    return {"id": model_id, "name": f"Test {model_id}", "kind": "alacgan", "license": "test-only",
            "source": "loopback", "files": [{"role": r, "url": u, "size": s, "sha256": h, "name": n}
                                            for r, (u, s, h, n) in files.items()]}


def serve_fixture(server, fixture_files, netg_mode="ok"):
    server.routes["/netG.pth"] = Route(path=fixture_files["netg"][0], mode=netg_mode)
    server.routes["/i2v.pth"] = Route(path=fixture_files["i2v"][0])
    return {role: (server.url(f"/{name}"), size, sha, name)
            for (role, (_, size, sha)), name in zip(fixture_files.items(), ("netG.pth", "i2v.pth"))}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[-1].startswith("python -m model_download: error: "), err
    for n in needles:
        assert n in lines[-1], lines[-1]


# --- downloads ---------------------------------------------------------------

def test_full_download_converts_and_registers(home, server, fixture_files, fake_export, tmp_path, capsys):
    reg = write_registry(tmp_path, model_entry("test-model", **serve_fixture(server, fixture_files)))
    code, out, err = run(capsys, "test-model", "--registry", reg, "--no-check")
    assert code == 0, err
    assert "100%" in err and "MB/s" in err          # the progress line
    m = store.find_model("test-model")
    assert m is not None and m.onnx and m.netg is None and m.i2v is None
    assert [x.id for x in store.installed_models()] == ["existing", "test-model"]
    meta = json.loads((home / "models" / "test-model" / "model.json").read_text())
    assert meta["license"] == "test-only" and meta["sha256"]["netg"] == fixture_files["netg"][2]
    assert partial_files(home) == []                  # downloads cleaned up after the install
    assert fake_export[0][1:] == (False, False)       # fp16 off, check off
    # Installed already: says so and changes nothing.
    before = listing(home)
    code, out, _ = run(capsys, "test-model", "--registry", reg)
    assert code == 0 and "already installed" in out and listing(home) == before


def test_interrupted_download_resumes_with_range(home, server, fixture_files, fake_export, tmp_path, capsys):
    files = serve_fixture(server, fixture_files, netg_mode="cut")
    reg = write_registry(tmp_path, model_entry("resumed", **files))
    code, out, err = run(capsys, "resumed", "--registry", reg, "--retry-wait", "0.01", "--keep-checkpoints")
    assert code == 0, err
    assert "retrying" in err
    netg_requests = [r for p, r in server.requests if p == "/netG.pth"]
    assert netg_requests == [None, f"bytes={CUT_AT}-"]
    m = store.find_model("resumed")
    assert sha256_of(m.netg) == fixture_files["netg"][2]     # the resumed file is whole
    assert partial_files(home) == []


def test_corrupted_download_is_deleted(home, server, tmp_path, capsys):
    data = bytes(range(256)) * 1000
    server.routes["/netG.pth"] = Route(data=data[:-1] + b"X")
    reg = write_registry(tmp_path, model_entry(
        "corrupt", netg=(server.url("/netG.pth"), len(data), sha256_of(data=data), "netG.pth")))
    before = listing(home)
    code, _, err = run(capsys, "corrupt", "--registry", reg)
    assert_one_line_error(code, err, "netG.pth: sha256 mismatch", "was deleted")
    assert listing(home) == before and partial_files(home) == []


def test_missing_file_404(home, server, tmp_path, capsys):
    reg = write_registry(tmp_path, model_entry(
        "missing", netg=(server.url("/nowhere.pth"), 100, "0" * 64, "netG.pth")))
    before = listing(home)
    code, _, err = run(capsys, "missing", "--registry", reg, "--retry-wait", "0.01")
    assert_one_line_error(code, err, "HTTP 404", "/nowhere.pth")
    assert listing(home) == before and partial_files(home) == []


def test_stalled_server_aborts(home, server, tmp_path, capsys):
    data = b"\0" * 50_000
    server.routes["/netG.pth"] = Route(data=data, mode="stall")
    reg = write_registry(tmp_path, model_entry(
        "stalled", netg=(server.url("/netG.pth"), len(data), sha256_of(data=data), "netG.pth")))
    before = listing(home)
    t0 = time.monotonic()
    code, _, err = run(capsys, "stalled", "--registry", reg, "--stall-timeout", "0.5")
    assert time.monotonic() - t0 < STALL_HOLD_S / 2
    assert_one_line_error(code, err, "stalled", "no data for 0.5 s", "run again to resume")
    assert listing(home) == before
    parts = partial_files(home)                   # what arrived is kept for the next run
    assert len(parts) == 1 and os.path.getsize(home / "models" / store.PARTIAL / parts[0]) == 1000
    # ...and the next run continues from there.
    server.routes["/netG.pth"].mode = "ok"
    path = fetch(server.url("/netG.pth"), "netG.pth", sha256_of(data=data), len(data), FetchOptions(quiet=True))
    assert server.requests[-1] == ("/netG.pth", "bytes=1000-")
    assert open(path, "rb").read() == data


def test_failed_conversion_leaves_store_unchanged(home, server, tmp_path, capsys):
    data = b"this is not a checkpoint" * 100
    server.routes["/netG.pth"] = Route(data=data)
    reg = write_registry(tmp_path, model_entry(
        "garbage", netg=(server.url("/netG.pth"), len(data), sha256_of(data=data), "netG.pth")))
    before = listing(home)
    code, _, err = run(capsys, "garbage", "--registry", reg)
    assert_one_line_error(code, err, "not a PyTorch checkpoint")
    assert listing(home) == before
    assert os.listdir(home / "models" / store.STAGING) == []
    assert len(partial_files(home)) == 1          # verified download kept: no second fetch needed


def test_interrupt_during_conversion(home, server, fixture_files, monkeypatch, tmp_path, capsys):
    def interrupted(netg, i2v, folder, **kw):
        open(os.path.join(folder, "model.onnx"), "wb").close()
        raise KeyboardInterrupt
    monkeypatch.setattr("model_download.install.converter.convert", interrupted)
    reg = write_registry(tmp_path, model_entry("interrupted", **serve_fixture(server, fixture_files)))
    before = listing(home)
    code, _, err = run(capsys, "interrupted", "--registry", reg, "--quiet")
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert listing(home) == before and store.find_model("interrupted") is None


def test_url_download_with_local_i2v(home, server, fixture_files, fake_export, capsys):
    files = serve_fixture(server, fixture_files)
    url, _, sha, _ = files["netg"]
    code, out, err = run(capsys, "--url", url, "--sha256", sha.upper(), "--i2v", fixture_files["i2v"][0],
                         "--fp16", "--quiet")
    assert code == 0, err
    m = store.find_model("netg")                   # id from the file name
    assert m.onnx and m.fp16 and m.meta["source"].startswith(url)
    assert "error" not in err


def test_list_and_remove(home, capsys):
    code, out, _ = run(capsys, "--remove", "existing")
    assert code == 0 and store.installed_models() == []
    code, _, err = run(capsys, "--remove", "existing")
    assert_one_line_error(code, err, "no installed model 'existing'")


def test_url_needs_sha256(home, capsys):
    code, _, err = run(capsys, "--url", "https://example.org/netG.pth")
    assert_one_line_error(code, err, "--sha256")


def test_not_yet_available_model(home, tmp_path, capsys):
    reg = write_registry(tmp_path, {"id": "planned", "name": "Planned", "kind": "alacgan", "available": False,
                                    "note": "coming later", "files": []})
    code, out, _ = run(capsys, "--list", "--registry", reg)
    assert code == 0 and "planned" in out and "not yet available" in out and "existing" in out
    before = listing(home)
    code, _, err = run(capsys, "planned", "--registry", reg)
    assert_one_line_error(code, err, "planned is not available yet: coming later")
    assert listing(home) == before


def test_registry_lists_the_bundled_open_weights(home, capsys, monkeypatch):
    from krita_alac.engine import store as st
    monkeypatch.setenv("KRITA_ALAC_BUNDLED", st.BUNDLED_DIR)
    code, out, _ = run(capsys, "--list")
    assert code == 0 and any(line.split()[:2] == ["alac-open", "bundled"] for line in out.splitlines()), out
    code, out, _ = run(capsys, "alac-open")
    assert code == 0 and "alac-open comes with the plugin" in out


def test_bundled_model_needs_no_download(home, tmp_path, capsys, monkeypatch):
    reg = write_registry(tmp_path, {"id": "open-x", "name": "Open", "kind": "alacgan", "available": True,
                                    "bundled": True, "files": []})
    before = listing(home)
    code, _, err = run(capsys, "open-x", "--registry", reg)
    assert_one_line_error(code, err, "open-x comes with the plugin, but this copy has no krita_alac/models/open-x")
    folder = tmp_path / "bundled" / "open-x"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "model.json").write_text(json.dumps({"id": "open-x", "onnx": "model.onnx"}))
    monkeypatch.setenv("KRITA_ALAC_BUNDLED", str(tmp_path / "bundled"))
    code, out, _ = run(capsys, "open-x", "--registry", reg)
    assert code == 0 and "open-x comes with the plugin" in out and "nothing to download" in out
    code, out, _ = run(capsys, "--list", "--registry", reg)
    assert code == 0 and any(line.split()[:2] == ["open-x", "bundled"] for line in out.splitlines()), out
    code, _, err = run(capsys, "--remove", "open-x")
    assert_one_line_error(code, err, "open-x comes with the plugin and cannot be removed")
    assert listing(home) == before and (folder / "model.onnx").is_file()


# --- safety -------------------------------------------------------------------

@pytest.mark.parametrize("entry, message", [
    ({"id": "../evil"}, "invalid model id"),
    ({"id": "/abs"}, "invalid model id"),
    ({"name": "../../outside.pth"}, "invalid file name"),
    ({"name": "/etc/passwd"}, "invalid file name"),
    ({"name": "sub/netG.pth"}, "invalid file name"),
    ({"url": "http://example.com/netG.pth"}, "refusing plain http from example.com"),
    ({"url": "ftp://example.com/netG.pth"}, "unsupported URL scheme"),
    ({"sha256": "abc"}, "64 hexadecimal digits"),
])
def test_registry_entries_that_could_escape_are_rejected(home, tmp_path, capsys, entry, message):
    base = model_entry("ok-id", netg=("https://example.org/netG.pth", 10, "0" * 64, "netG.pth"))
    if "id" in entry:
        base["id"] = entry["id"]
    base["files"][0].update({k: v for k, v in entry.items() if k != "id"})
    reg = write_registry(tmp_path, base)
    before = listing(tmp_path)              # the whole test folder: nothing may appear anywhere
    code, _, err = run(capsys, base["id"], "--registry", reg)
    assert_one_line_error(code, err, message)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "Upper", ".hidden", "con"])
def test_unsafe_names_rejected(home, fixture_files, capsys, name):
    before = listing(home)
    code, _, err = run(capsys, "--netg", fixture_files["netg"][0], "--name", name)
    assert_one_line_error(code, err, "invalid model id")
    assert listing(home) == before


def test_http_to_other_hosts_rejected(home, server, capsys):
    code, _, err = run(capsys, "--url", "http://example.com/netG.pth", "--sha256", "0" * 64)
    assert_one_line_error(code, err, "refusing plain http from example.com")
    # ...also when a loopback server redirects there.
    server.routes["/netG.pth"] = Route(mode="redirect", location="http://example.com/netG.pth")
    code, _, err = run(capsys, "--url", server.url("/netG.pth"), "--sha256", "0" * 64)
    assert_one_line_error(code, err, "refusing plain http from example.com")
    assert partial_files(home) == []


# --- local files -> store -> engine -------------------------------------------------------

def test_local_conversion_is_listed_and_runs(local_install, monkeypatch):
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.imaging import geometry, prepare_hints, prepare_sketch, to_rgba
    from krita_alac.engine.request import ColorizeRequest
    from krita_alac.engine.runtime import OnnxColorizer

    home, _ = local_install
    monkeypatch.setenv("KRITA_ALAC_HOME", str(home))
    models = store.installed_models()
    assert [m.id for m in models] == ["fixture-local"]
    m = models[0]
    assert m.onnx.endswith("model.onnx") and m.meta["source"] == "local file netG.pth; local file i2v.pth"
    assert not os.listdir(os.path.join(home, "models", store.STAGING))

    lines = np.full((64, 64, 4), 255, np.uint8)
    lines[20:22, :, :3] = 0
    lines[:, 40:42, :3] = 0
    hints = np.zeros((64, 64, 4), np.uint8)
    hints[5:12, 5:12] = (255, 0, 0, 255)
    res = Engines().colorize(ColorizeRequest(lines=lines, hints=hints, engine="fixture-local", size=64, device="cpu"))
    assert res.rgba.shape == (64, 64, 4) and res.rgba.dtype == np.uint8
    assert (res.rgba[..., 3] == 255).all() and "fixture-local" in res.engine

    geo = geometry(64, 64, 64)
    direct = OnnxColorizer(m.onnx, device="cpu").run(prepare_sketch(lines, geo), prepare_hints(hints, geo))
    np.testing.assert_array_equal(res.rgba, to_rgba(direct, geo))
