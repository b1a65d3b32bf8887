"""Reproducible "nothing here" camera frames: what a camera sees when there is nothing to see.

Open-set rejection (issue 9) is measured, and can be trained or calibrated, on frames that
belong to no label. Photos of such scenes are not shipped, so they are generated: plain walls
under uneven light, colour gradients, darkness with sensor noise, heavily blurred textures
(an out-of-focus scene), pure noise, a hand-like skin-coloured blob in front of a wall, and
heavy JPEG artefacts. Every frame also carries a little sensor noise, as a real one does.

Frame ``i`` of seed ``s`` depends on ``(s, i)`` only, so the first 50 frames of a seed are the
same whether 50 or 300 are asked for, and the same seed gives the same bytes on every run
(for the same NumPy and Pillow versions). Kinds take turns, so any ``n >= len(KINDS)`` holds
every kind. numpy + Pillow only, like the rest of ``edgecam.data``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgecam import files

KINDS = ("wall", "gradient", "dark", "blur", "noise", "skin", "jpeg")
SIZE = (320, 240)  # width, height: the shared flowers photos' usual size
_SALT = 0x6E6F7468  # "noth": keeps these streams apart from other users of the same seed

# Skin tones from light to dark (sRGB), interpolated between neighbours.
_SKIN = np.array([[255, 224, 196], [241, 194, 155], [224, 172, 125], [198, 134, 92],
                  [161, 102, 65], [118, 74, 48], [80, 51, 36]], dtype=np.float64)


def nothing_frames(n: int, seed: int = 0, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """``n`` uint8 RGB frames of shape (height, width, 3); kinds in turn (``frame_kind``)."""
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    return [nothing_frame(i, seed, size) for i in range(n)]


def frame_kind(i: int) -> str:
    """The kind of frame ``i`` (the same for every seed)."""
    return KINDS[i % len(KINDS)]


def nothing_frame(i: int, seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frame ``i`` of ``seed``: uint8 RGB, (height, width, 3)."""
    rng = np.random.default_rng([_SALT, seed, i])
    width, height = size
    frame = _MAKERS[frame_kind(i)](rng, height, width)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def write_nothing_frames(folder: str | Path, n: int, seed: int = 0, size: tuple[int, int] = SIZE) -> list[Path]:
    """Write ``n`` frames as PNGs ``nothing-<seed>-<i>-<kind>.png`` into ``folder``; return the paths.

    Frames almost never repeat; a flat one can (a plain wall saved at JPEG quality 1 decodes to
    one colour), and a dataset scan then keeps one copy. Files are written atomically; existing
    ones with the same name are replaced.
    """
    folder = Path(folder)
    files.make_folder(folder)
    paths = []
    for i, frame in enumerate(nothing_frames(n, seed, size)):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        path = folder / f"nothing-{seed}-{i:04d}-{frame_kind(i)}.png"
        files.write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


# -- the kinds ---------------------------------------------------------------------------------
def _wall(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A plain painted wall under uneven light (a lamp off to one side, vignetting)."""
    colour = _random_colour(rng, saturation=rng.uniform(0.0, 0.5))
    return _sensor(rng, colour * _lighting(rng, height, width)[..., None], rng.uniform(1.0, 4.0))


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth blend between two random colours at a random angle."""
    a, b = _random_colour(rng, rng.uniform(0.0, 0.9)), _random_colour(rng, rng.uniform(0.0, 0.9))
    angle = rng.uniform(0.0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width]
    t = (x - width / 2) * np.cos(angle) + (y - height / 2) * np.sin(angle)
    t = (t - t.min()) / max(np.ptp(t), 1e-9)
    t = t ** rng.uniform(0.5, 2.0)  # not always linear
    return _sensor(rng, a + (b - a) * t[..., None], rng.uniform(1.0, 4.0))


def _dark(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Darkness: a near-black frame with a faint cast, strong noise and a little fixed pattern."""
    level = rng.uniform(0.0, 18.0) * (1.0 + 0.4 * rng.uniform(-1, 1, size=3))  # a colour cast
    image = np.broadcast_to(level, (height, width, 3)).astype(np.float64)
    image = image + rng.normal(0.0, 1.0, size=(1, width, 1)) * rng.uniform(0.0, 2.0)  # column pattern
    image = image * _lighting(rng, height, width, strength=0.6)[..., None]
    return _sensor(rng, image, rng.uniform(1.5, 6.0), chroma=True)


def _blur(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A scene far out of focus: random shapes and colours, then a very wide blur."""
    image = Image.new("RGB", (width, height), tuple(int(c) for c in _random_colour(rng, rng.uniform(0, 0.8))))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 16))):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.1, 0.6) * width, rng.uniform(0.1, 0.6) * height
        fill = tuple(int(c) for c in _random_colour(rng, rng.uniform(0, 1)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.04, 0.12) * width))
    return _sensor(rng, np.asarray(image, dtype=np.float64), rng.uniform(1.0, 3.0))


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Pure noise: per-pixel or slightly clumped, grey or colour, around a random level."""
    grain = int(rng.choice([1, 1, 2, 4]))
    h, w = -(-height // grain), -(-width // grain)
    channels = 3 if rng.random() < 0.6 else 1
    if rng.random() < 0.5:
        values = rng.normal(rng.uniform(60, 200), rng.uniform(20, 80), size=(h, w, channels))
    else:
        values = rng.uniform(0, 255, size=(h, w, channels))
    values = np.repeat(np.repeat(values, grain, axis=0), grain, axis=1)[:height, :width]
    return np.clip(np.broadcast_to(values, (height, width, 3)), 0, 255).round()


def _skin(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A hand-like blob: a skin-coloured palm with finger stubs, slightly soft, in front of a wall."""
    wall = _random_colour(rng, saturation=rng.uniform(0.0, 0.4)) * _lighting(rng, height, width)[..., None]
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.35, 0.9) * height
    r = rng.uniform(0.15, 0.3) * min(width, height) * 1.3
    draw.ellipse([cx - r, cy - r * 1.1, cx + r, cy + r * 1.1], fill=255)
    tilt = rng.uniform(-0.5, 0.5)
    for k in range(int(rng.integers(0, 6))):  # fingers: thin ellipses fanning out above the palm
        a = tilt + (k - 2) * 0.3 - np.pi / 2
        fx, fy = cx + np.cos(a) * r * 1.4, cy + np.sin(a) * r * 1.4
        fw = r * 0.22
        draw.ellipse([fx - fw, fy - fw * 2.5, fx + fw, fy + fw * 2.5], fill=255)
    draw.rectangle([cx - r * 0.7, cy, cx + r * 0.7, height], fill=255)  # the wrist, out of frame
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 6.0))), dtype=np.float64) / 255
    tone = _skin_tone(rng)
    shade = 0.75 + 0.35 * _lighting(rng, height, width, strength=0.5)  # the hand's own shading
    image = wall * (1 - alpha[..., None]) + (tone * shade[..., None]) * alpha[..., None]
    return _sensor(rng, image, rng.uniform(1.0, 4.0))


def _jpeg(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Heavy JPEG artefacts: a wall, gradient or blurred scene saved at quality 1-8, maybe at low size."""
    base = _MAKERS[str(rng.choice(["wall", "gradient", "blur", "skin"]))](rng, height, width)
    image = Image.fromarray(base.astype(np.uint8))
    scale = float(rng.choice([1.0, 0.5, 0.25]))
    if scale < 1.0:
        image = image.resize((max(8, int(width * scale)), max(8, int(height * scale))), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(1, 9)))
    decoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").resize((width, height), Image.NEAREST)
    return np.asarray(decoded, dtype=np.float64)


_MAKERS = {"wall": _wall, "gradient": _gradient, "dark": _dark, "blur": _blur, "noise": _noise,
           "skin": _skin, "jpeg": _jpeg}


# -- helpers -----------------------------------------------------------------------------------
def _random_colour(rng: np.random.Generator, saturation: float) -> np.ndarray:
    """An RGB colour (floats 0..255) of random hue and brightness with about this saturation."""
    value = rng.uniform(40, 245)
    hue = rng.uniform(0, 1)
    rgb = np.clip(np.abs(((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6) - 3) - 1, 0, 1)  # pure hue
    return value * (1 - saturation + saturation * rgb)


def _lighting(rng: np.random.Generator, height: int, width: int, strength: float | None = None) -> np.ndarray:
    """A smooth brightness map around 1: light falling off from a random point."""
    strength = rng.uniform(0.05, 0.45) if strength is None else strength
    lx, ly = rng.uniform(-0.5, 1.5) * width, rng.uniform(-0.5, 1.5) * height
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot(x - lx, y - ly) / np.hypot(width, height)
    return 1.0 + strength * (0.5 - np.clip(distance, 0, 1))


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, len(_SKIN) - 1)
    i = min(int(t), len(_SKIN) - 2)
    return _SKIN[i] + (_SKIN[i + 1] - _SKIN[i]) * (t - i)


def _sensor(rng: np.random.Generator, image: np.ndarray, sigma: float, chroma: bool = False) -> np.ndarray:
    """Add a camera's noise (shared over channels, plus colour noise when ``chroma``) and round to 0..255."""
    height, width = image.shape[:2]
    noise = rng.normal(0.0, sigma, size=(height, width, 3 if chroma else 1))
    return np.clip(image + noise, 0, 255).round()
