"""``edgecam fleet``: the table of every camera on a broker, from retained messages and heartbeats.

A real mosquitto on a free loopback port; fake cameras are retained messages published with
paho (the topic contract ``edgecam run --mqtt`` follows), so these tests need no model or camera.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BLOCK_TENSORFLOW, COLORS_MODEL
from helpers import isolated_env
from runfixtures import edgecam, edgecam_popen

from edgecam.errors import ConfigError
from edgecam.fleet import Fleet, parse_broker
from edgecam.fleet.display import View, table

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'paho-mqtt>=2.1,<3')")
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
SHA = {"a": "a1" * 32, "b": "b2" * 32, "c": "c3" * 32}


# -- a broker --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mosquitto(folder: Path, *lines: str, port: int | None = None):
    """A mosquitto listening on 127.0.0.1:port (a free one by default) with these config lines; yields the port."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = folder / "mosquitto.conf"
    # Started by root, mosquitto would become the user "mosquitto", who cannot read tmp_path.
    user = pwd.getpwuid(os.geteuid()).pw_name
    conf.write_text("\n".join([f"listener {port} 127.0.0.1", "persistence false", f"user {user}", *lines]) + "\n")
    with open(folder / "mosquitto.log", "wb") as log:  # the broker keeps its own copy of the file
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not start: {(folder / 'mosquitto.log').read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path):
    with mosquitto(tmp_path / "broker", "allow_anonymous true") as port:
        yield port


def publish(port: int, messages: list[tuple[str, str | bytes]], retain: bool = True, **tls) -> None:
    """Publish (topic, payload) pairs at QoS 1, retained by default, and wait until the broker has each."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-publisher-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def camera(name: str, label: str, score: float, fps: float, now: float, prefix: str = "edgecam") -> list[tuple]:
    """What a camera leaves on the broker: availability, state, attributes, a heartbeat."""
    model = {"model": f"{name}-colors.tflite", "model_sha256": SHA[name], "device": name, "version": "0.1.0"}
    attributes = {"label": label, "score": score, "top": [[label, score]], "unknown_score": 0.1, "fps": fps,
                  "inference_ms": 3.5, "frame_time": now - 20, **model}
    heartbeat = {"time": now - 2, "fps": fps, "frames": 1000, "changes": 4, "dropped_frames": 1, "mqtt_dropped": 0,
                 "uptime_s": 120.0, "label": label, "score": score, **model}
    base = f"{prefix}/{name}"
    return [(f"{base}/availability", "online"), (f"{base}/state", label),
            (f"{base}/attributes", json.dumps(attributes)), (f"{base}/heartbeat", json.dumps(heartbeat))]


def three_cameras(port: int, now: float | None = None) -> None:
    now = time.time() if now is None else now
    publish(port, camera("a", "red", 0.97, 14.5, now) + camera("b", "green", 0.81, 9.0, now)
            + camera("c", "blue", 0.66, 29.9, now))


def fleet_json(port: int, *args: str, url: str | None = None, **kwargs) -> dict:
    """``edgecam fleet --once --json``: its one snapshot."""
    proc = edgecam("fleet", url or f"mqtt://127.0.0.1:{port}", "--once", "--json", "--wait", "0", *args,
                   timeout=60, **kwargs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def by_name(snapshot: dict) -> dict[str, dict]:
    return {d["device"]: d for d in snapshot["devices"]}


# -- against a broker ------------------------------------------------------------------------------
def test_fleet_lists_three_cameras_with_their_fields(broker):
    three_cameras(broker)
    snapshot = fleet_json(broker, env={**os.environ, "EDGECAM_BLOCK": "cv2,numpy"})  # no OpenCV, no numpy
    devices = by_name(snapshot)
    assert sorted(devices) == ["a", "b", "c"] and snapshot["ignored"] == 0
    assert snapshot["broker"] == f"mqtt://127.0.0.1:{broker}" and snapshot["prefix"] == "edgecam"
    a = devices["a"]
    assert (a["status"], a["label"], a["score"], a["fps"]) == ("online", "red", 0.97, 14.5)
    assert (a["model"], a["model_sha256"], a["version"]) == ("a-colors.tflite", SHA["a"], "0.1.0")
    assert (a["frames"], a["changes"], a["dropped_frames"], a["mqtt_dropped"], a["uptime_s"]) == (1000, 4, 1, 0, 120.0)
    assert 1.5 <= a["last_seen_s"] < 15  # from the heartbeat's time, not the retained message's arrival
    assert [(d["label"], d["fps"]) for d in (devices["b"], devices["c"])] == [("green", 9.0), ("blue", 29.9)]

    proc = edgecam("fleet", f"mqtt://127.0.0.1:{broker}", "--once", "--wait", "0", timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"mqtt://127.0.0.1:{broker}, prefix edgecam: 3 devices, 3 online"
    assert lines[1].split() == ["DEVICE", "STATUS", "LABEL", "SCORE", "FPS", "MODEL", "SHA256", "LAST", "SEEN"]
    assert lines[2].split()[:7] == ["a", "online", "red", "0.97", "14.5", "a-colors.tflite", SHA["a"][:12]]
    assert [line.split()[0] for line in lines[2:]] == ["a", "b", "c"] and "\x1b" not in proc.stdout


def test_a_camera_gone_offline_shows_offline_and_others_stay(broker):
    three_cameras(broker)
    publish(broker, [("edgecam/b/availability", "offline")])  # as the broker publishes b's last will
    devices = by_name(fleet_json(broker))
    assert {name: d["status"] for name, d in devices.items()} == {"a": "online", "b": "offline", "c": "online"}
    assert devices["b"]["label"] == "green"  # what it last said stays


def test_malformed_messages_are_ignored_and_counted(broker):
    three_cameras(broker)
    publish(broker, [
        ("edgecam/d/attributes", "{not json"), ("edgecam/e/heartbeat", "[1, 2, 3]"),
        ("edgecam/f/availability", "maybe"), ("edgecam/g/heartbeat", b"\xff\xfe"),
        ("edgecam/h/attributes", json.dumps({"score": "high", "fps": None})),
        ("edgecam/c/attributes", json.dumps({"label": "blue", "score": "0.5", "fps": 30.0})),  # one bad field
        ("edgecam/a/other", "not one of the topics"), ("other/x/state", "not under the prefix"),
    ])
    snapshot = fleet_json(broker)
    devices = by_name(snapshot)
    assert sorted(devices) == ["a", "b", "c"]  # d..h said nothing usable
    assert snapshot["ignored"] == 6
    assert devices["c"]["fps"] == 29.9  # its heartbeat is newer than the attributes (no frame_time)
    proc = edgecam("fleet", f"mqtt://127.0.0.1:{broker}", "--once", "--wait", "0", timeout=60)
    assert proc.stdout.splitlines()[-1] == "6 malformed messages ignored"


def test_another_prefix_and_clearing_a_retained_camera(broker):
    publish(broker, camera("a", "red", 0.9, 10.0, time.time(), prefix="home/cams") + camera("b", "red", 0.9, 10.0, time.time()))
    assert list(by_name(fleet_json(broker, "--prefix", "home/cams"))) == ["a"]
    publish(broker, [(topic, b"") for topic, _ in camera("a", "red", 0.9, 10.0, 0, prefix="home/cams")])
    assert fleet_json(broker, "--prefix", "home/cams")["devices"] == []
    proc = edgecam("fleet", f"mqtt://127.0.0.1:{broker}", "--prefix", "home/#", "--once", timeout=60)
    assert proc.returncode == 2 and "--prefix" in proc.stderr and "Traceback" not in proc.stderr


class LiveFleet:
    """``edgecam fleet URL --json`` running: its snapshots one line at a time, failing after a timeout."""

    def __init__(self, *args: str, **kwargs):
        self.proc = edgecam_popen("fleet", *args, "--json", **kwargs)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float = 20) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"edgecam fleet printed nothing for {timeout} s")
        if line is None:
            pytest.fail(f"edgecam fleet ended: {self.proc.stderr.read()}")
        return json.loads(line)

    def until(self, check, timeout: float = 30) -> list[dict]:
        """The snapshots printed until one passes ``check`` (the last one)."""
        seen, deadline = [], time.monotonic() + timeout
        while not seen or not check(seen[-1]):
            seen.append(self.next(max(0.1, deadline - time.monotonic())))
        return seen

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=20)
        return self.proc.returncode, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def live_fleet(*args: str, **kwargs):
    fleet = LiveFleet(*args, **kwargs)
    try:
        yield fleet
    finally:
        fleet.kill()


def test_live_updates_then_ctrl_c_exits_130(broker):
    three_cameras(broker)
    with live_fleet(f"mqtt://user:s3cret@127.0.0.1:{broker}", env={**os.environ, "EDGECAM_MQTT_PASSWORD": ""}) as fleet:
        assert by_name(fleet.next())["b"]["status"] == "online"
        publish(broker, [("edgecam/b/availability", "offline"), ("edgecam/b/state", "blue")])
        seen = fleet.until(lambda snapshot: by_name(snapshot)["b"]["label"] == "blue")
        assert len(seen) <= 2  # one line per change (a burst may come as one or two)
        assert by_name(seen[-1])["b"]["status"] == "offline"
        code, err = fleet.interrupt()
    assert code == 130 and "Traceback" not in err and "Interrupted." in err and "s3cret" not in err


def test_a_restarted_broker_is_followed(tmp_path):
    port = free_port()
    with contextlib.ExitStack() as stack:
        with mosquitto(tmp_path / "first", "allow_anonymous true", port=port):
            three_cameras(port)
            fleet = stack.enter_context(live_fleet(f"mqtt://127.0.0.1:{port}"))
            assert len(fleet.next()["devices"]) == 3
        assert fleet.next()["problem"] == "connection to the broker lost, reconnecting"
        # Back without its retained messages (persistence false), and only b publishes again.
        with mosquitto(tmp_path / "second", "allow_anonymous true", port=port):
            publish(port, [("edgecam/b/availability", "online")])
            fleet.until(lambda snapshot: [d["device"] for d in snapshot["devices"]] == ["b"]
                        and "problem" not in snapshot)
            assert fleet.interrupt()[0] == 130


# -- failures: one line naming the broker without credentials --------------------------------------
def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines()  # a password in the URL also gets a warning
             if not line.startswith(("heavy modules at exit", "warning: the password in the URL"))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def test_wrong_port_is_one_line_without_the_password():
    port = free_port()
    proc = edgecam("fleet", f"mqtt://me:s3cret@127.0.0.1:{port}", "--once", timeout=60)
    line = one_line_error(proc)
    assert "s3cret" not in proc.stderr
    assert line == f"Error: MQTT broker mqtt://127.0.0.1:{port}: connection refused (is the broker running, and on that port?)"
    line = one_line_error(edgecam("fleet", "mqtt://me:s3cret@127.0.0.1:99999", "--once", timeout=60))
    assert "s3cret" not in line and "mqtt://***@127.0.0.1:99999" in line
    assert "mqtt://" in one_line_error(edgecam("fleet", "http://127.0.0.1", "--once", timeout=60))


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed")
def test_wrong_password_is_refused_in_one_line(tmp_path):
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "fleet", "right-one"], check=True,
                   capture_output=True)
    passwords.chmod(0o600)
    with mosquitto(tmp_path / "broker", "allow_anonymous false", f"password_file {passwords}") as port:
        publish_env = tmp_path / "password.txt"
        publish_env.write_text("wrong-one\n")
        line = one_line_error(edgecam("fleet", f"mqtt://fleet@127.0.0.1:{port}", "--password-file", publish_env,
                                      "--once", timeout=60, env={k: v for k, v in os.environ.items()
                                                                 if k != "EDGECAM_MQTT_PASSWORD"}))
        assert line.startswith(f"Error: MQTT broker mqtt://127.0.0.1:{port}: refused: ") and "wrong-one" not in line
        env = {**os.environ, "EDGECAM_MQTT_PASSWORD": "right-one"}
        assert fleet_json(port, url=f"mqtt://fleet@127.0.0.1:{port}", env=env)["devices"] == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_mqtts_with_a_ca_file(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    with mosquitto(tmp_path / "broker", "allow_anonymous true", f"certfile {cert}", f"keyfile {key}") as port:
        snapshot = fleet_json(port, "--ca-file", str(cert), url=f"mqtts://localhost:{port}")
        assert snapshot["devices"] == [] and snapshot["broker"] == f"mqtts://localhost:{port}"
        line = one_line_error(edgecam("fleet", f"mqtts://localhost:{port}", "--once", timeout=60))
        assert line.startswith(f"Error: MQTT broker mqtts://localhost:{port}: TLS failed: ") and "certificate" in line


# -- the parts, without a broker ---------------------------------------------------------------------
def test_broker_options_and_password_precedence(tmp_path, capsys):
    file = tmp_path / "pw"
    file.write_text("from-file\nsecond line\n")
    env = {"EDGECAM_MQTT_PASSWORD": "from-env"}
    assert parse_broker("mqtt://u@h", password_file=file, env={}).password == "from-file"
    broker = parse_broker("mqtts://u@h", username="v", password_file=file, env=env)
    assert (broker.username, broker.password, broker.url.port, broker.name) == ("v", "from-env", 8883, "mqtts://h:8883")
    assert parse_broker("mqtt://u:from-url@h", password_file=file, env=env).password == "from-url"  # as run does
    assert "visible to other users" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs an mqtts:// URL"):
        parse_broker("mqtt://h", ca_file=file, env={})
    with pytest.raises(ConfigError, match="a password needs a user name"):
        parse_broker("mqtt://h", env=env)
    with pytest.raises(ConfigError, match="cannot read it"):
        parse_broker("mqtt://u@h", password_file=tmp_path / "missing", env={})
    with pytest.raises(ConfigError) as error:
        parse_broker("mqtt://u:s3cret@h:port", env={})
    assert "s3cret" not in str(error.value)


def test_fleet_merges_by_time_and_forgets_cleared_topics():
    fleet = Fleet("edgecam")
    now = 1_000_000.0
    fleet.update("edgecam/a/attributes", json.dumps({"label": "red", "score": 0.9, "fps": 5, "frame_time": now}).encode(), True)
    fleet.update("edgecam/a/heartbeat", json.dumps({"time": now - 30, "fps": 7, "label": "old"}).encode(), True)
    device = fleet.snapshot(now + 10)["devices"][0]
    assert (device["label"], device["fps"], device["last_seen_s"]) == ("red", 5, 40.0)  # attributes are newer
    fleet.update("edgecam/a/state", b"green", False, now=now + 5)
    assert fleet.snapshot(now + 10)["devices"][0]["label"] == "green"
    assert fleet.snapshot(now + 10)["devices"][0]["last_seen_s"] == 5.0  # a live message
    fleet.update("edgecam/a/availability", b"offline", False, now=now + 9)  # the broker's last will
    assert fleet.snapshot(now + 10)["devices"][0]["last_seen_s"] == 5.0
    for kind in ("attributes", "heartbeat", "state", "availability"):
        fleet.update(f"edgecam/a/{kind}", b"", False)
    assert fleet.snapshot()["devices"] == [] and fleet.ignored == 0


def test_after_a_reconnect_what_the_broker_no_longer_holds_is_forgotten():
    fleet = Fleet("edgecam")
    for topic, payload in [("a/availability", b"online"), ("a/state", b"red"), ("b/availability", b"online")]:
        fleet.update(f"edgecam/{topic}", payload, True)
    fleet.resync()  # e.g. the broker restarted without persistence: only a came back, and not its state
    fleet.update("edgecam/a/availability", b"online", True)
    fleet.update("edgecam/c/state", b"blue", True)
    fleet.resynced()
    assert [(d["device"], d["status"], d["label"]) for d in fleet.snapshot()["devices"]] == [
        ("a", "online", None), ("c", None, "blue")]


def test_the_table_shows_nothing_a_terminal_would_obey():
    fleet = Fleet("edgecam")
    fleet.update("edgecam/\x1b[2Jevil/state", b"\x1b]0;title\x07label\nnext", True)
    lines = table(fleet.snapshot(), "mqtt://h:1883")
    assert not any(c in "\n".join(lines) for c in "\x1b\x07") and "?[2Jevil" in lines[2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_table_redrawn_in_place_and_a_pipe_only_changes():
    fleet = Fleet("edgecam")
    fleet.update("edgecam/a/availability", b"online", True)
    terminal, pipe = FakeTerminal(), io.StringIO()
    views = [View(terminal, "mqtt://h:1883", as_json=False, live=True), View(pipe, "mqtt://h:1883", False, True)]
    for view in views:
        view.show(fleet.snapshot())
        view.show(fleet.snapshot())  # nothing changed
    fleet.update("edgecam/a/availability", b"offline", False)
    for view in views:
        view.show(fleet.snapshot())
    drawn = terminal.getvalue()  # each time: back up over the 4 lines (title, header, row, Ctrl-C hint), clear, draw
    assert drawn.count("\x1b[J") == 3 and drawn.count("\x1b[4F") == 2 and "offline" in drawn.rpartition("\x1b[J")[2]
    assert pipe.getvalue().count("DEVICE") == 2 and "\x1b" not in pipe.getvalue()


# -- with real cameras: three `edgecam run --mqtt` ---------------------------------------------------
class PacedCamera(http.server.BaseHTTPRequestHandler):
    """An MJPEG stream of a red frame at 10 FPS, for as long as the client reads (a live camera)."""

    jpeg = b""
    stop = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        with contextlib.suppress(OSError):
            while not self.stop.wait(0.1):
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                 % len(self.jpeg) + self.jpeg + b"\r\n")
                self.wfile.flush()


@contextlib.contextmanager
def paced_camera():
    """A loopback MJPEG camera in a thread; yields its URL."""
    red = cv2.imencode(".jpg", np.full((48, 64, 3), (0, 0, 220), np.uint8))[1].tobytes()  # BGR
    handler = type("Camera", (PacedCamera,), {"stop": threading.Event(), "jpeg": red})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    finally:
        handler.stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # three cameras for several seconds, and a last will to wait for
def test_three_runs_on_one_broker_and_one_killed(broker, tmp_path):
    """Issue 10's acceptance 6: three `edgecam run --mqtt` → three devices online; SIGKILL one → offline."""
    keepalive = 2  # the broker declares a silent camera gone after 1.5 keepalives
    runs = {}
    with paced_camera() as source, contextlib.ExitStack() as stack:
        for name in "abc":
            config = tmp_path / f"{name}.yaml"
            config.write_text(f"mqtt:\n  device: {name}\n  keepalive: {keepalive}\n  heartbeat: 1\n")
            log = stack.enter_context(open(tmp_path / f"{name}.log", "w"))
            runs[name] = subprocess.Popen(
                [sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(COLORS_MODEL), "--source", source, "--headless",
                 "--mqtt", f"mqtt://127.0.0.1:{broker}", "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=log, env=isolated_env(tmp_path, display=False))
            stack.callback(stop, runs[name])
        fleet = stack.enter_context(live_fleet(f"mqtt://127.0.0.1:{broker}"))
        logs = lambda: {n: (tmp_path / f"{n}.log").read_text() for n in runs}
        online = fleet.until(lambda s: [(d["device"], d["status"], d["label"]) for d in s["devices"]]
                             == [("a", "online", "red"), ("b", "online", "red"), ("c", "online", "red")], timeout=60)[-1]
        assert all(d["model"] == "colors.tflite" and len(d["model_sha256"]) == 64 for d in online["devices"]), online
        runs["b"].kill()  # SIGKILL: no goodbye; its socket closes, so the broker sends its last will at once
        fleet.until(lambda s: by_name(s)["b"]["status"] == "offline", timeout=1.5 * keepalive + 10)
        # A camera gone silent with its connection open (a frozen process, a pulled cable): the broker
        # waits 1.5 keepalives for a packet, then sends its last will.
        runs["c"].send_signal(signal.SIGSTOP)
        stack.callback(runs["c"].send_signal, signal.SIGCONT)
        frozen = time.monotonic()
        last = fleet.until(lambda s: by_name(s)["c"]["status"] == "offline", timeout=1.5 * keepalive + 10)[-1]
        assert keepalive <= time.monotonic() - frozen < 1.5 * keepalive + 3, logs()
        assert by_name(last)["a"]["status"] == "online" and 0 <= by_name(last)["c"]["last_seen_s"] < 1.5 * keepalive + 3
        assert runs["a"].poll() is None, logs()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
