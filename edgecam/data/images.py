"""Decode one image file into the HxWx3 uint8 RGB array every other part of edgecam expects.

Photos from phones, scanners and the web come in many shapes: EXIF-rotated JPEGs, CMYK,
16-bit PNGs, transparent PNGs, truncated downloads. Decoding them all the same way here means
training sees what the user saw in their image viewer, and a broken file is reported with a
short reason instead of crashing a long run half-way.
"""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


# Formats Pillow may open. Decoding is by content, not suffix (a PNG named .jpg is fine), but
# not every format: Pillow's EPS plugin runs Ghostscript, for instance. MPO is how Pillow < 13
# names the multi-picture JPEGs many phones write; TIFF and GIF are harmless extras.
FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "WEBP", "GIF", "TIFF")

# Largest image we decode: 120 megapixels (a 108 MP phone sensor's full-resolution mode fits),
# about 360 MB as RGB. Anything larger is almost certainly a decompression bomb, and decoding
# a few of them in parallel could exhaust the memory of a small workstation.
MAX_PIXELS = 120_000_000

_ORIENTATION = 0x0112  # EXIF tag
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}


class ImageDecodeError(Exception):
    """An image file cannot be used; ``str()`` is a short reason such as "truncated image"."""

    def __init__(self, reason: str, name: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.name = name

    def __str__(self) -> str:
        return self.reason


def digest(data: bytes) -> str:
    """sha256 hex digest of a file's bytes: the identity of an image for de-duplication and splits."""
    return hashlib.sha256(data).hexdigest()


def load_rgb(path: str | Path) -> np.ndarray:
    """Read and decode an image file (see ``decode_rgb``); unreadable files raise ImageDecodeError."""
    return decode_rgb(read_bytes(path), name=str(path))


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, with OSError turned into ImageDecodeError so callers handle one error type."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"cannot read file ({err.strerror or err})", str(path)) from err


def decode_rgb(data: bytes, name: str = "") -> np.ndarray:
    """Decode image bytes into a writable HxWx3 uint8 RGB array, upright as EXIF says.

    ``name`` only labels the ImageDecodeError raised for empty, truncated, oversized or
    non-image data. Truncated files always raise: Pillow's global LOAD_TRUNCATED_IMAGES is
    left alone (and must not be switched on by other code, or truncation goes unnoticed).
    """
    return np.array(decode_image(data, name))


def decode_image(data: bytes, name: str = "") -> Image.Image:
    """``decode_rgb`` without the numpy copy: a fully loaded, upright RGB Pillow image."""
    img = _open_loaded(data, name)
    img = _upright(img)
    try:
        return _to_rgb(img)
    except ValueError as err:  # Pillow has no conversion for this mode (e.g. LAB)
        raise ImageDecodeError(f"unsupported colour mode {img.mode!r}", name) from err


def _open_loaded(data: bytes, name: str) -> Image.Image:
    """Open and fully decode ``data``; every way this fails becomes one short reason."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)", name)
    try:
        img = Image.open(io.BytesIO(data), formats=_open_formats())
        _check_size(img, name)
        img.load()  # decodes every pixel now, so a truncated file fails here and not later
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as err:
        raise ImageDecodeError(_unidentified_reason(data), name) from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow's own limit (or its warning, when warnings are turned into errors).
        raise ImageDecodeError(f"image too large: possible decompression bomb ({err})", name) from err
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError,
        # EOFError, struct.error, ... for malformed files; all mean "this file is unusable".
        raise ImageDecodeError(_corrupt_reason(err), name) from err
    return img


@functools.lru_cache(maxsize=1)
def _open_formats() -> tuple[str, ...]:
    """FORMATS this Pillow registers (naming an unregistered one makes Image.open fail)."""
    Image.init()
    return tuple(name for name in FORMATS if name in Image.OPEN)


def _check_size(img: Image.Image, name: str) -> None:
    """Refuse oversized images from the header alone, before any pixel memory is allocated."""
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"image too large ({width}x{height} pixels, limit {MAX_PIXELS / 1e6:g} megapixels): "
            "possible decompression bomb",
            name,
        )


def _unidentified_reason(data: bytes) -> str:
    """Why Pillow did not recognise the data; iPhone HEIC photos deserve a hint of their own."""
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIC/AVIF image (not supported: convert it to JPEG)"
    return "not an image (cannot identify image file)"


def _corrupt_reason(err: Exception) -> str:
    message = str(err)
    if "truncated" in message.lower() or isinstance(err, EOFError):
        return "truncated image"
    kind = type(err).__name__
    return f"corrupt image ({kind}: {message})" if message else f"corrupt image ({kind})"


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, as image viewers do: phones store portrait photos sideways."""
    try:
        orientation = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block does not spoil the pixels
        return img
    if orientation not in range(2, 9):
        return img
    return ImageOps.exif_transpose(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_deep_to_uint8(img)).convert("RGB")
    if _has_alpha(img):
        return _on_white(img.convert("RGBA"))
    return img.convert("RGB")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _on_white(rgba: Image.Image) -> Image.Image:
    """Composite onto white rather than dropping alpha.

    Transparent pixels often hold arbitrary colour (black, or leftovers of an edit); dropping
    alpha would show that colour, while white is what the user saw when choosing the image.
    """
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _deep_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float grayscale image to 0..255 by its bit depth.

    "I;16*" is 16-bit. "I" is what Pillow < 10 (e.g. Raspberry Pi OS's) returns for 16-bit
    PNGs, so "I" data within 0..65535 is read as 16-bit too; "F" within 0..1 as unit range.
    Anything else (negative or wider values) is stretched from its min..max.
    """
    values = np.nan_to_num(np.asarray(img, dtype=np.float64))
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and low >= 0 and high <= 65535):
        low, high = 0.0, 65535.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.rint((values - low) * scale), 0, 255).astype(np.uint8)
