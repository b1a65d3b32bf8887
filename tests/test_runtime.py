"""The edge runtime: its import boundary, preprocessing, and one-line errors for bad models."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecam.errors import ModelError
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.preprocess import center_crop_box, fit_to_input

PACKAGE = Path(__file__).resolve().parents[1] / "edgecam"
# flatbuffers is LiteRT's own pure-Python dependency (the metadata writer builds with it).
# picamera2 is the Pi's camera library, imported only when that source is used.
EDGE_ALLOWED = {"numpy", "cv2", "ai_edge_litert", "tflite_runtime", "flatbuffers", "picamera2"}
EDGE_INTERNAL = {"edgecam.runtime", "edgecam.modelfile", "edgecam.errors", "edgecam.fsutil"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", ["runtime", "modelfile"])
def test_edge_code_imports_only_numpy_opencv_litert_and_stdlib(folder):
    """The Pi has no TensorFlow (and maybe no Pillow or matplotlib): keep the boundary explicit."""
    for path in sorted((PACKAGE / folder).glob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            ok = (top in sys.stdlib_module_names or top in EDGE_ALLOWED
                  or any(name == m or name.startswith(m + ".") for m in EDGE_INTERNAL) or name == "edgecam")
            assert ok, f"{path.relative_to(PACKAGE.parent)} imports {name}"


def test_fsutil_and_errors_are_stdlib_only():
    for path in (PACKAGE / "fsutil.py", PACKAGE / "errors.py"):
        assert all(n.split(".")[0] in sys.stdlib_module_names for n in imported_modules(path)), path


def test_fit_to_input_centre_crops_without_stretching():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, :40] = 255  # a white band at the left edge, outside the centred square
    out = fit_to_input(frame, (224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out.max() == 0  # the band was cropped away, not squeezed in
    assert center_crop_box(240, 320, 1.0) == (0, 40, 240, 240)
    assert center_crop_box(1080, 1920, 4 / 3) == (0, 240, 1080, 1440)
    small = fit_to_input(np.full((100, 50, 3), 7, np.uint8), (224, 224))
    assert small.shape == (224, 224, 3) and (small == 7).all()


def test_bad_model_files_are_one_line_errors(tmp_path):
    cases = {
        tmp_path / "missing.tflite": "model file not found",
        tmp_path: "is a folder, expected a model file",
    }
    text = tmp_path / "notes.tflite"
    text.write_text("not a model at all")
    cases[text] = "not a TFLite model (no TFL3 identifier)"
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 64)
    for path, message in cases.items():
        with pytest.raises(ModelError) as info:
            Classifier(path)
        assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match=f"^{broken}: "):
        Classifier(broken)
