"""Fetch one file into the store's partial folder: streamed, resumable, verified.

`fetch(...)` keeps the bytes in `<models>/.partial/<sha256 prefix>-<name>.part`
(named by the expected digest, so a resume can only ever continue the same
file), resumes it with an HTTP Range request, retries dropped connections
with growing waits, gives up with a clear message when no byte arrives for
`stall_timeout` seconds, and checks size and sha256 every time; a file that
fails the check is deleted.
"""
from __future__ import annotations

import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from krita_alac import __version__
from krita_alac.engine import store
from krita_alac.engine.errors import UserError
from krita_alac.engine.store import sha256_file

from .progress import Progress, human_bytes
from .urls import check_url, is_loopback

CHUNK = 1 << 16
RETRY_STATUS = (408, 425, 429, 500, 502, 503, 504)


@dataclass
class FetchOptions:
    stall_timeout: float = 30.0   # seconds without a byte before giving up
    retries: int = 4              # extra attempts after a dropped connection or a 5xx
    retry_wait: float = 1.0       # first wait between attempts, doubled each time
    quiet: bool = False


class _Retry(Exception):
    """A failure worth another attempt (dropped connection, busy server)."""


class _Stalled(Exception):
    pass


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects must obey the same rules as the first URL (no https -> http downgrade)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(urllib.parse.urljoin(req.full_url, newurl))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str):
    handlers = [_CheckedRedirects()]
    if is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # this machine is never behind a proxy
    return urllib.request.build_opener(*handlers)


def partial_path(name: str, sha256: str) -> str:
    return os.path.join(store.partial_dir(), f"{sha256[:16]}-{store.check_file_name(name)}.part")


def _note(msg: str, opts: FetchOptions):
    if not opts.quiet:
        print(msg, file=sys.stderr, flush=True)


def fetch(url: str, name: str, sha256: str, size: int | None = None, opts: FetchOptions | None = None) -> str:
    """The path of the verified download of `url` (a .part file in the store's partial folder)."""
    opts = opts or FetchOptions()
    check_url(url)
    store.check_file_name(name)
    part = partial_path(name, sha256)
    failures = 0
    while True:
        have = os.path.getsize(part) if os.path.isfile(part) else 0
        if size is not None and have > size:
            os.unlink(part)  # longer than the file can be: not ours to resume
            have = 0
        if size is not None and have == size:
            break  # complete from an earlier run: verified below like any download
        try:
            _transfer(url, name, part, have, size, opts)
            break
        except _Stalled as e:
            raise UserError(f"{name}: download stalled, no data for {opts.stall_timeout:g} s ({e}); "
                            "run again to resume, or allow longer with --stall-timeout")
        except _Retry as e:
            failures += 1
            if failures > opts.retries:
                raise UserError(f"{name}: download failed after {failures} attempts ({e}); "
                                "run again to resume")
            wait = opts.retry_wait * 2 ** (failures - 1)
            _note(f"{name}: {e}; retrying in {wait:g} s ({failures}/{opts.retries})", opts)
            time.sleep(wait)
    verify(part, name, sha256, size)
    return part


def verify(path: str, name: str, sha256: str, size: int | None = None):
    """Size and sha256 of a finished download; a file that fails is deleted."""
    got_size = os.path.getsize(path)
    if size is not None and got_size != size:
        os.unlink(path)
        raise UserError(f"{name}: wrong size ({got_size} bytes, expected {size}): the download was deleted")
    digest = sha256_file(path)
    if digest != sha256:
        os.unlink(path)
        raise UserError(f"{name}: sha256 mismatch (expected {sha256}, got {digest}): the download was deleted")


def _content_range(value: str | None):
    """(start, total) from 'bytes START-END/TOTAL' (total None when '*')."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _open(url: str, have: int, opts: FetchOptions):
    headers = {"User-Agent": f"krita_alac-model-download/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return _opener(url).open(urllib.request.Request(url, headers=headers), timeout=opts.stall_timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:
            return None  # nothing past what we have: the partial file is complete (or wrong; the check decides)
        if e.code in RETRY_STATUS:
            raise _Retry(f"HTTP {e.code} {e.reason}")
        raise UserError(f"HTTP {e.code} {e.reason} for {url}")
    except socket.timeout:
        raise _Stalled("no response from the server")
    except urllib.error.URLError as e:
        if isinstance(e.reason, socket.timeout):
            raise _Stalled("no response from the server")
        raise _Retry(f"cannot connect: {e.reason}")
    except (http.client.HTTPException, OSError) as e:
        raise _Retry(f"connection failed: {e or type(e).__name__}")


def _transfer(url, name, part, have, size, opts):
    resp = _open(url, have, opts)
    if resp is None:
        return
    with resp:
        total = None
        if have and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                os.unlink(part)  # the server answered another range: start over rather than guess
                raise _Retry("the server resumed at the wrong offset")
            mode = "ab"
        elif resp.status == 200:
            have, mode = 0, "wb"  # the server ignores Range: start over
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise UserError(f"{name}: unexpected HTTP {resp.status} from {url}")
        if size is not None and total is not None and total != size:
            if os.path.exists(part):
                os.unlink(part)
            raise UserError(f"{name}: the server has {total} bytes but {size} were expected; nothing was kept")
        expected = size if size is not None else total
        bar = Progress(name, expected, start=have, quiet=opts.quiet)
        with open(part, mode) as f:
            while True:
                try:
                    chunk = resp.read1(CHUNK)  # what has arrived: a stall keeps the bytes before it
                except socket.timeout:
                    bar.abort()
                    raise _Stalled(f"got {human_bytes(f.tell())}" + (f" of {human_bytes(expected)}" if expected else ""))
                except (http.client.HTTPException, OSError) as e:
                    bar.abort()
                    raise _Retry(f"connection lost after {human_bytes(f.tell())} ({type(e).__name__})")
                except KeyboardInterrupt:
                    bar.abort()  # the "interrupted" message gets a line of its own
                    raise
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
            got = f.tell()
        if expected is not None and got < expected:
            bar.abort()
            raise _Retry(f"connection closed after {human_bytes(got)} of {human_bytes(expected)}")
        bar.finish()
