"""Foreign classifiers: ``.tflite`` files without metadata, with a labels file, as TF Hub and Coral ship them.

They are built here with TensorFlow from the session model's ``model.keras`` (backbone + head,
float 0..255 in), wrapped the way TF Hub MobileNets are made: float32 input in [-1, 1], no
metadata. So the right answer is known: the labels of the original edgecam model, photo by photo.
Also: full-integer quantised variants (uint8 and int8 input, scale 1/127.5), a leading
"background" class, and models that are not image classifiers.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import runfixtures as rf
from conftest import FLOWERS
from edgecam.cli import cli
from edgecam.data.images import load_rgb
from edgecam.modelfile.metadata import read_metadata
from edgecam.runtime.classifier import Classifier
from edgecam.modelfile.preprocess import fit_to_input

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    return rf.trained_model(tmp_path_factory)


def to_tflite(keras_model, *setups) -> list[bytes]:
    """Keras 3 → SavedModel → TFLite (the converter route Keras 3 supports), once per converter setup."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="foreign-") as tmp:
        keras_model.export(tmp, format="tf_saved_model", verbose=False)
        converted = []
        for setup in setups or (None,):
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
            if setup:
                setup(converter)
            converted.append(converter.convert())
        return converted


def full_integer(dtype_name: str):
    """Converter setup: full-integer quantisation, calibrated on real training photos in [-1, 1]."""
    import tensorflow as tf

    calibration = [fit_to_input(load_rgb(p), (224, 224)) for label in rf.LABELS
                   for p in sorted((FLOWERS / "train" / label).glob("*.jpg"))[-2:]]

    def representative():
        for pixels in calibration:
            yield [(pixels[None].astype(np.float32) - 127.5) / 127.5]

    def setup(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, dtype_name)

    return setup


@pytest.fixture(scope="module")
def foreign(model, tmp_path_factory) -> types.SimpleNamespace:
    """Foreign models and labels files in one folder, the photos to test on, and what the
    original edgecam model says about them (``edgecam evaluate`` and ``edgecam run``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    root = tmp_path_factory.mktemp("foreign")
    original = keras.saving.load_model(model.run_dir / "model.keras")
    image = keras.Input((224, 224, 3), dtype="float32", name="image")  # TF Hub style: [-1, 1]
    probs = original(image * 127.5 + 127.5)
    with_background = keras.ops.concatenate([keras.ops.zeros_like(probs[:, :1]), probs], axis=-1)
    models = {"background.tflite": to_tflite(keras.Model(image, with_background))[0]}
    models["uint8.tflite"], models["int8.tflite"] = to_tflite(keras.Model(image, probs), full_integer("uint8"),
                                                              full_integer("int8"))
    for name, content in models.items():
        assert read_metadata(content) is None  # truly foreign: nothing inside says what the labels are
        (root / name).write_bytes(content)
    with_background_labels = ("background",) + model.labels
    (root / "background.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate(with_background_labels)))
    (root / "coral.txt").write_text("".join(f"{i}  {label}\n" for i, label in enumerate(model.labels)))
    (root / "plain.txt").write_text("".join(f"{label}\n" for label in model.labels))

    # Any size: these photos are also centre-cropped and resized on the way in.
    photos = rf.photo_folder(root / "photos", [p for label in rf.LABELS
                                               for p in sorted((FLOWERS / "test" / label).glob("*.jpg"))[:4]])
    evaluated = rf.edgecam("evaluate", model.path, photos, "--out", root / "eval-original", "-q")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    ran = rf.edgecam("run", model.path, "--source", photos, "--headless")
    assert ran.returncode == 0, ran.stderr[-2000:]
    return types.SimpleNamespace(root=root, photos=photos, original=rf.predictions_by_name(root / "eval-original"),
                                 original_run=rf.json_lines(ran.stdout))


def evaluate_with_labels(foreign, model_name: str, labels_name: str) -> dict[str, dict]:
    out = foreign.root / f"eval-{model_name}"
    proc = rf.edgecam("evaluate", foreign.root / model_name, foreign.photos, "--labels", foreign.root / labels_name,
                      "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return rf.predictions_by_name(out)


def run_with_labels(foreign, model_name: str, labels_name: str) -> list[dict]:
    proc = rf.edgecam("run", foreign.root / model_name, "--source", foreign.photos, "--headless",
                      "--labels", foreign.root / labels_name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == rf.NO_HEAVY_MODULES
    return rf.json_lines(proc.stdout)


def test_float_model_without_metadata_gives_the_original_labels(foreign, model):
    classifier = Classifier(foreign.root / "background.tflite", labels=foreign.root / "background.txt")
    assert classifier.info is None and classifier.input_dtype == np.float32 and classifier.num_classes == 6
    assert classifier.labels == ("background",) + model.labels  # "0 background" style, prefixes removed
    assert Classifier(foreign.root / "background.tflite").labels == tuple("012345")  # no labels file: indices
    # An ImageNet-style file (leading background line) also fits a model without that output.
    assert Classifier(foreign.root / "uint8.tflite", labels=foreign.root / "background.txt").labels == model.labels

    results = run_with_labels(foreign, "background.tflite", "background.txt")
    assert len(results) == len(foreign.original_run) == 20
    for got, want in zip(results, foreign.original_run):
        assert got["frame"] == want["frame"]
        # The original's top label: it may decide "unknown" by its unknown score, which these
        # copies (its probabilities only) do not carry, so they never say "unknown".
        assert got["label"] == want["top"][0]["label"], f"frame {got['frame']}"
        assert "unknown_score" not in got
        assert got["top"][0]["score"] == pytest.approx(want["top"][0]["score"], abs=1e-3)
        assert "background" not in [t["label"] for t in got["top"]]

    predictions = evaluate_with_labels(foreign, "background.tflite", "background.txt")
    assert predictions.keys() == foreign.original.keys()
    for name, row in predictions.items():
        assert row["predicted"] == foreign.original[name]["predicted"], name
        assert float(row["score"]) == pytest.approx(float(foreign.original[name]["score"]), abs=1e-3)
    # The check has teeth: the original model tells the labels apart.
    assert len({row["predicted"] for row in foreign.original.values()}) >= 4


@pytest.mark.parametrize("kind, labels_name", [("uint8", "coral.txt"), ("int8", "plain.txt")])
def test_quantised_model_without_metadata_gives_the_original_labels(foreign, model, kind, labels_name):
    """Quantised inputs (scale 1/127.5, as Coral and TF Hub ship them) are filled correctly without metadata."""
    classifier = Classifier(foreign.root / f"{kind}.tflite", labels=foreign.root / labels_name)
    scale, zero = classifier._input["quantization"]
    assert classifier.input_dtype == np.dtype(kind) and scale == pytest.approx(1 / 127.5, rel=0.01)
    assert classifier.labels == model.labels

    # Quantisation moves scores a little, so a photo near a boundary may flip; most must not.
    predictions = evaluate_with_labels(foreign, f"{kind}.tflite", labels_name)
    assert predictions.keys() == foreign.original.keys()
    same = sum(row["predicted"] == foreign.original[name]["predicted"] for name, row in predictions.items())
    assert same >= 0.8 * len(predictions), f"{same} of {len(predictions)} photos get the original label"

    results = run_with_labels(foreign, f"{kind}.tflite", labels_name)
    same = sum(got["label"] == want["top"][0]["label"] for got, want in zip(results, foreign.original_run))
    assert len(results) == 20 and same >= 16, f"{same} of 20 frames get the original label"


@pytest.fixture
def cli_runner():
    saved = signal.getsignal(signal.SIGTERM)
    yield CliRunner()
    signal.signal(signal.SIGTERM, saved)


def test_labels_file_that_does_not_match_is_a_one_line_error(foreign, cli_runner):
    model, labels = foreign.root / "background.tflite", foreign.root / "coral.txt"
    expected = f"Error: {labels}: 5 labels, but the model outputs 6 classes\n"  # forgot the background class
    for args in (["run", str(model), "--labels", str(labels), "--headless", "--source", str(foreign.photos)],
                 ["evaluate", str(model), str(foreign.photos), "--labels", str(labels), "-q"]):
        result = cli_runner.invoke(cli, args)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected), result.output


@pytest.fixture(scope="module")
def not_classifiers(tmp_path_factory) -> dict[str, Path]:
    """Tiny .tflite files that LiteRT runs but that are not image classifiers."""
    import tensorflow as tf

    def convert(fn, spec):
        # autograph=False: AutoGraph would re-read these lambdas from the source file.
        concrete = tf.function(fn, input_signature=[spec], autograph=False).get_concrete_function()
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()

    image = tf.TensorSpec([1, 32, 32, 3], tf.float32)
    root = tmp_path_factory.mktemp("not-classifiers")
    files = {
        "two_outputs": convert(lambda x: (tf.reduce_mean(x, [1, 2]), tf.reduce_max(x, [1, 2])), image),
        "vector_input": convert(lambda x: tf.nn.softmax(x), tf.TensorSpec([1, 10], tf.float32)),
        "map_output": convert(lambda x: tf.nn.softmax(x[..., :2]), image),
    }
    for name, content in files.items():
        (root / f"{name}.tflite").write_bytes(content)
    return {name: root / f"{name}.tflite" for name in files}


@pytest.mark.parametrize("name, message", [
    # Two outputs are fine when the second is the unknown score; these are two [1, 3] outputs of
    # converter-given names (Identity, Identity_1, ...), listed in the message.
    ("two_outputs", re.escape("not an image classifier (expected 1 output, or probabilities and `unknown_score`, "
                              "got 2: ") + r"\S+ \[1, 3\] float32, \S+ \[1, 3\] float32\)"),
    ("vector_input", re.escape("not an image classifier (input shape [1, 10], expected [1, H, W, 3])")),
    ("map_output", re.escape("not a classifier (output shape [1, 32, 32, 2], expected [1, N])")),
])
def test_models_that_are_not_image_classifiers_are_one_line_errors(not_classifiers, foreign, cli_runner, name, message):
    path = not_classifiers[name]
    for args in (["run", str(path), "--headless", "--source", str(foreign.photos)],
                 ["evaluate", str(path), str(foreign.photos), "-q"]):
        result = cli_runner.invoke(cli, args)
        assert (result.exit_code, result.stdout) == (1, ""), result.output
        assert re.fullmatch(f"Error: {re.escape(str(path))}: {message}\n", result.stderr), result.stderr


def test_not_a_classifier_is_one_line_on_the_real_stderr(not_classifiers, foreign):
    """Through a real process too: nothing LiteRT prints natively reaches the user."""
    path = not_classifiers["two_outputs"]
    proc = rf.edgecam("run", path, "--headless", "--source", foreign.photos, block_tensorflow=False, timeout=120)
    assert (proc.returncode, proc.stdout) == (1, "")
    pattern = rf"Error: {re.escape(str(path))}: not an image classifier \([^\n]+\)\n"
    assert re.fullmatch(pattern, proc.stderr), proc.stderr
