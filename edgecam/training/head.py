"""The classifier head (dropout + softmax) trained on cached embeddings, plus the full model.

Training the head on embeddings rather than images is what makes an epoch take milliseconds;
``assemble`` then puts backbone and head together for fine-tuning and export.
"""

from __future__ import annotations

import sys
import time

import keras
import numpy as np

from edgecam.config.finetune import TrainConfig


class EpochLine(keras.callbacks.Callback):
    """One line per epoch on stderr: the numbers a person watches while training runs."""

    def __init__(self, epochs: int, stage: str = "head"):
        super().__init__()
        self.epochs, self.stage = epochs, stage

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"{self.stage} epoch {epoch + 1:>3}/{self.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                parts.append(f"{key} {logs[key]:.4f}")
        parts.append(f"{time.perf_counter() - self._start:.1f}s")
        print("  ".join(parts), file=sys.stderr, flush=True)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights (mean 1), so a rare label counts as much as a common one."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return {i: float(w) for i, w in enumerate(weights)}


def build_head(embedding_dim: int, num_classes: int, dropout: float, l2: float = 0.0) -> keras.Model:
    inputs = keras.Input((embedding_dim,), name="embedding")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probability",
                                 kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
    return keras.Model(inputs, outputs, name="head")


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    dropout: float,
    cfg: TrainConfig,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Fit the head with early stopping on validation loss (best weights restored).

    Targets are one-hot so that label smoothing can soften them (it keeps the head from
    betting everything on the training photos' look, which a camera does not share).
    """
    keras.utils.set_random_seed(cfg.seed)
    head = build_head(x_train.shape[1], num_classes, dropout, cfg.l2)
    head.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=32,  # tiny steps: Python overhead, not maths, would dominate
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    history = head.fit(
        x_train,
        np.eye(num_classes, dtype=np.float32)[y_train],
        validation_data=(x_val, np.eye(num_classes, dtype=np.float32)[y_val]),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        class_weight=class_weights(y_train, num_classes) if cfg.class_weight else None,
        callbacks=[stop, EpochLine(cfg.epochs)],
        verbose=0,
    )
    return head, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def assemble(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """Backbone + head as one float 0..255 → probabilities model (the exported graph)."""
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inputs, head(backbone(inputs)), name="edgecam_classifier")
