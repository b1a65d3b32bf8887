"""``edgecam run`` end to end: videos and photos in, JSON lines and label events out, without TensorFlow.

One small model (MobileNet v1 0.25, five flower labels) is trained once per session
(``runfixtures.trained_model``); the CLI runs in a subprocess in which importing TensorFlow
fails, as on a Raspberry Pi. Faults (a camera that drops out, SIGTERM while recording, bad
input) are checked with a fake camera, real signals and the real CLI.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import runfixtures as rf
from helpers import read_to_exit
from edgecam.cli import cli
from edgecam.data.images import load_rgb
from edgecam.runtime import capture, loop
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.outputs import Output
from edgecam.config.camera import RunConfig
from edgecam.runtime.sources import Source, SourceError

SUMMARY = re.compile(r"^(\d+) frames, (\d+) dropped, \d+\.\d FPS; latency mean \d+\.\d ms, p50 \d+\.\d, p90 \d+\.\d$")
LABEL_EVENT = re.compile(r"^label: (\S+) \((\d+)%\)$")
HOLD = 4  # video frames per photo


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    return rf.trained_model(tmp_path_factory)


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """15 held-out 320x240 photos, three per label, interleaved so the label changes at each photo."""
    per_label = [rf.upright_photos(label, 3) for label in rf.LABELS]
    return [group[i] for i in range(3) for group in per_label]


@pytest.fixture(scope="session")
def mp4_video(tmp_path_factory, photos) -> Path:
    """15 frames of mp4v (lossy): five photos, three frames each."""
    frames = [load_rgb(p) for p in photos[:5] for _ in range(3)]
    return rf.write_video(tmp_path_factory.mktemp("mp4") / "flowers.mp4", frames, "mp4v")


@pytest.fixture(scope="session")
def lossless(tmp_path_factory, model, photos):
    """The 15 photos as a lossless FFV1 video (HOLD frames each, at their own 320x240 size), plus
    ``edgecam evaluate`` on a folder of exactly those photos and ``edgecam run --hold 0`` on the video."""
    root = tmp_path_factory.mktemp("lossless")
    # Pillow decodes the photos here exactly as `edgecam evaluate` does; FFV1 keeps every pixel.
    frames = [load_rgb(p) for p in photos]
    video = rf.write_video(root / "photos.avi", [f for f in frames for _ in range(HOLD)], "FFV1")
    folder = rf.photo_folder(root / "photos", photos)
    evaluated = rf.edgecam("evaluate", model.path, folder, "--out", root / "eval", "-q")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    run = rf.edgecam("run", model.path, "--source", video, "--headless", "--hold", "0")
    assert run.returncode == 0, run.stderr[-2000:]
    return dict(video=video, frames=frames, predictions=rf.predictions_by_name(root / "eval"), run=run,
                model=model.path)


def decided(result: dict, unknown_threshold: float | None) -> str:
    """The label a JSON line must carry without --threshold or smoothing: the top label, or "unknown"
    when the model has a calibrated unknown score above its threshold (issue 9)."""
    rejected = unknown_threshold is not None and result["unknown_score"] > unknown_threshold
    return "unknown" if rejected else result["top"][0]["label"]


def summary_of(stderr: str) -> re.Match:
    matches = [m for m in map(SUMMARY.match, stderr.splitlines()) if m]
    assert len(matches) == 1, stderr
    return matches[0]


# -- 1. end to end without TensorFlow ---------------------------------------------------------
@pytest.mark.slow
def test_run_headless_on_a_video_without_tensorflow(model, mp4_video):
    proc = rf.edgecam("run", model.path, "--source", mp4_video, "--headless")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == rf.NO_HEAVY_MODULES  # TensorFlow was blocked and never needed

    results = rf.json_lines(proc.stdout)
    assert len(results) == len(rf.read_video(mp4_video)) == 15  # a file loses no frames
    unknown_threshold = Classifier(model.path).unknown_threshold
    assert [r["frame"] for r in results] == list(range(15))
    for r in results:
        assert {"time", "frame", "top", "label", "fps", "inference_ms"} <= set(r), r
        top = r["top"]
        assert len(top) == 3 and all(set(t) == {"label", "score"} for t in top)  # k=3 by default
        assert len({t["label"] for t in top}) == 3 and {t["label"] for t in top} <= set(model.labels)
        scores = [t["score"] for t in top]
        assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] and scores[0] <= 1
        # No threshold, no smoothing: the decision is the top label, unless the model rejects the frame.
        assert r["label"] == decided(r, unknown_threshold)
        assert r["inference_ms"] > 0 and r["fps"] >= 0 and r["time"] > 1e9
    assert results[-1]["fps"] > 0

    assert proc.stderr.splitlines()[0] == (f"{model.path}: 5 labels, input 224x224 uint8; source: {mp4_video}")
    summary = summary_of(proc.stderr)
    assert summary.group(1, 2) == ("15", "0")


# -- 2. a video of photos gets the labels `edgecam evaluate` gives the photos --------------------
@pytest.mark.slow
def test_video_frames_get_the_labels_evaluate_gives_their_photos(lossless, photos):
    # The comparison is honest only if the frames the runtime decodes are the photos' pixels:
    # same size (no resize), lossless codec. Then any difference is in the runtime, not the video.
    decoded = rf.read_video(lossless["video"])
    assert len(decoded) == len(photos) * HOLD
    for i, frame in enumerate(decoded):
        assert np.array_equal(frame, lossless["frames"][i // HOLD]), f"frame {i} is not the pixels of its photo"

    predictions = lossless["predictions"]
    assert sorted(predictions) == sorted(p.name for p in photos)
    results = rf.json_lines(lossless["run"].stdout)
    assert [r["frame"] for r in results] == list(range(len(photos) * HOLD))
    unknown_threshold = Classifier(lossless["model"]).unknown_threshold
    for r in results:
        photo = photos[r["frame"] // HOLD]
        expected = predictions[photo.name]
        assert r["top"][0]["label"] == expected["predicted"], f"frame {r['frame']} ({photo.name})"
        assert r["label"] == decided(r, unknown_threshold), f"frame {r['frame']} ({photo.name})"
        assert r["top"][0]["score"] == pytest.approx(float(expected["score"]), abs=2e-4)

    # The check has teeth: the model tells the labels apart and is mostly right on held-out photos.
    assert len({row["predicted"] for row in predictions.values()}) >= 4
    right = sum(row["predicted"] == photo.parent.name for photo in photos for row in [predictions[photo.name]])
    assert right >= 10, f"only {right} of {len(photos)} held-out photos right"


# -- 5. events, thresholds, the end of a file, --max-frames ---------------------------------------
@pytest.mark.slow
def test_hold_0_announces_every_label_change(lossless):
    proc = lossless["run"]
    results = rf.json_lines(proc.stdout)
    runs = [label for i, label in enumerate(r["label"] for r in results) if i == 0 or results[i - 1]["label"] != label]
    assert len(runs) >= 5  # the photos alternate between labels
    assert [r["label"] for r in results if r["changed"]] == runs
    events = [m for m in map(LABEL_EVENT.match, proc.stderr.splitlines()) if m]
    assert [m.group(1) for m in events] == runs
    changed = [r for r in results if r["changed"]]
    assert all(abs(int(m.group(2)) - 100 * r["score"]) <= 0.51 for m, r in zip(events, changed))
    # The end of the file ends the run cleanly, with the summary.
    assert summary_of(proc.stderr).group(1, 2) == (str(len(results)), "0")


@pytest.mark.slow
def test_on_change_runs_the_command_with_the_label(model, lossless, tmp_path):
    log = tmp_path / "changes.txt"
    command = f"sh -c 'echo \"$EDGECAM_LABEL $EDGECAM_SCORE\" >> {log}'"
    proc = rf.edgecam("run", model.path, "--source", lossless["video"], "--headless", "--hold", "0",
                      "--on-change", command)
    assert proc.returncode == 0, proc.stderr[-2000:]
    announced = [m.group(1) for m in map(LABEL_EVENT.match, proc.stderr.splitlines()) if m]
    assert len(announced) >= 5
    # The command runs in the background; a change that comes while it still runs is skipped
    # (documented), so the file holds a subsequence of the announced labels, starting with the first.
    for _ in range(100):
        if log.exists() and log.read_text().endswith("\n"):
            break
        time.sleep(0.1)
    written = [line.split() for line in log.read_text().splitlines()]
    assert written and written[0][0] == announced[0]
    remaining = iter(announced)
    for label, score in written:
        assert label in remaining, f"{label} was written but not announced (in this order): {announced}"
        assert 0 < float(score) <= 1


@pytest.mark.slow
def test_threshold_gives_unknown_below_it(model, mp4_video):
    proc = rf.edgecam("run", model.path, "--source", mp4_video, "--headless", "--hold", "0", "--threshold", "0.999")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = rf.json_lines(proc.stdout)
    assert len(results) == 15
    for r in results:
        top = r["top"][0]
        assert r["label"] == (top["label"] if r["score"] >= 0.999 else "unknown")
        assert top["label"] in model.labels  # the scores still name real labels
    assert sum(r["label"] == "unknown" for r in results) >= 10
    assert "label: unknown (" in proc.stderr


@pytest.mark.slow
def test_max_frames_stops_early(model, mp4_video):
    proc = rf.edgecam("run", model.path, "--source", mp4_video, "--headless", "--max-frames", "4", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = rf.json_lines(proc.stdout)
    assert [r["frame"] for r in results] == [0, 1, 2, 3]
    assert all(len(r["top"]) == 2 for r in results)
    assert summary_of(proc.stderr).group(1) == "4"


# -- 4a. a live camera that drops out and comes back -----------------------------------------------
class FlakyCamera(Source):
    """A live camera serving real photos: ``before`` frames of one photo, then it drops out (read()
    returns None), its next ``failures`` open() calls fail, and then it serves another photo.

    It drops out only once ``seen`` is set (a frame of the first photo has been processed), so a
    busy machine cannot make the test skip the part before the outage.
    """

    name = "flaky camera"
    live = True

    def __init__(self, first: np.ndarray, second: np.ndarray, before: int = 6, failures: int = 2):
        self.first, self.second, self.before, self.failures = first, second, before, failures
        self.served = self.opens = self.failed_opens = 0
        self.is_open = self.dropped_out = False
        self.seen = threading.Event()

    def open(self) -> None:
        self.opens += 1
        if self.dropped_out and self.failed_opens < self.failures:
            self.failed_opens += 1
            raise SourceError(f"{self.name}: cannot open")
        self.is_open = True

    def read(self) -> np.ndarray | None:
        if not self.is_open:
            return None
        if self.served == self.before and not self.dropped_out:
            self.seen.wait(timeout=60)
            self.dropped_out = True
            return None
        time.sleep(0.02)  # a 50 FPS camera
        self.served += 1
        return (self.first if self.served <= self.before else self.second).copy()

    def close(self) -> None:
        self.is_open = False


class Collect(Output):
    def __init__(self, camera: FlakyCamera):
        self.results, self.camera = [], camera

    def write(self, result, annotated=None) -> None:
        self.results.append(result)
        self.camera.seen.set()


@pytest.mark.slow
def test_live_source_that_drops_out_is_reopened_and_the_loop_keeps_going(model, photos, monkeypatch, capsys):
    monkeypatch.setattr(capture, "BACKOFF", (0.01, 0.02, 0.05))
    classifier = Classifier(model.path)
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in photos]
    labels = [classifier.top_k(classifier.classify(rgb), 1)[0].label for rgb in frames]
    label_1 = labels[0]
    label_2, second = next((label, rgb) for label, rgb in zip(labels, frames) if label != label_1)
    camera = FlakyCamera(frames[0], second)
    camera.open()
    collect, stop = Collect(camera), threading.Event()

    def stop_when_back():  # another thread ends the loop once frames flow again (or after a minute)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(r.frame >= camera.before for r in collect.results) < 5:
            time.sleep(0.02)
        stop.set()

    watcher = threading.Thread(target=stop_when_back, daemon=True)
    watcher.start()
    cfg = RunConfig(model=str(model.path), headless=True, hold=0)
    summary = loop.run(cfg, stop=stop, extra_outputs=lambda c, s: [collect], source=camera)
    watcher.join(timeout=5)

    after = [r for r in collect.results if r.frame >= camera.before]
    before = [r for r in collect.results if r.frame < camera.before]
    assert before and len(after) >= 5, f"{len(before)} results before the outage, {len(after)} after"
    assert {r.top[0][0] for r in before} == {label_1} and {r.top[0][0] for r in after} == {label_2}
    assert summary["reconnects"] == 1 and summary["frames"] == len(collect.results)
    assert camera.opens == 1 + camera.failures + 1 and not camera.is_open  # released on the way out
    err = capsys.readouterr().err.splitlines()
    assert "flaky camera: no frames, reopening" in err
    assert sum(line.startswith("flaky camera: cannot open; retrying in ") for line in err) == camera.failures
    assert "flaky camera: reopened" in err
    assert re.search(r"; 1 reconnects$", err[-1]) and SUMMARY.match(err[-1].rsplit(";", 1)[0])


# -- 4b. SIGTERM while recording -------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_while_recording_leaves_a_playable_video(model, photos, tmp_path):
    frames = [load_rgb(p) for p in photos[:5]]
    video = rf.write_video(tmp_path / "long.mp4", [frames[i // 20 % 5] for i in range(1000)], "mp4v", fps=25)
    out = tmp_path / "recording"
    proc = rf.edgecam_popen("run", model.path, "--source", video, "--headless", "--record", out / "out.mp4")
    try:
        lines = []
        while len(lines) < 11:  # JSON comes first: frames 0-9 are recorded by now
            line = proc.stdout.readline()
            assert line, "edgecam run ended before 11 frames: " + proc.stderr.read()[-2000:]
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        rest, err = read_to_exit(proc)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]  # 128 + SIGTERM
    assert "Traceback" not in err
    err_lines = err.splitlines()
    assert err_lines[-2:] == ["Interrupted.", rf.NO_HEAVY_MODULES]
    recorded = re.search(rf"^recorded (\d+) frames to {re.escape(str(out / 'out.mp4'))}$", err, re.M)
    assert recorded, err
    results = rf.json_lines("".join(lines) + rest)
    assert 10 <= len(results) < 1000  # stopped early, not at the end of the file
    # The signal lands anywhere in a frame's work: counted, then JSON, then recorded.
    processed, recorded = int(summary_of(err).group(1)), int(recorded.group(1))
    assert len(results) <= processed <= len(results) + 1 and len(results) - 1 <= recorded <= len(results)

    assert sorted(p.name for p in out.iterdir()) == ["out.mp4"]  # no .partial file left behind
    played = rf.read_video(out / "out.mp4")
    # (+1: the signal can land just after the writer took a frame, before the recorder counted it)
    assert 10 <= recorded <= len(played) <= min(recorded + 1, len(results))
    assert played[0].shape == (240, 320, 3)


# -- 4c. bad input: one line, non-zero exit, no traceback --------------------------------------------
@pytest.fixture
def cli_runner():
    """CliRunner for in-process runs; the run command installs a SIGTERM handler, restored after."""
    saved = signal.getsignal(signal.SIGTERM)
    yield CliRunner()
    signal.signal(signal.SIGTERM, saved)


def assert_one_line_error(result, expected: str | re.Pattern, exit_code: int = 1) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(result.stderr), result.stderr
    else:
        assert result.stderr == f"Error: {expected}\n"


def test_bad_model_files_and_options_are_one_line_errors(tmp_path, cli_runner):
    missing = tmp_path / "missing.tflite"
    assert_one_line_error(cli_runner.invoke(cli, ["run", str(missing), "--headless"]),
                          f"{missing}: model file not found")
    noise = tmp_path / "noise.tflite"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_one_line_error(cli_runner.invoke(cli, ["run", str(noise), "--headless"]),
                          f"{noise}: not a TFLite model (no TFL3 identifier)")
    tagged = tmp_path / "tagged.tflite"  # the right identifier in front of random bytes
    tagged.write_bytes(b"\x18\x00\x00\x00TFL3" + noise.read_bytes())
    assert_one_line_error(cli_runner.invoke(cli, ["run", str(tagged), "--headless"]),
                          re.compile(rf"Error: {re.escape(str(tagged))}: [^\n]+\n"))
    for option, value, message in [
        ("--top-k", "0", "command line: --top-k: must be at least 1, got 0"),
        ("--resolution", "12", "command line: --resolution: expected WIDTHxHEIGHT (e.g. 640x480), got '12'"),
        ("--threshold", "1.5", "command line: --threshold: must be in [0, 1], got 1.5"),
    ]:
        result = cli_runner.invoke(cli, ["run", str(missing), "--headless", option, value])
        assert_one_line_error(result, message, exit_code=2)


@pytest.mark.slow
def test_bad_labels_and_sources_are_one_line_errors(model, tmp_path, cli_runner):
    labels = tmp_path / "labels.txt"
    labels.write_text("daisy\nroses\ntulips\n")
    assert_one_line_error(cli_runner.invoke(cli, ["run", str(model.path), "--labels", str(labels), "--headless"]),
                          f"{labels}: 3 labels, but the model outputs 5 classes")
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    for source, message in [
        (tmp_path / "missing.mp4", f"{tmp_path / 'missing.mp4'}: no such file, folder, camera or stream"),
        (empty, f"{empty}: folder has no images (.jpg, .jpeg, .png, .bmp, .webp)"),
        (notes, f"{notes}: cannot open"),
        (f"{tmp_path}/*.png", f"{tmp_path}/*.png: no images match"),
    ]:
        result = cli_runner.invoke(cli, ["run", str(model.path), "--source", str(source), "--headless"])
        assert_one_line_error(result, message)


@pytest.mark.slow
def test_missing_camera_is_one_line_on_the_real_stderr(model):
    """OpenCV's native probing noise must not reach the user: exactly one line on fd 2."""
    proc = rf.edgecam("run", model.path, "--source", "7", "--headless", block_tensorflow=False, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "Error: camera 7: cannot open\n")


# -- the pipeline: capture, inference and decisions in their own threads ------------------------------
class Cores(Output):
    """Records, per frame, the cores the decisions' thread (the caller's) may run on."""

    def __init__(self):
        self.seen: list[set[int]] = []

    def write(self, result, annotated=None) -> None:
        import os

        self.seen.append(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity") or (__import__("os").cpu_count() or 1) < 2,
                    reason="needs Linux thread affinity and 2 cores")
def test_with_a_core_to_spare_the_model_keeps_its_own_and_the_caller_gets_its_cores_back(model, lossless,
                                                                                         monkeypatch):
    """--threads below the core count: the inference thread is pinned to the last cores, the capture
    and decisions threads to the others, and when the loop ends the caller's cores are as before.
    Every frame still gets its result, in order."""
    import os

    from edgecam.runtime.inference import split_cores

    before = os.sched_getaffinity(0)
    model_cores, other_cores = split_cores(1)
    assert model_cores == {max(before)} and other_cores == before - {max(before)}
    assert split_cores(0) is None and split_cores(len(before)) is None

    pinned = []
    original = loop.InferenceThread._infer

    def infer(self, frame):  # runs in the inference thread
        pinned.append(os.sched_getaffinity(0))
        return original(self, frame)

    monkeypatch.setattr(loop.InferenceThread, "_infer", infer)
    cores = Cores()
    cfg = RunConfig(model=str(model.path), source=str(lossless["video"]), headless=True, threads=1, hold=0)
    summary = loop.run(cfg, extra_outputs=lambda c, s: [cores], window=False)
    assert summary["frames"] == len(lossless["frames"]) * HOLD
    assert set(map(frozenset, pinned)) == {frozenset(model_cores)}
    assert set(map(frozenset, cores.seen)) == {frozenset(other_cores)}
    assert os.sched_getaffinity(0) == before


def test_an_error_in_the_inference_thread_reaches_the_caller(model, mp4_video, monkeypatch):
    """The model fails on a frame: run() raises that error (not a hang, not a silent end)."""

    def failing(self, tensor):
        raise RuntimeError("the interpreter failed")

    monkeypatch.setattr(Classifier, "infer_all", failing)
    with pytest.raises(RuntimeError, match="the interpreter failed"):
        loop.run(RunConfig(model=str(model.path), source=str(mp4_video), headless=True), window=False)
