"""The OpenCV window both camera commands show: frames 1:1, key presses back, q or Esc to quit.

Needs a display: without one, some OpenCV builds abort the whole process, so that is checked
first and reported in one line with what to use instead (``hint``).
"""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from edgecam.errors import EdgecamError

QUIT_KEYS = (ord("q"), 27)  # q and Esc


class Window:
    def __init__(self, title: str, hint: str):
        self.title = title
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise EdgecamError(f"no display to open a window on (DISPLAY is not set); {hint}")
        try:
            # GUI_NORMAL: no toolbar, so the frame is shown 1:1 (and the window stays resizable).
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise EdgecamError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}); {hint}") from None
        self._shown = False

    def show(self, bgr: np.ndarray) -> int | None:
        """Show a BGR frame; the key pressed (-1 for none), or None once q, Esc or closing the window ends it."""
        cv2.imshow(self.title, bgr)
        if not self._shown:
            cv2.resizeWindow(self.title, bgr.shape[1], bgr.shape[0])
            self._shown = True
        key = cv2.waitKey(1)
        if (key >= 0 and key & 0xFF in QUIT_KEYS) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return None
        return key & 0xFF if key >= 0 else -1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)
