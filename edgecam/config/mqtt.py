"""``edgecam run --mqtt URL``: the broker, the topics and what is published (the ``mqtt`` section).

Standard library only, like the other configs (the runtime imports ``edgecam.config.camera``,
which holds this section). The broker URL is parsed here, so a bad one is a config error that
names the key; ``edgecam.mqtt`` does the rest. No message here ever shows a password.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from edgecam.config.redact import redact_url

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
URL_HINT = "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)"
# Home Assistant's node and object ids: letters, digits, _ and -.
_DEVICE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class BrokerUrl:
    scheme: str  # mqtt or mqtts
    host: str
    port: int
    username: str = ""  # from the URL (percent-decoded)
    password: str = field(default="", repr=False)  # from the URL: works, but the run warns (`ps` shows it)

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def display(self) -> str:
        """The URL without its credentials: what every log line and error shows."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def redact_credentials(text: str) -> str:
    """``mqtt://user:pw@host`` → ``mqtt://***@host`` (edgecam's one rule: ``config.redact``)."""
    return redact_url(str(text))


def parse_broker_url(text: str) -> BrokerUrl:
    """``mqtt://host``, ``mqtts://user@host:8884``, ``mqtt://[::1]:1883``; ValueError (redacted) otherwise."""
    shown = redact_credentials(text)
    try:
        parts = urlsplit(str(text).strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{URL_HINT}, got {shown!r} (bad port)") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{URL_HINT}, got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"{URL_HINT}, got {shown!r} (no host)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{URL_HINT}, got {shown!r} (topics are set with mqtt.prefix, not in the URL)")
    if port == 0:
        raise ValueError(f"{URL_HINT}, got {shown!r} (port 0)")
    return BrokerUrl(scheme, parts.hostname, port or DEFAULT_PORTS[scheme],
                     unquote(parts.username or ""), unquote(parts.password or ""))


def topic_problem(topic: str, what: str) -> str | None:
    """Why ``topic`` cannot be a prefix of published topics (None when it can)."""
    if not topic.isprintable() or any(c in topic for c in "+#\0"):
        return f"{what} must not contain + or # or control characters, got {topic!r}"
    if topic.startswith("/") or topic.endswith("/") or "//" in topic:
        return f"{what} must not start or end with / or hold an empty level, got {topic!r}"
    if topic.startswith("$"):
        return f"{what} must not start with $ (reserved by brokers), got {topic!r}"
    return None


def sanitise_device(name: str) -> str:
    """A host name as a topic level and Home Assistant id: ``Pi Kitchen.local`` → ``pi_kitchen``."""
    text = re.sub(r"[^a-z0-9_-]+", "_", name.split(".")[0].lower()).strip("_-")
    return text[:64] or "edgecam"


@dataclass(frozen=True)
class MqttConfig:
    # Broker URL: mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (TLS, 8883); "" = no MQTT.
    # A user name may sit in it (mqtt://user@host); a password there works but is visible in `ps`.
    url: str = ""
    # User name (when the URL has none).
    username: str = ""
    # File holding the password (first line); the environment variable EDGECAM_MQTT_PASSWORD wins.
    password_file: str = ""
    # mqtts: CA certificate file to trust ("" = the system's CAs); client certificate and key, if
    # the broker asks for one.
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # MQTT client id ("" = edgecam-<device>).
    client_id: str = ""
    # This camera's name in topics and in Home Assistant ("" = the host name, sanitised).
    device: str = ""
    # Topic prefix of everything published ("" = edgecam/<device>).
    prefix: str = ""
    # Home Assistant discovery prefix ("" = no discovery messages).
    discovery_prefix: str = "homeassistant"
    # Seconds between heartbeat messages.
    heartbeat: float = 30.0
    # Publish the annotated frame (JPEG) on each label change.
    snapshot: bool = False
    # Label changes kept while the broker is unreachable (the oldest are dropped first).
    queue: int = 100
    # Seconds of silence after which the broker declares this camera offline.
    keepalive: int = 15

    def validate(self):
        if self.url:
            try:
                broker = parse_broker_url(self.url)
            except ValueError as exc:
                return "url", str(exc)
            if (self.ca_file or self.cert_file or self.key_file) and not broker.tls:
                key = "ca_file" if self.ca_file else "cert_file" if self.cert_file else "key_file"
                return key, "needs an mqtts:// URL (TLS)"
        if self.key_file and not self.cert_file:
            return "key_file", "needs cert_file as well"
        if self.device and not _DEVICE.match(self.device):
            return "device", f"use letters, digits, _ or - (at most 64), got {self.device!r}"
        for key in ("prefix", "discovery_prefix"):
            problem = getattr(self, key) and topic_problem(getattr(self, key), "a topic prefix")
            if problem:
                return key, problem
        if self.client_id and (len(self.client_id) > 128 or not self.client_id.isprintable()):
            return "client_id", "use at most 128 printable characters"
        if not 1.0 <= self.heartbeat <= 86400:
            return "heartbeat", f"must be 1..86400 seconds, got {self.heartbeat:g}"
        if not 1 <= self.queue <= 1_000_000:
            return "queue", f"must be 1..1000000 label changes, got {self.queue}"
        if not 1 <= self.keepalive <= 65535:
            return "keepalive", f"must be 1..65535 seconds, got {self.keepalive}"
        return None

    def device_name(self) -> str:
        return self.device or sanitise_device(socket.gethostname())

    def topic_prefix(self) -> str:
        return self.prefix or f"edgecam/{self.device_name()}"
