"""Hot model reload: a new model file is loaded and checked in the background, then swapped in.

Triggers: ``Control.request_reload`` (the CLI calls it on SIGHUP; MQTT may too) and the model
file being replaced, seen by polling its (inode, mtime, size) about once a second (an atomic
rename changes the inode; a file still being written is waited for until it holds still).

A candidate must load, have the running model's labels (the same set: a model with other labels
would silently change what every consumer of the labels receives, so changing labels takes a
restart), and pass a self-test on the latest camera frame: probabilities of the right shape, all
finite. Only then does the loop get it (``take``), and it swaps between two frames: no frame is
skipped. A candidate that fails is one log line, ``reload rejected: <path>: <reason>``, and the
running model carries on.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecam.console import log as _log
from edgecam.errors import EdgecamError
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.control import Control, ModelVersion

POLL = 1.0  # seconds between looks at the model file
SETTLE = 0.25  # a changed file must hold still this long before it is loaded
SETTLE_TRIES = 20  # ... and is loaded anyway after this many looks (a file written for ever)
WAKE = 0.1  # seconds between looks for a reload request (and for the end of the run)

def file_key(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(inode, mtime in ns, size) of ``path``, None if it cannot be read; a replaced file has another."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Loaded:
    classifier: Classifier
    version: ModelVersion
    key: tuple[int, int, int] | None  # the file's key when it was loaded


def load_model(path: str | os.PathLike, labels=None, threads: int | None = None) -> Loaded:
    """The classifier of ``path`` and the SHA-256 of the bytes it was built from.

    The file is hashed after it was loaded; if its key changed meanwhile (replaced while
    loading), both are done again, so the hash always names the model that runs.
    Raises what ``Classifier`` raises (ModelError: one line, naming the path).
    """
    if str(path).lower().endswith(".rpk"):  # edgecam.runtime.imx500: uploading a network to the camera takes minutes
        raise EdgecamError(f"{path}: an IMX500 network cannot be swapped while running: restart edgecam run")
    for _ in range(3):
        before = file_key(path)
        classifier = Classifier(path, labels=labels, num_threads=threads)
        try:
            digest = file_sha256(path)
        except OSError:
            continue
        after = file_key(path)
        if before == after:
            return Loaded(classifier, ModelVersion(str(path), digest), after)
    raise EdgecamError(f"{path}: the file kept changing while it was loaded")


def self_test(classifier: Classifier, rgb: np.ndarray | None, labels: tuple[str, ...]) -> str | None:
    """Why ``classifier`` cannot replace a model with ``labels`` (None when it can)."""
    if set(classifier.labels) != set(labels) or len(classifier.labels) != len(labels):
        return f"other labels ({', '.join(classifier.labels)}; running: {', '.join(labels)})"
    frame = rgb if rgb is not None else np.full((240, 320, 3), 128, np.uint8)
    try:
        probs, unknown = classifier.infer_all(classifier.prepare(frame))
    except Exception as exc:  # anything the interpreter raises: the old model keeps running
        return f"self-test failed ({type(exc).__name__}: {exc})"
    if probs.shape != (len(labels),):
        return f"self-test: probabilities of shape {list(probs.shape)}, expected [{len(labels)}]"
    if not np.all(np.isfinite(probs)) or (unknown is not None and not math.isfinite(unknown)):
        return "self-test: the outputs are not finite numbers"
    return None


class Reloader:
    """The background thread that watches the model file, loads and checks candidates.

    The loop calls ``offer(rgb)`` with each frame it reads (the self-test's input) and ``take()``
    between frames (a checked ``Loaded``, or None).
    """

    def __init__(self, running: Loaded, control: Control, labels=None, threads: int | None = None,
                 log=None, poll: float = POLL):
        self.path, self.control, self.labels, self.threads = Path(running.version.path), control, labels, threads
        self.running_labels = tuple(running.classifier.labels)
        self.log, self.poll = log or _log, poll
        self._key, self._sha256 = running.key, running.version.sha256
        self._frame: np.ndarray | None = None
        self._ready: Loaded | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model reload", daemon=True)

    def __enter__(self) -> "Reloader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    # -- the loop's side --------------------------------------------------------------------
    def offer(self, rgb: np.ndarray) -> None:
        self._frame = rgb

    def take(self) -> Loaded | None:
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        next_look = time.monotonic() + self.poll
        while not self._stop.is_set():
            reason = self.control.next_reload(WAKE)
            if reason is None and time.monotonic() >= next_look:
                next_look = time.monotonic() + self.poll
                reason = self._file_changed()
            if reason is not None:
                self._reload(reason)

    def _file_changed(self) -> str | None:
        """"file replaced" once the model file's key differs from the loaded one's and holds still."""
        key = file_key(self.path)
        if key is None or key == self._key:
            return None  # gone (being replaced?): wait for it to come back
        for _ in range(SETTLE_TRIES):
            if self._stop.wait(SETTLE):
                return None
            settled = file_key(self.path)
            if settled == key:
                break
            key = settled
        return "file replaced"

    def _reload(self, reason: str) -> None:
        try:
            loaded = load_model(self.path, self.labels, self.threads)
        except EdgecamError as exc:
            self._key = file_key(self.path)  # not again until the file changes again
            self._reject(str(exc))
            return
        self._key = loaded.key
        if reason == "file replaced" and loaded.version.sha256 == self._sha256:
            return  # touched, or replaced by the same bytes: nothing to swap
        problem = self_test(loaded.classifier, self._frame, self.running_labels)
        if problem:
            self._reject(problem)
            return
        self._sha256 = loaded.version.sha256
        with self._lock:
            self._ready = loaded  # a newer one replaces one the loop has not taken yet

    def _reject(self, reason: str) -> None:
        prefix = f"{self.path}: "
        self.log(f"reload rejected: {self.path}: {reason[len(prefix):] if reason.startswith(prefix) else reason}")
