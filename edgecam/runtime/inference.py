"""The model's own thread: between capture and publishing, so the three overlap.

Capture decodes and prepares frame i+2, this thread runs the model on frame i+1, and the caller
decides and publishes frame i. With a fast model the per-frame Python around it (decisions, top
labels, JSON, outputs) would otherwise sit between two inferences: here it runs while the
interpreter works (which releases the GIL). What a ``Control`` asks for is applied on the right
side: pause and model reloads here, between two frames; a new threshold travels with the next
result to the decisions, which only the caller's thread touches.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from edgecam.config.camera import RunConfig
from edgecam.console import log
from edgecam.runtime.capture import Frame, FrameGrabber, frames
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.control import Control, ModelVersion
from edgecam.runtime.reload import Loaded, Reloader

AHEAD = 2  # inferred frames waiting for the caller: a slow output holds the model back, not memory


@dataclass
class Inferred:
    """One frame's model outputs, and what changed before it (applied by the decisions in order)."""

    frame: Frame
    classifier: Classifier  # the model that made these outputs
    probs: np.ndarray
    unknown: float | None
    inference_ms: float
    started: float  # perf_counter() when this frame's own work began (its tensor made, or inference)
    prepare_ms: float
    new_model: ModelVersion | None = None  # set on the first frame of a reloaded model
    threshold_asked: bool = False  # a threshold was asked for since the previous frame: ...
    threshold: float | None = None  # ... this one (None: cleared)


class InferenceThread:
    """Iterates ``Inferred`` for the frames of ``grabber`` until it ends, ``stop`` is set or
    ``cfg.max_frames`` were inferred; an error in the thread is raised to the iterating caller."""

    def __init__(self, classifier: Classifier, grabber: FrameGrabber, cfg: RunConfig, stop: threading.Event,
                 control: Control, reloader: Reloader | None = None):
        self.classifier, self.grabber, self.cfg = classifier, grabber, cfg
        self.control, self.reloader, self.stop = control, reloader, stop
        self._quit = threading.Event()  # the caller stopped iterating
        self._cores: set[int] | None = None  # pinned to these, when the model leaves cores to the rest
        self._out: queue.SimpleQueue = queue.SimpleQueue()  # C-fast; bounded by _space
        self._space = threading.Semaphore(AHEAD)
        self._paused = False
        self._threshold: tuple[bool, float | None] = (False, None)
        self._announce: ModelVersion | None = None
        grabber.prepare = classifier.prepare  # the capture thread makes the input tensors
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def __iter__(self) -> Iterator[Inferred]:
        split = split_cores(self.cfg.threads)
        capture = self.grabber.thread_id
        restore = _pin([None] + ([capture] if capture else []), split[1]) if split else None
        self._cores = split[0] if split else None
        self._thread.start()
        try:
            while True:
                item = self._out.get()
                self._space.release()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # also when the caller stops early: the thread sees it within a frame wait
            self._quit.set()
            self._thread.join()
            if restore:
                restore()

    # -- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        if self._cores:
            _pin([None], self._cores)
        ended: BaseException | None = None
        try:
            self._infer_all()
        except BaseException as exc:  # raised where the caller iterates
            ended = exc
        self._put(ended)

    def _put(self, item) -> bool:
        while not self._quit.is_set():
            if self._space.acquire(timeout=0.1):
                self._out.put(item)
                return True
        return False

    def _infer_all(self) -> None:
        stop, control, grabber = _Either(self.stop, self._quit), self.control, self.grabber
        inferred = 0
        for frame in frames(grabber, stop):
            self._between_frames(frame)
            if control.paused:
                if grabber.source.live:
                    continue  # read and let go: a live camera never backs up; nothing inferred or published
                if not control.wait_resumed(stop):  # a file waits where it is: no frame lost
                    return
                self._between_frames(frame)
            if not self._put(self._infer(frame)):
                return
            inferred += 1
            if self.cfg.max_frames and inferred >= self.cfg.max_frames:
                return

    def _between_frames(self, frame: Frame) -> None:
        if self.control.paused != self._paused:
            self._paused = self.control.paused
            log("paused: frames are read but not classified" if self._paused else "resumed")
        asked, value = self.control.take_threshold()
        if asked:
            self._threshold = (True, value)
            said = f"threshold {value:g}" if value is not None else "threshold cleared"
            log(f"{said}: {rule_text(self.classifier, value) or 'nothing is unknown'}")
        if self.reloader is not None:
            self.reloader.offer(frame.rgb)
            loaded = self.reloader.take()
            if loaded is not None:
                self._swap(loaded)

    def _swap(self, loaded: Loaded) -> None:
        self.classifier = loaded.classifier
        self.grabber.prepare = loaded.classifier.prepare  # its input tensors from now on
        self.control.model = self._announce = loaded.version
        log(f"model reloaded: {loaded.version.path} (sha256 {loaded.version.sha256[:12]})")

    def _infer(self, frame: Frame) -> Inferred:
        classifier = self.classifier
        started = time.perf_counter()
        if frame.tensor is not None and frame.prepared_with == classifier.prepare:
            tensor, prepare_ms = frame.tensor, frame.prepare_ms  # made in the capture thread
        else:  # no capture thread's tensor (or another model's): made here
            tensor, prepare_ms = classifier.prepare(frame.rgb), 0.0
        t_infer = time.perf_counter()
        probs, unknown = classifier.infer_all(tensor)
        item = Inferred(frame, classifier, probs, unknown, (time.perf_counter() - t_infer) * 1000, started,
                        prepare_ms, self._announce, *self._threshold)
        self._announce, self._threshold = None, (False, None)
        return item


def split_cores(threads: int) -> tuple[set[int], set[int]] | None:
    """(cores for the model, cores for the rest) when ``--threads`` leaves some cores free, else None.

    Then the model's thread keeps its own cores (and their caches: no thread migrates onto them
    mid-inference), while decoding, the decisions and the outputs share the others (Linux only).
    """
    if not threads or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if threads >= len(allowed):
        return None
    return set(allowed[-threads:]), set(allowed[:-threads])


def _pin(threads: list[int | None], cores: set[int]):
    """Pin threads (native ids; None: the calling thread) to ``cores``; returns a function restoring
    the calling thread's cores (None if not pinned)."""
    before = os.sched_getaffinity(0)
    for tid in threads:
        try:
            os.sched_setaffinity(0 if tid is None else tid, cores)
        except OSError:  # a thread that has ended, or a container that forbids it: not worth a failure
            pass
    return (lambda: os.sched_setaffinity(0, before)) if None in threads else None


class _Either:
    """Looks like one ``threading.Event`` to ``frames`` and ``wait_resumed``: set when either is."""

    def __init__(self, a: threading.Event, b: threading.Event):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0:
                break
            self.a.wait(left)
        return self.is_set()


def rule_text(classifier: Classifier, threshold: float | None) -> str | None:
    """When frames are called unknown under ``threshold`` (None: the model's rule; None if it has none)."""
    if threshold is not None:
        off = "; the model's calibrated rejection is off" if classifier.unknown_threshold is not None else ""
        return f"unknown below that top score{off}"
    if classifier.unknown_threshold is None:
        return None
    keep = classifier.unknown_keep
    calibrated = f"calibrated to keep {keep:.0%} of known images" if keep is not None else "calibrated"
    return f"unknown above {classifier.unknown_threshold:.4g} ({calibrated}; --threshold overrides)"
