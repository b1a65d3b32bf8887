"""Frame-rate and latency figures: a sliding-window FPS for the overlay, totals for the summary."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class SlidingFPS:
    """Frames per second over the last ``window`` frames: steady to read, quick to follow changes."""

    def __init__(self, window: int = 30):
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float | None = None) -> float:
        self._times.append(time.perf_counter() if now is None else now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class RunStats:
    """What the exit summary reports: frames, dropped frames, FPS and latency percentiles."""

    def __init__(self):
        self.latencies_ms: list[float] = []
        self.started = time.perf_counter()
        self.first_result: float | None = None
        self.last_result = 0.0

    def add(self, latency_ms: float) -> None:
        self.last_result = time.perf_counter()
        if self.first_result is None:
            self.first_result = self.last_result
        self.latencies_ms.append(latency_ms)

    def summary(self, dropped: int = 0, reconnects: int = 0) -> dict:
        frames = len(self.latencies_ms)
        elapsed = self.last_result - (self.first_result or self.last_result)
        lat = np.asarray(self.latencies_ms or [0.0])
        return {
            "frames": frames,
            "dropped": dropped,
            "reconnects": reconnects,
            "mean_fps": round((frames - 1) / elapsed, 2) if frames > 1 and elapsed > 0 else 0.0,
            "latency_ms": {
                "mean": round(float(lat.mean()), 2),
                "p50": round(float(np.percentile(lat, 50)), 2),
                "p90": round(float(np.percentile(lat, 90)), 2),
            },
        }


def summary_line(summary: dict) -> str:
    lat = summary["latency_ms"]
    return (f"{summary['frames']} frames, {summary['dropped']} dropped, {summary['mean_fps']:.1f} FPS; "
            f"latency mean {lat['mean']:.1f} ms, p50 {lat['p50']:.1f}, p90 {lat['p90']:.1f}"
            + (f"; {summary['reconnects']} reconnects" if summary["reconnects"] else ""))
