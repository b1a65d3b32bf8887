"""The ``mqtt`` section resolved for one run: broker, credentials, names and topics.

The password comes from the URL (works, with a warning: ``ps`` shows it), else the environment
variable ``EDGECAM_MQTT_PASSWORD``, else the first line of ``mqtt.password_file``; it is never
needed on the command line and never appears in a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgecam.config.mqtt import BrokerUrl, MqttConfig, parse_broker_url
from edgecam.errors import ConfigError
from edgecam.mqtt.topics import Topics

PASSWORD_ENV = "EDGECAM_MQTT_PASSWORD"


@dataclass(frozen=True)
class MqttSettings:
    broker: BrokerUrl
    device: str
    client_id: str
    topics: Topics
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    heartbeat: float = 30.0
    snapshot: bool = False
    queue: int = 100
    keepalive: int = 15
    warnings: tuple[str, ...] = ()  # one line each, for the log


def resolve(cfg: MqttConfig, env: dict[str, str] | None = None) -> MqttSettings:
    """Everything a run needs to connect; ConfigError for an unreadable password or TLS file."""
    env = os.environ if env is None else env
    broker = parse_broker_url(cfg.url)
    warnings = []
    username = broker.username or cfg.username
    if broker.password:
        password = broker.password
        warnings.append(f"mqtt: the password in the URL for {broker.display} is visible to other users "
                        f"(`ps`); use {PASSWORD_ENV} or mqtt.password_file instead")
    elif env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV]
    else:
        password = _read_password(cfg.password_file) if cfg.password_file else ""
    if password and not username:
        raise ConfigError(f"mqtt: a password for {broker.display} needs a user name (mqtt.username, or "
                          "mqtt://USER@HOST)")
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        if path and not Path(path).expanduser().is_file():
            raise ConfigError(f"mqtt.{key}: {path}: file not found")
    device = cfg.device_name()
    return MqttSettings(
        broker=broker, device=device, client_id=cfg.client_id or f"edgecam-{device}",
        topics=Topics(cfg.topic_prefix(), cfg.discovery_prefix), username=username, password=password,
        ca_file=_path(cfg.ca_file), cert_file=_path(cfg.cert_file), key_file=_path(cfg.key_file),
        heartbeat=cfg.heartbeat, snapshot=cfg.snapshot, queue=cfg.queue, keepalive=cfg.keepalive,
        warnings=tuple(warnings))


def _path(text: str) -> str:
    return str(Path(text).expanduser()) if text else ""


def _read_password(path: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"mqtt.password_file: {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mqtt.password_file: {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") \
            from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"mqtt.password_file: {path}: the first line is empty")
    return lines[0]
