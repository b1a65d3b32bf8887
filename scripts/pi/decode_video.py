"""Decodes a video with this Python's OpenCV, for scripts/pi_emulation.sh.

  decode_video.py VIDEO [OUT.npy]

Prints the number of frames read; with OUT.npy also saves the first 100 of them
(N x H x W x 3 uint8, BGR) so the host can compare the pixels its OpenCV/FFmpeg decoded with
the emulated Pi's.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np


def main() -> int:
    cap = cv2.VideoCapture(sys.argv[1])
    frames, count = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        count += 1
        if len(frames) < 100:
            frames.append(frame)
    cap.release()
    if len(sys.argv) > 2 and frames:
        np.save(sys.argv[2], np.stack(frames))
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
