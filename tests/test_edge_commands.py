"""Every edge command, run for real in a Python that cannot import TensorFlow, Keras or matplotlib.

`run`, `evaluate`, `collect` and `benchmark` each end with no heavy module imported (the last
stderr line says so). The inputs are solid red, green and blue frames, so the committed colours
model's answer for each is known. Without OpenCV, the commands that need it say in one line how
to install it, instead of a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import BLOCK_TENSORFLOW, COLORS_MODEL, NO_HEAVY_MODULES
from helpers import isolated_env

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
SEQUENCE = ["red", "red", "green", "blue", "blue", "green", "red"]


def edgecam(tmp_path: Path, *args, block: str = "") -> subprocess.CompletedProcess:
    """The real CLI, TensorFlow blocked (plus ``block``: more modules), writing nowhere but tmp_path."""
    env = isolated_env(tmp_path, display=False, EDGECAM_BLOCK=block)
    return subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, *map(str, args)], capture_output=True,
                          text=True, timeout=180, env=env, cwd=tmp_path)


def ends_clean(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr lines before the heavy-modules line, after checking that line and the absence of tracebacks."""
    lines = proc.stderr.splitlines()
    assert lines and lines[-1] == NO_HEAVY_MODULES, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[:-1]


def solid(name: str, h: int = 48, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), COLORS[name], np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def image_folder(folder: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_png(folder / f"{i:02d}-{name}.png", solid(name))
    return folder


def video(path: Path, names: list[str]) -> Path:
    """A lossless FFV1 video, one frame per name."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (64, 48))
    assert writer.isOpened(), f"OpenCV cannot write FFV1 to {path}"
    for name in names:
        writer.write(cv2.cvtColor(solid(name), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_run_headless(tmp_path, kind):
    if kind == "video":
        source = video(tmp_path / "colors.avi", SEQUENCE)
    else:
        source = image_folder(tmp_path / "frames", SEQUENCE)
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", source, "--headless", "--hold", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = ends_clean(proc)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["label"] for r in results] == SEQUENCE  # every frame, in order, each its colour
    assert [r["frame"] for r in results] == list(range(len(SEQUENCE)))
    assert all(r["top"][0]["score"] > 0.99 and len(r["top"]) == 3 for r in results)
    assert [r["changed"] for r in results] == [True, False, True, True, False, True, True]
    assert log[0] == f"{COLORS_MODEL}: 3 labels, input 32x32 uint8; source: {source}"


def test_evaluate_without_matplotlib(tmp_path):
    data = tmp_path / "data"
    for name in COLORS:
        for i in range(3):  # different sizes: byte-identical files would count once
            write_png(data / name / f"{name}{i}.png", solid(name, 40 + 7 * i, 30 + 11 * i))
    out = tmp_path / "out"
    proc = edgecam(tmp_path, "evaluate", COLORS_MODEL, data, "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = ends_clean(proc)
    assert proc.stdout.splitlines()[0] == "accuracy: 1.0000 on 9 images (0 wrong, 0 skipped)"
    assert proc.stdout.splitlines()[-1] == f"results: {out}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] == 1.0 and metrics["misclassified"] == []
    assert not (out / "confusion_matrix.png").exists()
    assert "note: matplotlib is not installed, skipping plots (pip install matplotlib)" in log
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "misclassified.csv", "predictions.csv"]


def test_collect_serves_until_the_images_end_and_saves_nothing(tmp_path):
    frames = image_folder(tmp_path / "frames", SEQUENCE)
    data = tmp_path / "dataset"
    proc = edgecam(tmp_path, "collect", data, "--labels", "mug,keys", "--serve", "0", "--source", frames)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = ends_clean(proc)
    assert any(re.search(r"collect page: http://127\.0\.0\.1:\d+", line) for line in log), log
    assert log[-1] == f"saved 0 photos to {data}: mug +0 (0), keys +0 (0)"
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == ["keys", "mug"]  # empty folders


def test_benchmark(tmp_path):
    proc = edgecam(tmp_path, "benchmark", COLORS_MODEL, "--runs", "3", "--threads", "1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ends_clean(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{COLORS_MODEL}: ") and lines[0].endswith(", input 32x32 uint8, 3 labels")
    assert lines[1].split() == ["threads", "mean", "ms", "p50", "ms", "p90", "ms", "FPS"]
    rows = [line.split() for line in lines[2:-1]]
    assert [r[0] for r in rows] == ["1", "2"] and all(float(r[-1]) > 0 for r in rows)
    assert re.fullmatch(r"peak memory: \d+ MB", lines[-1])


@pytest.mark.parametrize("command", ["run", "collect", "evaluate", "benchmark"])
def test_without_opencv_one_line_says_how_to_install_it(tmp_path, command):
    frames = image_folder(tmp_path / "frames", ["red"])
    args = {
        "run": ["run", COLORS_MODEL, "--source", frames, "--headless"],
        "collect": ["collect", tmp_path / "dataset", "--labels", "mug", "--serve", "0", "--source", frames],
        "evaluate": ["evaluate", COLORS_MODEL, tmp_path],
        "benchmark": ["benchmark", COLORS_MODEL, "--runs", "1"],
    }[command]
    proc = edgecam(tmp_path, *args, block="cv2")
    assert proc.returncode == 1, proc.stderr
    (line,) = ends_clean(proc)
    assert line.startswith("Error: OpenCV is not installed (No module named 'cv2'"), line
    assert "on a Raspberry Pi `sudo apt install python3-opencv`" in line, line
    assert "elsewhere `pip install 'edgecam[opencv]'`" in line, line
    assert proc.stdout == ""
    assert not (tmp_path / "dataset").exists() and not (tmp_path / "runs").exists()
