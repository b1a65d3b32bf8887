"""From per-frame probabilities to a steady answer: smoothing, an 'unknown' rule, and
label-change events that fire only once a new label has held for a while.

'unknown' comes from one of two rules, never both: the model's calibrated rejection (its
``unknown_score`` above the threshold stated in its metadata), or, when the user gives
--threshold (or the model has no calibrated score), the top probability below that threshold.
A softmax always sums to 1, so only the first can say "none of these" with confidence.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from edgecam.console import log

UNKNOWN = "unknown"
QUEUE_SIZE = 32  # label changes that may wait for the on_change command
GRACE = 2.0  # seconds the on_change queue gets to finish when the run ends


@dataclass(frozen=True)
class Decision:
    label: str  # the top label, or "unknown" (rejected by the model, or below the threshold)
    score: float  # the top (smoothed) probability
    changed: bool  # True on the frame where a new stable label is announced
    unknown_score: float | None = None  # the (smoothed) unknown score, for models that have one


class Decider:
    """Exponential moving average over frames, the 'unknown' rule, and a hold time for changes.

    ``smoothing`` is the weight of the past (0 = off, 0.8 = slow and steady); ``threshold`` is the
    lowest top probability that names a label; ``unknown_threshold`` (the model's calibrated one,
    or None) rejects frames whose unknown score is above it; ``hold`` is how long (seconds) a
    label must stay on top before a change is announced.
    """

    def __init__(self, labels, smoothing: float = 0.0, threshold: float = 0.0, hold: float = 0.0,
                 unknown_threshold: float | None = None):
        self.labels, self.smoothing, self.threshold, self.hold = tuple(labels), smoothing, threshold, hold
        self.unknown_threshold = unknown_threshold
        self._avg: np.ndarray | None = None
        self._unknown_avg: float | None = None
        self.stable: str | None = None
        self._candidate: str | None = None
        self._since = 0.0

    def new_model(self, labels) -> None:
        """Another model's scores from now on (the same labels, maybe in another order): the averages
        start afresh, the announced label stays (so an equal model announces nothing new)."""
        self.labels = tuple(labels)
        self._avg, self._unknown_avg = None, None

    def smooth(self, probs: np.ndarray) -> np.ndarray:
        if self.smoothing <= 0 or self._avg is None:
            self._avg = probs.astype(np.float32)
        else:
            self._avg = self.smoothing * self._avg + (1.0 - self.smoothing) * probs
        return self._avg

    def smooth_unknown(self, score: float | None) -> float | None:
        """The same moving average as ``smooth``, for the model's unknown score (None stays None)."""
        if score is None:
            return None
        if self.smoothing <= 0 or self._unknown_avg is None:
            self._unknown_avg = float(score)
        else:
            self._unknown_avg = self.smoothing * self._unknown_avg + (1.0 - self.smoothing) * float(score)
        return self._unknown_avg

    def decide(self, probs: np.ndarray, now: float, unknown_score: float | None = None) -> Decision:
        best = int(np.argmax(probs))
        score = float(probs[best])
        rejected = (self.unknown_threshold is not None and unknown_score is not None
                    and unknown_score > self.unknown_threshold)
        label = UNKNOWN if rejected or score < self.threshold else self.labels[best]
        if label != self._candidate:
            self._candidate, self._since = label, now
        changed = label != self.stable and now - self._since >= self.hold
        if changed:
            self.stable = label
        return Decision(label, score, changed, unknown_score)


class ChangeCommand:
    """Runs the user's ``on_change`` command for each announced label: in order, one at a time, none lost.

    As git runs hooks: ``/bin/sh -c COMMAND`` (so ``;``, ``>>`` and ``$VAR`` work), with the label
    and score as EDGECAM_LABEL / EDGECAM_SCORE in the environment (no quoting to get wrong),
    stdin from /dev/null and its output on our stderr: stdout stays for the JSON lines.

    A worker thread runs the commands, so the camera loop never waits for one. Changes that come
    while a command runs wait in a queue of ``size`` (a slow command delays the next, it does not
    lose it); when commands cannot keep up and the queue is full, the oldest waiting change is
    dropped (said once, counted in ``dropped``). ``close()`` gives the queue ``grace`` seconds to
    finish, then says how many changes were not run; a command still running then is left to finish.
    """

    def __init__(self, command: str, size: int = QUEUE_SIZE, grace: float = GRACE):
        self.command, self.size, self.grace = command, max(1, size), grace
        self.dropped = self.ran = 0
        self._queue: collections.deque[dict] = collections.deque()
        self._cond = threading.Condition()
        self._deadline: float | None = None  # set by close(): no command starts after it
        self._thread = threading.Thread(target=self._work, name="on_change", daemon=True)
        self._thread.start()

    def __call__(self, decision: Decision) -> None:
        env = {**os.environ, "EDGECAM_LABEL": decision.label, "EDGECAM_SCORE": f"{decision.score:.4f}"}
        with self._cond:
            if self._deadline is not None:
                return
            if len(self._queue) >= self.size:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1:
                    log(f"warning: on_change: {self.size} changes wait for the command: dropping the oldest "
                        "(the command is slower than the label changes; the count is given at the end)")
            self._queue.append(env)
            self._cond.notify()

    @property
    def waiting(self) -> int:
        """Changes queued behind the running command."""
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        """Stop taking changes; run what waits for up to ``grace`` seconds; say what was not run."""
        with self._cond:
            self._deadline = time.monotonic() + self.grace
            self._cond.notify()
        self._thread.join(self.grace)
        with self._cond:
            not_run = len(self._queue)
            self._queue.clear()
        if self._thread.is_alive():
            log(f"on_change: a command still runs after {self.grace:g} s; left to finish")
        if not_run or self.dropped:
            log(f"on_change: {self.ran} commands run, {not_run} changes not run (the run ended), "
                f"{self.dropped} dropped (queue full)")

    def _next(self) -> dict | None:
        """The next change's environment, waiting for one; None once closed (and the grace is over or nothing waits)."""
        with self._cond:
            while not self._queue and self._deadline is None:
                self._cond.wait()
            if self._deadline is not None and (not self._queue or time.monotonic() >= self._deadline):
                return None
            return self._queue.popleft()

    def _work(self) -> None:
        while (env := self._next()) is not None:
            out = _stderr_fd()
            try:
                subprocess.run(["/bin/sh", "-c", self.command], env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=out)
                self.ran += 1
            except OSError as exc:
                log(f"warning: on_change command failed: {exc}")


def _stderr_fd() -> int:
    """The file descriptor behind ``sys.stderr`` (not always 2: the CLI moves native logs off it)."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without a file (tests)
        return 2
