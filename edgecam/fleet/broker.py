"""The broker side of ``edgecam fleet``: its URL and credentials, and a subscription that feeds a Fleet.

The URL is read as ``edgecam run --mqtt`` reads it (``edgecam.config.mqtt``), and every message
about the broker names it by ``BrokerUrl.display``: scheme, host and port, never a user or password.
"""

from __future__ import annotations

import os
import secrets
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from edgecam.config.mqtt import (
    BrokerUrl,
    parse_broker_url,
    redact_credentials,
    topic_problem,
)
from edgecam.console import log
from edgecam.errors import ConfigError, EdgecamError
from edgecam.fleet.devices import TOPICS, Fleet

PASSWORD_ENV = "EDGECAM_MQTT_PASSWORD"
KEEPALIVE = 30  # seconds between pings to the broker
CONNECT_TIMEOUT = 10.0  # seconds for the TCP (and TLS) connection, then again for the broker's answer


class BrokerError(EdgecamError):
    """The broker cannot be reached or refuses us."""


@dataclass(frozen=True)
class Broker:
    url: BrokerUrl
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def name(self) -> str:
        return self.url.display


def parse_broker(url: str, username: str | None = None, password_file: Path | None = None,
                 ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None,
                 env: dict | None = None) -> Broker:
    """The broker of ``mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT]`` and the options, as ``edgecam run`` takes them.

    The user is ``username`` or the URL's; the password is the URL's (with a warning: ``ps`` shows
    it), else ``$EDGECAM_MQTT_PASSWORD``, else the first line of ``password_file``, as for
    ``edgecam run --mqtt``. The TLS files need ``mqtts://``.
    """
    env = os.environ if env is None else env
    try:
        broker = parse_broker_url(url)
    except ValueError as exc:
        raise ConfigError(f"broker URL: {exc}") from None
    files = {"--ca-file": ca_file, "--cert-file": cert_file, "--key-file": key_file}
    for option, path in files.items():
        if path is not None and not broker.tls:
            raise ConfigError(f"{option} {path}: needs an mqtts:// URL (TLS), got {broker.display}")
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path}: file not found")
    if key_file is not None and cert_file is None:
        raise ConfigError(f"--key-file {key_file}: needs --cert-file as well")
    if broker.password:
        log(f"warning: the password in the URL for {broker.display} is visible to other users (`ps`); "
            f"use {PASSWORD_ENV} or --password-file instead")
    password = broker.password or env.get(PASSWORD_ENV) or (read_password(password_file) if password_file else None)
    user = username or broker.username
    if password and not user:
        raise ConfigError(f"{broker.display}: a password needs a user name (--username or mqtt://USER@HOST)")
    return Broker(broker, user or None, password or None, ca_file, cert_file, key_file)


def read_password(path: Path) -> str:
    """The first line of ``path``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--password-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if not lines or not lines[0]:
        raise ConfigError(f"--password-file {path}: the first line is empty")
    return lines[0]


def filters(prefix: str) -> list[str]:
    """The topic filters ``edgecam fleet`` subscribes to, one per topic of the contract."""
    problem = not prefix and "--prefix must not be empty" or topic_problem(prefix, "--prefix")
    if problem:
        raise ConfigError(problem)
    return [f"{prefix}/+/{kind}" for kind in TOPICS]


class Subscription:
    """A paho client in its own thread, subscribed to a prefix's topics, feeding ``fleet``.

    ``connect()`` returns once the broker accepted us (or raises BrokerError); ``retained`` is set
    once the broker has sent its retained messages; ``changed`` whenever the fleet changed. After
    a lost connection paho reconnects by itself (``problem`` says what happened meanwhile).
    """

    def __init__(self, broker: Broker, fleet: Fleet):
        mqtt = _paho()
        self.broker, self.fleet = broker, fleet
        self.topics = filters(fleet.prefix)
        self.connected, self.retained, self.changed = threading.Event(), threading.Event(), threading.Event()
        self.refused: str | None = None
        self.problem: str | None = None
        self._sync_mid: int | None = None
        client_id = f"edgecam-fleet-{secrets.token_hex(4)}"
        # The subscription after ours: its answer comes after the broker's retained messages for ours.
        self._sync_topic = f"{fleet.prefix}/{client_id}/fleet-sync"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.connect_timeout = CONNECT_TIMEOUT
        self.client.reconnect_delay_set(1, 30)
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.url.tls:
            try:
                self.client.tls_set(ca_certs=_str(broker.ca_file), certfile=_str(broker.cert_file),
                                    keyfile=_str(broker.key_file))
            except (ssl.SSLError, OSError) as exc:  # a CA, certificate or key file that is not one
                raise ConfigError(f"TLS files for {broker.name}: {exc}") from None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def connect(self) -> None:
        try:
            self.client.connect(self.broker.url.host, self.broker.url.port, keepalive=KEEPALIVE)
        except ssl.SSLError as exc:
            raise self._error(f"TLS failed: {getattr(exc, 'verify_message', None) or exc.reason or exc}") from None
        except (OSError, ValueError) as exc:
            raise self._error(_reason(exc, self.broker.url.tls)) from None
        self.client.loop_start()
        if not self.connected.wait(CONNECT_TIMEOUT) or self.refused:
            self.close()
            raise self._error(self.refused or f"no answer within {CONNECT_TIMEOUT:g} s")

    def wait_retained(self, timeout: float = CONNECT_TIMEOUT) -> None:
        if not self.retained.wait(timeout):
            raise self._error(self.problem or f"no answer to the subscription within {timeout:g} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _error(self, reason: str) -> BrokerError:
        return BrokerError(f"MQTT broker {self.broker.name}: {redact_credentials(reason)}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if self.connected.is_set():  # refused on a reconnect: say so, paho keeps trying
                self.problem = f"refused: {reason_code}, retrying"
                self.changed.set()
            else:  # a wrong password does not get better by retrying
                self.refused = f"refused: {reason_code}" + (" (check the user name and password)"
                                                             if reason_code.value in (4, 5, 134, 135) else "")
                self.connected.set()
                client.disconnect()
            return
        self.problem = None
        if self.connected.is_set():  # a reconnect: the broker may have lost messages meanwhile
            self.fleet.resync()
        client.subscribe([(topic, 0) for topic in self.topics])
        self._sync_mid = client.subscribe(self._sync_topic, 0)[1]
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid == self._sync_mid:
            self.fleet.resynced()
            self.retained.set()
            self.changed.set()

    def _on_message(self, client, userdata, message) -> None:
        if self.fleet.update(message.topic, message.payload, bool(message.retain)):
            self.changed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self.refused:
            self.problem = "connection to the broker lost, reconnecting"
            self.changed.set()


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _paho():
    try:
        import paho.mqtt.client as mqtt  # here: nothing else in edgecam fleet needs paho
    except ImportError as exc:
        raise EdgecamError(f"paho-mqtt is not installed ({exc}): pip install 'paho-mqtt>=2.1,<3'") from None
    return mqtt


def _reason(exc: BaseException, tls: bool) -> str:
    if tls and isinstance(exc, ConnectionResetError):
        return "connection reset in the TLS handshake (does that port speak TLS?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, and on that port?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
