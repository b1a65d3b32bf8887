"""Which frames ``--keep`` keeps: a reason, a rate limit per reason, and no near-duplicates.

All of it runs in the camera loop, so it is cheap: a frame without a reason costs a few
comparisons; the thumbnail of a near-duplicate check (tens of microseconds) is made only for a
frame that has a reason and fits its rate limits. Times are the frames' capture times (a video
file's own time: ``capture.FrameGrabber``), so the limits mean the same on a file as live.
"""

from __future__ import annotations

import collections
import random

import cv2
import numpy as np

from edgecam.config.camera import KeepConfig
from edgecam.runtime.decisions import UNKNOWN
from edgecam.runtime.result import Result

THUMBNAIL = 16  # near-duplicate signatures: THUMBNAIL x THUMBNAIL colour thumbnails
RECENT = 16  # ... compared with this many of the last frames kept for the same reason
WINDOWS = ((60.0, "per_minute"), (3600.0, "per_hour"))


class Reasons:
    """The reason (``KEEP_REASONS``, in that order) a frame is worth keeping for, or None.

    - ``unknown``: the decided label is unknown.
    - ``flip``: a new label was announced (``Result.changed``), other than the run's first.
    - ``disagree``: a known decided label, and the frame's own top label (before smoothing) is not it,
      or not the label announced last (the hold still shows the old one).
    - ``low_margin``: a known decided label, and the frame's top probability minus the second < ``margin``.
    - ``sample``: none of the above hold (a confident frame), drawn with probability ``sample``.

    A frame gets the first reason that holds and is in ``reasons``.
    """

    def __init__(self, cfg: KeepConfig):
        self.wanted = frozenset(cfg.reasons)
        self.margin, self.sample = cfg.margin, cfg.sample
        self.rng = random.Random(cfg.seed)
        self.announced: str | None = None  # the label announced last

    def of(self, result: Result) -> str | None:
        first = self.announced is None
        if result.changed:
            self.announced = result.label
        top = result.raw_top or result.top
        known = result.label != UNKNOWN
        own = top[0][0] if top else result.label
        holds = {
            "unknown": not known,
            "flip": result.changed and not first,
            "disagree": known and (own != result.label or self.announced not in (None, own)),
            "low_margin": known and len(top) > 1 and top[0][1] - top[1][1] < self.margin,
        }
        for reason, held in holds.items():
            if held and reason in self.wanted:
                return reason
        if "sample" in self.wanted and not any(holds.values()) and self.rng.random() < self.sample:
            return "sample"
        return None


class RateLimit:
    """At most ``per_minute`` and ``per_hour`` frames per reason in any sliding minute and hour."""

    def __init__(self, cfg: KeepConfig):
        self.limits = tuple((seconds, getattr(cfg, key)) for seconds, key in WINDOWS)
        self._taken: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def allows(self, reason: str, now: float) -> bool:
        taken = self._taken[reason]
        if taken and taken[-1] > now:  # the clock went back (a live camera's clock was set): start afresh
            taken.clear()
        longest = max(seconds for seconds, _ in self.limits)
        while taken and taken[0] <= now - longest:
            taken.popleft()
        return all(sum(1 for t in taken if t > now - seconds) < limit for seconds, limit in self.limits)

    def take(self, reason: str, now: float) -> None:
        self._taken[reason].append(now)


def signature(rgb: np.ndarray) -> np.ndarray:
    """A THUMBNAILxTHUMBNAIL colour thumbnail (int16), from about 64 columns of the frame: cheap on any size."""
    step = max(1, rgb.shape[1] // (4 * THUMBNAIL))
    small = np.ascontiguousarray(rgb[::step, ::step])
    return cv2.resize(small, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.int16)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two signatures, in levels (0..255)."""
    return float(np.abs(a - b).mean())


class Recent:
    """The signatures of the last RECENT frames kept per reason: is a new frame a near-duplicate?"""

    def __init__(self, min_change: float):
        self.min_change = min_change
        self._kept: dict[str, collections.deque[np.ndarray]] = collections.defaultdict(
            lambda: collections.deque(maxlen=RECENT))

    def near(self, reason: str, sig: np.ndarray) -> bool:
        return any(distance(sig, old) < self.min_change for old in self._kept[reason])

    def add(self, reason: str, sig: np.ndarray) -> None:
        self._kept[reason].append(sig)
