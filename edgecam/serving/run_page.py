"""``edgecam run --serve``: the camera loop plus a live page of its annotated frames and results.

The loop's only extra work is ``LiveView.write``: remember the result and, while someone
watches, encode the annotated frame once and hand it to the frame slot. Clients never touch
the loop; a stalled one only falls behind on its own.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from edgecam.config.camera import RunConfig
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.control import Control
from edgecam.runtime.loop import ExtraOutputs, run
from edgecam.runtime.outputs import Output
from edgecam.runtime.result import Result
from edgecam.runtime.sources import Source
from edgecam.serving.review_page import mount_review
from edgecam.serving.server import Page, WebServer, start_server


class RunPage(Page):
    """What ``/api/status`` reports for ``edgecam run``: the latest result and its context."""

    html, title, script = "live.html", "edgecam live", "live.js"
    heading = 'edgecam <span id="model" class="dim"></span> <span id="sha256" class="dim"></span>'

    def __init__(self, model: str, source: str = "", control: Control | None = None):
        super().__init__()
        self.model, self.source = model, source
        self.control = control  # tells which model runs (it changes when the file is reloaded)
        self.labels: tuple[str, ...] = ()
        self.result: Result | None = None
        self.processed = 0

    def attach(self, classifier: Classifier, source: Source) -> None:
        self.labels, self.source = tuple(classifier.labels), source.name
        self.changed()

    def status(self) -> dict:
        result = self.result
        version = self.control.model if self.control else None
        return {
            "page": "run",
            "model": version.path if version else self.model,
            "model_sha256": version.sha256 if version else None,
            "labels": list(self.labels),
            "source": self.source,  # answers are redacted as they leave (handler._json)
            "viewers": self.frames.viewers,
            "frames": self.processed,
            "result": result.to_dict() if result else None,
            "review": "review/" if "review" in self.mounts else None,  # with --keep: the kept frames' page
        }


class LiveView(Output):
    """The loop's side of the page: results always, JPEG frames only while someone watches."""

    def __init__(self, page: RunPage):
        self.page = page

    @property
    def wants_pixels(self) -> bool:  # read per frame: no drawing or encoding for nobody
        return self.page.frames.viewers > 0

    def write(self, result: Result, annotated: np.ndarray | None) -> None:
        self.page.result = result
        self.page.processed += 1
        if annotated is not None:
            self.page.show(annotated)
        self.page.changed()


def serve_run(cfg: RunConfig, stop: threading.Event | None = None, source: Source | None = None,
              on_ready: Callable[[WebServer], None] | None = None, control: Control | None = None,
              extra_outputs: ExtraOutputs | None = None) -> dict:
    """``loop.run`` with the live page on ``cfg.serve``; returns the run summary.

    The address is bound first, so a taken port fails before the camera or model is opened.
    ``on_ready`` gets the running server (tests use it to learn a port chosen by the OS);
    ``control`` goes to ``loop.run`` (one is made when none is given: the page reads the model from it);
    ``extra_outputs`` adds outputs beside the page's (e.g. MQTT), built before the page says it is live.
    """
    control = control or Control()
    page = RunPage(cfg.model, control=control)
    if cfg.keep.dir:  # the kept frames, reviewed beside the live view at /review/
        mount_review(page, cfg.keep.dir, cfg.keep.dataset or None)
    with start_server(page, cfg.serve) as server:

        def outputs(classifier: Classifier, opened: Source) -> list[Output]:
            more = extra_outputs(classifier, opened) if extra_outputs else []
            page.attach(classifier, opened)
            server.announce("live view")
            if on_ready:
                on_ready(server)
            return [LiveView(page)] + more

        return run(cfg, stop=stop, extra_outputs=outputs, source=source, window=cfg.window and not cfg.headless,
                   control=control)
