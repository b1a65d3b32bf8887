"""One client connection of the web server: the routes, the token and Host checks, the streams.

Each connection gets a thread running ``Handler`` (see ``server.py`` for the routes). It reads
through ``limits.RequestReader`` (a deadline and a byte budget), takes a place among the
streams before answering one (``slots``), and writes nothing that names URL credentials.
"""

from __future__ import annotations

import io
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from edgecam.config.camera import is_loopback
from edgecam.serving import limits
from edgecam.serving.limits import MAX_EVENT_STREAMS, MAX_STREAMS

if TYPE_CHECKING:
    from edgecam.serving.server import Page, WebServer

BOUNDARY = "edgecam-frame"
EVENT_INTERVAL = 0.1  # seconds between two status events to one client (newer states are merged)
KEEPALIVE = 10.0  # seconds of silence before an event stream sends a comment (finds dead clients)
SEND_TIMEOUT = 20.0  # a client that accepts nothing for this long is dropped
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s\"'<>]*@")


def hide_credentials(text: str) -> str:
    """``text`` with the user:password part of every URL in it removed (rtsp://a:b@cam/ -> rtsp://cam/)."""
    return _USERINFO.sub(r"\1", text)


def _host_is_loopback(header: str | None) -> bool:
    if not header:
        return False
    host = header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    else:
        host = host.rpartition(":")[0] if host.count(":") == 1 else host
    return is_loopback(host)


class Handler(BaseHTTPRequestHandler):
    """Answers one connection (``server._handler_class`` binds ``web``, the WebServer it serves)."""

    web: WebServer
    page: Page  # the page this request is for: the server's, or one mounted under it
    timeout = SEND_TIMEOUT
    server_version = "edgecam"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # read through the limits instead (deadline and byte budget)
        self.reader = limits.RequestReader(self.connection, SEND_TIMEOUT)
        self.rfile = io.BufferedReader(self.reader)
        self.web.track(self.connection, True)

    def handle_one_request(self) -> None:
        """One request, its line and headers within HEADER_TIMEOUT seconds and MAX_HEAD bytes."""
        self.reader.limit(limits.HEADER_TIMEOUT, limits.MAX_HEAD)
        try:
            super().handle_one_request()  # a timeout there ends the connection quietly
        except limits.TooLarge:
            self.close_connection = True
            try:
                self.wfile.write(limits.response(431, "Request Header Fields Too Large", "request headers too large"))
            except OSError:
                pass

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
            self.page, path = self._mounted(path)
            if self.page is None:  # /NAME without its slash: relative links need it
                where = f"{path}/" + (f"?{parts.query}" if parts.query else "")
                return self._send(308, b"", "text/plain", {"Location": where})
            if method == "POST":
                return self._post(path)
            if path in ("/", "/index.html"):
                return self._page()
            if path.startswith("/static/"):
                return self._static(path[len("/static/"):])
            if path == "/stream.mjpg":
                return self._stream()
            if path == "/api/status":
                return self._json(200, self.page.status())
            if path == "/api/events":
                return self._events()
            reply = self.page.get(path, query)
            if reply is not None:
                return self._json(*reply) if len(reply) == 2 else self._send(*reply)
            return self._json(404, {"error": "not found"})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away or stopped reading
        except Exception as exc:  # a bug must not kill the server or the camera loop
            self.web.log(f"web: {method} {parts.path}: {type(exc).__name__}: {exc}")
            try:
                self._json(500, {"error": "internal error"})
            except OSError:
                pass

    def _mounted(self, path: str) -> tuple[Page | None, str]:
        """The page a path is for, and the path within it: a mounted page's prefix comes off."""
        page = self.web.page
        for name, mounted in page.mounts.items():
            if path == f"/{name}":
                return None, path
            if path.startswith(f"/{name}/"):
                return mounted, path[len(name) + 1:]
        return page, path

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
        self._send(code, hide_credentials(json.dumps(data)).encode(), "application/json", extra)

    def _page(self) -> None:
        page = self.page
        frame, ctype = self.web.static[page.document]  # what every page shares: head, styles, common.js
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
        try:
            length = limits.content_length(self.headers)
        except limits.BadLength as exc:
            return self._json(400, {"error": str(exc)})
        if length > limits.MAX_BODY:
            return self._json(413, {"error": f"request too large (at most {limits.MAX_BODY} bytes)"})
        self.reader.limit(limits.HEADER_TIMEOUT, limits.MAX_BODY)  # never more from the socket
        raw = self.rfile.read(length)
        if len(raw) < length:
            return self._json(400, {"error": "the body is shorter than its Content-Length"})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._json(400, {"error": "invalid JSON"})
        if not isinstance(body, dict):
            return self._json(400, {"error": "expected a JSON object"})
        code, data = self.page.post(path[len("/api/"):], body)
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
        page = self.page
        with page.frames.watching(limit=MAX_STREAMS) as viewer:  # a place, or None when all are taken
            if viewer is None:
                return self._json(503, {"error": f"too many viewers (at most {MAX_STREAMS} streams)"},
                                  {"Retry-After": "5"})
            self._start_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
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
        with self.web.event_streams.take() as taken:
            if not taken:
                return self._json(503, {"error": f"too many event streams (at most {MAX_EVENT_STREAMS})"},
                                  {"Retry-After": "5"})
            self._send_events()

    def _send_events(self) -> None:
        page = self.page
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
            self.wfile.write(b"data: %s\n\n" % hide_credentials(json.dumps(page.status())).encode())
            quiet_since = time.monotonic()
            time.sleep(EVENT_INTERVAL)
