"""The artist's loop in the real Krita GUI, driven by real X input (#18, #15).

Krita 5.1 runs under Xvfb with the plugin installed from its zip by Krita's
importer and opens examples/lineart.png as a document (one layer,
"Background").  Everything the artist does goes through xdotool: clicks on the
docker's New, Colorize and Auto, brush strokes on the canvas, Ctrl+Z.  A
test-only plugin (tests/krita/loop_probe) reports the state (layer stack,
active layer, keyboard focus, pixels, where the buttons are) and does setup
that is not part of the loop (window size, showing the docker, the brush
color).  Screenshots go to test-artifacts/ (or $KRITA_ALAC_ARTIFACTS).

The loop: New -> paint -> Colorize -> paint -> Colorize -> Auto on, paint x3
(each re-colorizes our layer in place) -> Ctrl+Z (the last stroke is undone
and Auto recolors back); then a hand-painted fix on the result survives
re-runs with Auto on and off.
"""
import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from kritahelp import ROOT, krita_env
from test_plugin_zip import krita_importer

PROBE = os.path.join(ROOT, "tests", "krita", "loop_probe")
LINEART = os.path.join(ROOT, "examples", "lineart.png")
CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
STACK = ["Flats", "Background", "Hints"]          # bottom to top

SKY, HILLS, ROOF, WALL, SUN = (110, 170, 240), (90, 170, 70), (180, 50, 40), (230, 210, 170), (255, 205, 40)
FIX = (250, 0, 250)
PLUM = (120, 60, 200)
# Image points inside the regions (examples/make_examples.py draws them).
P_SKY, P_HILLS, P_ROOF, P_WALL, P_SUN, P_FIX = (200, 60), (60, 600), (510, 300), (600, 500), (820, 140), (250, 140)


class Krita:
    """Krita under Xvfb; real input through xdotool, state through the probe."""

    def __init__(self, tmp, artifacts):
        self.tmp, self.artifacts = tmp, artifacts
        self.dir = os.path.join(tmp, "loop")
        os.makedirs(self.dir)
        self.seq = 0
        self.procs = []
        self.map = None
        self.log = os.path.join(tmp, "krita.log")

    def start(self):
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(xvfb)
        self.display = ":" + xvfb.stdout.readline().decode().strip()
        env = krita_env(self.tmp, HOME=self.tmp, KRITA_ALAC_LOOP=self.dir, DISPLAY=self.display)
        env.pop("PYTHONPATH")            # Krita must load the *installed* plugin
        env.pop("QT_QPA_PLATFORM", None)
        self.env = env
        out = subprocess.run(["python3", os.path.join(ROOT, "build_plugin.py"), os.path.join(self.tmp, "dist")],
                             capture_output=True, text=True, check=True).stdout.strip()
        resources = os.path.join(env["XDG_DATA_HOME"], "krita")
        os.makedirs(resources, exist_ok=True)
        krita_importer().PluginImporter(out, resources, lambda p: True).import_all()
        pykrita = os.path.join(resources, "pykrita")
        shutil.copy(os.path.join(PROBE, "krita_alac_loopprobe.desktop"), pykrita)
        shutil.copytree(os.path.join(PROBE, "krita_alac_loopprobe"), os.path.join(pykrita, "krita_alac_loopprobe"))
        with open(os.path.join(env["XDG_CONFIG_HOME"], "kritarc"), "w") as f:
            f.write("[python]\nenable_krita_alac=true\nenable_krita_alac_loopprobe=true\n")
        home = env["KRITA_ALAC_HOME"]
        os.makedirs(home, exist_ok=True)
        with open(os.path.join(home, "settings.json"), "w") as f:
            json.dump({"engine": "flats"}, f)    # exact colors to check; the default engine is slower on a CPU
        doc = os.path.join(self.tmp, "lineart.png")
        shutil.copy(LINEART, doc)
        with open(self.log, "w") as log:
            self.procs.append(subprocess.Popen(["krita", "--nosplash", doc], env=env, stdout=log,
                                               stderr=subprocess.STDOUT))

    def stop(self):
        try:
            self.send("quit", timeout=10)
        except AssertionError:
            pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def krita_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-3000:]

    # -- the probe ---------------------------------------------------------------
    def send(self, cmd, timeout=60, **kw):
        self.seq += 1
        tmp = os.path.join(self.dir, "cmd.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"seq": self.seq, "cmd": cmd, **kw}, f)
        os.replace(tmp, os.path.join(self.dir, "cmd.json"))
        end = time.time() + timeout
        while time.time() < end:
            try:
                with open(os.path.join(self.dir, "state.json")) as f:
                    s = json.load(f)
                if s.get("seq") == self.seq:
                    assert "error" not in s, s["error"]
                    return s
            except (OSError, ValueError):
                pass
            if self.procs[-1].poll() is not None:
                raise AssertionError(f"Krita exited ({self.procs[-1].returncode}):\n{self.krita_log()}")
            time.sleep(0.1)
        raise AssertionError(f"the probe did not answer '{cmd}' within {timeout} s:\n{self.krita_log()}")

    def state(self, points=()):
        return self.send("state", points=[list(p) for p in points])

    def wait(self, pred, timeout=60, points=(), what="the state"):
        end = time.time() + timeout
        s = None
        while time.time() < end:
            s = self.state(points)
            if pred(s):
                return s
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}: {json.dumps(s)[:2000]}")

    def shot(self, name):
        return self.send("shot", dir=self.artifacts, name=name)["shot"]

    # -- real input ----------------------------------------------------------------
    def xdo(self, *args):
        subprocess.run(["xdotool", *map(str, args)], env={**os.environ, "DISPLAY": self.display}, check=True)

    def click(self, xy):
        self.xdo("mousemove", xy[0], xy[1])
        time.sleep(0.15)
        self.xdo("click", 1)
        time.sleep(0.3)

    def screen(self, x, y):
        (sx, ox), (sy, oy) = self.map
        return round(ox + x * sx), round(oy + y * sy)

    def stroke(self, a, b, steps=24):
        """A brush stroke from image point a to b: press, move, release."""
        pts = [self.screen(a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps)
               for i in range(steps + 1)]
        self.xdo("mousemove", *pts[0])
        time.sleep(0.2)
        self.xdo("mousedown", 1)
        for p in pts[1:]:
            time.sleep(0.02)
            self.xdo("mousemove", *p)
        time.sleep(0.1)
        self.xdo("mouseup", 1)
        time.sleep(0.4)

    def key(self, combo):
        self.xdo("key", combo)
        time.sleep(0.8)

    def calibrate(self):
        """Image -> screen: the line art's ink as drawn on the canvas against the ink in the PNG."""
        s = self.send("grab_canvas")
        shown = np.asarray(Image.open(s["canvas_png"]).convert("RGB")).astype(int)
        dark = shown.max(axis=2) < 90
        ys, xs = np.nonzero(dark)
        ink = np.asarray(Image.open(LINEART).convert("RGBA"))[..., 3] >= 128
        iy, ix = np.nonzero(ink)
        assert len(xs) > 1000, "the line art is not visible on the canvas"
        cx, cy, cw, ch = s["canvas"]
        assert xs.min() > 0 and ys.min() > 0 and xs.max() < cw - 1 and ys.max() < ch - 1, \
            "the page does not fit in the view"
        sx = (xs.max() - xs.min()) / (ix.max() - ix.min())
        sy = (ys.max() - ys.min()) / (iy.max() - iy.min())
        self.map = ((sx, cx + xs.min() - ix.min() * sx), (sy, cy + ys.min() - iy.min() * sy))
        return self.map


def rgb(px):
    """[B, G, R, A] (Krita's RGBA 8-bit order) -> [R, G, B, A]."""
    return [px[2], px[1], px[0], px[3]]


def close(px, color, tol=4):
    return px[3] == 255 and all(abs(a - b) <= tol for a, b in zip(rgb(px), color))


def names(s):
    return [n for n, *_ in s["layers"]]


def loop_facts(s):
    """The facts every step of the loop must keep."""
    return {"stack": names(s), "active": s["active"], "focus": s["focus"],
            "hints_visible": [v for n, _, v, _ in s["layers"] if n == "Hints"] == [True],
            "line_choice": s["docker"]["line"], "hint_choice": s["docker"]["hint"],
            "progress": s["docker"]["progress"]}


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    for tool in ("krita", "Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: the GUI loop test needs Krita, Xvfb and xdotool (see .ci/setup)")
    tmp = str(tmp_path_factory.mktemp("krita_loop"))
    artifacts = os.environ.get("KRITA_ALAC_ARTIFACTS") or os.path.join(ROOT, "test-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    k = Krita(tmp, artifacts)
    k.start()
    facts = {"steps": []}
    try:
        run_loop(k, facts)
    except AssertionError as e:
        facts["failure"] = str(e)
        try:
            facts["failure_shot"] = k.shot("loop_failure")
        except AssertionError:
            pass
    finally:
        k.stop()
    with open(os.path.join(artifacts, "loop.json"), "w") as f:
        json.dump(facts, f, indent=1)
    return facts


def result_id(s, name="Flats"):
    ids = [i for n, i, *_ in s["layers"] if n == name]
    return ids[0] if ids else None


def run_loop(k, facts):
    pts = [P_SKY, P_HILLS, P_ROOF, P_WALL, P_SUN, P_FIX]
    k.wait(lambda s: s.get("doc_size") == [960, 720], timeout=120, what="Krita to open the PNG")
    facts["setup"] = k.send("setup")
    time.sleep(2)
    # No window manager under Xvfb: give Krita's window the X input focus as one would by clicking it.
    k.xdo("windowfocus", facts["setup"]["window_id"])
    time.sleep(1)
    c = k.state()["canvas"]
    k.xdo("mousemove", c[0] + c[2] // 2, c[1] + c[3] // 2)
    k.key("2")                         # Krita's canvas shortcut: zoom to fit the page
    k.xdo("mousemove", c[0] + c[2] + 50, c[1] + 20)   # the brush outline off the canvas before the grab
    time.sleep(1.0)
    s = k.wait(lambda s: s["ready"] and s.get("canvas") and s.get("buttons"), what="the docker")
    facts["opened"] = names(s)
    facts["opened_docker"] = s["docker"]
    facts["map"] = k.calibrate()

    # New: a hint layer above the line art, active.
    k.click(s["buttons"]["new"])
    s = k.wait(lambda s: "Hints" in names(s), what="the New hint layer")
    facts["after_new"] = loop_facts(s)
    # Paint the sky, Colorize.
    k.send("color", rgb=list(SKY), size=12)
    k.stroke((120, 120), (300, 110))
    s = k.state()
    facts["hints_bounds_1"] = s.get("hints_bounds")
    k.click(s["buttons"]["colorize"])
    s = k.wait(lambda s: result_id(s) and not s["docker"]["busy"], points=pts, what="the first Colorize")
    time.sleep(1.0)
    s = k.state(pts)
    facts["first"] = {**loop_facts(s), "sky": rgb(s["pixels"]["Flats"][0]), "status": s["docker"]["status"],
                      "sky_ok": close(s["pixels"]["Flats"][0], SKY)}
    k.shot("loop_1_first_colorize")
    # Paint the hills, Colorize again.
    k.send("color", rgb=list(HILLS))
    k.stroke((100, 545), (300, 560))
    before = result_id(s)
    k.click(s["buttons"]["colorize"])
    s = k.wait(lambda s: result_id(s) not in (None, before) and not s["docker"]["busy"], points=pts,
               what="the second Colorize")
    time.sleep(1.0)
    s = k.state(pts)
    facts["second"] = {**loop_facts(s), "hills_ok": close(s["pixels"]["Flats"][1], HILLS),
                       "sky_ok": close(s["pixels"]["Flats"][0], SKY), "status": s["docker"]["status"]}
    # Auto on; three strokes, each re-colorizes.
    k.click(s["buttons"]["auto"])
    s = k.wait(lambda s: s["docker"]["auto"], what="Auto on")
    facts["autos"] = []
    for color, a, b, at in ((ROOF, (440, 285), (580, 300), 2), (WALL, (400, 480), (460, 500), 3),
                            (SUN, (800, 110), (840, 125), 4)):
        before = result_id(s)
        k.send("color", rgb=list(color))
        k.stroke(a, b)
        s = k.wait(lambda s: result_id(s) and close(s["pixels"]["Flats"][at], color) and not s["docker"]["busy"],
                   points=pts, timeout=60, what="an Auto re-run")
        time.sleep(1.0)
        s = k.state(pts)
        facts["autos"].append({**loop_facts(s), "color_ok": close(s["pixels"]["Flats"][at], color),
                               "earlier_ok": close(s["pixels"]["Flats"][0], SKY)
                               and close(s["pixels"]["Flats"][1], HILLS),
                               "same_layer": result_id(s) == before, "status": s["docker"]["status"]})
    k.shot("loop_2_after_auto")
    # Ctrl+Z on the canvas: undoes the last stroke (the sun); Auto recolors back, in place.
    hints_before = s.get("hints_bounds")
    before = result_id(s)
    c = s["canvas"]
    k.xdo("mousemove", c[0] + c[2] // 2, c[1] + c[3] // 2)
    k.key("ctrl+z")
    s = k.wait(lambda s: s.get("hints_bounds") != hints_before and result_id(s)
               and not close(s["pixels"]["Flats"][4], SUN) and not s["docker"]["busy"], points=pts, timeout=30,
               what="Ctrl+Z to undo the sun stroke and Auto to recolor")
    time.sleep(1.0)
    s = k.state(pts)
    facts["undo"] = {**loop_facts(s), "same_layer": result_id(s) == before,
                     "sun_gone": not close(s["pixels"]["Flats"][4], SUN),
                     "earlier_ok": close(s["pixels"]["Flats"][2], ROOF) and close(s["pixels"]["Flats"][3], WALL)}
    k.shot("loop_3_after_ctrl_z")

    # Edited results are kept (#15): Colorize, paint a fix on the result, re-run with Auto on and off.
    k.click(s["buttons"]["colorize"])
    s = k.wait(lambda s: result_id(s) and not s["docker"]["busy"], points=pts, what="Colorize after undo")
    time.sleep(1.0)     # an artist's next click comes later than the plugin's last re-activation (0.4 s)
    fixed = result_id(s)
    k.send("activate", name="Flats")
    k.send("color", rgb=list(FIX), size=20)
    k.stroke((240, 140), (262, 140))
    k.send("activate", name="Hints")
    k.send("color", rgb=list(WALL), size=12)
    k.stroke((560, 520), (600, 530))       # a hint stroke: Auto re-runs
    s = k.wait(lambda s: "Flats (edited)" in names(s) and result_id(s) and not s["docker"]["busy"],
               points=pts, what="the re-run after the fix")
    time.sleep(1.0)
    s = k.state(pts)
    facts["edited"] = [{**loop_facts(s), "kept_id": result_id(s, "Flats (edited)") == fixed,
                        "fix": rgb(s["pixels"]["Flats (edited)"][5]), "status": s["docker"]["status"]}]
    k.send("color", rgb=list(PLUM))
    before = result_id(s)
    k.stroke((450, 290), (560, 300))
    s = k.wait(lambda s: result_id(s) and close(s["pixels"]["Flats"][2], PLUM) and not s["docker"]["busy"],
               points=pts, what="a second re-run after the fix")
    time.sleep(1.0)
    s = k.state(pts)
    facts["edited"].append({**loop_facts(s), "kept_id": result_id(s, "Flats (edited)") == fixed,
                            "fix": rgb(s["pixels"]["Flats (edited)"][5]), "same_layer": result_id(s) == before})
    k.click(s["buttons"]["auto"])               # Auto off, Colorize by hand
    s = k.wait(lambda s: not s["docker"]["auto"], what="Auto off")
    before = result_id(s)
    k.click(s["buttons"]["colorize"])
    s = k.wait(lambda s: result_id(s) not in (None, before) and not s["docker"]["busy"], points=pts,
               what="Colorize with Auto off")
    facts["edited"].append({**loop_facts(s), "kept_id": result_id(s, "Flats (edited)") == fixed,
                            "fix": rgb(s["pixels"]["Flats (edited)"][5])})
    k.shot("loop_4_edited_kept")
    # New again: a second, uniquely named hint layer becomes the hint choice.
    k.click(s["buttons"]["new"])
    s = k.wait(lambda s: "Hints 2" in names(s), what="a second New")
    facts["second_new"] = {"stack": names(s), "hint_choice": s["docker"]["hint"], "line_choice": s["docker"]["line"],
                           "active": s["active"]}
    # The chosen hint layer is deleted: the docker says so and does not pick another by itself.
    k.send("remove", name="Hints 2")
    s = k.wait(lambda s: "Hints 2" not in names(s) and "deleted" in s["docker"]["status"], timeout=10,
               what="the docker to notice the deleted layer")
    facts["deleted"] = {"status": s["docker"]["status"], "hint_choice": s["docker"]["hint"],
                        "line_choice": s["docker"]["line"]}
    facts["done"] = True


def check(facts, key):
    assert facts.get("done") or key in facts, facts.get("failure")
    return facts[key]


def steady(f, stack=STACK):
    """Bottom to top: result, line art, hints; Hints active and visible; the keyboard on the canvas."""
    assert f["stack"] == stack, f
    assert f["active"] == "Hints" and f["hints_visible"], f
    assert f["focus"] in CANVAS_CLASSES, f
    assert f["line_choice"] == "Background" and f["hint_choice"] == "Hints", f
    assert f["progress"] == 0, f                  # the bar is reset after a run


def test_loop_completed(loop):
    assert loop.get("done"), (loop.get("failure"), loop["steps"])


def test_png_opens_as_one_background_layer(loop):
    assert check(loop, "opened") == ["Background"]
    f = check(loop, "after_new")
    assert f["stack"] == ["Background", "Hints"] and f["active"] == "Hints"
    assert f["hint_choice"] == "Hints" and f["line_choice"] == "Background"


def test_first_and_second_colorize(loop):
    f = check(loop, "first")
    steady(f)
    assert f["sky_ok"], f["sky"]                   # the painted stroke's color fills the sky
    assert f["status"].startswith("Flats on CPU"), f["status"]
    f = check(loop, "second")
    steady(f)
    assert f["hills_ok"] and f["sky_ok"]


def test_auto_reruns_keep_the_stack(loop):
    autos = check(loop, "autos")
    assert len(autos) == 3
    for f in autos:
        steady(f)
        assert f["color_ok"] and f["earlier_ok"], f
        assert f["same_layer"] and "(updated)" in f["status"], f    # updated in place


def test_ctrl_z_undoes_the_stroke_and_auto_recolors(loop):
    f = check(loop, "undo")
    steady(f)
    assert f["same_layer"] and f["sun_gone"] and f["earlier_ok"], f


def test_hand_painted_fix_survives_reruns(loop):
    edits = check(loop, "edited")
    assert len(edits) == 3                       # Auto on twice, then Auto off
    for f in edits:
        steady(f, ["Flats (edited)", "Flats", "Background", "Hints"])
        assert f["kept_id"] and f["fix"] == list(FIX) + [255], f
    assert "kept as 'Flats (edited)'" in edits[0]["status"], edits[0]["status"]
    assert edits[1]["same_layer"]          # the new Flats, untouched, is updated in place


def test_new_makes_unique_hint_layers(loop):
    f = check(loop, "second_new")
    assert f["stack"] == ["Flats (edited)", "Flats", "Background", "Hints 2", "Hints"]
    assert f["hint_choice"] == "Hints 2" and f["line_choice"] == "Background" and f["active"] == "Hints 2"


def test_docker_controls_and_deleted_choice(loop):
    d = check(loop, "opened_docker")
    assert d["engine"] == "flats" and not d["size_enabled"] and not d["colors_enabled"] \
        and not d["layers_enabled"]   # nothing to set for Flats
    assert d["line"] == "Background"
    f = check(loop, "deleted")
    assert f["status"] == "The hint layer 'Hints 2' was deleted: choose another.", f
    assert f["hint_choice"] == "(none)" and f["line_choice"] == "Background"
