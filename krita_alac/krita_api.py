"""Colorize a Krita layer: the one code path behind the docker's button, the
action and the scripting API `krita_alac.colorize(...)`.

Data flow: line-art and hint layers -> sRGB BGRA8 bytes (krita_io) -> worker
process (worker_client) -> BGRA8 result bytes -> a new paint layer directly
below the line art, converted to the document's color space.

Which result layer belongs to which line art is recorded in a document
annotation (saved in the .kra), keyed by the layers' uniqueIds, so a rerun
replaces the plugin's own layer even after the artist moved it, and leaves it
alone once the artist renamed or locked it.
"""
from __future__ import annotations

import json
import time

from PyQt5.QtCore import QByteArray, QEventLoop, QObject, QTimer, pyqtSignal

from . import krita_io, settings, worker_client
from .errors import UserError

ANNOTATION = "krita_alac"
HINTS_NAME = "Hints"
OPAQUE_LINE_ART = 0.98   # share of fully opaque pixels that means "scan on white"


class TooLargeError(UserError):
    """The canvas (or selection) is above the size limit: ask before going on."""


def result_layer_name(engine_label: str) -> str:
    return "Flats" if engine_label.lower().startswith("flats") else "Colors (AlacGAN)"


# -- the record of our result layers, kept in the document ---------------------
def load_records(document) -> dict:
    if ANNOTATION not in document.annotationTypes():
        return {}
    try:
        data = json.loads(bytes(document.annotation(ANNOTATION)).decode("utf-8"))
        return data.get("results", {}) if isinstance(data, dict) else {}
    except ValueError:
        return {}


def save_records(document, records: dict):
    data = json.dumps({"version": 1, "results": records}, separators=(",", ":")).encode()
    document.setAnnotation(ANNOTATION, "krita_alac: result layer of each line-art layer", QByteArray(data))


def replaceable_result(document, line_node):
    """Our previous result for this line art, if the artist left it as we made it."""
    rec = load_records(document).get(krita_io.node_id(line_node))
    if not rec:
        return None
    old = krita_io.find_node(document, rec.get("result", ""))
    if old is None or old.locked() or old.name() != rec.get("name") or old.type() != "paintlayer":
        return None
    return old


# -- reading the request ----------------------------------------------------
def work_rect(document):
    """The canvas, or the selection's bounds clipped to it."""
    w, h = document.width(), document.height()
    sel = document.selection()
    if sel is None or sel.width() <= 0 or sel.height() <= 0:
        return (0, 0, w, h), None
    x0, y0 = max(0, sel.x()), max(0, sel.y())
    x1, y1 = min(w, sel.x() + sel.width()), min(h, sel.y() + sel.height())
    if x1 <= x0 or y1 <= y0:
        raise UserError("the selection lies outside the canvas")
    return (x0, y0, x1 - x0, y1 - y0), sel


def find_hint_layer(document, line_node=None):
    """The layer named "Hints" (closest to the line art first), or None."""
    cands = [n for n, _ in krita_io.all_layers(document) if n.name() == HINTS_NAME]
    if line_node is not None:
        same = [n for n in cands if n.parentNode() is not None and line_node.parentNode() is not None
                and krita_io.node_id(n.parentNode()) == krita_io.node_id(line_node.parentNode())]
        cands = same or cands
    return cands[0] if cands else None


def insert_below(parent, new_node, line_node):
    """Add new_node to parent directly below line_node."""
    siblings = parent.childNodes()          # bottom first
    ids = [krita_io.node_id(n) for n in siblings]
    i = ids.index(krita_io.node_id(line_node))
    if i > 0:
        parent.addChildNode(new_node, siblings[i - 1])
        return
    # Krita 5.1's addChildNode has no "at the bottom": add above the line art,
    # then put the line art back on top of it.
    parent.addChildNode(new_node, line_node)
    order = parent.childNodes()
    ids = [krita_io.node_id(n) for n in order]
    if ids.index(krita_io.node_id(new_node)) != 0:
        ln = order.pop(ids.index(krita_io.node_id(line_node)))
        order.insert(ids.index(krita_io.node_id(new_node)), ln)
        parent.setChildNodes(order)


class ColorizeJob(QObject):
    """One colorize run.  prepare() reads the layers (errors raise UserError),
    start() hands them to the worker; done(node) or failed(message, kind) follows."""
    progress = pyqtSignal(float, str)
    done = pyqtSignal(object)
    failed = pyqtSignal(str, str)

    def __init__(self, document, line_node, hint_node=None, engine="flats", client=None, **options):
        super().__init__()
        self.document, self.line_node, self.hint_node = document, line_node, hint_node
        self.engine = engine
        self.force = bool(options.pop("force", False))
        self.options = {k: v for k, v in options.items() if v is not None}
        self.client = client or worker_client.shared()
        self.rid = None
        self.rect = None
        self.mask = None
        self.notes = []           # "opaque": the line art hides what is below it
        self.reply = {}           # the worker's result header
        self.node = None
        self.timings = {}
        self._lines = self._hints = None

    def prepare(self):
        t0 = time.perf_counter()
        doc, line = self.document, self.line_node
        if doc is None:
            raise UserError("no document is open")
        if line is None:
            raise UserError("choose the line-art layer")
        if krita_io.find_node(doc, krita_io.node_id(line)) is None:
            raise UserError(f"the line-art layer '{line.name()}' is not in this document any more")
        if self.hint_node is not None and krita_io.node_id(self.hint_node) == krita_io.node_id(line):
            raise UserError("the hint layer and the line-art layer are the same layer")
        self.rect, sel = work_rect(doc)
        x, y, w, h = self.rect
        W, H = doc.width(), doc.height()
        limit = int(settings.load().get("max_pixels") or 0)
        if limit and w * h > limit and not self.force:
            raise TooLargeError(f"the area to colorize is {w}x{h} pixels, more than the limit of {limit} pixels "
                                f"(about {limit ** 0.5:.0f}x{limit ** 0.5:.0f}): it may be slow and use much memory")
        self._lines = krita_io.read_bgra8(line, self.rect)
        # A selection may well hold no ink (inside one region); the layer itself must not be empty.
        if (not krita_io.has_visible_pixels(self._lines)
                and (sel is None or not krita_io.has_visible_pixels(krita_io.read_bgra8(line, (0, 0, W, H))))):
            raise UserError(f"the line-art layer '{line.name()}' is empty")
        if krita_io.opaque_fraction(self._lines) >= OPAQUE_LINE_ART and line.blendingMode() != "multiply":
            self.notes.append("opaque")
        self._hints = None
        if self.hint_node is not None:
            hints = krita_io.read_bgra8(self.hint_node, self.rect)
            self._hints = hints if krita_io.has_visible_pixels(hints) else None
        self.mask = krita_io.selection_mask(sel, self.rect) if sel is not None else None
        self.timings["read"] = time.perf_counter() - t0
        return self

    def start(self):
        if self._lines is None:
            self.prepare()
        x, y, w, h = self.rect
        c = self.client
        c.progress.connect(self._on_progress)
        c.result.connect(self._on_result)
        c.failed.connect(self._on_failed)
        self._t_sent = time.perf_counter()
        self.rid = c.colorize(w, h, self._lines, self._hints, dict(self.options, engine=self.engine))
        self._lines = self._hints = None   # the client holds the bytes now
        return self

    def cancel(self):
        self.client.cancel()

    def _disconnect(self):
        for sig, slot in ((self.client.progress, self._on_progress), (self.client.result, self._on_result),
                          (self.client.failed, self._on_failed)):
            try:
                sig.disconnect(slot)
            except TypeError:
                pass

    def _on_progress(self, rid, value, text):
        if rid == self.rid:
            self.progress.emit(value, text)

    def _on_failed(self, rid, message, kind):
        if rid != self.rid and rid != -1:
            return
        self._disconnect()
        self.failed.emit(message, kind)

    def _on_result(self, rid, header, payload):
        if rid != self.rid:
            return
        self._disconnect()
        self.timings["worker"] = time.perf_counter() - self._t_sent
        self.reply = header
        try:
            t0 = time.perf_counter()
            self.node = write_result(self.document, self.line_node, payload, self.rect, self.mask,
                                     str(header.get("engine", "")))
            self.timings["write"] = time.perf_counter() - t0
        except UserError as e:
            self.failed.emit(str(e), "user")
            return
        except Exception as e:  # noqa: BLE001  never a traceback dialog in Krita
            self.failed.emit(f"could not write the result layer: {type(e).__name__}: {e}", "internal")
            return
        self.done.emit(self.node)


def write_result(document, line_node, bgra: bytes, rect, mask, engine_label: str):
    """Put the result in a new paint layer directly below the line art and
    retire our previous result for it.  Returns the new node."""
    if krita_io.find_node(document, krita_io.node_id(line_node)) is None:
        raise UserError("the line-art layer was removed while colorizing")
    x, y, w, h = rect
    name = result_layer_name(engine_label)
    old = replaceable_result(document, line_node)
    doc_space = krita_io.color_space(document)
    if mask is not None:
        if old is not None:
            # Recolor only the selection: keep the old colors elsewhere.
            before = krita_io.convert_bytes(old.pixelData(x, y, w, h), w, h, krita_io.color_space(old),
                                            krita_io.SRGB8)
            bgra = krita_io.blend_masked(before, bgra, mask, w, h)
        else:
            bgra = krita_io.apply_mask(bgra, mask, w, h)
    new = document.createNode(name, "paintlayer")
    if mask is not None and old is not None:
        # The part outside the work rect comes from the old layer too.
        W, H = document.width(), document.height()
        new.setPixelData(old.pixelData(0, 0, W, H), 0, 0, W, H)
    krita_io.write_bgra8(new, bgra, rect, doc_space)
    parent = line_node.parentNode()
    active = document.activeNode()
    insert_below(parent, new, line_node)
    if active is not None:
        document.setActiveNode(active)   # adding a layer activates it; the artist keeps their layer
    if old is not None:
        old.remove()
    records = load_records(document)
    records[krita_io.node_id(line_node)] = {"result": krita_io.node_id(new), "name": name, "engine": engine_label}
    save_records(document, records)
    document.refreshProjection()
    return new


def set_multiply(line_node):
    """The usual fix for line art scanned on white: multiply it over the colors."""
    line_node.setBlendingMode("multiply")


def colorize(document, line_layer, hint_layer=None, engine="flats", wait=True, **options):
    """Scripting entry point (see krita_alac.colorize).

    wait=True spins an event loop until the layer is written and returns the
    result node, raising UserError on failure.  wait=False returns the started
    ColorizeJob; connect to its done/failed signals."""
    if isinstance(line_layer, str):
        line_layer = document.nodeByName(line_layer) if document is not None else None
    if isinstance(hint_layer, str):
        hint_layer = document.nodeByName(hint_layer) if document is not None else None
    timeout = options.pop("timeout", None)
    job = ColorizeJob(document, line_layer, hint_layer, engine, **options)
    job.prepare()
    if not wait:
        return job.start()
    loop = QEventLoop()
    outcome = {}
    job.done.connect(lambda node: (outcome.setdefault("node", node), loop.quit()))
    job.failed.connect(lambda msg, kind: (outcome.setdefault("error", (msg, kind)), loop.quit()))
    job.start()
    if timeout:
        def give_up():
            if not outcome:
                outcome["error"] = (f"no answer from the engine after {timeout} s", "timeout")
                job.cancel()
                loop.quit()
        QTimer.singleShot(int(timeout * 1000), give_up)
    if not outcome:
        loop.exec_()
    colorize.last_job = job
    if "error" in outcome:
        raise UserError(outcome["error"][0])
    return outcome["node"]
