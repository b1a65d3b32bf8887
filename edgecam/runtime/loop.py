"""``edgecam run``: frames in, labels out, as fast as the model allows.

The interpreter is built once; capture runs in its own thread; preprocessing, inference,
decisions and drawing run here, once per frame. Everything is released on the way out,
whatever the reason (end of file, q, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

import cv2

from edgecam.config.camera import RunConfig
from edgecam.console import log
from edgecam.runtime.capture import Frame, FrameGrabber, frames
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.decisions import ChangeCommand, Decider
from edgecam.runtime.outputs import JsonLines, Output, Recorder, WindowOutput, close_all
from edgecam.runtime.overlay import decided_text, draw_overlay
from edgecam.runtime.result import Result
from edgecam.runtime.sources import Source, open_source, quiet_opencv
from edgecam.runtime.stats import RunStats, SlidingFPS, summary_line

# Builds extra outputs (e.g. a web page) once the model and the source are open.
ExtraOutputs = Callable[[Classifier, Source], "list[Output]"]


def stream(classifier: Classifier, grabber: FrameGrabber, cfg: RunConfig,
           stop: threading.Event | None = None) -> Iterator[tuple[Frame, Result]]:
    """Yield (frame, result) for each processed frame until the source ends or ``stop`` is set."""
    decider = make_decider(classifier, cfg)
    fps = SlidingFPS()
    for frame in frames(grabber, stop or threading.Event(), limit=cfg.max_frames):
        start = time.perf_counter()
        tensor = classifier.prepare(frame.rgb)
        t_infer = time.perf_counter()
        probs, unknown = classifier.infer_all(tensor)
        inference_ms = (time.perf_counter() - t_infer) * 1000
        smoothed = decider.smooth(probs)
        decision = decider.decide(smoothed, frame.time, decider.smooth_unknown(unknown))
        top = tuple((p.label, p.score) for p in classifier.top_k(smoothed, cfg.top_k))
        latency_ms = (time.perf_counter() - start) * 1000
        yield frame, Result(frame.index, frame.time, top, decision.label, decision.score, decision.changed,
                            fps.tick(), inference_ms, latency_ms, decision.unknown_score)


def make_decider(classifier: Classifier, cfg: RunConfig) -> Decider:
    """One 'unknown' rule: --threshold on the top score when given, else the model's calibrated rejection.

    A user's number means "this is the rule I want", so it turns the model's rejection off; with
    neither, nothing is unknown (threshold 0), as for models before open-set scores.
    """
    if cfg.threshold is not None:
        return Decider(classifier.labels, cfg.smoothing, cfg.threshold, cfg.hold)
    return Decider(classifier.labels, cfg.smoothing, 0.0, cfg.hold, classifier.unknown_threshold)


def unknown_rule(classifier: Classifier, cfg: RunConfig) -> str | None:
    """The start-up line saying when frames are called unknown (None when the log says nothing new)."""
    if classifier.unknown_threshold is None:
        return None
    if cfg.threshold is not None:
        return (f"--threshold {cfg.threshold:g}: unknown below that top score; the model's calibrated "
                "rejection is off")
    keep = classifier.unknown_keep
    calibrated = f"calibrated to keep {keep:.0%} of known images" if keep is not None else "calibrated"
    return f"unknown above {classifier.unknown_threshold:.4g} ({calibrated}; --threshold overrides)"


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
        source: Source | None = None, window: bool | None = None) -> dict:
    """Run the camera loop described by ``cfg``; returns the summary (also logged to stderr).

    ``stop`` ends the loop from another thread; ``extra_outputs`` adds outputs (e.g. a web
    page); ``source`` replaces ``cfg.source`` (an opened Source, e.g. a fake camera);
    ``window`` overrides the default (a window unless headless).
    """
    quiet_opencv()
    classifier = Classifier(cfg.model, labels=cfg.labels or None, num_threads=cfg.threads or None)
    source = source or open_source(cfg.source, cfg.size())
    log(f"{cfg.model}: {len(classifier.labels)} labels, input {classifier.input_size[1]}x{classifier.input_size[0]} "
        f"{classifier.input_dtype.name}; source: {source.name}")
    rule = unknown_rule(classifier, cfg)
    if rule:
        log(rule)
    outputs: list[Output] = []
    try:  # outputs first: a missing display or bad record path fails before any frame is read
        outputs += build_outputs(cfg, source.fps, not cfg.headless if window is None else window)
        outputs += extra_outputs(classifier, source) if extra_outputs else []
    except BaseException:
        for output in outputs:
            output.close()
        source.close()
        raise
    stats = RunStats()
    with FrameGrabber(source, reconnect=cfg.reconnect) as grabber:
        try:
            _process(classifier, grabber, cfg, stop, outputs, stats)
        finally:
            failed = close_all(outputs)  # e.g. a recording the disk could not hold
            summary = stats.summary(grabber.dropped, grabber.reconnects)
            log(summary_line(summary))
            if failed:
                raise failed
    return summary


def _process(classifier: Classifier, grabber: FrameGrabber, cfg: RunConfig, stop: threading.Event | None,
             outputs: list[Output], stats: RunStats) -> None:
    """The loop's body: results to every output, the overlay drawn only when someone shows pixels."""
    on_change = ChangeCommand(cfg.on_change) if cfg.on_change else None
    for frame, result in stream(classifier, grabber, cfg, stop):
        stats.add(result.latency_ms)
        pixels = any(o.wants_pixels for o in outputs)  # per frame: a web view wants them only while watched
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
            output.write(result, annotated)
        if any(o.quit_requested for o in outputs):
            break
