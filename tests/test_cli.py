"""The krita-alac command and the image pre/post-processing it runs."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from krita_alac.engine.cli import main
from krita_alac.engine.imaging import Geometry, geometry, prepare_hints, prepare_sketch, to_rgba

RED = (255, 0, 0)


def save(path, a):
    Image.fromarray(a).save(path)
    return str(path)


def lines_and_hints(tmp_path, h=100, w=160):
    yy, xx = np.mgrid[:h, :w]
    ink = (np.abs(xx - w // 2) < 2) | (xx < 2) | (yy < 2) | (xx >= w - 2) | (yy >= h - 2)
    lines = np.zeros((h, w, 4), np.uint8)
    lines[ink] = (0, 0, 0, 255)
    hints = np.zeros((h, w, 4), np.uint8)
    hints[40:50, 20:40] = (*RED, 255)
    hints[40:50, 120:140] = (0, 0, 255, 255)
    return save(tmp_path / "lines.png", lines), save(tmp_path / "hints.png", hints)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- imaging --------------------------------------------------------------

def test_geometry_scales_long_side_and_pads_to_32():
    g = geometry(1080, 1920, 512)
    assert (g.h, g.w, g.ph, g.pw) == (288, 512, 288, 512)
    g = geometry(1000, 700, 512)
    assert (g.h, g.w, g.ph, g.pw) == (512, 358, 512, 384)


def test_sketch_is_luminance_over_white_padded_white():
    lines = np.zeros((40, 50, 4), np.uint8)
    lines[10, 10] = (0, 0, 0, 255)         # black ink
    lines[20, 20] = (255, 0, 0, 255)       # red ink: luma 0.299
    lines[30, 30] = (0, 0, 0, 128)         # half-transparent black
    s = prepare_sketch(lines, Geometry(40, 50, 40, 50, 64, 64))  # no scaling, padded to 64
    assert s.shape == (1, 1, 64, 64)
    assert s[0, 0, 10, 10] == -1.0 and s[0, 0, 0, 0] == 1.0 and (s[0, 0, 40:, :] == 1).all()
    assert abs(s[0, 0, 20, 20] - (0.299 * 2 - 1)) < 1e-3
    assert abs(s[0, 0, 30, 30] - ((1 - 128 / 255) * 2 - 1)) < 1e-3


def test_hint_cells_take_alpha_weighted_mean_of_opaque_pixels():
    hints = np.zeros((64, 64, 4), np.uint8)
    hints[0, 0] = (200, 0, 0, 255)
    hints[0, 1] = (100, 0, 0, 128)         # counts (>= half opaque), half weight
    hints[1, 1] = (0, 255, 0, 100)         # too faint: ignored
    hints[9, 9] = (0, 0, 255, 255)
    g = geometry(64, 64, 64, raw=True)
    h = prepare_hints(hints, g)
    assert h.shape == (1, 4, 16, 16)
    mean_r = (200 * 255 + 100 * 128) / (255 + 128) / 255 * 2 - 1
    assert abs(h[0, 0, 0, 0] - mean_r) < 1e-5 and h[0, 1, 0, 0] == -1.0 and h[0, 3, 0, 0] == 1
    assert h[0, 3, 2, 2] == 1 and h[0, 2, 2, 2] == 1.0
    assert h[0, 3].sum() == 2 and (h[0, :3][:, h[0, 3] == 0] == 0).all()


def test_output_is_cropped_and_resized_back():
    g = geometry(100, 300, 128)
    color = np.full((1, 3, g.ph, g.pw), -1.0, np.float32)
    color[0, 0] = 1.0                      # red everywhere in the content
    color[0, :, g.h:, :] = -1              # padding must be cropped away
    out = to_rgba(color, g)
    assert out.shape == (100, 300, 4) and (out[..., 3] == 255).all()
    assert (out[..., 0] == 255).all() and (out[..., 1] == 0).all()


# --- command line ---------------------------------------------------------

def test_flats_command(tmp_path, capsys, store_home):
    lines, hints = lines_and_hints(tmp_path)
    out = str(tmp_path / "out.png")
    code, o, err = run_cli(capsys, "flats", lines, "--hints", hints, "-o", out, "--labels", str(tmp_path / "l.png"))
    assert code == 0, err
    a = np.array(Image.open(out))
    assert tuple(a[50, 30]) == (*RED, 255) and tuple(a[50, 130]) == (0, 0, 255, 255)
    assert "2 regions" in o
    labels = np.array(Image.open(tmp_path / "l.png"))
    assert labels.dtype == np.uint16 and labels[50, 30] != labels[50, 130]


def test_colorize_without_models_uses_flats_and_says_so(tmp_path, capsys, store_home):
    lines, hints = lines_and_hints(tmp_path)
    out = str(tmp_path / "out.png")
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "-o", out)
    assert code == 0
    assert "no neural model installed: using flats" in err
    assert tuple(np.array(Image.open(out))[50, 30]) == (*RED, 255)
    code2, _, _ = run_cli(capsys, "colorize", lines, "--hints", hints, "-o", str(tmp_path / "o2.png"),
                          "--engine", "flats")
    assert code2 == 0
    assert np.array_equal(np.array(Image.open(out)), np.array(Image.open(tmp_path / "o2.png")))


def test_colorize_with_onnx_model_and_raw(tmp_path, capsys, reference, reference_onnx, store_home):
    sketch, hint = reference.case_inputs("dots")
    lines = np.zeros((512, 512, 4), np.uint8)
    lines[sketch[0, 0] < 0] = (0, 0, 0, 255)
    hints = np.zeros((512, 512, 4), np.uint8)
    hints[100:104, 200:204] = (*RED, 255)
    lp, hp = save(tmp_path / "l.png", lines), save(tmp_path / "h.png", hints)
    out = str(tmp_path / "raw.png")
    code, o, err = run_cli(capsys, "colorize", lp, "--hints", hp, "--model", reference_onnx.path,
                           "-o", out, "--raw")
    assert code == 0, err
    assert "onnxruntime · CPU" in o
    from krita_alac.engine.runtime import OnnxColorizer
    g = geometry(512, 512, 512, raw=True)
    net = OnnxColorizer(reference_onnx.path, "cpu").run(prepare_sketch(lines, g), prepare_hints(hints, g))
    want = np.clip((net[0].transpose(1, 2, 0) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    got = np.array(Image.open(out))
    assert np.abs(got[..., :3].astype(int) - want).max() <= 1
    # Non-square canvas through the resize path.
    small_l = save(tmp_path / "sl.png", lines[:200, :320].copy())
    code, o, err = run_cli(capsys, "colorize", small_l, "--model", reference_onnx.path, "-o",
                           str(tmp_path / "s.png"), "--size", "128")
    assert code == 0, err
    assert np.array(Image.open(tmp_path / "s.png")).shape == (200, 320, 4)


def test_colorize_with_checkpoint_uses_torch(tmp_path, capsys, official_ckpt, reference_onnx, store_home):
    lines, hints = lines_and_hints(tmp_path, 64, 96)
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", official_ckpt[0],
                           "--i2v", official_ckpt[1], "-o", a, "--size", "96")
    assert code == 0, err
    assert "torch · CPU" in o
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", reference_onnx.path,
                           "-o", b, "--size", "96")
    assert code == 0, err
    diff = np.abs(np.array(Image.open(a)).astype(int) - np.array(Image.open(b)).astype(int))
    assert diff.max() <= 1


def test_convert_command(tmp_path, capsys, official_ckpt):
    out = str(tmp_path / "m.onnx")
    code, o, err = run_cli(capsys, "convert", "--netg", official_ckpt[0], "--i2v", official_ckpt[1], "-o", out)
    assert code == 0, err
    assert os.path.isfile(out)
    diff = float(o.split("max abs diff ")[1].split()[0])
    assert diff < 1e-4


@pytest.mark.parametrize("case,expected", [
    ("missing", "error: line art not found: "),
    ("not_image", "error: line art is not an image: "),
    ("size_mismatch", "error: hints are 10x10 but the line art is 160x100: they must be the same size"),
    ("bad_size", "error: working size must be a positive multiple of 32, got 500"),
    ("corrupt_onnx", "error: broken.onnx is not an ONNX model"),
    ("wrong_onnx", "error: other.onnx is not a colorizer model: inputs ['x'], outputs ['y']"),
    ("wrong_ckpt", "error: i2v.pth is not an AlacGAN generator"),
    ("unknown_model", "error: unknown engine or model 'nosuch': use flats, an installed model (none installed)"),
    ("raw_size", "error: --raw needs a size that is a multiple of 32, got 160x100"),
    ("no_hints_flats", "error: no hints: paint color strokes on the hint layer"),
    ("output_dir", "error: output folder does not exist: "),
])
def test_user_errors_are_one_line(tmp_path, capsys, official_ckpt, store_home, case, expected):
    lines, hints = lines_and_hints(tmp_path)
    out = str(tmp_path / "o.png")
    args = ["colorize", lines, "--hints", hints, "-o", out]
    if case == "missing":
        args[1] = str(tmp_path / "nope.png")
    elif case == "not_image":
        (tmp_path / "t.png").write_text("not a png")
        args[1] = str(tmp_path / "t.png")
    elif case == "size_mismatch":
        args[3] = save(tmp_path / "small.png", np.zeros((10, 10, 4), np.uint8))
    elif case == "bad_size":
        args += ["--size", "500"]
    elif case == "corrupt_onnx":
        (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage" * 10)
        args += ["--model", str(tmp_path / "broken.onnx")]
    elif case == "wrong_onnx":
        import onnx
        from onnx import TensorProto, helper
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(g), str(tmp_path / "other.onnx"))
        args += ["--model", str(tmp_path / "other.onnx")]
    elif case == "wrong_ckpt":
        args += ["--model", official_ckpt[1]]
    elif case == "unknown_model":
        args += ["--model", "nosuch"]
    elif case == "raw_size":
        args = ["colorize", lines, "-o", out, "--raw", "--model", official_ckpt[0], "--i2v", official_ckpt[1]]
    elif case == "no_hints_flats":
        args = ["colorize", lines, "-o", out, "--engine", "flats"]
    elif case == "output_dir":
        args[-1] = str(tmp_path / "no" / "dir" / "o.png")
    code, o, err = run_cli(capsys, *args)
    assert code == 1
    assert err.startswith("krita-alac: " + expected), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists(out)  # nothing half-written


def test_console_entry_point_and_module(tmp_path, store_home):
    env = dict(os.environ, KRITA_ALAC_HOME=str(store_home))
    r = subprocess.run([sys.executable, "-m", "krita_alac", "colorize", str(tmp_path / "none.png"), "-o",
                        str(tmp_path / "o.png")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().startswith("krita-alac: error: line art not found")
    r = subprocess.run([sys.executable, "-m", "krita_alac", "info"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "onnxruntime" in r.stdout and "installed models: none" in r.stdout


def test_cli_does_not_import_torch_for_flats(tmp_path, store_home):
    lines, hints = lines_and_hints(tmp_path)
    code = ("import sys; from krita_alac.engine.cli import main; "
            f"rc = main(['flats', {lines!r}, '--hints', {hints!r}, '-o', {str(tmp_path / 'o.png')!r}]); "
            "print('torch' in sys.modules, rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split()[-2:] == ["False", "0"], r.stderr


def test_hint_free_and_neural_line_models_through_the_command(tmp_path, capsys, store_home):
    from krita_alac.convert.cyclegan import ResnetGenerator, UResGenerator, save_generator
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    save_generator(UResGenerator(1, 3, ngf=4, n_down=3, n_blocks=1), str(tmp_path / "latest_net_G_A.pth"))
    save_generator(ResnetGenerator(3, 1, ngf=4, n_blocks=2), str(tmp_path / "latest_net_G_B.pth"))
    lines, hints = lines_and_hints(tmp_path)
    out = str(tmp_path / "auto.png")
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", str(tmp_path / "latest_net_G_A.pth"),
                           "-o", out, "--size", "64")
    assert code == 0, err
    assert o.startswith("Auto colors (latest_net_G_A.pth) on torch · CPU")
    assert "this model ignores color hints" in err
    a = np.array(Image.open(out))
    assert a.shape == (100, 160, 4) and (a[..., 3] == 255).all()
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", str(tmp_path / "latest_net_G_A.pth"),
                           "-o", out, "--size", "64", "--snap")
    assert code == 0, err
    assert tuple(np.array(Image.open(out))[50, 30]) == (*RED, 255)   # the hinted region keeps its hint color
    code, o, err = run_cli(capsys, "lines", lines, "-o", str(tmp_path / "l.png"), "--method", "neural",
                           "--model", str(tmp_path / "latest_net_G_B.pth"), "--size", "64")
    assert code == 0, err
    la = np.array(Image.open(tmp_path / "l.png"))
    assert la.shape == (100, 160, 4) and (la[..., :3] == 0).all()
    code, o, err = run_cli(capsys, "lines", lines, "-o", str(tmp_path / "none.png"), "--method", "neural")
    assert code == 1 and err.count("\n") == 1 and not os.path.exists(tmp_path / "none.png")
    assert err.startswith("krita-alac: error: no model with a line generator is installed (such as cycle-open): "
                          f"put its folder in {store_home / 'models'}, or name a color->sketch generator file "
                          "(--model G_B.onnx or latest_net_G_B.pth)"), err


def colored_picture(tmp_path, h=90, w=120):
    """An opaque colored picture with dark outlines, as Extract line art gets it."""
    pic = np.full((h, w, 4), 255, np.uint8)
    pic[15:70, 20:100, :3] = (200, 60, 40)
    pic[15:18, 20:100, :3] = 0
    pic[40:80, 60:110, :3] = (40, 90, 210)
    return save(tmp_path / "picture.png", pic), pic


def test_neural_lines_default_to_the_installed_line_model(tmp_path, capsys, store_home, cycle_model):
    import json
    import shutil
    from krita_alac.engine.image2image import neural_lines
    shutil.copytree(cycle_model, store_home / "models" / "cycle-open")
    meta = json.loads((store_home / "models" / "cycle-open" / "model.json").read_text())
    g_b = str(store_home / "models" / "cycle-open" / meta["lines"])
    path, pic = colored_picture(tmp_path)
    out = str(tmp_path / "lines.png")
    code, o, err = run_cli(capsys, "lines", path, "-o", out, "--method", "neural")
    assert code == 0, err
    assert o.strip() == f"Lines (cycle-open) on onnxruntime · CPU at {meta['size']} px -> {out}"
    got = np.array(Image.open(out))
    # Black on transparency, the input's size, the ink the generator draws at the model's own size.
    assert got.shape == (90, 120, 4) and (got[..., :3] == 0).all()
    want = neural_lines(pic, g_b, size=meta["size"], backend="onnx", device="cpu")
    assert np.array_equal(got, want)
    assert got[..., 3].std() > 0 and not np.array_equal(got, neural_lines(pic, g_b, size=128))
    code, o, err = run_cli(capsys, "info")
    assert code == 0 and "cycle-open: cycle-open [image2image] cycle-open.onnx + line generator " \
                         "cycle-open-lines.onnx, working size 64" in o
    # The model named by its id, another size, on white.
    code, o, err = run_cli(capsys, "lines", path, "-o", out, "--method", "neural", "--model", "cycle-open",
                           "--size", "128", "--white")
    assert code == 0, err
    white = np.array(Image.open(out))
    ink = neural_lines(pic, g_b, size=128)[..., 3]
    assert (white[..., 3] == 255).all() and np.array_equal(white[..., 0], 255 - ink)
    # An installed model without a line generator, an unknown id.
    (store_home / "models" / "plain").mkdir()
    shutil.copy(store_home / "models" / "cycle-open" / meta["onnx"], store_home / "models" / "plain" / "g.onnx")
    (store_home / "models" / "plain" / "model.json").write_text(json.dumps({"id": "plain", "kind": "image2image",
                                                                             "onnx": "g.onnx"}))
    for model, msg in (("plain", "the model 'plain' has no line generator (its model.json names no \"lines\" file)"),
                       ("nosuch", "unknown line model 'nosuch': use an installed model with a line generator "
                                  "(cycle-open) or a model file")):
        code, o, err = run_cli(capsys, "lines", path, "-o", str(tmp_path / "x.png"), "--method", "neural",
                               "--model", model)
        assert code == 1 and err == f"krita-alac: error: {msg}\n" and not os.path.exists(tmp_path / "x.png")


def test_cycle_open_colors_without_hints(tmp_path, capsys, store_home, cycle_model):
    import shutil
    from krita_alac.engine.image2image import auto_colors
    shutil.copytree(cycle_model, store_home / "models" / "cycle-open")
    lines, _ = lines_and_hints(tmp_path)
    out = str(tmp_path / "auto.png")
    code, o, err = run_cli(capsys, "colorize", lines, "--model", "cycle-open", "-o", out)
    assert code == 0, err
    assert o.startswith("Auto colors (cycle-open) on onnxruntime · CPU at 64 px")
    got = np.array(Image.open(out))
    want = auto_colors(np.array(Image.open(lines)), str(store_home / "models" / "cycle-open" / "cycle-open.onnx"),
                       size=64)
    assert got.shape == (100, 160, 4) and (got[..., 3] == 255).all() and np.array_equal(got, want)


def test_model_card_decides_snap_unless_the_command_does(tmp_path, capsys, store_home, reference_onnx):
    import json
    import shutil
    folder = store_home / "models" / "snappy"
    folder.mkdir(parents=True)
    shutil.copy(reference_onnx.path, folder / "model.onnx")
    (folder / "model.json").write_text(json.dumps({"id": "snappy", "onnx": "model.onnx", "snap": True}))
    lines, hints = lines_and_hints(tmp_path)
    out = str(tmp_path / "o.png")
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", "snappy", "-o", out,
                           "--size", "64")
    assert code == 0, err
    assert o.startswith("AlacGAN (snappy) + flats and shading on ") and " at 64 px: " in o
    px = np.array(Image.open(out))[45, 30].astype(int)                # the hint's pixels keep its color
    assert np.abs(px[:3] - RED).max() <= 3 and px[3] == 255
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", "snappy", "-o", out,
                           "--size", "64", "--no-snap")
    assert code == 0, err
    assert o.startswith("AlacGAN (snappy) on ")
    assert tuple(np.array(Image.open(out))[50, 30]) != (*RED, 255)
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", "snappy", "-o", out,
                           "--size", "64", "--snap")
    assert code == 0 and o.startswith("AlacGAN (snappy) + flats on ")
    assert tuple(np.array(Image.open(out))[50, 30]) == (*RED, 255)   # snapped: the whole region
    code, o, err = run_cli(capsys, "colorize", lines, "--hints", hints, "--model", "snappy", "-o", out,
                           "--size", "64", "--layers")
    assert code == 0, err
    from krita_alac.engine.compose import grain_merge
    flats, shading = (np.array(Image.open(str(tmp_path / f"o-{n}.png"))) for n in ("flats", "shading"))
    assert "layer Shading (grain_merge)" in o
    assert np.abs(grain_merge(flats, shading).astype(int) - np.array(Image.open(out)).astype(int)).max() <= 1


def test_neural_lines_use_the_line_generators_own_size(tmp_path, capsys, store_home, cycle_model):
    """model.json "lines_size" (the line generator's best working size) wins over "size"."""
    import json
    import shutil
    from krita_alac.engine.image2image import neural_lines
    folder = store_home / "models" / "cycle-open"
    shutil.copytree(cycle_model, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["lines_size"] = 96
    (folder / "model.json").write_text(json.dumps(meta))
    path, pic = colored_picture(tmp_path)
    out = str(tmp_path / "lines.png")
    code, o, err = run_cli(capsys, "lines", path, "-o", out, "--method", "neural")
    assert code == 0, err
    assert o.strip() == f"Lines (cycle-open) on onnxruntime · CPU at 96 px -> {out}"
    want = neural_lines(pic, str(folder / meta["lines"]), size=96, backend="onnx", device="cpu")
    assert np.array_equal(np.array(Image.open(out)), want)
