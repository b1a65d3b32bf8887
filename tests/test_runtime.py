"""The edge runtime in pieces: preprocessing, bad models, `edgecam benchmark`, `run --config`,
decisions (smoothing, threshold, hold) and the default camera's fallback.

The import boundary is checked by test_architecture.py; the preprocessing contract (metadata
versus code) by test_modelfile.py.
"""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import COLORS_MODEL
from edgecam.cli import cli
from edgecam.errors import ModelError
from edgecam.modelfile.preprocess import PREPROCESSING, fit_to_input
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.decisions import UNKNOWN, Decider
from edgecam.runtime.sources import OpenCVSource, Picamera2Source, SourceError, open_source

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def solid_pngs(folder, names):
    """One solid-colour PNG per name (in name order: 00-red.png, 01-green.png, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        rgb = np.full((48, 64, 3), COLORS[name], np.uint8)
        assert cv2.imwrite(str(folder / f"{i:02d}-{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


# -- preprocessing and bad models --------------------------------------------------------------
def test_fit_to_input_centre_crops_without_stretching():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, :40] = 255  # a white band at the left edge, outside the centred square
    out = fit_to_input(frame, (224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out.max() == 0  # the band was cropped away, not squeezed in
    assert PREPROCESSING.box(240, 320, 1.0) == (0, 40, 240, 240)
    assert PREPROCESSING.box(1080, 1920, 4 / 3) == (0, 240, 1080, 1440)
    assert PREPROCESSING.box(640, 480, 1.0) == (80, 0, 480, 480)  # portrait: rows cropped
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


# -- edgecam benchmark -----------------------------------------------------------------------------
def test_benchmark_prints_a_row_per_thread_count():
    result = CliRunner().invoke(cli, ["benchmark", str(COLORS_MODEL), "--runs", "3", "--threads", "1,2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    size = COLORS_MODEL.stat().st_size / 1e3  # a few kB: shown in kB
    assert lines[0] == f"{COLORS_MODEL}: {size:.1f} kB, input 32x32 uint8, 3 labels"
    assert lines[1].split() == ["threads", "mean", "ms", "p50", "ms", "p90", "ms", "FPS"]
    rows = [line.split() for line in lines[2:-1]]
    assert [int(r[0]) for r in rows] == [1, 2]
    for _, mean, p50, p90, fps in rows:
        assert 0 <= float(p50) <= float(p90) and float(fps) > 0
        # FPS is 1000 / mean latency; the printed mean is rounded to 0.01 ms (a 3 kB model may show 0.00).
        upper = 1000 / (float(mean) - 0.005) if float(mean) > 0.005 else float("inf")
        assert 1000 / (float(mean) + 0.005) - 0.05 <= float(fps) <= upper + 0.05
    assert re.fullmatch(r"peak memory: \d+ MB", lines[-1]), lines[-1]


def test_benchmark_rejects_bad_thread_lists():
    result = CliRunner().invoke(cli, ["benchmark", str(COLORS_MODEL), "--threads", "1,two"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: --threads: expected numbers like 1,2,4, got '1,two'"


# -- edgecam run --config --------------------------------------------------------------------------
def test_run_takes_its_settings_from_a_config_file(tmp_path):
    photos = solid_pngs(tmp_path / "photos", ["red", "green", "blue", "red", "blue"])
    config = tmp_path / "run.yaml"
    config.write_text(f"source: {photos}\nheadless: true\nmax_frames: 4\ntop_k: 2\nhold: 0\n")
    result = CliRunner().invoke(cli, ["run", str(COLORS_MODEL), "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4  # max_frames
    assert [r["label"] for r in lines] == ["red", "green", "blue", "red"]  # source: the folder, in name order
    assert all(len(r["top"]) == 2 for r in lines)  # top_k
    assert all(r["top"][0]["score"] > 0.99 for r in lines)
    assert [r["changed"] for r in lines] == [True, True, True, True]  # hold: 0 announces at once
    # An option on the command line wins over the file.
    result = CliRunner().invoke(cli, ["run", str(COLORS_MODEL), "--config", str(config), "--top-k", "3",
                                      "--max-frames", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and all(len(r["top"]) == 3 for r in lines)


def test_an_unknown_key_in_the_run_config_is_a_one_line_error(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("headless: true\n# the number of labels\ntopk: 2\n")
    result = CliRunner().invoke(cli, ["run", str(COLORS_MODEL), "--config", str(config)])
    assert result.exit_code == 2
    assert result.output == f"Error: {config}:3: topk: unknown key (did you mean 'top_k'?)\n"


# -- decisions -------------------------------------------------------------------------------------
LABELS = ("a", "b", "c")
A, B, C = np.eye(3, dtype=np.float32)


def test_smoothing_is_an_exponential_moving_average():
    decider = Decider(LABELS, smoothing=0.75)
    np.testing.assert_array_equal(decider.smooth(A), A)  # the first frame starts the average
    np.testing.assert_allclose(decider.smooth(B), [0.75, 0.25, 0.0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(decider.smooth(B), [0.5625, 0.4375, 0.0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(decider.smooth(C), [0.421875, 0.328125, 0.25], rtol=0, atol=1e-7)
    off = Decider(LABELS, smoothing=0.0)
    off.smooth(A)
    np.testing.assert_array_equal(off.smooth(B), B)  # 0 = no smoothing


def test_a_change_is_announced_only_after_hold_seconds():
    decider = Decider(LABELS, hold=1.0)

    def at(t: float, probs: np.ndarray) -> tuple[str, bool]:
        d = decider.decide(probs, t)
        return d.label, d.changed

    assert at(0.0, A) == ("a", False)  # the very first label waits too
    assert at(0.9, A) == ("a", False)
    assert at(1.0, A) == ("a", True)  # held for 1.0 s: announced, once
    assert at(1.5, A) == ("a", False)
    assert decider.stable == "a"
    # b flickers for 0.4 s, then c for 0.5 s: neither is ever announced.
    assert [at(t, B) for t in (2.0, 2.2, 2.4)] == [("b", False)] * 3
    assert at(2.4, A) == ("a", False)
    assert [at(t, C) for t in (3.0, 3.5)] == [("c", False)] * 2
    assert at(3.5, A) == ("a", False) and decider.stable == "a"
    # b that stays: announced exactly hold seconds after it first appeared.
    assert [at(t, B) for t in (4.0, 4.5, 4.99, 5.0, 5.5)] == [("b", False)] * 3 + [("b", True), ("b", False)]
    assert decider.stable == "b"


def test_below_the_threshold_the_label_is_unknown():
    decider = Decider(LABELS, threshold=0.5, hold=0.0)
    low = decider.decide(np.array([0.375, 0.25, 0.375], np.float32), 0.0)
    assert (low.label, low.score, low.changed) == (UNKNOWN, 0.375, True)  # "unknown" is announced like a label
    high = decider.decide(np.array([0.25, 0.5, 0.25], np.float32), 0.1)
    assert (high.label, high.score, high.changed) == ("b", 0.5, True)  # exactly at the threshold counts
    assert decider.decide(np.array([0.25, 0.5, 0.25], np.float32), 0.2).changed is False
    assert decider.decide(np.array([0.49, 0.26, 0.25], np.float32), 0.3).label == UNKNOWN



def test_the_models_unknown_score_above_its_threshold_rejects_the_frame():
    decider = Decider(LABELS, hold=0.0, unknown_threshold=0.4)
    sure = np.array([0.9, 0.05, 0.05], np.float32)
    rejected = decider.decide(sure, 0.0, unknown_score=0.41)
    assert (rejected.label, rejected.score, rejected.changed, rejected.unknown_score) == (UNKNOWN, pytest.approx(0.9), True, 0.41)
    kept = decider.decide(sure, 0.1, unknown_score=0.4)  # exactly at the threshold is kept
    assert (kept.label, kept.changed) == ("a", True)
    assert decider.decide(sure, 0.2, unknown_score=None).label == "a"  # no score: nothing to reject
    # The score threshold still applies beside it (0 unless given), and a model without a
    # calibrated threshold rejects nothing whatever its score.
    assert Decider(LABELS, threshold=0.95, unknown_threshold=0.4).decide(sure, 0.0, 0.1).label == UNKNOWN
    assert Decider(LABELS).decide(sure, 0.0, unknown_score=1.0).label == "a"


def test_the_unknown_score_is_smoothed_like_the_probabilities():
    decider = Decider(LABELS, smoothing=0.75, unknown_threshold=0.5)
    assert decider.smooth_unknown(None) is None
    assert decider.smooth_unknown(1.0) == 1.0  # the first frame starts the average
    assert decider.smooth_unknown(0.0) == pytest.approx(0.75)
    assert decider.smooth_unknown(0.0) == pytest.approx(0.5625)
    assert decider.smooth_unknown(0.0) == pytest.approx(0.421875)  # the same weights as test_smoothing_...
    # So one odd frame does not flip a steady answer: a single high score after known frames stays known.
    steady = Decider(LABELS, smoothing=0.75, hold=0.0, unknown_threshold=0.5)
    for t in range(5):
        steady.decide(steady.smooth(A), t, steady.smooth_unknown(0.0))
    assert steady.decide(steady.smooth(A), 5, steady.smooth_unknown(1.0)).label == "a"  # 0.25: still known
    off = Decider(LABELS, smoothing=0.0)
    off.smooth_unknown(1.0)
    assert off.smooth_unknown(0.2) == 0.2

# -- the default camera: Pi camera, then camera 0 ---------------------------------------------------
@pytest.fixture
def tries(monkeypatch):
    """Both default cameras fail (recording the order); tests make one of them work."""
    tried = []

    def pi_open(self):
        tried.append(self.name)
        raise SourceError("picamera2: not installed (sudo apt install python3-picamera2)")

    def cv_open(self):
        tried.append(self.name)
        raise SourceError(f"{self.name}: cannot open")

    monkeypatch.setattr(Picamera2Source, "open", pi_open)
    monkeypatch.setattr(OpenCVSource, "open", cv_open)
    return tried


def test_no_camera_lists_both_tries(tries):
    with pytest.raises(SourceError) as info:
        open_source("", (320, 240))
    assert str(info.value) == ("no camera found (tried picamera2: not installed (sudo apt install python3-picamera2); "
                               "camera 0: cannot open); pass --source")
    assert tries == ["picamera2", "camera 0"]


def test_camera_0_is_used_when_the_pi_camera_is_missing(tries, monkeypatch):
    monkeypatch.setattr(OpenCVSource, "open", lambda self: tries.append(f"opened {self.name}"))
    source = open_source("", (320, 240))
    assert isinstance(source, OpenCVSource)
    assert (source.spec, source.live, source.size) == (0, True, (320, 240))
    assert tries == ["picamera2", "opened camera 0"]


def test_the_pi_camera_comes_first(tries, monkeypatch):
    monkeypatch.setattr(Picamera2Source, "open", lambda self: tries.append("opened picamera2"))
    source = open_source("", (320, 240))
    assert isinstance(source, Picamera2Source) and source.size == (320, 240)
    assert tries == ["opened picamera2"]  # camera 0 was never touched


def test_frames_of_a_file_are_timed_by_the_video_not_by_how_fast_it_decodes(tmp_path):
    """Hold times count video seconds: a 10 FPS file decoded in a blink still spans 1.2 s."""
    from edgecam.runtime.capture import FrameGrabber
    from edgecam.runtime.sources import open_source

    path = tmp_path / "ten_fps.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    for i in range(13):
        writer.write(np.full((32, 32, 3), 20 * i, np.uint8))
    writer.release()
    times = []
    with FrameGrabber(open_source(str(path))) as grabber:
        while (frame := grabber.get(timeout=2.0)) is not None:
            times.append(frame.time)
    assert len(times) == 13
    assert np.allclose(np.diff(times), 0.1) and times[-1] - times[0] == pytest.approx(1.2)
