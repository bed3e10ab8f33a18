"""A one-shot OSC request to a running edgemix (the CLI's ``edgemix scene ...``)."""
from __future__ import annotations

import socket

from pythonosc.osc_message import OscMessage

from edgemix.rt.osc.server import message


class RequestError(RuntimeError):
    """No answer, or an ``/edgemix/error`` answer: one line naming the fix."""


def request(host: str, port: int, address: str, *args, timeout_s: float = 5.0) -> list:
    """Send ``address`` with ``args`` and return the arguments of the reply to it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        try:
            s.sendto(message(address, *args), (host, port))
            while True:
                m = OscMessage(s.recvfrom(65536)[0])
                if m.address == "/edgemix/error":
                    raise RequestError(str(m.params[1]) if len(m.params) > 1 else "refused")
                if m.address == address:
                    return list(m.params)
        except socket.timeout:
            raise RequestError(f"no answer from {host}:{port} within {timeout_s:g} s: is "
                               "`edgemix run --osc` running there?") from None
        except OSError as e:
            raise RequestError(f"cannot reach {host}:{port} ({e.strerror or e})") from None
