"""What ``edgecam run --mqtt URL`` adds to the camera loop: one more Output, built once the model is open.

``mqtt_outputs(cfg)`` checks the ``mqtt`` section at once (password file, TLS files) and returns
the loop's ``extra_outputs`` hook; the hook connects (a one-line error when the broker cannot be
had), starts the publisher and hands the loop its ``MqttOutput``. The loop closes that output on
the way out, whatever the reason, which delivers what is queued and says ``offline``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from edgecam.config.camera import RunConfig
from edgecam.console import log as _log
from edgecam.mqtt.client import Connection
from edgecam.mqtt.commands import Commands, Control
from edgecam.mqtt.payloads import Counters, RunInfo
from edgecam.mqtt.publisher import MqttOutput, Publisher
from edgecam.mqtt.settings import MqttSettings, resolve
from edgecam.mqtt.topics import ONLINE
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.outputs import Output
from edgecam.runtime.sources import Source


def mqtt_outputs(cfg: RunConfig, control: Control | None = None,
                 log: Callable[[str], None] = _log) -> Callable[[Classifier, Source], list[Output]]:
    """The loop's ``extra_outputs`` hook for ``cfg.mqtt``; ``control`` takes the ``<prefix>/set/...`` commands."""
    settings = resolve(cfg.mqtt)

    def outputs(classifier: Classifier, source: Source) -> list[Output]:
        for warning in settings.warnings:
            log(warning)
        version = getattr(control, "model", None)  # the loop has hashed the model it loaded
        info = (RunInfo(Path(version.path).name, version.sha256, settings.device) if version
                else RunInfo.of(cfg.model, settings.device))
        return [start(settings, info, control, log)]

    return outputs


def start(settings: MqttSettings, info: RunInfo, control: Control | None = None,
          log: Callable[[str], None] = _log) -> MqttOutput:
    """Connect (MqttError when that fails), start publishing; the returned Output's ``close()`` ends it."""
    conn = Connection(settings, log)
    publisher = Publisher(conn, settings, info, Counters(started=time.monotonic()), log)
    output = MqttOutput(publisher, settings.snapshot)
    commands = Commands(settings.topics, control, log=log)
    topics = settings.topics

    def on_up(first: bool) -> None:  # paho's thread, after every accepted CONNACK
        subscriptions = [(topics.commands, 1)] + ([(topics.ha_status, 1)] if topics.ha_status else [])
        conn.client.subscribe(subscriptions)
        publisher.announce()

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        if topic == topics.ha_status:
            if payload.strip().lower() == ONLINE.encode():
                publisher.announce()  # Home Assistant (re)started: it wants the discovery configs again
            return
        commands.handle(topic, payload, retained)

    conn.on_up, conn.on_message = on_up, on_message
    conn.start()
    publisher.start()
    discovery = f", Home Assistant discovery under {topics.discovery_prefix}/" if topics.discovery_prefix else ""
    log(f"mqtt: connected to {conn.name} as {settings.client_id}; publishing to {topics.prefix}/{discovery}")
    return output
