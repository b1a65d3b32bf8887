"""Where a photo came from: frames kept by ``edgecam run --keep`` and filed by ``edgecam review``.

Filing moves a kept frame into its label folder and its JSON sidecar beside it, into the
hidden folder ``.edgecam/`` (which the scan never reads as data): a photo is *from the field*
when ``<its folder>/.edgecam/<its stem>.json`` exists. The sidecar says when, why and by which
model it was kept (``time``, ``reason``, ``model_sha256``, ...) and, once filed, ``filed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

SIDECAR_FOLDER = ".edgecam"
SPLITS = ("train", "val", "test")


def sidecar_path(image: Path) -> Path:
    """Where the sidecar of ``image`` sits once filed: ``<folder>/.edgecam/<stem>.json``."""
    return image.parent / SIDECAR_FOLDER / f"{image.stem}.json"


def from_field(image: Path) -> bool:
    return sidecar_path(image).is_file()


def read_sidecar(image: Path) -> dict | None:
    """The sidecar of ``image`` as a dict; None when there is none or it is not a JSON object."""
    try:
        data = json.loads(sidecar_path(image).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def field_counts(labels: Iterable[str], samples: Iterable) -> dict[str, dict[str, int]]:
    """Label -> {train, val, test}: how many of its samples are from the field; {} when none is.

    ``samples`` are edgecam.data.dataset.Sample (``path``, ``label`` an index into ``labels``, ``split``).
    """
    names = list(labels)
    counts = {name: dict.fromkeys(SPLITS, 0) for name in names}
    found = False
    for sample in samples:
        if from_field(sample.path):
            counts[names[sample.label]][sample.split] += 1
            found = True
    return counts if found else {}


def field_accuracy(predictions: Mapping[str, list[dict]]) -> dict[str, dict]:
    """Split -> {images, accuracy} over the field images among ``predictions`` (split -> rows with
    ``path``, ``true`` and ``predicted``); accuracy is None for a split without field images."""
    result = {}
    for split, rows in predictions.items():
        field = [r for r in rows if from_field(Path(r["path"]))]
        right = sum(r["true"] == r["predicted"] for r in field)
        result[split] = {"images": len(field), "accuracy": right / len(field) if field else None}
    return result
