"""Capture in its own thread, so decoding and camera waits overlap with inference.

Live sources keep only the newest frame: a slow model sees the present, not a growing
backlog (the older frames are counted as dropped). Files and image folders lose nothing: a
short queue keeps the decoder one step ahead. A live source that fails is reopened with
back-off while the main loop keeps running, for as long as it takes once it has delivered a
frame; one that never has gives up after ``NEVER_DELIVERED_TRIES`` reopen attempts, and a source
that ends without a single frame is an error (``frames`` raises it). ``frames`` is the loop both
camera commands (``run`` and ``collect``) iterate.

Given ``prepare`` (the model's crop/resize), the capture thread also makes each frame's input
tensor: with a fast model that work would otherwise sit between two inferences on the loop's
thread; here it overlaps with the previous frame's inference. (A live frame that a newer one
replaces was prepared for nothing: a crop/resize costs a fraction of the frame's decoding.)
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from edgecam.console import log as _log
from edgecam.runtime.sources import Source, SourceError

BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
NEVER_DELIVERED_TRIES = 3  # reopen attempts for a live source that has not given a single frame


@dataclass(frozen=True)
class Frame:
    index: int  # capture order, counting dropped frames
    time: float  # time.time() when captured; for a file: its start plus the frame's place in the video
    rgb: np.ndarray
    tensor: np.ndarray | None = None  # the model's input made from rgb by ``prepared_with``, if it was
    prepared_with: Callable[[np.ndarray], np.ndarray] | None = None
    prepare_ms: float = 0.0  # how long making ``tensor`` took


Prepare = Callable[[np.ndarray], np.ndarray]
# Stands in the queue for the end of a file, so the loop learns it at once instead of after a get() timeout.
_END = None


class FrameGrabber:
    """Runs ``source.read()`` in a daemon thread; ``get()`` returns the next frame to process.

    ``prepare`` (settable while running: a reloaded model brings its own) is applied to each frame
    in that thread; a frame it fails on is handed out without a tensor (the loop prepares it again
    and meets the error itself).
    """

    def __init__(self, source: Source, reconnect: bool = True, log=None, queue_size: int = 4,
                 prepare: Prepare | None = None):
        self.source = source
        self.prepare = prepare
        self.reconnect = reconnect and source.live
        self.log = log or _log
        self.captured = self.dropped = self.reconnects = 0
        self.error: SourceError | None = None  # why the source ended, if it never gave a frame
        self._blind_tries = 0  # reopen attempts made before the first frame
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._newest: Frame | None = None
        # Files: frames in order, at most ``queue_size`` waiting or taken but not yet given back to
        # ``_space``. Places are given back ``_batch`` at a time: waking the capture thread costs
        # tens of microseconds, which a fast model would otherwise pay on every frame.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._space = threading.Semaphore(queue_size)
        self._batch, self._taken = max(1, queue_size // 2), 0
        self._thread = threading.Thread(target=self._run, name=f"capture {source.name}", daemon=True)

    def start(self) -> "FrameGrabber":
        self._thread.start()
        return self

    def stop(self) -> None:
        """End capture and close the source (also what leaving a ``with`` block does)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(timeout=5)
        self.source.close()

    def __enter__(self) -> "FrameGrabber":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- producer -------------------------------------------------------------------------
    def _clock(self):
        """Frame times: the wall clock for live sources; for a file with a frame rate, the video's
        own time from the moment it started, so hold times mean the same however fast it decodes."""
        fps, start = (None if self.source.live else self.source.fps), time.time()
        if not fps:
            return lambda: time.time()
        return lambda: start + self.captured / fps

    def _run(self) -> None:
        clock = self._clock()
        try:
            while not self._stop.is_set():
                rgb = self.source.read()
                if rgb is None:
                    if self.reconnect and self._reopen():
                        continue
                    if not self.captured and not self.error and not self._stop.is_set():
                        self.error = SourceError(f"{self.source.name}: no frame could be read")
                    break
                self._publish(self._frame(rgb, clock()))
                self.captured += 1
        finally:
            self.finished.set()
            with self._lock:
                self._lock.notify_all()
            if not self.source.live:
                self._publish(_END)

    def _frame(self, rgb: np.ndarray, now: float) -> Frame:
        prepare = self.prepare
        if prepare is None:
            return Frame(self.captured, now, rgb)
        start = time.perf_counter()
        try:
            tensor = prepare(rgb)
        except Exception:  # the loop prepares this frame itself and reports the error there
            return Frame(self.captured, now, rgb)
        return Frame(self.captured, now, rgb, tensor, prepare, (time.perf_counter() - start) * 1000)

    def _publish(self, frame: Frame | None) -> None:
        if self.source.live:
            with self._lock:
                if self._newest is not None:
                    self.dropped += 1  # never processed: a newer frame replaces it
                self._newest = frame
                self._lock.notify_all()
            return
        while not self._stop.is_set():
            if self._space.acquire(timeout=0.2):
                self._queue.put(frame)
                return

    def _reopen(self) -> bool:
        """Reopen a failed live source with growing pauses; False once stopped or given up."""
        if self._gave_up():
            return False
        self.log(f"{self.source.name}: no frames, reopening")
        self.source.close()
        attempt = 0
        while not self._stop.is_set():
            delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            if self._stop.wait(delay) or self._gave_up():
                return False
            self._blind_tries += not self.captured
            try:
                self.source.open()
            except SourceError as exc:
                attempt += 1
                self.log(f"{exc}; retrying in {BACKOFF[min(attempt, len(BACKOFF) - 1)]:.1f} s")
                continue
            self.reconnects += 1
            self.log(f"{self.source.name}: reopened")
            return True
        return False

    def _gave_up(self) -> bool:
        """True (and ``error`` set) once a source that never gave a frame has had its tries."""
        if self.captured or self._blind_tries < NEVER_DELIVERED_TRIES:
            return False
        self.error = SourceError(f"{self.source.name}: no frames after {self._blind_tries} reopen attempts")
        return True

    # -- consumer -------------------------------------------------------------------------
    def get(self, timeout: float = 0.5) -> Frame | None:
        """The next frame, or None after ``timeout`` or at the end (check ``done`` to tell the end from a wait)."""
        if not self.source.live:
            if self.done:  # the end marker was taken already
                return None
            try:
                frame = self._queue.get(timeout=timeout)  # _END (None) once the file has ended
            except queue.Empty:
                return None
            self._taken += 1
            if self._taken >= self._batch:  # never all places held back: no wait on an empty queue
                self._space.release(self._taken)
                self._taken = 0
            return frame
        with self._lock:
            if self._newest is None and not self.finished.is_set():
                self._lock.wait(timeout)
            frame, self._newest = self._newest, None
            return frame

    @property
    def thread_id(self) -> int | None:
        """The capture thread's native id (None before it starts)."""
        return self._thread.native_id

    @property
    def done(self) -> bool:
        """True when the source has ended and every frame has been handed out."""
        return self.finished.is_set() and self._newest is None and self._queue.empty()


def frames(grabber: FrameGrabber, stop: threading.Event, limit: int = 0, pace: float = 0.0) -> Iterator[Frame]:
    """The frames to process, until the source ends, ``stop`` is set or ``limit`` (if > 0) were given.

    Raises the grabber's ``error`` (a SourceError) when the source ended without a single frame.

    ``pace`` (seconds) spaces frames out for a consumer that should see a file play at its own
    rate instead of as fast as it decodes (``collect``'s preview).
    """
    given, last = 0, 0.0
    while not stop.is_set() and not (limit and given >= limit):
        frame = grabber.get(timeout=0.5)
        if frame is None:
            if grabber.done:
                if grabber.error:
                    raise grabber.error
                return
            continue
        if pace and given and stop.wait(max(0.0, last + pace - time.perf_counter())):
            return
        last = time.perf_counter()
        given += 1
        yield frame
