"""``data.extra_tests``: more labelled folders a finetune run scores its exported model on.

Each is a folder with one sub-folder per label (or a test/ folder of those, as ``edgecam
evaluate`` takes), named like a label or like a folder the config maps to a label. A sub-folder
that is neither is an error naming it: a test set whose labels do not match would give a number
that means nothing, and a typo should not quietly shrink it. Labels without a folder are fine
(a test set of some labels), and so are background folders (left out with a note). Scanned right
after the training data, so a wrong path fails before any training time is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecam.config.finetune import DataConfig
from edgecam.data.background import background_names
from edgecam.data.dataset import Dataset, scan_dataset
from edgecam.errors import DataError


@dataclass(frozen=True)
class ExtraTest:
    """One scanned extra test: its name, folder and images (``dataset.samples`` labels index ``labels``)."""

    name: str
    root: Path
    dataset: Dataset

    def describe(self) -> dict:
        """For the report: the folder, images per label, and what was left out and why."""
        counts = {label: 0 for label in self.dataset.labels}
        for s in self.dataset.samples:
            counts[self.dataset.labels[s.label]] += 1
        return {"path": str(self.root), "counts": counts,
                "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.dataset.skipped],
                # the scan carves a validation split, which means nothing here: its notices go
                "notices": [n for n in self.dataset.notices if " has no val images" not in n]}


def scan_extra_tests(cfg: DataConfig, labels: tuple[str, ...], progress: bool = True,
                     index_path: Path | None = None) -> tuple[ExtraTest, ...]:
    """Every ``cfg.extra_tests`` folder scanned against the model's ``labels``; DataError naming the key.

    ``index_path``: the scan index of the training data (see scan_dataset), so re-runs are quick.
    """
    return tuple(_scan_one(cfg, name, Path(folder), labels, progress, index_path)
                 for name, folder in cfg.extra_tests.items())


def _scan_one(cfg: DataConfig, name: str, folder: Path, labels: tuple[str, ...], progress: bool,
              index_path: Path | None) -> ExtraTest:
    key = f"data.extra_tests.{name}"
    if not folder.is_dir():
        raise DataError(f"{key}: {folder}: folder not found")
    root = folder / "test" if (folder / "test").is_dir() else folder
    mapping = _folders_by_label(cfg, labels, root, key)
    try:
        dataset = scan_dataset(DataConfig(path=root, labels=mapping), progress=progress, index_path=index_path)
    except DataError as err:
        raise DataError(f"{key}: {err}") from None
    return ExtraTest(name, root, dataset)


def _folders_by_label(cfg: DataConfig, labels: tuple[str, ...], root: Path, key: str) -> dict[str, tuple[str, ...]]:
    """Label -> the sub-folders of ``root`` that hold it, in the model's label order."""
    owner = {label: label for label in labels}
    for label, folders in (cfg.label_folders() or {}).items():
        owner.update({folder: label for folder in folders if "/" not in folder})
    skip = background_names(cfg, root)
    found: dict[str, list[str]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name in owner:
            found.setdefault(owner[sub.name], []).append(sub.name)
        elif sub.name not in skip:
            raise DataError(f"{key}: {sub}: '{sub.name}' is not a label of this model (labels: {', '.join(labels)})")
    if not found:
        raise DataError(f"{key}: {root}: no folder named after a label ({', '.join(labels)})")
    return {label: tuple(found[label]) for label in labels if label in found}
