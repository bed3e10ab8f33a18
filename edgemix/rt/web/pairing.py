"""Who may use the web surface: the pairing token, the Host and Origin checks.

* **Bound to a loopback address** (the default, 127.0.0.1): no token.  The browser on
  this machine is the only client, but a web page it has open elsewhere must not drive
  the mix, so the WebSocket's ``Origin`` must be this server, and the ``Host`` header must
  name this machine (an address, ``localhost`` or its host name), which stops DNS
  rebinding (a hostile name resolving to 127.0.0.1 carries its own name in ``Host``).
* **Bound to any other address**: additionally a **pairing token**, made fresh at start
  (:func:`new_token`) and printed with the address, as a URL and as a QR code in the
  terminal (:func:`qr_text`, with ``segno``).  Opening ``/?token=...`` sets a cookie
  (``HttpOnly``, ``SameSite=Strict``) the page and its WebSocket then carry; without it
  the page, its files and the WebSocket are refused (403).  Tokens are compared in
  constant time.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

#: Name of the cookie that carries the token after the first visit.
COOKIE = "edgemix_token"
#: Query parameter of the address printed at start.
QUERY = "token"


def new_token() -> str:
    """A fresh pairing token: 128 bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def token_ok(expected: str | None, given: str | None) -> bool:
    """True when no token is needed, or ``given`` is the token (constant time)."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), str(given).encode())


def _hostname(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    if h.count(":") == 1:
        return h.partition(":")[0]
    return h


def host_ok(host_header: str | None) -> bool:
    """The request names this machine: an IP address, ``localhost`` or its host name
    (``name`` or ``name.local``).  Anything else is a name that merely resolves here."""
    if not host_header:
        return False
    name = _hostname(host_header).lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    me = socket.gethostname().lower()
    return name in ("localhost", me, f"{me}.local", me.partition(".")[0])


def origin_ok(origin: str | None, host_header: str | None) -> bool:
    """A WebSocket ``Origin`` from this server's own page (same scheme-less host:port).
    No ``Origin`` (a program, not a browser) passes: only browsers are tricked into
    connecting by other sites, and they always send one."""
    if origin is None:
        return True
    try:
        o = urlsplit(origin)
    except ValueError:
        return False
    if o.scheme not in ("http", "https") or not host_header:
        return False
    return o.netloc.lower() == host_header.strip().lower()


def qr_text(url: str) -> str:
    """The URL as a QR code drawn with text, for the terminal (``segno``); "" if segno is
    not installed."""
    try:
        import segno
    except ImportError:
        return ""
    import io
    buf = io.StringIO()
    segno.make(url, error="l").terminal(out=buf, compact=True)
    return buf.getvalue()
