"""The broker connection: paho-mqtt 2.x (callback API version 2), TLS, credentials, the last will.

Start-up connects on the calling thread, so a broker that cannot be reached, a certificate that
is not trusted or a password that is refused is one line naming the broker and the reason (paho's
own first attempt in its thread would only retry in silence). Once the broker has accepted us,
paho's network thread keeps the connection: it reconnects with back-off (1 s doubling to 30 s)
for as long as the run lasts, and the broker publishes the last will (``offline``, retained) if
the camera vanishes without saying goodbye.
"""

from __future__ import annotations

import collections
import socket
import ssl
import threading
import time
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgecam.console import log as _log
from edgecam.errors import ConfigError, EdgecamError
from edgecam.mqtt.settings import PASSWORD_ENV, MqttSettings
from edgecam.mqtt.topics import OFFLINE

CONNECT_TIMEOUT = 5.0  # seconds for the TCP/TLS connection and then for the broker's CONNACK
RECONNECT_DELAY = (1, 30)  # paho's back-off: first wait, longest wait (seconds)


class MqttError(EdgecamError):
    """The broker cannot be used: unreachable, TLS failure, credentials refused."""


def connect_problem(exc: BaseException, timeout: float = CONNECT_TIMEOUT, tls: bool = False) -> str:
    """Why a connection attempt failed, in words (never with a password: the URL is not in there)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); check mqtt.ca_file"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc}); is it an mqtts:// port, and does the broker take this certificate?"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError)) and tls:
        return "the broker closed the connection during the TLS handshake; is this port mqtts:// (TLS)?"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running and listening on this port?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def refused_problem(reason) -> str:
    """The CONNACK's reason, with what to check."""
    text = str(reason)
    if getattr(reason, "value", None) in (4, 5, 0x86, 0x87):  # bad user name or password / not authorized
        return (f"{text}; check mqtt.username and the password ({PASSWORD_ENV} or mqtt.password_file)")
    return text


class Connection:
    """One paho client and what the publisher needs of it: state, publish, acknowledgements.

    ``on_up(first)`` runs in paho's thread after every accepted CONNACK; ``on_message(topic,
    payload, retained)`` for every message of a subscription made in ``on_up``.
    """

    def __init__(self, settings: MqttSettings, log: Callable[[str], None] = _log):
        self.settings, self.log = settings, log
        self.name = settings.broker.display
        self.on_up: Callable[[bool], None] = lambda first: None
        self.on_message: Callable[[str, bytes, bool], None] = lambda topic, payload, retained: None
        self.connected = threading.Event()
        self.changed = threading.Condition()  # notified on connect, disconnect and acknowledgements
        self._acked: collections.deque[int] = collections.deque(maxlen=4096)
        self._connack = threading.Event()
        self._refused = None  # the first CONNACK's failure reason
        self._ups = 0
        self._lost_logged = False
        self.client = self._make_client()

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=paho.MQTTv311,
                             clean_session=True)
        client.connect_timeout = CONNECT_TIMEOUT
        client.reconnect_delay_set(*RECONNECT_DELAY)
        client.will_set(s.topics.availability, OFFLINE, qos=1, retain=True)
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.broker.tls:
            try:
                client.tls_set(ca_certs=s.ca_file or None, certfile=s.cert_file or None, keyfile=s.key_file or None,
                               tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (ssl.SSLError, OSError) as exc:
                key = "cert_file" if s.cert_file else "ca_file"
                raise ConfigError(f"mqtt.{key}: cannot load the TLS files ({getattr(exc, 'reason', None) or exc})") \
                    from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # -- start and stop ---------------------------------------------------------------------
    def start(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect and wait for the broker's answer; MqttError (one line) when it cannot be had."""
        s = self.settings
        try:
            self.client.connect(s.broker.host, s.broker.port, keepalive=s.keepalive)
        except (OSError, ValueError) as exc:
            raise MqttError(f"cannot connect to the MQTT broker {self.name}: "
                            f"{connect_problem(exc, timeout, s.broker.tls)}") from None
        self.client.loop_start()
        if not self._connack.wait(timeout) or self._refused is not None:
            self.stop()
            if self._refused is not None:
                raise MqttError(f"the MQTT broker {self.name} refused the connection: {refused_problem(self._refused)}")
            raise MqttError(f"cannot connect to the MQTT broker {self.name}: no answer (CONNACK) within {timeout:g} s; "
                            "is it an MQTT port (mqtts:// for a TLS one)?")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- publishing -------------------------------------------------------------------------
    def publish(self, topic: str, payload: str | bytes, retain: bool = True, qos: int = 1) -> int:
        """Hand one message to paho (QoS 1 messages survive a reconnect there); returns its mid."""
        return self.client.publish(topic, payload, qos=qos, retain=retain).mid

    def wait_acked(self, mids: list[int], timeout: float, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Wait until the broker has acknowledged every QoS 1 message in ``mids``; False on timeout or ``give_up()``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not all(m in self._acked for m in mids):
                left = deadline - time.monotonic()
                if left <= 0 or give_up():
                    return False
                self.changed.wait(min(left, 0.5))
            for m in mids:
                self._acked.remove(m)
        return True

    # -- paho's callbacks (its network thread) ----------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            if not self._connack.is_set():
                self._refused = reason
                self._connack.set()
            elif not self._lost_logged:
                self.log(f"mqtt: {self.name} refused the connection: {refused_problem(reason)}; retrying")
                self._lost_logged = True
            return
        self._ups += 1
        if self._ups > 1:
            self.log(f"mqtt: reconnected to {self.name}")
        self._lost_logged = False
        self.connected.set()
        try:
            self.on_up(self._ups == 1)  # before start() returns: subscriptions and announcements are asked for once
        finally:
            self._connack.set()
            with self.changed:
                self.changed.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        with self.changed:
            self.changed.notify_all()
        if was and not self._lost_logged and reason.is_failure:
            self.log(f"mqtt: lost the connection to {self.name} ({reason}); reconnecting in the background")
            self._lost_logged = True

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.on_message(message.topic, message.payload, bool(message.retain))
        except Exception as exc:  # a command that fails must not stop paho's thread
            self.log(f"mqtt: {message.topic}: {type(exc).__name__}: {exc}")

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self.changed:
            self._acked.append(mid)
            self.changed.notify_all()
