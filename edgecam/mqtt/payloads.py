"""The JSON published on ``<prefix>/attributes`` and ``<prefix>/heartbeat`` (part of the topic contract)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgecam import __version__
from edgecam.runtime.result import Result


@dataclass(frozen=True)
class RunInfo:
    """What every message says about where it comes from."""

    model: str  # the model's file name
    model_sha256: str
    device: str
    version: str = __version__

    @classmethod
    def of(cls, model_path: str, device: str) -> "RunInfo":
        return cls(Path(model_path).name, file_sha256(model_path), device)

    def fields(self) -> dict:
        return {"model": self.model, "model_sha256": self.model_sha256, "device": self.device,
                "version": self.version}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def attributes(result: Result, info: RunInfo) -> dict:
    """The change's details: label, score, top labels, unknown score, speed, model and device."""
    return {
        "label": result.label,
        "score": round(result.score, 4),
        "top": [{"label": label, "score": round(score, 4)} for label, score in result.top],
        "unknown_score": None if result.unknown_score is None else round(result.unknown_score, 4),
        "fps": round(result.fps, 2),
        "inference_ms": round(result.inference_ms, 2),
        "model": info.model,
        "model_sha256": info.model_sha256,
        "frame_time": round(result.time, 3),
        "device": info.device,
        "version": info.version,
    }


@dataclass
class Counters:
    """What the loop's side counts (written by the loop thread only, read by the publisher)."""

    started: float  # time.monotonic() at start
    frames: int = 0
    changes: int = 0
    mqtt_dropped: int = 0  # label changes dropped from a full outage queue
    latest: Result | None = None

    @property
    def dropped_frames(self) -> int:
        """Frames the capture skipped to stay real-time (gaps in the capture index)."""
        latest = self.latest
        return max(0, latest.frame + 1 - self.frames) if latest else 0


def heartbeat(counters: Counters, info: RunInfo, now: float | None = None) -> dict:
    latest = counters.latest
    return {
        "time": round(time.time() if now is None else now, 3),
        "fps": round(latest.fps, 2) if latest else 0.0,
        "frames": counters.frames,
        "changes": counters.changes,
        "dropped_frames": counters.dropped_frames,
        "mqtt_dropped": counters.mqtt_dropped,
        "uptime_s": round(time.monotonic() - counters.started, 1),
        "label": latest.label if latest else None,
        "score": round(latest.score, 4) if latest else None,
        **info.fields(),
    }


def dumps(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))
