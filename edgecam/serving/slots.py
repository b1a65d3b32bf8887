"""Hand-over points between the camera loop and any number of web clients.

The loop only ever replaces the newest value (O(1), never blocks on a client); each client
thread waits for a value newer than the one it last sent, so a slow client skips values
instead of building a backlog or slowing the loop down.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator


class Latest:
    """The newest value and its sequence number (1, 2, ...; 0 = nothing published yet)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._seq = 0
        self._value: Any = None
        self.closed = False

    @property
    def seq(self) -> int:
        return self._seq

    def get(self) -> tuple[int, Any]:
        with self._cond:
            return self._seq, self._value

    def publish(self, value: Any) -> int:
        with self._cond:
            self._seq += 1
            self._value = value
            self._cond.notify_all()
            return self._seq

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, Any] | None:
        """The newest (seq, value) with seq > ``seen``; None on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen or self.closed, timeout)
            if self.closed or self._seq <= seen:
                return None
            return self._seq, self._value

    def close(self) -> None:
        """Wake every waiter for good (the server is stopping)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


@dataclass
class Viewer:
    """One open MJPEG stream: what it was sent and what it skipped because it was slower."""

    sent: int = 0
    skipped: int = 0


class FrameSlot(Latest):
    """The newest JPEG of the stream, plus who is watching (the loop encodes only if anyone is)."""

    def __init__(self):
        super().__init__()
        self._viewers: list[Viewer] = []
        self._lock = threading.Lock()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def viewer_stats(self) -> list[Viewer]:
        with self._lock:
            return list(self._viewers)

    @contextlib.contextmanager
    def watching(self, limit: int | None = None) -> Iterator[Viewer | None]:
        """A place among the viewers, or None when ``limit`` are watching (checked and taken in one step)."""
        viewer: Viewer | None = Viewer()
        with self._lock:
            if limit is not None and len(self._viewers) >= limit:
                viewer = None
            else:
                self._viewers.append(viewer)
        try:
            yield viewer
        finally:
            if viewer is not None:
                with self._lock:
                    self._viewers.remove(viewer)


class Places:
    """At most ``limit`` holders at once (e.g. event streams); taking a place is one step under a lock."""

    def __init__(self, limit: int):
        self.limit, self.taken = limit, 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self) -> Iterator[bool]:
        """True while holding a place; False (and nothing held) when all are taken."""
        with self._lock:
            got = self.taken < self.limit
            self.taken += got
        try:
            yield got
        finally:
            if got:
                with self._lock:
                    self.taken -= 1
