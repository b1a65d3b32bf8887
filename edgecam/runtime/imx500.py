"""The Raspberry Pi AI Camera (Sony IMX500): the network runs on the sensor, edgecam reads its answers.

``edgecam run network.rpk`` loads the network onto the camera through picamera2's IMX500 support
(imported only here, only then). Each frame's metadata carries the network's output tensor (the
softmax of an ``export.target: imx500`` model), so the camera is both the source and the model:
``IMX500Camera.read`` hands out the frame and remembers that frame's outputs, and
``IMX500Classifier.prepare`` picks them up again as the frame's "input tensor", which ``infer_all``
turns into probabilities. Everything after that (labels, decisions, unknown by ``--threshold``,
overlay, JSON lines, the web page, MQTT) is the loop LiteRT models run through.

Labels and the fit come from ``imx500.json`` beside the ``.rpk`` (written by finetune), else
``labels.txt`` beside it, else ``--labels``. There is no unknown score on the sensor in this
version; the network cannot be reloaded while running (restart ``edgecam run`` with a new one).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgecam.console import log
from edgecam.errors import ModelError
from edgecam.modelfile.metadata import read_labels_file
from edgecam.modelfile.preprocess import FITS
from edgecam.runtime.classifier import PROBABILITY_SLACK, Prediction
from edgecam.runtime.sources import Picamera2Source, SourceError

if TYPE_CHECKING:
    from edgecam.runtime.reload import Loaded

SUFFIX = ".rpk"
METADATA = "imx500.json"  # written by `edgecam finetune ... export.target=imx500`
NO_OUTPUT_TIMEOUT = 10.0  # seconds of frames without the network's output before the camera counts as failed
REMEMBERED = 16  # frames whose outputs are kept for prepare (the capture thread asks for the newest)
FRAME_RATE = 30  # frames per second asked of the camera when the network states none


def is_imx500_network(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SUFFIX)


@dataclass(frozen=True)
class NetworkInfo:
    labels: tuple[str, ...]
    fit: str = "center_crop"  # how the sensor's image is fitted to the input (the ROI)
    input_size: tuple[int, int] | None = None  # (height, width), if stated


def network_info(path: Path, labels=None) -> NetworkInfo:
    """Labels and fit for the network at ``path``: ``--labels``, else ``imx500.json``, else ``labels.txt``."""
    described = path.with_name(METADATA)
    info = {}
    if described.is_file():
        try:
            info = json.loads(described.read_text(encoding="utf-8"))
            fit, size = info.get("fit", "center_crop"), info.get("input_size")
            stated = tuple(str(label) for label in info["labels"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ModelError(f"{described}: not an edgecam IMX500 description (labels, fit)") from None
        if fit not in FITS:
            raise ModelError(f"{described}: fit {fit!r} is not one of {', '.join(FITS)}")
    elif labels is None and path.with_name("labels.txt").is_file():
        labels = path.with_name("labels.txt")
    if labels is not None:
        stated = read_labels_file(labels) if isinstance(labels, (str, os.PathLike)) else tuple(labels)
    elif not info:
        raise ModelError(f"{path}: no labels: put {METADATA} or labels.txt from the run folder beside it, "
                         "or pass --labels")
    size = tuple(int(v) for v in info["input_size"]) if info.get("input_size") else None
    return NetworkInfo(stated, info.get("fit", "center_crop"), size)


class IMX500Camera(Picamera2Source):
    """The AI Camera with ``network`` loaded onto it: RGB frames, each with the network's outputs."""

    live = True

    def __init__(self, network: Path, size: tuple[int, int] = (640, 480), fit: str = "center_crop"):
        super().__init__(size)  # size, and close(): stopping and closing the Picamera2 camera
        self.network, self.fit = Path(network), fit
        self.name = f"imx500 {self.network.name}"
        self._imx500 = None  # loaded once: uploading the network takes a while
        self._outputs: OrderedDict[int, tuple[np.ndarray, list[np.ndarray]]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
            from picamera2.devices import IMX500
        except ImportError:
            raise SourceError("picamera2 with IMX500 support: not installed (sudo apt install python3-picamera2 "
                              "imx500-all)") from None
        if self._imx500 is None:
            if not self.network.is_file():
                raise SourceError(f"{self.network}: no such network file")
            try:
                self._imx500 = IMX500(str(self.network.resolve()))  # before Picamera2: it uploads the network
            except (RuntimeError, OSError) as exc:
                raise SourceError(f"{self.network}: cannot load it onto the AI Camera ({exc})") from None
        imx500 = self._imx500
        camera = Picamera2(imx500.camera_num)
        rate = getattr(imx500.network_intrinsics, "inference_rate", None) or FRAME_RATE  # stated in some .rpk files
        config = camera.create_preview_configuration(main={"size": tuple(self.size), "format": "RGB888"},
                                                     controls={"FrameRate": rate}, buffer_count=12)
        imx500.show_network_fw_progress_bar()
        camera.start(config)
        if self.fit == "center_crop":  # else the network sees the whole sensor, squeezed ("resize")
            imx500.set_auto_aspect_ratio()
        self._camera = camera

    def read(self) -> np.ndarray | None:
        """The next frame whose metadata has the network's outputs (None after ``NO_OUTPUT_TIMEOUT`` without)."""
        deadline = time.monotonic() + NO_OUTPUT_TIMEOUT
        while self._camera is not None and time.monotonic() < deadline:
            try:
                request = self._camera.capture_request()
            except Exception:  # the camera stack reports failures many ways; the capture thread reopens
                return None
            try:
                frame, metadata = request.make_array("main"), request.get_metadata()
            finally:
                request.release()
            outputs = self._imx500.get_outputs(metadata)
            if outputs is None:  # the network is still loading, or skipped this frame
                continue
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # "RGB888" is B, G, R in memory
            with self._lock:
                self._outputs[id(rgb)] = (rgb, [np.asarray(o, np.float32) for o in outputs])
                while len(self._outputs) > REMEMBERED:
                    self._outputs.popitem(last=False)
            return rgb
        return None

    def outputs_of(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The network's outputs for frame ``rgb`` (one this camera handed out)."""
        with self._lock:
            kept = self._outputs.get(id(rgb))
        if kept is None or kept[0] is not rgb:
            raise ModelError(f"{self.network}: this frame did not come from the AI Camera (no network outputs)")
        return kept[1]


class IMX500Classifier:
    """What the loop needs of a classifier, for a network that runs on the camera."""

    unknown_threshold = None  # no unknown score on the sensor: --threshold decides unknown
    unknown_keep = None
    input_dtype = np.dtype(np.uint8)

    def __init__(self, camera: IMX500Camera, info: NetworkInfo):
        self.camera, self.path, self.labels = camera, camera.network, tuple(info.labels)
        self.input_size = info.input_size or (0, 0)
        self.size_bytes = self.path.stat().st_size if self.path.is_file() else 0
        self._softmax: bool | None = None

    def prepare(self, rgb: np.ndarray) -> list[np.ndarray]:
        return self.camera.outputs_of(rgb)

    def infer_all(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, float | None]:
        """The frame's first output as probabilities (softmax applied if it turns out to be logits)."""
        scores = np.asarray(outputs[0], np.float32).reshape(-1)
        if scores.shape != (len(self.labels),):
            raise ModelError(f"{self.path}: the network outputs {scores.size} values, but there are "
                             f"{len(self.labels)} labels")
        if self._softmax is None:
            self._softmax = not (-PROBABILITY_SLACK <= scores.min() and scores.max() <= 1 + PROBABILITY_SLACK)
            if self._softmax:
                log(f"{self.path}: outputs are not probabilities: applying softmax to them")
        if self._softmax:
            exp = np.exp(scores - scores.max())
            scores = exp / exp.sum()
        return scores.astype(np.float32), None

    def infer(self, outputs: list[np.ndarray]) -> np.ndarray:
        return self.infer_all(outputs)[0]

    def classify_all(self, rgb: np.ndarray) -> tuple[np.ndarray, float | None]:
        return self.infer_all(self.prepare(rgb))

    def top_k(self, probabilities: np.ndarray, k: int = 3) -> list[Prediction]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [Prediction(self.labels[i], int(i), float(probabilities[i])) for i in order]


def open_network(path: str | os.PathLike, labels=None, size: tuple[int, int] = (640, 480),
                 source: str = "") -> tuple[IMX500Classifier, IMX500Camera]:
    """The AI Camera with the network at ``path`` loaded and started, and its classifier."""
    if source and source not in ("picamera2", "pi", "picam", "imx500"):
        raise ModelError(f"{path}: an IMX500 network runs on the AI Camera; --source {source} cannot feed it")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such network file")
    info = network_info(path, labels)
    camera = IMX500Camera(path, size, info.fit)
    camera.open()
    return IMX500Classifier(camera, info), camera


def load_network(cfg) -> tuple[Loaded, IMX500Camera]:
    """``open_network`` for ``edgecam run`` (``cfg`` a RunConfig): the loop's Loaded model and the camera."""
    from edgecam.runtime.control import ModelVersion
    from edgecam.runtime.reload import Loaded, file_key, file_sha256

    classifier, camera = open_network(cfg.model, cfg.labels or None, cfg.size(), cfg.source)
    log(f"{cfg.model}: runs on the AI Camera; no unknown score on the sensor (--threshold decides unknown)")
    return Loaded(classifier, ModelVersion(str(cfg.model), file_sha256(cfg.model)), file_key(cfg.model)), camera
