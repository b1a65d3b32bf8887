"""Labelled photos on disk: save the newest camera frame under a label, count them, run bursts.

A photo is the raw camera frame (no overlay), saved as
``DATASET_DIR/<label>/<date>-<time>-<ms>-<n>-<random>.jpg`` through a temp file and a rename,
so the folder is always a valid ``edgecam finetune data.path=DATASET_DIR`` input, even after
a crash. Used by the window (keys 1..9) and the page (buttons, bursts) alike.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Callable

import cv2

from edgecam.config.camera import KEYS
from edgecam.errors import ActionError
from edgecam.files import IMAGE_SUFFIXES, write_bytes
from edgecam.runtime.capture import Frame

FRAME_WAIT = 2.0  # seconds a save waits for a frame newer than the last one saved


class CollectError(ActionError):
    """A photo cannot be taken (unknown label, no frame yet, disk full, burst running, ...)."""


def existing_labels(dataset: Path) -> list[str]:
    """The label folders already in ``dataset`` (to add photos to an existing data set)."""
    if not Path(dataset).is_dir():
        return []
    return sorted(p.name for p in Path(dataset).iterdir() if p.is_dir() and not p.name.startswith("."))


def count_images(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


class Collector:
    """Holds the newest frame and saves it under a label; counts photos; runs one burst at a time."""

    def __init__(self, root: Path, labels: tuple[str, ...], quality: int = 95):
        self.root, self.labels, self.quality = Path(root), tuple(labels), quality
        for label in self.labels:
            (self.root / label).mkdir(parents=True, exist_ok=True)
        self.counts = {label: count_images(self.root / label) for label in self.labels}
        self.saved = {label: 0 for label in self.labels}
        self.last: Path | None = None
        self.on_change: Callable[[], None] = lambda: None
        self._frame: Frame | None = None
        self._frame_cond = threading.Condition()
        self._lock = threading.Lock()
        self._serial = 0
        self._last_index = -1  # newest frame saved: a frame goes under one label once (or finetune drops it)
        self._burst: dict | None = None
        self._burst_stop = threading.Event()
        self._burst_thread: threading.Thread | None = None

    # -- frames ----------------------------------------------------------------------------------
    def offer(self, frame: Frame) -> None:
        with self._frame_cond:
            self._frame = frame
            self._frame_cond.notify_all()

    def wait_frame(self, after: int, timeout: float) -> Frame | None:
        """The newest frame with an index above ``after``, waiting up to ``timeout`` seconds."""
        with self._frame_cond:
            self._frame_cond.wait_for(lambda: self._frame is not None and self._frame.index > after, timeout)
            frame = self._frame
        return frame if frame is not None and frame.index > after else None

    # -- saving ----------------------------------------------------------------------------------
    def save(self, label: str, frame: Frame | None = None) -> Path:
        """Save ``frame`` (default: the newest frame, if not saved yet, else the next one) as a JPEG."""
        if label not in self.counts:
            raise CollectError(f"unknown label {label!r} (labels: {', '.join(self.labels)})")
        if frame is None:
            frame = self.wait_frame(self._last_index, FRAME_WAIT)
            if frame is None:
                raise CollectError("no new camera frame (is the camera delivering?)", 503)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise CollectError("cannot encode the frame as JPEG", 500)
        with self._lock:
            self._serial += 1
            serial = self._serial
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(frame.time)) + f"-{int(frame.time * 1000) % 1000:03d}"
        path = self.root / label / f"{stamp}-{serial:04d}-{secrets.token_hex(3)}.jpg"
        try:
            write_bytes(path, jpeg.tobytes())  # temp file + fsync + os.replace: never half a photo
        except OSError as exc:
            raise CollectError(f"{path.parent}: cannot save photo ({exc.strerror or exc})", 500) from None
        with self._lock:
            self.counts[label] += 1
            self.saved[label] += 1
            self.last = path
            self._last_index = max(self._last_index, frame.index)
        self.on_change()
        return path

    def key(self, key: int, frame: Frame) -> Path | None:
        """A key press in the window: '1'..'9' saves ``frame`` for that label; anything else None."""
        char = chr(key) if 0 <= key < 0x110000 else ""
        if char and char in KEYS and KEYS.index(char) < len(self.labels):
            return self.save(self.labels[KEYS.index(char)], frame)
        return None

    # -- bursts ----------------------------------------------------------------------------------
    def start_burst(self, label: str, count: int, interval: float) -> dict:
        if label not in self.counts:
            raise CollectError(f"unknown label {label!r} (labels: {', '.join(self.labels)})")
        if not 1 <= count <= 1000 or not 0 <= interval <= 60:
            raise CollectError("burst: count must be 1..1000 and interval 0..60 seconds")
        with self._lock:
            if self._burst and self._burst["running"]:
                raise CollectError(f"a burst for {self._burst['label']!r} is running; stop it first", 409)
            self._burst = {"label": label, "total": count, "done": 0, "interval": interval,
                           "running": True, "error": None}
            self._burst_stop = threading.Event()
            self._burst_thread = threading.Thread(target=self._run_burst, args=(self._burst, self._burst_stop),
                                                  name="burst", daemon=True)
            self._burst_thread.start()
        self.on_change()
        return dict(self._burst)

    def _run_burst(self, state: dict, stop: threading.Event) -> None:
        try:
            for i in range(state["total"]):
                if (i and stop.wait(state["interval"])) or stop.is_set():
                    break
                self.save(state["label"])
                state["done"] += 1
        except CollectError as exc:
            state["error"] = str(exc)
        finally:
            state["running"] = False
            self.on_change()

    def stop_burst(self) -> None:
        self._burst_stop.set()
        thread = self._burst_thread
        if thread is not None:
            thread.join(timeout=FRAME_WAIT + 1)

    def burst_state(self) -> dict | None:
        return dict(self._burst) if self._burst else None
