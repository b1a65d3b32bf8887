"""Where results go, each a separate part: JSON lines, the window, a recorded video.

Each output takes the per-frame ``Result`` (and, if it shows pixels, the annotated frame; or, if
it ``wants_raw``, the camera's frame as captured);
``close()`` is always called, also on Ctrl-C and SIGTERM, so a recording is finalised
(``close_all``: one output that fails to close does not keep the others open).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edgecam.errors import EdgecamError
from edgecam.console import log
from edgecam.runtime.result import Result
from edgecam.runtime.window import Window


def close_all(outputs: "list[Output]") -> Exception | None:
    """Close every output; returns the first error (for the caller to raise once all are closed)."""
    first = None
    for output in outputs:
        try:
            output.close()
        except Exception as exc:  # raised by the caller, once the others are closed
            first = first or exc
    return first


class Output:
    wants_pixels = False
    wants_raw = False  # True: the loop calls ``write_raw`` with the camera's frame instead of ``write``

    def write(self, result: Result, annotated: np.ndarray | None) -> None: ...

    def write_raw(self, result: Result, rgb: np.ndarray) -> None:
        """The frame as captured (RGB, never drawn on): read it, never change it (copy what is kept)."""

    def close(self) -> None: ...

    @property
    def quit_requested(self) -> bool:
        return False


class JsonLines(Output):
    """One JSON object per processed frame on stdout (logs stay on stderr), flushed per line."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def write(self, result: Result, annotated=None) -> None:
        try:
            self.stream.write(json.dumps(result.to_dict()) + "\n")
            self.stream.flush()
        except BrokenPipeError:  # `edgecam run ... | head`: the reader has gone, stop quietly
            raise KeyboardInterrupt from None


class WindowOutput(Output):
    """The annotated frames in a window; q or Esc (or closing the window) ends the run."""

    wants_pixels = True

    def __init__(self, title: str = "edgecam"):
        self.window = Window(title, hint="use --headless or --serve PORT on machines without a display")
        self._quit = False

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        self._quit = self.window.show(annotated) is None

    @property
    def quit_requested(self) -> bool:
        return self._quit

    def close(self) -> None:
        self.window.close()


class Recorder(Output):
    """Writes the annotated frames to a video; the file appears complete, at its name, on close.

    cv2.VideoWriter reports no write errors (a full disk leaves a few kB that no player opens),
    so ``close()`` reads the finished file back: frame count and last frame. A recording that
    does not hold every frame is removed and raised as an error naming the reason.
    """

    wants_pixels = True

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.fps = fps
        # VideoWriter picks the container from the name, so the temp name keeps the suffix.
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            h, w = annotated.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise EdgecamError(f"{self.path}: cannot record video (unsupported format or folder not writable)")
        self._writer.write(annotated)
        self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        problem = missing_frames(self._tmp, self.frames)
        if problem:
            reason = write_problem(self._tmp)
            self._tmp.unlink(missing_ok=True)
            raise EdgecamError(f"{self.path}: recording failed ({reason}): {problem}, so no video was kept")
        os.replace(self._tmp, self.path)
        log(f"recorded {self.frames} frames to {self.path}")


def missing_frames(path: Path, written: int) -> str | None:
    """What is wrong with a video that should hold ``written`` frames, or None if nothing is."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return "the file cannot be opened"
        held = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        # One more is fine (a signal can land after a write, before it was counted), and so is one
        # fewer: containers without a frame count get one estimated from the duration. A full disk
        # leaves a file that does not open (the index is written last) or far fewer frames.
        if held < written - 1:
            return f"it holds {max(held, 0)} of {written} frames"
        cap.set(cv2.CAP_PROP_POS_FRAMES, held - 1)
        if not cap.read()[0]:
            return "its last frame cannot be read"
        return None
    finally:
        cap.release()


def write_problem(path: Path) -> str:
    """Why writing to ``path`` fails (no space, file too large, ...): found by trying once more."""
    try:
        with open(path, "ab") as f:
            f.write(bytes(1 << 16))
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    stats = os.statvfs(path.parent)
    if stats.f_bavail * stats.f_frsize < 1 << 20:
        return "no space left on the device"
    return "the video writer left it incomplete"
