"""``edgecam run --mqtt URL`` (issue 10): labels to a broker, Home Assistant discovery, commands back.

Fast tests check the parts on their own: the URL and its redaction, the config, the payloads,
the discovery configs, commands with a fake control, the bounded outage queue. The slow ones use
a real mosquitto (tests/mqtt_broker.py: password file, TLS listener with a CA made here) and the
real command or loop: a video's label changes arrive in order with the model's SHA-256; SIGKILL
leaves the last will, a clean exit says offline; a broker that goes away for 10 s mid-run gets
every change of the outage, in order, after it comes back, while the loop keeps its frame rate;
TLS with the right CA works, a wrong CA or password is one line and a non-zero exit.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import COLORS_UNKNOWN_MODEL
from helpers import isolated_env
from edgecam.config.camera import RunConfig
from edgecam.config.loader import load_values
from edgecam.config.mqtt import MqttConfig, parse_broker_url, redact_credentials, sanitise_device
from edgecam.errors import ConfigError
from edgecam.mqtt import discovery
from edgecam.mqtt.client import Connection
from edgecam.mqtt.commands import Commands
from edgecam.mqtt.payloads import Counters, RunInfo, attributes, heartbeat
from edgecam.mqtt.publisher import ChangeQueue, MqttOutput, Publisher
from edgecam.mqtt.settings import PASSWORD_ENV, resolve
from edgecam.mqtt.topics import Topics
from edgecam.runtime.result import Result

REPO = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE, GREY = (200, 20, 20), (20, 200, 20), (20, 20, 200), (128, 128, 128)
LABEL_OF = {RED: "red", GREEN: "green", BLUE: "blue", GREY: "unknown"}


def result(label="red", changed=True, frame=0, t=1000.0, unknown=None, **extra) -> Result:
    return Result(frame, t, ((label, 0.9), ("blue", 0.05)), label, 0.9, changed, 25.0, 3.2, 4.0, unknown, **extra)


# -- fast: the URL, the config, the password ---------------------------------------------------
def test_broker_urls_parse_with_defaults_and_credentials():
    url = parse_broker_url("mqtt://pi.local")
    assert (url.scheme, url.host, url.port, url.tls, url.username) == ("mqtt", "pi.local", 1883, False, "")
    url = parse_broker_url("MQTTS://user%40home:p%3Ass@10.0.0.2:8884/")
    assert (url.scheme, url.host, url.port, url.tls) == ("mqtts", "10.0.0.2", 8884, True)
    assert (url.username, url.password) == ("user@home", "p:ss")
    assert url.display == "mqtts://10.0.0.2:8884"  # what logs show: never the credentials
    assert parse_broker_url("mqtt://[::1]:1884").display == "mqtt://[::1]:1884"
    assert parse_broker_url("mqtts://broker").port == 8883


@pytest.mark.parametrize("text, why", [
    ("http://user:hunter2@host", ""), ("mqtt://", "(no host)"), ("mqtt://host:99999", "(bad port)"),
    ("mqtt://user:hunter2@host/edgecam/x", "(topics are set with mqtt.prefix"), ("host:1883", ""),
])
def test_bad_broker_urls_are_errors_that_never_show_the_password(text, why):
    with pytest.raises(ValueError) as info:
        parse_broker_url(text)
    message = str(info.value)
    assert message.startswith("expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS), got ") and why in message
    assert "hunter2" not in message
    assert redact_credentials("see mqtt://u:hunter2@h:1 and mqtts://h2") == "see mqtt://***@h:1 and mqtts://h2"


def test_mqtt_config_errors_name_the_key_or_the_option(tmp_path):
    def error(values, names=None, path=None) -> str:
        with pytest.raises(ConfigError) as info:
            load_values(RunConfig, path, values, names)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert error({"mqtt": {"url": "ftp://u:pw@h"}}, {"mqtt.url": "--mqtt"}) == (
        "command line: --mqtt: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS), got 'ftp://***@h'")
    yaml = tmp_path / "run.yaml"
    yaml.write_text("mqtt:\n  url: mqtt://broker\n  ca_file: ca.pem\n")
    assert error({}, path=yaml) == f"{yaml}:3: mqtt.ca_file: needs an mqtts:// URL (TLS)"
    yaml.write_text("mqtt:\n  quue: 5\n")
    assert error({}, path=yaml) == f"{yaml}:2: mqtt.quue: unknown key (did you mean 'queue'?)"
    assert error({"mqtt": {"prefix": "home/#"}}).endswith("mqtt.prefix: a topic prefix must not contain + or # or "
                                                        "control characters, got 'home/#'")
    assert error({"mqtt": {"device": "pi kitchen"}}).endswith("mqtt.device: use letters, digits, _ or - (at most 64), "
                                                            "got 'pi kitchen'")
    assert error({"mqtt": {"queue": 0}}).endswith("mqtt.queue: must be 1..1000000 label changes, got 0")
    assert error({"mqtt": {"keepalive": 0}}).endswith("mqtt.keepalive: must be 1..65535 seconds, got 0")
    assert error({"mqtt": {"heartbeat": 0.5}}).endswith("mqtt.heartbeat: must be 1..86400 seconds, got 0.5")
    assert error({"mqtt": {"key_file": "k.pem"}}).endswith("mqtt.key_file: needs cert_file as well")
    cfg = load_values(RunConfig, None, {"mqtt": {"url": "mqtts://broker", "snapshot": True, "queue": 2}})
    assert cfg.mqtt == MqttConfig(url="mqtts://broker", snapshot=True, queue=2)


def test_configs_run_yaml_documents_every_mqtt_key():
    text = (REPO / "configs" / "run.yaml").read_text()
    section = text[text.index("\nmqtt:"):]
    for key in MqttConfig.__dataclass_fields__:
        assert f"\n  {key}:" in section, f"mqtt.{key} is not documented in configs/run.yaml"


def test_device_defaults_to_the_host_name_sanitised_and_the_prefix_to_edgecam_device(monkeypatch):
    assert sanitise_device("Pi Kitchen.local") == "pi_kitchen"
    assert sanitise_device("--") == "edgecam"
    monkeypatch.setattr("socket.gethostname", lambda: "Cam-2.lan")
    cfg = MqttConfig(url="mqtt://b")
    assert (cfg.device_name(), cfg.topic_prefix()) == ("cam-2", "edgecam/cam-2")
    assert MqttConfig(url="mqtt://b", device="door", prefix="house/door-cam").topic_prefix() == "house/door-cam"
    settings = resolve(MqttConfig(url="mqtt://b", device="door"), env={})
    assert settings.client_id == "edgecam-door" and settings.topics.state == "edgecam/door/state"


def test_password_comes_from_the_url_with_a_warning_then_the_environment_then_the_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n")
    cfg = MqttConfig(url="mqtt://cam@broker", password_file=str(secret))
    assert resolve(cfg, env={}).password == "from-file" and resolve(cfg, env={}).warnings == ()
    assert resolve(cfg, env={PASSWORD_ENV: "from-env"}).password == "from-env"
    url_cfg = MqttConfig(url="mqtt://cam:from-url@broker", password_file=str(secret))
    settings = resolve(url_cfg, env={PASSWORD_ENV: "from-env"})
    assert settings.password == "from-url" and settings.username == "cam"
    assert settings.warnings == (("mqtt: the password in the URL for mqtt://broker:1883 is visible to other users "
                                 f"(`ps`); use {PASSWORD_ENV} or mqtt.password_file instead"),)
    assert "from-url" not in repr(settings)  # the password is never shown, even in a repr
    with pytest.raises(ConfigError, match=r"^mqtt.password_file: .*nope: file not found$"):
        resolve(MqttConfig(url="mqtt://cam@b", password_file=str(tmp_path / "nope")), env={})
    with pytest.raises(ConfigError, match=r"^mqtt: a password for mqtt://b:1883 needs a user name"):
        resolve(MqttConfig(url="mqtt://b"), env={PASSWORD_ENV: "x"})
    with pytest.raises(ConfigError, match=r"^mqtt.ca_file: .*ca.pem: file not found$"):
        resolve(MqttConfig(url="mqtts://b", ca_file=str(tmp_path / "ca.pem")), env={})


# -- fast: payloads and discovery ----------------------------------------------------------------
INFO = RunInfo("colors.tflite", "ab" * 32, "door")
TOPICS = Topics("edgecam/door")


def test_attributes_and_heartbeat_hold_the_contracts_keys():
    attrs = attributes(result("red", unknown=0.1), INFO)
    assert list(attrs) == ["label", "score", "top", "unknown_score", "fps", "inference_ms", "model", "model_sha256",
                           "frame_time", "device", "version"]
    assert attrs["top"] == [{"label": "red", "score": 0.9}, {"label": "blue", "score": 0.05}]
    assert attrs["unknown_score"] == 0.1 and attrs["model_sha256"] == "ab" * 32 and attrs["frame_time"] == 1000.0
    assert attributes(result("red"), INFO)["unknown_score"] is None
    counters = Counters(started=time.monotonic() - 5, frames=8, changes=2, mqtt_dropped=1,
                        latest=result("blue", frame=9))
    beat = heartbeat(counters, INFO, now=1234.5)
    assert list(beat) == ["time", "fps", "frames", "changes", "dropped_frames", "mqtt_dropped", "uptime_s", "label",
                          "score", "model", "model_sha256", "device", "version"]
    assert (beat["time"], beat["frames"], beat["dropped_frames"], beat["label"]) == (1234.5, 8, 2, "blue")
    assert 4.9 <= beat["uptime_s"] <= 6


def test_discovery_configs_follow_home_assistants_schema():
    sent = dict(discovery.messages(TOPICS, INFO, snapshot=True))
    assert sorted(sent) == [f"homeassistant/{c}/door/{o}/config" for c, o in (
        ("image", "snapshot"), ("number", "threshold"), ("sensor", "fps"), ("sensor", "label"), ("sensor", "score"))]
    configs = {topic.split("/")[-2]: json.loads(payload) for topic, payload in sent.items()}
    for key, config in configs.items():
        component = next(t.split("/")[1] for t in sent if t.split("/")[-2] == key)
        assert config["unique_id"] == f"edgecam_door_{key}"
        assert config["default_entity_id"] == f"{component}.edgecam_door_{key}"
        assert (config["availability_topic"], config["payload_available"], config["payload_not_available"]) == (
            "edgecam/door/availability", "online", "offline")
        assert config["device"] == {"identifiers": ["edgecam_door"], "name": "edgecam door", "model": "colors.tflite",
                                    "manufacturer": "edgecam", "sw_version": INFO.version}
        assert config["origin"]["name"] == "edgecam"
    assert configs["label"]["state_topic"] == "edgecam/door/state"
    assert configs["label"]["json_attributes_topic"] == "edgecam/door/attributes"
    assert configs["score"]["state_topic"] == "edgecam/door/attributes" and "value_json.score" in \
        configs["score"]["value_template"]
    assert configs["fps"]["state_topic"] == "edgecam/door/heartbeat"
    assert "value_json.fps" in configs["fps"]["value_template"]
    assert (configs["snapshot"]["image_topic"], configs["snapshot"]["content_type"]) == ("edgecam/door/snapshot",
                                                                                         "image/jpeg")
    number = configs["threshold"]
    assert (number["command_topic"], number["min"], number["max"], number["step"]) == (
        "edgecam/door/set/threshold", 0, 1, 0.01)
    # Snapshots off: the image entity is removed (an empty retained config); no discovery prefix: nothing.
    assert dict(discovery.messages(TOPICS, INFO, snapshot=False))["homeassistant/image/door/snapshot/config"] == ""
    assert discovery.messages(Topics("edgecam/door", ""), INFO, snapshot=True) == []


# -- fast: commands ------------------------------------------------------------------------------
class FakeControl:
    def __init__(self):
        self.calls: list[tuple] = []

    def set_threshold(self, value):
        self.calls.append(("set_threshold", value))

    def pause(self):
        self.calls.append(("pause",))

    def resume(self):
        self.calls.append(("resume",))

    def snapshot(self):
        self.calls.append(("snapshot",))

    def request_reload(self, reason):
        self.calls.append(("request_reload", reason))


def test_commands_reach_the_control_and_bad_payloads_are_one_log_line():
    control, logs = FakeControl(), []
    commands = Commands(TOPICS, control, log=logs.append)
    for topic, payload in [("threshold", b" 0.35"), ("threshold", b"model"), ("threshold", b"1"),
                           ("pause", b"ON"), ("pause", b"off"), ("snapshot", b""), ("reload", b"please")]:
        assert commands.handle(f"edgecam/door/set/{topic}", payload)
    assert control.calls == [("set_threshold", 0.35), ("set_threshold", None), ("set_threshold", 1.0), ("pause",),
                             ("resume",), ("snapshot",), ("request_reload", "MQTT edgecam/door/set/reload")]
    assert logs == []
    bad = [("threshold", b"1.5"), ("threshold", b"nan"), ("threshold", b"high"), ("pause", b"maybe"),
           ("pause", b"\xff"), ("volume", b"3")]
    for topic, payload in bad:
        assert not commands.handle(f"edgecam/door/set/{topic}", payload)
    assert not commands.handle("edgecam/door/set/reload", b"", retained=True)
    assert not commands.handle("edgecam/other/set/reload", b"")  # not ours: no log either
    assert len(control.calls) == 7
    assert logs == [
        "mqtt: edgecam/door/set/threshold: ignored (expected a number 0..1 or 'model', got '1.5')",
        "mqtt: edgecam/door/set/threshold: ignored (expected a number 0..1 or 'model', got 'nan')",
        "mqtt: edgecam/door/set/threshold: ignored (expected a number 0..1 or 'model', got 'high')",
        "mqtt: edgecam/door/set/pause: ignored (expected ON or OFF, got 'maybe')",
        "mqtt: edgecam/door/set/pause: ignored (the payload is not UTF-8 text)",
        ("mqtt: edgecam/door/set/volume: ignored (unknown command (expected set/threshold, set/pause, set/snapshot "
        "or set/reload))"),
        "mqtt: edgecam/door/set/reload: ignored a retained command (publish commands without retain)",
    ]


def test_commands_drive_the_real_control():
    from edgecam.runtime.control import Control

    control = Control()
    commands = Commands(TOPICS, control, log=pytest.fail)
    commands.handle("edgecam/door/set/threshold", b"0.25")
    assert control.take_threshold() == (True, 0.25)
    commands.handle("edgecam/door/set/threshold", b"model")
    assert control.take_threshold() == (True, None)
    commands.handle("edgecam/door/set/pause", b"ON")
    assert control.paused
    commands.handle("edgecam/door/set/pause", b"OFF")
    assert not control.paused
    commands.handle("edgecam/door/set/snapshot", b"x")
    assert control.take_snapshot()
    commands.handle("edgecam/door/set/reload", b"")
    assert control.next_reload(0.1) == "MQTT edgecam/door/set/reload"


# -- fast: the loop's side never waits -------------------------------------------------------------
def unconnected_output(queue: int = 3, logs: list | None = None, snapshot: bool = False) -> MqttOutput:
    """An Output whose publisher never started: nothing is ever sent, as in a long outage."""
    settings = resolve(MqttConfig(url="mqtt://127.0.0.1:1", device="door", queue=queue, snapshot=snapshot), env={})
    log = (logs.append if logs is not None else lambda line: None)
    publisher = Publisher(Connection(settings, log), settings, INFO, Counters(started=time.monotonic()), log)
    return MqttOutput(publisher, snapshots=snapshot)


def test_an_outage_keeps_the_newest_changes_counts_the_rest_and_logs_once():
    logs: list[str] = []
    output = unconnected_output(queue=3, logs=logs)
    start = time.perf_counter()
    for i in range(20_000):
        output.write(result(("red", "blue")[i % 2], changed=i % 4 == 0, frame=i, t=1000 + i), None)
    per_frame_us = (time.perf_counter() - start) / 20_000 * 1e6
    queue: ChangeQueue = output.publisher.changes
    assert [r.frame for r in queue.items] == [19_988, 19_992, 19_996]  # the newest three, in order
    assert (output.counters.frames, output.counters.changes, output.counters.mqtt_dropped) == (20_000, 5_000, 4_997)
    assert logs == ["mqtt: the broker is not taking messages; dropping the oldest label changes (mqtt.queue: 3)"]
    assert per_frame_us < 50, per_frame_us  # a dict update and, on changes, a deque append
    assert not output.wants_pixels


def test_snapshots_ask_for_pixels_once_per_change_or_per_requested_frame():
    output = unconnected_output(snapshot=True)
    frame = np.zeros((4, 4, 3), np.uint8)
    output.write(result(changed=False), None)
    assert not output.wants_pixels
    output.write(result(changed=True), None)  # nobody drew this frame: take the next one
    assert output.wants_pixels
    output.write(result(changed=False), frame)
    assert not output.wants_pixels and output.publisher.snapshot_frame is not None
    output.publisher.snapshot_frame = None
    plain = unconnected_output(snapshot=False)
    plain.write(result(changed=True), frame)
    assert plain.publisher.snapshot_frame is None
    plain.write(result(changed=False, snapshot=True), frame)  # Control.snapshot(): this frame was drawn for us
    assert plain.publisher.snapshot_frame is not None



def test_a_reloaded_model_is_named_in_later_messages_and_announced_again():
    output = unconnected_output()
    output.publisher.announce_due = False
    output.write(result(changed=False), None)
    assert output.publisher.info.model == "colors.tflite" and not output.publisher.announce_due
    output.write(result(changed=False, model_path="/models/v2.tflite", model_sha256="cd" * 32), None)
    assert (output.publisher.info.model, output.publisher.info.model_sha256) == ("v2.tflite", "cd" * 32)
    assert output.publisher.announce_due  # Home Assistant's device names the model
    assert attributes(result(), output.publisher.info)["model_sha256"] == "cd" * 32


# -- with a real broker -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    from mqtt_broker import Broker

    with Broker(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running


@pytest.fixture
def listen(broker):
    """``listen(*topics)``: a recording subscriber on the broker (closed after the test)."""
    from mqtt_broker import Listener

    made = []

    def make(*topics: str):
        made.append(Listener(broker, topics or ("#",)))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def broker_settings(broker, device: str, **cfg) -> "object":
    from mqtt_broker import PASSWORD, USER

    return resolve(MqttConfig(url=broker.url, username=USER, device=device, **cfg), env={PASSWORD_ENV: PASSWORD})


def test_commands_and_home_assistants_birth_message_over_a_real_broker(broker, listen):
    control, logs = FakeControl(), []
    listener = listen("homeassistant/#", "edgecam/cmd/#")
    from edgecam.mqtt.session import start

    output = start(broker_settings(broker, "cmd", heartbeat=3600), RunInfo("m.tflite", "ab" * 32, "cmd"), control,
                   logs.append)
    try:
        listener.wait_for(lambda li: li.texts("edgecam/cmd/availability") == ["online"], 10, "online")
        config = "homeassistant/sensor/cmd/label/config"
        listener.wait_for(lambda li: len(li.on(config)) == 1, 10, "the discovery configs")
        listener.publish("edgecam/cmd/set/pause", "ON")
        listener.publish("edgecam/cmd/set/threshold", "0.4")
        listener.publish("edgecam/cmd/set/threshold", "lots")
        listener.publish("edgecam/cmd/set/reload", "")
        listener.wait_for(lambda li: len(control.calls) == 3, 10, "three commands")
        assert control.calls == [("pause",), ("set_threshold", 0.4), ("request_reload", "MQTT edgecam/cmd/set/reload")]
        listener.publish("homeassistant/status", "online")  # Home Assistant restarted: announce again
        listener.wait_for(lambda li: len(li.on(config)) == 2, 10, "the discovery configs again")
    finally:
        output.close()
    listener.wait_for(lambda li: li.texts("edgecam/cmd/availability")[-1:] == ["offline"], 10, "offline")
    assert "mqtt: edgecam/cmd/set/threshold: ignored (expected a number 0..1 or 'model', got 'lots')" in logs


def colour_video(path: Path, colours, per_colour: int, fps: float = 10.0) -> Path:
    """A lossless video of solid colour stretches (the colour models give red, green, blue, unknown for grey)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (64, 48))
    assert writer.isOpened()
    frames = {c: cv2.cvtColor(np.full((48, 64, 3), c, np.uint8), cv2.COLOR_RGB2BGR) for c in set(colours)}
    for colour in colours:
        for _ in range(per_colour):
            writer.write(frames[colour])
    writer.release()
    return path


def edgecam_run(tmp_path: Path, url: str, mqtt: dict, *args: str, password: str | None = None) -> subprocess.Popen:
    """``edgecam run`` in a subprocess (the real command) with ``--mqtt url`` and ``mqtt:`` from a config file."""
    from mqtt_broker import PASSWORD

    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"mqtt": mqtt}))  # JSON is YAML
    env = isolated_env(tmp_path, display=False, **{PASSWORD_ENV: PASSWORD if password is None else password})
    return subprocess.Popen([sys.executable, "-m", "edgecam", "run", str(COLORS_UNKNOWN_MODEL), "--config", str(config),
                             "--mqtt", url, "--headless", "--hold", "0", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def retained(broker, *topics: str, settle: float = 0.5) -> dict[str, str]:
    """What the broker keeps on ``topics`` (a fresh subscriber's retained messages)."""
    from mqtt_broker import Listener

    listener = Listener(broker, topics)
    time.sleep(settle)
    listener.close()
    return {m.topic: m.text for m in listener.messages if m.retain}


@pytest.mark.slow
def test_a_videos_label_changes_arrive_in_order_with_discovery_and_the_models_sha256(broker, listen, tmp_path):
    from mqtt_broker import USER

    colours = [RED, GREEN, BLUE, GREY, RED, BLUE, GREEN]
    video = colour_video(tmp_path / "colours.avi", colours, per_colour=4)
    listener = listen("edgecam/video/#")
    run = edgecam_run(tmp_path, broker.url, {"username": USER, "device": "video", "snapshot": True},
                      "--source", str(video))
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert f"mqtt: connected to {broker.url} as edgecam-video; publishing to edgecam/video/, Home Assistant " \
           "discovery under homeassistant/" in stderr.splitlines()
    expected = [LABEL_OF[c] for c in colours]
    listener.wait_for(lambda li: li.texts("edgecam/video/availability")[-1:] == ["offline"], 10, "offline")
    assert listener.texts("edgecam/video/state") == expected  # every change, in order, once
    attrs = [m.json() for m in listener.on("edgecam/video/attributes")]
    sha256 = hashlib.sha256(COLORS_UNKNOWN_MODEL.read_bytes()).hexdigest()
    assert [a["label"] for a in attrs] == expected
    assert {(a["model"], a["model_sha256"], a["device"]) for a in attrs} == {("colors_unknown.tflite", sha256, "video")}
    assert [a["frame_time"] for a in attrs] == sorted(a["frame_time"] for a in attrs)
    # A clean exit: the camera says offline itself and disconnects (so the broker has no will to send).
    assert listener.texts("edgecam/video/availability") == ["online", "offline"]
    assert "Client edgecam-video disconnected." in broker.log.read_text()

    kept = retained(broker, "homeassistant/+/video/+/config", "edgecam/video/#")
    configs = {topic: json.loads(text) for topic, text in kept.items() if topic.endswith("/config") and text}
    assert sorted(configs) == [f"homeassistant/{c}/video/{o}/config" for c, o in (
        ("image", "snapshot"), ("number", "threshold"), ("sensor", "fps"), ("sensor", "label"), ("sensor", "score"))]
    assert configs["homeassistant/image/video/snapshot/config"]["image_topic"] == "edgecam/video/snapshot"
    for topic, config in configs.items():
        assert config["unique_id"] == f"edgecam_video_{topic.split('/')[3]}"
        assert config["availability_topic"] == "edgecam/video/availability"
        assert config["device"]["identifiers"] == ["edgecam_video"]
        topic_key = next(k for k in ("state_topic", "command_topic", "image_topic") if k in config)
        assert config[topic_key].startswith("edgecam/video/")
    assert kept["edgecam/video/state"] == "green" and kept["edgecam/video/availability"] == "offline"
    assert json.loads(kept["edgecam/video/attributes"])["model_sha256"] == sha256
    # The annotated frame of a change, as JPEG: changes 4 frames apart come faster than that, so the
    # newest waiting one is sent (a slot, not a queue); the last change's is the one kept.
    snapshots = listener.on("edgecam/video/snapshot")
    assert 1 <= len(snapshots) <= len(expected)
    last = cv2.imdecode(np.frombuffer(snapshots[-1].payload, np.uint8), cv2.IMREAD_COLOR)
    assert last.shape == (48, 64, 3) and last[-1, -1].argmax() == 1  # green (BGR), under the overlay's corner
    beat = json.loads(kept["edgecam/video/heartbeat"])
    assert beat["device"] == "video" and beat["model_sha256"] == sha256


@pytest.mark.slow
def test_sigkill_leaves_the_last_will_within_the_keepalive(broker, listen, tmp_path):
    from mqtt_broker import USER

    video = colour_video(tmp_path / "long.avi", [RED, GREEN, BLUE, GREY] * 25, per_colour=300, fps=30)  # ~30,000 frames
    listener = listen("edgecam/killed/#")
    run = edgecam_run(tmp_path, broker.url, {"username": USER, "device": "killed", "keepalive": 2},
                      "--source", str(video))
    try:
        listener.wait_for(lambda li: li.texts("edgecam/killed/availability") == ["online"]
                          and li.texts("edgecam/killed/state"), 30, "online and a first label")
        assert run.poll() is None, "the run ended before it could be killed: make the video longer"
        run.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        listener.wait_for(lambda li: li.texts("edgecam/killed/availability")[-1:] == ["offline"], 10, "the last will")
        took = listener.on("edgecam/killed/availability")[-1].time - killed
        assert took < 2.0, f"offline came {took:.1f} s after SIGKILL (keepalive 2 s)"
        assert run.wait(timeout=10) == -signal.SIGKILL
    finally:
        run.kill()
        run.communicate()
    assert retained(broker, "edgecam/killed/availability") == {"edgecam/killed/availability": "offline"}


class ColourCamera:
    """A live camera at a fixed frame rate whose picture turns red, green, blue, grey every ``period`` s."""

    def __init__(self, fps: float = 30.0, period: float = 0.8):
        from edgecam.runtime.sources import Source

        class _Camera(Source):
            live, name = True, f"colour camera {fps:g} FPS"

            def read(inner) -> np.ndarray:
                now = time.perf_counter()
                if inner.next > now:
                    time.sleep(inner.next - now)
                inner.next = max(inner.next + 1 / fps, time.perf_counter())
                k = int((time.perf_counter() - self.start) / period)
                return np.full((48, 64, 3), (RED, GREEN, BLUE, GREY)[k % 4], np.uint8)

        self.start = time.perf_counter()
        self.source = _Camera()
        self.source.next = 0.0


class Recorded:
    """An Output keeping (time.monotonic(), result) of every frame (the listener's clock too)."""

    def __init__(self):
        from edgecam.runtime.outputs import Output

        self.rows: list[tuple[float, Result]] = []
        rows = self.rows

        class _Output(Output):
            def write(inner, result, annotated=None):
                rows.append((time.monotonic(), result))

        self.output = _Output()

    def changes(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        """Frame times (as in the attributes) of the changes announced between ``start`` and ``end``."""
        return [round(r.time, 3) for t, r in self.rows if r.changed and start <= t < end]

    def rate(self, start: float, end: float) -> float:
        return sum(start <= t < end for t, _ in self.rows) / (end - start)


@pytest.mark.slow
@pytest.mark.parametrize("queue, outage", [(100, 10.0), (2, 6.0)], ids=["queue-100", "queue-2"])
def test_a_broker_outage_mid_run_loses_nothing_in_order_and_never_slows_the_loop(broker, listen, queue, outage):
    from mqtt_broker import PASSWORD, USER

    from edgecam.mqtt.session import mqtt_outputs
    from edgecam.runtime import loop
    from edgecam.runtime.control import Control

    device = f"outage{queue}"
    cfg = RunConfig(model=str(COLORS_UNKNOWN_MODEL), hold=0, mqtt=MqttConfig(
        url=broker.url, username=USER, device=device, queue=queue, heartbeat=1, keepalive=5))
    listener = listen(f"edgecam/{device}/#")
    camera, recorded, logs, stop, outcome = ColourCamera(), Recorded(), [], threading.Event(), {}
    control = Control()
    os.environ[PASSWORD_ENV] = PASSWORD
    try:
        hook = mqtt_outputs(cfg, control, log=logs.append)
    finally:
        del os.environ[PASSWORD_ENV]

    def run():
        try:
            outcome["summary"] = loop.run(cfg, stop=stop, source=camera.source, window=False, control=control,
                                          extra_outputs=lambda c, s: hook(c, s) + [recorded.output])
        except BaseException as exc:  # surfaced below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        listener.wait_for(lambda li: len(li.on(f"edgecam/{device}/state")) >= 3 or outcome, 30, "three labels")
        went = time.monotonic()
        broker.stop()
        time.sleep(outage)
        back = time.monotonic()
        broker.start()
        assert len(recorded.changes(went, back)) >= outage / 0.8 - 2  # changes the broker could not take
        # paho's back-off (1, 2, 4, 8 ... 30 s) decides when it comes back
        online = listener.wait_for(lambda li: [m.time for m in li.on(f"edgecam/{device}/availability")
                                               if m.time > back and m.text == "online"], 45, "online again")
        reconnected = online[0]
        time.sleep(2)  # a few changes after the reconnect, too
    finally:
        stop.set()
        thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    listener.wait_for(lambda li: li.texts(f"edgecam/{device}/availability")[-1:] == ["offline"], 10, "offline")

    expected = recorded.changes()
    heard: list[float] = []
    for m in listener.on(f"edgecam/{device}/attributes"):  # QoS 1: a change may come twice, never out of order
        if not heard or m.json()["frame_time"] != heard[-1]:
            heard.append(m.json()["frame_time"])
    assert heard == sorted(heard) and set(heard) <= set(expected)
    beats = [m.json() for m in listener.on(f"edgecam/{device}/heartbeat")]
    dropped = [line for line in logs if "dropping the oldest label changes" in line]
    if queue == 100:
        assert heard == expected  # every change of the outage, after it, in order
        assert beats[-1]["mqtt_dropped"] == 0 and dropped == []
    else:
        missing = [t for t in expected if t not in heard]
        assert len(missing) >= 3 and beats[-1]["mqtt_dropped"] == len(missing)
        assert heard[-1] == expected[-1]  # the newest changes were kept
        assert dropped == ["mqtt: the broker is not taking messages; dropping the oldest label changes (mqtt.queue: 2)"]
    assert f"mqtt: reconnected to {broker.url}" in logs
    assert any(line.startswith(f"mqtt: lost the connection to {broker.url}") for line in logs)
    # The loop did not notice: frames per second during the outage, against the seconds before it.
    first = recorded.rows[0][0]
    before, while_out = recorded.rate(max(first + 0.3, went - 3.0), went), recorded.rate(went + 0.2, back)
    assert while_out >= 0.95 * before, (before, while_out)
    print(f"outage {outage:g} s: {len(recorded.changes(went, back))} changes, {len(expected) - len(heard)} dropped; "
          f"{before:.1f} FPS before, {while_out:.1f} during; online again {reconnected - back:.1f} s after the restart")


def error_line(stderr: str) -> str:
    """The one ``Error:`` line of a failed run (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.slow
def test_tls_with_the_ca_works_and_a_wrong_ca_or_password_is_one_line(broker, listen, tmp_path):
    from mqtt_broker import PASSWORD, USER

    video = colour_video(tmp_path / "colours.avi", [BLUE, RED], per_colour=4)
    listener = listen("edgecam/tls/#")
    good = {"username": USER, "device": "tls", "ca_file": str(broker.ca)}
    run = edgecam_run(tmp_path, broker.tls_url, good, "--source", str(video))
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert f"mqtt: connected to {broker.tls_url} as edgecam-tls; publishing to edgecam/tls/, Home Assistant " \
           "discovery under homeassistant/" in stderr.splitlines()
    listener.wait_for(lambda li: li.texts("edgecam/tls/state") == ["blue", "red"], 10, "the labels over TLS")

    cases = [
        (broker.tls_url, good | {"ca_file": str(broker.other_ca)}, PASSWORD,
         (f"Error: cannot connect to the MQTT broker {broker.tls_url}: TLS certificate not trusted "
         "({reason}); check mqtt.ca_file")),
        (broker.tls_url, good, "wrong-password",
         (f"Error: the MQTT broker {broker.tls_url} refused the connection: Not authorized; check mqtt.username and "
         f"the password ({PASSWORD_ENV} or mqtt.password_file)")),
        (f"mqtt://{USER}:wrong-password@127.0.0.1:{broker.port}", {"device": "tls"}, "",
         (f"Error: the MQTT broker {broker.url} refused the connection: Not authorized; check mqtt.username and "
         f"the password ({PASSWORD_ENV} or mqtt.password_file)")),
        (f"mqtts://127.0.0.1:{broker.port}", good, PASSWORD,  # TLS to the plain port
         (f"Error: cannot connect to the MQTT broker mqtts://127.0.0.1:{broker.port}: the broker closed the connection "
         "during the TLS handshake; is this port mqtts:// (TLS)?")),
    ]
    for url, mqtt, password, expected in cases:
        started = time.monotonic()
        run = edgecam_run(tmp_path, url, mqtt, "--source", str(video), password=password)
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 1, stderr
        line = error_line(stderr)
        if "{reason}" in expected:
            head, tail = expected.split("{reason}")
            assert line.startswith(head) and line.endswith(tail), line
        else:
            assert line == expected
        assert "wrong-password" not in stderr and PASSWORD not in stderr  # credentials are never shown
        assert time.monotonic() - started < 15  # start-up waits a few seconds at most
        if "wrong-password@" in url:  # a password in the URL works (here: is refused), with a warning
            assert (f"mqtt: the password in the URL for {broker.url} is visible to other users (`ps`); use "
                    f"{PASSWORD_ENV} or mqtt.password_file instead") in stderr.splitlines()
