"""The loop's MQTT Output and the thread that publishes for it.

``MqttOutput.write`` runs once per frame on the camera loop and never waits: it counts, keeps the
latest result, and on a label change appends it to a bounded queue (full: the oldest change is
dropped and counted, one log line per outage). The ``Publisher`` thread sends each change as
``state`` + ``attributes`` and waits for the broker's acknowledgements before the next one, so
changes arrive in order, also across a reconnect (paho re-sends the unacknowledged ones first).
After every (re)connect it says ``online``, announces to Home Assistant and, when no change is
waiting, re-publishes the last state; on close it delivers what is queued (a few seconds at
most), says ``offline`` and disconnects. Snapshots are encoded (JPEG) on this thread, not the
loop's; they are the newest picture, not a history: one waiting is replaced by a newer one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgecam.console import log as _log
from edgecam.mqtt import discovery
from edgecam.mqtt.client import Connection
from edgecam.mqtt.payloads import Counters, RunInfo, attributes, dumps, heartbeat
from edgecam.mqtt.settings import MqttSettings
from edgecam.mqtt.topics import OFFLINE, ONLINE
from edgecam.runtime.outputs import Output
from edgecam.runtime.result import Result

ACK_TIMEOUT = 10.0  # seconds to wait for one change's acknowledgements before looking again
DRAIN_TIMEOUT = 5.0  # on close: seconds to deliver what is still queued
OFFLINE_TIMEOUT = 2.0  # on close: seconds to wait for the broker to take ``offline``
JPEG_QUALITY = 85


class ChangeQueue:
    """Label changes waiting for the broker: bounded, oldest dropped first, drops counted."""

    def __init__(self, capacity: int, counters: Counters, log: Callable[[str], None] = _log):
        self.capacity, self.counters, self.log = capacity, counters, log
        self.items: deque[Result] = deque()
        self.cond = threading.Condition()
        self._dropping = False  # an outage's first drop was logged

    def put(self, result: Result) -> None:
        with self.cond:
            if len(self.items) >= self.capacity:
                self.items.popleft()
                self.counters.mqtt_dropped += 1
                if not self._dropping:
                    self._dropping = True
                    self.log(f"mqtt: the broker is not taking messages; dropping the oldest label changes "
                             f"(mqtt.queue: {self.capacity})")
            self.items.append(result)
            self.cond.notify_all()

    def peek(self) -> Result | None:
        with self.cond:
            return self.items[0] if self.items else None

    def done(self, result: Result) -> None:
        """``result`` (the oldest) has been delivered."""
        with self.cond:
            if self.items and self.items[0] is result:
                self.items.popleft()
            if not self.items and self._dropping:
                self._dropping = False
                self.log(f"mqtt: delivered the queued label changes; {self.counters.mqtt_dropped} dropped "
                         "in all so far")

    def __len__(self) -> int:
        return len(self.items)


class Publisher(threading.Thread):
    """Publishes queued changes, snapshots, heartbeats and announcements while connected."""

    def __init__(self, conn: Connection, settings: MqttSettings, info: RunInfo, counters: Counters,
                 log: Callable[[str], None] = _log):
        super().__init__(name="mqtt publisher", daemon=True)
        self.conn, self.settings, self.info, self.counters, self.log = conn, settings, info, counters, log
        self.topics = settings.topics
        self.changes = ChangeQueue(settings.queue, counters, log)
        self.wake = self.changes.cond
        self.announce_due = True  # set on every (re)connect and when Home Assistant comes back
        self.snapshot_frame: np.ndarray | None = None
        self.last: Result | None = None  # the last change delivered
        self.inflight = False  # a change handed to paho and not yet acknowledged ...
        self._mids: list[int] = []  # ... as these messages
        self.stopping = threading.Event()
        self._next_heartbeat = 0.0

    # -- what other threads call -------------------------------------------------------------
    def announce(self) -> None:
        with self.wake:
            self.announce_due = True
            self.wake.notify_all()

    def new_model(self, path: str, sha256: str) -> None:
        """A reloaded model: later messages name it, and Home Assistant hears of it (the device's model)."""
        with self.wake:
            self.info = replace(self.info, model=Path(path).name, model_sha256=sha256)
            self.announce_due = True
            self.wake.notify_all()

    def give_snapshot(self, bgr: np.ndarray) -> None:
        with self.wake:
            self.snapshot_frame = bgr.copy()
            self.wake.notify_all()

    def stop(self) -> None:
        self.stopping.set()
        with self.wake:
            self.wake.notify_all()
        if self.ident is not None:  # started
            self.join(timeout=DRAIN_TIMEOUT + OFFLINE_TIMEOUT + 5)

    # -- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self._wait_for_work()
                if self.conn.connected.is_set():
                    self._work()
            self._drain()
        except Exception as exc:  # keep the camera running without MQTT rather than crash it
            self.log(f"mqtt: publisher stopped ({type(exc).__name__}: {exc})")
        finally:
            self._goodbye()

    def _wait_for_work(self) -> None:
        with self.wake:
            if not self._has_work():
                timeout = max(0.05, self._next_heartbeat - time.monotonic())
                self.wake.wait(min(timeout, 1.0))

    def _has_work(self) -> bool:
        if self.stopping.is_set() or not self.conn.connected.is_set():
            return self.stopping.is_set()
        return (self.announce_due or len(self.changes) > 0 or self.snapshot_frame is not None
                or time.monotonic() >= self._next_heartbeat)

    def _work(self) -> None:
        if self.announce_due:
            self._announce()
        self._deliver_changes(stop_at=None)
        if self.snapshot_frame is not None:
            self._publish_snapshot()
        if time.monotonic() >= self._next_heartbeat:
            self._next_heartbeat = time.monotonic() + self.settings.heartbeat
            self.conn.publish(self.topics.heartbeat, dumps(heartbeat(self.counters, self.info)), qos=0)

    def _announce(self) -> None:
        with self.wake:
            self.announce_due = False
            nothing_waiting = not self.changes.items and not self.inflight
        self.conn.publish(self.topics.availability, ONLINE)
        for topic, payload in discovery.messages(self.topics, self.info, self.settings.snapshot):
            self.conn.publish(topic, payload)
        if nothing_waiting and self.last is not None:  # a restarted broker may have lost the retained state
            self._send_change(self.last)
        self._next_heartbeat = 0.0

    def _deliver_changes(self, stop_at: float | None) -> None:
        """Send queued changes one after the other, each acknowledged before the next."""
        while self.conn.connected.is_set():
            if stop_at is not None and time.monotonic() > stop_at:
                return
            result = self.changes.peek()
            if result is None:
                return
            if not self._send_change(result, stop_at):
                return  # connection lost: paho re-sends it after the reconnect, we wait for that
            self.changes.done(result)

    def _send_change(self, result: Result, stop_at: float | None = None) -> bool:
        """Publish one change, and wait for the broker to take it; False if it has not yet."""
        if not self.inflight:  # else: paho already holds it and re-sends it after a reconnect
            self._mids = [self.conn.publish(self.topics.state, result.label),
                          self.conn.publish(self.topics.attributes, dumps(attributes(result, self.info)))]
            self.inflight = True
        if stop_at is None:  # running: look up when the run ends (then _drain takes over)
            timeout, give_up = ACK_TIMEOUT, lambda: not self.conn.connected.is_set() or self.stopping.is_set()
        else:
            timeout, give_up = max(0.0, stop_at - time.monotonic()), lambda: not self.conn.connected.is_set()
        if not self.conn.wait_acked(self._mids, timeout, give_up=give_up):
            return False
        self.inflight = False
        self.last = result
        return True

    def _publish_snapshot(self) -> None:
        with self.wake:
            frame, self.snapshot_frame = self.snapshot_frame, None
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            self.conn.publish(self.topics.snapshot, jpeg.tobytes())

    def _drain(self) -> None:
        """On close: deliver what is queued, for a few seconds at most."""
        if self.conn.connected.is_set() and (len(self.changes) or self.inflight):
            self._deliver_changes(stop_at=time.monotonic() + DRAIN_TIMEOUT)
        if len(self.changes) or self.inflight:
            self.log(f"mqtt: {len(self.changes) + self.inflight} label changes were not delivered "
                     f"({self.conn.name} unreachable)")

    def _goodbye(self) -> None:
        """``offline`` (retained) while we can still say it; then disconnect, so the will is not sent too."""
        if self.conn.connected.is_set():
            mid = self.conn.publish(self.topics.availability, OFFLINE)
            self.conn.wait_acked([mid], OFFLINE_TIMEOUT, give_up=lambda: not self.conn.connected.is_set())
        self.conn.stop()


class MqttOutput(Output):
    """The camera loop's side: count, remember, queue changes; pixels only when a snapshot is owed.

    A snapshot goes out for each change (``mqtt.snapshot``: from the next frame that has pixels,
    when no other output asked for them on the change itself) and for each frame the loop marks
    ``Result.snapshot`` (``<prefix>/set/snapshot`` → ``Control.snapshot``).
    """

    def __init__(self, publisher: Publisher, snapshots: bool):
        self.publisher, self.counters, self.snapshots = publisher, publisher.counters, snapshots
        self._owed = False  # a change's snapshot, to take from the next frame that has pixels
        self._closed = False

    @property
    def wants_pixels(self) -> bool:
        return self._owed

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        counters = self.counters
        counters.frames += 1
        counters.latest = result
        if result.model_sha256 is not None:  # the first frame of a reloaded model
            self.publisher.new_model(result.model_path or "", result.model_sha256)
        if result.changed:
            counters.changes += 1
            self.publisher.changes.put(result)
            self._owed = self._owed or self.snapshots
        if annotated is not None and (self._owed or result.snapshot):
            self._owed = False
            self.publisher.give_snapshot(annotated)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.publisher.stop()
