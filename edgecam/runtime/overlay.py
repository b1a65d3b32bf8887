"""Draw the top labels with confidence bars, the FPS and the inference time onto a frame.

Sizes scale with the frame height, so the text is readable at 320x240 and at 1080p alike.
"""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREEN, GREY = (255, 255, 255), (80, 200, 80), (90, 90, 90)


def draw_overlay(bgr: np.ndarray, top: list[tuple[str, float]], fps: float, inference_ms: float,
                 headline: str | None = None) -> np.ndarray:
    """Draw in place on a BGR frame (what OpenCV windows and video writers take) and return it."""
    h, w = bgr.shape[:2]
    unit = max(h, 240) / 480.0
    scale, thick = 0.6 * unit, max(1, round(1.5 * unit))
    line = round(26 * unit)
    pad = round(8 * unit)
    bar_w = round(min(w * 0.35, 220 * unit))
    rows = ([headline] if headline else []) + [f"{label}" for label, _ in top]
    text_w = max((cv2.getTextSize(r, FONT, scale, thick)[0][0] for r in rows), default=0)
    panel_w = min(w, pad * 3 + text_w + bar_w + round(60 * unit))
    panel_h = pad * 2 + line * (len(rows) + 1)
    _shade(bgr, 0, 0, panel_w, panel_h)
    y = pad + line - round(6 * unit)
    if headline:
        cv2.putText(bgr, headline, (pad, y), FONT, scale * 1.1, WHITE, thick + 1, cv2.LINE_AA)
        y += line
    for label, score in top:
        cv2.putText(bgr, label, (pad, y), FONT, scale, WHITE, thick, cv2.LINE_AA)
        x0 = pad * 2 + text_w
        y0 = y - round(14 * unit)
        cv2.rectangle(bgr, (x0, y0), (x0 + bar_w, y0 + round(14 * unit)), GREY, -1)
        cv2.rectangle(bgr, (x0, y0), (x0 + round(bar_w * max(0.0, min(score, 1.0))), y0 + round(14 * unit)), GREEN, -1)
        cv2.putText(bgr, f"{score:.0%}", (x0 + bar_w + pad, y), FONT, scale, WHITE, thick, cv2.LINE_AA)
        y += line
    cv2.putText(bgr, f"{fps:.1f} FPS  {inference_ms:.1f} ms", (pad, y), FONT, scale, WHITE, thick, cv2.LINE_AA)
    return bgr


def _shade(bgr: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """Darken a box so white text stays readable on any scene."""
    region = bgr[y : y + h, x : x + w]
    region[:] = (region * 0.35).astype(np.uint8)
