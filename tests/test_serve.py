"""``edgecam run --serve``: the live page in a real browser, slow viewers, tokens, static files, CLI.

Real servers on loopback, a fake live camera showing real photos (flowers-mini) at a fixed
frame rate, and a tiny real classifier. Browser tests drive Debian's headless Chromium over
the DevTools protocol on a pipe (standard library only; skipped when chromium is missing).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import http.client
import json
import os
import queue
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import BLOCK_TENSORFLOW, FLOWERS_MINI
from edgecam.cli import cli
from edgecam.errors import ConfigError
from edgecam.runtime.settings import RunConfig
from edgecam.runtime.sources import Source
from edgecam.serving.live import RunPage, serve_run
from edgecam.serving.server import Page, ServeError, WebServer, parse_address, start_server

LABELS = ("daisy", "roses", "tulips")
PACKAGE = Path(__file__).resolve().parents[1] / "edgecam"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# -- fixtures: a camera, a model, a running server ------------------------------------------
class FakeCamera(Source):
    """A live camera at a fixed frame rate showing real photos (640x480) in turn.

    ``show(name)`` switches to the photos of another flowers-mini folder (for labelled collecting).
    """

    live = True

    def __init__(self, fps: float = 20.0, folders: tuple[str, ...] = LABELS, size: tuple[int, int] = (640, 480)):
        if not all((FLOWERS_MINI / name).is_dir() for name in folders):
            pytest.skip(f"{FLOWERS_MINI} is not available")
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


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A small random-weight classifier of the three flowers: uint8 RGB in, labels in its metadata."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow")
    from edgecam.modelfile.metadata import ModelInfo, embed_metadata

    keras = tf.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(LABELS), activation="softmax")(x))

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.uint8)])
    def serve(image):
        return model(tf.cast(image, tf.float32))

    owner = tf.Module()  # the converter sees the variables through this (see test_modelfile)
    owner.variables_ = [v.value for v in model.variables]
    flat = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], owner).convert()
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(embed_metadata(flat, ModelInfo(name="tiny", labels=LABELS)))
    return path


@contextlib.contextmanager
def served_run(model: Path, camera: Source, **settings: Any):
    """``serve_run`` in a thread on a free loopback port; yields the running WebServer."""
    cfg = RunConfig(model=str(model), serve=settings.pop("serve", "127.0.0.1:0"), **settings)
    ready: queue.Queue = queue.Queue()
    stop, failures = threading.Event(), []

    def target():
        try:
            serve_run(cfg, stop=stop, source=camera, on_ready=ready.put)
        except BaseException as exc:  # surfaced in the test thread below
            failures.append(exc)
            ready.put(None)

    thread = threading.Thread(target=target, name="serve_run", daemon=True)
    thread.start()
    server = ready.get(timeout=60)
    if server is None:
        raise failures[0]
    try:
        wait_until(lambda: server.page.result is not None or failures, 60, "the first result")
        yield server
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "serve_run did not stop"
    if failures:
        raise failures[0]


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
    """Headless Chromium driven over ``--remote-debugging-pipe``: fd 3 in, fd 4 out, NUL-separated JSON."""

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
            stderr=subprocess.DEVNULL)
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


@pytest.fixture
def browser(tmp_path):
    chromium = Chromium(tmp_path / "chromium-profile")
    yield chromium
    chromium.close()


def decode_png(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a PNG"
    return image.astype(np.int16)


# -- the live page in a browser --------------------------------------------------------------
def test_live_page_streams_and_updates_in_chromium(tiny_model, browser):
    with served_run(tiny_model, FakeCamera(fps=15)) as server:
        browser.open(server.local_url)
        browser.wait_js("document.querySelector('#stream').naturalWidth > 0", what="the first stream frame")
        browser.wait_js("/^\\d+$/.test(document.querySelector('#frame').textContent)", what="the first result")
        first = {name: browser.text(f"#{name}") for name in ("label", "fps", "frame", "viewers")}
        assert first["label"] in LABELS and first["viewers"] == "1"
        assert browser.js("document.querySelectorAll('#top li').length") == 3
        assert browser.text("#model") == "tiny.tflite" and browser.text("#source") == "fake camera 15 FPS"

        shot1 = decode_png(browser.screenshot("#stream"))
        browser.wait_js(f"+document.querySelector('#frame').textContent >= {int(first['frame']) + 8}",
                        what="frames to advance")
        shot2 = decode_png(browser.screenshot("#stream"))
        for shot in (shot1, shot2):
            assert shot.shape[0] > 100 and shot.std() > 20, "stream area is blank"
        assert np.abs(shot1 - shot2).mean() > 2, "the stream did not move"

        # The FPS text follows the loop's sliding-window rate (which moves as frames come).
        browser.wait_js(f"!['–', {json.dumps(first['fps'])}].includes(document.querySelector('#fps').textContent)"
                        " && +document.querySelector('#fps').textContent > 0", what="the FPS text to change")
        later = {name: browser.text(f"#{name}") for name in ("label", "fps", "frame")}
        assert later["label"] in LABELS and int(later["frame"]) > int(first["frame"])
        assert later["fps"] != first["fps"]
        assert server.page.frames.viewers == 1  # one <img>: one stream

        # Phone-sized screens: nothing sticks out sideways, the stream keeps its width.
        browser.viewport(390, 844, mobile=True)
        time.sleep(0.3)
        assert browser.js("document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.rect("#stream")["width"] >= 350


def test_status_endpoint_and_stream(tiny_model):
    camera = FakeCamera(fps=20)
    with served_run(tiny_model, camera, top_k=2) as server:
        status = status_of(server.port)
        assert status["model"] == str(tiny_model) and status["labels"] == list(LABELS)
        assert status["source"] == camera.name and status["viewers"] == 0
        assert set(status["result"]) == {"time", "frame", "top", "label", "score", "changed", "fps",
                                         "inference_ms", "latency_ms"}
        assert len(status["result"]["top"]) == 2
        assert server.page.frames.seq == 0  # nobody watched: nothing was encoded

        reader = StreamReader(server.port)
        reader.start()
        wait_until(lambda: len(reader.times) >= 5, 20, "five stream frames")
        assert status_of(server.port)["viewers"] == 1
        reader.stop()
        image = cv2.imdecode(np.frombuffer(reader.frames[0], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (480, 640, 3)
        wait_until(lambda: server.page.frames.viewers == 0, 10, "the viewer to leave")

        # Server-sent events: one status per message.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/api/events")
        response = conn.getresponse()
        assert response.getheader("Content-Type") == "text/event-stream"
        frames = []
        while len(frames) < 3:
            line = response.readline()
            if line.startswith(b"data: "):
                frames.append(json.loads(line[6:])["result"]["frame"])
        conn.close()
        assert frames == sorted(frames) and frames[0] < frames[-1]


# -- a stalled viewer must not slow anyone else -----------------------------------------------
def stalled_client(port: int) -> socket.socket:
    """Asks for the stream, then never reads: its receive buffer (4 KB) fills, then the server's."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def measure(server: WebServer, reader: StreamReader, seconds: float) -> tuple[float, float]:
    """(loop FPS, reader's received FPS) over the same window."""
    page = server.page
    frames0, received0, t0 = page.processed, len(reader.times), time.perf_counter()
    time.sleep(seconds)
    frames1, received1, t1 = page.processed, len(reader.times), time.perf_counter()
    return (frames1 - frames0) / (t1 - t0), (received1 - received0) / (t1 - t0)


def test_stalled_viewer_slows_neither_the_loop_nor_other_viewers(tiny_model):
    """Side by side, same camera rate: one reading viewer, then the same plus one that never reads."""
    rates = {}
    for case in ("one viewer", "plus a stalled viewer"):
        with served_run(tiny_model, FakeCamera(fps=20)) as server:
            reader = StreamReader(server.port)
            reader.start()
            wait_until(lambda: len(reader.times) >= 10, 20, "the reader to get frames")
            stalled = stalled_client(server.port) if case != "one viewer" else None
            try:
                if stalled:
                    wait_until(lambda: server.page.frames.viewers == 2, 10, "the second viewer")
                    # Wait until the server's sends to it block: its 'sent' count stops moving.
                    stats = server.page.frames.viewer_stats()
                    slow = min(stats, key=lambda v: v.sent)
                    last = [-1, time.monotonic()]

                    def blocked():
                        if slow.sent != last[0]:
                            last[:] = [slow.sent, time.monotonic()]
                        return time.monotonic() - last[1] > 1.0

                    wait_until(blocked, 30, "the stalled viewer's buffers to fill")
                    stuck_at = slow.sent
                else:
                    time.sleep(1.0)
                received_before = len(reader.times)
                rates[case] = measure(server, reader, 4.0)
                if stalled:  # it stayed (nearly) stuck while the reader got every frame
                    rates["stalled viewer, frames in window"] = slow.sent - stuck_at
                    assert slow.sent - stuck_at < 0.2 * (len(reader.times) - received_before), rates
            finally:
                reader.stop()
                if stalled:
                    stalled.close()
    print(f"\nframe rates (loop, reading viewer): {rates}")
    (loop1, client1), (loop2, client2) = rates["one viewer"], rates["plus a stalled viewer"]
    assert loop1 > 0 and client1 >= 0.9 * loop1  # alone, a reading viewer gets (nearly) every frame
    assert abs(loop2 - loop1) <= 0.1 * loop1, rates
    assert abs(client2 - client1) <= 0.1 * client1, rates


# -- security ---------------------------------------------------------------------------------
def test_non_loopback_needs_a_token_and_checks_it():
    with pytest.raises(ServeError, match="^refusing to serve on 0.0.0.0:0 without an access token"):
        WebServer(Page(), "0.0.0.0", 0, token="")
    server = start_server(RunPage("model.tflite", "camera 0"), "0.0.0.0:0")  # token generated
    try:
        token, port = server.token, server.port
        assert len(token) >= 16 and server.url.endswith(f":{port}/?token={token}")
        assert server.local_url == f"http://127.0.0.1:{port}/?token={token}"
        for path in ("/", "/api/status", "/api/events", "/stream.mjpg", "/static/style.css", "/nope",
                     f"/api/status?token={token[:-1]}", "/api/status?token="):
            code, headers, _ = request(port, path)
            assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        assert request(port, "/api/status", headers={"Authorization": "Bearer wrong-token"})[0] == 401
        assert request(port, "/api/save", "POST", {"Content-Type": "application/json"}, b"{}")[0] == 401

        code, _, html = request(port, f"/?token={token}")
        assert code == 200 and f'src="static/live.js?token={token}"'.encode() in html
        assert request(port, f"/static/style.css?token={token}")[0] == 200
        assert status_of(port, token)["source"] == "camera 0"
        assert request(port, "/api/status", headers={"Authorization": f"Bearer {token}"})[0] == 200
        for path in ("/stream.mjpg", "/api/events"):
            assert request(port, f"{path}?token={token}", stream=True)[0] == 200
        # With a token the Host header does not matter (it is how a LAN address reaches us).
        assert request(port, f"/api/status?token={token}", headers={"Host": "raspberrypi.local:8080"})[0] == 200
    finally:
        server.close()


def test_loopback_without_token_answers_only_to_loopback_hosts():
    with start_server(RunPage("m.tflite"), "127.0.0.1:0") as server:
        assert server.token == "" and server.url == f"http://127.0.0.1:{server.port}/"
        assert request(server.port, "/api/status")[0] == 200
        assert request(server.port, "/api/status", headers={"Host": f"localhost:{server.port}"})[0] == 200
        # DNS rebinding: a page from another site that resolves its name to 127.0.0.1.
        assert request(server.port, "/api/status", headers={"Host": "attacker.example"})[0] == 403
        # Other sites cannot post forms to it: actions take JSON only.
        assert request(server.port, "/api/save", "POST", {"Content-Type": "text/plain"}, b"{}")[0] == 415
    with start_server(RunPage("m.tflite"), "127.0.0.1:0", token="my-own-secret") as server:
        assert request(server.port, "/api/status")[0] == 401  # a token given for loopback is required too
        assert request(server.port, "/api/status?token=my-own-secret")[0] == 200


@pytest.mark.parametrize("path", [
    "/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%2fserver.py", "/static/../server.py", "/static/%2fetc%2fpasswd", "/static//etc/passwd",
    "/static/%252e%252e/server.py", "/static/style.css/../../server.py", "/../../etc/passwd",
    "/static/live.html", "/static/", "/static/.", "/static/..\\server.py", "/static/STYLE.CSS",
])
def test_static_routes_do_not_traverse(path):
    with start_server(RunPage("m.tflite"), "127.0.0.1:0") as server:
        code, _, body = request(server.port, path)
        assert code == 404 and b"root:" not in body and b"import" not in body
        code, headers, body = request(server.port, "/static/style.css")
        assert code == 200 and headers["Content-Type"].startswith("text/css") and body.startswith(b"/*")
        assert headers["X-Content-Type-Options"] == "nosniff" and "frame-ancestors" in headers["Content-Security-Policy"]


def test_parse_address():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(8080) == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("raspberrypi.local:80") == ("raspberrypi.local", 80)
    for bad in ("", "http", ":8080", "0.0.0.0:", "::1:8080", "host:99999", "[::1]8080", "8080:host"):
        with pytest.raises(ConfigError, match=r"^--serve: expected \[HOST:\]PORT"):
            parse_address(bad)


# -- the command line -------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_errors_are_one_line():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        result = invoke("run", "model.tflite", "--serve", str(port))
        assert result.exit_code == 1
        assert result.stderr == (f"Error: cannot serve on 127.0.0.1:{port}: port already in use "
                                 "(another edgecam or server?); pick another port\n")
    finally:
        holder.close()
    result = invoke("run", "model.tflite", "--serve", "0.0.0.0:http")
    assert result.exit_code == 2 and result.stderr == (
        "Error: --serve: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every interface), got '0.0.0.0:http'\n")
    result = invoke("run", "model.tflite", "--serve", "0.0.0.0:0", "--token", "short")
    assert result.exit_code == 2 and result.stderr.startswith("Error: --token: use at least 8 printable characters")
    result = invoke("run", "model.tflite", "--serve", "8080", "--window", "--headless")
    assert result.exit_code == 2 and result.stderr == "Error: command line: window: cannot be combined with headless\n"
    result = invoke("run", "model.tflite", "--serve", "192.0.2.1:0")  # TEST-NET address: not on this machine
    assert result.exit_code == 1 and "address not available" in result.stderr




def test_cli_serves_without_tensorflow_and_without_a_window(tiny_model):
    """`run --serve` opens no window (none is possible here: OpenCV is headless and there is no display)."""
    photos = str(FLOWERS_MINI / "daisy")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    web = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(tiny_model), "--source", photos,
                          "--serve", "0"], capture_output=True, text=True, timeout=120, env=env)
    assert web.returncode == 0, web.stderr
    assert web.stdout == ""
    assert "live view: http://127.0.0.1:" in web.stderr and "10 frames" in web.stderr

    both = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(tiny_model), "--source", photos,
                           "--serve", "0.0.0.0:0", "--headless"], capture_output=True, text=True, timeout=120, env=env)
    assert both.returncode == 0, both.stderr
    assert [json.loads(line)["label"] in LABELS for line in both.stdout.splitlines()] == [True] * 10
    line = next(line for line in both.stderr.splitlines() if line.startswith("live view: "))
    assert "/?token=" in line and line.endswith("(keep the token private: anyone with this link can watch)")


def test_serving_and_collect_import_only_edge_modules():
    """Like the runtime: stdlib, numpy, OpenCV and edgecam's edge modules (they run on the Pi)."""
    allowed = {"numpy", "cv2"}
    internal = ("edgecam.runtime", "edgecam.serving", "edgecam.errors", "edgecam.fsutil", "edgecam.modelfile")
    for path in [*sorted((PACKAGE / "serving").glob("*.py")), PACKAGE / "collect.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in allowed or name.startswith(internal), \
                    f"{path.name} imports {name}"
