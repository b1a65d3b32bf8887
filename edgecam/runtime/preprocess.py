"""The one place a frame becomes a model input: centre-crop to the model's aspect, then resize.

Training (embeddings, calibration, evaluation) and the camera loop all call ``fit_to_input``,
so a photo and the same scene from the camera reach the model through identical pixels.
Normalisation is not done here: edgecam models carry it inside the graph (uint8 RGB in).
"""

from __future__ import annotations

import cv2
import numpy as np


def center_crop_box(height: int, width: int, aspect: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the largest centred box with ``aspect`` = w / h."""
    if width >= height * aspect:
        w = max(1, round(height * aspect))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width / aspect))
    return (height - h) // 2, 0, h, width


def fit_to_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 → ``size`` = (height, width) uint8, centre-cropped so nothing is stretched."""
    out_h, out_w = size
    top, left, h, w = center_crop_box(rgb.shape[0], rgb.shape[1], out_w / out_h)
    crop = rgb[top : top + h, left : left + w]
    if (h, w) == (out_h, out_w):
        return np.ascontiguousarray(crop)
    # Area averaging only where it matters (shrinking 2x or more, where bilinear would alias);
    # for smaller steps bilinear looks the same and costs a tenth, which counts per frame.
    interpolation = cv2.INTER_AREA if h >= 2 * out_h and w >= 2 * out_w else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_w, out_h), interpolation=interpolation)
