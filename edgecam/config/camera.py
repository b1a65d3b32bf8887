"""Typed configs of the camera commands, ``edgecam run`` and ``edgecam collect``.

Every command-line option of both is a key here (``--top-k`` is ``top_k``), so a YAML file
given with ``--config`` can set any of them. The web page's options form their own ``serve``
section, read only by ``edgecam.serving``. Standard library only: the runtime imports this.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from edgecam.config.mqtt import MqttConfig

MIN_TOKEN = 8
KEYS = "123456789"  # collect's window: key n saves a photo for label n
# Why `edgecam run --keep` keeps a frame, in the order they are tried (a frame gets the first that holds).
KEEP_REASONS = ("unknown", "flip", "disagree", "low_margin", "sample")


def parse_resolution(text: str) -> tuple[int, int]:
    """``"640x480"`` → (640, 480); ValueError for anything else."""
    w, h = (int(v) for v in text.lower().split("x"))
    if w < 1 or h < 1:
        raise ValueError(text)
    return w, h


def parse_address(spec: str | int) -> tuple[str, int]:
    """``"8080"`` → ("127.0.0.1", 8080); ``"0.0.0.0:8080"``, ``"[::1]:8080"``, ``"pi.local:80"``."""
    text = str(spec).strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    elif ":" in text:
        host, sep, port = text.rpartition(":")
        sep = sep if ":" not in host else ""  # IPv6 needs brackets: [::]:8080
    else:
        host, sep, port = "127.0.0.1", ":", text
    if not (sep and host and port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every interface), got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything, so treat it as reachable


def label_problem(name: str) -> str | None:
    """Why ``name`` cannot be a label folder (None when it can)."""
    label = str(name)
    if (not label or label in (".", "..") or label.startswith(".") or any(c in label for c in "/\\")
            or not label.isprintable() or len(label) > 64 or label != label.strip()):
        return f"{name!r} cannot be a folder name (use letters, digits, - or _)"
    return None


@dataclass(frozen=True)
class ServeConfig:
    # [HOST:]PORT of the live page ("" = no page); 127.0.0.1 unless a host is given
    # (0.0.0.0 = every interface, which needs a token).
    address: str = ""
    # Access token for the page ("" = none on loopback, generated for any other address).
    # Better here than on the command line, where other users can see it in `ps`.
    token: str = ""

    def validate(self):
        if self.address:
            try:
                parse_address(self.address)
            except ValueError as exc:
                return "address", str(exc)
        if self.token and (len(self.token) < MIN_TOKEN or not self.token.isprintable()
                           or self.token != self.token.strip()):
            return "token", (f"use at least {MIN_TOKEN} printable characters without surrounding spaces "
                             "(or leave it out and one is generated)")
        return None


@dataclass(frozen=True)
class CameraConfig:
    """What both camera commands share: where frames come from, and the web page."""

    # "" = picamera2, else the first OpenCV camera; or a camera index, /dev/videoN,
    # rtsp:// or http:// URL, video file, image file, folder or glob of images, "picamera2".
    source: str = ""
    # Capture size requested from cameras, WIDTHxHEIGHT.
    resolution: str = "640x480"
    # The browser page (see ServeConfig).
    serve: ServeConfig = field(default_factory=ServeConfig)

    def validate(self):
        try:
            parse_resolution(self.resolution)
        except ValueError:
            return "resolution", f"expected WIDTHxHEIGHT (e.g. 640x480), got {self.resolution!r}"
        return None

    def size(self) -> tuple[int, int]:
        return parse_resolution(self.resolution)


@dataclass(frozen=True)
class KeepConfig:
    """``edgecam run --keep DIR``: frames worth a second look, each a JPEG and a JSON sidecar (README, Keep)."""

    # Folder for the kept frames ("" = keep nothing).
    dir: str = ""
    # Dataset folder (one folder per label) the live page's review tab files kept frames into
    # ("" = the tab can discard and undo, not file; `edgecam review DIR --dataset D` can).
    dataset: str = ""
    # Why frames are kept, any of: unknown (the decided label), flip (the announced label changed),
    # disagree (the decided or announced label is not the frame's own top label), low_margin, sample.
    reasons: tuple[str, ...] = KEEP_REASONS
    # low_margin: the frame's top probability minus the second is below this.
    margin: float = 0.2
    # sample: this share of the confident frames (no other reason), drawn at random.
    sample: float = 0.002
    # At most this many frames per reason in any minute, and in any hour (of frame time).
    per_minute: int = 6
    per_hour: int = 60
    # A frame nearer than this to one of the last frames kept for the same reason is a near-duplicate and
    # not kept: mean difference of 16x16 colour thumbnails, in levels 0..255 (0 = keep duplicates too).
    min_change: float = 6.0
    # Size limit of the kept pairs in the folder, in MB: the oldest pairs are removed beyond it.
    quota_mb: float = 500.0
    # JPEG quality of the kept frames.
    quality: int = 90
    # Seed of the random sample (the same video keeps the same frames).
    seed: int = 0

    def validate(self):
        for name in self.reasons:
            if name not in KEEP_REASONS:
                return "reasons", f"{name!r} is not a reason; use any of {', '.join(KEEP_REASONS)}"
        if len(set(self.reasons)) != len(self.reasons):
            return "reasons", f"a reason is listed twice ({', '.join(self.reasons)})"
        for key in ("margin", "sample"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                return key, f"must be in [0, 1], got {getattr(self, key)}"
        for key in ("per_minute", "per_hour"):
            if getattr(self, key) < 1:
                return key, f"must be at least 1, got {getattr(self, key)}"
        if not 0.0 <= self.min_change <= 255.0:
            return "min_change", f"must be in [0, 255], got {self.min_change}"
        if not self.quota_mb > 0:
            return "quota_mb", f"must be more than 0, got {self.quota_mb}"
        if not 50 <= self.quality <= 100:
            return "quality", f"must be 50..100, got {self.quality}"
        return None


@dataclass(frozen=True)
class RunConfig(CameraConfig):
    # The .tflite model (the command's argument fills this in).
    model: str = ""
    # Labels file for models without label metadata (one label per line, or "0 label").
    labels: str = ""
    # Interpreter threads (0 = all cores).
    threads: int = 0
    # How many labels to show and print.
    top_k: int = 3
    # No window: one JSON object per frame on stdout.
    headless: bool = False
    # With serve: also open the window (the page alone opens none, so it works without a display).
    window: bool = False
    # Also write the annotated video here (.mp4 or .avi).
    record: str = ""
    # Weight of the past in an exponential moving average of the scores (0 = off, 0.8 = steady).
    smoothing: float = 0.0
    # Below this top score the label is "unknown". None (the default) = the model's calibrated
    # rejection when it has one (an `unknown_score` output), else 0; a number turns that rejection off.
    threshold: float | None = None
    # Seconds a new label must hold before a change is announced.
    hold: float = 0.5
    # Command to run on each announced change (gets EDGECAM_LABEL and EDGECAM_SCORE).
    on_change: str = ""
    # Stop after this many processed frames (0 = run until the source ends or you quit).
    max_frames: int = 0
    # Reopen a live camera or stream that stops delivering frames.
    reconnect: bool = True
    # Publish labels to an MQTT broker, with Home Assistant discovery (see MqttConfig).
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    # Keep frames the model gets wrong or is unsure of, for review and retraining (see KeepConfig).
    keep: KeepConfig = field(default_factory=KeepConfig)

    def validate(self):
        problem = super().validate()
        if problem:
            return problem
        if self.threads < 0:
            return "threads", f"must be 0 (all cores) or more, got {self.threads}"
        if self.top_k < 1:
            return "top_k", f"must be at least 1, got {self.top_k}"
        if not 0.0 <= self.smoothing < 1.0:
            return "smoothing", f"must be in [0, 1), got {self.smoothing}"
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            return "threshold", f"must be in [0, 1], got {self.threshold}"
        if self.window and self.headless:
            return "window", "cannot be combined with headless"
        if self.hold < 0 or self.max_frames < 0:
            return ("hold" if self.hold < 0 else "max_frames"), "must not be negative"
        return None


@dataclass(frozen=True)
class CollectConfig(CameraConfig):
    # Folder that gets one sub-folder per label (the command's argument fills this in).
    dataset: str = ""
    # Labels, in key order 1..9 ([] = the folders already in the dataset folder).
    labels: tuple[str, ...] = ()
    # JPEG quality of saved photos.
    quality: int = 95
    # Photos per burst, and seconds between them (the page's defaults).
    burst: int = 10
    interval: float = 0.5

    def validate(self):
        problem = super().validate()
        if problem:
            return problem
        for name in self.labels:
            if label_problem(name):
                return "labels", label_problem(name)
        if len(set(self.labels)) != len(self.labels):
            return "labels", f"a label is listed twice ({', '.join(self.labels)})"
        if not self.serve.address and len(self.labels) > len(KEYS):
            return "labels", (f"the window has keys 1-9, so at most 9 labels (got {len(self.labels)}); "
                              "the page (serve) takes any number")
        if not 50 <= self.quality <= 100:
            return "quality", f"must be 50..100, got {self.quality}"
        if not 1 <= self.burst <= 1000:
            return "burst", f"must be 1..1000, got {self.burst}"
        if not 0.0 <= self.interval <= 60.0:
            return "interval", f"must be 0..60 seconds, got {self.interval}"
        return None
