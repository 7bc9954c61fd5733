"""Which URLs may be fetched: https anywhere, plain http only on this machine (tests, local mirrors)."""
from __future__ import annotations

import ipaddress
import urllib.parse

from krita_alac.engine.errors import UserError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url) -> str:
    """`url` if it may be downloaded from, else UserError."""
    if not isinstance(url, str) or not url:
        raise UserError("missing download URL")
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise UserError(f"not a download URL: {url}")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback(host):
        return url
    if parts.scheme == "http":
        raise UserError(f"refusing plain http from {host}: model downloads must use https ({url})")
    raise UserError(f"unsupported URL scheme {parts.scheme!r}: model downloads must use https ({url})")
