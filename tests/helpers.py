"""Test helpers shared by the camera, web and window tests: a fake camera, a loop run in a
thread, HTTP and MJPEG clients, and a small DevTools client for headless Chromium.

Fixtures built from these live in conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import queue
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest

from edgecam.runtime.sources import Source

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("EDGECAM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FLOWERS_MINI = SHARED / "datasets" / "flowers-mini"
LABELS = ("daisy", "roses", "tulips")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# The parts of the shared folder (../shared, or $EDGECAM_SHARED) tests read: what each is, how to get it.
SHARED_PARTS = {
    "datasets/flowers-mini": "10 photos each of daisy, roses and tulips from the flowers set (copy 10 of each from "
                             "`edgecam datasets get flowers` into DIR/datasets/flowers-mini/<label>/",
    "datasets/flowers": "TensorFlow's flower photos in train/ and test/ (`edgecam datasets get flowers --dest "
                        "DIR/datasets`",
    "weights": "Keras' ImageNet MobileNet weights (Keras downloads them into ~/.keras/models/ on first use of "
               "model.weights=imagenet; copy them to DIR/weights",
}


def need(path: Path) -> Path:
    """``path`` (in the shared folder) when it exists; else skip the test in one line: what is missing, how to get it."""
    if path.exists():
        return path
    relative = path.relative_to(SHARED).as_posix()
    shown = f"../shared/{relative}" if "EDGECAM_SHARED" not in os.environ else str(path)
    what = next(text for part, text in SHARED_PARTS.items() if relative == part or relative.startswith(part + "/"))
    message = f"{shown} not found: {what}, then run with EDGECAM_SHARED=DIR; see README, Development)"
    try:  # reported at the test that needed it (as skip markers are), not at this line
        skipped = pytest.skip.Exception(message, _use_item_location=True)
    except TypeError:  # a pytest without that keyword
        skipped = pytest.skip.Exception(message)
    raise skipped


# -- a camera ---------------------------------------------------------------------------------
class FakeCamera(Source):
    """A live camera at a fixed frame rate showing real photos (640x480) in turn.

    ``show(name)`` switches to the photos of another flowers-mini folder (for labelled collecting).
    """

    live = True

    def __init__(self, fps: float = 20.0, folders: tuple[str, ...] = LABELS, size: tuple[int, int] = (640, 480)):
        for name in folders:
            need(FLOWERS_MINI / name)
        self.name = f"fake camera {fps:g} FPS"
        self.period = 1.0 / fps
        self.photos = {name: [cv2.cvtColor(cv2.resize(cv2.imread(str(p)), size), cv2.COLOR_BGR2RGB)
                              for p in sorted((FLOWERS_MINI / name).glob("*.jpg"))] for name in folders}
        self.showing: str | None = None  # None: every folder in turn
        self.delivered = 0
        self._next = 0.0

    def show(self, name: str | None) -> None:
        self.showing = name

    def open(self) -> None:
        self._next = 0.0

    def read(self) -> np.ndarray:
        now = time.perf_counter()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next + self.period, time.perf_counter())  # late frames never come in bursts
        pool = self.photos[self.showing] if self.showing else [p for ps in self.photos.values() for p in ps]
        self.delivered += 1
        frame = pool[self.delivered % len(pool)].copy()
        frame[-1, -1] = (self.delivered % 251, 0, 0)  # like sensor noise: no two frames are identical
        return frame


@contextlib.contextmanager
def in_thread(target: Callable[..., Any], name: str, ready_check: Callable[[Any], bool], what: str,
              timeout: float = 60):
    """Run ``target(stop=..., on_ready=...)`` in a thread; yield what it passed to ``on_ready``.

    Waits for ``on_ready`` (a server), then until ``ready_check(server)`` holds; on the way out
    sets ``stop``, joins the thread and re-raises anything it raised. Yields (server, outcome),
    where ``outcome["result"]`` is the target's return value once it has ended.
    """
    ready: queue.Queue = queue.Queue()
    stop, failures, outcome = threading.Event(), [], {}

    def run():
        try:
            outcome["result"] = target(stop=stop, on_ready=ready.put)
        except BaseException as exc:  # surfaced in the test thread below
            failures.append(exc)
            ready.put(None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    server = ready.get(timeout=timeout)
    if server is None:
        raise failures[0]
    try:
        wait_until(lambda: ready_check(server) or failures, timeout, what)
        yield server, outcome
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), f"{name} did not stop"
    if failures:
        raise failures[0]


def isolated_env(tmp_path: Path, display: bool = True, tmpdir: bool = True, **extra: str) -> dict[str, str]:
    """``os.environ`` for a subprocess that writes nowhere but ``tmp_path``.

    HOME and the XDG, Keras and matplotlib folders point into ``tmp_path / "home"`` (programs
    write caches and crash reports there), TMPDIR to ``tmp_path / "tmp"`` (TensorFlow writes
    its generated code there) unless ``tmpdir=False``; ``display=False`` also removes the display.
    """
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if display or k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if tmpdir:
        tmp.mkdir(exist_ok=True)  # a missing TMPDIR would be skipped for /tmp
        env["TMPDIR"] = str(tmp)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local" / "share"),
               KERAS_HOME=str(home / ".keras"), MPLCONFIGDIR=str(home / ".config" / "matplotlib"), **extra)
    return env


# -- clients ----------------------------------------------------------------------------------
def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


# -- HTTP helpers (http.client sends paths exactly as given) ---------------------------------
def request(port: int, path: str, method: str = "GET", headers: dict | None = None,
            body: bytes | None = None, stream: bool = False) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = b"" if stream else response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def status_of(port: int, token: str = "") -> dict:
    code, _, body = request(port, "/api/status" + (f"?token={token}" if token else ""))
    assert code == 200
    return json.loads(body)


class StreamReader(threading.Thread):
    """Reads an MJPEG stream, keeping each frame's arrival time (and the first few frames)."""

    def __init__(self, port: int, path: str = "/stream.mjpg", keep: int = 3):
        super().__init__(daemon=True)
        self.port, self.path, self.keep = port, path, keep
        self.times: list[float] = []
        self.frames: list[bytes] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", self.path)
        response = conn.getresponse()
        assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        try:
            while not self.halt.is_set():
                headers = {}
                while True:
                    line = response.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line and headers:
                        break
                    if b":" in line:
                        key, _, value = line.decode().partition(":")
                        headers[key.lower()] = value.strip()
                jpeg = response.read(int(headers["content-length"]))
                response.readline()
                self.times.append(time.perf_counter())
                if len(self.frames) < self.keep:
                    self.frames.append(jpeg)
        except (OSError, http.client.HTTPException):
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


# -- a minimal DevTools-protocol client for headless Chromium --------------------------------
class Chromium:
    """Headless Chromium driven over ``--remote-debugging-pipe``: fd 3 in, fd 4 out, NUL-separated JSON.

    Besides the profile it would write crash reports and caches under $HOME, so it gets a home
    of its own beside ``profile``. It keeps the usual TMPDIR: its lock socket lives in a folder
    there, and a socket path must stay under 108 bytes (it removes that folder when it exits).
    """

    def __init__(self, profile: Path, width: int = 1000, height: int = 760):
        if not CHROMIUM:
            pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
        to_browser, self._cmd = os.pipe()
        self._out, from_browser = os.pipe()

        def child_fds():  # the protocol's fixed descriptors: commands on 3, replies on 4
            inp, out = os.dup(to_browser), os.dup(from_browser)
            os.dup2(inp, 3)
            os.dup2(out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", f"--window-size={width},{height}",
             "--hide-scrollbars", "--mute-audio", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=isolated_env(profile.parent / f"{profile.name}-env", tmpdir=False))
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:  # events (no id) are not needed here
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            readable, _, _ = select.select([self._out], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                raise EOFError("chromium exited")
            self._buffer += chunk

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def text(self, selector: str) -> str:
        return self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''")

    def wait_js(self, expression: str, timeout: float = 20, what: str = "") -> Any:
        """Poll until ``expression`` is truthy (errors, e.g. from a page still loading, count as not yet)."""
        def check():
            try:
                return self.js(expression)
            except RuntimeError:
                return None

        return wait_until(check, timeout, what or expression, interval=0.1)

    def rect(self, selector: str) -> dict:
        return self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                       "return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the element's centre."""
        r = self.rect(selector)
        x, y = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, selector: str | None = None) -> bytes:
        params: dict = {"format": "png"}
        if selector:
            params["clip"] = {**self.rect(selector), "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd)
        os.close(self._out)


def decode_png(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a PNG"
    return image.astype(np.int16)



# -- many clients at once, slow clients, and a process' own resources (test_security.py) -------
def proc_status(field: str, pid: int | str = "self") -> int:
    """A number from /proc/PID/status: ``VmRSS`` (kB), ``Threads``, ..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakRSS(threading.Thread):
    """Samples this process' resident memory every few ms; ``growth_mb`` is the peak above the start."""

    def __init__(self, interval: float = 0.003):
        super().__init__(daemon=True)
        self.interval, self.halt = interval, threading.Event()
        self.start_kb = self.peak_kb = proc_status("VmRSS")

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.peak_kb = max(self.peak_kb, proc_status("VmRSS"))

    def __enter__(self) -> "PeakRSS":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.peak_kb = max(self.peak_kb, proc_status("VmRSS"))

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.start_kb) / 1024


class Client:
    """One raw connection of ``many_clients``: its status code (None: no answer) and when it came."""

    def __init__(self, sock):
        self.sock, self.sent, self.buffer = sock, False, b""
        self.status: int | None = None
        self.seconds: float | None = None
        self.error = ""


def many_clients(port: int, request_bytes: bytes, n: int, timeout: float) -> list[Client]:
    """Open ``n`` connections at once (non-blocking), send ``request_bytes`` on each as soon as it
    connects and read each status line, all from this thread, until every one has answered or
    ``timeout`` s have passed. The sockets stay open (the caller closes them: ``close_clients``)."""
    import selectors
    import socket

    selector = selectors.DefaultSelector()
    clients = []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        client = Client(sock)
        selector.register(sock, selectors.EVENT_WRITE, client)
        clients.append(client)
    start = time.monotonic()
    deadline, pending = start + timeout, n

    def done(client: Client, error: str = "") -> None:
        nonlocal pending
        client.error, client.seconds = error, time.monotonic() - start
        selector.unregister(client.sock)
        pending -= 1

    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            client = key.data
            try:
                if not client.sent:
                    problem = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if problem:
                        done(client, os.strerror(problem))
                        continue
                    client.sock.send(request_bytes)  # a few dozen bytes: fits any send buffer
                    client.sent = True
                    selector.modify(client.sock, selectors.EVENT_READ, client)
                    continue
                data = client.sock.recv(4096)
            except OSError as exc:
                done(client, f"{type(exc).__name__}: {exc}")
                continue
            if not data:
                done(client, "closed without an answer")
                continue
            client.buffer += data
            if b"\r\n" in client.buffer:
                client.status = int(client.buffer.split(b" ", 2)[1])
                done(client)
    selector.close()
    return clients


def close_clients(clients: list[Client]) -> None:
    for client in clients:
        client.sock.close()


class SlowHeaders(threading.Thread):
    """Slowloris: ``n`` connections that send request headers one byte per ``interval`` s and never
    finish them. ``closed[i]`` is when the server closed connection i (seconds after it opened).
    Stops by itself after ``limit`` s."""

    def __init__(self, port: int, n: int = 50, interval: float = 0.5, limit: float = 20.0):
        super().__init__(daemon=True)
        self.port, self.n, self.interval, self.limit = port, n, interval, limit
        self.closed: dict[int, float] = {}
        self.connected = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        import socket

        text = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
        socks = [socket.create_connection(("127.0.0.1", self.port), timeout=5) for _ in range(self.n)]
        start = time.monotonic()
        self.connected.set()
        try:
            position = 0
            while not self.halt.is_set() and time.monotonic() - start < self.limit and len(self.closed) < self.n:
                for i, sock in enumerate(socks):
                    if i in self.closed:
                        continue
                    try:
                        readable, _, _ = select.select([sock], [], [], 0)
                        if readable and not sock.recv(4096):
                            raise ConnectionResetError("closed by the server")
                        sock.send(text[position:position + 1])
                    except OSError:
                        self.closed[i] = time.monotonic() - start
                position += 1
                self.halt.wait(self.interval)
        finally:
            for sock in socks:
                sock.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


@contextlib.contextmanager
def served_page(kind: str, camera: Source, dataset: Path | None = None, **settings: Any):
    """The run page (``kind="run"``, the tiny flowers3 model) or the collect page (``"collect"``,
    photos into ``dataset``) served from a thread on a free loopback port, once frames come.
    Yields the running WebServer."""
    import functools

    from edgecam.collect.session import collect
    from edgecam.config.camera import CollectConfig, RunConfig, ServeConfig
    from edgecam.serving.run_page import serve_run

    serve = ServeConfig(address="127.0.0.1:0")
    if kind == "run":
        cfg = RunConfig(model=str(DATA / "flowers3.tflite"), serve=serve, **settings)
        target, ready = functools.partial(serve_run, cfg, source=camera), lambda s: s.page.result is not None
    else:
        cfg = CollectConfig(dataset=str(dataset), labels=LABELS, serve=serve, **settings)
        target, ready = functools.partial(collect, cfg, source=camera), lambda s: s.page.frame >= 0
    assert cfg.validate() is None
    with in_thread(target, f"{kind} page", ready, "the first frame") as (server, _):
        yield server


def read_to_exit(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """(stdout, stderr) of a text-mode ``proc`` from where earlier ``readline()`` calls stopped, until it
    exits. Read through the same file objects: ``communicate()`` reads the pipes' descriptors and
    would skip the lines ``readline()`` had already buffered ahead. stderr is read second (small: log
    lines fit in the pipe meanwhile)."""
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=timeout)
    return out, err
