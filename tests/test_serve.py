"""``edgecam run --serve``: the live page in a real browser, slow viewers, tokens, static files, CLI.

Real servers on loopback, a fake live camera showing real photos (flowers-mini) at a fixed
frame rate, and the committed tiny classifier (tests/data/flowers3.tflite: no TensorFlow, no
training). Browser tests drive Debian's headless Chromium over the DevTools protocol on a pipe
(helpers.Chromium; skipped when chromium is missing).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import BLOCK_TENSORFLOW, FLOWERS3_MODEL, FLOWERS_MINI, NO_HEAVY_MODULES, need
from helpers import (LABELS, FakeCamera, StreamReader, decode_png, in_thread, isolated_env, request, status_of,
                     wait_until)
from edgecam.cli import cli
from edgecam.config.camera import RunConfig, ServeConfig, parse_address
from edgecam.config.loader import load_values
from edgecam.errors import ConfigError
from edgecam.runtime.sources import Source
from edgecam.serving.run_page import RunPage, serve_run
from edgecam.serving.server import Page, ServeError, WebServer, start_server

LOOPBACK = ServeConfig(address="127.0.0.1:0")  # a free port chosen by the OS


@contextlib.contextmanager
def served_run(model: Path, camera: Source, **settings: Any):
    """``serve_run`` in a thread on a free loopback port; yields the running WebServer once it has a result."""
    cfg = RunConfig(model=str(model), serve=settings.pop("serve", LOOPBACK), **settings)
    assert cfg.validate() is None  # built directly, so checked here (the loader would)
    target = functools.partial(serve_run, cfg, source=camera)
    with in_thread(target, "serve_run", lambda server: server.page.result is not None, "the first result") \
            as (server, _):
        yield server


# -- the live page in a browser --------------------------------------------------------------
def test_live_page_streams_and_updates_in_chromium(browser):
    with served_run(FLOWERS3_MODEL, FakeCamera(fps=15)) as server:
        browser.open(server.local_url)
        browser.wait_js("document.querySelector('#stream').naturalWidth > 0", what="the first stream frame")
        browser.wait_js("/^\\d+$/.test(document.querySelector('#frame').textContent)", what="the first result")
        first = {name: browser.text(f"#{name}") for name in ("label", "fps", "frame", "viewers")}
        assert first["label"] in LABELS and first["viewers"] == "1"
        assert browser.js("document.querySelectorAll('#top li').length") == 3
        assert browser.text("#model") == "flowers3.tflite" and browser.text("#source") == "fake camera 15 FPS"

        shot1 = decode_png(browser.screenshot("#stream"))
        browser.wait_js(f"+document.querySelector('#frame').textContent >= {int(first['frame']) + 8}",
                        what="frames to advance")
        shot2 = decode_png(browser.screenshot("#stream"))
        for shot in (shot1, shot2):
            assert shot.shape[0] > 100 and shot.std() > 20, "stream area is blank"
        assert np.abs(shot1 - shot2).mean() > 2, "the stream did not move"

        # The FPS text follows the loop's rate: the camera's 15 FPS, once the sliding window has
        # filled (a steady fake camera may show the same figure twice, so no "it changed" check).
        browser.wait_js("Math.abs(+document.querySelector('#fps').textContent - 15) < 5", what="the FPS text near 15")
        later = {name: browser.text(f"#{name}") for name in ("label", "fps", "frame")}
        assert later["label"] in LABELS and int(later["frame"]) > int(first["frame"])
        assert abs(float(later["fps"]) - 15) < 5, later
        assert server.page.frames.viewers == 1  # one <img>: one stream

        # Phone-sized screens: nothing sticks out sideways, the stream keeps its width.
        browser.viewport(390, 844, mobile=True)
        time.sleep(0.3)
        assert browser.js("document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.rect("#stream")["width"] >= 350


def test_status_endpoint_and_stream():
    camera = FakeCamera(fps=20)
    with served_run(FLOWERS3_MODEL, camera, top_k=2) as server:
        status = status_of(server.port)
        assert status["model"] == str(FLOWERS3_MODEL) and status["labels"] == list(LABELS)
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


@pytest.mark.slow  # measures frame rates for 8 s
def test_stalled_viewer_slows_neither_the_loop_nor_other_viewers():
    """Side by side, same camera rate: one reading viewer, then the same plus one that never reads."""
    rates = {}
    for case in ("one viewer", "plus a stalled viewer"):
        with served_run(FLOWERS3_MODEL, FakeCamera(fps=20)) as server:
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
    server = start_server(RunPage("model.tflite", "camera 0"), ServeConfig(address="0.0.0.0:0"))  # token generated
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
    with start_server(RunPage("m.tflite"), LOOPBACK) as server:
        assert server.token == "" and server.url == f"http://127.0.0.1:{server.port}/"
        assert request(server.port, "/api/status")[0] == 200
        assert request(server.port, "/api/status", headers={"Host": f"localhost:{server.port}"})[0] == 200
        # DNS rebinding: a page from another site that resolves its name to 127.0.0.1.
        assert request(server.port, "/api/status", headers={"Host": "attacker.example"})[0] == 403
        # Other sites cannot post forms to it: actions take JSON only.
        assert request(server.port, "/api/save", "POST", {"Content-Type": "text/plain"}, b"{}")[0] == 415
    with start_server(RunPage("m.tflite"), ServeConfig("127.0.0.1:0", token="my-own-secret")) as server:
        assert request(server.port, "/api/status")[0] == 401  # a token given for loopback is required too
        assert request(server.port, "/api/status?token=my-own-secret")[0] == 200


@pytest.mark.parametrize("path", [
    "/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%2fserver.py", "/static/../server.py", "/static/%2fetc%2fpasswd", "/static//etc/passwd",
    "/static/%252e%252e/server.py", "/static/style.css/../../server.py", "/../../etc/passwd",
    "/static/live.html", "/static/", "/static/.", "/static/..\\server.py", "/static/STYLE.CSS",
])
def test_static_routes_do_not_traverse(path):
    with start_server(RunPage("m.tflite"), LOOPBACK) as server:
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
        with pytest.raises(ValueError, match=r"^expected \[HOST:\]PORT"):
            parse_address(bad)


def test_serve_settings_are_checked_by_the_loader(tmp_path):
    """Bad addresses and tokens fail while loading, naming the option as typed or the file's line."""
    assert ServeConfig().validate() is None and ServeConfig("0.0.0.0:8080", token="long-enough").validate() is None
    options = {"serve.address": "--serve", "serve.token": "--token"}
    with pytest.raises(ConfigError) as info:
        load_values(RunConfig, None, {"serve": {"address": "8080:host"}}, options)
    assert str(info.value) == ("command line: --serve: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every "
                               "interface), got '8080:host'")
    for token in ("short", " spaces-around ", "tab\tinside"):
        with pytest.raises(ConfigError, match=r"^command line: --token: use at least 8 printable characters"):
            load_values(RunConfig, None, {"serve": {"address": "0.0.0.0:0", "token": token}}, options)
    config = tmp_path / "camera.yaml"
    config.write_text("top_k: 2\nserve:\n  token: my-own-secret\n  address: http\n")
    with pytest.raises(ConfigError) as info:
        load_values(RunConfig, config, {}, options)
    assert str(info.value) == (f"{config}:4: serve.address: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for "
                               "every interface), got 'http'")


# -- the command line -------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written, but if it were, it would land here
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
        "Error: command line: --serve: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every interface), "
        "got '0.0.0.0:http'\n")
    result = invoke("run", "model.tflite", "--serve", "0.0.0.0:0", "--token", "short")
    assert result.exit_code == 2 and result.stderr == (
        "Error: command line: --token: use at least 8 printable characters without surrounding spaces "
        "(or leave it out and one is generated)\n")
    result = invoke("run", "model.tflite", "--serve", "8080", "--window", "--headless")
    assert (result.exit_code, result.stderr) == (2, "Error: command line: --window: cannot be combined with headless\n")
    result = invoke("run", "model.tflite", "--serve", "192.0.2.1:0")  # TEST-NET address: not on this machine
    assert result.exit_code == 1 and result.stderr == (
        "Error: cannot serve on 192.0.2.1:0: address not available (not an address of this machine)\n")

    # The same settings from a --config file: the error names the file, the line and the key.
    config = tmp_path / "run.yaml"
    config.write_text("model: model.tflite\nserve:\n  address: 0.0.0.0:http\n")
    result = invoke("run", "--config", str(config))
    assert result.exit_code == 2 and result.stderr == (
        f"Error: {config}:3: serve.address: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every interface), "
        "got '0.0.0.0:http'\n")
    # An option overrides the file, and then the error names the option.
    result = invoke("run", "--config", str(config), "--serve", "99999")
    assert result.exit_code == 2 and result.stderr == (
        "Error: command line: --serve: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every interface), "
        "got '99999'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_cli_serves_without_tensorflow_and_without_a_window(tmp_path):
    """`run --serve` opens no window (none is possible here: OpenCV is headless and there is no display)."""
    photos = str(need(FLOWERS_MINI / "daisy"))
    env = isolated_env(tmp_path, display=False)
    web = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(FLOWERS3_MODEL), "--source", photos,
                          "--serve", "0"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert web.returncode == 0, web.stderr
    assert web.stdout == ""
    assert "live view: http://127.0.0.1:" in web.stderr and "10 frames" in web.stderr
    assert web.stderr.splitlines()[-1] == NO_HEAVY_MODULES

    both = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(FLOWERS3_MODEL), "--source", photos,
                           "--serve", "0.0.0.0:0", "--headless"], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    assert [json.loads(line)["label"] in LABELS for line in both.stdout.splitlines()] == [True] * 10
    line = next(line for line in both.stderr.splitlines() if line.startswith("live view: "))
    assert "/?token=" in line and line.endswith("(keep the token private: anyone with this link can watch)")
    assert both.stderr.splitlines()[-1] == NO_HEAVY_MODULES
