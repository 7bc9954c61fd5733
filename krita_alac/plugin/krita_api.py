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

import collections
import hashlib
import json
import mmap
import os
import re
import threading
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
TILE_ROWS = 64            # Krita's tiles are 64x64: an in-place update compares and writes whole tile rows
KEEP_LINE_COPIES = 1      # line-art copies kept (see _Copies): each is canvas-sized
KEEP_RESULT_COPIES = 2    # copies of our result layers kept (one result, or Flats + Shading)
ACTIVATE_AGAIN_MS = (0, 100, 400)   # when Krita's own layer activations may still come
# Nodes that can be read as a picture (masks cannot).
LAYER_TYPES = ("paintlayer", "grouplayer", "vectorlayer", "filelayer", "clonelayer", "filllayer")


class TooLargeError(UserError):
    """The canvas (or selection) is above the size limit: ask before going on."""


def result_layer_name(engine_label: str) -> str:
    """The result layer's name by what made it: the flats engine, a hint-free generator
    ("Auto colors (cycle-open)"), or an AlacGAN model."""
    label = engine_label.lower()
    if label.startswith("flats"):
        return "Flats"
    return "Auto colors" if label.startswith("auto colors") else "Colors (AlacGAN)"


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
        for y0, n, end in krita_io.bands(b.height(), b.width(), step, True):   # raw pixels: a plain copy
            h.update(bytes(node.pixelData(b.x(), b.y() + y0, b.width(), n)))
            if end:
                yield
    return h.hexdigest()


def _recorded(document, rec):
    """(node, painted on) for one recorded layer; None when the artist made it theirs."""
    old = krita_io.find_node(document, rec.get("result", "")) if isinstance(rec, dict) else None
    if old is None or old.locked() or old.name() != rec.get("name") or old.type() != "paintlayer":
        return None
    # Records written before digests existed count as untouched.
    return old, bool(rec.get("digest")) and not holds_recorded(old, rec["digest"])


def holds_recorded(node, digest: str) -> bool:
    """Whether our layer still holds what we recorded (its digest): compared with our
    copy of what we wrote when this session has one (bytes, far cheaper than
    hashing the layer), else by hashing it."""
    copy = RESULT_COPIES.get(krita_io.node_id(node))
    if copy is not None and copy["digest"] == digest:
        return same_as_copy(node, copy)
    return layer_digest(node) == digest


def _bounds(node):
    b = node.bounds()
    return (b.x(), b.y(), b.width(), b.height())


def same_as_copy(node, copy) -> bool:
    """The layer holds exactly our copy's bytes (same place, same color space: its
    raw pixels, hence its digest, are those we wrote)."""
    return (krita_io.is_srgb8(krita_io.color_space(node)) and _bounds(node) == tuple(copy["bounds"])
            and krita_io.drain(krita_io.same_as_file_steps(node, copy["rect"], copy["path"], STEP_BYTES)))


# -- copies of what we last read or wrote, in this Krita session ---------------
class _Copies:
    """Files in the worker client's temporary folder holding exactly what a layer
    held when we last read it (line art) or wrote it (our result layers), as sRGB
    BGRA8.  A later run compares the layer with its copy a band at a time: the same
    bytes mean the line art's digest is unchanged (the worker still holds it), or
    that our result layer is untouched (Auto then updates it in place, writing only
    the tile rows that differ).  A copy is never trusted over the layer: any
    difference falls back to the full path.  Retired copies are deleted once no
    request may still name them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.items = collections.OrderedDict()
        self.retired = []

    def get(self, key):
        e = self.items.get(key)
        if e is None or not os.path.isfile(e["path"]):
            return None
        self.items.move_to_end(key)
        return e

    def put(self, key, entry: dict):
        old = self.items.pop(key, None)
        if old is not None and old["path"] != entry["path"]:
            self.retired.append(old["path"])
        self.items[key] = entry
        while len(self.items) > self.limit:
            self.retired.append(self.items.popitem(last=False)[1]["path"])

    def purge(self, client):
        if client.pending():
            return
        for path in self.retired:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.retired = []


LINE_COPIES = _Copies(KEEP_LINE_COPIES)       # (line-art layer id, rect) -> {"path", "digest", "visible", "opaque"}
RESULT_COPIES = _Copies(KEEP_RESULT_COPIES)   # our result layer's id -> {"path", "rect", "bounds", "digest"}


class _Hasher(threading.Thread):
    """sha1 of `prefix` + a file's bytes, off the GUI thread (hashlib lets go of
    the GIL while it hashes): the digest of a layer that will hold those bytes."""

    def __init__(self, path: str, prefix: bytes):
        super().__init__(daemon=True)
        self.path, self.prefix = path, prefix
        self.hexdigest = None
        self.start()

    def run(self):
        try:
            h = hashlib.sha1(self.prefix)
            with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                h.update(m)
            self.hexdigest = h.hexdigest()
        except (OSError, ValueError):
            pass


class _Stopped(Exception):
    """A job ended on purpose (cancelled) while writing: failed(message, kind)."""


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
        self._writing = False     # the answer came: the layers are being written

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
        """End this job (and only this one): it fails with `kind`.  While writing,
        an in-place update is undone (the layer is left as it was) and new layers
        are dropped, unless the layer stack has already begun to change (then the
        few steps left are done)."""
        if self._steps is not None and self.rid is None:
            self._cancelled = (message, kind)     # still reading the layers: stops at the next band
        if self._writing:
            self._cancelled = (message, kind)
        elif self.rid is not None:
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
        self._writing = True
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
        (the GUI stays responsive while a canvas-sized layer is written).  A step
        may yield a delay in ms (waiting for a brush stroke to end)."""
        t0 = time.perf_counter()
        try:
            delay = next(steps)
        except StopIteration as e:
            self._longest("write_longest_step", t0)
            self.node = e.value
            self.timings["write"] = time.perf_counter() - self._t_write
            self.done.emit(self.node)
            return
        except _Stopped as e:
            self.failed.emit(*e.args)
            return
        except UserError as e:
            self.failed.emit(str(e), "user")
            return
        except Exception as e:  # noqa: BLE001  never a traceback dialog in Krita
            self.failed.emit(f"could not write the result layer: {type(e).__name__}: {e}", "internal")
            return
        self.timings["write_steps"] += 1
        self._longest("write_longest_step", t0)
        QTimer.singleShot(int(delay or 0), lambda: self._step(steps))

    def _longest(self, key, t0):
        """Keep the longest single step (what blocks Krita's GUI thread), for benchmarks."""
        self.timings[key] = max(self.timings.get(key, 0.0), time.perf_counter() - t0)

    def _write_steps(self, header, payload):
        """The writing as a generator of steps; by default one step."""
        return self._write(header, payload)
        yield  # unreachable: makes this a generator


class ColorizeJob(WorkerJob):
    """One colorize run (see WorkerJob).

    in_place (the docker's Auto): when our previous result for this line art is
    still exactly what we wrote (compared with this session's copy of it), its
    layer(s) are updated in place -- only the tile rows that changed, a few at a
    time with Krita's event loop free in between -- instead of replacing them
    with new layers.  No layer is added or removed, so the stack, the active
    layer and the layer's own settings (opacity, blending, visibility) stay, and
    the update is not an undo step of its own: the artist's stroke is the undo
    step, and undoing it makes Auto recolor back.  Anything else (no copy, a
    selection, a document not in 8-bit sRGB, a layer the artist painted on,
    renamed or locked) takes the normal path: new layers, one undo step each."""

    def __init__(self, document, line_node, hint_node=None, engine="auto", client=None, in_place=False,
                 **options):
        super().__init__(document, client, options.pop("force", False))
        self.line_node, self.hint_node = line_node, hint_node
        self.engine = engine
        self.in_place = bool(in_place)
        self.options = {k: v for k, v in options.items() if v is not None}
        self._lines = self._hints = None
        self._hints_rect = self._hints_file = None
        self._keep = []          # payload files the client must not delete (copies, the result)

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
        self._lines = yield from self._read_lines_steps(line, sel)
        self.timings["read_lines"] = time.perf_counter() - t0
        if self._lines["opaque"] >= OPAQUE_LINE_ART and line.blendingMode() != "multiply":
            self.notes.append("opaque")
        try:
            yield from self._read_hints_steps()
        except Exception:
            self._cleanup()
            raise
        return self._read_done(sel, t0)

    def _read_lines_steps(self, line, sel):
        """The line art as a payload file and its digest.  Line art that is byte for
        byte our copy from the last run on this layer (compared a band at a time:
        no dump, no hashing) is sent as that copy, under its digest: the worker
        still holds it.  Without a selection a new dump becomes the copy."""
        key = (krita_io.node_id(line), tuple(self.rect))
        copy = LINE_COPIES.get(key) if sel is None else None
        if copy is not None:
            same = yield from krita_io.same_as_file_steps(line, self.rect, copy["path"], STEP_BYTES)
            self.timings["lines_unchanged"] = bool(same)
            if same:
                self._keep.append(copy["path"])
                return dict(copy)
        facts = yield from self._read_visible_steps(line, sel, f"the line-art layer '{line.name()}' is empty",
                                                    "lines", STEP_BYTES)
        if sel is None:
            # The copy's file now (the next run compares with it): not deleted with this job's.
            self._files.remove(facts["path"])
            self._keep.append(facts["path"])
            LINE_COPIES.put(key, dict(facts))
        return facts

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
        facts = yield from krita_io.dump_layer_steps(self.hint_node, area, path, STEP_BYTES, digest=False)
        if facts["visible"]:
            self._hints_file, self._hints_rect = path, crop

    def _send(self):
        x, y, w, h = self.rect
        lines = self._lines
        result = self._result_path()
        self._files.append(f"{result}.part")
        # The result file stays after the answer: it is written to the layer from the
        # file and may become the layer's copy.
        rid = self.client.colorize(w, h, None, self._hints, dict(self.options, engine=self.engine),
                                   lines_file=lines["path"], lines_digest=lines["digest"],
                                   hints_rect=self._hints_rect, hints_file=self._hints_file,
                                   result_file=result, keep=self._keep + [result])
        self._hints = None
        return rid

    def _cleanup(self, *_):
        super()._cleanup()
        for copies in (LINE_COPIES, RESULT_COPIES):
            copies.purge(self.client)

    def _write(self, header, payload):
        return krita_io.drain(self._write_steps(header, payload))

    def _write_steps(self, header, payload):
        engine = str(header.get("engine", ""))
        layers = header.get("layers")
        if self.options.get("layers") and isinstance(layers, list) and layers:
            items, files = self._layer_items(layers, payload)
        else:
            if self.mask is not None:
                payload = bytes(payload)   # the selection blend works on whole buffers (the selection's size)
            items, files = [(result_layer_name(engine), payload, "normal")], [header.get("file")]
        if self.in_place:
            plan = self._in_place_plan(items, files)
            self.timings["in_place"] = plan is not None
            if plan is not None:
                node = yield from self._in_place_steps(plan, engine)
                if node is not None:
                    return node
                self.timings["in_place"] = False    # painted on meanwhile: new layers after all
        node = yield from write_result_steps(self.document, self.line_node, items, self.rect, self.mask, engine,
                                             self.report, files, lambda: self._cancelled)
        self._keep_copies(files)
        return node

    def _layer_items(self, layers, payload):
        """([(name, bgra, blend)], [its file or None]) from the result header's
        "layers": each in its file (next to the result file, deleted with this
        job's files) or inline after the result."""
        n = self.rect[2] * self.rect[3] * 4
        at = n     # inline layers follow the result's own n bytes
        items, files = [], []
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
            files.append(d.get("file"))
        return items, files

    # -- copies of our result layers, and the in-place update ----------------
    def _copyable(self, files) -> bool:
        """Our layers will hold exactly the files' bytes: the whole canvas, no
        selection, an 8-bit sRGB document (no conversion), every item in a file."""
        doc = self.document
        return (self.mask is None and tuple(self.rect) == (0, 0, doc.width(), doc.height())
                and krita_io.is_srgb8(krita_io.color_space(doc)) and bool(files) and all(files))

    def _keep_copies(self, files):
        """After new layers: each result file becomes the copy of the layer it went to."""
        if not self._copyable(files):
            return
        rec = load_records(self.document).get(krita_io.node_id(self.line_node)) or {}
        recs = [rec] + [r for r in rec.get("layers") or [] if isinstance(r, dict)]
        if len(recs) != len(files):
            return
        for r, path in zip(recs, files):
            node = krita_io.find_node(self.document, r.get("result", ""))
            if node is None or not r.get("digest") or not krita_io.is_srgb8(krita_io.color_space(node)):
                continue
            if path in self._files:
                self._files.remove(path)
            RESULT_COPIES.put(r["result"], {"path": path, "rect": tuple(self.rect), "bounds": _bounds(node),
                                            "digest": r["digest"]})

    def _in_place_plan(self, items, files):
        """[(our layer, its new bytes, its copy, the file of those bytes)], bottom first,
        when each item has our untouched layer of the same name to update; else None.
        (Untouched: checked band by band against the copy while writing.)"""
        doc = self.document
        if not self._copyable(files):
            return None
        rec = load_records(doc).get(krita_io.node_id(self.line_node))
        if not rec:
            return None
        recs = [rec] + [r for r in rec.get("layers") or [] if isinstance(r, dict)]
        if len(recs) != len(items):
            return None
        plan = []
        for r, (name, data, _), path in zip(recs, items, files):
            node = krita_io.find_node(doc, r.get("result", ""))
            copy = RESULT_COPIES.get(r.get("result", ""))
            if (node is None or copy is None or node.type() != "paintlayer" or node.locked()
                    or r.get("name") != name or node.name() != name or copy["digest"] != r.get("digest")
                    or tuple(copy["rect"]) != tuple(self.rect) or len(data) != self.rect[2] * self.rect[3] * 4
                    or not krita_io.is_srgb8(krita_io.color_space(node)) or _bounds(node) != tuple(copy["bounds"])):
                return None
            plan.append((node, data, copy, path))
        return plan

    def _in_place_steps(self, plan, engine):
        """Write the tile rows where the new result differs from our copy of the old
        one, STEP_BYTES of the canvas per step (with no brush stroke running).  Each
        row of the layer is compared with the copy as the sweep passes it: at the
        first one the artist painted on, nothing more is written, the rows written
        so far are put back and None returned (new layers instead).  (Paint added
        during the sweep to a row already passed is found by the next run's sweep,
        before it writes anything.)  Cancelled, or our layer or the line art
        gone, the rows written are put back too: the layer is then exactly as it
        was.  Returns the top node, the record and the copies updated."""
        doc, line = self.document, self.line_node
        x, y, w, h = self.rect
        row = w * 4
        step = max(TILE_ROWS, STEP_BYTES // row // TILE_ROWS * TILE_ROWS)
        hashers = [_Hasher(path, f"{x},{y},{w},{h};".encode()) for _, _, _, path in plan]
        olds = []
        # The rows written, to put back: (layer, new bytes, old bytes, first row, rows).
        written = []
        try:
            for _, _, copy, _ in plan:
                with open(copy["path"], "rb") as f:
                    olds.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            for y0 in range(0, h, step):
                yield from idle_steps(doc)
                self._check_in_place(plan, written)
                for b0 in range(y0, min(h, y0 + step), TILE_ROWS):
                    n = min(TILE_ROWS, h - b0)
                    a, z = b0 * row, (b0 + n) * row
                    for (node, data, _, _), old in zip(plan, olds):
                        # Every row is compared, written or not: a layer painted on anywhere is
                        # no longer ours to update.
                        before = old[a:z]
                        if bytes(node.pixelData(x, y + b0, w, n)) != before:
                            self._put_back(written)
                            return None
                        new = data[a:z]
                        if new != before:
                            node.setPixelData(QByteArray(new), x, y + b0, w, n)
                            written.append((node, data, old, b0, n))
                        del new, before
                yield
            yield from idle_steps(doc)
            self._check_in_place(plan, written)
            self.timings["rows_written"] = len(written) * TILE_ROWS
            # Pixels written with setPixelData show once the projection is recomputed
            # (Krita 5.1's scripting API has no smaller update than the whole image),
            # off the GUI thread.
            if written:
                t0 = time.perf_counter()
                yield from krita_io.refresh_steps(doc)
                self.timings["refresh"] = time.perf_counter() - t0
        except BaseException:
            self._put_back(written)
            raise
        finally:
            for m in olds:
                m.close()
        # The record: the same layers, with the digests of what they hold now.
        digests = []
        t0 = time.perf_counter()
        for (node, _, _, _), hasher in zip(plan, hashers):
            if _bounds(node) == (x, y, w, h):
                while hasher.is_alive():
                    yield 2
                d = hasher.hexdigest
            else:
                d = None
            digests.append(d or (yield from layer_digest_steps(node, STEP_BYTES)))
        self.timings["digest_wait"] = time.perf_counter() - t0
        records = load_records(doc)
        rec = records.get(krita_io.node_id(line)) or {}
        recs = [rec] + [r for r in rec.get("layers") or [] if isinstance(r, dict)]
        for r, (node, _, _, path), d in zip(recs, plan, digests):
            r["digest"] = d
            if path in self._files:
                self._files.remove(path)
            RESULT_COPIES.put(krita_io.node_id(node), {"path": path, "rect": tuple(self.rect),
                                                       "bounds": _bounds(node), "digest": d})
        rec["engine"] = engine
        save_records(doc, records)
        self.report["in_place"] = True
        return plan[-1][0]

    def _check_in_place(self, plan, written):
        """Between steps: stop (putting the rows back) when cancelled, or when our
        layer or the line art left the document."""
        doc = self.document
        if self._cancelled:
            self._put_back(written)
            raise _Stopped(*self._cancelled)
        if krita_io.find_node(doc, krita_io.node_id(self.line_node)) is None:
            self._put_back(written)
            raise UserError("the line-art layer was removed while colorizing")
        for node, _, _, _ in plan:
            if krita_io.find_node(doc, krita_io.node_id(node)) is None:
                self._put_back(written)
                raise UserError(f"the layer '{node.name()}' was removed while colorizing")

    def _put_back(self, written):
        """Undo an in-place update: each row we wrote gets its old pixels again, unless
        the artist painted on it since (then their paint stays).  The layer is
        then what it was (it may be out of the document: undone by the artist)."""
        x, y, w, _ = self.rect
        row = w * 4
        for node, data, old, b0, n in reversed(written):
            a, z = b0 * row, (b0 + n) * row
            try:
                if bytes(node.pixelData(x, y + b0, w, n)) == data[a:z]:
                    node.setPixelData(QByteArray(old[a:z]), x, y + b0, w, n)
            except RuntimeError:     # the document was closed meanwhile
                return
        if written:
            del written[:]
            try:
                self.document.refreshProjection()
            except RuntimeError:
                pass


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
                        step_bytes: int = 0, removed: str = "the layer was removed while writing the result",
                        files=None, stop=None):
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
    for the removals and one for each new layer.  Returns the new nodes.

    files: the file each item's bytes come from (or None), so that a new layer's
    digest is hashed from the file off the GUI thread rather than read back;
    stop(): (message, kind) to give up before the document changes (_Stopped)."""
    x, y, w, h = rect
    olds = {}
    for old, edited in previous_layers(document, source, kind):
        if not edited:
            olds.setdefault(old.name(), []).append(old)
    doc_space = krita_io.color_space(document)
    rows = max(1, step_bytes // (w * 4)) if step_bytes else krita_io.band_rows(w)
    new_nodes = []
    for i, (name, bgra, blend) in enumerate(items):
        hasher = None
        if mask is None and files and files[i] and krita_io.is_srgb8(doc_space):
            # The layer's digest if its pixels are the file's bytes where we write them.
            hasher = _Hasher(files[i], f"{x},{y},{w},{h};".encode())
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
        if stop is not None and stop():
            raise _Stopped(*stop())
        digest = None
        if hasher is not None and _bounds(new) == (x, y, w, h):
            while hasher.is_alive():
                yield 2
            digest = hasher.hexdigest
        if digest is None:
            digest = yield from layer_digest_steps(new, step_bytes)
        new_nodes.append((new, name, digest))
    if stop is not None and stop():
        raise _Stopped(*stop())
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
    # Removing or adding a layer waits (in Krita, on the GUI thread) for every update
    # still running, such as the recomposite the previous change started: wait for
    # that here without blocking, then the change itself is quick.
    yield from idle_steps(document, poll_ms=5)
    for group in olds.values():
        for old in group:
            old.remove()
    # Each change of the layer stack is one undo step and costs Krita some time: the
    # event loop runs in between (the artist's layers never move, whatever happens).
    yield
    for new, _, _ in new_nodes:
        yield from idle_steps(document, poll_ms=5)
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
    yield from krita_io.refresh_steps(document)
    if report is not None and kept:
        report["kept"] = ", ".join(kept)    # the name(s) the artist's edited result is kept under
    return [n for n, _, _ in new_nodes]


def idle_steps(document, wait_ms: int = 0, poll_ms: int = IDLE_POLL_MS):
    """Yield `poll_ms` steps until Krita's image runs no update or stroke (at
    most `wait_ms`, default IDLE_WAIT_MS; then go on regardless).  tryBarrierLock
    does not wait: it fails while anything runs, and is released at once."""
    waited, limit = 0, wait_ms or IDLE_WAIT_MS
    while waited < limit:
        if document.tryBarrierLock():
            document.unlock()
            return
        yield poll_ms
        waited += poll_ms


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


def write_result_steps(document, line_node, items, rect, mask, engine_label: str, report=None, files=None,
                       stop=None):
    """write_result (one item) or write_result_layers, as steps (see _write_layers_steps)
    with Krita's event loop free between them.  Returns the top new node."""
    if krita_io.find_node(document, krita_io.node_id(line_node)) is None:
        raise UserError("the line-art layer was removed while colorizing")
    nodes = yield from _write_layers_steps(document, line_node, items, rect, mask, engine_label, "results",
                                           insert_below, report, STEP_BYTES,
                                           "the line-art layer was removed while colorizing", files, stop)
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
