"""How well a model tells images of none of its labels from its own: ``edgecam evaluate --unknown DIR``.

An edgecam model may carry an "unknown score" (a second output, higher = less like the training
data) and a threshold calibrated at export (metadata ``unknown.threshold``). An image is decided
``unknown`` when its score is above the threshold. Given folders of images that belong to no
label, this measures the share of them rejected, the share of the known images kept, the AUROC
of the score (known vs unknown, threshold-free) and the known-label accuracy with and without
rejection. Models without an unknown score get the AUROC of the max-softmax score (1 - the top
probability) and no rejection figures. Plain numpy: it runs on a Pi.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecam import console
from edgecam.data.images import ImageDecodeError, load_rgb
from edgecam.errors import DataError
from edgecam.files import IMAGE_SUFFIXES
from edgecam.runtime.classifier import Classifier

RULE = "unknown when unknown_score > threshold"
MODEL, MAX_SOFTMAX = "model", "max-softmax"  # where the unknown score comes from
NO_SCORE_NOTE = "model has no calibrated unknown score: AUROC from max-softmax only"
NO_THRESHOLD_NOTE = "model has an unknown score but no calibrated threshold: AUROC only"


# -- the numbers -----------------------------------------------------------------------------------
def auroc(known: Sequence[float], unknown: Sequence[float]) -> float | None:
    """P(an unknown image scores higher than a known one), ties counting half; None if a side is empty."""
    known, unknown = np.sort(np.asarray(known, np.float64)), np.asarray(unknown, np.float64)
    if not known.size or not unknown.size:
        return None
    lower = np.searchsorted(known, unknown, side="left")  # known scores strictly below each unknown one
    ties = np.searchsorted(known, unknown, side="right") - lower
    return float((lower + 0.5 * ties).sum() / (known.size * unknown.size))


def sweep(known: Sequence[float], unknown: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(share of known kept, share of unknown rejected) at every threshold, from rejecting all to keeping all.

    The area under this curve is the AUROC (ties drawn as straight lines count half).
    """
    known, unknown = np.sort(np.asarray(known, np.float64)), np.sort(np.asarray(unknown, np.float64))
    thresholds = np.unique(np.concatenate([known, unknown]))
    kept = np.searchsorted(known, thresholds, side="right") / max(known.size, 1)
    rejected = 1.0 - np.searchsorted(unknown, thresholds, side="right") / max(unknown.size, 1)
    return np.concatenate([[0.0], kept]), np.concatenate([[1.0], rejected])


def rejects(scores: Sequence[float], threshold: float) -> np.ndarray:
    """Which scores are decided ``unknown`` at ``threshold`` (see RULE)."""
    return np.asarray(scores, np.float64) > threshold


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if flags.size else None


# -- the images ------------------------------------------------------------------------------------
def outputs(classifier: Classifier, rgb: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Probabilities, unknown score and where the score came from (MODEL, or MAX_SOFTMAX without one)."""
    probs, score = classifier.classify_all(rgb)
    if score is None:
        return probs, float(1.0 - np.max(probs)), MAX_SOFTMAX
    return probs, float(np.asarray(score, np.float64).reshape(-1)[0]), MODEL


def image_files(folder: Path) -> tuple[list[Path], list[dict]]:
    """Image files under ``folder`` (recursively, folder links followed once) and the other files, skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: --unknown folder {'is not a folder' if folder.exists() else 'not found'}")
    images, skipped, seen = [], [], set()
    for current, dirs, names in os.walk(folder, followlinks=True):
        info = os.stat(current)
        if (info.st_dev, info.st_ino) in seen:  # a folder link back up the tree: walked once already
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(n for n in names if not _hidden(n)):
            path = Path(current) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                skipped.append({"path": str(path), "reason": f"not an image file ({path.suffix or 'no extension'})"})
    return sorted(images), skipped


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # as the data scan: dot-files and zip leftovers


def list_folders(folders: Sequence[Path]) -> dict[str, tuple[list[Path], list[dict]]]:
    """Folder → (its image files, its other files); a folder that is missing or has no image is a DataError."""
    listed = {}
    for folder in folders:
        listed[str(folder)] = image_files(folder)
        if not listed[str(folder)][0]:
            raise DataError(f"{folder}: no images in this --unknown folder ({', '.join(IMAGE_SUFFIXES)})")
    return listed


def score_folders(classifier: Classifier, listed: dict[str, tuple[list[Path], list[dict]]], progress: bool = True
                  ) -> tuple[dict[str, list[dict]], list[dict], str]:
    """Every image of every folder (``list_folders``) through the model: rows per folder, files skipped
    and where the scores came from. A folder without a usable image is a DataError naming it."""
    rows: dict[str, list[dict]] = {}
    skipped: list[dict] = []
    sources: set[str] = set()
    for folder, (paths, others) in listed.items():
        rows[folder], bad = _score_images(classifier, paths, sources, f"unknown {Path(folder).name}", progress)
        skipped += others + bad
        if not rows[folder]:
            raise DataError(f"{folder}: no usable images in this --unknown folder ({len(bad)} skipped, "
                            f"e.g. '{Path(bad[0]['path']).name}': {bad[0]['reason']})")
    return rows, skipped, MAX_SOFTMAX if MAX_SOFTMAX in sources else MODEL


def _score_images(classifier: Classifier, paths: list[Path], sources: set[str], desc: str, progress: bool
                  ) -> tuple[list[dict], list[dict]]:
    """Rows of the images that decode, and the skipped ones; adds where each score came from to ``sources``."""
    rows, bad = [], []
    for path in console.progress(paths, desc, progress):
        try:
            probs, score, source = outputs(classifier, load_rgb(path))
        except ImageDecodeError as err:
            bad.append({"path": str(path), "reason": str(err)})
            continue
        guess = int(np.argmax(probs))
        sources.add(source)
        rows.append({"path": str(path), "true": "", "predicted": classifier.labels[guess],
                     "score": round(float(probs[guess]), 4), "unknown_score": score})
    return rows, bad


# -- the report ------------------------------------------------------------------------------------
def unknown_report(known_rows: list[dict], folder_rows: dict[str, list[dict]], source: str,
                   threshold: float | None, accuracy: float, calibrated_keep: float | None = None) -> dict:
    """The ``unknown`` section of metrics.json; marks every row with its ``decision`` (known/unknown).

    ``calibrated_keep``: the share of known validation images the threshold was set to keep (metadata).
    """
    use = threshold if source == MODEL else None
    every = known_rows + [r for rows in folder_rows.values() for r in rows]
    for row in every:
        row["decision"] = "" if use is None else ("unknown" if row["unknown_score"] > use else "known")
    known = np.array([r["unknown_score"] for r in known_rows], np.float64)
    unknown = np.array([r["unknown_score"] for rows in folder_rows.values() for r in rows], np.float64)
    kept = [r for r in known_rows if r["decision"] == "known"]
    accuracy_kept = None if use is None or not kept else sum(r["true"] == r["predicted"] for r in kept) / len(kept)
    report = {
        "score": source, "threshold": use, "threshold_source": MODEL if use is not None else None,
        "calibrated_keep": calibrated_keep if use is not None else None, "rule": RULE,
        "images": int(unknown.size), "known_images": int(known.size),
        "rejected": None if use is None else _share(rejects(unknown, use)),
        "known_kept": None if use is None else _share(~rejects(known, use)),
        "auroc": auroc(known, unknown),
        "accuracy": accuracy, "accuracy_kept": accuracy_kept,
        "accuracy_change": None if accuracy_kept is None else accuracy_kept - accuracy,
        "folders": {folder: _folder_report(known, rows, use) for folder, rows in folder_rows.items()},
    }
    note = NO_SCORE_NOTE if source != MODEL else NO_THRESHOLD_NOTE if use is None else None
    if note:
        report["note"] = note
    return report


def _folder_report(known: np.ndarray, rows: list[dict], threshold: float | None) -> dict:
    scores = np.array([r["unknown_score"] for r in rows], np.float64)
    return {"images": int(scores.size), "rejected": None if threshold is None else _share(rejects(scores, threshold)),
            "auroc": auroc(known, scores)}


def summary_lines(report: dict) -> list[str]:
    """What ``edgecam evaluate`` prints about the unknown images: a line, and the threshold or a note."""
    names = [Path(folder).name for folder in report["folders"]]
    if len(set(names)) < len(names):  # two folders of the same name: show them as given
        names = list(report["folders"])
    folders = report["folders"].values()
    auroc_text = _number(report["auroc"], ".3f")
    if report["rejected"] is None:
        per = ", ".join(f"{name}: {f['images']}" for name, f in zip(names, folders))
        return [f"unknown: {report['images']} images ({per}) · AUROC {auroc_text} ({report['score']})",
                f"note: {report['note']}"]
    per = ", ".join(f"{name}: {_number(f['rejected'], '.0%')}" for name, f in zip(names, folders))
    return [f"unknown: {_number(report['rejected'], '.1%')} of {report['images']} rejected ({per}) · known kept "
            f"{_number(report['known_kept'], '.1%')} · AUROC {auroc_text} · accuracy {report['accuracy']:.3f} → "
            f"{_number(report['accuracy_kept'], '.3f')} kept",
            f"  threshold {report['threshold']:.4g} from the model's metadata ({RULE})"]


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def draw(report: dict, known_rows: list[dict], folder_rows: dict[str, list[dict]], path: Path, title: str) -> bool:
    """unknown.png: known kept vs unknown rejected as the threshold sweeps, the model's threshold marked."""
    from edgecam.plots import unknown_png

    known = [r["unknown_score"] for r in known_rows]
    groups = {"all unknown images": [r for rows in folder_rows.values() for r in rows]}
    if len(folder_rows) > 1:
        names = [Path(folder).name for folder in folder_rows]
        groups.update(zip(names if len(set(names)) == len(names) else list(folder_rows), folder_rows.values()))
    curves = {}
    for name, rows in groups.items():
        scores = [r["unknown_score"] for r in rows]
        curves[f"{name} (AUROC {auroc(known, scores):.3f})"] = sweep(known, scores)
    point = None
    if report["rejected"] is not None:
        point = (report["known_kept"], report["rejected"], f"threshold {report['threshold']:.4g}")
    return unknown_png(curves, point, path, title)
