"""Training pieces on their own (TensorFlow, so all slow): the MobileNetV3 builders, and the
embedding cache's key, which must follow the weights file's content, not its name.

No network: V3 builds without weights (``model.weights: none``), and the cache tests use the
MobileNet v1 0.25 weights in ../shared/weights plus a copy of them with one kernel changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FLOWERS_MINI, WEIGHTS, need
from edgecam.config.finetune import ModelConfig
from edgecam.data.dataset import Sample

pytestmark = pytest.mark.slow
V1_WEIGHTS = WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(autouse=True, scope="module")
def quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")


@pytest.mark.parametrize("backbone, alpha, width", [
    ("mobilenet_v3_small", 1.0, 576),
    ("mobilenet_v3_small", 0.75, 432),
    ("mobilenet_v3_large", 1.0, 960),
])
def test_mobilenet_v3_builds_without_weights(backbone, alpha, width):
    from edgecam.training.backbone import build_backbone, resolve_weights

    cfg = ModelConfig(backbone=backbone, alpha=alpha, input_size=224, weights="none")
    assert resolve_weights(cfg) is None  # random initialisation: nothing to download
    model = build_backbone(cfg)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, width)
    assert not any(layer.trainable for layer in model.layers[1:])  # frozen
    pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3)).astype(np.float32)
    embedding = np.asarray(model(pixels, training=False))
    assert embedding.shape == (2, width) and np.isfinite(embedding).all()
    # It looks at the pixels (random weights shrink the values to ~1e-11: compare relatively).
    assert not np.allclose(embedding[0], embedding[1], rtol=1e-2, atol=0)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, Path]:
    """``a``: the v1 0.25 weights; ``a_copy``: the same bytes elsewhere; ``b``: one kernel halved."""
    need(V1_WEIGHTS)
    h5py = pytest.importorskip("h5py")
    root = tmp_path_factory.mktemp("weights")
    paths = {name: root / name / V1_WEIGHTS.name for name in ("a", "a_copy", "b")}
    for path in paths.values():
        path.parent.mkdir()
        shutil.copyfile(V1_WEIGHTS, path)
    with h5py.File(paths["b"], "r+") as f:
        kernel = f["conv1"]["conv1"]["kernel:0"]
        kernel[...] = kernel[...] * 0.5
    assert paths["a"].read_bytes() == paths["a_copy"].read_bytes() != paths["b"].read_bytes()
    return paths


def v1(weights: Path) -> ModelConfig:
    return ModelConfig(backbone="mobilenet_v1", alpha=0.25, input_size=224, weights=str(weights))


def test_the_cache_key_follows_the_weights_content(weight_files):
    from edgecam.training.embeddings import backbone_key

    a, a_copy, b = (backbone_key(v1(weight_files[n])) for n in ("a", "a_copy", "b"))
    assert a == a_copy  # the same bytes under another path: same embeddings
    assert a != b  # one changed kernel: another key
    assert a.startswith("mobilenet_v1_0.25_224_") and b.startswith("mobilenet_v1_0.25_224_")
    assert backbone_key(v1(weight_files["a"].parent)) == a  # a folder resolves to the same file
    assert backbone_key(ModelConfig(backbone="mobilenet_v1", alpha=0.25, input_size=192,
                                    weights=str(weight_files["a"]))) != a


def test_embeddings_from_other_weights_are_not_reused(weight_files, tmp_path):
    from edgecam.training.embeddings import EmbeddingCache

    photos = sorted(need(FLOWERS_MINI / "daisy").glob("*.jpg"))[:2]
    samples = [Sample(p, 0, hashlib.sha256(p.read_bytes()).hexdigest(), "train") for p in photos]
    root = tmp_path / "cache"

    first = EmbeddingCache(root, v1(weight_files["a"]))
    a = first.embeddings(samples, progress=False)
    assert (first.hits, first.misses) == (0, 2) and a.shape == (2, 1, 256)

    again = EmbeddingCache(root, v1(weight_files["a_copy"]))  # same content: read back, not recomputed
    np.testing.assert_array_equal(again.embeddings(samples, progress=False), a)
    assert (again.hits, again.misses) == (2, 0)

    other = EmbeddingCache(root, v1(weight_files["b"]))
    b = other.embeddings(samples, progress=False)
    assert (other.hits, other.misses) == (0, 2)  # nothing computed with the first weights is used
    assert other.dir != first.dir and b.shape == a.shape
    assert not np.allclose(a, b, atol=1e-4)
    assert sorted(p.name for p in root.iterdir()) == sorted([first.dir.name, other.dir.name])


def test_report_unknown_section_shows_a_dash_for_measures_that_do_not_exist():
    """A model that calls every image unknown (random weights, say) keeps none: no accuracy of kept
    images, and no AUROC against a folder. The report says "—" there instead of failing to write."""
    from edgecam.training.report import _unknown_lines

    section = {"model": {"rule": "logit + near + mid", "examples": 30, "background_examples": 0, "keep": 0.95},
               "val_kept": 0.0, "known_split": "test", "known_images": 9, "known_kept": 0.0,
               "folders": {"nothing here (generated)": {"images": 200, "rejected": 1.0, "auroc": None}},
               "accuracy": 0.5, "accuracy_kept": None}
    text = "\n".join(_unknown_lines(section))
    assert "| nothing here (generated) | 200 | 100.0% | — |" in text
    assert "50.0% on every image, — on the images kept" in text


def test_the_frozen_conversion_gives_the_saved_model_conversions_model():
    """keras_to_tflite traces the call and freezes the weights in; the SavedModel route (still used
    for int8 with a float stem) must give the same model: same inputs, same outputs to the bit."""
    from edgecam.runtime.litert import make_interpreter
    from edgecam.training.backbone import build_backbone
    from edgecam.training.tflite import keras_to_tflite, uint8_input_model

    model = uint8_input_model(build_backbone(ModelConfig(backbone="mobilenet_v1", alpha=0.25, input_size=128,
                                                         weights=str(need(V1_WEIGHTS)))))
    frozen = keras_to_tflite(model)
    saved = keras_to_tflite(model, finish=lambda converter, saved_model_dir: converter.convert())
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 128, 128, 3), dtype=np.uint8)
    outputs = []
    for tflite in (frozen, saved):
        interpreter = make_interpreter(1, model_content=tflite)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        assert list(inp["shape"]) == [1, 128, 128, 3] and inp["dtype"] == np.uint8 and list(out["shape"]) == [1, 256]
        rows = []
        for image in images:
            interpreter.set_tensor(inp["index"], image)
            interpreter.invoke()
            rows.append(interpreter.get_tensor(out["index"]).copy())
        outputs.append(np.concatenate(rows))
    assert np.abs(outputs[0]).max() > 0
    np.testing.assert_array_equal(outputs[0], outputs[1])
