"""An image's width and height from its header, without decoding it (PNG and JPEG).

OpenCV can only tell an image's size by decoding all of it; the image source reads the size
here first, to decode big photos reduced (``sources.reduced_flag``).
"""

from __future__ import annotations

import os
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4 (DHT), C8, CC (DAC).
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field: TEM, RST0..7, SOI.
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})
MAX_SEGMENTS = 1000  # a header is a few segments; anything longer is not worth reading


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) as stored (before EXIF rotation), or None when it cannot be told cheaply."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return (width, height) if width and height else None
            if head.startswith(b"\xff\xd8"):
                f.seek(2)
                return _jpeg_size(f)
    except OSError:
        return None
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first start-of-frame."""
    for _ in range(MAX_SEGMENTS):
        byte = f.read(1)
        if byte != b"\xff":
            return None
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes before a marker
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in JPEG_STANDALONE:
            continue
        if code in (0xD9, 0xDA):  # end of image, or start of scan: no frame header before it
            return None
        length = f.read(2)
        if len(length) < 2 or struct.unpack(">H", length)[0] < 2:
            return None
        size = struct.unpack(">H", length)[0]
        if code in JPEG_SOF:
            frame = f.read(5)  # precision, height, width
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return (width, height) if width and height else None
        f.seek(size - 2, os.SEEK_CUR)
    return None
