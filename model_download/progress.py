"""A one-line download progress bar on stderr: bytes, percent, speed, ETA.

On a terminal the line is redrawn in place; elsewhere (a log, Krita's
worker pipe) a plain line is printed every tenth of the way.
"""
from __future__ import annotations

import sys
import time

BAR_WIDTH = 24
REDRAW_S = 0.2


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_time(s: float) -> str:
    s = int(s + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, label: str, total: int | None, start: int = 0, stream=None, quiet: bool = False):
        self.label = label
        self.total = total
        self.done = start
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.start = start          # resumed bytes do not count towards the speed
        self._last_draw = 0.0
        self._last_tenth = -1

    def update(self, n: int):
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= REDRAW_S:
                self._last_draw = now
                self._write("\r" + self.line(now) + "\x1b[K")
        elif self.total:
            tenth = self.done * 10 // self.total
            if tenth != self._last_tenth and tenth < 10:  # the last line comes from finish()
                self._last_tenth = tenth
                self._write(self.line(now) + "\n")

    def finish(self, note: str = ""):
        line = self.line(time.monotonic(), final=True) + (f"  {note}" if note else "")
        self._write(("\r" + line + "\x1b[K\n") if self.tty else line + "\n")

    def abort(self):
        """End a redrawn line so an error message starts on its own line."""
        if self.tty:
            self._write("\n")

    def speed(self, now: float) -> float:
        return (self.done - self.start) / max(now - self.t0, 1e-6)

    def line(self, now: float, final: bool = False) -> str:
        speed = self.speed(now)
        parts = [self.label]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            fill = int(frac * BAR_WIDTH)
            parts.append("[" + "#" * fill + "." * (BAR_WIDTH - fill) + "]")
            parts.append(f"{frac * 100:3.0f}%  {human_bytes(self.done)} / {human_bytes(self.total)}")
        else:
            parts.append(human_bytes(self.done))
        parts.append(f"{human_bytes(speed)}/s")
        if final:
            parts.append(f"in {human_time(now - self.t0)}")
        elif self.total and speed > 0:
            parts.append(f"ETA {human_time((self.total - self.done) / speed)}")
        return "  ".join(parts)

    def _write(self, text: str):
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()
