"""A small threaded HTTP server for one live page: MJPEG stream, server-sent events, JSON API.

Routes (all GET unless noted; every one needs the token when the server has one):

    /                 the page (``Page.html`` from ``static/``)
    /static/NAME      a file from ``static/`` (a fixed list read at start: no path lookups)
    /stream.mjpg      multipart/x-mixed-replace JPEG stream of the newest frames
    /api/status       ``Page.status()`` as JSON
    /api/events       the same as server-sent events, on every change (at most 10 per second)
    POST /api/NAME    ``Page.post(NAME, json_body)`` (e.g. collect's save and burst)
    other GETs        ``Page.get(path, query)``: a page's own routes (e.g. the review's list and images)
    /PREFIX/...       all of the above for the page mounted at PREFIX (``Page.mounts``), e.g. the
                      review of kept frames beside the live view

Safety: loopback addresses by default; any other address needs an access token, passed as
``?token=`` or ``Authorization: Bearer``. Without a token, requests must name a loopback host
(against DNS rebinding), and POSTs must be JSON (so other sites cannot submit forms to it).
Limits: MAX_STREAMS video and MAX_EVENT_STREAMS event streams (a place is taken in one step
under a lock, so a crowd cannot overshoot), and what ``limits.py`` sets for every connection:
how many at once, how long its headers may take, how many bytes it may send. URL credentials
(``rtsp://user:password@...``) are cut from every answer and log line.
"""

from __future__ import annotations

import errno
import hmac
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import cv2
import numpy as np

from edgecam.config.camera import ServeConfig, is_loopback, parse_address
from edgecam.console import log as _log
from edgecam.errors import EdgecamError
from edgecam.serving import limits
from edgecam.serving.handler import Handler, hide_credentials
from edgecam.serving.limits import MAX_EVENT_STREAMS
from edgecam.serving.slots import FrameSlot, Latest, Places

STATIC = Path(__file__).with_name("static")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
JPEG_QUALITY = 80


class ServeError(EdgecamError):
    """The web view cannot start (port in use, address not on this machine, no token, ...)."""


def start_server(page: Page, cfg: ServeConfig) -> WebServer:
    """Serve ``page`` on ``cfg.address``; a non-loopback address gets a generated token if none is given."""
    host, port = parse_address(cfg.address)
    token = cfg.token or ("" if is_loopback(host) else secrets.token_urlsafe(16))
    return WebServer(page, host, port, token)


# -- what a server shows --------------------------------------------------------------------
Reply = tuple  # (code, JSON object) or (code, body bytes, content type)


class Page:
    """One live page: its HTML, the frame slot, a change signal, its status and its actions."""

    html = "live.html"  # the page's body, in static/; ``document`` wraps it
    document = "page.html"  # the document around the body (with the stream); a page may have its own
    title = heading = "edgecam"
    script = "live.js"

    def __init__(self):
        self.frames = FrameSlot()
        self.changes = Latest()  # published whenever status() would say something new
        self.mounts: dict[str, Page] = {}  # other pages served under /NAME/ by the same server

    def changed(self) -> None:
        self.changes.publish(None)

    def show(self, bgr: np.ndarray, quality: int = JPEG_QUALITY) -> None:
        """Encode a BGR frame for the stream, only while someone watches it."""
        if self.frames.viewers:
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                self.frames.publish(jpeg.tobytes())

    def status(self) -> dict:
        return {"viewers": self.frames.viewers}

    def post(self, action: str, body: dict) -> tuple[int, dict]:
        return 404, {"error": f"no action {action!r}"}

    def get(self, path: str, query: dict[str, list[str]]) -> Reply | None:
        """A GET route of this page beyond the shared ones; None: not found."""
        return None

    def close(self) -> None:
        self.frames.close()
        self.changes.close()
        for page in self.mounts.values():
            page.close()


# -- the server -----------------------------------------------------------------------------
class WebServer:
    """Serves ``page`` on ``host:port`` from a background thread; ``close()`` ends every client."""

    def __init__(self, page: Page, host: str = "127.0.0.1", port: int = 8080, token: str = "",
                 log: Callable[[str], None] | None = None):
        self.page, self.token = page, token
        self._log = log or _log
        self.event_streams = Places(MAX_EVENT_STREAMS)
        self.loopback = is_loopback(host)
        if not self.loopback and not token:
            raise ServeError(f"refusing to serve on {host}:{port} without an access token "
                             "(other machines could watch and control it); pass --token or bind 127.0.0.1")
        self.static = _load_static()
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.httpd = limits.LimitedHTTPServer((host, port), _handler_class(self), family)
        except socket.gaierror:
            raise ServeError(f"--serve {host}:{port}: unknown host {host!r}") from None
        except OSError as exc:
            raise ServeError(f"cannot serve on {host}:{port}: {_bind_problem(exc)}") from None
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"web {self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The address to open, with the token when there is one."""
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    @property
    def local_url(self) -> str:
        """The same page through loopback (what tests and this machine can always open)."""
        host = "[::1]" if self.httpd.address_family == socket.AF_INET6 else "127.0.0.1"
        return f"http://{host}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    @property
    def connections(self) -> int:
        """Connections being served now (each by a thread)."""
        return self.httpd.active

    def log(self, message: str) -> None:
        self._log(hide_credentials(message))

    def announce(self, what: str) -> None:
        if self.loopback:
            where = "this machine only; --serve 0.0.0.0:PORT opens it to the network with a token"
        else:
            where = "keep the token private: anyone with this link can watch"
        self.log(f"{what}: {self.url} ({where})")

    def close(self) -> None:
        self.page.close()  # wakes every client waiting for a frame or an event
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._clients_lock:
            clients = list(self._clients)
        for conn in clients:  # unblocks threads stuck sending to a stalled client
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> "WebServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- used by the handler -----------------------------------------------------------------
    def track(self, conn: socket.socket, add: bool) -> None:
        with self._clients_lock:
            (self._clients.add if add else self._clients.discard)(conn)

    def authorised(self, query: dict[str, list[str]], header: str | None) -> bool:
        if not self.token:
            return True
        given = query.get("token", [""])[-1]
        if header and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "port already in use (another edgecam or server?); pick another port"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need root; use e.g. 8080)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available (not an address of this machine)"
    return exc.strerror or str(exc)


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every file in static/, by name: requests can only ever pick one of these."""
    files = {}
    for path in STATIC.iterdir():
        if path.is_file() and path.suffix in CONTENT_TYPES:
            files[path.name] = (path.read_bytes(), CONTENT_TYPES[path.suffix])
    return files


def _handler_class(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class ServerHandler(Handler):
        web = server

    return ServerHandler
