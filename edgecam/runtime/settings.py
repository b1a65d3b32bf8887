"""Typed settings for ``edgecam run`` (loaded from YAML and options by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunConfig:
    # The .tflite model (the CLI argument fills this in).
    model: str = ""
    # Labels file for models without label metadata (one label per line, or "0 label").
    labels: str = ""
    # "" = picamera2, else the first OpenCV camera; or a camera index, /dev/videoN,
    # rtsp:// or http:// URL, video file, image file, folder or glob of images, "picamera2".
    source: str = ""
    # Capture size requested from cameras, WIDTHxHEIGHT.
    resolution: str = "640x480"
    # Interpreter threads (0 = all cores).
    threads: int = 0
    # How many labels to show and print.
    top_k: int = 3
    # No window: one JSON object per frame on stdout.
    headless: bool = False
    # Also write the annotated video here (.mp4 or .avi).
    record: str = ""
    # Weight of the past in an exponential moving average of the scores (0 = off, 0.8 = steady).
    smoothing: float = 0.0
    # Below this score the label is "unknown".
    threshold: float = 0.0
    # Seconds a new label must hold before a change is announced.
    hold: float = 0.5
    # Command to run on each announced change (gets EDGECAM_LABEL and EDGECAM_SCORE).
    on_change: str = ""
    # Stop after this many processed frames (0 = run until the source ends or you quit).
    max_frames: int = 0
    # Reopen a live camera or stream that stops delivering frames.
    reconnect: bool = True
    # -- web view (edgecam.serving) --
    # Serve a live page on [HOST:]PORT ("" = off); 127.0.0.1 unless a host is given.
    serve: str = ""
    # Access token for the page ("" = none on loopback, generated for any other address).
    token: str = ""
    # With serve: also open the window (serve alone opens none, so it works without a display).
    window: bool = False

    def validate(self):
        if self.threads < 0:
            return "threads", f"must be 0 (all cores) or more, got {self.threads}"
        if self.top_k < 1:
            return "top_k", f"must be at least 1, got {self.top_k}"
        if not 0.0 <= self.smoothing < 1.0:
            return "smoothing", f"must be in [0, 1), got {self.smoothing}"
        if not 0.0 <= self.threshold <= 1.0:
            return "threshold", f"must be in [0, 1], got {self.threshold}"
        if self.window and self.headless:
            return "window", "cannot be combined with headless"
        if self.hold < 0 or self.max_frames < 0:
            return ("hold" if self.hold < 0 else "max_frames"), "must not be negative"
        try:
            self.size()
        except ValueError:
            return "resolution", f"expected WIDTHxHEIGHT (e.g. 640x480), got {self.resolution!r}"
        return None

    def size(self) -> tuple[int, int]:
        w, h = self.resolution.lower().split("x")
        if int(w) < 1 or int(h) < 1:
            raise ValueError(self.resolution)
        return int(w), int(h)
