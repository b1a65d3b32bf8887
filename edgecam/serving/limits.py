"""What clients can take from the web server: streams, connections, seconds, bytes.

- **Streams.** At most ``MAX_STREAMS`` video streams and ``MAX_EVENT_STREAMS`` event streams;
  a place is checked and taken in one step under a lock, so a crowd cannot overshoot.
- **Connections.** At most ``MAX_CONNECTIONS`` are served at once, each by a thread. The accept
  thread answers any beyond them itself with a ready-made 503 (no thread, never blocking) and
  closes it once the client has read it, or after ``LINGER`` seconds.
- **Time.** The request line and headers must be complete ``HEADER_TIMEOUT`` seconds after the
  connection starts, in all: a client sending a byte a second (slowloris) cannot restart it,
  as it would a per-read timeout. A body gets the same time again.
- **Bytes.** ``MAX_HEAD`` bytes of request line and headers, ``MAX_BODY`` of body. The reader
  never takes more than that from the socket, whatever Content-Length says.
"""

from __future__ import annotations

import collections
import io
import json
import re
import socket
import threading
import time
from email.message import Message
from http.server import ThreadingHTTPServer

MAX_STREAMS = 16  # open MJPEG streams (each holds a thread); more get 503
MAX_EVENT_STREAMS = 32  # open server-sent event streams (a page holds one); more get 503
MAX_CONNECTIONS = 64  # connections served at once (one thread each); more get a quick 503
HEADER_TIMEOUT = 5.0  # seconds for the request line and headers, in all; a body gets as long again
MAX_HEAD = 32 * 1024  # bytes of request line and headers (browsers send 1-2 KB; nginx allows 32 KB)
MAX_BODY = 4096  # bytes of a POST body (the pages post a few dozen)
BACKLOG = 2 * MAX_CONNECTIONS  # the listen queue: a crowd waits a moment for accept() instead of timing out
LINGER = 2.0  # seconds a turned-away client has to read its 503 before its connection is closed
MAX_LINGERING = 256  # turned-away connections kept open at most (the oldest is closed first)
_DIGITS = re.compile(r"[0-9]+")


class TooLarge(Exception):
    """The client sent more than the current limit (MAX_HEAD or MAX_BODY)."""


class BadLength(ValueError):
    """A Content-Length (or Transfer-Encoding) this server does not accept; the message says why."""


def response(code: int, reason: str, error: str) -> bytes:
    """A complete small JSON answer that closes the connection (for when no handler can write one)."""
    body = json.dumps({"error": error}).encode()
    return (f"HTTP/1.0 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode() + body


BUSY = response(503, "Service Unavailable", "too many connections; try again in a moment")


def content_length(headers: Message) -> int:
    """The announced body length: 0 without one; one plain decimal number otherwise.

    Negative, signed, spaced, hexadecimal, non-ASCII or conflicting lengths are refused
    (BadLength), as is a chunked body. A length too long to be small comes back as MAX_BODY + 1.
    """
    if headers.get("Transfer-Encoding"):
        raise BadLength("send the body with a Content-Length (no Transfer-Encoding)")
    values = set(headers.get_all("Content-Length") or [])
    if not values:
        return 0
    if len(values) > 1:
        raise BadLength("conflicting Content-Length headers")
    (value,) = values
    if not _DIGITS.fullmatch(value):
        raise BadLength(f"Content-Length must be a number of bytes, got {value[:20]!r}")
    return int(value) if len(value) <= 9 else MAX_BODY + 1


class RequestReader(io.RawIOBase):
    """A connection's incoming bytes within a deadline and a byte budget, both set per phase.

    ``limit(seconds, budget)`` starts a phase (headers, then a body). Reading past the deadline
    raises TimeoutError, past the budget TooLarge. Writes keep ``send_timeout`` per send.
    """

    def __init__(self, sock: socket.socket, send_timeout: float):
        super().__init__()
        self.sock, self.send_timeout = sock, send_timeout
        self.deadline, self.budget = 0.0, 0

    def limit(self, seconds: float, budget: int) -> None:
        self.deadline, self.budget = time.monotonic() + seconds, budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.budget <= 0:
            raise TooLarge("request too large")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request too slow")
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buffer, min(len(buffer), self.budget))
        finally:
            self.sock.settimeout(self.send_timeout)
        self.budget -= n
        return n


class LimitedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, up to MAX_CONNECTIONS; beyond them a 503 from the accept thread."""

    daemon_threads = True
    allow_reuse_address = True  # on Linux this still refuses a port another socket listens on
    request_queue_size = BACKLOG

    def __init__(self, address, handler, family: int):
        self.address_family = family
        self.active = 0  # connections being served (each by a thread)
        self._active_lock = threading.Lock()
        self._lingering: collections.deque[tuple[socket.socket, float]] = collections.deque()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self._active_lock:  # only this (accept) thread adds, so the count never overshoots
            admitted = self.active < MAX_CONNECTIONS
            self.active += admitted
        if not admitted:
            return self._turn_away(request)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started (e.g. none left): the count must not leak
            self._release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._active_lock:
            self.active -= 1

    def _turn_away(self, sock: socket.socket) -> None:
        """Answer 503 without a thread; the socket stays open until the client has read it (or LINGER)."""
        try:
            sock.setblocking(False)
            sock.send(BUSY)  # a few hundred bytes into an empty send buffer: never blocks
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering.append((sock, time.monotonic() + LINGER))
        while len(self._lingering) > MAX_LINGERING:
            self._lingering.popleft()[0].close()

    def service_actions(self) -> None:
        """Between accepts: close turned-away connections whose client has gone, or after LINGER.

        Closing one with unread request bytes would reset it, and the client could lose the 503.
        """
        now, keep = time.monotonic(), collections.deque()
        for sock, until in self._lingering:
            try:
                if sock.recv(65536) and now < until:  # one bounded read per round: discarded
                    keep.append((sock, until))
                    continue
            except BlockingIOError:
                if now < until:
                    keep.append((sock, until))
                    continue
            except OSError:
                pass
            sock.close()
        self._lingering = keep

    def server_close(self) -> None:
        super().server_close()
        while self._lingering:
            self._lingering.popleft()[0].close()
