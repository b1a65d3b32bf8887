"""Deterministic image augmentation for cached embedding views.

Each augmented view is a pure function of (image, seed, view index, settings), so its embedding
can be cached on disk and a re-run with the same seed sees exactly the same views.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import cv2
import numpy as np

from edgecam.config.finetune import AugmentConfig
from edgecam.modelfile.preprocess import fit_to_input


def view_rng(seed: int, digest: str, view: int) -> np.random.Generator:
    key = hashlib.sha256(f"{seed}:{digest}:{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def settings_key(cfg: AugmentConfig, seed: int) -> str:
    """Short hash of everything that changes augmented pixels (for the cache key)."""
    blob = json.dumps({"augment": asdict(cfg), "seed": seed, "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def augmented_view(rgb: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A randomly flipped, rotated, zoomed, re-lit ``size``x``size`` crop of ``rgb``.

    Starts from the same centre crop the runtime uses (shrunk with the runtime's resize to a
    little above ``size``), so augmented views match view 0 in scale and sharpness.
    """
    big = max(size, round(size * (1.0 + cfg.zoom)))
    base = fit_to_input(rgb, (big, big))
    zoom = 1.0 + rng.uniform(0.0, cfg.zoom)  # zoom in only: no empty borders
    angle = rng.uniform(-cfg.rotation, cfg.rotation)
    margin = (1.0 - 1.0 / zoom) * big / 2  # room to shift the crop centre
    cx = big / 2 + rng.uniform(-margin, margin)
    cy = big / 2 + rng.uniform(-margin, margin)
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, size / big * zoom)
    matrix[0, 2] += size / 2 - cx
    matrix[1, 2] += size / 2 - cy
    out = cv2.warpAffine(base, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if cfg.flip and rng.random() < 0.5:
        out = out[:, ::-1]
    gain = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    shift = 255.0 * rng.uniform(-cfg.brightness, cfg.brightness)
    mean = out.mean()
    out = (out.astype(np.float32) - mean) * gain + mean + shift
    return np.clip(out, 0, 255).astype(np.uint8)
