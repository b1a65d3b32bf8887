"""``edgecam collect``: take labelled training photos with the camera that will run the model.

Frames come from the same sources as ``edgecam run``. A photo is the raw camera frame (no
overlay), saved as ``DATASET_DIR/<label>/<time>-<n>-<random>.jpg`` through a temp file and a
rename, so the folder is always a valid ``edgecam finetune data.path=DATASET_DIR`` input, even
after a crash. Two front ends: an OpenCV window (keys 1..9) or, with ``--serve``, a browser page
with one button per label and bursts (N photos, one every S seconds, each a new frame).

Edge-side code: numpy, OpenCV and the standard library only; no model is needed.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgecam.errors import ConfigError, EdgecamError
from edgecam.fsutil import write_bytes
from edgecam.runtime.capture import Frame, FrameGrabber
from edgecam.runtime.sources import IMAGE_SUFFIXES, Source, open_source, quiet_opencv
from edgecam.runtime.stats import SlidingFPS
from edgecam.serving.server import Page, WebServer, check_token, parse_address, start_server

KEYS = "123456789"
FRAME_WAIT = 2.0  # seconds a save waits for a frame newer than the last one saved


class CollectError(EdgecamError):
    """A photo cannot be taken (unknown label, no frame yet, disk full, burst running, ...)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status  # the HTTP status the page gets


@dataclass(frozen=True)
class CollectConfig:
    dataset: Path
    labels: tuple[str, ...]
    source: str = ""
    resolution: str = "640x480"
    serve: str = ""
    token: str = ""
    quality: int = 95
    burst: int = 10  # photos per burst (the page's default)
    interval: float = 0.5  # seconds between burst photos (the page's default)

    def checked(self) -> "CollectConfig":
        """Validated copy (labels stripped); ConfigError names the option."""
        labels = tuple(check_label(name) for name in self.labels)
        if len(set(labels)) != len(labels):
            raise ConfigError(f"--labels: a label is listed twice ({', '.join(labels)})")
        if not self.serve and len(labels) > len(KEYS):
            raise ConfigError(f"--labels: the window has keys 1-9, so at most 9 labels (got {len(labels)}); "
                              "the --serve page takes any number")
        self.size()
        if self.serve:
            parse_address(self.serve)
        check_token(self.token)
        return replace(self, labels=labels, dataset=Path(self.dataset))

    def size(self) -> tuple[int, int]:
        try:
            w, h = (int(v) for v in self.resolution.lower().split("x"))
            if w > 0 and h > 0:
                return w, h
        except ValueError:
            pass
        raise ConfigError(f"--resolution: expected WIDTHxHEIGHT (e.g. 640x480), got {self.resolution!r}")


def check_label(name: str) -> str:
    """A label is a folder name: non-empty, no slashes, not hidden, no control characters."""
    label = str(name).strip()
    if (not label or label in (".", "..") or label.startswith(".") or any(c in label for c in "/\\")
            or not label.isprintable() or len(label) > 64):
        raise ConfigError(f"--labels: {name!r} cannot be a folder name (use letters, digits, - or _)")
    return label


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


class CollectPage(Page):
    """The collect page's status and its actions: save, burst, stop."""

    html = "collect.html"

    def __init__(self, collector: Collector, cfg: CollectConfig):
        super().__init__()
        self.collector, self.cfg = collector, cfg
        self.source = ""
        self.fps = 0.0
        self.frame = -1
        collector.on_change = self.changed

    def status(self) -> dict:
        c = self.collector
        return {
            "page": "collect",
            "dataset": str(c.root),
            "labels": list(c.labels),
            "counts": dict(c.counts),
            "saved": dict(c.saved),
            "last": c.last.relative_to(c.root).as_posix() if c.last else None,
            "burst": c.burst_state(),
            "defaults": {"burst": self.cfg.burst, "interval": self.cfg.interval},
            "source": self.source,
            "viewers": self.frames.viewers,
            "fps": round(self.fps, 1),
            "frame": self.frame,
        }

    def post(self, action: str, body: dict) -> tuple[int, dict]:
        label = body.get("label")
        try:
            if action == "save":
                path = self.collector.save(str(label))
                return 200, {"saved": path.relative_to(self.collector.root).as_posix(), "counts": self.collector.counts}
            if action == "burst":
                count, interval = body.get("count", self.cfg.burst), body.get("interval", self.cfg.interval)
                if isinstance(count, bool) or not isinstance(count, int) or isinstance(interval, bool) \
                        or not isinstance(interval, (int, float)):
                    raise CollectError("burst: count must be a whole number and interval a number of seconds")
                return 202, {"burst": self.collector.start_burst(str(label), count, float(interval))}
            if action == "stop":
                self.collector.stop_burst()
                return 200, {"burst": self.collector.burst_state()}
        except CollectError as exc:
            return exc.status, {"error": str(exc)}
        return 404, {"error": f"no action {action!r}"}


class _PreviewWindow:
    """The OpenCV window of ``collect`` without ``--serve``: shows frames, returns key presses."""

    def __init__(self, title: str):
        self.title = title
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Checked first: OpenCV's Qt build aborts the whole process when it finds no display.
            raise CollectError("no display for the preview window (DISPLAY is not set); "
                               "use --serve PORT to collect from a browser")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise CollectError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}); "
                               "use --serve PORT to collect from a browser") from None

    def show(self, bgr: np.ndarray) -> int | None:
        """Show a frame; the key pressed (or -1), None once q, Esc or the window's close button ends it."""
        cv2.imshow(self.title, bgr)
        key = cv2.waitKeyEx(1)
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return None
        return key & 0xFF if key >= 0 else -1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


def draw_counts(bgr: np.ndarray, labels: tuple[str, ...], counts: dict[str, int], flash: str | None = None) -> np.ndarray:
    """Key, label and photo count per label (the one just saved in green), plus the key help."""
    unit = max(min(bgr.shape[0], bgr.shape[1] * 0.75) / 480.0, 0.6)
    scale, thick, line, pad = 0.6 * unit, max(1, round(1.5 * unit)), round(26 * unit), round(8 * unit)
    rows = [(f"{KEYS[i]}  {label}: {counts[label]}", label == flash) for i, label in enumerate(labels)]
    rows.append(("1-9 save a photo, q quits", False))
    width = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for text, _ in rows) + 2 * pad
    height = min(bgr.shape[0], pad * 2 + line * len(rows))
    region = bgr[:height, :width]
    region[:] = (region * 0.35).astype(np.uint8)
    for i, (text, hot) in enumerate(rows):
        color = (80, 220, 80) if hot else (255, 255, 255)
        cv2.putText(bgr, text, (pad, pad + line * (i + 1) - round(6 * unit)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    color, thick, cv2.LINE_AA)
    return bgr


def collect(cfg: CollectConfig, stop: threading.Event | None = None, source: Source | None = None,
            on_ready: Callable[[WebServer], None] | None = None) -> dict:
    """Preview ``cfg.source`` and save labelled photos until q, Ctrl-C, ``stop`` or the source ends.

    Returns {"saved": per-label photos taken now, "counts": photos per label folder}.
    """
    cfg = cfg.checked()
    stop = stop or threading.Event()
    window = None if cfg.serve else _PreviewWindow(f"edgecam collect - {cfg.dataset}")  # before any folder
    collector = Collector(cfg.dataset, cfg.labels, cfg.quality)
    page = server = grabber = opened = None
    try:
        if cfg.serve:
            page = CollectPage(collector, cfg)
            server = start_server(page, cfg.serve, cfg.token)
        if source is None:
            quiet_opencv()
            source = opened = open_source(cfg.source, cfg.size())
        grabber = FrameGrabber(source).start()
        log(f"collect: {', '.join(f'{label} ({n})' for label, n in collector.counts.items())} in {cfg.dataset}; "
            f"source: {source.name}")
        if server:
            page.source = source.name
            server.announce("collect page")
            if on_ready:
                on_ready(server)
        _preview(cfg, collector, grabber, source, page, window, stop)
    finally:
        collector.stop_burst()
        if grabber is not None:
            grabber.stop()
        if opened is not None:
            opened.close()
        if window is not None:
            window.close()
        if server is not None:
            server.close()
        taken = sum(collector.saved.values())
        log(f"saved {taken} photo{'s' if taken != 1 else ''} to {cfg.dataset}: "
            + ", ".join(f"{label} +{collector.saved[label]} ({collector.counts[label]})" for label in cfg.labels))
        if taken:
            log(f"train with: edgecam finetune data.path={cfg.dataset}")
    return {"saved": dict(collector.saved), "counts": dict(collector.counts)}


def _preview(cfg: CollectConfig, collector: Collector, grabber: FrameGrabber, source: Source,
             page: CollectPage | None, window: _PreviewWindow | None, stop: threading.Event) -> None:
    """Hand each frame to the collector, the page's stream (only while watched) or the window."""
    fps = SlidingFPS()
    period = 0.0 if source.live else 1.0 / (source.fps or 15.0)  # files play at their own pace
    flash, flash_until = None, 0.0
    while not stop.is_set():
        started = time.perf_counter()
        frame = grabber.get(timeout=0.5)
        if frame is None:
            if grabber.done:
                return
            continue
        collector.offer(frame)
        rate = fps.tick()
        if page is not None:
            page.fps, page.frame = rate, frame.index
            if page.frames.viewers:
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    page.frames.publish(jpeg.tobytes())
            page.changed()
        if window is not None:
            bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
            key = window.show(draw_counts(bgr, collector.labels, collector.counts,
                                          flash if time.monotonic() < flash_until else None))
            if key is None:
                return
            try:
                path = collector.key(key, frame)
            except CollectError as exc:
                log(f"not saved: {exc}")
                path = None
            if path is not None:
                flash, flash_until = path.parent.name, time.monotonic() + 0.4
                log(f"saved {path.parent.name}/{path.name}")
        if period:
            stop.wait(max(0.0, period - (time.perf_counter() - started)))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
