"""Deterministic image augmentation for cached embedding views.

Each augmented view is a pure function of (image, seed, view index, settings, fit), so its
embedding can be cached on disk and a re-run with the same seed sees exactly the same views.
Besides the geometric and lighting changes, a view can get what a small camera does to a
scene (``camera``): low light, a colour cast, blur, sensor noise and JPEG compression.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import cv2
import numpy as np

from edgecam.config.finetune import AugmentConfig
from edgecam.modelfile.preprocess import PREPROCESSING, Preprocessing


def view_rng(seed: int, digest: str, view: int) -> np.random.Generator:
    key = hashlib.sha256(f"{seed}:{digest}:{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def settings_key(cfg: AugmentConfig, seed: int, rule: Preprocessing = PREPROCESSING) -> str:
    """Short hash of everything that changes augmented pixels (for the cache key)."""
    blob = {"augment": asdict(cfg), "seed": seed, "v": 2}
    if rule != PREPROCESSING:
        blob["fit"] = rule.key
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def augmented_view(rgb: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator,
                   rule: Preprocessing = PREPROCESSING) -> np.ndarray:
    """A randomly flipped, rotated, zoomed, re-lit ``size``x``size`` crop of ``rgb``.

    Starts from the frame fitted by ``rule``, the runtime's rule (shrunk with the runtime's
    resize to a little above ``size``), so augmented views match view 0 in framing, scale and
    sharpness.
    """
    big = max(size, round(size * (1.0 + cfg.zoom)))
    base = rule.apply(rgb, (big, big))
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
    out = np.clip(out, 0, 255)
    if cfg.camera > 0.0 and rng.random() < cfg.camera:
        out = camera_effects(out, cfg, rng)
    return out.astype(np.uint8)


def camera_effects(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """What a small camera does to a scene, each effect half the time at a random strength up to
    its setting: low light (darker, and noisier), colour cast, blur, sensor noise, JPEG.
    Float 0..255 in, uint8 out."""
    x = np.asarray(image, np.float32)
    noise = rng.uniform(0.0, cfg.noise) if rng.random() < 0.5 else 0.0
    if cfg.dark and rng.random() < 0.5:
        level = 1.0 - rng.uniform(0.0, cfg.dark)  # exposure left; the camera's gain brings noise
        x = 255.0 * (x / 255.0 * level) ** rng.uniform(1.0, 1.3)
        noise += cfg.noise * (1.0 - level)
    if cfg.color and rng.random() < 0.5:
        x = x * (1.0 + rng.uniform(-cfg.color, cfg.color, 3)).astype(np.float32)
    if cfg.blur and rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, max(0.3, cfg.blur)))
    if noise:
        x = x + rng.normal(0.0, 255.0 * noise, x.shape).astype(np.float32)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if cfg.jpeg and rng.random() < 0.5:
        quality = int(rng.integers(cfg.jpeg, 96))
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
