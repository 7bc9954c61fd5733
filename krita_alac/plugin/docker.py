"""The Colorize docker: pick layers and engine, run, see what really ran;
and extract line art from the active (colored) layer.

Everything slow happens in the worker process; this widget only reads and
writes layers (krita_api) and reacts to the worker client's signals.
"""
from __future__ import annotations

import hashlib
import weakref

from krita import DockWidget, Krita
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import (QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                             QLabel, QMessageBox, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from . import krita_api, krita_io, settings, worker_client
from ..engine.errors import UserError

POLL_MS = 750          # Auto mode: how often the hint layer is looked at
THUMB = 192            # Auto mode: the hint signature is a hash of a thumbnail this big
FLATS = "flats"
DEFAULT_SIZE = 512     # working size of a model whose model.json names none
CPU_MAX_SIZE = 2048    # above this a CPU run takes minutes and many GB
GPU_MAX_SIZE = 4096
GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                 "CoreMLExecutionProvider")
# The worker's progress words, as an artist would say them.
PROGRESS_WORDS = {"line art features": "reading the line art", "colors": "painting colors",
                  "snapping to flats": "cleaning up into flat colors", "regions": "finding the regions"}
CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
# The Colors choices: the request's "compose" (None: the engine's default for the model,
# the shaded composition for models whose card recommends flats).
COLORS = (("Shaded", None), ("Flat regions only", "snap"), ("Network only", "raw"))
COMPOSE_WORDS = {"shade": "shaded", "snap": "flat regions", "raw": "network only"}
_dockers = []


def current_docker():
    """The docker of the active window, if it exists and is shown."""
    live = [d() for d in _dockers if d() is not None and d().isVisible()]
    win = Krita.instance().activeWindow()
    qwin = win.qwindow() if win is not None else None
    for d in live:
        if qwin is None or d.window() is qwin:
            return d
    return live[0] if live else None


# Model kinds (model.json "kind") that color without hints.
AUTO_KINDS = ("image2image", "cyclegan")


def _family(kind) -> str:
    return "Auto colors" if kind in AUTO_KINDS else "AlacGAN"


def model_choices(worker_info=None):
    """(label, engine id) for Flats and every installed model."""
    out = [("Flats (no model)", FLATS)]
    seen = set()
    try:
        from ..engine import store
        for m in store.installed_models():
            out.append((f"{_family(m.kind)}: {m.label}", m.id))
            seen.add(m.id)
    except Exception:  # noqa: BLE001  a broken model folder must not break the docker
        pass
    for m in (worker_info or {}).get("models", []):
        if m.get("id") not in seen:
            out.append((f"{_family(m.get('kind'))}: {m.get('name') or m.get('id')}", m.get("id")))
    return out


def line_methods(worker_info=None):
    """(label, method) for Extract line art: XDoG, and Neural when a model with a line
    generator is installed (the store's plain-Python part, or the worker's list)."""
    out = [("XDoG", "xdog")]
    try:
        from ..engine import store
        neural = store.default_lines_model() is not None
    except Exception:  # noqa: BLE001  a broken model folder must not break the docker
        neural = False
    if neural or any(m.get("lines") for m in (worker_info or {}).get("models", [])):
        out.append(("Neural", "neural"))
    return out


def default_engine():
    """The engine "auto" stands for: the default model (bundled alac-open first), else flats."""
    try:
        from ..engine import store
        m = store.default_model()
        return m.id if m is not None else FLATS
    except Exception:  # noqa: BLE001  a broken model folder must not break the docker
        return FLATS


def model_size(engine_id) -> int:
    """The model's own working size (model.json "size"), else DEFAULT_SIZE."""
    try:
        from ..engine import store
        m = store.find_model(engine_id)
        size = int((m.meta if m is not None else {}).get("size") or DEFAULT_SIZE)
    except Exception:  # noqa: BLE001  a broken model folder must not break the docker
        size = DEFAULT_SIZE
    return max(32, size // 32 * 32)


def clamp_size(size: int, rect, gpu: bool) -> int:
    """A working size the model takes (a multiple of 32), no bigger than the
    area to colorize (rounded up to 32) nor than the device can take."""
    w, h = rect[2], rect[3]
    canvas = (max(w, h) + 31) // 32 * 32
    size = (int(size) + 16) // 32 * 32
    return max(32, min(size, canvas, GPU_MAX_SIZE if gpu else CPU_MAX_SIZE))


def canvas_widget():
    """The canvas of the active view (where Ctrl+Z and the brush go), or None."""
    win = Krita.instance().activeWindow()
    qwin = win.qwindow() if win is not None else None
    if qwin is None:
        return None
    for cls in CANVAS_CLASSES:
        found = [wdg for wdg in qwin.findChildren(QWidget) if wdg.metaObject().className() == cls
                 and wdg.isVisible()]
        if found:
            return found[0]
    return None


def default_line_layer(doc):
    """The active layer, unless that is a hint layer: then the layer below it."""
    active = doc.activeNode()
    if active is None or not krita_api.is_hint_name(active.name()):
        return active
    below = [n for n in active.parentNode().childNodes()]
    ids = [krita_io.node_id(n) for n in below]
    i = ids.index(krita_io.node_id(active))
    return below[i - 1] if i > 0 else None


def hint_signature(node):
    """Cheap fingerprint of a layer's content: bounds plus a thumbnail hash."""
    if node is None:
        return None
    b = node.bounds()
    img = node.thumbnail(THUMB, THUMB)
    ptr = img.constBits()
    if ptr is None:
        return (b.x(), b.y(), b.width(), b.height())
    ptr.setsize(img.sizeInBytes())
    return (b.x(), b.y(), b.width(), b.height(), hashlib.md5(bytes(ptr)).hexdigest())


class ColorizeDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Colorize (krita_alac)")
        _dockers.append(weakref.ref(self))
        self.client = worker_client.shared()
        self.job = None
        self._doing = "Colorizing"   # what the job in flight does, for the status line
        self._layers_sig = None
        self._doc_sig = None
        self._auto_last = None       # hint signature of the last run (None: not known yet)
        self._auto_seen = None       # hint signature at the previous poll (debounce)
        self._choices = {}           # document key -> the artist's layer choices {"line", "hint", names}
        self._size_note = ""
        self._build()
        self.client.started.connect(self._on_worker_info)
        self.client.stateChanged.connect(self._on_worker_state)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    # -- widgets ----------------------------------------------------------
    def _build(self):
        cfg = settings.load()
        w = QWidget(self)
        box = QVBoxLayout(w)
        form = QFormLayout()
        self.line_combo = QComboBox()
        self.hint_combo = QComboBox()
        self.new_hints_btn = QPushButton("New")
        self.new_hints_btn.setToolTip("Add a transparent hint layer ('Hints', 'Hints 2'...) above the line art")
        self.new_hints_btn.clicked.connect(self.create_hint_layer)
        hint_row = QHBoxLayout()
        hint_row.addWidget(self.hint_combo, 1)
        hint_row.addWidget(self.new_hints_btn)
        self.engine_combo = QComboBox()
        self.size_spin = QSpinBox()
        self.size_spin.setRange(128, CPU_MAX_SIZE)
        self.size_spin.setSingleStep(32)
        self.size_spin.setValue(int(cfg.get("size") or DEFAULT_SIZE))
        self.size_spin.setToolTip("Working size (long side) of neural engines, a multiple of 32, at most the "
                                  "canvas size; Flats always work at full resolution")
        self.colors_combo = QComboBox()
        for label, mode in COLORS:
            self.colors_combo.addItem(label, mode)
        self.colors_combo.setCurrentIndex(max(0, self.colors_combo.findData(cfg.get("colors") or None)))
        self.colors_combo.setToolTip("Shaded: flat regions with the network's shading, hint colors exact "
                                     "(the model's default). Flat regions only: one color per region. "
                                     "Network only: the network's colors, resized to the canvas")
        self.layers_check = QCheckBox("Flats + Shading layers")
        self.layers_check.setToolTip("Put the result in two layers under the line art: 'Flats' (one color per "
                                     "region) and 'Shading' above it in Grain Merge mode")
        self.layers_check.setChecked(bool(cfg.get("layers")))
        self.auto_check = QCheckBox("Auto")
        self.auto_check.setToolTip("Colorize again whenever the hint layer changes")
        self.auto_check.setChecked(bool(cfg.get("auto")))
        opts = QHBoxLayout()
        opts.addWidget(self.layers_check)
        opts.addWidget(self.auto_check)
        form.addRow("Line art", self.line_combo)
        form.addRow("Hints", hint_row)
        form.addRow("Engine", self.engine_combo)
        form.addRow("Working size", self.size_spin)
        form.addRow("Colors", self.colors_combo)
        box.addLayout(form)
        box.addLayout(opts)
        run = QHBoxLayout()
        self.colorize_btn = QPushButton("Colorize")
        self.colorize_btn.clicked.connect(self.colorize)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        run.addWidget(self.colorize_btn, 1)
        run.addWidget(self.cancel_btn)
        box.addLayout(run)
        extract = QHBoxLayout()
        self.extract_btn = QPushButton("Extract line art")
        self.extract_btn.setToolTip("Extract line art from the active layer into a new layer "
                                    f"'{krita_api.LINES_NAME}' (or '{krita_api.LINE_METHODS['neural']}') above it")
        self.extract_btn.clicked.connect(lambda: self.extract_lines())
        self.line_method_combo = QComboBox()
        self.line_method_combo.setToolTip("XDoG: edges of the colors. Neural: the installed line model's "
                                          "color-to-sketch generator (cycle-open)")
        self._fill_line_methods(cfg.get("line_method") or "xdog")
        self.thickness_spin = QDoubleSpinBox()
        self.thickness_spin.setRange(0.1, 20.0)
        self.thickness_spin.setSingleStep(0.1)
        self.thickness_spin.setDecimals(1)
        self.thickness_spin.setValue(float(cfg.get("line_thickness") or 1.0))
        self.thickness_spin.setToolTip("Line thickness of Extract line art (1.0: thin lines)")
        extract.addWidget(self.extract_btn, 1)
        extract.addWidget(self.line_method_combo)
        extract.addWidget(QLabel("Thickness"))
        extract.addWidget(self.thickness_spin)
        box.addLayout(extract)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        box.addWidget(self.progress)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        box.addWidget(self.status)
        offers = QHBoxLayout()
        self.multiply_btn = QPushButton("Set line art to Multiply")
        self.multiply_btn.clicked.connect(self.set_multiply)
        self.flats_btn = QPushButton("Use Flats")
        self.flats_btn.clicked.connect(self.use_flats)
        self.setup_btn = QPushButton("Set up engine…")
        self.setup_btn.clicked.connect(self.open_setup)
        for b in (self.multiply_btn, self.flats_btn):
            b.hide()
            offers.addWidget(b)
        offers.addWidget(self.setup_btn)
        box.addLayout(offers)
        box.addStretch(1)
        self.setWidget(w)
        # Buttons and check boxes never take the keyboard focus: it stays on the canvas
        # (Ctrl+Z, tool shortcuts).
        for b in w.findChildren(QPushButton) + w.findChildren(QCheckBox):
            b.setFocusPolicy(Qt.NoFocus)
        self._fill_engines(cfg.get("engine") or "auto")
        self._engine_controls()
        self.engine_combo.currentIndexChanged.connect(self._on_engine_changed)
        self.line_combo.currentIndexChanged.connect(lambda *_: self._remember_choice("line"))
        self.hint_combo.currentIndexChanged.connect(lambda *_: self._remember_choice("hint"))
        self.colors_combo.currentIndexChanged.connect(lambda *_: self._engine_controls())
        for sig in (self.engine_combo.currentIndexChanged, self.size_spin.valueChanged,
                    self.colors_combo.currentIndexChanged, self.layers_check.toggled, self.auto_check.toggled,
                    self.thickness_spin.valueChanged, self.line_method_combo.currentIndexChanged):
            sig.connect(self._save_settings)
        self.line_method_combo.currentIndexChanged.connect(lambda *_: self._line_controls())
        self._line_controls()

    def _on_engine_changed(self, *_):
        """A model's own working size is the default when the artist picks it."""
        eid = self.engine_combo.currentData() or FLATS
        if eid != FLATS:
            self.size_spin.setValue(min(model_size(eid), self.size_spin.maximum()))
        self._engine_controls()

    def _engine_controls(self):
        """Working size, Colors and layers mean nothing to Flats, nor layers to the
        network alone; the size's limit follows the device."""
        neural = (self.engine_combo.currentData() or FLATS) != FLATS
        self.size_spin.setEnabled(neural)
        self.colors_combo.setEnabled(neural)
        self.layers_check.setEnabled(neural and self.colors_combo.currentData() != "raw")
        self.size_spin.setMaximum(GPU_MAX_SIZE if self._gpu() else CPU_MAX_SIZE)

    def _gpu(self) -> bool:
        return any(p in GPU_PROVIDERS for p in (self.client.info or {}).get("providers") or [])

    def _fill_engines(self, want=None):
        want = want or self.engine_combo.currentData() or FLATS
        if want == "auto":
            want = default_engine()
        self.engine_combo.blockSignals(True)
        self.engine_combo.clear()
        for label, eid in model_choices(self.client.info):
            self.engine_combo.addItem(label, eid)
        i = self.engine_combo.findData(want)
        self.engine_combo.setCurrentIndex(max(0, i))
        self.engine_combo.blockSignals(False)
        if hasattr(self, "size_spin"):
            self._engine_controls()

    def _fill_line_methods(self, want=None):
        want = want or self.line_method_combo.currentData() or "xdog"
        self.line_method_combo.blockSignals(True)
        self.line_method_combo.clear()
        for label, method in line_methods(self.client.info):
            self.line_method_combo.addItem(label, method)
        self.line_method_combo.setCurrentIndex(max(0, self.line_method_combo.findData(want)))
        self.line_method_combo.blockSignals(False)
        if hasattr(self, "thickness_spin"):
            self._line_controls()

    def _line_controls(self):
        """The thickness is XDoG's: the neural generator draws its own lines."""
        self.thickness_spin.setEnabled(self.line_method_combo.currentData() != "neural")

    def _save_settings(self, *_):
        try:
            settings.save({"engine": self.engine_combo.currentData() or FLATS, "size": self.size_spin.value(),
                           "colors": self.colors_combo.currentData() or "",
                           "layers": self.layers_check.isChecked(), "auto": self.auto_check.isChecked(),
                           "line_thickness": self.thickness_spin.value(),
                           "line_method": self.line_method_combo.currentData() or "xdog"})
        except OSError:
            pass

    # -- Krita hooks --------------------------------------------------------
    def canvasChanged(self, canvas):
        self._layers_sig = None
        self._auto_last = self._auto_seen = None
        self._refresh_layers()

    def _document(self):
        return Krita.instance().activeDocument()

    def _doc_key(self, doc):
        # Python wrappers of a document change on every call: key it by its root node's id.
        return krita_io.node_id(doc.rootNode()) if doc is not None else ""

    def _remember_choice(self, role):
        """The artist picked a layer in a box: that choice holds until they change it."""
        doc = self._document()
        if doc is None:
            return
        combo = self.line_combo if role == "line" else self.hint_combo
        node = self._selected(combo)
        c = self._choices.setdefault(self._doc_key(doc), {})
        c[role] = combo.currentData() or ""
        c[role + "_name"] = node.name() if node is not None else ""

    def _refresh_layers(self):
        """Refill the layer boxes when the layers change.  The choices change only
        when the artist changes them, or when the chosen layer is deleted (said in
        the status line); a document seen for the first time gets defaults."""
        doc = self._document()
        layers = krita_io.all_layers(doc) if doc is not None else []
        doc_key = self._doc_key(doc)
        sig = (doc_key, doc.fileName() if doc else "", [(krita_io.node_id(n), n.name(), d) for n, d in layers])
        if sig == self._layers_sig:
            return
        self._layers_sig = sig
        choice = self._choices.get(doc_key)
        if choice is None and doc is not None:
            line = default_line_layer(doc)
            hint = krita_api.find_hint_layer(doc, line)
            choice = self._choices[doc_key] = {
                "line": krita_io.node_id(line) if line is not None else "", "line_name": line.name() if line else "",
                "hint": krita_io.node_id(hint) if hint is not None else "", "hint_name": hint.name() if hint else ""}
        choice = choice or {}
        present = {krita_io.node_id(n): n.name() for n, _ in layers}
        gone = []
        for role, what in (("line", "line-art"), ("hint", "hint")):
            if choice.get(role) and choice[role] not in present:
                gone.append(f"The {what} layer '{choice.get(role + '_name', '')}' was deleted: choose another.")
                choice[role], choice[role + "_name"] = "", ""
            elif choice.get(role):
                choice[role + "_name"] = present[choice[role]]
        for combo, role in ((self.line_combo, "line"), (self.hint_combo, "hint")):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("(none)" if role == "hint" else "(choose a layer)", "")
            for n, depth in layers:
                if n.type() in krita_api.LAYER_TYPES:
                    combo.addItem("  " * depth + n.name(), krita_io.node_id(n))
            combo.setCurrentIndex(max(0, combo.findData(choice.get(role) or "")))
            combo.blockSignals(False)
        if gone:
            self.show_message("\n".join(gone), error=True)

    def _selected(self, combo):
        doc = self._document()
        return krita_io.find_node(doc, combo.currentData()) if doc is not None and combo.currentData() else None

    def _poll(self):
        if not self.isVisible():
            return
        try:
            self._refresh_layers()
            if self.auto_check.isChecked() and self.job is None:
                self._auto_tick()
        except Exception as e:  # noqa: BLE001  a poll must never raise into Krita
            self.show_message(f"{type(e).__name__}: {e}", error=True)

    def _auto_tick(self):
        sig = hint_signature(self._selected(self.hint_combo))
        if sig is None:
            return
        stable = sig == self._auto_seen        # unchanged for one poll: the stroke is done
        self._auto_seen = sig
        if not stable:
            return
        if self._auto_last is None:            # nothing run on this view yet: these hints are the baseline
            self._auto_last = sig
        elif sig != self._auto_last and self._selected(self.line_combo) is not None:
            # Hints changed since the last run (also strokes painted before Auto was turned on).
            self._auto_last = sig
            self.colorize(auto=True)

    def _on_worker_info(self, info):
        self._fill_engines()
        self._fill_line_methods()

    def _on_worker_state(self, state):
        if state == "starting":
            self.status.setText("Starting the engine worker…")

    # -- actions ------------------------------------------------------------
    def create_hint_layer(self):
        doc = self._document()
        line = self._selected(self.line_combo) or (doc.activeNode() if doc else None)
        if doc is None or line is None:
            self.show_message("Open a document and choose the line-art layer first.", error=True)
            return
        name = krita_api.unique_hint_name(doc)
        node = doc.createNode(name, "paintlayer")
        line.parentNode().addChildNode(node, line)   # transparent, right above the line art
        doc.setActiveNode(node)
        c = self._choices.setdefault(self._doc_key(doc), {})
        c.update(hint=krita_io.node_id(node), hint_name=name)
        if not c.get("line"):
            c.update(line=krita_io.node_id(line), line_name=line.name())
        self._layers_sig = None
        self._refresh_layers()
        self.show_message(f"Paint color hints on the '{name}' layer, then click Colorize.")
        self._focus_canvas()

    def options(self):
        """The request's choices; a control that does not apply sends nothing (the engine's default)."""
        out = {"size": self.size_spin.value()}
        if self.colors_combo.isEnabled() and self.colors_combo.currentData():
            out["compose"] = self.colors_combo.currentData()
        if self.layers_check.isEnabled() and self.layers_check.isChecked():
            out["layers"] = True
        return out

    def _clamp_size(self, job):
        """The working size sent: a multiple of 32, within the area and the device."""
        if job.engine == FLATS or job.rect is None:
            self._size_note = ""
            return
        want = int(job.options.get("size") or DEFAULT_SIZE)
        size = clamp_size(want, job.rect, self._gpu())
        job.options["size"] = size
        w, h = job.rect[2], job.rect[3]
        if size == want:
            self._size_note = ""
        elif size == (max(w, h) + 31) // 32 * 32 and want > size:
            self._size_note = f"Working size {size}: the area to colorize is only {w}x{h}."
        elif want % 32:
            self._size_note = f"Working size {size}: it is a multiple of 32."
        else:
            self._size_note = f"Working size {size}: the most this device can take."

    def colorize(self, auto=False, force=False):
        if self.job is not None:
            return
        for b in (self.multiply_btn, self.flats_btn):
            b.hide()
        doc = self._document()
        engine = self.engine_combo.currentData() or FLATS
        # Auto updates our untouched result in place (the artist's stroke stays the undo
        # step); the Colorize button adds a new layer (one undo step).
        job = krita_api.ColorizeJob(doc, self._selected(self.line_combo), self._selected(self.hint_combo),
                                    engine, force=force, in_place=auto, **self.options())
        try:
            job.prepare_first()       # the checks now; the rest of the layers read once started
        except krita_api.TooLargeError as e:
            if auto:
                self.show_message(f"Auto skipped: {e}.", error=True)
                return
            answer = QMessageBox.question(self, "Colorize", f"{str(e)[0].upper()}{str(e)[1:]}.\n\nColorize anyway?")
            if answer == QMessageBox.Yes:
                self.colorize(force=True)
            return
        except UserError as e:
            self.show_message(str(e)[:1].upper() + str(e)[1:], error=True)
            return
        except Exception as e:  # noqa: BLE001  a message in the status line, never a traceback
            self.show_message(f"Could not read the layers: {type(e).__name__}: {e}".splitlines()[0], error=True)
            return
        self._clamp_size(job)
        if not auto:
            self._auto_last = hint_signature(job.hint_node)   # what Auto compares the next hints with
        self._launch(job, "Colorizing")

    def extract_lines(self, force=False):
        """Line art of the active layer, in a new layer directly above it."""
        if self.job is not None:
            return
        for b in (self.multiply_btn, self.flats_btn):
            b.hide()
        doc = self._document()
        source = doc.activeNode() if doc is not None else None
        try:
            job = krita_api.LinesJob(doc, source, self.thickness_spin.value(), client=self.client, force=force,
                                     method=self.line_method_combo.currentData() or "xdog")
            job.prepare()
        except krita_api.TooLargeError as e:
            answer = QMessageBox.question(self, "Extract line art",
                                          f"{str(e)[0].upper()}{str(e)[1:]}.\n\nExtract anyway?")
            if answer == QMessageBox.Yes:
                self.extract_lines(force=True)
            return
        except UserError as e:
            self.show_message(str(e)[:1].upper() + str(e)[1:], error=True)
            return
        except Exception as e:  # noqa: BLE001  a message in the status line, never a traceback
            self.show_message(f"Could not read the layer: {type(e).__name__}: {e}".splitlines()[0], error=True)
            return
        self._launch(job, "Extracting line art")

    def _launch(self, job, doing):
        self.job = job
        self._doing = doing
        job.progress.connect(self._on_progress)
        job.done.connect(self._on_done)
        job.failed.connect(self._on_failed)
        self.colorize_btn.setEnabled(False)
        self.extract_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setValue(0)
        self.show_message(f"{doing}…")
        job.start()

    def cancel(self):
        if self.job is not None:
            self.job.cancel()

    def _finish(self):
        self.job = None
        self.colorize_btn.setEnabled(True)
        self.extract_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setValue(0)
        self._focus_canvas()

    def _focus_canvas(self):
        """Give the keyboard back to the canvas (Ctrl+Z, brush shortcuts), unless
        the artist is typing somewhere else than this docker."""
        focus = QApplication.focusWidget()
        if focus is not None and not self.isAncestorOf(focus):
            return   # on the canvas already, or in another widget the artist uses
        canvas = canvas_widget()
        if canvas is not None:
            canvas.setFocus(Qt.OtherFocusReason)

    def _on_progress(self, value, text):
        self.progress.setValue(int(value * 1000))
        if text and text != "done":
            self.status.setText(f"{self._doing}: {PROGRESS_WORDS.get(text, text)}…")

    def _on_done(self, node):
        job = self.job
        self._finish()
        r = job.reply
        how = ""
        if r.get("compose") in COMPOSE_WORDS:
            how = f", {COMPOSE_WORDS[r['compose']]}" + (f" at {r['size']} px" if r.get("size") else "")
        layers = [d.get("name") for d in r.get("layers") or [] if isinstance(d, dict)]
        where = (f"layers {' + '.join(repr(n) for n in layers)}" if len(layers) > 1 and job.options.get("layers")
                 else f"layer '{node.name()}'")
        if job.report.get("in_place"):
            where += " (updated)"
        msg = f"{r.get('engine', '?')} on {r.get('device', '?')}{how}, {float(r.get('seconds', 0)):.2f} s → {where}"
        if job.report.get("kept"):
            msg += f"\nYou had painted on the previous result: it is kept as '{job.report['kept']}'."
        if self._size_note and isinstance(job, krita_api.ColorizeJob):
            msg += f"\n{self._size_note}"
        for w in r.get("warnings") or []:
            msg += f"\n{w}"
        if "opaque" in job.notes:
            msg += "\nThe line art is opaque and hides the colors below it."
            self.multiply_btn.show()
        self.show_message(msg)

    def _on_failed(self, message, kind):
        self._finish()
        if kind == "cancelled":
            self.show_message("Cancelled.")
            return
        if message.startswith(("unknown engine or model", "model file not found")):
            self.flats_btn.show()
        self.show_message(message[:1].upper() + message[1:], error=True)

    def show_message(self, text, error=False):
        self.status.setStyleSheet("color: #d04040;" if error else "")
        self.status.setText(text)

    def set_multiply(self):
        line = self._selected(self.line_combo)
        if line is not None:
            krita_api.set_multiply(line)
            self._document().refreshProjection()
        self.multiply_btn.hide()

    def use_flats(self):
        self.engine_combo.setCurrentIndex(max(0, self.engine_combo.findData(FLATS)))
        self.flats_btn.hide()

    def open_setup(self):
        from .setup_dialog import SetupDialog
        SetupDialog(self.client, self).exec_()
        self._fill_engines()
        self._fill_line_methods()


def colorize_without_docker():
    """The Colorize action when the docker is closed: active layer, 'Hints', saved engine."""
    doc = Krita.instance().activeDocument()
    line = doc.activeNode() if doc is not None else None
    hint = krita_api.find_hint_layer(doc, line) if doc is not None else None
    cfg = settings.load()
    neural = (cfg.get("engine") or "auto") != FLATS
    _run_without_docker(lambda: krita_api.ColorizeJob(doc, line, hint, cfg.get("engine") or "auto",
                                                      size=int(cfg.get("size") or 512),
                                                      compose=(cfg.get("colors") or None) if neural else None,
                                                      layers=(bool(cfg.get("layers")) and neural
                                                              and cfg.get("colors") != "raw") or None
                                                      ).prepare(), "Colorize")


def extract_lines_without_docker():
    """The Extract Line Art action when the docker is closed: active layer, saved thickness and
    method (XDoG when the saved one is not offered any more)."""
    doc = Krita.instance().activeDocument()
    source = doc.activeNode() if doc is not None else None
    cfg = settings.load()
    method = cfg.get("line_method") or "xdog"
    if method not in [m for _, m in line_methods()]:
        method = "xdog"
    _run_without_docker(lambda: krita_api.LinesJob(doc, source, float(cfg.get("line_thickness") or 1.0),
                                                   method=method).prepare(), "Extract line art")


_background_jobs = set()


def _run_without_docker(make_job, title):
    """Start a prepared job; report problems in a message box, as there is no status line."""
    try:
        job = make_job()
    except UserError as e:
        QMessageBox.information(None, title, str(e))
        return
    except Exception as e:  # noqa: BLE001  a message, never a traceback dialog
        QMessageBox.information(None, title, f"Could not read the layers: {type(e).__name__}: {e}".splitlines()[0])
        return
    job.failed.connect(lambda msg, kind: kind != "cancelled" and QMessageBox.information(None, title, msg))
    job.start()
    # Keep every started job alive until it answers (a second press must not drop the first).
    _background_jobs.add(job)
    for sig in (job.done, job.failed):
        sig.connect(lambda *_, j=job: _background_jobs.discard(j))
