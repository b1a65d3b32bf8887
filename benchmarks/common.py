"""Pieces the benchmark scripts share: CPU time of a child process, and medians of paired rounds."""

from __future__ import annotations

import os
import statistics


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a running process, all its threads (clock-tick resolution)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paired_medians(rows: list[dict], base: list[dict]) -> tuple[float, float, float, float]:
    """(FPS, FPS ratio, CPU ms per frame, CPU ratio): medians over rounds, ratios taken round by round
    against the baseline run of the same round (so a noisy machine affects both sides alike)."""
    return (statistics.median(r["fps"] for r in rows), statistics.median(r["fps"] / b["fps"] for r, b in zip(rows, base)),
            statistics.median(r["cpu_ms"] for r in rows),
            statistics.median(r["cpu_ms"] / b["cpu_ms"] for r, b in zip(rows, base)))
