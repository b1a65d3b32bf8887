"""Shared helpers for the ``edgecam run`` tests: one small trained model, real photos, videos.

The model is trained once per test session (MobileNet v1 0.25, five flower labels, 40 training
photos each) and reused by test_run.py and test_foreign_model.py. Each of those modules wraps
``trained_model`` in its own session fixture; the memo here makes the training happen once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import BLOCK_TENSORFLOW, FLOWERS, NO_HEAVY_MODULES, V1_WEIGHTS, WEIGHTS, need  # noqa: F401 (re-exported)

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
PHOTO_SIZE = (320, 240)  # (width, height) of most flowers photos: videos are written at this size
TRAIN_PER_LABEL = 40


_memo: dict[str, types.SimpleNamespace] = {}


def trained_model(tmp_path_factory) -> types.SimpleNamespace:
    """The session's model: ``path`` (model.tflite), ``run_dir``, ``labels``. Trains on first use."""
    if "model" in _memo:
        return _memo["model"]
    need(FLOWERS / "train")
    need(V1_WEIGHTS)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecam.config.finetune import load_finetune_config
    from edgecam.training.finetune import finetune

    root = tmp_path_factory.mktemp("run-model")
    data = root / "data"
    for label in LABELS:
        (data / label).mkdir(parents=True)
        for photo in sorted((FLOWERS / "train" / label).glob("*.jpg"))[:TRAIN_PER_LABEL]:
            shutil.copy(photo, data / label / photo.name)
    cfg = load_finetune_config(None, [
        f"data.path={data}", f"model.weights={WEIGHTS}", f"output={root / 'runs'}", f"cache={root / 'cache'}",
        "name=run", "model.backbone=mobilenet_v1", "model.alpha=0.25", "train.augment.views=0",
        "train.epochs=20", "train.learning_rate=0.003",
    ])
    result = finetune(cfg, progress=False)
    model = types.SimpleNamespace(path=result.model_path, run_dir=result.run_dir, labels=LABELS)
    _memo["model"] = model
    return model


def upright_photos(label: str, count: int, split: str = "test", size: tuple[int, int] = PHOTO_SIZE) -> list[Path]:
    """The first ``count`` photos of ``label`` (name order) that are exactly ``size`` and need no EXIF rotation."""
    found = []
    for path in sorted(need(FLOWERS / split / label).glob("*.jpg")):
        with Image.open(path) as img:
            if img.size == size and img.getexif().get(0x0112, 1) == 1:
                found.append(path)
        if len(found) == count:
            return found
    pytest.skip(f"fewer than {count} {size[0]}x{size[1]} photos in {FLOWERS / split / label}")


def write_video(path: Path, frames: list[np.ndarray], fourcc: str, fps: float = 10.0) -> Path:
    """Write RGB frames with cv2.VideoWriter; ``fourcc`` 'FFV1' (.avi) is lossless, 'mp4v' is not."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB, decoded by OpenCV as ``edgecam run`` decodes it."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def edgecam(*args: str, block_tensorflow: bool = True, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the edgecam CLI in a fresh Python (by default one that cannot import TensorFlow)."""
    prefix = ["-c", BLOCK_TENSORFLOW] if block_tensorflow else ["-m", "edgecam"]
    return subprocess.run([sys.executable, *prefix, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def edgecam_popen(*args: str, **kwargs) -> subprocess.Popen:
    """Start the edgecam CLI (TensorFlow blocked) with piped stdout and stderr."""
    return subprocess.Popen([sys.executable, "-c", BLOCK_TENSORFLOW, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def json_lines(stdout: str) -> list[dict]:
    """Parse stdout that must hold one JSON object per line and nothing else."""
    lines = stdout.splitlines()
    results = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in results)
    return results


def predictions_by_name(out_dir: Path) -> dict[str, dict]:
    """``edgecam evaluate --out`` predictions.csv → {file name: row}."""
    import csv

    with open(out_dir / "predictions.csv", newline="") as f:
        return {Path(row["path"]).name: row for row in csv.DictReader(f)}


def photo_folder(root: Path, photos: list[Path]) -> Path:
    """Copy photos into ``root/<label>/`` (label = the photo's parent folder name) for evaluate."""
    for photo in photos:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / photo.parent.name / photo.name)
    return root
