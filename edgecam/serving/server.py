"""A small threaded HTTP server for one live page: MJPEG stream, server-sent events, JSON API.

Routes (all GET unless noted; every one needs the token when the server has one):

    /                 the page (``Page.html`` from ``static/``)
    /static/NAME      a file from ``static/`` (a fixed list read at start: no path lookups)
    /stream.mjpg      multipart/x-mixed-replace JPEG stream of the newest frames
    /api/status       ``Page.status()`` as JSON
    /api/events       the same as server-sent events, on every change (at most 10 per second)
    POST /api/NAME    ``Page.post(NAME, json_body)`` (e.g. collect's save and burst)

Safety: loopback addresses by default; any other address needs an access token, passed as
``?token=`` or ``Authorization: Bearer``. Without a token, requests must name a loopback host
(against DNS rebinding), and POSTs must be JSON (so other sites cannot submit forms to it).
"""

from __future__ import annotations

import errno
import hmac
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlsplit

import cv2
import numpy as np

from edgecam.config.camera import ServeConfig, is_loopback, parse_address
from edgecam.console import log as _log
from edgecam.errors import EdgecamError
from edgecam.serving.slots import FrameSlot, Latest

STATIC = Path(__file__).with_name("static")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
JPEG_QUALITY = 80
BOUNDARY = "edgecam-frame"
EVENT_INTERVAL = 0.1  # seconds between two status events to one client (newer states are merged)
KEEPALIVE = 10.0  # seconds of silence before an event stream sends a comment (finds dead clients)
SEND_TIMEOUT = 20.0  # a client that accepts nothing for this long is dropped
MAX_STREAMS = 16  # open MJPEG streams (each holds a thread); more get 503
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


class ServeError(EdgecamError):
    """The web view cannot start (port in use, address not on this machine, no token, ...)."""


def start_server(page: Page, cfg: ServeConfig) -> WebServer:
    """Serve ``page`` on ``cfg.address``; a non-loopback address gets a generated token if none is given."""
    host, port = parse_address(cfg.address)
    token = cfg.token or ("" if is_loopback(host) else secrets.token_urlsafe(16))
    return WebServer(page, host, port, token)


# -- what a server shows --------------------------------------------------------------------
class Page:
    """One live page: its HTML, the frame slot, a change signal, its status and its actions."""

    html = "live.html"  # the page's body, in static/; page.html wraps it
    title = heading = "edgecam"
    script = "live.js"

    def __init__(self):
        self.frames = FrameSlot()
        self.changes = Latest()  # published whenever status() would say something new

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

    def close(self) -> None:
        self.frames.close()
        self.changes.close()


# -- the server -----------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # on Linux this still refuses a port another socket listens on

    def __init__(self, address, handler, family):
        self.address_family = family
        super().__init__(address, handler)


class WebServer:
    """Serves ``page`` on ``host:port`` from a background thread; ``close()`` ends every client."""

    def __init__(self, page: Page, host: str = "127.0.0.1", port: int = 8080, token: str = "",
                 log: Callable[[str], None] | None = None):
        self.page, self.token = page, token
        self.log = log or _log
        self.loopback = is_loopback(host)
        if not self.loopback and not token:
            raise ServeError(f"refusing to serve on {host}:{port} without an access token "
                             "(other machines could watch and control it); pass --token or bind 127.0.0.1")
        self.static = _load_static()
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.httpd = _HTTPServer((host, port), _handler_class(self), family)
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


def _host_is_loopback(header: str | None) -> bool:
    if not header:
        return False
    host = header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    else:
        host = host.rpartition(":")[0] if host.count(":") == 1 else host
    return is_loopback(host)


def _handler_class(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        web = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    web: WebServer
    timeout = SEND_TIMEOUT
    server_version = "edgecam"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.web.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.web.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines carry the token; problems are reported where they happen

    # -- dispatch ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        try:
            if not self.web.token and not _host_is_loopback(self.headers.get("Host")):
                return self._json(403, {"error": "this server answers only to localhost / 127.0.0.1"})
            if not self.web.authorised(query, self.headers.get("Authorization")):
                return self._json(401, {"error": "access token required: open the link edgecam printed at start"},
                                  {"WWW-Authenticate": 'Bearer realm="edgecam"'})
            if method == "POST":
                return self._post(path)
            if path in ("/", "/index.html"):
                return self._page()
            if path.startswith("/static/"):
                return self._static(path[len("/static/"):])
            if path == "/stream.mjpg":
                return self._stream()
            if path == "/api/status":
                return self._json(200, self.web.page.status())
            if path == "/api/events":
                return self._events()
            return self._json(404, {"error": "not found"})
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client went away or stopped reading
        except Exception as exc:  # a bug must not kill the server or the camera loop
            self.web.log(f"web: {method} {parts.path}: {type(exc).__name__}: {exc}")
            try:
                self._json(500, {"error": "internal error"})
            except OSError:
                pass

    # -- responses -----------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: dict, extra: dict | None = None) -> None:
        self._send(code, json.dumps(data).encode(), "application/json", extra)

    def _page(self) -> None:
        page = self.web.page
        frame, ctype = self.web.static["page.html"]  # what every page shares: head, styles, common.js
        html = (frame.replace(b"{{body}}", self.web.static[page.html][0])
                .replace(b"{{title}}", page.title.encode()).replace(b"{{script}}", page.script.encode())
                .replace(b"{{heading}}", page.heading.encode()))
        query = f"?token={quote(self.web.token, safe='')}" if self.web.token else ""
        self._send(200, html.replace(b"{{query}}", query.encode()), ctype)

    def _static(self, name: str) -> None:
        entry = self.web.static.get(name)
        if entry is None or name.endswith(".html"):
            return self._json(404, {"error": "not found"})
        self._send(200, *entry)

    def _post(self, path: str) -> None:
        if not path.startswith("/api/") or "/" in path[len("/api/"):]:
            return self._json(404, {"error": "not found"})
        if self.headers.get_content_type() != "application/json":
            return self._json(415, {"error": "send JSON (Content-Type: application/json)"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > 4096:
            return self._json(413, {"error": "request too large"})
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._json(400, {"error": "invalid JSON"})
        if not isinstance(body, dict):
            return self._json(400, {"error": "expected a JSON object"})
        code, data = self.web.page.post(path[len("/api/"):], body)
        self._json(code, data)

    def _start_stream(self, content_type: str) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()

    def _stream(self) -> None:
        """Newest frames as they come; a frame that arrives while this client is busy is skipped."""
        page = self.web.page
        if page.frames.viewers >= MAX_STREAMS:
            return self._json(503, {"error": f"too many viewers (at most {MAX_STREAMS} streams)"})
        self._start_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        with page.frames.watching() as viewer:
            page.changed()
            try:
                seen = page.frames.seq
                while not page.frames.closed:
                    got = page.frames.wait_newer(seen, timeout=1.0)
                    if got is None:
                        continue
                    seq, jpeg = got
                    viewer.skipped += seq - seen - 1 if viewer.sent else 0
                    seen = seq
                    self.wfile.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (BOUNDARY.encode(), len(jpeg), jpeg))
                    viewer.sent += 1
            finally:
                page.changed()

    def _events(self) -> None:
        """Server-sent events: the status on every change, merged to at most 10 per second."""
        page = self.web.page
        self._start_stream("text/event-stream")
        seen, quiet_since = -1, time.monotonic()
        while not page.changes.closed:
            got = page.changes.wait_newer(seen, timeout=1.0)
            if got is None:
                if time.monotonic() - quiet_since > KEEPALIVE:
                    self.wfile.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
                continue
            seen = got[0]
            self.wfile.write(b"data: %s\n\n" % json.dumps(page.status()).encode())
            quiet_since = time.monotonic()
            time.sleep(EVENT_INTERVAL)
