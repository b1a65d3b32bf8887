"""``edgecam run``: frames in, labels out, as fast as the model allows.

Three threads make a pipeline: capture decodes each frame and crops/resizes it to the model's
input (``capture``), the model runs in its own thread (``inference``), and this one makes the
decisions and feeds the outputs (JSON lines, window, page, MQTT, ...), once per frame. So with a
fast model the Python around inference overlaps with it instead of adding to it. Everything is
released on the way out, whatever the reason (end of file, q, Ctrl-C, SIGTERM). Between frames
the loop applies what a ``Control`` asked for (threshold, pause, snapshot) and swaps in a model
the ``Reloader`` has loaded and checked in the background.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

import cv2
import numpy as np

from edgecam.config.camera import RunConfig
from edgecam.console import log
from edgecam.runtime.capture import Frame, FrameGrabber
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.control import Control, ModelVersion
from edgecam.runtime.decisions import ChangeCommand, Decider
from edgecam.runtime.imx500 import is_imx500_network, load_network
from edgecam.runtime.inference import InferenceThread, Inferred, rule_text
from edgecam.runtime.keeper import open_keeper
from edgecam.runtime.outputs import JsonLines, Output, Recorder, WindowOutput, close_all
from edgecam.runtime.overlay import decided_text, draw_overlay
from edgecam.runtime.reload import Reloader, load_model
from edgecam.runtime.result import Result
from edgecam.runtime.sources import Source, open_source, quiet_opencv
from edgecam.runtime.stats import RunStats, SlidingFPS, summary_line

# Builds extra outputs (e.g. a web page) once the model and the source are open.
ExtraOutputs = Callable[[Classifier, Source], "list[Output]"]


def stream(classifier: Classifier, grabber: FrameGrabber, cfg: RunConfig, stop: threading.Event | None = None,
           control: Control | None = None, reloader: Reloader | None = None) -> Iterator[tuple[Frame, Result]]:
    """Yield (frame, result) for each processed frame until the source ends or ``stop`` is set.

    The model runs in its own thread (``InferenceThread``), a frame ahead of the decisions made
    here; ``control`` is applied between frames (threshold, pause, snapshot); ``reloader`` hands
    over checked new models, swapped in between two frames.
    """
    control, stop = control or Control(), stop or threading.Event()
    decisions = Decisions(classifier, cfg, control)
    for inferred in InferenceThread(classifier, grabber, cfg, stop, control, reloader):
        yield inferred.frame, decisions.result(inferred)


class Decisions:
    """Model outputs → one ``Result`` per frame: smoothing, the unknown rule, top labels, FPS, with
    what the Control asked for (a threshold, a snapshot) and a reloaded model's labels applied in order."""

    def __init__(self, classifier: Classifier, cfg: RunConfig, control: Control):
        self.classifier, self.cfg, self.control = classifier, cfg, control
        self.threshold = cfg.threshold
        self.decider = make_decider(classifier, cfg)
        self.fps = SlidingFPS()

    def result(self, inferred: Inferred) -> Result:
        decider, frame = self.decider, inferred.frame
        if inferred.classifier is not self.classifier:  # the first frame of a reloaded model
            self.classifier = inferred.classifier
            decider.new_model(self.classifier.labels)
            apply_rule(decider, self.classifier, self.threshold)
        if inferred.threshold_asked:
            self.threshold = inferred.threshold
            apply_rule(decider, self.classifier, self.threshold)
        labels, probs = self.classifier.labels, inferred.probs
        smoothed = decider.smooth(probs)
        decision = decider.decide(smoothed, frame.time, decider.smooth_unknown(inferred.unknown))
        top = top_pairs(labels, smoothed, self.cfg.top_k)
        raw_top = top if decider.smoothing <= 0 and len(top) >= 2 else top_pairs(labels, probs, max(2, self.cfg.top_k))
        latency_ms = inferred.prepare_ms + (time.perf_counter() - inferred.started) * 1000
        model = inferred.new_model
        return Result(frame.index, frame.time, top, decision.label, decision.score, decision.changed,
                      self.fps.tick(), inferred.inference_ms, latency_ms, decision.unknown_score,
                      snapshot=self.control.take_snapshot(), model_path=model and model.path,
                      model_sha256=model and model.sha256, raw_top=raw_top)


def top_pairs(labels, probabilities, k: int) -> tuple[tuple[str, float], ...]:
    """``Classifier.top_k`` as (label, score) pairs, without its objects: it runs on every frame."""
    order, scores = np.argsort(-probabilities, kind="stable")[:k].tolist(), probabilities.tolist()
    return tuple((labels[i], scores[i]) for i in order)


def make_decider(classifier: Classifier, cfg: RunConfig) -> Decider:
    """One 'unknown' rule: --threshold on the top score when given, else the model's calibrated rejection."""
    decider = Decider(classifier.labels, cfg.smoothing, 0.0, cfg.hold)
    apply_rule(decider, classifier, cfg.threshold)
    return decider


def apply_rule(decider: Decider, classifier: Classifier, threshold: float | None) -> None:
    """A number is the user's rule (the top score against it), so it turns the model's rejection off;
    None is the model's calibrated rejection, and with neither nothing is unknown (threshold 0), as
    for models before open-set scores."""
    if threshold is not None:
        decider.threshold, decider.unknown_threshold = threshold, None
    else:
        decider.threshold, decider.unknown_threshold = 0.0, classifier.unknown_threshold


def unknown_rule(classifier: Classifier, cfg: RunConfig) -> str | None:
    """The start-up line saying when frames are called unknown (None when the log says nothing new)."""
    if classifier.unknown_threshold is None:
        return None
    if cfg.threshold is not None:
        return f"--threshold {cfg.threshold:g}: {rule_text(classifier, cfg.threshold)}"
    return rule_text(classifier, None)


def build_outputs(cfg: RunConfig, source_fps: float | None, window: bool) -> list[Output]:
    outputs: list[Output] = []
    if cfg.headless:
        outputs.append(JsonLines())
    if window:
        outputs.append(WindowOutput(f"edgecam - {cfg.model}"))
    if cfg.record:
        outputs.append(Recorder(cfg.record, fps=source_fps or 15.0))
    return outputs


def run(cfg: RunConfig, stop: threading.Event | None = None, extra_outputs: ExtraOutputs | None = None,
        source: Source | None = None, window: bool | None = None, control: Control | None = None) -> dict:
    """Run the camera loop described by ``cfg``; returns the summary (also logged to stderr).

    ``stop`` ends the loop from another thread; ``extra_outputs`` adds outputs (e.g. a web
    page); ``source`` replaces ``cfg.source`` (an opened Source, e.g. a fake camera);
    ``window`` overrides the default (a window unless headless); ``control`` steers the running
    loop from other threads (threshold, pause, snapshot, model reload: ``edgecam.runtime.control``).
    """
    quiet_opencv()
    control = control or Control()
    if is_imx500_network(cfg.model):  # the AI Camera: the network runs on the sensor, which is the source too
        model, source = load_network(cfg)
    else:
        model = load_model(cfg.model, cfg.labels or None, cfg.threads or None)
        source = source or open_source(cfg.source, cfg.size())
    classifier, control.model = model.classifier, model.version
    log(f"{cfg.model}: {len(classifier.labels)} labels, input {classifier.input_size[1]}x{classifier.input_size[0]} "
        f"{classifier.input_dtype.name}; source: {source.name}")
    rule = unknown_rule(classifier, cfg)
    if rule:
        log(rule)
    outputs = _open_outputs(cfg, classifier, source, extra_outputs, window, control.model)
    stats = RunStats()
    with FrameGrabber(source, reconnect=cfg.reconnect) as grabber, \
            Reloader(model, control, cfg.labels or None, cfg.threads or None) as reloader:
        try:
            _process(stream(classifier, grabber, cfg, stop, control, reloader), cfg, outputs, stats)
        finally:
            failed = close_all(outputs)  # e.g. a recording the disk could not hold
            summary = stats.summary(grabber.dropped, grabber.reconnects)
            log(summary_line(summary))
            if failed:
                raise failed
    return summary


def _open_outputs(cfg: RunConfig, classifier: Classifier, source: Source, extra_outputs: ExtraOutputs | None,
                  window: bool | None, model: ModelVersion | None = None) -> list[Output]:
    """Outputs first: a missing display, a bad record path or keep folder fails before any frame is read."""
    outputs: list[Output] = []
    try:
        outputs += build_outputs(cfg, source.fps, not cfg.headless if window is None else window)
        if cfg.keep.dir:
            outputs.append(open_keeper(cfg.keep, source.name, model, live=source.live))
        outputs += extra_outputs(classifier, source) if extra_outputs else []
    except BaseException:
        for output in outputs:
            output.close()
        source.close()
        raise
    return outputs


def _process(results: Iterator[tuple[Frame, Result]], cfg: RunConfig, outputs: list[Output], stats: RunStats) -> None:
    """The loop's body: results to every output, the overlay drawn only when someone shows pixels
    (or a snapshot was asked for)."""
    on_change = ChangeCommand(cfg.on_change) if cfg.on_change else None
    try:
        for frame, result in results:
            stats.add(result.latency_ms)
            pixels = result.snapshot or any(o.wants_pixels for o in outputs)  # a web view wants them while watched
            if result.changed:
                log(f"label: {result.label} ({result.score:.0%})")
                if on_change:
                    on_change(result)
            annotated = None
            if pixels:
                annotated = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
                draw_overlay(annotated, list(result.top), result.fps, result.inference_ms,
                             headline=decided_text(result.label, result.score))
            for output in outputs:
                if output.wants_raw:  # the camera's own frame, as captured (e.g. --keep saves it)
                    output.write_raw(result, frame.rgb)
                else:
                    output.write(result, annotated)
            if any(o.quit_requested for o in outputs):
                break
    finally:
        if on_change:
            on_change.close()
