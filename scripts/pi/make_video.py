"""Makes a short test video for scripts/pi_emulation.sh from a labelled photo folder.

  make_video.py DATA_DIR OUT_VIDEO FOURCC [--per-label 2] [--hold 5] [--fps 10]

Takes the first --per-label photos (sorted by name) of every label folder, centre-crops each
to 4:3, scales it to 320x240 and holds it for --hold frames. Checks that the file reads back
with the same number of frames, and prints that number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

SIZE = (320, 240)  # width, height
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _frame(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{path}: cannot read")
    h, w = img.shape[:2]
    aspect = SIZE[0] / SIZE[1]
    if w >= h * aspect:
        cw = round(h * aspect)
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = round(w / aspect)
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    return cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("fourcc")
    parser.add_argument("--per-label", type=int, default=2)
    parser.add_argument("--hold", type=int, default=5)
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args()

    photos = []
    for label in sorted(p for p in args.data_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in label.iterdir() if p.suffix.lower() in SUFFIXES)
        photos += files[: args.per_label]
    if not photos:
        raise SystemExit(f"{args.data_dir}: no photos in label folders")

    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*args.fourcc), args.fps, SIZE)
    if not writer.isOpened():
        raise SystemExit(f"{args.out}: this OpenCV cannot write {args.fourcc}")
    written = 0
    for photo in photos:
        frame = _frame(photo)
        for _ in range(args.hold):
            writer.write(frame)
            written += 1
    writer.release()

    cap = cv2.VideoCapture(str(args.out))
    read = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        read += 1
    cap.release()
    if read != written:
        raise SystemExit(f"{args.out}: wrote {written} frames but read back {read}")
    print(read)
    return 0


if __name__ == "__main__":
    sys.exit(main())
