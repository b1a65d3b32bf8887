"""From per-frame probabilities to a steady answer: smoothing, an 'unknown' rule, and
label-change events that fire only once a new label has held for a while.

'unknown' comes from one of two rules, never both: the model's calibrated rejection (its
``unknown_score`` above the threshold stated in its metadata), or, when the user gives
--threshold (or the model has no calibrated score), the top probability below that threshold.
A softmax always sums to 1, so only the first can say "none of these" with confidence.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from edgecam.console import log

UNKNOWN = "unknown"


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
    """Runs the user's ``on_change`` command for each announced label, without waiting for it.

    As git runs hooks: ``/bin/sh -c COMMAND`` (so ``;``, ``>>`` and ``$VAR`` work), with the label
    and score as EDGECAM_LABEL / EDGECAM_SCORE in the environment (no quoting to get wrong),
    stdin from /dev/null and its output on our stderr: stdout stays for the JSON lines. A
    command still running from the last change is left to finish (that change is skipped).
    """

    def __init__(self, command: str):
        self.command = command
        self._running: subprocess.Popen | None = None

    def __call__(self, decision: Decision) -> None:
        if self._running is not None and self._running.poll() is None:
            return
        env = {**os.environ, "EDGECAM_LABEL": decision.label, "EDGECAM_SCORE": f"{decision.score:.4f}"}
        out = _stderr_fd()
        try:
            self._running = subprocess.Popen(["/bin/sh", "-c", self.command], env=env, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=out)
        except OSError as exc:
            log(f"warning: on_change command failed: {exc}")


def _stderr_fd() -> int:
    """The file descriptor behind ``sys.stderr`` (not always 2: the CLI moves native logs off it)."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without a file (tests)
        return 2
