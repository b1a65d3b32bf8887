"""A real MQTT broker for tests: Debian's mosquitto on free loopback ports, with a password file
and a TLS listener whose CA and server certificate are made here with ``openssl``; and a
subscriber that records everything it hears.

``Broker(folder).start()`` writes mosquitto.conf, the password file (``mosquitto_passwd``) and the
certificates into ``folder``; ``stop()`` / ``start()`` again keep the same ports (a broker that
goes away mid-run and comes back). Tests skip, saying why, where mosquitto or openssl is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")
USER, PASSWORD = "camera", "s3cret-Pa55"
_ids = itertools.count()


def need_broker() -> None:
    """Skip (one line: what is missing, how to get it) unless mosquitto, mosquitto_passwd and openssl are here."""
    missing = [name for name, path in (("mosquitto", MOSQUITTO), ("mosquitto_passwd", MOSQUITTO_PASSWD),
                                       ("openssl", OPENSSL)) if not path]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: `sudo apt-get install mosquitto openssl` (scripts/install.sh "
                    "does it as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256): (certificate, key)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN=edgecam test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by ``ca``: (certificate, key)."""
    cert, key, csr, ext = folder / "server.crt", folder / "server.key", folder / "server.csr", folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                   "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.name,
             "-out", csr.name, "-subj", "/CN=localhost", cwd=folder)
    _openssl("x509", "-req", "-in", csr.name, "-CA", ca[0].name, "-CAkey", ca[1].name, "-CAcreateserial",
             "-out", cert.name, "-days", "2", "-extfile", ext.name, cwd=folder)
    return cert, key


class Broker:
    """mosquitto with a password file: ``port`` (plain) and ``tls_port`` (TLS, ``ca`` signs its certificate).

    ``other_ca`` is a CA that signed nothing here (the wrong CA to trust).
    """

    def __init__(self, folder: Path):
        need_broker()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.ca, ca_key = make_ca(folder, "ca")
        self.other_ca, _ = make_ca(folder, "other-ca")
        self.server_cert, self.server_key = make_server_cert(folder, (self.ca, ca_key))
        self.passwords = folder / "passwd"
        subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(self.passwords), USER, PASSWORD], check=True,
                       capture_output=True, timeout=30)
        self.log = folder / "mosquitto.log"
        self.conf = folder / "mosquitto.conf"
        run_as_root = "user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""  # it reads tmp_path
        self.conf.write_text(
            f"{run_as_root}per_listener_settings false\nallow_anonymous false\npassword_file {self.passwords}\n"
            # Persistence: a listener's session (clean_session=False) outlives a broker restart, so it
            # hears what a camera delivers after reconnecting, whoever of the two reconnects first.
            f"persistence true\npersistence_location {folder}/\nmax_queued_messages 100000\n"
            "log_dest stderr\nlog_type all\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\ncafile {self.ca}\ncertfile {self.server_cert}\n"
            f"keyfile {self.server_key}\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self, timeout: float = 10) -> "Broker":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            if all(_listening(p) for p in (self.port, self.tls_port)):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    time: float  # time.monotonic() on arrival

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.payload)


class Listener:
    """A paho subscriber (its own thread) that keeps every message heard on ``topics``, in order."""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("#",), client_id: str = ""):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        # A persistent session: messages published while it reconnects (a broker restart) are kept for it.
        client_id = client_id or f"test-listener-{os.getpid()}-{next(_ids)}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.reconnect_delay_set(1, 1)  # back as soon as the broker is
        self.topics = topics

        def on_connect(client, userdata, flags, reason, properties):
            if not reason.is_failure:
                client.subscribe([(t, 1) for t in topics])
                self.connected.set()

        def on_disconnect(client, userdata, flags, reason, properties):
            self.connected.clear()

        def on_message(client, userdata, message):
            with self.lock:
                self.messages.append(Message(message.topic, message.payload, bool(message.retain), time.monotonic()))

        self.client.on_connect, self.client.on_disconnect = on_connect, on_disconnect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=5)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the test listener could not connect")
        time.sleep(0.2)  # the SUBACK: retained messages are on their way

    def on(self, topic: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def texts(self, topic: str) -> list[str]:
        return [m.text for m in self.on(topic)]

    def wait_for(self, check: Callable[["Listener"], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check(self)
            if value:
                return value
            time.sleep(0.05)
        with self.lock:
            heard = [(m.topic, m.text[:60]) for m in self.messages[-20:]]
        pytest.fail(f"timed out after {timeout} s waiting for {what}; last messages: {heard}")

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
