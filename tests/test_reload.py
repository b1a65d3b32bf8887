"""Hot model reload and the run's Control (issue 10): a replaced model file (or SIGHUP, or a request)
is loaded and checked in the background and swapped in between two frames; a candidate that
fails is one line and the old model keeps running. The Control sets the threshold rule, pauses,
and asks for a snapshot, all between frames.

The models are the committed colour fixtures: ``colors`` (red, green, blue) and ``colors_unknown``
(the same labels, plus an unknown score that rejects grey), so which model judged a frame shows
in its JSON line: only ``colors_unknown`` gives ``unknown_score``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import runfixtures as rf
from conftest import COLORS_MODEL, COLORS_UNKNOWN_MODEL, FLOWERS3_MODEL
from helpers import read_to_exit, wait_until
from edgecam.config.camera import RunConfig, ServeConfig
from edgecam.runtime import loop, reload
from edgecam.runtime.control import Control
from edgecam.runtime.outputs import Output
from edgecam.runtime.result import Result
from edgecam.runtime.sources import Source, parse_source

RED, GREEN, BLUE, GREY = (200, 20, 20), (20, 200, 20), (20, 20, 200), (128, 128, 128)
FPS = 20.0  # the paced video's rate: a frame every 50 ms


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def replace_atomically(target: Path, content: bytes) -> None:
    """As a deployment script should: a temporary name in the same folder, then one rename."""
    tmp = target.with_name(f".{target.name}.new")
    tmp.write_bytes(content)
    os.replace(tmp, target)


def colour_video(path: Path, frames: int) -> Path:
    """A lossless video cycling red, green, blue, grey (5 frames each)."""
    cycle = [np.full((48, 64, 3), c, np.uint8) for c in (RED, GREEN, BLUE, GREY) for _ in range(5)]
    return rf.write_video(path, [cycle[i % len(cycle)] for i in range(frames)], "FFV1", fps=FPS)


class PacedVideo(Source):
    """A video file read at ``fps`` (not live: the loop must process every one of its frames). Opened."""

    name, live = "paced video", False

    def __init__(self, path: Path, fps: float = FPS):
        self.inner, self.period, self._next = parse_source(str(path)), 1.0 / fps, 0.0
        self.inner.open()

    def read(self):
        now = time.perf_counter()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next + self.period, time.perf_counter())
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()

    @property
    def fps(self) -> float:
        return 1.0 / self.period


class Watch(Output):
    """Each result's JSON line, the time it arrived, and whether an annotated frame came with it."""

    def __init__(self):
        self.lines: list[dict] = []
        self.times: list[float] = []
        self.pixels: list[bool] = []

    def write(self, result: Result, annotated=None) -> None:
        self.lines.append(result.to_dict())
        self.times.append(time.monotonic())
        self.pixels.append(annotated is not None)


class Log:
    """Everything logged so far (reads capsys as it goes)."""

    def __init__(self, capsys):
        self.capsys, self.lines = capsys, []

    def __call__(self) -> list[str]:
        self.lines += self.capsys.readouterr().err.splitlines()
        return self.lines

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self() if line.startswith(prefix)]


@contextlib.contextmanager
def running(model: Path, source: Source, control: Control, **settings):
    """``loop.run`` in a thread, its results in the yielded Watch; stopped (and its errors raised) on the way out."""
    watch, stop, failures = Watch(), threading.Event(), []
    cfg = RunConfig(model=str(model), hold=0, **settings)

    def target():
        try:
            loop.run(cfg, stop=stop, extra_outputs=lambda c, s: [watch], source=source, window=False,
                     control=control)
        except BaseException as exc:  # raised in the test below
            failures.append(exc)

    thread = threading.Thread(target=target, name="run", daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(watch.lines) >= 5 or failures, 30, "the first results")
        if failures:
            raise failures[0]
        yield watch
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the run did not stop"
    if failures:
        raise failures[0]


def assert_no_frame_missing(watch: Watch) -> None:
    assert [line["frame"] for line in watch.lines] == list(range(len(watch.lines)))


# -- the Control -----------------------------------------------------------------------------
def test_the_control_checks_thresholds_and_hands_each_request_to_the_loop_once():
    control = Control()
    assert control.take_threshold() == (False, None) and not control.take_snapshot() and not control.paused
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ValueError):
            control.set_threshold(bad)
    control.set_threshold(0.25)
    control.set_threshold(1)
    assert control.take_threshold() == (True, 1.0) and control.take_threshold() == (False, None)
    control.set_threshold(None)
    assert control.take_threshold() == (True, None)
    control.snapshot()
    assert control.take_snapshot() and not control.take_snapshot()
    control.pause()
    assert control.paused
    stop = threading.Event()
    threading.Timer(0.1, control.resume).start()
    assert control.wait_resumed(stop) and not control.paused
    control.request_reload("a")
    control.request_reload("b")
    assert [control.next_reload(0.1), control.next_reload(0.1), control.next_reload(0.01)] == ["a", "b", None]


class ColourCamera(Source):
    """A live camera at 20 FPS showing one colour; counts the frames it delivered."""

    name, live = "colour camera", True

    def __init__(self, colour):
        self.colour, self.delivered = colour, 0

    def read(self):
        time.sleep(0.05)
        self.delivered += 1
        return np.full((48, 64, 3), self.colour, np.uint8)


def test_threshold_pause_and_snapshot_reach_the_running_loop(capsys):
    log, control, camera = Log(capsys), Control(), ColourCamera(RED)
    with running(COLORS_UNKNOWN_MODEL, camera, control) as watch:
        assert {line["label"] for line in watch.lines} == {"red"} and not any(watch.pixels)
        control.set_threshold(1.0)  # the user's rule: a top score below 1.0 is unknown
        wait_until(lambda: watch.lines[-1]["label"] == "unknown", 5, "the threshold rule")
        control.set_threshold(None)  # back to the model's calibrated rule: red is red
        wait_until(lambda: watch.lines[-1]["label"] == "red", 5, "the model's rule")

        control.snapshot()
        wait_until(lambda: any(watch.pixels), 5, "the snapshot")
        shot = watch.pixels.index(True)
        assert watch.lines[shot]["snapshot"] is True and watch.pixels.count(True) == 1
        assert all("snapshot" not in line for i, line in enumerate(watch.lines) if i != shot)

        control.pause()
        time.sleep(0.1)
        seen, delivered = len(watch.lines), camera.delivered
        time.sleep(0.5)
        assert len(watch.lines) == seen and camera.delivered >= delivered + 5  # read, not classified
        control.resume()
        wait_until(lambda: len(watch.lines) >= seen + 3, 5, "results after resuming")
    said = log()
    assert "threshold 1: unknown below that top score; the model's calibrated rejection is off" in said
    assert any(line.startswith("threshold cleared: unknown above ") for line in said)
    assert "paused: frames are read but not classified" in said and "resumed" in said


def test_a_paused_file_waits_where_it_is(tmp_path):
    control = Control()
    with running(COLORS_MODEL, PacedVideo(colour_video(tmp_path / "v.avi", 200), fps=50), control) as watch:
        control.pause()
        time.sleep(0.4)
        seen = len(watch.lines)
        time.sleep(0.3)
        assert len(watch.lines) == seen
        control.resume()
        wait_until(lambda: len(watch.lines) >= seen + 10, 5, "results after resuming")
    assert_no_frame_missing(watch)  # nothing read while paused was lost


# -- the reloader, on its own ----------------------------------------------------------------
def test_load_model_names_the_bytes_it_loaded(tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copy(COLORS_MODEL, model)
    loaded = reload.load_model(model)
    assert loaded.version.path == str(model) and loaded.version.sha256 == sha256(COLORS_MODEL)
    assert loaded.key == reload.file_key(model) and loaded.classifier.labels == ("red", "green", "blue")
    assert reload.file_key(tmp_path / "missing.tflite") is None


def test_self_test_rejects_other_labels_and_accepts_the_same_ones_in_any_order():
    frame = np.full((48, 64, 3), RED, np.uint8)
    unknown = reload.load_model(COLORS_UNKNOWN_MODEL).classifier
    assert reload.self_test(unknown, frame, ("red", "green", "blue")) is None
    assert reload.self_test(unknown, None, ("blue", "red", "green")) is None  # no frame yet: a grey one
    flowers = reload.load_model(FLOWERS3_MODEL).classifier
    assert reload.self_test(flowers, frame, ("red", "green", "blue")) == (
        "other labels (daisy, roses, tulips; running: red, green, blue)")


def test_a_reload_request_swaps_in_the_model_between_two_frames(tmp_path, capsys):
    log, control = Log(capsys), Control()
    model = tmp_path / "model.tflite"
    shutil.copy(COLORS_MODEL, model)
    with running(model, ColourCamera(GREY), control) as watch:
        assert control.model.sha256 == sha256(COLORS_MODEL)
        shutil.copy(COLORS_UNKNOWN_MODEL, model)  # in place (no rename): the request is what reloads it
        control.request_reload("test")
        wait_until(lambda: any("model" in line for line in watch.lines), 5, "the new model")
        wait_until(lambda: len(watch.lines) >= 3 + next(i for i, line in enumerate(watch.lines) if "model" in line),
                   5, "frames after the swap")
    changed = [i for i, line in enumerate(watch.lines) if "model" in line]
    new = sha256(COLORS_UNKNOWN_MODEL)
    assert watch.lines[changed[0]]["model"] == {"path": str(model), "sha256": new}
    assert all("unknown_score" not in line and line["label"] != "unknown" for line in watch.lines[:changed[0]])
    assert all("unknown_score" in line and line["label"] == "unknown" for line in watch.lines[changed[0]:])
    assert control.model.sha256 == new
    assert f"model reloaded: {model} (sha256 {new[:12]})" in log()


def test_the_live_page_names_the_running_model_and_its_hash(tmp_path):
    from edgecam.serving.run_page import serve_run
    from helpers import in_thread, status_of

    model = tmp_path / "model.tflite"
    shutil.copy(COLORS_MODEL, model)
    control = Control()
    cfg = RunConfig(model=str(model), serve=ServeConfig(address="127.0.0.1:0"), hold=0)
    target = lambda stop, on_ready: serve_run(cfg, stop=stop, source=ColourCamera(RED), on_ready=on_ready,  # noqa
                                              control=control)
    with in_thread(target, "serve_run", lambda server: server.page.result is not None, "the first result") as (server, _):
        status = status_of(server.port)
        assert (status["model"], status["model_sha256"]) == (str(model), sha256(COLORS_MODEL))
        shutil.copy(COLORS_UNKNOWN_MODEL, model)
        control.request_reload("test")
        wait_until(lambda: status_of(server.port)["model_sha256"] == sha256(COLORS_UNKNOWN_MODEL), 5,
                   "the new hash on the page")


# -- a replaced model file -------------------------------------------------------------------
@pytest.mark.slow
def test_replacing_the_model_file_swaps_it_with_no_frame_lost(tmp_path, capsys):
    log, control = Log(capsys), Control()
    model = tmp_path / "model.tflite"
    shutil.copy(COLORS_MODEL, model)
    video = colour_video(tmp_path / "colours.avi", 400)
    fps = 10.0  # slow enough that a busy test machine's own hiccups stay under two frame times
    with running(model, PacedVideo(video, fps), control) as watch:
        wait_until(lambda: len(watch.lines) >= 10, 10, "ten frames")
        replace_atomically(model, COLORS_UNKNOWN_MODEL.read_bytes())
        wait_until(lambda: any("model" in line for line in watch.lines), 10, "the swap")
        swap = next(i for i, line in enumerate(watch.lines) if "model" in line)
        wait_until(lambda: len(watch.lines) >= swap + 20, 10, "twenty frames after the swap")
    assert_no_frame_missing(watch)  # a file source: every frame was processed, across the swap
    new = sha256(COLORS_UNKNOWN_MODEL)
    assert [i for i, line in enumerate(watch.lines) if "model" in line] == [swap]  # on the change frame only
    assert watch.lines[swap]["model"] == {"path": str(model), "sha256": new} and control.model.sha256 == new
    before, after = watch.lines[:swap], watch.lines[swap:]
    assert all("unknown_score" not in line for line in before) and all("unknown_score" in line for line in after)
    assert {line["label"] for line in before} <= {"red", "green", "blue"}  # the old model: grey gets a colour
    assert {line["label"] for line in after} == {"red", "green", "blue", "unknown"}  # the new one rejects grey
    # No pause around the swap: results keep coming at the video's pace (at most two frame times apart).
    gaps = np.diff(watch.times[max(0, swap - 3):swap + 4])
    assert gaps.max() <= 2 / fps, f"gaps around the swap: {np.round(gaps, 3)}"
    assert log.starting("model reloaded: ") == [f"model reloaded: {model} (sha256 {new[:12]})"]
    assert log.starting("reload rejected") == []


@pytest.mark.slow
def test_a_truncated_model_or_one_with_other_labels_is_rejected_and_the_old_one_keeps_running(tmp_path, capsys):
    log, control = Log(capsys), Control()
    model = tmp_path / "model.tflite"
    shutil.copy(COLORS_MODEL, model)
    video = colour_video(tmp_path / "colours.avi", 600)
    with running(model, PacedVideo(video), control) as watch:
        replace_atomically(model, COLORS_UNKNOWN_MODEL.read_bytes()[:1000])
        wait_until(lambda: log.starting("reload rejected: "), 10, "the truncated model's rejection")
        replace_atomically(model, FLOWERS3_MODEL.read_bytes())
        wait_until(lambda: len(log.starting("reload rejected: ")) == 2, 10, "the flowers model's rejection")
        seen = len(watch.lines)
        time.sleep(1.5)  # more looks at the (unchanged) file: nothing more is said
        assert len(watch.lines) >= seen + 10  # and the labels continue
    rejected = log.starting("reload rejected: ")
    assert len(rejected) == 2, rejected
    assert rejected[0].startswith(f"reload rejected: {model}: ") and "\n" not in rejected[0]
    assert rejected[1] == f"reload rejected: {model}: other labels (daisy, roses, tulips; running: red, green, blue)"
    assert log.starting("model reloaded") == []
    assert_no_frame_missing(watch)
    assert all("model" not in line and "unknown_score" not in line for line in watch.lines)  # the old model, always
    assert {line["label"] for line in watch.lines[-20:]} == {"red", "green", "blue"}
    assert control.model.sha256 == sha256(COLORS_MODEL)


@pytest.mark.slow
def test_sighup_reloads_the_model_of_edgecam_run(tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copy(COLORS_MODEL, model)
    video = colour_video(tmp_path / "colours.avi", 1000)
    proc = rf.edgecam_popen("run", model, "--source", video, "--headless", "--hold", "0")
    try:
        first = [proc.stdout.readline() for _ in range(20)]
        assert all(first), "edgecam run ended early: " + proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGHUP)
        # Not reading for a while holds the loop at a full pipe; the reload is checked meanwhile.
        time.sleep(1.0)
        rest, err = read_to_exit(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    lines = rf.json_lines("".join(first) + rest)
    assert [line["frame"] for line in lines] == list(range(1000))
    changed = [line for line in lines if "model" in line]
    digest = sha256(COLORS_MODEL)  # the same file: SIGHUP reloads it anyway, as asked
    assert len(changed) == 1 and changed[0]["model"] == {"path": str(model), "sha256": digest}
    assert changed[0]["frame"] >= 20
    assert err.splitlines().count(f"model reloaded: {model} (sha256 {digest[:12]})") == 1
