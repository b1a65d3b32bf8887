"""Optional second stage: fine-tune the backbone's top blocks on cached activations.

The backbone is cut below its top ``train.fine_tune_blocks`` blocks. The part under the cut never
changes, so its output (the activation the top blocks read) is computed once per image and
augmented view by LiteRT, like the embeddings, and cached on disk as float16. Each epoch then runs
only the top blocks and the head: a fraction of a full backbone pass (benchmarks/tune_cost.py).
BatchNorm layers stay frozen in inference mode (their statistics would drift on small batches).

The tuned backbone replaces the cached one everywhere after training: the unknown score is fitted
on its embeddings (the top blocks applied to the cached activations) and the exported model is
converted from it.

Two things keep it cheap: a cold run computes the activations during the embedding pass (one
backbone pass, not two: ``share_embedding_pass``), and a re-run with the same inputs takes the
outcome the first run kept (``tune_memo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecam import files
from edgecam.config.finetune import AugmentConfig, FinetuneConfig
from edgecam.console import log, progress_bar
from edgecam.data.dataset import Dataset, Sample
from edgecam.data.images import load_rgb
from edgecam.errors import ModelError
from edgecam.training import augment
from edgecam.training.embeddings import EmbeddingCache
from edgecam.training.graph import Graph
from edgecam.runtime.inference_pool import run_images
from edgecam.training.tune_fit import fit_top
from edgecam.training.tune_memo import TuneMemo, memo_key

BATCH = 256  # activations per inference batch (upper blocks only: small)


def lower_model(backbone_tflite: bytes, cut: str) -> bytes:
    """The cached backbone ``.tflite`` cut at layer ``cut``: outputs that layer's activation and
    runs only the operators it needs."""
    g = Graph(backbone_tflite)
    g.set_outputs([g.find_activation(cut)], [f"{cut}/activation"])
    g.prune()
    return g.to_bytes()


class ActivationCache:
    """``<embedding cache>/<backbone key>/act-<cut>/``: one float16 ``.npy`` per image and kind
    (the plain view, or the augmented views of one augmentation setting and seed), like the
    embeddings beside it."""

    def __init__(self, cache: EmbeddingCache, cut: str):
        self.cache, self.cut = cache, cut
        self.dir = cache.dir / f"act-{cut}"
        self.hits = self.misses = 0

    def _file(self, digest: str, kind: str) -> Path:
        return self.dir / kind / digest[:2] / f"{digest}.npy"

    def _kinds(self, views: int, augment_cfg: AugmentConfig | None, seed: int) -> list[str]:
        rule = self.cache.rule
        return [f"plain-{rule.key}"] + ([f"aug-{augment.settings_key(augment_cfg, seed, rule)}"] if views else [])

    def store(self, sample: Sample, rows: np.ndarray, views: int, augment_cfg: AugmentConfig | None,
              seed: int) -> None:
        """Keep one image's activations computed elsewhere (``EmbeddingCache.keep_activations``)."""
        kinds = self._kinds(views, augment_cfg, seed)
        _save(self._file(sample.digest, kinds[0]), rows[:1])
        if views:
            _save(self._file(sample.digest, kinds[1]), rows[1:])

    def activations(self, samples: Sequence[Sample], views: int = 0, augment_cfg: AugmentConfig | None = None,
                    seed: int = 0, desc: str = "activations", progress: bool = True) -> np.ndarray:
        """float16 (len(samples), 1 + views, H, W, C): the plain image, then ``views`` augmented ones
        (the same pixels as the embedding cache's views)."""
        kinds = self._kinds(views, augment_cfg, seed)
        rows: dict[int, np.ndarray] = {}
        todo = []
        for i, s in enumerate(samples):
            parts = [_load(self._file(s.digest, k), 1 if k == kinds[0] else views) for k in kinds]
            if all(p is not None for p in parts):
                rows[i] = np.concatenate(parts)
                self.hits += 1
            else:
                todo.append(i)
        if todo:
            self.misses += len(todo)
            self._compute(samples, todo, kinds, views, augment_cfg, seed, rows, desc if progress else None)
        if not samples:
            return np.zeros((0, 1 + views, 0, 0, 0), np.float16)
        return np.stack([rows[i] for i in range(len(samples))])

    def _compute(self, samples, todo, kinds, views, augment_cfg, seed, rows, desc):
        size, rule = self.cache.cfg.input_size, self.cache.rule
        model = lower_model(self.cache.extractor_path().read_bytes(), self.cut)  # before the progress bar

        def prepare(i: int) -> list[np.ndarray]:  # the pixels EmbeddingCache embeds
            rgb = load_rgb(samples[i].path)
            return [rule.apply(rgb, (size, size))] + [
                augment.augmented_view(rgb, size, augment_cfg, augment.view_rng(seed, samples[i].digest, v), rule)
                for v in range(views)]

        bar = progress_bar(len(todo) * (1 + views), desc or "", enabled=desc is not None)
        for i, images in run_images(model, prepare, todo, [None]):
            rows[i] = np.stack([out[0] for out in images]).astype(np.float16)
            _save(self._file(samples[i].digest, kinds[0]), rows[i][:1])
            if views:
                _save(self._file(samples[i].digest, kinds[1]), rows[i][1:])
            bar.update(len(images))
        bar.close()


def _load(path: Path, rows: int) -> np.ndarray | None:
    try:
        array = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return array if array.ndim == 4 and array.shape[0] == rows and array.dtype == np.float16 else None


def _save(path: Path, array: np.ndarray) -> None:
    with files.atomic_path(path, durable=False) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


class TunedFeatures:
    """The fine-tuned backbone, offering what ``open_set.fit_rule`` and the export take from the
    embedding cache (``tap``, ``embeddings``, ``mid_features``, ``features_model``)."""

    def __init__(self, cache: EmbeddingCache, activations: ActivationCache, backbone, upper, mid_above_cut: bool,
                 memo: TuneMemo | None = None, features: bytes | None = None):
        """``memo`` keeps the converted model once made; ``features``: the one it kept for these weights."""
        self.cache, self.acts, self.backbone, self.upper = cache, activations, backbone, upper
        self.tap, self.mid_above_cut = cache.tap, mid_above_cut
        self.memo = memo
        self._features = features

    def run(self, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(pooled embeddings, mid-level features or None) of float16 activations (n, H, W, C)."""
        shapes = self.upper.output_shape if self.mid_above_cut else [self.upper.output_shape]
        pooled, mid = [np.zeros((0, shapes[0][-1]), np.float32)], [np.zeros((0, shapes[-1][-1]), np.float32)]
        for start in range(0, len(activations), BATCH):  # not predict(): its iterator runs on one core (tune_fit)
            out = self.upper.predict_on_batch(activations[start:start + BATCH].astype(np.float32))
            pooled.append(out[0] if self.mid_above_cut else out)
            if self.mid_above_cut:
                mid.append(out[1])
        return np.concatenate(pooled), np.concatenate(mid) if self.mid_above_cut else None

    def embeddings(self, samples: Sequence[Sample], views: int = 0, augment_cfg: AugmentConfig | None = None,
                   seed: int = 0, desc: str = "activations", progress: bool = True) -> np.ndarray:
        """(len(samples), 1 + views, D), as ``EmbeddingCache.embeddings``."""
        acts = self.acts.activations(samples, views, augment_cfg, seed, desc, progress)
        if not len(samples):
            return np.zeros((0, 1 + views, 0), np.float32)
        pooled, _ = self.run(acts.reshape(-1, *acts.shape[2:]))
        return pooled.reshape(len(samples), 1 + views, -1)

    def mid_features(self, samples: Sequence[Sample], desc: str = "mid-level features",
                     progress: bool = True) -> np.ndarray | None:
        """The cache's when the tapped layer is under the cut (unchanged by tuning), else computed."""
        if not self.tap or not self.mid_above_cut:
            return self.cache.mid_features(samples, desc, progress)
        return self.run(self.acts.activations(samples, desc=desc, progress=progress)[:, 0])[1]

    def features_model(self) -> bytes:
        """The tuned backbone as ``.tflite`` with the pooled mid-level output, as
        ``EmbeddingCache.features_model``: the cached backbone below the cut, the tuned blocks above
        it converted alone."""
        if self._features is None:
            from edgecam.training.graph import add_pooled_output, splice
            from edgecam.training.tflite import keras_to_tflite

            model = splice(self.cache.extractor_path().read_bytes(), self.acts.cut, keras_to_tflite(self.upper))
            if self.tap and not self.mid_above_cut:
                model = add_pooled_output(model, self.tap)
            elif self.tap:
                model = _order_outputs(model, self.upper.output_shape[0][-1], f"{self.tap}/mean")
            self._features = model
            if self.memo:
                self.memo.save_features(self._features)
        return self._features


def _order_outputs(model: bytes, width: int, mid_name: str) -> bytes:
    """A converted two-output model with the pooled embedding (``width`` wide) first and the
    mid-level output, named ``mid_name``, second (the converter orders outputs by its own names)."""
    g = Graph(model)
    pooled = [o for o in g.outputs if g.shape(o)[-1] == width]
    mid = [o for o in g.outputs if o not in pooled]
    if len(pooled) != 1 or len(mid) != 1:
        raise ModelError(f"tuned backbone outputs {[g.shape(o) for o in g.outputs]}: cannot tell them apart")
    g.set_outputs([pooled[0], mid[0]], [None, mid_name])
    return g.to_bytes()


@dataclass
class Tuned:
    """What fine-tuning gives; ``reverted``: it did not lower the validation loss, so the weights
    are the head-only model's again (and accuracy, embedded and features are empty)."""

    history: dict  # per metric, per epoch (and "seconds")
    accuracy: dict  # Keras accuracy per split, after tuning
    embedded: dict  # the tuned backbone's embeddings, shaped as finetune's (train: n x views x D)
    features: TunedFeatures | None
    cut: str
    reverted: bool


def unfreeze_top(upper) -> int:
    """Make the layers of ``upper`` trainable, BatchNorm excepted; returns how many have weights."""
    import keras

    chosen = 0
    for layer in upper.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        chosen += bool(layer.trainable and layer.weights)
    return chosen


def share_embedding_pass(backbone, cache: EmbeddingCache, cfg: FinetuneConfig) -> None:
    """Images embedded from now on also leave their activations at the cut in the activation cache:
    a cold run then makes one backbone pass instead of two."""
    from edgecam.training.backbone import cut_layer

    cut = cut_layer(cfg.model.backbone, backbone, cfg.train.fine_tune_blocks)
    cache.keep_activations(cut, ActivationCache(cache, cut).store)


def fine_tune_blocks(backbone, head, dataset: Dataset, cache: EmbeddingCache, cfg: FinetuneConfig,
                     progress: bool = True, memo: bool = True) -> Tuned:
    """Train the top ``train.fine_tune_blocks`` blocks of ``backbone`` together with ``head`` (both in
    place) on cached activations; early stopping on validation loss, deterministic with the seed.
    A re-run with the same inputs takes the outcome kept by the first (``tune_memo``; ``memo=False``:
    train anyway, as a benchmark must)."""
    from edgecam.training.backbone import cut_layer, upper_model

    t = cfg.train
    cut = cut_layer(cfg.model.backbone, backbone, t.fine_tune_blocks)
    acts = ActivationCache(cache, cut)
    upper = upper_model(backbone, cut)
    mid_above = bool(cache.tap) and any(layer.name == cache.tap for layer in upper.layers)
    use_memo, memo = memo, TuneMemo(cache.dir / "tuned", memo_key(cfg, cut, head, dataset, cache.rule.key))

    def outcome(history: dict, accuracy: dict, embedded: dict, reverted: bool, converted: bytes | None = None) -> Tuned:
        if reverted:
            return Tuned(history, {}, {}, None, cut, reverted=True)
        features = TunedFeatures(cache, acts, backbone, upper_model(backbone, cut, cache.tap if mid_above else None),
                                 mid_above, memo, converted)
        return Tuned(history, accuracy, embedded, features, cut, reverted=False)

    kept = memo.load() if use_memo else None
    if kept is not None:
        upper.set_weights(kept["upper"])
        head.set_weights(kept["head"])
        log(f"fine-tuning the top {t.fine_tune_blocks} blocks above {cut}: as a previous run with the same inputs "
            f"(kept in {memo.dir})")
        meta = kept["meta"]  # the kept weights' converted model comes with them (never a fresh run's)
        return outcome(meta["history"], meta["accuracy"], kept["embedded"], meta["reverted"], memo.features())

    train, val, test = dataset.split("train"), dataset.split("val"), dataset.split("test")
    a_train = acts.activations(train, t.augment.views, t.augment, t.seed, "activations train", progress)
    a_val = acts.activations(val, desc="activations val", progress=progress)[:, 0]
    log(f"fine-tuning the top {t.fine_tune_blocks} blocks above {cut}: {acts.hits} images' activations from cache, "
        f"{acts.misses} computed ({a_train[0, 0].nbytes / 1024:.0f} kB each)")
    history, start, reverted = _train_top(upper, head, a_train, a_val, dataset, t)
    if reverted:
        log(f"note: fine-tuning did not lower the validation loss ({start:.4f}); kept the head-only model")
        memo.save({"history": history, "accuracy": {}, "reverted": True}, upper.get_weights(), head.get_weights(), {})
        return outcome(history, {}, {}, reverted=True)

    tuned = outcome(history, {}, {}, reverted=False)
    a_test = acts.activations(test, desc="activations test", progress=progress)[:, 0] if test else None
    embedded, accuracy = _tuned_embeddings(tuned.features, head, {
        "train": (train, a_train.reshape(-1, *a_train.shape[2:])), "val": (val, a_val), "test": (test, a_test)})
    memo.save({"history": history, "accuracy": accuracy, "reverted": False}, upper.get_weights(), head.get_weights(),
              embedded)
    tuned.accuracy, tuned.embedded = accuracy, embedded
    return tuned


def _tuned_embeddings(features: TunedFeatures, head, named: dict) -> tuple[dict, dict]:
    """The tuned backbone's embeddings per split ({name: (samples, activations)}), shaped as finetune's
    (train: n x views x D), and the head's accuracy on val and test, as the head-only path reports."""
    embedded, accuracy = {}, {}
    for name, (samples, activations) in named.items():
        if not samples:
            continue
        embedded[name] = features.run(activations)[0].reshape(len(samples), -1, head.input_shape[-1])
        if name != "train":
            embedded[name] = embedded[name][:, 0]
            accuracy[name] = _accuracy(head, embedded[name], np.asarray([s.label for s in samples], np.int64))
    return embedded, accuracy


def _train_top(upper, head, a_train: np.ndarray, a_val: np.ndarray, dataset: Dataset, t) -> tuple[dict, float, bool]:
    """Fit the top blocks with the head on the activations: (history, the validation loss before,
    reverted: the weights were put back, as the validation loss never went below it)."""
    import keras

    unfreeze_top(upper)
    keras.utils.set_random_seed(t.seed)
    inputs = keras.Input(upper.input_shape[1:], name="activation")
    model = keras.Model(inputs, head(upper(inputs)), name="tuned_top")
    x = a_train.reshape(-1, *a_train.shape[2:])
    y = np.repeat(np.asarray([s.label for s in dataset.split("train")], np.int64), a_train.shape[1])
    y_val = np.asarray([s.label for s in dataset.split("val")], np.int64)
    history, before, start = fit_top(model, x, y, a_val, y_val, len(dataset.labels), t)
    for layer in upper.layers:  # frozen again, as build_backbone leaves it
        layer.trainable = False
    reverted = min(history["val_loss"]) >= start
    if reverted:
        model.set_weights(before)
    return history, start, reverted


def _accuracy(head, embeddings: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return 0.0
    return float((head.predict(embeddings, batch_size=BATCH, verbose=0).argmax(axis=1) == y).mean())
