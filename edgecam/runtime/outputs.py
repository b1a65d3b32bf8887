"""Where results go, each a separate part: JSON lines, an OpenCV window, a recorded video.

Each output takes the per-frame ``Result`` (and, if it shows pixels, the annotated frame);
``close()`` is always called, also on Ctrl-C and SIGTERM, so a recording is finalised.
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
from edgecam.runtime.result import Result


class Output:
    wants_pixels = False

    def write(self, result: Result, annotated: np.ndarray | None) -> None: ...

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


class Window(Output):
    """An OpenCV window; q or Esc (or closing the window) ends the run."""

    wants_pixels = True

    def __init__(self, title: str = "edgecam"):
        self.title = title
        self._quit = False
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Checked first: some OpenCV builds abort the process instead of raising.
            raise EdgecamError("no display to open a window on (DISPLAY is not set); use --headless or --serve PORT")
        try:
            # GUI_NORMAL: no toolbar, so the frame is shown 1:1 (and the window stays resizable).
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise EdgecamError(
                f"cannot open a window ({str(exc).strip().splitlines()[-1]}); use --headless on machines without a display"
            ) from None
        self._shown = False

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        cv2.imshow(self.title, annotated)
        if not self._shown:
            cv2.resizeWindow(self.title, annotated.shape[1], annotated.shape[0])
            self._shown = True
        key = cv2.waitKey(1) & 0xFF
        visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        self._quit = key in (ord("q"), 27) or visible < 1

    @property
    def quit_requested(self) -> bool:
        return self._quit

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


class Recorder(Output):
    """Writes the annotated frames to a video; the file appears complete, at its name, on close."""

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
        os.replace(self._tmp, self.path)
        print(f"recorded {self.frames} frames to {self.path}", file=sys.stderr)
