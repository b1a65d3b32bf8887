"""Optional second stage: train the top N backbone layers on the images at a low learning rate.

Off by default: on small datasets it gains little over the cached-embedding head and costs a
full backbone pass per image per epoch. BatchNorm layers stay frozen (their statistics
would drift on small batches).
"""

from __future__ import annotations

import numpy as np

from edgecam.config.finetune import FinetuneConfig
from edgecam.data.dataset import Dataset, Sample
from edgecam.data.images import load_rgb
from edgecam.modelfile.preprocess import fit_to_input


def _images(samples: list[Sample], size: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([fit_to_input(load_rgb(s.path), (size, size)) for s in samples]) if samples else np.zeros((0, size, size, 3), np.uint8)
    return x, np.asarray([s.label for s in samples], np.int64)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, train: bool):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if train:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
    if train:
        data = data.map(lambda a, b: (tf.image.random_flip_left_right(a, seed=seed), b))
    return data.prefetch(2)


def unfreeze_top(backbone, layers: int) -> int:
    """Make the last ``layers`` non-BatchNorm layers of the pretrained base trainable."""
    import keras

    base = next(layer for layer in backbone.layers if isinstance(layer, keras.Model))
    base.trainable = True
    candidates = [layer for layer in base.layers if layer.weights]
    for layer in base.layers:
        layer.trainable = False
    chosen = [layer for layer in candidates[-layers:] if not isinstance(layer, keras.layers.BatchNormalization)]
    for layer in chosen:
        layer.trainable = True
    backbone.trainable = True
    return len(chosen)


def fine_tune_backbone(model, backbone, dataset: Dataset, cfg: FinetuneConfig) -> tuple[dict, dict]:
    """Train ``model`` end to end (top layers only); returns (history, Keras accuracy per split)."""
    import keras

    from edgecam.training.head import EpochLine

    t = cfg.train
    size = cfg.model.input_size
    x_train, y_train = _images(dataset.split("train"), size)
    x_val, y_val = _images(dataset.split("val"), size)
    unfreeze_top(backbone, t.fine_tune_layers)
    model.compile(optimizer=keras.optimizers.Adam(t.fine_tune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=t.patience, restore_best_weights=True)
    history = model.fit(
        _batches(x_train, y_train, t.batch_size, t.seed, train=True),
        validation_data=_batches(x_val, y_val, t.batch_size, t.seed, train=False),
        epochs=t.fine_tune_epochs, callbacks=[stop, EpochLine(t.fine_tune_epochs, "fine-tune")], verbose=0,
        shuffle=False,  # the dataset shuffles itself, with the seed
    )
    accuracy = {"val": _accuracy(model, x_val, y_val, t.batch_size)}
    test = dataset.split("test")
    if test:
        accuracy["test"] = _accuracy(model, *_images(test, size), t.batch_size)
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, accuracy


def _accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    if not len(y):
        return 0.0
    probs = model.predict(_batches(x, y, batch_size, 0, train=False), verbose=0)
    return float((probs.argmax(axis=1) == y).mean())
