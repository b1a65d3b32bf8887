"""Augmented views (edgecam.training.augment) and the fit rule they and the embedding cache follow.

Views are cached by a key of their settings, so a view must be a pure function of (image, seed,
view, settings, fit), and every setting that changes pixels must change the key. The camera
effects must do what their names say. The embedding cache keeps the fits apart (slow: it
converts a MobileNet v1 0.25 backbone).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from conftest import FLOWERS_MINI, V1_WEIGHTS, need
from edgecam.config.finetune import AugmentConfig, ModelConfig
from edgecam.data.dataset import Sample
from edgecam.modelfile.preprocess import FITS, PREPROCESSING, Preprocessing
from edgecam.training import augment

OFF = AugmentConfig(camera=1.0, dark=0.0, color=0.0, blur=0.0, noise=0.0, jpeg=0)


def photo(h: int = 120, w: int = 200) -> np.ndarray:
    """A smooth scene with edges (blur and JPEG show on it), not noise."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, ((x // 20 + y // 20) % 2) * 200 + 20], axis=-1)
    return rgb.astype(np.uint8)


def view(cfg: AugmentConfig, seed: int = 0, index: int = 0, rule: Preprocessing = PREPROCESSING) -> np.ndarray:
    return augment.augmented_view(photo(), 64, cfg, augment.view_rng(seed, "d" * 64, index), rule)


@pytest.mark.parametrize("cfg", [AugmentConfig(camera=0.0), AugmentConfig(camera=1.0)], ids=["plain", "camera"])
def test_a_view_is_a_function_of_seed_view_and_settings(cfg):
    first = view(cfg)
    assert first.dtype == np.uint8 and first.shape == (64, 64, 3)
    np.testing.assert_array_equal(view(cfg), first)
    assert not np.array_equal(view(cfg, index=1), first)
    assert not np.array_equal(view(cfg, seed=1), first)


def test_every_setting_that_changes_pixels_changes_the_key():
    base = AugmentConfig()
    keys = {augment.settings_key(base, 0)}
    for key, value in (("camera", 0.5), ("dark", 0.3), ("color", 0.3), ("blur", 3.0), ("noise", 0.1), ("jpeg", 50),
                       ("zoom", 0.3), ("views", 3)):
        keys.add(augment.settings_key(replace(base, **{key: value}), 0))
    keys.add(augment.settings_key(base, 1))
    keys |= {augment.settings_key(base, 0, Preprocessing(fit=fit)) for fit in FITS if fit != PREPROCESSING.fit}
    assert len(keys) == 10 + len(FITS) - 1


def effect_draws(cfg: AugmentConfig, draws: int = 24) -> list[np.ndarray]:
    """``camera_effects`` on one image with ``draws`` generators (each effect fires half the time)."""
    image = photo().astype(np.float32)
    return [augment.camera_effects(image, cfg, np.random.default_rng(i)).astype(np.float32) for i in range(draws)]


def test_camera_effects_do_what_they_say():
    image = photo().astype(np.float32)
    assert all(np.array_equal(out, image) for out in effect_draws(OFF))  # every effect off: the same pixels

    dark = effect_draws(replace(OFF, dark=0.6))
    assert min(out.mean() for out in dark) < 0.8 * image.mean() and max(out.mean() for out in dark) <= image.mean() + 1

    cast = effect_draws(replace(OFF, color=0.2))
    ratios = [out.reshape(-1, 3).mean(0) / image.reshape(-1, 3).mean(0) for out in cast]
    assert max(np.ptp(r) for r in ratios) > 0.1  # channels scaled unequally: a colour cast

    def sharpness(x):  # the steepest step across the checkerboard's edges (blue channel)
        return np.abs(np.diff(x[..., 2], axis=1)).max()

    blur = effect_draws(replace(OFF, blur=2.0))
    assert min(sharpness(out) for out in blur) < 0.6 * sharpness(image)

    noise = effect_draws(replace(OFF, noise=0.05))
    assert max((out - image).std() for out in noise) > 5.0  # ~0.05 * 255 at most, clipped at the ends

    jpeg = effect_draws(replace(OFF, jpeg=10))
    changed = [np.abs(out - image).mean() for out in jpeg]
    assert max(changed) > 1.0 and min(changed) == 0.0  # compressed half the time


def test_views_start_from_the_fitted_frame():
    """Without zoom or rotation, a view of a wide photo is the photo fitted by the rule: the whole
    frame for "resize", the centre square for "center_crop"."""
    still = AugmentConfig(flip=False, rotation=0.0, zoom=0.0, brightness=0.0, contrast=0.0, camera=0.0)
    for fit in FITS:
        rule = Preprocessing(fit=fit)
        np.testing.assert_allclose(view(still, rule=rule), rule.apply(photo(), (64, 64)), atol=1)
    assert not np.allclose(view(still, rule=Preprocessing("resize")), view(still, rule=Preprocessing("center_crop")),
                           atol=8)


@pytest.mark.slow  # converts a backbone with TensorFlow
def test_the_embedding_cache_keeps_fits_apart(tmp_path):
    need(V1_WEIGHTS)
    from edgecam.training.embeddings import EmbeddingCache

    photos = sorted(need(FLOWERS_MINI / "daisy").glob("*.jpg"))[:2]
    samples = [Sample(p, 0, hashlib.sha256(p.read_bytes()).hexdigest(), "train") for p in photos]
    cfg = ModelConfig(backbone="mobilenet_v1", alpha=0.25, weights=str(V1_WEIGHTS))
    crop = EmbeddingCache(tmp_path, replace(cfg, fit="center_crop"))
    whole = EmbeddingCache(tmp_path, replace(cfg, fit="resize"))
    assert crop.dir == whole.dir  # one backbone, one folder...
    a, b = crop.embeddings(samples, progress=False), whole.embeddings(samples, progress=False)
    assert (crop.misses, whole.misses) == (2, 2)  # ...but nothing of one fit is reused for the other
    assert not np.allclose(a, b, atol=1e-3)
    again = EmbeddingCache(tmp_path, replace(cfg, fit="resize"))
    np.testing.assert_array_equal(again.embeddings(samples, progress=False), b)
    assert (again.hits, again.misses) == (2, 0)
    assert {p.name for p in crop.dir.iterdir()} >= {"plain", "plain-resize", "mid", "mid-resize"}
