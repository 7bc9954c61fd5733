"""Colorize a Krita layer, or extract line art from one: the one code path
behind the docker's buttons, the actions and the scripting API
`krita_alac.colorize(...)` / `krita_alac.extract_lines(...)`.

Data flow: line-art and hint layers -> sRGB BGRA8 bytes (krita_io) -> worker
process (worker_client) -> BGRA8 result bytes -> a new paint layer directly
below the line art, converted to the document's color space.  Line
extraction is the same trip with one source layer (the worker's "lines" op);
its result goes directly *above* the source.

Which result layer belongs to which source layer is recorded in a document
annotation (saved in the .kra), keyed by the layers' uniqueIds, with a digest
of the pixels written, so a rerun replaces the plugin's own layer even after
the artist moved it, and leaves it alone once the artist renamed, locked or
painted on it (an edited result is renamed "... (edited)" and kept).  Colorize
results and extracted line art are recorded separately ("results" and "lines").

Layer policy: bottom to top, result, line art, hints; no other layer changes
its place; the layer that was active stays active.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import time

from PyQt5.QtCore import QByteArray, QEventLoop, QObject, QTimer, pyqtSignal

from . import krita_io, settings, worker_client
from ..engine.errors import UserError
from ..engine.limits import MAX_CANVAS_PIXELS, MAX_CANVAS_SIDE, PEAK_BYTES_PER_PIXEL

ANNOTATION = "krita_alac"
INLINE_HINT_BYTES = 4 << 20   # hints bigger than this (after cropping) go through a file
WAIT_TIMEOUT_S = 3600         # colorize(wait=True) without a timeout still ends
HINTS_NAME = "Hints"
HINTS_RE = re.compile(r"Hints( \d+)?$")   # "Hints", and "Hints 2"... made by New
OPAQUE_LINE_ART = 0.98   # share of fully opaque pixels that means "scan on white"
LINES_NAME = "Line art (XDoG)"
LINE_METHODS = {"xdog": LINES_NAME, "neural": "Line art (Neural)"}   # method -> its layer's name
LINES_RECORDS = "lines"  # annotation key of the extracted line-art layers
IDLE_POLL_MS = 50        # a result that arrives during a brush stroke waits for its end
IDLE_WAIT_MS = 120000
# A result layer is written and fingerprinted this many bytes at a time, with Krita's
# event loop running in between.
STEP_BYTES = 8 << 20
ACTIVATE_AGAIN_MS = (0, 100, 400)   # when Krita's own layer activations may still come
# Nodes that can be read as a picture (masks cannot).
LAYER_TYPES = ("paintlayer", "grouplayer", "vectorlayer", "filelayer", "clonelayer", "filllayer")


class TooLargeError(UserError):
    """The canvas (or selection) is above the size limit: ask before going on."""


def result_layer_name(engine_label: str) -> str:
    return "Flats" if engine_label.lower().startswith("flats") else "Colors (AlacGAN)"


# -- the record of our result layers, kept in the document ---------------------
def _annotation(document) -> dict:
    if ANNOTATION not in document.annotationTypes():
        return {}
    try:
        data = json.loads(bytes(document.annotation(ANNOTATION)).decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def load_records(document, kind: str = "results") -> dict:
    """{source layer id: {"result", "name", "engine"}}; kind "results" (colorize) or "lines"."""
    recs = _annotation(document).get(kind, {})
    return recs if isinstance(recs, dict) else {}


def save_records(document, records: dict, kind: str = "results"):
    data = _annotation(document)
    data.update({"version": 1, kind: records})
    data.setdefault("results", {})
    raw = json.dumps(data, separators=(",", ":")).encode()
    document.setAnnotation(ANNOTATION, "krita_alac: result layer of each line-art layer", QByteArray(raw))


def layer_digest(node) -> str:
    """Fingerprint of a paint layer's pixels (and where they are): any brush
    stroke, erasing or move changes it."""
    return krita_io.drain(layer_digest_steps(node))


def layer_digest_steps(node, step_bytes: int = 0):
    """layer_digest, yielding after each band (of step_bytes of pixel data, if given)."""
    b = node.bounds()
    h = hashlib.sha1(f"{b.x()},{b.y()},{b.width()},{b.height()};".encode())
    if b.width() > 0 and b.height() > 0:
        # A band of rows at a time (the same bytes in the same order as one read):
        # a canvas-sized copy here would double Krita's memory for a big page.
        step = krita_io.band_rows(b.width() * 4)    # up to 16 bytes a pixel: bands of 64 MB at most
        if step_bytes:
            step = max(1, step_bytes // (b.width() * 4))
        for y in range(b.y(), b.y() + b.height(), step):
            h.update(bytes(node.pixelData(b.x(), y, b.width(), min(step, b.y() + b.height() - y))))
            yield
    return h.hexdigest()


def _recorded(document, rec):
    """(node, painted on) for one recorded layer; None when the artist made it theirs."""
    old = krita_io.find_node(document, rec.get("result", "")) if isinstance(rec, dict) else None
    if old is None or old.locked() or old.name() != rec.get("name") or old.type() != "paintlayer":
        return None
    # Records written before digests existed count as untouched.
    return old, bool(rec.get("digest")) and layer_digest(old) != rec["digest"]


def previous_layers(document, source_node, kind: str = "results") -> list:
    """[(node, painted on)] for every layer of our previous result for this source
    layer (one, or "Flats" then "Shading"), leaving out those the artist made theirs."""
    rec = load_records(document, kind).get(krita_io.node_id(source_node))
    if not rec:
        return []
    recs = [rec] + [r for r in rec.get("layers") or [] if isinstance(r, dict)]
    return [x for x in (_recorded(document, r) for r in recs) if x is not None]


def previous_result(document, source_node, kind: str = "results"):
    """(our previous result for this source layer, whether the artist painted on it).
    None when there is none or the artist made it theirs (renamed, locked, another kind)."""
    rec = load_records(document, kind).get(krita_io.node_id(source_node))
    return (rec and _recorded(document, rec)) or (None, False)


def replaceable_result(document, line_node, kind: str = "results"):
    """Our previous result for this source layer, if the artist left it as we made it."""
    old, edited = previous_result(document, line_node, kind)
    return None if edited else old


def edited_name(parent, name: str) -> str:
    """'Flats (edited)', or 'Flats (edited 2)'... if that name is taken beside it."""
    taken = {n.name() for n in parent.childNodes()}
    out, i = f"{name} (edited)", 2
    while out in taken:
        out, i = f"{name} (edited {i})", i + 1
    return out


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


def is_hint_name(name: str) -> bool:
    return bool(HINTS_RE.match(name))


def find_hint_layer(document, line_node=None):
    """The layer named "Hints" (or "Hints 2"...; closest to the line art first), or None."""
    cands = [n for n, _ in krita_io.all_layers(document) if is_hint_name(n.name())]
    if line_node is not None:
        same = [n for n in cands if n.parentNode() is not None and line_node.parentNode() is not None
                and krita_io.node_id(n.parentNode()) == krita_io.node_id(line_node.parentNode())]
        cands = same or cands
    return cands[0] if cands else None


def unique_hint_name(document) -> str:
    """"Hints", or "Hints 2", "Hints 3"... when that name is taken."""
    taken = {n.name() for n, _ in krita_io.all_layers(document)}
    name, i = HINTS_NAME, 2
    while name in taken:
        name, i = f"{HINTS_NAME} {i}", i + 1
    return name


def _ids(nodes):
    return [krita_io.node_id(n) for n in nodes]


def insert_below(parent, new_node, line_node):
    """Add new_node to parent directly below line_node: one undo step, and
    every other layer keeps its place."""
    siblings = parent.childNodes()          # bottom first
    ids = _ids(siblings)
    i = ids.index(krita_io.node_id(line_node))
    if i > 0:
        parent.addChildNode(new_node, siblings[i - 1])
        return
    # The line art is the bottom layer (a document opened from a PNG: "Background").
    # Krita 5.1's addChildNode adds only above a layer or on top, so add on top (the
    # one undo step), then rotate the stack until it reads new, line art, the rest:
    # setChildNodes([bottom]) takes the bottom layer out and puts it back on top
    # (Krita's setChildNodes only ever removes the first child; no undo step).  A
    # rotation keeps the cyclic order, and with new_node on top that order is,
    # cyclically, the wanted one.
    parent.addChildNode(new_node, None)
    want_ids = _ids([new_node, line_node] + siblings[1:])
    for _ in range(len(want_ids)):
        now = parent.childNodes()
        if _ids(now) == want_ids:
            break
        parent.setChildNodes([now[0]])
    if _ids(parent.childNodes()) != want_ids:
        raise RuntimeError("Krita did not put the result layer below the line art")


def check_size(rect, force: bool, verb: str = "colorize"):
    """TooLargeError when the work area is above the max_pixels setting (unless forced)."""
    w, h = rect[2], rect[3]
    if w * h > MAX_CANVAS_PIXELS:
        # Not a question: the engine refuses it.
        raise UserError(f"the area to {verb} is {w}x{h} = {w * h} pixels, over the engine's limit of "
                        f"{MAX_CANVAS_PIXELS} ({MAX_CANVAS_SIDE}x{MAX_CANVAS_SIDE}); it would need about "
                        f"{w * h * PEAK_BYTES_PER_PIXEL / 2 ** 30:.0f} GB of memory: select a part of the page")
    limit = int(settings.load().get("max_pixels") or 0)
    if limit and w * h > limit and not force:
        raise TooLargeError(f"the area to {verb} is {w}x{h} pixels, more than the limit of {limit} pixels "
                            f"(about {limit ** 0.5:.0f}x{limit ** 0.5:.0f}): it may be slow and use much memory")


class WorkerJob(QObject):
    """One request to the worker.  prepare() reads the layers (errors raise
    UserError), start() hands them to the worker; done(node) or
    failed(message, kind) follows.  Subclasses read (prepare), send (_send)
    and write (_write)."""
    progress = pyqtSignal(float, str)
    done = pyqtSignal(object)
    failed = pyqtSignal(str, str)
    verb = "colorize"

    def __init__(self, document, client=None, force=False):
        super().__init__()
        self.document = document
        self.force = bool(force)
        self.client = client or worker_client.shared()
        self.rid = None
        self.rect = None
        self.mask = None
        self.notes = []           # "opaque": the line art hides what is below it
        self.reply = {}           # the worker's result header
        self.report = {}          # what writing did beyond the new layer ("kept": an edited result's new name)
        self.node = None
        self.timings = {}
        self._prepared = False
        self._files = []          # payload files this job made (the client deletes them once answered)
        self._result_map = None   # the result file, mapped while it is written to the layer
        self._timer = None
        self._steps = None        # the rest of a prepare started by prepare_first()
        self._cancelled = False

    def prepare(self):
        return krita_io.drain(self.prepare_steps())

    def prepare_steps(self):
        """prepare() as a generator: it yields between bands of a big layer read
        (by default in one step: a job that only defines prepare())."""
        return self.prepare()
        yield  # unreachable: makes this a generator

    def prepare_first(self):
        """Begin preparing: the checks and the first band now (errors raise, as in
        prepare()); start() reads the rest a band at a time with Krita's event loop
        free in between (the GUI stays responsive while a big layer is read)."""
        steps = self.prepare_steps()
        try:
            next(steps)
            self._steps = steps
        except StopIteration:
            pass
        return self

    def _read_visible(self, node, sel, empty_message: str, name: str):
        return krita_io.drain(self._read_visible_steps(node, sel, empty_message, name))

    def _read_visible_steps(self, node, sel, empty_message: str, name: str, step_bytes: int = 0):
        """Dump `node`'s pixels in self.rect as BGRA8 into a payload file, a band at a
        time (Krita's process never holds a canvas-sized copy).  A layer with nothing
        visible is refused, but a selection may well hold no ink (inside one region):
        then the whole layer counts.  Returns dump_layer's facts plus "path"."""
        doc = self.document
        path = self.client.temp_path(f"{name}-{id(self):x}-{time.monotonic_ns():x}")
        self._files.append(path)
        try:
            facts = yield from krita_io.dump_layer_steps(node, self.rect, path, step_bytes)
        except OSError as e:
            raise UserError(f"cannot write the temporary copy of the layer ({e.strerror or e}): is the disk full?")
        if (not facts["visible"]
                and (sel is None or not krita_io.any_visible(node, (0, 0, doc.width(), doc.height())))):
            self._cleanup()
            raise UserError(empty_message)
        facts["path"] = path
        return facts

    def _result_path(self):
        path = self.client.temp_path(f"result-{id(self):x}-{time.monotonic_ns():x}")
        # The worker writes layers next to the result ("<result>.layerN"): deleted with it.
        self._files += [path, f"{path}.layer0", f"{path}.layer1", f"{path}.layer0.part", f"{path}.layer1.part"]
        return path

    def _read_done(self, sel, t0):
        self.mask = krita_io.selection_mask(sel, self.rect) if sel is not None else None
        self.timings["read"] = time.perf_counter() - t0
        self._prepared = True
        return self

    def _send(self) -> int:
        raise NotImplementedError

    def _write(self, header: dict, payload: bytes):
        raise NotImplementedError

    def start(self, timeout=None):
        """Send the request; with `timeout` (seconds) the job is cancelled if no
        answer came by then (failed with kind "timeout"; no layer is written later)."""
        if self._steps is not None:
            return self._prepare_step(timeout)
        if not self._prepared:
            self.prepare()
        c = self.client
        c.progress.connect(self._on_progress)
        c.result.connect(self._on_result)
        c.failed.connect(self._on_failed)
        self.done.connect(self._cleanup)
        self.failed.connect(self._cleanup)
        self._t_sent = time.perf_counter()
        self.rid = self._send()   # the client holds the request now
        if timeout:
            self._timer = QTimer(self)
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(lambda: self.cancel(f"no answer from the engine after {timeout:g} s",
                                                            "timeout"))
            self._timer.start(int(timeout * 1000))
        return self

    def _prepare_step(self, timeout):
        """One band of a prepare begun by prepare_first(); then start()."""
        if self._cancelled:
            self._steps = None
            self._cleanup()
            self.failed.emit(*self._cancelled)
            return self
        t0 = time.perf_counter()
        try:
            next(self._steps)
            self._longest("read_longest_step", t0)
        except StopIteration:
            self._longest("read_longest_step", t0)
            self._steps = None
            try:
                return self.start(timeout)
            except UserError as e:
                self._cleanup()
                self.failed.emit(str(e), "user")
                return self
        except UserError as e:
            self._steps = None
            self._cleanup()
            self.failed.emit(str(e), "user")
            return self
        except Exception as e:  # noqa: BLE001  never a traceback dialog in Krita
            self._steps = None
            self._cleanup()
            self.failed.emit(f"could not read the layers: {type(e).__name__}: {e}", "internal")
            return self
        QTimer.singleShot(0, lambda: self._prepare_step(timeout))
        return self

    def cancel(self, message: str = "cancelled", kind: str = "cancelled"):
        """End this job (and only this one): it fails with `kind`."""
        if self._steps is not None and self.rid is None:
            self._cancelled = (message, kind)     # still reading the layers: stops at the next band
        if self.rid is not None:
            self.client.cancel(self.rid, message, kind)

    def _cleanup(self, *_):
        if self._timer is not None:
            self._timer.stop()
        m, self._result_map = self._result_map, None
        if m is not None:
            try:
                m.close()
            except BufferError:     # a view of it is still alive: the collector closes it
                pass
        for path in self._files:
            try:
                os.unlink(path)
            except OSError:
                pass

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
        if rid != self.rid:
            return
        self._disconnect()
        self.failed.emit(message, kind)

    def _on_result(self, rid, header, payload):
        if rid != self.rid:
            return
        self._disconnect()
        if self._timer is not None:
            self._timer.stop()          # answered in time: the layer is written
        self.timings["worker"] = time.perf_counter() - self._t_sent
        self.reply = header
        if header.get("file"):
            # Mapped, not read: the pages go to the layer a band at a time.
            try:
                with open(header["file"], "rb") as f:
                    self._result_map = payload = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as e:
                self.failed.emit(f"could not read the engine's result: {e}", "internal")
                return
        self._write_when_idle(header, payload)

    def _write_when_idle(self, header, payload, waited_ms=0):
        """Write once no brush stroke is running: with Auto the answer often
        comes while the artist paints, and the layer stack must not change under
        a stroke.  (tryBarrierLock fails while a stroke runs; released at once.)"""
        doc = self.document
        if waited_ms < IDLE_WAIT_MS and doc is not None:
            if not doc.tryBarrierLock():
                QTimer.singleShot(IDLE_POLL_MS, lambda: self._write_when_idle(header, payload,
                                                                              waited_ms + IDLE_POLL_MS))
                return
            doc.unlock()
        self._t_write = time.perf_counter()
        self.timings["write_steps"] = 0
        self._step(self._write_steps(header, payload))

    def _step(self, steps):
        """One step of writing; the next one after Krita's event loop had its turn
        (the GUI stays responsive while a canvas-sized layer is written)."""
        t0 = time.perf_counter()
        try:
            next(steps)
        except StopIteration as e:
            self._longest("write_longest_step", t0)
            self.node = e.value
            self.timings["write"] = time.perf_counter() - self._t_write
            self.done.emit(self.node)
            return
        except UserError as e:
            self.failed.emit(str(e), "user")
            return
        except Exception as e:  # noqa: BLE001  never a traceback dialog in Krita
            self.failed.emit(f"could not write the result layer: {type(e).__name__}: {e}", "internal")
            return
        self.timings["write_steps"] += 1
        self._longest("write_longest_step", t0)
        QTimer.singleShot(0, lambda: self._step(steps))

    def _longest(self, key, t0):
        """Keep the longest single step (what blocks Krita's GUI thread), for benchmarks."""
        self.timings[key] = max(self.timings.get(key, 0.0), time.perf_counter() - t0)

    def _write_steps(self, header, payload):
        """The writing as a generator of steps; by default one step."""
        return self._write(header, payload)
        yield  # unreachable: makes this a generator


class ColorizeJob(WorkerJob):
    """One colorize run (see WorkerJob)."""

    def __init__(self, document, line_node, hint_node=None, engine="auto", client=None, **options):
        super().__init__(document, client, options.pop("force", False))
        self.line_node, self.hint_node = line_node, hint_node
        self.engine = engine
        self.options = {k: v for k, v in options.items() if v is not None}
        self._lines = self._hints = None
        self._hints_rect = self._hints_file = None

    def prepare_steps(self):
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
        check_size(self.rect, self.force, self.verb)
        self._lines = yield from self._read_visible_steps(line, sel, f"the line-art layer '{line.name()}' is empty",
                                                          "lines", STEP_BYTES)
        if self._lines["opaque"] >= OPAQUE_LINE_ART and line.blendingMode() != "multiply":
            self.notes.append("opaque")
        try:
            yield from self._read_hints_steps()
        except Exception:
            self._cleanup()
            raise
        return self._read_done(sel, t0)

    def _read_hints_steps(self):
        """Only the part of the hint layer that has pixels (its exact bounds in the
        work rect) is sent: inline when small, through a file when big."""
        self._hints = self._hints_rect = self._hints_file = None
        if self.hint_node is None:
            return
        crop = krita_io.visible_crop(self.hint_node, self.rect)
        if crop is None:
            return
        cx, cy, cw, ch = crop
        area = (self.rect[0] + cx, self.rect[1] + cy, cw, ch)
        if cw * ch * 4 <= INLINE_HINT_BYTES:
            hints = krita_io.read_bgra8(self.hint_node, area)
            if krita_io.has_visible_pixels(hints):
                self._hints, self._hints_rect = hints, crop
            return
        path = self.client.temp_path(f"hints-{id(self):x}-{time.monotonic_ns():x}")
        self._files.append(path)
        facts = yield from krita_io.dump_layer_steps(self.hint_node, area, path, STEP_BYTES)
        if facts["visible"]:
            self._hints_file, self._hints_rect = path, crop

    def _send(self):
        x, y, w, h = self.rect
        lines = self._lines
        rid = self.client.colorize(w, h, None, self._hints, dict(self.options, engine=self.engine),
                                   lines_file=lines["path"], lines_digest=lines["digest"],
                                   hints_rect=self._hints_rect, hints_file=self._hints_file,
                                   result_file=self._result_path())
        self._hints = None
        return rid

    def _write(self, header, payload):
        return krita_io.drain(self._write_steps(header, payload))

    def _write_steps(self, header, payload):
        engine = str(header.get("engine", ""))
        layers = header.get("layers")
        if self.options.get("layers") and isinstance(layers, list) and layers:
            items = self._layer_items(layers, payload)
        else:
            if self.mask is not None:
                payload = bytes(payload)   # the selection blend works on whole buffers (the selection's size)
            items = [(result_layer_name(engine), payload, "normal")]
        return (yield from write_result_steps(self.document, self.line_node, items, self.rect, self.mask, engine,
                                              self.report))

    def _layer_items(self, layers, payload):
        """[(name, bgra, blend)] from the result header's "layers": each in its file
        (next to the result file, deleted with this job's files) or inline after the result."""
        n = self.rect[2] * self.rect[3] * 4
        at = n     # inline layers follow the result's own n bytes
        items = []
        for d in layers:
            if d.get("file"):
                with open(d["file"], "rb") as f:
                    data = f.read()
            else:
                data = bytes(payload[at:at + n])
                at += n
            if len(data) != n:
                raise UserError(f"the engine's layer '{d.get('name')}' has {len(data)} bytes, not {n}")
            items.append((str(d.get("name") or "Colors"), data, str(d.get("blend") or "normal")))
        return items


class LinesJob(WorkerJob):
    """Extract line art from a colored layer (the worker's "lines" op): method "xdog", or
    "neural" with the line generator of `model` (None: the engine's default, cycle-open first)."""
    verb = "extract lines from"

    def __init__(self, document, source_node, thickness=1.0, client=None, force=False, method="xdog", model=None):
        super().__init__(document, client, force)
        self.source_node = source_node
        self.thickness = float(thickness)
        self.method, self.model = method, model
        self._image = None

    def prepare(self):
        t0 = time.perf_counter()
        doc, src = self.document, self.source_node
        if doc is None:
            raise UserError("no document is open")
        if src is None:
            raise UserError("choose the layer to extract line art from")
        if src.type() not in LAYER_TYPES:
            raise UserError(f"'{src.name()}' is a {src.type()}, not a layer: choose a layer to extract line art from")
        if krita_io.find_node(doc, krita_io.node_id(src)) is None:
            raise UserError(f"the layer '{src.name()}' is not in this document any more")
        if not (0 < self.thickness <= 20):
            raise UserError(f"line thickness must be between 0 and 20, got {self.thickness:g}")
        if self.method not in LINE_METHODS:
            raise UserError(f"unknown line extraction method {self.method!r}: use {' or '.join(LINE_METHODS)}")
        self.rect, sel = work_rect(doc)
        x, y, w, h = self.rect
        if min(w, h) < 3:
            raise UserError(f"the area is too small to extract lines from ({w}x{h} pixels)")
        check_size(self.rect, self.force, self.verb)
        self._image = self._read_visible(src, sel,
                                         f"the layer '{src.name()}' is empty: nothing to extract lines from", "image")
        return self._read_done(sel, t0)

    def _send(self):
        x, y, w, h = self.rect
        return self.client.lines(w, h, None, self.thickness, image_file=self._image["path"],
                                 result_file=self._result_path(), method=self.method, model=self.model)

    def _write(self, header, payload):
        if self.mask is not None:
            payload = bytes(payload)
        return write_lines(self.document, self.source_node, payload, self.rect, self.mask,
                           str(header.get("engine", "")), self.report, LINE_METHODS[self.method])


def _write_layer(document, source, bgra: bytes, rect, mask, name: str, engine_label: str, kind: str, place,
                 report=None):
    """A new paint layer next to `source` (see _write_layers)."""
    return _write_layers(document, source, [(name, bgra, "normal")], rect, mask, engine_label, kind, place,
                         report)[0]


def _write_layers(document, source, items, rect, mask, engine_label: str, kind: str, place, report=None):
    return krita_io.drain(_write_layers_steps(document, source, items, rect, mask, engine_label, kind, place,
                                              report))


def _write_layers_steps(document, source, items, rect, mask, engine_label: str, kind: str, place, report=None,
                        step_bytes: int = 0, removed: str = "the layer was removed while writing the result"):
    """New paint layers next to `source`, items = [(name, bgra, blending mode)]
    bottom first (place(parent, new, source) puts each; for results, each goes
    directly below the line art, so they stack in the items' order), replacing
    every layer of our previous result of this kind, except one the artist
    painted on: that one is kept, renamed "... (edited)".  Pixels are written
    before a layer is added, and the old layers are removed before the new
    ones are added; each added layer is one undo step.

    A generator: it yields after each band written or fingerprinted (of
    step_bytes, else bands of krita_io.BAND_BYTES), while the new layers are
    not in the document yet; then our previous layers are looked at again (the
    artist may have painted on one meanwhile) and the stack changes, one step
    for the removals and one for each new layer.  Returns the new nodes."""
    x, y, w, h = rect
    olds = {}
    for old, edited in previous_layers(document, source, kind):
        if not edited:
            olds.setdefault(old.name(), []).append(old)
    doc_space = krita_io.color_space(document)
    rows = max(1, step_bytes // (w * 4)) if step_bytes else krita_io.band_rows(w)
    new_nodes = []
    for name, bgra, blend in items:
        old = (olds.get(name) or [None])[0]   # a selection redo keeps this one's pixels elsewhere
        if mask is not None:
            if old is not None:
                before = krita_io.convert_bytes(old.pixelData(x, y, w, h), w, h, krita_io.color_space(old),
                                                krita_io.SRGB8)
                bgra = krita_io.blend_masked(before, bgra, mask, w, h)
            else:
                bgra = krita_io.apply_mask(bgra, mask, w, h)
        new = document.createNode(name, "paintlayer")
        if blend and blend != "normal":
            new.setBlendingMode(blend)
        if mask is not None and old is not None:
            # The part outside the work rect comes from the old layer too.
            W, H = document.width(), document.height()
            new.setPixelData(old.pixelData(0, 0, W, H), 0, 0, W, H)
        yield from krita_io.write_bgra8_steps(new, bgra, rect, doc_space, rows)
        digest = yield from layer_digest_steps(new, step_bytes)
        new_nodes.append((new, name, digest))
    # The document changes from here on.
    if krita_io.find_node(document, krita_io.node_id(source)) is None:
        raise UserError(removed)
    kept, olds = [], {}
    for old, edited in previous_layers(document, source, kind):
        if edited:
            name = edited_name(old.parentNode(), old.name())
            old.setName(name)
            kept.append(name)
        else:
            olds.setdefault(old.name(), []).append(old)
    active = document.activeNode()
    for group in olds.values():
        for old in group:
            old.remove()
    # Each change of the layer stack is one undo step and costs Krita some time: the
    # event loop runs in between (the artist's layers never move, whatever happens).
    yield
    for new, _, _ in new_nodes:
        if krita_io.find_node(document, krita_io.node_id(source)) is None:
            raise UserError(removed)
        place(source.parentNode(), new, source)
        yield
    if active is not None and krita_io.find_node(document, krita_io.node_id(active)) is not None:
        keep_active(document, active, new_nodes[-1][0], source.parentNode())
    records = load_records(document, kind)
    recs = [{"result": krita_io.node_id(n), "name": name, "digest": d} for n, name, d in new_nodes]
    rec = dict(recs[0], engine=engine_label)
    if len(recs) > 1:
        rec["layers"] = recs[1:]      # the layers above the first one (Shading)
    records[krita_io.node_id(source)] = rec
    save_records(document, records, kind)
    document.refreshProjection()
    if report is not None and kept:
        report["kept"] = ", ".join(kept)    # the name(s) the artist's edited result is kept under
    return [n for n, _, _ in new_nodes]


def keep_active(document, active, new, parent):
    """Adding a layer activates it, and the reordering of insert_below makes
    Krita activate a neighbour (from queued signals, after this returns): the
    artist keeps their layer.  Restore it now and again a little later, unless
    meanwhile the active layer became one we did not touch."""
    document.setActiveNode(active)
    active_id = krita_io.node_id(active)
    touched = set(_ids(parent.childNodes())) | {krita_io.node_id(new)}

    def again():
        try:
            now = document.activeNode()
            now_id = krita_io.node_id(now) if now is not None else None
            if now_id != active_id and (now_id is None or now_id in touched) \
                    and krita_io.find_node(document, active_id) is not None:
                document.setActiveNode(active)
        except RuntimeError:   # the document was closed meanwhile
            pass
    for ms in ACTIVATE_AGAIN_MS:
        QTimer.singleShot(ms, again)


def write_result(document, line_node, bgra: bytes, rect, mask, engine_label: str, report=None):
    """Put the result in a new paint layer directly below the line art and
    retire our previous result for it.  Returns the new node."""
    if krita_io.find_node(document, krita_io.node_id(line_node)) is None:
        raise UserError("the line-art layer was removed while colorizing")
    return _write_layer(document, line_node, bgra, rect, mask, result_layer_name(engine_label), engine_label,
                        "results", insert_below, report)


def write_result_steps(document, line_node, items, rect, mask, engine_label: str, report=None):
    """write_result (one item) or write_result_layers, as steps (see _write_layers_steps)
    with Krita's event loop free between them.  Returns the top new node."""
    if krita_io.find_node(document, krita_io.node_id(line_node)) is None:
        raise UserError("the line-art layer was removed while colorizing")
    nodes = yield from _write_layers_steps(document, line_node, items, rect, mask, engine_label, "results",
                                           insert_below, report, STEP_BYTES,
                                           "the line-art layer was removed while colorizing")
    return nodes[-1]


def write_result_layers(document, line_node, items, rect, mask, engine_label: str, report=None):
    """The result as layers [(name, bgra, blending mode)], bottom first ("Flats",
    then "Shading" in Grain Merge), directly below the line art in that order;
    our previous result (one layer or several) is retired.  Returns the top new node."""
    if krita_io.find_node(document, krita_io.node_id(line_node)) is None:
        raise UserError("the line-art layer was removed while colorizing")
    return _write_layers(document, line_node, items, rect, mask, engine_label, "results", insert_below,
                         report)[-1]


def insert_above(parent, new_node, source):
    parent.addChildNode(new_node, source)


def write_lines(document, source, bgra: bytes, rect, mask, engine_label: str = "Lines (XDoG)", report=None,
                name: str = LINES_NAME):
    """Put extracted line art in a new paint layer `name` directly above the source
    layer and retire our previous extraction from it (of either method).  Returns the new node."""
    if krita_io.find_node(document, krita_io.node_id(source)) is None:
        raise UserError("the layer was removed while extracting line art")
    return _write_layer(document, source, bgra, rect, mask, name, engine_label, LINES_RECORDS, insert_above,
                        report)


def set_multiply(line_node):
    """The usual fix for line art scanned on white: multiply it over the colors."""
    line_node.setBlendingMode("multiply")


def _run(job, wait, timeout):
    """Start a prepared job (cancelled after `timeout` seconds without an answer);
    with wait, spin an event loop until it answers: done, failed, or timed out
    (wait=True never waits longer than WAIT_TIMEOUT_S)."""
    if not wait:
        return job.start(timeout)
    loop = QEventLoop()
    outcome = {}
    job.done.connect(lambda node: (outcome.setdefault("node", node), loop.quit()))
    job.failed.connect(lambda msg, kind: (outcome.setdefault("error", (msg, kind)), loop.quit()))
    job.start(timeout or WAIT_TIMEOUT_S)
    if not outcome:
        loop.exec_()
    if "error" in outcome:
        raise UserError(outcome["error"][0])
    return outcome["node"]


def colorize(document, line_layer, hint_layer=None, engine="auto", wait=True, **options):
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
    colorize.last_job = job
    return _run(job, wait, timeout)


def extract_lines(document, layer, thickness=1.0, wait=True, timeout=None, client=None, force=False,
                  method="xdog", model=None):
    """Scripting entry point (see krita_alac.extract_lines): line art of `layer`
    in a new layer "Line art (XDoG)" (method "neural": "Line art (Neural)") directly above it.

    wait=True returns the new node (UserError on failure); wait=False returns
    the started LinesJob with done/failed signals."""
    if isinstance(layer, str):
        layer = document.nodeByName(layer) if document is not None else None
    job = LinesJob(document, layer, thickness, client=client, force=force, method=method, model=model)
    job.prepare()
    extract_lines.last_job = job
    return _run(job, wait, timeout)
