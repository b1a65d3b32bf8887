"""Steering a running ``edgecam run`` from other threads: the threshold, pause, a snapshot, a reload.

The camera loop polls a ``Control`` between frames; anything else (the MQTT client's network
thread, a signal handler, a test) calls its methods. Nothing here blocks the caller:

- ``set_threshold(value)``: a number is the ``--threshold`` rule (top score below it is
  "unknown", the model's calibrated rejection off); None goes back to the model's calibrated rule.
- ``pause()`` / ``resume()``: while paused, frames are still read (a live camera never backs
  up; a file waits where it is) but nothing is inferred or published.
- ``snapshot()``: the next processed frame is drawn (``annotated``) even if no output shows
  pixels, and its ``Result`` has ``snapshot=True``: an output that sees it can save or send it.
- ``request_reload(reason)``: load the model file again (checked in the background, swapped
  between two frames). Safe to call from a signal handler (SIGHUP).

``model`` tells which model file is running (path and SHA-256), for status pages.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass

_UNSET = object()


@dataclass(frozen=True)
class ModelVersion:
    path: str
    sha256: str  # hex digest of the file's bytes as loaded


class Control:
    """Thread-safe requests to the camera loop (see the module's description)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threshold = _UNSET  # a requested rule not yet taken by the loop
        self._snapshot = False
        self._running = threading.Event()
        self._running.set()
        self._reloads: queue.SimpleQueue = queue.SimpleQueue()  # reentrant: fine in a signal handler
        self.model: ModelVersion | None = None  # the model running now (set by the loop)

    # -- callers ----------------------------------------------------------------------------
    def set_threshold(self, value: float | None) -> None:
        """A number in [0, 1]: the ``--threshold`` rule; None: the model's calibrated rule. ValueError otherwise."""
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold must be a number in [0, 1] or None, got {value!r}")
            value = float(value)
        with self._lock:
            self._threshold = value

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def snapshot(self) -> None:
        with self._lock:
            self._snapshot = True

    def request_reload(self, reason: str = "requested") -> None:
        self._reloads.put(str(reason))

    # -- the loop's side --------------------------------------------------------------------
    def take_threshold(self):
        """The rule asked for since the last call: (True, value or None), or (False, None) if none was."""
        with self._lock:
            value, self._threshold = self._threshold, _UNSET
        return (False, None) if value is _UNSET else (True, value)

    def take_snapshot(self) -> bool:
        with self._lock:
            asked, self._snapshot = self._snapshot, False
        return asked

    def next_reload(self, timeout: float) -> str | None:
        """The reason of the next reload request, waiting up to ``timeout`` seconds (None if none came)."""
        try:
            return self._reloads.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_resumed(self, stop: threading.Event, poll: float = 0.1) -> bool:
        """Wait while paused; False if ``stop`` was set first."""
        while not self._running.wait(poll):
            if stop.is_set():
                return False
        return not stop.is_set()
