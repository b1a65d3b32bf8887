"""The per-frame result object: what was seen, how sure, and how long it took."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    frame: int  # capture index of the frame (gaps = frames dropped to stay real-time)
    time: float  # capture time, seconds since the epoch
    top: tuple[tuple[str, float], ...]  # top-k (label, score), best first
    label: str  # decided label: top label after smoothing, or "unknown" (rejected, or below the threshold)
    score: float
    changed: bool  # a new stable label was announced on this frame
    fps: float  # sliding-window frames per second of the loop
    inference_ms: float  # interpreter time
    latency_ms: float  # capture to result (preprocessing + inference + decisions)
    unknown_score: float | None = None  # smoothed open-set score, for models with an `unknown_score` output
    snapshot: bool = False  # a snapshot was asked for (Control.snapshot): this frame's annotated image is drawn
    model_path: str | None = None  # set only on the first frame of a reloaded model: its file ...
    model_sha256: str | None = None  # ... and the SHA-256 of its bytes
    # This frame's own top labels before smoothing (at least two when the model has two; () = same as top).
    # Not in the JSON lines: for outputs that judge single frames (--keep).
    raw_top: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict:
        out = {
            "time": round(self.time, 3),
            "frame": self.frame,
            "top": [{"label": label, "score": round(score, 4)} for label, score in self.top],
            "label": self.label,
            "score": round(self.score, 4),
            "changed": self.changed,
            "fps": round(self.fps, 2),
            "inference_ms": round(self.inference_ms, 2),
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.unknown_score is not None:  # only models that have one: other lines keep their keys
            out["unknown_score"] = round(self.unknown_score, 4)
        if self.snapshot:  # these two only on the frames they concern, so other lines keep their keys
            out["snapshot"] = True
        if self.model_sha256 is not None:
            out["model"] = {"path": self.model_path, "sha256": self.model_sha256}
        return out
