"""``edgecam review``: kept frames (``edgecam run --keep DIR``) in a browser grid, filed into a dataset.

The page shows every kept frame with the model's guess, its score and why it was kept; a tap or
a key files it under a label, marks it as background, discards it or undoes the last action.
The file operations are ``edgecam.collect.review.KeptFrames``; this is only their web side:

    GET  /api/kept?reason=&label=   the kept frames (newest first), filtered; labels, counts, undo
    GET  /kept/<stem>.jpg           a kept frame's JPEG
    POST /api/file {stem, label}    file it under DATASET_DIR/<label>/
    POST /api/background {stem}     file it under DATASET_DIR/<background folder>/
    POST /api/discard {stem}        move it into DIR/.discarded/
    POST /api/undo                  put the files of the last action back

Served on its own by ``edgecam review`` (no camera), or mounted at ``/review/`` beside the live
view of ``edgecam run --serve --keep DIR``; same tokens and limits as every page.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

from edgecam.config.camera import ServeConfig, label_problem
from edgecam.console import log
from edgecam.errors import ActionError, ConfigError
from edgecam.serving.server import Page, Reply, WebServer, start_server

JPEG = "image/jpeg"
OPTIONS = {"address": "--serve", "token": "--token"}  # ServeConfig's keys as `edgecam review` names them


class ReviewPage(Page):
    """The review grid: no stream; its own routes (the list and the images) and its actions."""

    html = document = "review.html"  # a document of its own: a grid instead of a stream
    title, script = "edgecam review", "review.js"
    heading = 'edgecam review <span id="folder" class="dim"></span>'

    def __init__(self, kept, live: str = ""):
        super().__init__()
        self.kept = kept  # a collect.review.KeptFrames, known by what it calls (collect imports serving)
        self.live = live  # a link back to the live view, when mounted beside it

    def status(self) -> dict:
        return {"page": "review", "kept_dir": str(self.kept.kept),
                "dataset": str(self.kept.dataset) if self.kept.dataset else None, "live": self.live}

    def get(self, path: str, query: dict[str, list[str]]) -> Reply | None:
        if path == "/api/kept":
            def arg(name: str) -> str:
                return query.get(name, [""])[-1]

            return 200, {**self.kept.listing(arg("reason"), arg("label")), "live": self.live}
        if path.startswith("/kept/") and path.endswith(".jpg"):
            try:
                image = self.kept.image(path[len("/kept/"):-len(".jpg")])
                return 200, image.read_bytes(), JPEG
            except ActionError as exc:
                return exc.status, {"error": str(exc)}
            except OSError:  # filed or discarded between the check and the read
                return 404, {"error": "not found"}
        return None

    def post(self, action: str, body: dict) -> tuple[int, dict]:
        try:
            if action == "file":
                return 200, self.kept.file(body.get("stem"), body.get("label"))
            if action == "background":
                return 200, self.kept.file_background(body.get("stem"))
            if action == "discard":
                return 200, self.kept.discard(body.get("stem"))
            if action == "undo":
                return 200, self.kept.undo()
        except ActionError as exc:
            return exc.status, {"error": str(exc)}
        return 404, {"error": f"no action {action!r}"}


def review(kept_dir: str | os.PathLike, dataset: str | os.PathLike, serve: ServeConfig,
           background: str = "background") -> dict[str, int]:
    """``edgecam review``: check the options, then serve the review page until Ctrl-C; what was done."""
    from edgecam.collect.review import KeptFrames  # collect imports serving: not at module level

    problem = serve.validate()
    if problem:  # worded as the camera commands' loader words it
        raise ConfigError(f"command line: {OPTIONS[problem[0]]}: {problem[1]}")
    if label_problem(background):
        raise ConfigError(f"command line: --background-folder: {label_problem(background)}")
    kept = KeptFrames(kept_dir, dataset, background)
    serve_review(kept, serve)
    return dict(kept.done)


def serve_review(kept, serve: ServeConfig, on_ready: Callable[[WebServer], None] | None = None,
                 stop: threading.Event | None = None) -> None:
    """Serve the review page until Ctrl-C or ``stop`` is set; ``on_ready`` gets the running server."""
    stop = stop or threading.Event()
    with start_server(ReviewPage(kept), serve) as server:
        total = len(kept.entries())
        log(f"review: {total} kept frame{'s' if total != 1 else ''} in {kept.kept}"
            + (f"; filing into {kept.dataset}" if kept.dataset else ""))
        server.announce("review page")
        if on_ready:
            on_ready(server)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) is how a review ends
            pass
    done = kept.done
    train = f"edgecam finetune data.path={kept.dataset}" + (
        f" data.background={kept.background}" if kept.dataset and (kept.dataset / kept.background).is_dir() else "")
    log(f"review: filed {done['file']}, background {done['background']}, discarded {done['discard']}"
        + (f" (train with: {train})" if done["file"] + done["background"] else ""))


def mount_review(server_page: Page, kept_dir: str | os.PathLike, dataset: str | os.PathLike | None = None,
                 background: str = "background", name: str = "review") -> ReviewPage:
    """Serve the review of ``kept_dir`` at ``/NAME/`` beside ``server_page`` (the folder may not exist yet).

    Without ``dataset`` the page can discard and undo, but not file.
    """
    from edgecam.collect.review import KeptFrames

    page = ReviewPage(KeptFrames(kept_dir, dataset, background, must_exist=False), live="../")
    server_page.mounts[name] = page
    return page
