"""Test-only plugin: drives the krita_alac docker inside the full Krita GUI.

Steps run from timers (never blocking Krita): open a document, show the
docker, press Colorize, wait, take a screenshot, try undo/redo, press
Colorize again, try Auto, press Extract line art (and undo it, and once on an
empty layer, and once with the Neural method, its source and result pixels
dumped to $KRITA_ALAC_GUI_DUMP), write facts to $KRITA_ALAC_GUI_OUT/gui.json, quit Krita.
"""
import json
import os
import time
import traceback

from krita import Krita
from PyQt5.QtCore import QByteArray, QElapsedTimer, QTimer
from PyQt5.QtWidgets import QApplication, QDockWidget

OUT = os.environ.get("KRITA_ALAC_GUI_OUT", "/tmp")
N = 1024
facts = {"steps": []}
_keep = []


def save():
    with open(os.path.join(OUT, "gui.json"), "w") as f:
        json.dump(facts, f, indent=1, default=str)


def layer_names(doc):
    return [n.name() for n in doc.rootNode().childNodes()]


def box_doc():
    k = Krita.instance()
    doc = k.createDocument(N, N, "gui probe", "RGBA", "U8", "", 72.0)
    lines = doc.createNode("Lines", "paintlayer")
    doc.rootNode().addChildNode(lines, None)
    buf = bytearray(N * N * 4)
    ink = b"\x00\x00\x00\xff" * N
    for y in range(N):
        if y in range(200, 206) or y in range(800, 806):
            buf[(y * N + 200) * 4:(y * N + 806) * 4] = ink[:606 * 4]
        elif 200 <= y <= 806:
            for x in (200, 800):
                buf[(y * N + x) * 4:(y * N + x + 6) * 4] = ink[:24]
    lines.setPixelData(QByteArray(bytes(buf)), 0, 0, N, N)
    hints = doc.createNode("Hints", "paintlayer")
    doc.rootNode().addChildNode(hints, None)
    hb = bytearray(N * N * 4)
    for y in range(480, 500):
        hb[(y * N + 480) * 4:(y * N + 500) * 4] = bytes((30, 200, 40, 255)) * 20   # BGRA: green-yellow
    for y in range(50, 60):
        hb[(y * N + 50) * 4:(y * N + 60) * 4] = bytes((200, 60, 30, 255)) * 10    # blue
    hints.setPixelData(QByteArray(bytes(hb)), 0, 0, N, N)
    return doc, lines, hints


class Probe:
    def __init__(self):
        self.doc = None
        self.docker = None
        self.clock = QElapsedTimer()
        self.gap = 0
        self.last = 0

    def step(self, name, fn, delay=500):
        def run():
            facts["steps"].append(name)
            try:
                fn()
            except Exception:
                facts.setdefault("errors", []).append(f"{name}: {traceback.format_exc()}")
                self.quit()
            save()
        QTimer.singleShot(delay, run)

    def start(self):
        self.step("open", self.open, 1500)

    def open(self):
        k = Krita.instance()
        self.doc, self.lines, self.hints = box_doc()
        win = k.activeWindow()
        win.addView(self.doc)
        self.doc.setActiveNode(self.lines)
        qwin = win.qwindow()
        dock = qwin.findChild(QDockWidget, "krita_alac_docker")
        facts["docker_found"] = dock is not None
        dock.show()
        dock.raise_()
        from krita_alac.plugin import docker
        self.docker = docker.current_docker()
        facts["plugin_module"] = docker.__file__
        self.step("inspect", self.inspect, 2000)

    def inspect(self):
        d = self.docker
        facts["line_choice"] = d.line_combo.currentText().strip()
        facts["hint_choice"] = d.hint_combo.currentText().strip()
        facts["engines"] = [d.engine_combo.itemText(i) for i in range(d.engine_combo.count())]
        facts["colors"] = [(d.colors_combo.itemText(i), d.colors_combo.itemData(i))
                           for i in range(d.colors_combo.count())]
        facts["colors_enabled"], facts["layers_enabled"] = d.colors_combo.isEnabled(), d.layers_check.isEnabled()
        facts["options"] = d.options()
        facts["line_methods"] = [(d.line_method_combo.itemText(i), d.line_method_combo.itemData(i))
                                 for i in range(d.line_method_combo.count())]
        facts["line_method"] = d.line_method_combo.currentData()
        from krita_alac.plugin import settings
        d.layers_check.setChecked(True)          # saved at once, like every docker setting
        facts["layers_saved"] = settings.load().get("layers")
        d.layers_check.setChecked(False)
        act = Krita.instance().action("krita_alac_colorize")
        facts["action_found"] = act is not None
        if act is not None:
            mine = act.shortcut().toString()
            facts["action_shortcut"] = mine
            facts["shortcut_clashes"] = [a.objectName() for a in Krita.instance().actions()
                                         if a is not act and mine and a.shortcut().toString() == mine]
        for key, name in (("lines_", "krita_alac_extract_lines"),):
            act = Krita.instance().action(name)
            facts[key + "action_found"] = act is not None
            if act is not None:
                mine = act.shortcut().toString()
                facts[key + "action_text"] = act.text()
                facts[key + "action_shortcut"] = mine
                facts[key + "shortcut_clashes"] = [a.objectName() for a in Krita.instance().actions()
                                                   if a is not act and mine and a.shortcut().toString() == mine]
        facts["layers_before"] = layer_names(self.doc)
        self.click("first", self.after_first)

    def click(self, tag, then, button=None):
        """Press Colorize (or another button) the way a user does and watch the GUI heartbeat."""
        self.gap, self.clock = 0, QElapsedTimer()
        self.clock.start()
        self.last = 0
        hb = QTimer()
        hb.setInterval(10)

        def beat():
            now = self.clock.elapsed()
            self.gap = max(self.gap, now - self.last)
            self.last = now
        hb.timeout.connect(beat)
        hb.start()
        _keep.append(hb)
        t0 = time.perf_counter()
        (button or self.docker.colorize_btn).click()

        def wait():
            if self.docker.job is not None and time.perf_counter() - t0 < 120:
                QTimer.singleShot(50, wait)
                return
            hb.stop()
            facts[tag] = {"seconds": time.perf_counter() - t0, "max_gap_ms": self.gap,
                          "status": self.docker.status.text(), "layers": layer_names(self.doc)}
            self.step(tag, then, 300)
        QTimer.singleShot(50, wait)

    def after_first(self):
        win = Krita.instance().activeWindow().qwindow()
        QApplication.processEvents()
        shot = QApplication.primaryScreen().grabWindow(0)
        path = os.path.join(OUT, "krita_alac_docker.png")
        facts["screenshot"] = path if shot.save(path) else None
        facts["window_size"] = [win.width(), win.height()]
        self.trigger("edit_undo", "after_undo_1", lambda: self.trigger("edit_redo", "after_redo_1", self.second))

    def trigger(self, action, tag, then):
        Krita.instance().action(action).trigger()

        def record():
            self.doc.waitForDone()
            facts[tag] = layer_names(self.doc)
            then()
        QTimer.singleShot(700, record)

    def second(self):
        self.click("second", lambda: self.trigger(
            "edit_undo", "after_undo_2a", lambda: self.trigger("edit_undo", "after_undo_2b", self.auto)))

    def auto(self):
        """Auto: turn it on, change the hints like a brush stroke would, wait."""
        # Redo both steps of the re-run (remove the old result, add the new one).
        self.trigger("edit_redo", "after_redo_2", lambda: self.trigger("edit_redo", "after_redo_2b", lambda: None))
        self.docker.auto_check.setChecked(True)
        self.auto_before = self.docker.status.text()
        facts["auto_result_before"] = self.result_id()

        def paint():
            facts["auto_layers_before"] = layer_names(self.doc)
            hb = bytearray(self.hints.pixelData(0, 0, N, N))
            for y in range(600, 620):
                hb[(y * N + 300) * 4:(y * N + 320) * 4] = bytes((40, 40, 220, 255)) * 20   # red stroke
            self.hints.setPixelData(QByteArray(bytes(hb)), 0, 0, N, N)
            self.doc.refreshProjection()
            QTimer.singleShot(4000, check)

        def check():
            facts["auto_result_after"] = self.result_id()
            facts["auto_status"] = self.docker.status.text()
            facts["auto_layers"] = layer_names(self.doc)
            self.docker.auto_check.setChecked(False)
            self.step("extract", self.extract, 300)
        QTimer.singleShot(2500, paint)

    def extract(self):
        """Extract line art from the (colored) Hints layer with the docker's button; undo it."""
        self.doc.setActiveNode(self.hints)
        facts["extract_layers_before"] = layer_names(self.doc)

        def after():
            # The new "Line art (XDoG)" layer is active-adjacent, but the docker's choices stay.
            facts["line_choice_after_extract"] = self.docker.line_combo.currentText().strip()
            facts["hint_choice_after_extract"] = self.docker.hint_combo.currentText().strip()
            self.trigger("edit_undo", "extract_after_undo", lambda: self.step("extract_empty", self.extract_empty, 300))
        QTimer.singleShot(500, lambda: self.click("extract", after, self.docker.extract_btn))

    def extract_empty(self):
        empty = self.doc.createNode("Empty", "paintlayer")
        self.doc.rootNode().addChildNode(empty, None)
        self.doc.setActiveNode(empty)

        def press():
            self.docker.extract_btn.click()
            facts["extract_empty_status"] = self.docker.status.text()
            facts["extract_empty_layers"] = layer_names(self.doc)
            self.step("extract_neural", self.extract_neural, 300)
        QTimer.singleShot(500, press)

    def extract_neural(self):
        """Extract line art from the Hints layer with the Neural method (the installed line model)."""
        from krita_alac.plugin import krita_io, settings
        d = self.docker
        self.doc.setActiveNode(self.hints)
        facts["neural_layers_before"] = layer_names(self.doc)
        d.line_method_combo.setCurrentIndex(d.line_method_combo.findData("neural"))
        facts["neural_thickness_enabled"] = d.thickness_spin.isEnabled()
        facts["neural_saved"] = settings.load().get("line_method")
        dump = os.environ.get("KRITA_ALAC_GUI_DUMP")

        def after():
            from krita_alac.plugin import krita_api
            rec = krita_api.load_records(self.doc, "lines").get(krita_io.node_id(self.hints), {})
            node = krita_io.find_node(self.doc, rec.get("result", ""))
            facts["neural_result"] = node.name() if node is not None else None
            if dump and node is not None:
                for name, n in (("neural_source.bgra", self.hints), ("neural_result.bgra", node)):
                    with open(os.path.join(dump, name), "wb") as f:
                        f.write(krita_io.read_bgra8(n, (0, 0, N, N)))
            self.finish()
        QTimer.singleShot(300, lambda: self.click("extract_neural", after, d.extract_btn))

    def result_id(self):
        from krita_alac.plugin import krita_api
        rec = krita_api.load_records(self.doc).get(self.lines.uniqueId().toString(), {})
        return rec.get("result")

    def finish(self):
        facts["done"] = True
        self.quit()

    def quit(self):
        save()
        for doc in Krita.instance().documents():
            doc.setModified(False)
        QTimer.singleShot(200, QApplication.instance().quit)


probe = Probe()
_keep.append(probe)


def _on_window(*_):
    probe.start()


Krita.instance().notifier().windowCreated.connect(_on_window)
