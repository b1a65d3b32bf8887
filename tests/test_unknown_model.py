"""The unknown score without TensorFlow: the exported graph against its numpy twin, calibration,
the choice of stored examples, and background folders in a dataset scan."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import COLORS_UNKNOWN_INT8_MODEL, COLORS_UNKNOWN_MODEL, DATA
from edgecam.config.finetune import DataConfig
from edgecam.data.background import BACKGROUND
from edgecam.data.dataset import scan_dataset
from edgecam.errors import ConfigError, DataError
from edgecam.config.finetune import load_finetune_config
from edgecam.runtime.classifier import Classifier
from edgecam.training.unknown import calibrate, choose_examples, fit_unknown, power_normalise
from test_data import make_tree, tiny_image

COLOURS = [(255, 0, 0), (0, 200, 0), (20, 30, 230), (200, 20, 20), (128, 128, 128), (0, 0, 0), (255, 255, 255),
           (150, 120, 100), (180, 100, 100), (90, 200, 60), (30, 60, 90)]


def fixture_rule():
    sys.path.insert(0, str(DATA))
    try:
        import make_fixtures
    finally:
        sys.path.remove(str(DATA))
    return make_fixtures.color_unknown_rule()


def features(colour) -> np.ndarray:
    """What the fixture's feature layer computes: channel means (0..1) and their squares."""
    means = np.asarray(colour, np.float32)[None] / 255.0
    return np.hstack([means, means ** 2])


# The rule rounds like the model (int8 banks, XNNPACK's dynamic int8 inputs); the int8 model adds its own rounding.
@pytest.mark.parametrize("model, tolerance", [(COLORS_UNKNOWN_MODEL, 2e-3), (COLORS_UNKNOWN_INT8_MODEL, 0.04)])
def test_the_graph_computes_what_the_numpy_rule_computes(model, tolerance):
    rule, classifier = fixture_rule(), Classifier(model)
    for colour in COLOURS:
        _, score = classifier.classify_all(np.full((32, 32, 3), colour, np.uint8))
        expected = float(rule.output(features(colour))[0])
        assert score == pytest.approx(expected, abs=tolerance), colour
        if abs(expected - 0.5) > tolerance:
            assert (score > 0.5) == (expected > 0.5), colour
    # 0.5 in the model is the calibrated threshold on the rule's own score
    assert classifier.unknown_threshold == 0.5
    assert classifier.info.extra["unknown"]["score_threshold"] == pytest.approx(rule.threshold, abs=1e-5)


def test_the_threshold_keeps_the_asked_share_of_known_scores():
    scores = np.arange(200, dtype=np.float32)
    for keep in (0.5, 0.9, 0.95):
        threshold = calibrate(scores, keep)
        assert np.mean(scores <= threshold) == pytest.approx(keep, abs=0.01)
    assert calibrate(np.zeros(0), 0.95) == float("inf")


def test_fitted_rule_keeps_its_share_of_validation_and_rejects_what_is_far():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 6, (3, 32))
    y = np.repeat(np.arange(3), 60)
    train = np.maximum(centres[y] + rng.normal(0, 0.5, (180, 32)), 0)
    val = np.maximum(centres[y[:90]] + rng.normal(0, 0.5, (90, 32)), 0)
    kernel = (centres - centres.mean(axis=0)).T.astype(np.float32)
    rule = fit_unknown(kernel, np.zeros(3, np.float32), train, None, val, None, keep=0.9)
    assert np.mean(rule.output(val) <= 0.5) == pytest.approx(0.9, abs=0.02)
    far = np.maximum(rng.normal(0, 3, (50, 32)), 0)  # like nothing the classes look like
    assert np.mean(rule.output(far) > 0.5) > 0.9
    # a background bank votes frames nearer to it than to any training image out
    with_bg = fit_unknown(kernel, np.zeros(3, np.float32), train, None, val, None, keep=0.9, background=far[:25])
    assert np.all(with_bg.output(far[25:]) >= rule.output(far[25:]) - 1e-6)
    assert with_bg.describe()["background_examples"] == 25 and "background vote" in with_bg.describe()["rule"]


def test_power_normalise_is_unit_length_and_ignores_negatives():
    x = power_normalise(np.array([[4.0, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(x[0], [1, 0, 0]) and np.all(np.isfinite(x[1]))


def test_examples_keep_every_labels_share():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    picks = choose_examples(labels, 100, seed=0)
    assert len(picks) <= 100 and len(set(picks)) == len(picks)
    counts = np.bincount(labels[picks], minlength=3)
    assert counts[0] == 90 and counts[1] == 9 and counts[2] == 1
    assert np.array_equal(choose_examples(labels[:50], 100, seed=0), np.arange(50))


# -- background folders ------------------------------------------------------------------------
def test_a_background_folder_beside_the_labels_is_no_label(tmp_path):
    make_tree(tmp_path, {"a": range(0, 10), "b": range(10, 20), "empty": range(20, 30)})
    ds = scan_dataset(DataConfig(path=tmp_path, background=("empty",)), progress=False)
    assert ds.labels == ("a", "b")
    assert len(ds.background) == 10 and {s.label for s in ds.background} == {BACKGROUND}
    assert not any("empty" in n for n in ds.notices)  # not an "ignored folder"
    assert "10 background images" in ds.summary_line()


def test_a_background_folder_anywhere_else(tmp_path):
    make_tree(tmp_path / "data", {"a": range(0, 10), "b": range(10, 20)})
    make_tree(tmp_path / "walls", {"x": range(40, 45)})
    (tmp_path / "walls" / "notes.txt").write_text("not an image")
    cfg = DataConfig(path=tmp_path / "data", background=(str(tmp_path / "walls"),))
    ds = scan_dataset(cfg, progress=False)
    assert len(ds.background) == 5 and all(s.split == "train" for s in ds.background)
    assert any(s.path.name == "notes.txt" for s in ds.skipped)
    fingerprint = scan_dataset(DataConfig(path=tmp_path / "data"), progress=False).fingerprint()
    assert ds.fingerprint() != fingerprint  # another background, another model


def test_background_images_that_are_also_labelled_are_left_out(tmp_path):
    make_tree(tmp_path / "data", {"a": range(0, 10), "b": range(10, 20)})
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "same.bmp").write_bytes(tiny_image(3))  # also under a/
    (tmp_path / "bg" / "other.bmp").write_bytes(tiny_image(99))
    ds = scan_dataset(DataConfig(path=tmp_path / "data", background=(str(tmp_path / "bg"),)), progress=False)
    assert [s.path.name for s in ds.background] == ["other.bmp"]
    assert any("same.bmp" in n and "labelled" in n for n in ds.notices)


def test_a_missing_background_folder_is_a_one_line_error(tmp_path):
    make_tree(tmp_path, {"a": range(0, 10), "b": range(10, 20)})
    with pytest.raises(DataError, match=r"data.background: 'nowhere' is neither"):
        scan_dataset(DataConfig(path=tmp_path, background=("nowhere",)), progress=False)


def test_background_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  labels: [a, b]\n  background: [a]\nexport:\n  unknown:\n    keep: 1.5\n")
    with pytest.raises(ConfigError, match=r"data.background.*also a label"):
        load_finetune_config(path)
    path.write_text("export:\n  unknown:\n    keep: 1.5\n")
    with pytest.raises(ConfigError, match=r"export.unknown.keep"):
        load_finetune_config(path)


def test_background_paths_are_made_absolute_but_folder_names_stay(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", {"a": range(0, 10), "b": range(10, 20), "empty": range(20, 25)})
    (tmp_path / "walls").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load_finetune_config(None, ["data.path=data", "data.background=[empty, walls]"])
    assert cfg.data.background == ("empty", str(tmp_path / "walls"))
