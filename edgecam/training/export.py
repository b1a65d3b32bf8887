"""Keras classifier → self-describing ``.tflite`` (uint8 RGB in, probabilities out).

float32 and float16 models take uint8 through a Cast at the top of the graph; int8 models are
fully integer with uint8 in and out, calibrated on training images. Labels and normalisation
go in as standard TFLite metadata, and the file is written atomically.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from edgecam import files
from edgecam.modelfile.metadata import ModelInfo, embed_metadata
from edgecam.modelfile.preprocess import PREPROCESSING, Preprocessing
from edgecam.training.graph import Graph
from edgecam.training.tflite import keras_to_tflite, uint8_input_model


def _representative(calibration: np.ndarray) -> Callable:
    # One frame holding 0 and 255 pins the input range to the full pixel range, so the
    # quantised input is the raw pixel value (scale 1, zero point 0) whatever the photos are.
    extremes = np.zeros((1,) + calibration.shape[1:], np.float32)
    extremes[:, ::2] = 255.0

    def representative():
        yield [extremes]
        for image in calibration:
            yield [image[None].astype(np.float32)]

    return representative


def _int8_setup(calibration: np.ndarray) -> Callable:
    import tensorflow as tf

    representative = _representative(calibration)

    def setup(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8

    return setup


def _float16_setup(converter):
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _float_stem(calibration: np.ndarray, layer: str) -> Callable:
    """int8 everywhere but the operators up to ``layer``: quantising the first layers, which see
    the raw frame, loses what tells an empty wall or a blurred frame from a photo of a label
    (README "Unknown"; benchmarks/openset.py). Inputs and outputs stay uint8."""
    import tensorflow as tf

    def finish(converter, saved_model: str) -> bytes:
        float_model = Graph(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
        options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=float_model.names_up_to(layer), fully_quantize=True)
        with warnings.catch_warnings():  # it runs tf.lite.Interpreter, which warns of its deprecation
            warnings.simplefilter("ignore")
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=_representative(calibration), debug_options=options)
            g = Graph(debugger.get_nondebug_quantized_model())
        g.uint8_io()
        return g.to_bytes()

    return finish


def convert(model, quantization: str, calibration: np.ndarray | None = None, float_stem: str | None = None) -> bytes:
    """TFLite bytes for a float 0..255 → probabilities Keras model; int8 keeps the operators up to
    layer ``float_stem`` (if given) in float."""
    if quantization == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 export needs calibration images")
        return keras_to_tflite(model, _int8_setup(calibration), _float_stem(calibration, float_stem) if float_stem else None)
    setup = _float16_setup if quantization == "float16" else None
    return keras_to_tflite(uint8_input_model(model), setup)


def write_model(path: Path, tflite: bytes, info: ModelInfo) -> int:
    """Embed metadata and write atomically; returns the file size."""
    data = embed_metadata(tflite, info)
    files.write_bytes(path, data)
    return len(data)


def model_info(name: str, labels: tuple[str, ...], extra: dict) -> ModelInfo:
    """Metadata for an edgecam model: raw pixels in (normalisation is inside the graph)."""
    from edgecam import __version__

    return ModelInfo(
        name=name,
        description=(
            f"Image classifier ({', '.join(labels)}) fine-tuned with edgecam {__version__}. "
            f"Input: {_rule(extra).summary()}."
        ),
        version=__version__,
        author="edgecam",
        license="",
        labels=tuple(labels),
        mean=(0.0,),
        std=(1.0,),
        input_min=0.0,
        input_max=255.0,
        extra=extra,
    )


def _rule(extra: dict) -> Preprocessing:
    """The preprocessing ``extra`` states (edgecam's default when it states none)."""
    stated = extra.get("preprocessing")
    return Preprocessing.from_description(stated) if stated else PREPROCESSING
