"""The web control surface (issue 12): a phone-first page served from the board.

:mod:`edgemix.rt.web.server` (aiohttp: the page, its files and one WebSocket per client,
on the control process's surface thread), :mod:`edgemix.rt.web.pairing` (token, Host and
Origin checks), ``static/`` (plain HTML, CSS and JavaScript: no build step, no CDN).
"""
from edgemix.rt.web.server import WebServer, make_server

__all__ = ["WebServer", "make_server"]
