"""PNG plots a person would rather look at than numbers: confusion matrix, training curves, unknown images.

matplotlib is imported lazily (Agg backend, no display) and is optional on the Pi: without it
the plots are skipped with a notice, and the numbers are still in the JSON. A plot that fails
(or would be too big: 1,001 ImageNet classes) never costs the numbers it illustrates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgecam import files
from edgecam.console import log


MAX_MATRIX_LABELS = 30  # past this a confusion matrix is unreadable (and its canvas huge)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("note: matplotlib is not installed, skipping plots (pip install matplotlib)")
        return None
    return plt


def _plot(path: Path, draw: Callable) -> bool:
    """Draw with ``draw(plt) -> figure`` and save; any failure is a note, never the caller's loss."""
    path = Path(path)
    plt = _pyplot()
    if plt is None:
        return False
    fig = None
    try:
        fig = draw(plt)
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        return True
    except Exception as exc:  # noqa: BLE001 - a plot is never worth the metrics it illustrates
        log(f"note: could not draw {path.name} ({type(exc).__name__}: {exc}); the numbers are in the JSON")
        return False
    finally:
        if fig is not None:
            plt.close(fig)


def most_confused(counts: np.ndarray, keep: int) -> list[int]:
    """Indices of the ``keep`` labels with the most confusions (as truth or as guess), in label order."""
    wrong = counts - np.diag(np.diag(counts))
    mass = wrong.sum(axis=0) + wrong.sum(axis=1)
    order = np.lexsort((-counts.sum(axis=1), -mass))  # most confused first, then most frequent
    return sorted(int(i) for i in order[:keep])


def confusion_matrix_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> bool:
    """Counts, with each row shaded by its share (recall), so small classes still show.

    Past MAX_MATRIX_LABELS labels only the most confused ones are drawn (and the title says so).
    """
    path, counts = Path(path), np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if len(labels) > MAX_MATRIX_LABELS:
        keep = most_confused(counts, MAX_MATRIX_LABELS)
        log(f"note: {path.name} shows the {len(keep)} most confused of {len(labels)} labels")
        title = f"{title}\n(the {len(keep)} most confused of {len(labels)} labels)"
        counts, shares, labels = counts[np.ix_(keep, keep)], shares[np.ix_(keep, keep)], [labels[i] for i in keep]
    n = len(labels)

    def draw(plt):
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
        return fig

    return _plot(path, draw)


def training_curves_png(stages: dict[str, dict[str, list[float]]], path: Path) -> bool:
    """Loss and accuracy per epoch, train vs validation, for each training stage."""
    def draw(plt):
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
        return fig

    return _plot(path, draw)


def unknown_png(curves: dict[str, tuple[Sequence[float], Sequence[float]]], point: tuple[float, float, str] | None,
                path: Path, title: str) -> bool:
    """Share of known images kept (x) vs share of unknown images rejected (y) as the threshold sweeps.

    ``curves``: name → (kept, rejected), the first drawn solid and the others dashed; ``point``:
    (kept, rejected, label) of the model's own threshold, marked and labelled, or None.
    """
    def draw(plt):
        fig, ax = plt.subplots(figsize=(5.6, 5.0))
        for i, (name, (kept, rejected)) in enumerate(curves.items()):
            ax.plot(kept, rejected, label=name, linewidth=2.0 if i == 0 else 1.2, linestyle="-" if i == 0 else "--")
        if point is not None:
            kept, rejected, label = point
            ax.plot([kept], [rejected], "o", color="black", zorder=5)
            ax.annotate(f"{label}\nkeeps {kept:.1%}, rejects {rejected:.1%}", (kept, rejected), xytext=(-12, -14),
                        textcoords="offset points", ha="right", va="top", fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("share of known images kept")
        ax.set_ylabel("share of unknown images rejected")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        return fig

    return _plot(path, draw)
