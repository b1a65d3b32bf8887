"""Rebuild the tiny ``.tflite`` models the fast tests run (needs the train extra: TensorFlow).

    .venv/bin/python tests/data/make_fixtures.py

Each model takes uint8 RGB and carries edgecam's own metadata (labels, preprocessing), written
by the exporter's ``model_info`` and ``write_model``, so the fast tests exercise the same
model contract as a fine-tuned model, in a few kB:

- ``colors.tflite`` / ``colors_int8.tflite``: red, green, blue. Hand-set weights: the label
  is the frame's dominant colour channel, so tests can predict every answer.
- ``flowers3.tflite``: daisy, roses, tulips; a small convolution with seeded random weights,
  for tests that need a model of photos (any answer is one of the three labels).
- ``colors_unknown.tflite`` / ``colors_unknown_int8.tflite``: the colours model with the unknown
  score of a fine-tuned model (``edgecam.training.unknown``), built the way ``finetune`` builds
  it: features (channel means and their squares) + head + score appended to the graph; banks
  of saturated colours, so grey, black and white frames are ``unknown``.
- ``colors_logits.tflite``: the colours model as foreign models come: float32 input in [-1, 1],
  raw logits out (no softmax) and no metadata at all (labels from a file: red, green, blue).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
COLORS = ("red", "green", "blue")
FLOWERS = ("daisy", "roses", "tulips")


def convert(fn, size: int, int8: bool = False) -> bytes:
    import tensorflow as tf

    concrete = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    if int8:
        rng = np.random.default_rng(0)

        def frames():  # solid colours spanning 0..255: the uint8 input keeps scale 1, zero point 0
            for color in [(0, 0, 0), (255, 255, 255)] + [tuple(rng.integers(0, 256, 3)) for _ in range(62)]:
                yield [np.full((1, size, size, 3), color, np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = frames
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def colors_model(int8: bool) -> bytes:
    """Softmax of 12 x (channel mean - mean of the three), channel means in 0..1."""
    import tensorflow as tf

    size = 32
    dtype = tf.float32 if int8 else tf.uint8  # the int8 converter wants a float signature

    class Colors(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], dtype, name="image")])
        def __call__(self, image):
            means = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2]) / 255.0
            return tf.nn.softmax(12.0 * (means - tf.reduce_mean(means, axis=1, keepdims=True)))

    return convert(Colors().__call__, size, int8)


def colors_logits_model() -> bytes:
    """12 x (channel mean - mean of the three), channel means of a [-1, 1] input: logits, no softmax."""
    import tensorflow as tf

    size = 32

    class ColorsLogits(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
        def __call__(self, image):
            means = tf.reduce_mean(image, axis=[1, 2])
            return 12.0 * (means - tf.reduce_mean(means, axis=1, keepdims=True))

    return convert(ColorsLogits().__call__, size)


def flowers_model() -> bytes:
    import tensorflow as tf

    size = 64
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    dense = tf.constant(rng.normal(0, 0.5, (8, len(FLOWERS))).astype(np.float32))

    class Flowers(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8, name="image")])
        def __call__(self, image):
            x = tf.cast(image, tf.float32) / 127.5 - 1.0
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="VALID"))
            return tf.nn.softmax(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), dense))

    return convert(Flowers().__call__, size)


COLOR_KERNEL = np.vstack([12.0 * (np.eye(3) - 1.0 / 3.0), np.zeros((3, 3))]).astype(np.float32)


def colors_features_model(int8: bool) -> bytes:
    """Features [1, 6] = channel means (0..1) and their squares; int8: also the probabilities."""
    import tensorflow as tf

    size = 32
    dtype = tf.float32 if int8 else tf.uint8

    class ColorFeatures(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], dtype, name="image")])
        def __call__(self, image):
            means = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2]) / 255.0
            features = tf.concat([means, means * means], axis=1)
            if not int8:
                return features
            return tf.nn.softmax(tf.matmul(features, COLOR_KERNEL)), features

    return convert(ColorFeatures().__call__, size, int8)


def color_unknown_rule():
    """Banks of saturated colours; calibrated on other saturated shades (keep 95%)."""
    from edgecam.training.unknown import fit_unknown

    rng = np.random.default_rng(1)

    def shades(n):  # half of them pure colours (the other channels at 0)
        means = rng.uniform(0.0, 0.25, (n, 3)) * ((np.arange(n) // 3) % 2 == 1)[:, None]
        means[np.arange(n), np.arange(n) % 3] = rng.uniform(0.6, 1.0, n)
        return np.hstack([means, means ** 2]).astype(np.float32)

    return fit_unknown(COLOR_KERNEL, np.zeros(3, np.float32), shades(30), None, shades(60), None, keep=0.95)


def colors_unknown_model(int8: bool) -> bytes:
    from edgecam.training.tflite import append_head, attach_unknown

    rule = color_unknown_rule()
    if int8:
        return attach_unknown(colors_features_model(True), rule, classes=3)
    return append_head(colors_features_model(False), COLOR_KERNEL, np.zeros(3, np.float32), rule)


def write(name: str, tflite: bytes, labels: tuple[str, ...], size: int, what: str, **more) -> None:
    from edgecam.modelfile.preprocess import PREPROCESSING
    from edgecam.training.export import model_info, write_model

    extra = {"edgecam": 1, "fixture": what, "input_size": size, "preprocessing": PREPROCESSING.describe((size, size)),
             **more}
    written = write_model(HERE / name, tflite, model_info(name.removesuffix(".tflite"), labels, extra))
    print(f"{HERE / name}: {written} bytes")


def main() -> None:
    write("colors.tflite", colors_model(int8=False), COLORS, 32, "dominant colour, float32")
    write("colors_int8.tflite", colors_model(int8=True), COLORS, 32, "dominant colour, int8")
    unknown = color_unknown_rule().describe()
    write("colors_unknown.tflite", colors_unknown_model(int8=False), COLORS, 32, "dominant colour + unknown, float32",
          unknown=unknown)
    write("colors_unknown_int8.tflite", colors_unknown_model(int8=True), COLORS, 32, "dominant colour + unknown, int8",
          unknown=unknown)
    write("flowers3.tflite", flowers_model(), FLOWERS, 64, "random weights, float32")
    foreign = HERE / "colors_logits.tflite"  # no metadata: written as the converter made it
    foreign.write_bytes(colors_logits_model())
    print(f"{foreign}: {foreign.stat().st_size} bytes")


if __name__ == "__main__":
    main()
