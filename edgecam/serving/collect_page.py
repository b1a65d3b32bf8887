"""``edgecam collect --serve``: the collect page's status and actions (save, burst, stop).

The camera side (``edgecam.collect.session``) offers every frame to its ``Collector`` and shows
it here while someone watches; the buttons call the same collector the window keys do. The page
knows the collector only by what it calls (save, start_burst, stop_burst, counts, ...), so the
web part does not depend on the collect command.
"""

from __future__ import annotations

from edgecam.config.camera import CollectConfig
from edgecam.errors import ActionError
from edgecam.serving.server import Page


class CollectPage(Page):
    """The collect page's status and its actions: save, burst, stop."""

    html, title, script = "collect.html", "edgecam collect", "collect.js"
    heading = 'edgecam collect <span id="dataset" class="dim"></span>'

    def __init__(self, collector, cfg: CollectConfig):
        super().__init__()
        self.collector, self.cfg = collector, cfg
        self.source = ""
        self.fps = 0.0
        self.frame = -1
        collector.on_change = self.changed

    def status(self) -> dict:
        c = self.collector
        return {
            "page": "collect",
            "dataset": str(c.root),
            "labels": list(c.labels),
            "counts": dict(c.counts),
            "saved": dict(c.saved),
            "last": c.last.relative_to(c.root).as_posix() if c.last else None,
            "burst": c.burst_state(),
            "defaults": {"burst": self.cfg.burst, "interval": self.cfg.interval},
            "source": self.source,  # answers are redacted as they leave (handler._json)
            "viewers": self.frames.viewers,
            "fps": round(self.fps, 1),
            "frame": self.frame,
        }

    def post(self, action: str, body: dict) -> tuple[int, dict]:
        label = body.get("label")
        try:
            if action == "save":
                path = self.collector.save(str(label))
                return 200, {"saved": path.relative_to(self.collector.root).as_posix(), "counts": self.collector.counts}
            if action == "burst":
                count, interval = body.get("count", self.cfg.burst), body.get("interval", self.cfg.interval)
                if isinstance(count, bool) or not isinstance(count, int) or isinstance(interval, bool) \
                        or not isinstance(interval, (int, float)):
                    raise ActionError("burst: count must be a whole number and interval a number of seconds")
                return 202, {"burst": self.collector.start_burst(str(label), count, float(interval))}
            if action == "stop":
                self.collector.stop_burst()
                return 200, {"burst": self.collector.burst_state()}
        except ActionError as exc:
            return exc.status, {"error": str(exc)}
        return 404, {"error": f"no action {action!r}"}
