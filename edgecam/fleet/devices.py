"""What the broker says about each device, from its four retained topics: ``Fleet.update`` per message.

Topics under ``<prefix>/<device>/``: ``availability`` (``online`` / ``offline``, the broker
publishes ``offline`` as the device's last will), ``state`` (the decided label), ``attributes``
(JSON: label, score, FPS, model, ...) and ``heartbeat`` (JSON every few seconds: time, FPS,
frame counters, ...). Anything else is ignored. Messages come from the network: a payload that
is not what the contract says is counted in ``ignored`` and changes nothing (a field of the
wrong type is dropped, the rest of its message kept), and an empty payload clears that topic,
as MQTT clears a retained message.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field

TOPICS = ("availability", "state", "attributes", "heartbeat")
MAX_PAYLOAD = 64 * 1024  # bytes; a larger attributes or heartbeat message is not one of ours
MAX_DEVICES = 10_000  # more device names than this on one prefix: the rest are ignored
_NUMBER, _TEXT = "number", "text"
# The JSON fields kept, with their type: the rest of a message is ignored.
FIELDS = {
    "label": _TEXT, "score": _NUMBER, "unknown_score": _NUMBER, "fps": _NUMBER, "inference_ms": _NUMBER,
    "model": _TEXT, "model_sha256": _TEXT, "version": _TEXT, "time": _NUMBER, "frame_time": _NUMBER,
    "frames": _NUMBER, "changes": _NUMBER, "dropped_frames": _NUMBER, "mqtt_dropped": _NUMBER, "uptime_s": _NUMBER,
}
# What a snapshot shows of each device, in order (besides device, status and last_seen_s).
SHOWN = ("label", "score", "fps", "inference_ms", "model", "model_sha256", "version", "frames", "changes",
         "dropped_frames", "mqtt_dropped", "uptime_s")


class Malformed(ValueError):
    """A message that does not follow the topic contract."""


@dataclass
class Device:
    name: str
    availability: str | None = None  # "online", "offline", or None before the first message
    state: str | None = None  # the retained decided label
    attributes: dict = field(default_factory=dict)
    heartbeat: dict = field(default_factory=dict)
    live_seen: float | None = None  # wall-clock time of the last message that was not a retained one

    def empty(self) -> bool:
        return self.availability is None and self.state is None and not self.attributes and not self.heartbeat

    def fields(self) -> dict:
        """The newest value of every field: attributes and heartbeat merged by their own time stamps."""
        older, newer = self.attributes, self.heartbeat
        if self.attributes.get("frame_time", -math.inf) > self.heartbeat.get("time", -math.inf):
            older, newer = newer, older
        merged = {**older, **newer}
        if self.state is not None:
            merged["label"] = self.state
        return merged

    def last_seen(self) -> float | None:
        """When the device last said something (epoch seconds), from heartbeats and live messages.

        A retained message's arrival says nothing about when it was published; a heartbeat carries
        its time. A frame time is only used when nothing else is known (a video file's frames
        can be timed ahead of the clock).
        """
        times = [t for t in (self.live_seen, self.heartbeat.get("time")) if t is not None]
        if not times and "frame_time" in self.attributes:
            times = [self.attributes["frame_time"]]
        return max(times) if times else None

    def snapshot(self, now: float) -> dict:
        values = self.fields()
        seen = self.last_seen()
        return {"device": self.name, "status": self.availability,
                **{key: values.get(key) for key in SHOWN},
                "last_seen_s": None if seen is None else round(max(0.0, now - seen), 1)}


def parse_json(payload: bytes) -> tuple[dict, list[str]]:
    """The known fields of a JSON object payload that have the right type, and the names of those that do not.

    Raises Malformed when nothing in it is usable.
    """
    if len(payload) > MAX_PAYLOAD:
        raise Malformed(f"{len(payload)} bytes")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Malformed(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Malformed("not a JSON object")
    kept, wrong = {}, []
    for key, kind in FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if _typed(value, kind):
            kept[key] = value
        else:
            wrong.append(key)
    if not kept:
        raise Malformed(f"wrong types: {', '.join(wrong)}" if wrong else "none of the known fields")
    return kept, wrong


def _typed(value, kind: str) -> bool:
    if kind == _TEXT:
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_text(payload: bytes, allowed: tuple[str, ...] | None = None) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise Malformed(f"{len(payload)} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Malformed("not UTF-8") from None
    if not text:
        raise Malformed("blank")
    if allowed is not None and text not in allowed:
        raise Malformed(f"{text[:40]!r} is not one of {', '.join(allowed)}")
    return text


class Fleet:
    """Every device seen under one prefix; thread-safe (the MQTT thread updates, the display reads)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.devices: dict[str, Device] = {}
        self.ignored = 0  # malformed messages (and devices beyond MAX_DEVICES)
        self.lock = threading.Lock()
        self._unconfirmed: set[tuple[str, str]] | None = None  # see resync()

    def split(self, topic: str) -> tuple[str, str] | None:
        """(device, kind) of ``<prefix>/<device>/<kind>``; None for any other topic."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        device, _, kind = topic[len(head):].partition("/")
        return (device, kind) if device and kind in TOPICS else None

    def update(self, topic: str, payload: bytes, retained: bool, now: float | None = None) -> bool:
        """Take one message; True when it changed something."""
        where = self.split(topic)
        if where is None:
            return False
        name, kind = where
        with self.lock:
            device = self.devices.get(name)
            if device is None:
                if not payload:
                    return False
                if len(self.devices) >= MAX_DEVICES:
                    self.ignored += 1
                    return True
                device = self.devices[name] = Device(name)
            if self._unconfirmed is not None:
                self._unconfirmed.discard((name, kind))
            try:
                self._apply(device, kind, payload)
            except Malformed:
                self.ignored += 1
            else:
                # "offline" may be the broker speaking for a dead device (its last will).
                if not retained and payload and not (kind == "availability" and device.availability == "offline"):
                    device.live_seen = time.time() if now is None else now
            if device.empty():
                del self.devices[name]
            return True

    def _apply(self, device: Device, kind: str, payload: bytes) -> None:
        if kind == "availability":
            device.availability = parse_text(payload, ("online", "offline")) if payload else None
        elif kind == "state":
            device.state = parse_text(payload) if payload else None
        else:
            values, wrong = parse_json(payload) if payload else ({}, [])
            setattr(device, kind, values)
            if wrong:
                self.ignored += 1  # counted, its well-typed fields kept

    def resync(self) -> None:
        """Before subscribing again (a reconnect): what the broker does not send again is gone from it."""
        with self.lock:
            self._unconfirmed = {(name, kind) for name, device in self.devices.items() for kind in TOPICS
                                 if getattr(device, kind) not in (None, {})}

    def resynced(self) -> None:
        """The broker has sent its retained messages again: forget what it no longer holds."""
        with self.lock:
            for name, kind in self._unconfirmed or ():
                device = self.devices.get(name)
                if device is not None:
                    setattr(device, kind, {} if kind in ("attributes", "heartbeat") else None)
                    if device.empty():
                        del self.devices[name]
            self._unconfirmed = None

    def snapshot(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        with self.lock:
            devices = [self.devices[name].snapshot(now) for name in sorted(self.devices)]
            return {"prefix": self.prefix, "devices": devices, "ignored": self.ignored}
