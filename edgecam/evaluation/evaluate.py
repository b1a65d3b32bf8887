"""Accuracy of a ``.tflite`` classifier on labelled images, measured with the edge runtime.

The same code checks a freshly exported model inside ``finetune`` and serves
``edgecam evaluate`` on a Pi, so the number in the report is the number the device gets.
No TensorFlow here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edgecam import console, files
from edgecam.config.finetune import DataConfig
from edgecam.data.dataset import Sample, scan_dataset
from edgecam.data.images import ImageDecodeError, load_rgb
from edgecam.errors import DataError
from edgecam.evaluation import unknown
from edgecam.evaluation.metrics import classification_report
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.inference_pool import map_on_workers


def evaluate_samples(
    model: str | Path | Classifier,
    samples: Sequence[Sample],
    sample_labels: Sequence[str],
    desc: str = "evaluating",
    progress: bool = True,
    cache_dir: Path | None = None,
    unknown_scores: bool = False,
) -> dict:
    """Run every sample through the model; ``sample_labels[s.label]`` names each sample's truth.

    With ``cache_dir``, outputs are kept per (model file content, image content), so checking a
    byte-identical model again on the same images (a re-run with the same seed) is instant.
    With ``unknown_scores``, every prediction also gets its ``unknown_score`` and the result says
    where those came from (``unknown_source``: see ``unknown.outputs``).
    """
    classifier = model if isinstance(model, Classifier) else Classifier(model)
    index = {name: i for i, name in enumerate(classifier.labels)}
    missing = sorted({sample_labels[s.label] for s in samples} - set(index))
    if missing:
        raise DataError(f"{classifier.path}: the model has no label(s) {', '.join(missing)}")
    cache = OutputCache(cache_dir, classifier.path, unknown_scores) if cache_dir else None
    y_true, y_pred, rows, skipped, sources = [], [], [], [], set()
    for s, row in _sample_rows(classifier, samples, cache, unknown_scores, desc, progress):
        if isinstance(row, ImageDecodeError):
            skipped.append({"path": str(s.path), "reason": str(row)})
            continue
        probs, extra = _split_row(row, unknown_scores)
        truth, guess = index[sample_labels[s.label]], int(np.argmax(probs))
        y_true.append(truth)
        y_pred.append(guess)
        rows.append({"path": str(s.path), "true": classifier.labels[truth],
                     "predicted": classifier.labels[guess], "score": round(float(probs[guess]), 4)})
        if extra:
            rows[-1]["unknown_score"] = extra[0]
            sources.add(extra[1])
    if cache:
        cache.save()
    result = {
        "model": str(classifier.path),
        "metrics": classification_report(y_true, y_pred, classifier.labels),
        "misclassified": [r for r in rows if r["true"] != r["predicted"]],
        "predictions": rows,
        "skipped": skipped,
    }
    if unknown_scores:
        result["unknown_source"] = unknown.MAX_SOFTMAX if unknown.MAX_SOFTMAX in sources else unknown.MODEL
    return result


def _sample_rows(classifier: Classifier, samples: Sequence[Sample], cache: OutputCache | None, unknown_scores: bool,
                 desc: str, progress: bool) -> Iterator:
    """(sample, its ``_cache_row`` or the ImageDecodeError reading it), in order: from ``cache`` when it
    has the row, else computed (and kept in ``cache``); a progress bar when anything is computed."""
    kept = [cache.get(s.digest) if cache else None for s in samples]
    computed = _computed_rows(classifier, [s for s, row in zip(samples, kept) if row is None], unknown_scores)
    for s, row in zip(console.progress(samples, desc, progress and any(row is None for row in kept)), kept):
        if row is None:
            row = next(computed)[1]
            if cache and not isinstance(row, ImageDecodeError):
                cache.put(s.digest, row)
        yield s, row


def _computed_rows(classifier: Classifier, samples: Sequence[Sample], unknown_scores: bool) -> Iterator:
    """(sample, its ``_cache_row`` or the ImageDecodeError reading it) for each sample, in order, on
    every core: a one-thread copy of ``classifier`` per worker decodes and classifies its own photos
    (as the finetune embedding pass does, ``edgecam.runtime.inference_pool``)."""
    def work(copy: Classifier, sample: Sample):
        try:
            return sample, _cache_row(copy, load_rgb(sample.path), unknown_scores)
        except ImageDecodeError as err:
            return sample, err

    return map_on_workers(lambda: Classifier(classifier.path, labels=classifier.labels, num_threads=1), work, samples)


def cached_outputs(classifier: Classifier, key: str, image, cache: OutputCache | None, unknown_scores: bool
                   ) -> tuple[np.ndarray, tuple[float, str] | None]:
    """(probabilities, (unknown score, source) or None) of the image ``image()`` gives, from ``cache``
    under ``key`` when it has them (the image is then never made), else computed and kept there."""
    row = cache.get(key) if cache else None
    if row is None:
        row = _cache_row(classifier, image(), unknown_scores)
        if cache:
            cache.put(key, row)
    return _split_row(row, unknown_scores)


def _split_row(row: np.ndarray, unknown_scores: bool) -> tuple[np.ndarray, tuple[float, str] | None]:
    if not unknown_scores:
        return row, None
    return row[:-2].astype(np.float32), (float(row[-2]), unknown.MODEL if row[-1] else unknown.MAX_SOFTMAX)


def _cache_row(classifier: Classifier, rgb: np.ndarray, unknown_scores: bool) -> np.ndarray:
    """What the output cache keeps of one image: the probabilities, then (if asked) the unknown
    score and 1.0 when that came from the model (0.0: from the top probability)."""
    if not unknown_scores:
        return classifier.classify(rgb)
    probs, score, source = unknown.outputs(classifier, rgb)
    return np.append(np.asarray(probs, np.float64), [score, float(source == unknown.MODEL)])


def evaluate_folder(model_path: Path, data_dir: Path, out_dir: Path, labels_file: Path | None = None,
                    progress: bool = True, unknown_dirs: Sequence[Path] = ()) -> dict:
    """``edgecam evaluate``: a folder tree of labelled images → metrics, confusion matrix, errors.

    Uses the test/ split when the folder has one, otherwise every image. Folders that are not
    model labels are ignored with a notice. ``unknown_dirs``: folders of images that belong to
    no label; the result then has an ``unknown`` section (see ``edgecam.evaluation.unknown``),
    unknown.png is drawn and the CSV files get ``unknown_score`` and ``decision`` columns.
    """
    from edgecam.plots import confusion_matrix_png

    classifier = Classifier(model_path, labels=labels_file)
    root = data_dir / "test" if (data_dir / "test").is_dir() else data_dir
    present = [label for label in classifier.labels if (root / label).is_dir()]
    if not present:
        raise DataError(f"{root}: no folder named after a model label ({', '.join(classifier.labels[:5])}, ...)")
    listed = unknown.list_folders(unknown_dirs)  # a typo in an --unknown folder is found before any image is read
    dataset = scan_dataset(DataConfig(path=root, labels=tuple(present)), progress=progress)
    for notice in dataset.notices:
        console.log(f"note: {notice}")
    result = evaluate_samples(classifier, dataset.samples, dataset.labels, progress=progress,
                              unknown_scores=bool(unknown_dirs))
    result["data"] = str(root)
    result["skipped"] += [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped]
    folder_rows = _evaluate_unknown(classifier, result, listed, progress) if unknown_dirs else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = ("predictions", "unknown_predictions")  # in the CSV files, not in metrics.json
    files.write_text(out_dir / "metrics.json", json.dumps({k: v for k, v in result.items() if k not in per_image},
                                                          indent=2))
    rows, with_unknown = result["predictions"] + result.get("unknown_predictions", []), bool(unknown_dirs)
    files.write_text(out_dir / "predictions.csv", predictions_csv(rows, with_unknown))
    files.write_text(out_dir / "misclassified.csv", predictions_csv(result["misclassified"], with_unknown))
    accuracy = result["metrics"]["accuracy"]
    confusion_matrix_png(result["metrics"]["confusion_matrix"], classifier.labels, out_dir / "confusion_matrix.png",
                         f"{model_path.name} on {root.name}: accuracy {accuracy:.1%}")
    if unknown_dirs:
        report = result["unknown"]
        auroc = "n/a" if report["auroc"] is None else f"{report['auroc']:.3f}"
        unknown.draw(report, result["predictions"], folder_rows, out_dir / "unknown.png",
                     f"{model_path.name} on {root.name}: AUROC {auroc} ({report['score']})")
    return result


def _evaluate_unknown(classifier: Classifier, result: dict, listed: dict, progress: bool) -> dict[str, list[dict]]:
    """Adds ``unknown`` (the report) and ``unknown_predictions`` (one row per image) to ``result``.

    Returns the rows per folder, for the plot.
    """
    folder_rows, skipped, source = unknown.score_folders(classifier, listed, progress)
    if result.pop("unknown_source") == unknown.MAX_SOFTMAX:
        source = unknown.MAX_SOFTMAX
    result["skipped"] += skipped
    result["unknown"] = unknown.unknown_report(result["predictions"], folder_rows, source,
                                               classifier.unknown_threshold, result["metrics"]["accuracy"],
                                               getattr(classifier, "unknown_keep", None))
    result["unknown_predictions"] = [row for rows in folder_rows.values() for row in rows]
    return folder_rows


class OutputCache:
    """Model outputs keyed by image digest, in one .npz per model content hash (and kind of row:
    ``scored`` rows also hold the unknown score, see ``_cache_row``)."""

    def __init__(self, folder: Path, model_path: Path, scored: bool = False):
        model_hash = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()[:24]
        self.path = folder / f"{model_hash}{'-scored' if scored else ''}.npz"
        self.outputs: dict[str, np.ndarray] = {}
        self.dirty = False
        try:
            with np.load(self.path) as data:
                self.outputs = dict(zip(data["digests"].tolist(), data["outputs"]))
        except (OSError, ValueError, KeyError):
            pass

    def covers(self, keys) -> bool:
        return all(key in self.outputs for key in keys)

    def get(self, digest: str) -> np.ndarray | None:
        return self.outputs.get(digest)

    def put(self, digest: str, probs: np.ndarray) -> None:
        self.outputs[digest] = probs
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or not self.outputs:
            return
        digests = sorted(self.outputs)
        with files.atomic_path(self.path, durable=False) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, digests=np.array(digests), outputs=np.stack([self.outputs[d] for d in digests]))
        self.dirty = False


def predictions_csv(rows: list[dict], unknown_columns: bool = False) -> str:
    """path, true, predicted, score; with ``unknown_columns`` also unknown_score and decision (known/unknown,
    empty without a calibrated threshold). Images of the --unknown folders have an empty ``true``."""
    buffer = io.StringIO()
    fields = ["path", "true", "predicted", "score"] + (["unknown_score", "decision"] if unknown_columns else [])
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if "unknown_score" in row:
            row = {**row, "unknown_score": round(row["unknown_score"], 6)}
        writer.writerow(row)
    return buffer.getvalue()
