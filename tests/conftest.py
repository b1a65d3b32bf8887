"""Shared pytest fixtures: the shared data beside the repository, the committed tiny models,
a TensorFlow-free subprocess, awkward data trees and a headless browser."""

from __future__ import annotations

import io
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import DATA, FLOWERS_MINI, SHARED, Chromium, need  # noqa: F401 (re-exported to the tests)

# The read-only data and weights that sit beside the repository (../shared), as in CI. Tests that
# need them call need(path) first: without them they skip, in one line saying how to get them.
WEIGHTS = SHARED / "weights"
V1_WEIGHTS = WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"  # MobileNet v1 0.25: small, for tests that train
FLOWERS = SHARED / "datasets" / "flowers"
# Tiny models committed in tests/data (rebuilt by tests/data/make_fixtures.py): uint8 RGB in,
# edgecam metadata inside. colors: the dominant channel of the frame (red, green, blue).
COLORS_MODEL = DATA / "colors.tflite"
COLORS_INT8_MODEL = DATA / "colors_int8.tflite"
FLOWERS3_MODEL = DATA / "flowers3.tflite"
# The colours models with an unknown score (grey, black, white and other unsaturated frames: unknown).
COLORS_UNKNOWN_MODEL = DATA / "colors_unknown.tflite"
COLORS_UNKNOWN_INT8_MODEL = DATA / "colors_unknown_int8.tflite"

# `python -c BLOCK_TENSORFLOW <edgecam args>` runs the edgecam CLI in a Python where importing
# TensorFlow, Keras or matplotlib fails, as on a Pi, and reports on stderr, as the very last
# line, whether any got imported anyway (NO_HEAVY_MODULES when none did). EDGECAM_BLOCK adds
# more modules to refuse (comma-separated, e.g. "cv2" for a machine without OpenCV).
HEAVY = ("tensorflow", "keras", "tf_keras", "matplotlib")
BLOCK_TENSORFLOW = f"""
import os, sys
BLOCKED = {HEAVY!r} + tuple(filter(None, os.environ.get("EDGECAM_BLOCK", "").split(",")))
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked for this test)")
sys.meta_path.insert(0, _Block())
from edgecam.cli import main
sys.argv = ["edgecam"] + sys.argv[1:]
try:
    main()
finally:
    heavy = sorted(m for m in BLOCKED if m in sys.modules)
    print(f"heavy modules at exit: {{heavy}}", file=sys.stderr, flush=True)
"""
NO_HEAVY_MODULES = "heavy modules at exit: []"


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium (skips with a reason when it is not installed)."""
    chromium = Chromium(tmp_path / "chromium-profile")
    yield chromium
    chromium.close()


@pytest.fixture
def bad_data_tree(tmp_path: Path) -> types.SimpleNamespace:
    """A data folder (labels a, b, c, d) made of real photos plus every kind of awkward file.

    a/ b/ c/ hold three real JPEGs each (copied from flowers-mini daisy, roses, tulips) and d/
    is empty. Returns a namespace: ``root``, ``photos`` (label -> the three plain photos),
    ``bad`` (name -> path of each file that must be skipped) and ``odd`` (name -> path of each
    unusual but valid image), ``conflict`` (the two copies filed under a and c), ``duplicate``
    (the two byte-identical copies inside b), ``upper`` (an .JPG photo), ``photo`` (the PIL
    image the CMYK, RGBA and rotated files were made from).
    """
    sources = {label: sorted(need(FLOWERS_MINI / flower).glob("*.jpg")) for label, flower in
               (("a", "daisy"), ("b", "roses"), ("c", "tulips"))}
    root = tmp_path / "data"
    photos = {}
    for label, files in sources.items():
        (root / label).mkdir(parents=True)
        photos[label] = [Path(shutil.copy(f, root / label / f.name)) for f in files[:3]]
    (root / "d").mkdir()
    spare = sources["a"][3:]  # daisy photos not used above

    def write(relative: str, data: bytes) -> Path:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def encode(img: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, fmt, **options)
        return buffer.getvalue()

    photo = Image.open(spare[0]).convert("RGB")  # 320x263: not square
    rotate_exif = Image.Exif()
    rotate_exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    whole = spare[1].read_bytes()
    bad = {
        "empty": write("a/empty.jpg", b""),
        "truncated": write("a/truncated.jpg", whole[: len(whole) // 2]),
        "text_as_jpg": write("b/readme.jpg", b"These are my holiday photos.\n"),
        "notes": write("c/notes.txt", b"shot on my phone\n"),
    }
    write("a/.DS_Store", b"\x00\x00\x00\x01Bud1")
    write("LICENSE.txt", b"CC-BY\n")

    ramp = np.linspace(0, 65535, 200, dtype=np.float64).round().astype(np.uint16)
    rgba = photo.convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, np.uint8)
    alpha[:, : photo.width // 2] = 0  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    odd = {
        "cmyk": write("b/cmyk.jpg", encode(photo.convert("CMYK"), "JPEG", quality=95)),
        "gray16": write("c/gray16.png", encode(Image.fromarray(np.tile(ramp, (50, 1))), "PNG")),
        "rgba": write("b/rgba.png", encode(rgba, "PNG")),
        "rotated": write("c/sub/rotated.jpg", encode(photo, "JPEG", exif=rotate_exif.tobytes())),
    }
    upper = write("a/SUB/UPPER.JPG", spare[2].read_bytes())
    shared = spare[3].read_bytes()
    conflict = (write("a/shared.jpg", shared), write("c/shared_copy.jpg", shared))
    duplicate = (photos["b"][0], write("b/copy of rose.jpg", photos["b"][0].read_bytes()))
    return types.SimpleNamespace(root=root, photos=photos, bad=bad, odd=odd, upper=upper,
                                 conflict=conflict, duplicate=duplicate, photo=photo)
