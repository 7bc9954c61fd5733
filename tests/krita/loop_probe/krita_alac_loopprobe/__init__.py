"""Test-only plugin for tests/test_krita_gui_loop.py: it *reports* Krita's
state (layer stack, active layer, keyboard focus, pixels, where the docker's
buttons and the canvas are on screen) and does the test's setup (show the
docker, the brush color); the test itself drives Krita with real X input
(xdotool): clicks on the docker's buttons, brush strokes, Ctrl+Z.

Protocol: the test writes $KRITA_ALAC_LOOP/cmd.json {"seq": n, "cmd": ..., ...};
this plugin answers in state.json {"seq": n, ...} (written atomically).
"""
import json
import os
import traceback

from krita import Krita, ManagedColor
from PyQt5.QtCore import QPoint, QTimer
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QApplication, QDockWidget, QWidget

DIR = os.environ.get("KRITA_ALAC_LOOP", "/tmp")
CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
_keep = []


def center(w):
    p = w.mapToGlobal(w.rect().center())
    return [p.x(), p.y()]


def box(check):
    """Where a check box's box is (its widget can be wider than box and label)."""
    p = check.mapToGlobal(QPoint(8, check.height() // 2))
    return [p.x(), p.y()]


def canvas_widget(qwin):
    for w in qwin.findChildren(QWidget):
        if w.metaObject().className() in CANVAS_CLASSES and w.isVisible():
            return w
    return None


class Probe:
    def __init__(self):
        self.seq = -1
        self.timer = QTimer()
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.poll)
        self.docker = None
        self.dock = None

    def start(self):
        self.timer.start()

    def doc(self):
        return Krita.instance().activeDocument()

    def poll(self):
        try:
            with open(os.path.join(DIR, "cmd.json")) as f:
                cmd = json.load(f)
        except (OSError, ValueError):
            return
        if cmd.get("seq", -1) <= self.seq:
            return
        self.seq = cmd["seq"]
        out = {"seq": self.seq}
        try:
            getattr(self, "cmd_" + cmd["cmd"])(cmd, out)
            out.update(self.state(cmd))
        except Exception:  # noqa: BLE001  reported to the test
            out["error"] = traceback.format_exc()
        tmp = os.path.join(DIR, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(out, f, default=str)
        os.replace(tmp, os.path.join(DIR, "state.json"))

    # -- setup ---------------------------------------------------------------
    def cmd_setup(self, cmd, out):
        """Full-screen window, the docker shown, the page fitted in the view."""
        k = Krita.instance()
        qwin = k.activeWindow().qwindow()
        qwin.setGeometry(0, 0, cmd.get("width", 1600), cmd.get("height", 1000))
        qwin.showMaximized()
        self.dock = qwin.findChild(QDockWidget, "krita_alac_docker")
        self.dock.show()
        self.dock.raise_()
        from krita_alac.plugin import docker
        self.docker = docker.current_docker()
        out["window_id"] = int(qwin.winId())

    def cmd_state(self, cmd, out):
        pass

    def cmd_color(self, cmd, out):
        """The brush's foreground color (what an artist picks in the color selector)."""
        view = Krita.instance().activeWindow().activeView()
        view.setForeGroundColor(ManagedColor.fromQColor(QColor(*cmd["rgb"]), view.canvas()))
        if cmd.get("size"):
            view.setBrushSize(float(cmd["size"]))
        out["brush_size"] = view.brushSize()

    def cmd_activate(self, cmd, out):
        doc = self.doc()
        node = doc.nodeByName(cmd["name"])
        doc.setActiveNode(node)

    def cmd_remove(self, cmd, out):
        """Delete a layer (as with the Layers docker's trash button)."""
        self.doc().nodeByName(cmd["name"]).remove()

    def cmd_grab_canvas(self, cmd, out):
        qwin = Krita.instance().activeWindow().qwindow()
        cw = canvas_widget(qwin)
        path = os.path.join(DIR, "canvas.png")
        cw.grab().save(path)
        out["canvas_png"] = path

    def cmd_shot(self, cmd, out):
        path = os.path.join(cmd["dir"], cmd["name"] + ".png")
        QApplication.primaryScreen().grabWindow(0).save(path)
        out["shot"] = path

    def cmd_quit(self, cmd, out):
        for d in Krita.instance().documents():
            d.setModified(False)
        QTimer.singleShot(300, QApplication.instance().quit)

    # -- the report ------------------------------------------------------------
    def state(self, cmd):
        k = Krita.instance()
        win = k.activeWindow()
        doc = self.doc()
        s = {"ready": doc is not None and self.docker is not None}
        if win is not None:
            cw = canvas_widget(win.qwindow())
            if cw is not None:
                p = cw.mapToGlobal(cw.rect().topLeft())
                s["canvas"] = [p.x(), p.y(), cw.width(), cw.height()]
        f = QApplication.focusWidget()
        s["focus"] = f.metaObject().className() if f is not None else None
        s["focus_in_docker"] = bool(f is not None and self.dock is not None and self.dock.isAncestorOf(f))
        if doc is not None:
            s["doc_size"] = [doc.width(), doc.height()]
            s["layers"] = [[n.name(), n.uniqueId().toString(), n.visible(), n.type()]
                           for n in doc.rootNode().childNodes()]
            a = doc.activeNode()
            s["active"] = a.name() if a is not None else None
            pts = cmd.get("points") or []
            s["pixels"] = {}
            for n in doc.rootNode().childNodes():
                if n.type() != "paintlayer":
                    continue
                s["pixels"][n.name()] = [list(bytes(n.pixelData(x, y, 1, 1)))[:4] for x, y in pts]
            hb = doc.nodeByName("Hints")
            if hb is not None:
                b = hb.bounds()
                s["hints_bounds"] = [b.x(), b.y(), b.width(), b.height()]
        d = self.docker
        if d is not None:
            s["docker"] = {"busy": d.job is not None, "status": d.status.text(), "progress": d.progress.value(),
                           "auto": d.auto_check.isChecked(), "line": d.line_combo.currentText().strip(),
                           "hint": d.hint_combo.currentText().strip(), "engine": d.engine_combo.currentData(),
                           "size_enabled": d.size_spin.isEnabled(), "colors_enabled": d.colors_combo.isEnabled(),
                           "layers_enabled": d.layers_check.isEnabled()}
            s["buttons"] = {"new": center(d.new_hints_btn), "colorize": center(d.colorize_btn),
                            "auto": box(d.auto_check), "extract": center(d.extract_btn)}
        return s


probe = Probe()
_keep.append(probe)
Krita.instance().notifier().windowCreated.connect(probe.start)
