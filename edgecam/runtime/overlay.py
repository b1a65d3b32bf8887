"""Draw the decided label, the top labels with confidence bars, the FPS and the inference time
onto a frame (``draw_overlay``), or plain rows of text (``draw_text_rows``, collect's key help).

The decided label is the headline (``decided_text``: "red 97%", or "unknown"): with smoothing,
a threshold or the model's rejection it can differ from the first bar, and it is the answer
the JSON lines, the page and --on-change give.

Sizes scale with the frame (its height, or its width for tall frames), with a floor so the
text stays readable on small frames: 9-10 px capitals at 320x240, 13 px at 640x480, 30 px at
1080p. The panel always stays inside the frame: on narrow frames the bars get shorter first,
then long labels are shortened with "...".
"""

from __future__ import annotations

import cv2
import numpy as np

from edgecam.runtime.decisions import UNKNOWN

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREEN, GREY = (255, 255, 255), (80, 200, 80), (90, 90, 90)
# 1.0 at 480 lines; below 320 lines the sizes stop shrinking (font scale 0.4, ~9 px capitals).
MIN_UNIT = 2 / 3


def layout_unit(height: int, width: int) -> float:
    """Scale factor for sizes: frame height / 480, limited by a 4:3 share of the width, at least MIN_UNIT."""
    return max(min(height, width * 0.75) / 480.0, MIN_UNIT)


def decided_text(label: str, score: float) -> str:
    """The overlay's headline: the decided label with its score, or just "unknown"."""
    return UNKNOWN if label == UNKNOWN else f"{label} {score:.0%}"


def draw_overlay(bgr: np.ndarray, top: list[tuple[str, float]], fps: float, inference_ms: float,
                 headline: str | None = None) -> np.ndarray:
    """Draw in place on a BGR frame (what OpenCV windows and video writers take) and return it."""
    h, w = bgr.shape[:2]
    unit = layout_unit(h, w)
    scale, thick = 0.6 * unit, max(1, round(1.5 * unit))
    head_scale, head_thick = scale * 1.1, thick + 1
    line = round(26 * unit)
    pad = max(3, round(8 * unit))
    bar_h = max(3, round(14 * unit))
    status = f"{fps:.1f} FPS  {inference_ms:.1f} ms"

    labels = [label for label, _ in top]
    text_w = max((_width(s, scale, thick) for s in labels), default=0)
    percent_w = _width("100%", scale, thick)
    bar_w = round(min(w * 0.3, 220 * unit))
    # Fit the row (pad, label, pad, bar, pad, percent, pad) into the frame width.
    room = w - 4 * pad - percent_w
    if text_w + bar_w > room:
        bar_w = max(round(40 * unit), room - text_w)
        if text_w + bar_w > room:
            text_w = max(0, room - bar_w)
            labels = [_shorten(s, text_w, scale, thick) for s in labels]
    if headline:
        headline = _shorten(headline, w - 2 * pad, head_scale, head_thick)
    panel_w = min(w, max(4 * pad + text_w + bar_w + percent_w, 2 * pad + _width(status, scale, thick),
                         2 * pad + (_width(headline, head_scale, head_thick) if headline else 0)))
    panel_h = min(h, pad * 2 + line * (len(labels) + 1 + (1 if headline else 0)))
    _shade(bgr, 0, 0, panel_w, panel_h)

    y = pad + line - round(6 * unit)  # text baseline of the first row
    if headline:
        cv2.putText(bgr, headline, (pad, y), FONT, head_scale, WHITE, head_thick, cv2.LINE_AA)
        y += line
    x_bar = 2 * pad + text_w
    for label, (_, score) in zip(labels, top):
        cv2.putText(bgr, label, (pad, y), FONT, scale, WHITE, thick, cv2.LINE_AA)
        y0 = y - bar_h
        filled = round(bar_w * max(0.0, min(score, 1.0)))
        cv2.rectangle(bgr, (x_bar, y0), (x_bar + bar_w - 1, y - 1), GREY, -1)
        if filled:
            cv2.rectangle(bgr, (x_bar, y0), (x_bar + filled - 1, y - 1), GREEN, -1)
        cv2.putText(bgr, f"{score:.0%}", (x_bar + bar_w + pad, y), FONT, scale, WHITE, thick, cv2.LINE_AA)
        y += line
    cv2.putText(bgr, status, (pad, y), FONT, scale, WHITE, thick, cv2.LINE_AA)
    return bgr


def draw_text_rows(bgr: np.ndarray, rows: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """Rows of coloured text on a shaded panel at the top left, sized like the overlay."""
    unit = layout_unit(*bgr.shape[:2])
    scale, thick, line, pad = 0.6 * unit, max(1, round(1.5 * unit)), round(26 * unit), max(3, round(8 * unit))
    width = max((_width(text, scale, thick) for text, _ in rows), default=0) + 2 * pad
    _shade(bgr, 0, 0, min(bgr.shape[1], width), min(bgr.shape[0], pad * 2 + line * len(rows)))
    for i, (text, color) in enumerate(rows):
        cv2.putText(bgr, text, (pad, pad + line * (i + 1) - round(6 * unit)), FONT, scale, color, thick, cv2.LINE_AA)
    return bgr


def _width(text: str, scale: float, thick: int) -> int:
    return cv2.getTextSize(text, FONT, scale, thick)[0][0]


def _shorten(text: str, max_w: int, scale: float, thick: int) -> str:
    """``text`` cut and ended with "..." so that it is at most ``max_w`` pixels wide."""
    if _width(text, scale, thick) <= max_w:
        return text
    for n in range(len(text) - 1, 0, -1):
        short = text[:n].rstrip() + "..."
        if _width(short, scale, thick) <= max_w:
            return short
    return ""


def _shade(bgr: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """Darken a box so white text stays readable on any scene."""
    region = bgr[y : y + h, x : x + w]
    region[:] = (region * 0.35).astype(np.uint8)
