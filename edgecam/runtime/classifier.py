"""A LiteRT image classifier built once from a ``.tflite`` file and its metadata.

Everything it needs comes from the model file: input size and dtype, quantisation parameters,
labels and normalisation (TFLite metadata). Foreign models without metadata work when given a
labels file; what is assumed for them is said once on stderr: [-1, 1] inputs for a float model,
and softmax for outputs that turn out not to be probabilities (logits). The interpreter is
created once and reused for every frame.

Open-set models have a second output, ``unknown_score`` ([1, 1], higher = less like anything
the model was trained on), and their metadata states the threshold calibrated on known images
(``extra["unknown"]["threshold"]``): a softmax score cannot say "none of these", this can.
Outputs are found by name, never by order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecam.console import log
from edgecam.errors import ModelError
from edgecam.files import read_user_file
from edgecam.modelfile.metadata import ModelInfo, read_labels_file, read_metadata
from edgecam.runtime.litert import make_interpreter
from edgecam.modelfile.preprocess import PREPROCESSING, Preprocessing

# Foreign float models without metadata are assumed to want MobileNet-style [-1, 1] inputs.
DEFAULT_MEAN, DEFAULT_STD = (127.5,), (127.5,)
# First lines of label files that list a background class the model may not output.
BACKGROUND_NAMES = ("background", "???", "dummy", "__background__")
# How far outputs may stray from [0, 1] (float rounding, dequantisation) and still be probabilities.
PROBABILITY_SLACK = 1e-3
# The open-set output's name (exported models carry it beside the probabilities).
UNKNOWN_OUTPUT = "unknown_score"
_said: set[str] = set()  # notices already given in this process (benchmark builds one model per thread count)


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float


class Classifier:
    """Run a classification ``.tflite`` on RGB frames: ``classify(rgb) -> probabilities``."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        labels: Sequence[str] | str | os.PathLike | None = None,
        num_threads: int | None = None,
    ):
        self.path = Path(model_path)
        content = _read_model(self.path)
        try:
            self.info: ModelInfo | None = read_metadata(content)
        except ModelError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        try:
            self._interpreter = make_interpreter(num_threads, model_content=content)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: not a valid TFLite model ({_first_line(exc)})") from None
        self._input, self._output, self._unknown = self._check_signature()
        self.labels = self._resolve_labels(labels)
        self.preprocessing = self._preprocessing()
        # Fixed per model, so worked out once instead of per frame (prepare runs at camera rate).
        self._size = self.input_size
        self._raw = self.input_dtype == np.uint8 and self._is_raw_pixels()
        self.unknown_threshold: float | None = self._unknown_threshold()
        self.size_bytes = len(content)
        self._softmax: bool | None = None  # decided on the first inference
        if self.input_dtype != np.uint8 and not (self.info and self.info.mean and self.info.std):  # DEFAULT_*
            _say_once(f"{self.path}: no normalisation in the model's metadata: assuming inputs in [-1, 1], "
                      "(pixel - 127.5) / 127.5 (for another, use a model whose metadata states mean and std)")

    # -- model description ------------------------------------------------------------------
    def _check_signature(self) -> tuple[dict, dict, dict | None]:
        """(input, probabilities output, ``unknown_score`` output or None)."""
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"{self.path}: not an image classifier (expected 1 input and 1 output, "
                f"got {len(inputs)} and {len(outputs)})"
            )
        inp, (out, unknown) = inputs[0], self._split_outputs(outputs)
        shape = tuple(int(d) for d in inp["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ModelError(f"{self.path}: not an image classifier (input shape {list(shape)}, expected [1, H, W, 3])")
        if inp["dtype"] not in (np.uint8, np.int8, np.float32):
            raise ModelError(f"{self.path}: unsupported input type {np.dtype(inp['dtype']).name}")
        if np.prod(out["shape"]) != out["shape"][-1]:
            raise ModelError(f"{self.path}: not a classifier (output shape {[int(d) for d in out['shape']]}, expected [1, N])")
        return inp, out, unknown

    def _split_outputs(self, outputs: list[dict]) -> tuple[dict, dict | None]:
        """The probabilities and the ``unknown_score`` output, by name; ModelError for anything else."""
        if len(outputs) == 1:
            return outputs[0], None
        unknown = [o for o in outputs if o["name"] == UNKNOWN_OUTPUT]
        others = [o for o in outputs if o["name"] != UNKNOWN_OUTPUT]
        if (len(outputs) == 2 and len(unknown) == 1 and [int(d) for d in unknown[0]["shape"]] == [1, 1]
                and unknown[0]["dtype"] in (np.float32, np.uint8, np.int8)):
            return others[0], unknown[0]
        got = ", ".join(f"{o['name']} {[int(d) for d in o['shape']]} {np.dtype(o['dtype']).name}" for o in outputs)
        raise ModelError(f"{self.path}: not an image classifier (expected 1 output, or probabilities and "
                         f"`{UNKNOWN_OUTPUT}`, got {len(outputs)}: {got})")

    def _unknown_threshold(self) -> float | None:
        """The calibrated ``unknown_score`` threshold in the metadata (None without the output or a threshold)."""
        if self._unknown is None:
            return None
        stated = self.info.extra.get("unknown") if self.info else None
        threshold = stated.get("threshold") if isinstance(stated, dict) else None
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and math.isfinite(threshold):
            return float(threshold)
        _say_once(f"{self.path}: the model has an `{UNKNOWN_OUTPUT}` output but no calibrated threshold in its "
                  "metadata: nothing is rejected as unknown by it (--threshold still applies to the top score)")
        return None

    @property
    def unknown_keep(self) -> float | None:
        """Share of known validation images the calibrated threshold keeps (metadata), if stated."""
        stated = self.info.extra.get("unknown") if self.info and self.unknown_threshold is not None else None
        keep = stated.get("keep") if isinstance(stated, dict) else None
        return float(keep) if isinstance(keep, (int, float)) and not isinstance(keep, bool) else None

    def _resolve_labels(self, labels) -> tuple[str, ...]:
        n = self.num_classes
        if isinstance(labels, (str, os.PathLike)):
            source = str(labels)
            labels = read_labels_file(labels)
        elif labels is not None:
            source = "labels"
        elif self.info and self.info.labels:
            source, labels = f"{self.path} metadata", self.info.labels
        else:
            return tuple(str(i) for i in range(n))
        labels = tuple(labels)
        if len(labels) == n + 1 and labels[0].strip().lower() in BACKGROUND_NAMES:
            labels = labels[1:]  # a 1001-line ImageNet labels file for a 1000-class model
        if len(labels) != n:
            raise ModelError(f"{source}: {len(labels)} labels, but the model outputs {n} classes")
        return labels

    def _preprocessing(self) -> Preprocessing:
        """The rule the model's metadata states; edgecam's own rule for models that state none."""
        stated = self.info.extra.get("preprocessing") if self.info else None
        if not isinstance(stated, dict):  # foreign models, and edgecam models before it was stated
            return PREPROCESSING
        try:
            return Preprocessing.from_description(stated)
        except ModelError as exc:
            raise ModelError(f"{self.path}: {exc}") from None

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model takes."""
        return int(self._input["shape"][1]), int(self._input["shape"][2])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def num_classes(self) -> int:
        return int(self._output["shape"][-1])

    # -- inference --------------------------------------------------------------------------
    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB frame → the input tensor (crop/resize, then the model's number format).

        Touches no interpreter state, so the capture thread may call it while ``infer`` runs.
        """
        pixels = self.preprocessing.apply(rgb, self._size)
        if self._raw:
            return pixels[None]
        dtype = self.input_dtype
        mean, std = self._normalisation()
        x = (pixels.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        if dtype == np.float32:
            return x[None]
        scale, zero = self._input["quantization"]
        q = np.round(x / scale + zero)
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)[None]

    def _is_raw_pixels(self) -> bool:
        """uint8 input that takes pixel values as they are (edgecam models, most quantised models)."""
        scale, zero = self._input["quantization"]
        if scale == 0 or not (self.info and self.info.mean and self.info.std):
            # No normalisation metadata: uint8 image models take pixels as they are, whatever
            # their quantisation (Coral / TF Hub quantised models: scale 1/127.5, zero point 128).
            return True
        mean, std = self._normalisation()
        # Quantised input whose real value is (q - zero) * scale == (pixel - mean) / std.
        return bool(np.allclose([zero, scale], [np.mean(mean), 1.0 / np.mean(std)], rtol=1e-3, atol=0.5))

    def _normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.info and self.info.mean and self.info.std:
            return self.info.mean, self.info.std
        if self.input_dtype == np.uint8:
            return (0.0,), (1.0,)
        return DEFAULT_MEAN, DEFAULT_STD

    def infer_all(self, tensor: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Run one prepared input: (probabilities as ``infer`` gives them, dequantised unknown score or None)."""
        self._interpreter.set_tensor(self._input["index"], tensor)
        self._interpreter.invoke()
        scores = _dequantise(self._interpreter.get_tensor(self._output["index"]).reshape(-1), self._output)
        if self._softmax is None:
            low, high = float(scores.min()), float(scores.max())
            self._softmax = not (-PROBABILITY_SLACK <= low and high <= 1 + PROBABILITY_SLACK)
            if self._softmax:
                _say_once(f"{self.path}: outputs are not probabilities (values from {low:.3g} to {high:.3g} on the "
                          "first frame): applying softmax to them")
        probs = _softmax(scores) if self._softmax else scores
        if self._unknown is None:
            return probs, None
        raw = self._interpreter.get_tensor(self._unknown["index"]).reshape(-1)
        return probs, float(_dequantise(raw, self._unknown)[0])

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run one prepared input; returns float probabilities of shape (num_classes,).

        Outputs outside [0, 1] on the first inference are taken for logits: softmax from then on.
        (Outputs within [0, 1] that do not sum to 1 stay as they are: sigmoid, multi-label.)
        """
        return self.infer_all(tensor)[0]

    def classify(self, rgb: np.ndarray) -> np.ndarray:
        return self.infer(self.prepare(rgb))

    def classify_all(self, rgb: np.ndarray) -> tuple[np.ndarray, float | None]:
        """(probabilities, unknown score or None) of one HxWx3 uint8 RGB frame."""
        return self.infer_all(self.prepare(rgb))

    def top_k(self, probabilities: np.ndarray, k: int = 3) -> list[Prediction]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [Prediction(self.labels[i], int(i), float(probabilities[i])) for i in order]


def _dequantise(raw: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32: quantised values through its (scale, zero point); float ones copied."""
    if raw.dtype == np.float32:
        return raw.copy()
    scale, zero = detail["quantization"]
    return (raw.astype(np.float32) - zero) * (scale or 1.0)


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return (exp / exp.sum()).astype(np.float32)


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log(message)


def _read_model(path: Path) -> bytes:
    content = read_user_file(path, "model file", ModelError)
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (no TFL3 identifier)")
    return content


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
