"""The camera side of ``edgecam collect``: frames from the runtime's capture, to the collector,
the window (keys 1..9) or the page (``--serve``), until q, Ctrl-C or the source ends.

Frames come from the same sources, capture thread and window as ``edgecam run``. Needs no model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgecam.collect.photos import Collector, CollectError, existing_labels
from edgecam.config.camera import KEYS, CollectConfig
from edgecam.console import log
from edgecam.errors import ConfigError
from edgecam.runtime.capture import FrameGrabber, frames
from edgecam.runtime.overlay import draw_text_rows
from edgecam.runtime.sources import Source, open_source, quiet_opencv
from edgecam.runtime.stats import SlidingFPS
from edgecam.runtime.window import Window
from edgecam.serving.collect_page import CollectPage
from edgecam.serving.server import WebServer, start_server

WHITE, GREEN = (255, 255, 255), (80, 220, 80)
FLASH_SECONDS = 0.4  # how long a saved label shows green in the window


def draw_counts(bgr: np.ndarray, labels: tuple[str, ...], counts: dict[str, int], flash: str | None = None) -> np.ndarray:
    """Key, label and photo count per label (the one just saved in green), plus the key help."""
    rows = [(f"{KEYS[i]}  {label}: {counts[label]}", GREEN if label == flash else WHITE) for i, label in enumerate(labels)]
    return draw_text_rows(bgr, rows + [("1-9 save a photo, q quits", WHITE)])


def collect(cfg: CollectConfig, stop: threading.Event | None = None, source: Source | None = None,
            on_ready: Callable[[WebServer], None] | None = None) -> dict:
    """Preview ``cfg.source`` and save labelled photos until q, Ctrl-C, ``stop`` or the source ends.

    Returns {"saved": per-label photos taken now, "counts": photos per label folder}.
    """
    cfg = _with_labels(cfg)
    stop = stop or threading.Event()
    window = None if cfg.serve.address else Window(
        f"edgecam collect - {cfg.dataset}", hint="use --serve PORT to collect from a browser")  # before any folder
    collector = Collector(Path(cfg.dataset), cfg.labels, cfg.quality)
    page = server = None
    try:
        if cfg.serve.address:
            page = CollectPage(collector, cfg)
            server = start_server(page, cfg.serve)
        quiet_opencv()
        source = source or open_source(cfg.source, cfg.size())
        with FrameGrabber(source) as grabber:
            log(f"collect: {', '.join(f'{label} ({n})' for label, n in collector.counts.items())} in {cfg.dataset}; "
                f"source: {source.name}")
            if server:
                page.source = source.name
                server.announce("collect page")
                if on_ready:
                    on_ready(server)
            pace = 0.0 if source.live else 1.0 / (source.fps or 15.0)  # files play at their own pace
            _preview(collector, frames(grabber, stop, pace=pace), page, window)
    finally:
        collector.stop_burst()
        if window is not None:
            window.close()
        if server is not None:
            server.close()
        _log_saved(cfg, collector)
    return {"saved": dict(collector.saved), "counts": dict(collector.counts)}


def _with_labels(cfg: CollectConfig) -> CollectConfig:
    """``cfg`` with its labels filled in from the dataset's folders when none are given."""
    if cfg.labels:
        return cfg
    labels = tuple(existing_labels(Path(cfg.dataset)))
    if not labels:
        raise ConfigError("labels: name the labels, e.g. --labels mug,keys,nothing "
                          f"({cfg.dataset} has no label folders yet)")
    cfg = replace(cfg, labels=labels)
    problem = cfg.validate()  # the same checks as for given labels (the window's 9 keys)
    if problem:
        raise ConfigError(f"{problem[0]}: {problem[1]} (the folders in {cfg.dataset})")
    return cfg


def _preview(collector: Collector, stream, page: CollectPage | None, window: Window | None) -> None:
    """Hand each frame to the collector, the page's stream (only while watched) or the window."""
    fps = SlidingFPS()
    flash, flash_until = None, 0.0
    for frame in stream:
        collector.offer(frame)
        rate = fps.tick()
        if page is not None:
            page.fps, page.frame = rate, frame.index
            if page.frames.viewers:
                page.show(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
            page.changed()
        if window is None:
            continue
        bgr = draw_counts(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), collector.labels, collector.counts,
                          flash if time.monotonic() < flash_until else None)
        key = window.show(bgr)
        if key is None:
            return
        path = _save_key(collector, key, frame)
        if path is not None:
            flash, flash_until = path.parent.name, time.monotonic() + FLASH_SECONDS


def _save_key(collector: Collector, key: int, frame) -> Path | None:
    try:
        path = collector.key(key, frame)
    except CollectError as exc:
        log(f"not saved: {exc}")
        return None
    if path is not None:
        log(f"saved {path.parent.name}/{path.name}")
    return path


def _log_saved(cfg: CollectConfig, collector: Collector) -> None:
    taken = sum(collector.saved.values())
    log(f"saved {taken} photo{'s' if taken != 1 else ''} to {cfg.dataset}: "
        + ", ".join(f"{label} +{collector.saved[label]} ({collector.counts[label]})" for label in cfg.labels))
    if taken:
        log(f"train with: edgecam finetune data.path={cfg.dataset}")
