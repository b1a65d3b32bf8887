"""``edgecam run --keep DIR``: keep the frames that teach the model something, for review and retraining.

The ``Keeper`` is one more Output of the camera loop, one that gets the camera's own frame
(``wants_raw``): never the annotated one. Per frame it picks a reason (``select.Reasons``), checks
the reason's rate limits and that the frame is no near-duplicate of the last ones kept for it,
and hands the frame to a writer thread through a short queue; a full queue drops the frame
(counted, said once), so the loop never waits for the disk. The writer encodes the JPEG, writes
the pair (``store.Store``: atomic, the JPEG first) and keeps the folder within its quota.

The pair, a contract (the review page and ``finetune`` read it):

- ``<DIR>/<stem>.jpg``: the frame as captured (JPEG, ``keep.quality``), and ``<DIR>/<stem>.json``;
  ``stem`` = ``<YYYYmmdd-HHMMSS-mmm>_<reason>_<frame>`` (capture time in UTC). A pair is complete
  when its sidecar exists; hidden ``.<stem>.jpg.*.tmp`` / ``.<stem>.json.*.tmp`` names are writes in
  progress (or left by a killed run, removed at the next start).
- sidecar keys: ``time`` (capture time, seconds since the epoch), ``reason`` (unknown, flip,
  disagree, low_margin, sample), ``top`` (``[{label, score}]``: the frame's own top labels, before
  smoothing), ``label`` (the decided label), ``announced`` (the label announced last, or null),
  ``unknown_score`` (or null), ``model`` (file name), ``model_sha256``, ``source`` (its name, without
  credentials), ``frame`` (capture index), ``width``, ``height``, ``edgecam`` (version).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgecam import __version__
from edgecam.config.camera import KEEP_REASONS, KeepConfig
from edgecam.console import log as _log
from edgecam.errors import OutputError
from edgecam.runtime.control import ModelVersion
from edgecam.runtime.keeper.select import RateLimit, Reasons, Recent, signature
from edgecam.runtime.keeper.store import Store, stem_of
from edgecam.runtime.outputs import Output
from edgecam.runtime.result import Result

QUEUE_SIZE = 8  # frames that may wait for the writer
GRACE = 10.0  # seconds the writer gets at exit to write what waits
MB = 1_000_000
NICE = 19  # the writer thread's niceness (Linux): it takes CPU time the camera loop leaves


@dataclass(frozen=True)
class Job:
    reason: str
    result: Result
    rgb: np.ndarray  # a copy: the loop's frame is not ours to keep
    announced: str | None
    model: ModelVersion | None


def open_keeper(cfg: KeepConfig, source: str, model: ModelVersion | None,
                log: Callable[[str], None] = _log, live: bool = True) -> "Keeper":
    """Prepare ``cfg.dir`` (what an interrupted run left is removed, the quota applied) and start the writer.
    ``live``: a camera, which must not wait for the disk; a file can (nothing is dropped).

    Fails in one line (OutputError) when the folder cannot be made or written, before any frame is read.
    """
    store = Store(cfg.dir, int(cfg.quota_mb * MB))
    try:
        removed = store.open()
    except OSError as exc:
        raise OutputError(f"{cfg.dir}: cannot use as the keep folder ({exc.strerror or exc})") from None
    if not os.access(cfg.dir, os.W_OK | os.X_OK):
        raise OutputError(f"{cfg.dir}: cannot write in the keep folder (permission denied)")
    if removed:
        log(f"keep: removed {removed} incomplete file{'s' * (removed != 1)} from {cfg.dir} "
            "(left by an interrupted run)")
    evicted = store.evict()
    if evicted:
        log(f"keep: removed the {evicted} oldest pair{'s' * (evicted != 1)} from {cfg.dir} to fit its quota of "
            f"{cfg.quota_mb:g} MB")
    reasons = ", ".join(r for r in KEEP_REASONS if r in cfg.reasons) or "no reasons"
    log(f"keep: frames worth a second look go to {cfg.dir} ({reasons}; at most {cfg.per_minute}/min and "
        f"{cfg.per_hour}/h per reason; {len(store.pairs)} pairs there, {store.total / MB:.1f} of "
        f"{cfg.quota_mb:g} MB)")
    return Keeper(cfg, store, source, model, log, wait=not live)


class Keeper(Output):
    """Keeps frames (see the module's description); ``close()`` writes what waits and logs a summary."""

    wants_raw = True

    def __init__(self, cfg: KeepConfig, store: Store, source: str, model: ModelVersion | None,
                 log: Callable[[str], None] = _log, queue_size: int | None = None, wait: bool = False):
        self.cfg, self.store, self.source, self.model, self.log = cfg, store, source, model, log
        self.wait = wait  # a file's frames wait for the writer (what is kept then depends on the file alone)
        self.reasons, self.limits, self.recent = Reasons(cfg), RateLimit(cfg), Recent(cfg.min_change)
        self.kept: collections.Counter[str] = collections.Counter()
        self.dropped = self.failed = self.duplicates = self.limited = 0
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size or QUEUE_SIZE)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="keep", daemon=True)
        self._thread.start()

    # -- the loop's side: cheap, never waits ----------------------------------------------------
    def write_raw(self, result: Result, rgb: np.ndarray) -> None:
        if result.model_sha256 is not None:  # a reloaded model, from this frame on
            self.model = ModelVersion(result.model_path or "", result.model_sha256)
        reason = self.reasons.of(result)
        if reason is None:
            return
        if not self.limits.allows(reason, result.time):
            self.limited += 1
            return
        sig = signature(rgb) if self.cfg.min_change > 0 else None
        if sig is not None and self.recent.near(reason, sig):
            self.duplicates += 1
            return
        self.limits.take(reason, result.time)  # also when dropped below: a stalled disk is not retried at frame rate
        try:
            self._queue.put(Job(reason, result, rgb.copy(), self.reasons.announced, self.model), block=self.wait)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                self.log(f"keep: warning: {self._queue.maxsize} frames wait to be written: dropping frames to keep "
                         "the camera going (the count is given at the end)")
            return
        if sig is not None:  # a dropped frame's scene may be kept later
            self.recent.add(reason, sig)

    # -- the writer thread ---------------------------------------------------------------------
    def _work(self) -> None:
        _lower_priority()
        while (job := self._queue.get()) is not None:
            try:
                self._save(job)
            except Exception as exc:  # a full disk, a folder gone: said once, counted; the writer never dies
                self.failed += 1
                if self.failed == 1:
                    self.log(f"keep: warning: {exc}; frames are not kept while this lasts (counted at the end)")

    def _save(self, job: Job) -> None:
        bgr = cv2.cvtColor(job.rgb, cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.quality])
        if not ok:
            raise OutputError(f"frame {job.result.frame}: JPEG encoding failed")
        sidecar = json.dumps(sidecar_of(job, self.source), indent=1).encode("utf-8")
        self.store.save(stem_of(job.result.time, job.reason, job.result.frame), jpeg.tobytes(), sidecar)
        self.kept[job.reason] += 1
        self.store.evict()

    # -- the end -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=GRACE)
        except queue.Full:
            pass
        self._thread.join(GRACE)
        if self._thread.is_alive():
            self.log(f"keep: the disk is still busy after {GRACE:g} s; {self._queue.qsize()} waiting frames "
                     "are not kept")
        self.log(self.summary())

    def summary(self) -> str:
        per = ", ".join(f"{r} {self.kept[r]}" for r in KEEP_REASONS if self.kept[r]) or "none"
        return (f"keep: {sum(self.kept.values())} frames kept in {self.cfg.dir} ({per}); {self.dropped} dropped "
                f"(the writer was behind), {self.store.evicted} evicted (quota {self.cfg.quota_mb:g} MB), "
                f"{self.failed} not written; skipped {self.duplicates} near-duplicates and {self.limited} "
                "over the rate limits")


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19), so it writes when the camera loop leaves the
    CPU idle instead of taking a core from the interpreter's threads (which then wait for each other).

    Linux only: there a thread is a task of its own, and ``setpriority`` on its id concerns it alone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except OSError:  # not allowed (a container's policy): the writer runs at the loop's priority
        pass


def sidecar_of(job: Job, source: str) -> dict:
    """The JSON sidecar of a kept frame (the contract in the module's description)."""
    result, model = job.result, job.model
    height, width = job.rgb.shape[:2]
    return {
        "time": round(result.time, 3),
        "reason": job.reason,
        "top": [{"label": label, "score": round(float(score), 4)} for label, score in (result.raw_top or result.top)],
        "label": result.label,
        "announced": job.announced,
        "unknown_score": None if result.unknown_score is None else round(float(result.unknown_score), 4),
        "model": Path(model.path).name if model else None,
        "model_sha256": model.sha256 if model else None,
        "source": source,
        "frame": result.frame,
        "width": width,
        "height": height,
        "edgecam": __version__,
    }
