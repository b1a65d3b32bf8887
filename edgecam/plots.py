"""PNG plots a person would rather look at than numbers: confusion matrix, training curves.

matplotlib is imported lazily (Agg backend, no display) and is optional on the Pi: without it
the plots are skipped with a notice, and the numbers are still in report.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from edgecam import files


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, skipping plots (pip install matplotlib)", file=sys.stderr)
        return None
    return plt


def _save(fig, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def confusion_matrix_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> bool:
    """Counts, with each row shaded by its share (recall), so small classes still show."""
    plt = _pyplot()
    if plt is None:
        return False
    import numpy as np

    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * n, 1.0 + 0.7 * n))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                        color="white" if shares[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)
    return True


def training_curves_png(stages: dict[str, dict[str, list[float]]], path: Path) -> bool:
    """Loss and accuracy per epoch, train vs validation, for each training stage."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    offset = 0
    for stage, history in stages.items():
        epochs = range(offset + 1, offset + 1 + len(history.get("loss", [])))
        for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            if key in history:
                ax.plot(epochs, history[key], label=f"{stage} train")
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], label=f"{stage} validation", linestyle="--")
        offset += len(history.get("loss", []))
    for ax, title in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return True
