"""The training loop of the tuned top blocks: ``train_on_batch`` per batch, not ``Model.fit``.

Measured on this 2-core machine with the top 3 MobileNetV2 blocks: an epoch of ``fit`` ran on one
core (21.5 s wall, 22 s CPU), the same batches through ``train_on_batch`` on both (11 s wall, same
CPU): fit's iterator-driven step loses the kernels' parallelism. Everything else is fit's: the
compiled loss and metrics, class weights, early stopping on the validation loss with the best
weights restored, a shuffle fixed by the seed.
"""

from __future__ import annotations

import time

import numpy as np


def fit_top(model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, num_classes: int, t):
    """Fit ``model`` (the top blocks + head) on activations ``x`` with labels ``y``; returns (history
    per metric and "seconds" per epoch, the weights before, the validation loss before), so a run
    that did not help can be undone."""
    import keras

    from edgecam.training.head import EpochLine, class_weights

    # The rate decays to 0 over the epochs (cosine): at a constant rate the validation loss jumps from
    # epoch to epoch and early stopping picks a lucky one (benchmarks/tune_cost.py).
    steps = -(-len(x) // t.batch_size)
    rate = keras.optimizers.schedules.CosineDecay(t.fine_tune_learning_rate, t.fine_tune_epochs * steps)
    model.compile(optimizer=keras.optimizers.Adam(rate),  # the head's loss (head.train_head)
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing), metrics=["accuracy"])
    onehot = np.eye(num_classes, dtype=np.float32)
    weights = class_weights(y, num_classes) if t.class_weight else None
    before = model.get_weights()
    start = _validate(model, x_val, onehot[y_val])["val_loss"]
    rng, line = np.random.default_rng(t.seed), EpochLine(t.fine_tune_epochs, "fine-tune")
    history: dict[str, list[float]] = {}
    best, best_weights, waited = np.inf, before, 0
    for epoch in range(t.fine_tune_epochs):
        line.on_epoch_begin(epoch)
        clock = time.perf_counter()
        order, sums = rng.permutation(len(x)), {}
        for step in range(steps):
            batch = np.sort(order[step * t.batch_size:(step + 1) * t.batch_size])
            for key, value in model.train_on_batch(x[batch], onehot[y[batch]], class_weight=weights,
                                                   return_dict=True).items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(batch)
        logs = {k: v / len(x) for k, v in sums.items()} | _validate(model, x_val, onehot[y_val])  # epoch means
        logs["seconds"] = round(time.perf_counter() - clock, 3)  # what an epoch costs (benchmarks/tune_cost.py)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        line.on_epoch_end(epoch, logs)
        if logs["val_loss"] < best:
            best, best_weights, waited = logs["val_loss"], model.get_weights(), 0
        else:
            waited += 1
            if waited >= t.patience:
                break
    model.set_weights(best_weights)
    return history, before, start


def _validate(model, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, float]:
    loss, accuracy = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}
