"""Hardening of the web pages (``--serve``): what careless or hostile clients cannot do.

Both pages, the live view of ``edgecam run`` and the collect page, on real loopback servers
with a fake live camera whose name is a stream URL with a password in it. Every client here
talks to 127.0.0.1 only, and every request loop is bounded in count and time.

- URL credentials (``http://user:password@camera/...``) never reach a response or stderr.
- A POST body is read only up to its limit: a negative, non-numeric or huge Content-Length is
  answered at once, and the memory of the process does not grow with what the client sends.
- The limits hold under a crowd: at most MAX_STREAMS video streams and MAX_EVENT_STREAMS event
  streams (exactly, also when 100 clients come at once), at most MAX_CONNECTIONS connections
  in all, and request headers must be complete within HEADER_TIMEOUT (slowloris).
"""

from __future__ import annotations

import collections
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import FLOWERS3_MODEL
from helpers import (FakeCamera, PeakRSS, SlowHeaders, close_clients, isolated_env, many_clients, request,
                     served_page, status_of, wait_until)
from edgecam.serving import limits
from edgecam.serving import server as web

SECRET = "s3cr3tPW"
CREDENTIAL_URL = f"http://admin:{SECRET}@127.0.0.1:9/x.mjpg"  # port 9 (discard): nothing listens there
REDACTED_URL = "http://127.0.0.1:9/x.mjpg"
JSON = "application/json"


class CameraWithCredentials(FakeCamera):
    """A live camera named by a stream URL with user:password in it, as ``--source`` would name it."""

    def __init__(self):
        super().__init__(fps=20)
        self.spec = self.name = CREDENTIAL_URL


@pytest.fixture(scope="module", params=["run", "collect"])
def page(request, tmp_path_factory):
    """The run page, then the collect page, each served once for every test of this module."""
    with served_page(request.param, CameraWithCredentials(), tmp_path_factory.mktemp("collected")) as server:
        yield server


def handler_threads() -> int:
    """The web server's threads serving a connection (one per client) in this process."""
    return sum("process_request_thread" in thread.name for thread in threading.enumerate())


def settle(server, what: str, timeout: float = 10) -> None:
    """Wait until the server has no client left (threads, streams and connections)."""
    wait_until(lambda: handler_threads() == 0 and server.page.frames.viewers == 0, timeout, what)
    assert server.connections == 0


def timed(port: int, path: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    code = request(port, path)[0]
    return code, time.perf_counter() - t0


def first_event(port: int) -> bytes:
    """The first server-sent event of /api/events (its data line)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/events")
        response = conn.getresponse()
        assert response.status == 200
        for _ in range(100):
            line = response.readline()
            if line.startswith(b"data: "):
                return line
        raise AssertionError("no event in 100 lines")
    finally:
        conn.close()


# -- 3. credentials in a source URL ------------------------------------------------------------
def every_response(port: int) -> dict[str, bytes]:
    """Headers and body of every kind of answer the page gives, by request."""
    answers = {}
    static = sorted(p.name for p in web.STATIC.iterdir())
    for path in ["/", "/index.html", "/api/status", "/nope", *(f"/static/{n}" for n in static)]:
        code, headers, body = request(port, path)
        answers[path] = f"{code} {headers}".encode() + body
    answers["/api/events"] = first_event(port)
    for action, body in (("save", b"{not json"), ("save", b'{"label": "cats"}'), ("nope", b"{}")):
        code, headers, data = request(port, f"/api/{action}", "POST", {"Content-Type": JSON}, body)
        answers[f"POST /api/{action} {body!r}"] = f"{code} {headers}".encode() + data
    return answers


def test_url_credentials_are_in_no_response(page):
    status = status_of(page.port)
    assert status["source"] == REDACTED_URL  # the address stays useful, without user:password
    answers = every_response(page.port)
    assert len(answers) > 10
    leaks = {what: answer[:200] for what, answer in answers.items() if SECRET.encode() in answer or b"admin" in answer}
    assert not leaks


@pytest.mark.parametrize("text, shown", [
    ("rtsp://admin:pw@cam:554/s", "rtsp://cam:554/s"),
    ("http://user@cam/x", "http://cam/x"),
    ("HTTPS://A:p%40ss@cam", "HTTPS://cam"),
    ("rtsp://a:p@ss@cam/x@y?u=v@w", "rtsp://cam/x@y?u=v@w"),  # an unencoded @ in the password too
    ('{"source": "http://a:b@h/x", "mail": "me@example.org"}', '{"source": "http://h/x", "mail": "me@example.org"}'),
    ("Error: udp://u:p@[::1]:5000: cannot open", "Error: udp://[::1]:5000: cannot open"),
    ("camera 0", "camera 0"), ("/videos/me@home.mp4", "/videos/me@home.mp4"),
])
def test_hide_credentials(text, shown):
    assert web.hide_credentials(text) == shown


def lines_of(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_cli_prints_no_url_credentials(page, tmp_path):
    """The real CLI, twice at once: a URL that cannot be opened, and one that can (this page's own
    stream, which ignores the credentials): the password is in no response, nor on stdout or stderr."""
    kind = status_of(page.port)["page"]
    env = isolated_env(tmp_path, display=False)
    working = f"http://admin:{SECRET}@127.0.0.1:{page.port}/stream.mjpg"

    def command(url: str, name: str) -> list[str]:
        if kind == "run":
            return [sys.executable, "-m", "edgecam", "run", str(FLOWERS3_MODEL), "--source", url, "--serve", "127.0.0.1:0"]
        return [sys.executable, "-m", "edgecam", "collect", str(tmp_path / name), "--labels", "a,b", "--source", url,
                "--serve", "127.0.0.1:0"]

    failing = subprocess.Popen(command(CREDENTIAL_URL, "failing"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=tmp_path)
    served = subprocess.Popen(command(working, "served"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lines_of, args=(served.stderr, lines), daemon=True).start()
    stderr: list[str] = []
    try:
        announced, deadline = None, time.monotonic() + 60
        while announced is None and time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "".join(stderr)
            stderr.append(line)
            announced = re.search(r"(?:live view|collect page): http://127\.0\.0\.1:(\d+)/", line)
        assert announced, "".join(stderr)
        port = int(announced.group(1))
        wait_until(lambda: status_of(port)["source"], 20, "the source in the CLI's status")
        assert status_of(port)["source"] == f"http://127.0.0.1:{page.port}/stream.mjpg"
        answers = every_response(port)
    finally:
        served.send_signal(signal.SIGINT)
        try:
            served.wait(timeout=30)
        finally:
            served.kill()
        failing_out, failing_err = failing.communicate(timeout=60)
    while (line := lines.get(timeout=10)) is not None:
        stderr.append(line)
    assert failing.returncode == 1 and failing_err.splitlines()[-1].startswith("Error: "), failing_err
    shown = {**answers, "stdout (served)": served.stdout.read().encode(), "stderr (served)": "".join(stderr).encode(),
             "stdout (failing)": failing_out.encode(), "stderr (failing)": failing_err.encode()}
    leaks = {what: [line for line in text.decode(errors="replace").splitlines() if SECRET in line]
             for what, text in shown.items() if SECRET.encode() in text}
    assert not leaks


# -- 1. request bodies --------------------------------------------------------------------------
def post_streaming(port: int, length: str, body_size: int, timeout: float = 10) -> tuple[int | None, float, int]:
    """POST /api/stop with ``Content-Length: length``, then stream ``body_size`` bytes while watching
    for the answer. Returns (status or None, seconds to the answer, bytes the server let in)."""
    import select
    import socket

    head = (f"POST /api/stop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {JSON}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    chunk = b" " * 65536
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head)
        t0 = time.perf_counter()
        sock.setblocking(False)
        sent, answer, sending = 0, b"", True
        while time.perf_counter() - t0 < timeout:
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                answer += data
                if b"\r\n" in answer or not data:
                    break
            if writable:
                try:
                    sent += sock.send(chunk[: body_size - sent])
                except OSError:
                    sending = False
                    continue
                if sent >= body_size:
                    sock.shutdown(socket.SHUT_WR)  # the end of the body, for a server that reads to the end
                    sending = False
        seconds = time.perf_counter() - t0
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if b"\r\n" in answer else None
    return status, seconds, sent


@pytest.mark.parametrize("length, expected", [("-1", 400), ("abc", 400), ("60000000", 413)])
def test_a_bad_or_huge_content_length_is_refused_without_reading_the_body(page, length, expected):
    with PeakRSS() as memory:
        status, seconds, sent = post_streaming(page.port, length, 60_000_000)
    print(f"\nContent-Length {length}: {status} after {seconds:.3f} s; client got {sent / 1e6:.1f} MB out; "
          f"peak memory +{memory.growth_mb:.1f} MB")
    assert status == expected
    assert seconds < 1.0
    assert memory.growth_mb < 10
    settle(page, "the POST to end")


def raw_post(port: int, headers: bytes, body: bytes = b"{}") -> int:
    """POST /api/stop with these header lines, sent as bytes (http.client would refuse some); the status."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /api/stop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + headers + b"\r\n" + body)
        try:
            sock.shutdown(socket.SHUT_WR)  # nothing more: a server waiting for more reads the end at once
        except OSError:  # it answered and closed already (a refused request need not be read to the end)
            pass
        answer = sock.recv(100)
    return int(answer.split(b" ", 2)[1])


def test_content_length_must_be_plain_digits_within_the_limit(page):
    port, limit = page.port, limits.MAX_BODY
    for length in ("", " ", "+2", "2 2", "0x2", "2e0", "٢", "-0", "2, 2", "99999999999999999999999999"):
        code = raw_post(port, b"Content-Length: %s\r\n" % length.encode())
        assert code == (413 if length.startswith("9") else 400), length
    assert raw_post(port, b"Content-Length: 2\r\nContent-Length: 40\r\n") == 400  # which one is it? neither
    assert raw_post(port, b"Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n") == 400
    assert raw_post(port, b"Content-Length: 40\r\n") == 400  # the client closes after 2 bytes
    for body, expected in ((b"{}", (200, 404)), (b"{" + b" " * (limit - 2) + b"}", (200, 404)),
                           (b"{" + b" " * (limit - 1) + b"}", (413,))):
        code = request(port, "/api/stop", "POST", {"Content-Type": JSON}, body)[0]
        assert code in expected, len(body)
    assert raw_post(port, b"X-Big: " + b"a" * limits.MAX_HEAD + b"\r\nContent-Length: 2\r\n") == 431
    settle(page, "the POSTs to end")


# -- 2. limits under a crowd ---------------------------------------------------------------------
class Sampler(threading.Thread):
    """The highest value of ``read()`` seen while it runs (sampled about every 0.5 ms)."""

    def __init__(self, read):
        super().__init__(daemon=True)
        self.read, self.highest, self.halt = read, 0, threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.highest = max(self.highest, self.read())
            time.sleep(0.0005)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(timeout=5)


def test_100_stream_clients_at_once_never_exceed_the_stream_limit(page):
    with Sampler(lambda: page.page.frames.viewers) as viewers:
        clients = many_clients(page.port, b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 100, timeout=8)
        served_while_all_answered = page.page.frames.viewers
        time.sleep(0.3)  # frames flow to the 200s meanwhile
    try:
        codes = collections.Counter(client.status for client in clients)
        slowest = max(client.seconds or 99 for client in clients)
        print(f"\n100 stream clients: {dict(codes)}; most viewers at once {viewers.highest}; "
              f"slowest answer {slowest:.2f} s")
        assert viewers.highest <= limits.MAX_STREAMS, codes
        assert codes == {200: limits.MAX_STREAMS, 503: 100 - limits.MAX_STREAMS}, [c.error for c in clients if c.error]
        assert slowest < 5
        assert served_while_all_answered == limits.MAX_STREAMS
    finally:
        close_clients(clients)
    settle(page, "the stream clients to leave")


def test_event_streams_are_capped(page):
    request_bytes = b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    held = many_clients(page.port, request_bytes, limits.MAX_EVENT_STREAMS, timeout=5)
    try:
        assert [client.status for client in held] == [200] * limits.MAX_EVENT_STREAMS
        over = many_clients(page.port, request_bytes, 50, timeout=5)
        close_clients(over)
        codes = collections.Counter(client.status for client in over)
        print(f"\n{limits.MAX_EVENT_STREAMS} event streams open, 50 more: {dict(codes)}")
        assert codes == {503: 50} and max(client.seconds for client in over) < 5
    finally:
        close_clients(held)
    settle(page, "the event clients to leave")


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
def test_slow_headers_are_cut_off_and_the_page_still_answers(page, monkeypatch):
    monkeypatch.setattr(limits, "HEADER_TIMEOUT", 2.0)  # still 4 bytes at most before the cut: a slowloris
    assert handler_threads() == 0
    slow = SlowHeaders(page.port, n=50, interval=0.5, limit=limits.HEADER_TIMEOUT + 10)
    slow.start()
    try:
        assert slow.connected.wait(10)
        wait_until(lambda: handler_threads() >= 50, 5, "the server to take the 50 slow clients")
        for path in ("/", "/api/status"):
            code, seconds = timed(page.port, path)
            assert code == 200 and seconds < 1.0, (path, code, seconds)
        wait_until(lambda: len(slow.closed) == 50, limits.HEADER_TIMEOUT + 5, "the server to drop the slow clients")
        print(f"\n50 slow clients dropped after {min(slow.closed.values()):.1f}-{max(slow.closed.values()):.1f} s")
        assert max(slow.closed.values()) < limits.HEADER_TIMEOUT + 1.5
    finally:
        slow.stop()
    settle(page, "the slow clients' threads to end", timeout=3)


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
def test_connections_beyond_the_cap_get_a_quick_503(page, monkeypatch):
    import socket

    monkeypatch.setattr(limits, "HEADER_TIMEOUT", 1.5)  # the idle ones below are dropped sooner
    idle = [socket.create_connection(("127.0.0.1", page.port), timeout=5) for _ in range(limits.MAX_CONNECTIONS)]
    try:
        wait_until(lambda: handler_threads() >= limits.MAX_CONNECTIONS, 5, "the server to take the idle clients")
        over = many_clients(page.port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 20, timeout=5)
        close_clients(over)
        codes = collections.Counter(client.status for client in over)
        assert codes == {503: 20} and max(client.seconds for client in over) < 1, codes
        assert handler_threads() <= limits.MAX_CONNECTIONS
        wait_until(lambda: handler_threads() == 0, 5, "the idle clients to be dropped")
        assert request(page.port, "/api/status")[0] == 200
    finally:
        for sock in idle:
            sock.close()
    settle(page, "the connections to end")
