"""Open-set 'unknown' at run time (issue 9): a model with an ``unknown_score`` output and a
calibrated threshold in its metadata says "unknown" for frames unlike anything it was trained on,
and every output (JSON lines, label events, --on-change, the overlay, the live page) gives that
same decided label. --threshold, when given, is the user's rule instead.

The fixtures are colour models (red, green, blue = the frame's dominant channel) whose unknown
score is high for frames with no dominant colour (grey, black, white).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import signal
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import runfixtures as rf
from conftest import COLORS_MODEL, COLORS_UNKNOWN_INT8_MODEL, COLORS_UNKNOWN_MODEL
from helpers import in_thread, status_of, wait_until
from edgecam.cli import cli
from edgecam.config.camera import RunConfig, ServeConfig
from edgecam.config.loader import load_values
from edgecam.errors import ModelError
from edgecam.runtime import loop
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.decisions import UNKNOWN
from edgecam.runtime.outputs import Output
from edgecam.runtime.overlay import decided_text, draw_overlay
from edgecam.runtime.result import Result
from edgecam.runtime.sources import Source
from edgecam.serving.run_page import serve_run

GREY, RED = (128, 128, 128), (200, 20, 20)
MODELS = pytest.mark.parametrize("path", [COLORS_UNKNOWN_MODEL, COLORS_UNKNOWN_INT8_MODEL], ids=["float32", "int8"])
LABEL_EVENT = re.compile(r"^label: (\S+) \((\d+)%\)$")
PER_COLOUR = 4  # video frames per stretch of one colour


def solid(color, size=(48, 64)) -> np.ndarray:
    return np.full((*size, 3), color, np.uint8)


def decide(classifier: Classifier, cfg: RunConfig, color) -> str:
    """The label the run loop decides for one frame of ``color`` under ``cfg``."""
    decider = loop.make_decider(classifier, cfg)
    probs, score = classifier.classify_all(solid(color))
    return decider.decide(decider.smooth(probs), 0.0, decider.smooth_unknown(score)).label


@pytest.fixture
def cli_runner():
    """CliRunner for in-process runs; the run command installs a SIGTERM handler, restored after."""
    saved = signal.getsignal(signal.SIGTERM)
    yield CliRunner()
    signal.signal(signal.SIGTERM, saved)


# -- the classifier ---------------------------------------------------------------------------
@MODELS
def test_the_classifier_reads_the_calibrated_threshold_and_the_score(path):
    classifier = Classifier(path)
    stated = classifier.info.extra["unknown"]
    assert stated["output"] == "unknown_score"
    assert classifier.unknown_threshold == pytest.approx(stated["threshold"]) and math.isfinite(stated["threshold"])
    assert classifier.unknown_keep == pytest.approx(stated["keep"])
    grey_probs, grey_score = classifier.classify_all(solid(GREY))
    red_probs, red_score = classifier.classify_all(solid(RED))
    assert type(grey_score) is float and type(red_score) is float
    assert grey_score > classifier.unknown_threshold > red_score
    assert classifier.labels[int(np.argmax(red_probs))] == "red" and grey_probs.shape == (3,)
    # infer/classify still give the probabilities alone, the same ones.
    probs = classifier.classify(solid(RED))
    assert isinstance(probs, np.ndarray) and np.array_equal(probs, red_probs)
    # The score is the output named unknown_score, dequantised with its own (scale, zero point).
    detail = next(d for d in classifier._interpreter.get_output_details() if d["name"] == "unknown_score")
    raw = classifier._interpreter.get_tensor(detail["index"]).reshape(-1)[0]  # the last frame's: red
    if "int8" in path.name:
        assert np.dtype(detail["dtype"]) in (np.uint8, np.int8)
        scale, zero = detail["quantization"]
        assert red_score == pytest.approx((float(raw) - zero) * scale)
    else:
        assert red_score == pytest.approx(float(raw))


@MODELS
def test_grey_is_unknown_and_red_is_red_and_a_threshold_turns_the_rejection_off(path):
    classifier = Classifier(path)
    default = RunConfig(model=str(path))
    assert default.threshold is None
    assert decide(classifier, default, GREY) == UNKNOWN
    assert decide(classifier, default, RED) == "red"
    for color in ((0, 0, 0), (255, 255, 255)):  # no dominant colour either
        assert decide(classifier, default, color) == UNKNOWN, color
    # A number is the user's rule: the top score against it, the model's rejection off.
    given = RunConfig(model=str(path), threshold=0.5)
    decider = loop.make_decider(classifier, given)
    assert (decider.threshold, decider.unknown_threshold) == (0.5, None)
    assert decide(classifier, RunConfig(model=str(path), threshold=0.0), GREY) in classifier.labels
    # A pale red: the model calls it unknown, but its top score passes 0.5, so --threshold 0.5 names it.
    pale = next((c for c in ((128 + k, 128, 128) for k in range(4, 128, 4))
                 if decide(classifier, default, c) == UNKNOWN and decide(classifier, given, c) == "red"), None)
    assert pale is not None, "no pale red that the model rejects with a top score of at least 0.5"


def test_a_model_without_the_output_works_as_before():
    classifier = Classifier(COLORS_MODEL)
    assert classifier.unknown_threshold is None and classifier.unknown_keep is None
    probs, score = classifier.classify_all(solid(RED))
    assert score is None and np.array_equal(probs, classifier.classify(solid(RED)))
    decider = loop.make_decider(classifier, RunConfig(model=str(COLORS_MODEL)))
    assert (decider.threshold, decider.unknown_threshold) == (0.0, None)
    assert decide(classifier, RunConfig(), GREY) in classifier.labels  # nothing is unknown, as before
    assert loop.unknown_rule(classifier, RunConfig()) is None  # and the log says nothing new
    result = Result(3, 1.0, (("red", 0.99),), "red", 0.99, True, 10.0, 1.0, 2.0)
    assert list(result.to_dict()) == ["time", "frame", "top", "label", "score", "changed", "fps", "inference_ms",
                                      "latency_ms"]
    assert dataclasses.replace(result, unknown_score=0.123456).to_dict()["unknown_score"] == 0.1235


def renamed_output(tmp_path, new: bytes):
    """The float fixture with its unknown_score tensor renamed (same length: the flatbuffer stays valid).

    Every flatbuffer string of that name changes (the tensor's, and a signature's or metadata's
    name for it); the metadata's JSON, a quoted string, stays as it is.
    """
    from ai_edge_litert.interpreter import Interpreter

    content = COLORS_UNKNOWN_MODEL.read_bytes()
    old = b"unknown_score"
    assert len(new) == len(old)
    as_stored = len(old).to_bytes(4, "little") + old + b"\0"  # a flatbuffer string: length, bytes, NUL
    assert as_stored in content
    path = tmp_path / f"{new.decode()}.tflite"
    path.write_bytes(content.replace(as_stored, len(new).to_bytes(4, "little") + new + b"\0"))
    names = sorted(d["name"] for d in Interpreter(model_path=str(path)).get_output_details())
    assert len(names) == 2 and "unknown_score" not in names and new.decode() in names, names
    return path


def test_two_outputs_without_an_unknown_score_are_a_one_line_error(tmp_path, cli_runner):
    path = renamed_output(tmp_path, b"unknown_other")
    with pytest.raises(ModelError) as info:
        Classifier(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not an image classifier (expected 1 output, or probabilities and "
                              "`unknown_score`, got 2: ")
    assert "unknown_other [1, 1]" in message and "\n" not in message
    photos = tmp_path / "photos"
    photos.mkdir()
    assert cv2.imwrite(str(photos / "grey.png"), solid(GREY))
    result = cli_runner.invoke(cli, ["run", str(path), "--headless", "--source", str(photos)])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {message}\n")


def test_the_output_without_a_threshold_rejects_nothing_and_says_so_once(tmp_path, capsys):
    from edgecam.modelfile.metadata import embed_metadata, read_metadata

    content = COLORS_UNKNOWN_MODEL.read_bytes()
    info = read_metadata(content)
    extra = {**info.extra, "unknown": {k: v for k, v in info.extra["unknown"].items() if k != "threshold"}}
    path = tmp_path / "no-threshold.tflite"
    path.write_bytes(embed_metadata(content, dataclasses.replace(info, extra=extra)))
    first, second = Classifier(path), Classifier(path)
    assert first.unknown_threshold is None and second.unknown_threshold is None
    assert decide(first, RunConfig(), GREY) in first.labels
    assert type(first.classify_all(solid(GREY))[1]) is float  # the score is still there, and reported
    notices = [line for line in capsys.readouterr().err.splitlines() if "no calibrated threshold" in line]
    assert len(notices) == 1 and notices[0].startswith(f"{path}: "), notices


# -- edgecam run: JSON lines, events, --on-change ---------------------------------------------
def colour_video(tmp_path, colours, name="colours.avi"):
    """A lossless video: PER_COLOUR frames of each colour in turn."""
    return rf.write_video(tmp_path / name, [solid(c) for c in colours for _ in range(PER_COLOUR)], "FFV1")


@MODELS
def test_run_headless_says_unknown_for_grey_and_red_for_red(path, tmp_path, cli_runner):
    video = colour_video(tmp_path, [RED, GREY, RED, GREY])
    result = cli_runner.invoke(cli, ["run", str(path), "--source", str(video), "--headless", "--hold", "0"])
    assert result.exit_code == 0, result.output
    lines = rf.json_lines(result.stdout)
    expected = [label for label in ("red", UNKNOWN, "red", UNKNOWN) for _ in range(PER_COLOUR)]
    assert [r["label"] for r in lines] == expected
    classifier = Classifier(path)
    for r in lines:
        assert (r["unknown_score"] > classifier.unknown_threshold) == (r["label"] == UNKNOWN), r
        assert r["top"][0]["label"] in classifier.labels  # the scores still name real labels
    assert [(r["frame"], r["label"]) for r in lines if r["changed"]] == [
        (0, "red"), (4, UNKNOWN), (8, "red"), (12, UNKNOWN)]
    events = [m.group(1) for m in map(LABEL_EVENT.match, result.stderr.splitlines()) if m]
    assert events == ["red", UNKNOWN, "red", UNKNOWN]
    keep = classifier.unknown_keep
    assert (f"unknown above {classifier.unknown_threshold:.4g} (calibrated to keep {keep:.0%} of known images; "
            "--threshold overrides)") in result.stderr.splitlines()

    # --threshold 0: the user's rule, nothing below a score of 0, so grey gets a colour too.
    result = cli_runner.invoke(cli, ["run", str(path), "--source", str(video), "--headless", "--hold", "0",
                                     "--threshold", "0"])
    assert result.exit_code == 0, result.output
    lines = rf.json_lines(result.stdout)
    assert UNKNOWN not in {r["label"] for r in lines} and all("unknown_score" in r for r in lines)
    assert ("--threshold 0: unknown below that top score; the model's calibrated rejection is off"
            in result.stderr.splitlines())


def test_on_change_gets_the_decided_label(tmp_path, cli_runner):
    video = colour_video(tmp_path, [GREY, GREY])
    log = tmp_path / "changes.txt"
    result = cli_runner.invoke(cli, ["run", str(COLORS_UNKNOWN_MODEL), "--source", str(video), "--headless",
                                     "--hold", "0", "--on-change", f'echo "$EDGECAM_LABEL" >> {log}'])
    assert result.exit_code == 0, result.output
    wait_until(lambda: log.exists() and log.read_text().endswith("\n"), 20, "the on-change command")
    assert log.read_text() == "unknown\n"  # grey only: one announcement, unknown


# -- the overlay -----------------------------------------------------------------------------
def test_the_overlay_headline_is_the_decided_label():
    assert decided_text("red", 0.974) == "red 97%" and decided_text(UNKNOWN, 0.34) == UNKNOWN
    frame = np.full((240, 320, 3), 120, np.uint8)
    top = [("red", 0.34), ("green", 0.33), ("blue", 0.33)]

    def text_rows(image):
        bright = np.all(image > 180, axis=2).any(axis=1)
        return sum(1 for y in range(1, len(bright)) if bright[y] and not bright[y - 1]) + int(bright[0])

    plain = draw_overlay(frame.copy(), top, 10.0, 5.0)
    headed = draw_overlay(frame.copy(), top, 10.0, 5.0, headline="unknown")
    assert text_rows(plain) == 4 and text_rows(headed) == 5  # one more line, above the bars
    other = draw_overlay(frame.copy(), top, 10.0, 5.0, headline="red 34%")
    first_line = slice(0, np.nonzero(np.all(headed > 180, axis=2).any(axis=1))[0][0] + 10)
    assert not np.array_equal(headed[first_line], other[first_line])  # the headline's text is drawn


class Pixels(Output):
    """Keeps each result with its annotated frame."""

    wants_pixels = True

    def __init__(self):
        self.seen: list[tuple[Result, np.ndarray]] = []

    def write(self, result, annotated=None) -> None:
        self.seen.append((result, annotated.copy()))


def test_the_run_loop_draws_the_decided_label(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, color in enumerate([RED, GREY]):  # PNG: the frames are exactly these pixels
        assert cv2.imwrite(str(photos / f"{i}.png"), cv2.cvtColor(solid(color, (240, 320)), cv2.COLOR_RGB2BGR))
    pixels = Pixels()
    cfg = RunConfig(model=str(COLORS_UNKNOWN_MODEL), source=str(photos), hold=0)
    loop.run(cfg, extra_outputs=lambda c, s: [pixels], window=False)
    assert [r.label for r, _ in pixels.seen] == ["red", UNKNOWN]
    for (result, annotated), color in zip(pixels.seen, [RED, GREY]):
        bgr = cv2.cvtColor(solid(color, (240, 320)), cv2.COLOR_RGB2BGR)
        args = (list(result.top), result.fps, result.inference_ms)
        assert np.array_equal(annotated, draw_overlay(bgr.copy(), *args, headline=decided_text(result.label,
                                                                                               result.score)))
        assert not np.array_equal(annotated, draw_overlay(bgr.copy(), *args))
    assert decided_text(pixels.seen[0][0].label, pixels.seen[0][0].score).startswith("red ")


# -- the live page ---------------------------------------------------------------------------
class SolidCamera(Source):
    """A live camera at 20 FPS showing one colour (``colour`` can be changed while it runs)."""

    name, live = "solid camera", True

    def __init__(self, colour):
        self.colour = colour

    def read(self) -> np.ndarray:
        time.sleep(0.05)
        return solid(self.colour, (240, 320))


def served(camera: SolidCamera):
    cfg = RunConfig(model=str(COLORS_UNKNOWN_MODEL), serve=ServeConfig(address="127.0.0.1:0"), hold=0)
    assert cfg.validate() is None
    return in_thread(functools.partial(serve_run, cfg, source=camera), "serve_run",
                     lambda server: server.page.result is not None, "the first result")


def test_live_status_has_the_decided_label_and_the_score():
    camera = SolidCamera(GREY)
    with served(camera) as (server, _):
        result = status_of(server.port)["result"]
        assert result["label"] == UNKNOWN and result["unknown_score"] > Classifier(COLORS_UNKNOWN_MODEL).unknown_threshold
        camera.colour = RED
        wait_until(lambda: status_of(server.port)["result"]["label"] == "red", 20, "the label to become red")


def test_live_page_shows_unknown_then_red(browser):
    camera = SolidCamera(GREY)
    with served(camera) as (server, _):
        browser.open(server.local_url)
        browser.wait_js("document.querySelector('#label').textContent === 'unknown'", what="unknown on the page")
        camera.colour = RED
        browser.wait_js("document.querySelector('#label').textContent === 'red'", what="red on the page")


# -- the setting -------------------------------------------------------------------------------
def test_threshold_defaults_to_the_models_rule_and_takes_null_or_a_number(tmp_path):
    assert RunConfig().threshold is None and RunConfig().validate() is None
    config = tmp_path / "run.yaml"
    config.write_text("threshold: null\n")
    assert load_values(RunConfig, config, {}).threshold is None
    config.write_text("threshold: 0.25\n")
    assert load_values(RunConfig, config, {}).threshold == 0.25
    assert RunConfig(threshold=-0.1).validate() == ("threshold", "must be in [0, 1], got -0.1")
    help_text = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "the model's calibrated rejection if it has one, else" in " ".join(help_text.split())

