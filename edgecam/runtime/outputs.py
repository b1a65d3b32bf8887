"""Where results go, each a separate part: JSON lines, the window, a recorded video.

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
from edgecam.console import log
from edgecam.runtime.result import Result
from edgecam.runtime.window import Window


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
        log(f"recorded {self.frames} frames to {self.path}")
