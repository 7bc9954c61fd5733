"""Bad input on the command line: one line naming the problem and the way
around it, exit 1, and no output file (old or half-new) left behind."""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

BLOCK = "import sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',') if m]; " \
        "from krita_alac.engine.cli import main; sys.exit(main(sys.argv[2:]))"


def cli(*args, block="", env=None):
    """Run the CLI in a fresh Python where the modules in `block` cannot be imported."""
    r = subprocess.run([sys.executable, "-c", BLOCK, block, *args], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})), timeout=300)
    return r.returncode, r.stdout, r.stderr


def one_line_error(rc, err):
    assert rc == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_convert_without_the_torch_extra_names_it(tmp_path):
    for block in ("torch", "onnxscript"):
        rc, _, err = cli("convert", "--netg", str(tmp_path / "netG.pth"), "-o", str(tmp_path / "m.onnx"),
                         block="torch,onnxscript" if block == "torch" else "onnxscript")
        msg = one_line_error(rc, err)
        assert msg.endswith("pip install 'krita-alac[torch]'"), msg
    assert not (tmp_path / "m.onnx").exists()


def png_header_only(path, width, height):
    """A PNG that claims width x height (Pillow reads the size without decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 5))
                     + chunk(b"IEND", b""))


def test_images_over_the_pixel_limit_say_the_limit_and_the_way_around(tmp_path):
    small = tmp_path / "lines.png"
    Image.fromarray(np.zeros((100, 120, 4), np.uint8)).save(small)
    out = tmp_path / "out.png"
    rc, _, err = cli("flats", str(small), "--hints", str(small), "-o", str(out),
                     env={"KRITA_ALAC_MAX_PIXELS": "1000"})
    msg = one_line_error(rc, err)
    assert f"line art {small} is 120x100 = 12000 pixels, over the limit of 1000 pixels" in msg
    assert "GB of memory" in msg and msg.endswith("set KRITA_ALAC_MAX_PIXELS=12000")
    # A page far over the default limit (and over Pillow's bomb limit): refused before decoding.
    huge = tmp_path / "huge.png"
    png_header_only(huge, 40000, 40000)
    rc, _, err = cli("colorize", str(huge), "--engine", "flats", "-o", str(out))
    msg = one_line_error(rc, err)
    assert "is 40000x40000 = 1600000000 pixels, over the limit of 268435456 pixels" in msg, msg
    assert "KRITA_ALAC_MAX_PIXELS=1600000000" in msg
    assert not out.exists()


def test_flats_and_labels_are_written_together_or_not_at_all(tmp_path):
    lines = np.zeros((40, 60, 4), np.uint8)
    lines[:, 29:31] = (0, 0, 0, 255)
    hints = np.zeros((40, 60, 4), np.uint8)
    hints[5:10, 5:10] = (250, 0, 0, 255)
    Image.fromarray(lines).save(tmp_path / "l.png")
    Image.fromarray(hints).save(tmp_path / "h.png")
    out = tmp_path / "flats.png"
    out.write_bytes(b"old")
    rc, _, err = cli("flats", str(tmp_path / "l.png"), "--hints", str(tmp_path / "h.png"), "-o", str(out),
                     "--labels", str(tmp_path / "missing" / "labels.png"))
    assert one_line_error(rc, err).startswith("krita-alac: error: output folder does not exist")
    assert out.read_bytes() == b"old"
    # A labels path that cannot be written (a folder) after the flats were computed: still neither.
    (tmp_path / "labels.png").mkdir()
    rc, _, err = cli("flats", str(tmp_path / "l.png"), "--hints", str(tmp_path / "h.png"), "-o", str(out),
                     "--labels", str(tmp_path / "labels.png"))
    assert one_line_error(rc, err) == f"krita-alac: error: cannot write {tmp_path / 'labels.png'}: it is a folder"
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["flats.png", "h.png", "l.png", "labels.png"]   # no .part files
    rc, out_text, err = cli("flats", str(tmp_path / "l.png"), "--hints", str(tmp_path / "h.png"), "-o", str(out),
                            "--labels", str(tmp_path / "labels.npy"))
    assert rc == 0, err
    assert np.asarray(Image.open(out))[20, 10].tolist() == [250, 0, 0, 255]
    assert np.load(tmp_path / "labels.npy").shape == (40, 60)


MD_BLOCK = "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'onnxscript')]; " \
           "from model_download.cli import main; sys.exit(main(sys.argv[1:]))"


def test_model_download_without_the_torch_extra_names_it(tmp_path):
    ckpt = tmp_path / "netG.pth"
    ckpt.write_bytes(b"not really a checkpoint")
    home = tmp_path / "home"
    r = subprocess.run([sys.executable, "-c", MD_BLOCK, "--netg", str(ckpt)], capture_output=True, text=True,
                       env=dict(os.environ, KRITA_ALAC_HOME=str(home)), timeout=300)
    msg = one_line_error(r.returncode, r.stderr)
    assert msg == ("python -m model_download: error: this needs the torch extra (torch is not installed): "
                   "pip install 'krita-alac[torch]'; nothing was installed")
    left = [os.path.relpath(os.path.join(d, f), home) for d, ds, fs in os.walk(home) for f in fs + ds]
    assert left in ([], ["models", "models/.staging"]), left    # an empty staging folder at most
