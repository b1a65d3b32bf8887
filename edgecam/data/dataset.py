"""Turn a folder of labelled photos into a checked, de-duplicated, split list of samples.

Everything that can be wrong with a user's folders is found here, before any training time
is spent: unreadable or non-image files (skipped, with a reason), copies of one photo
(collapsed, so a photo never sits on both sides of the split), one photo filed under two
labels (excluded: it cannot teach either), and labels without usable images (an error).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgecam.config.finetune import DataConfig
from edgecam.console import progress_bar
from edgecam.data.background import background_names, scan_background
from edgecam.data.images import ImageDecodeError, decode_image, digest, read_bytes
from edgecam.files import IMAGE_SUFFIXES
from edgecam.data.scan_index import ScanIndex
from edgecam.data.split import carve_val
from edgecam.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One usable image; ``label`` indexes Dataset.labels, ``split`` is train, val or test."""

    path: Path
    label: int
    digest: str
    split: str


@dataclass(frozen=True)
class Skipped:
    """A file under a label folder that is not used, and why (for the user to fix or ignore)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """Byte-identical files in one label: one stays as the sample with this digest, ``paths`` are the rest."""

    digest: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Conflict:
    """The same bytes under several labels: all ``paths`` are excluded; ``labels`` are the distinct labels."""

    digest: str
    paths: tuple[Path, ...]
    labels: tuple[str, ...]


@dataclass
class Dataset:
    """The result of a scan: samples with their splits, plus everything that was left out and why.

    Not frozen, as it holds lists; use ``dataclasses.replace`` to derive a changed copy.
    """

    labels: tuple[str, ...]
    samples: list[Sample]
    skipped: list[Skipped]
    duplicates: list[Duplicate]
    conflicts: list[Conflict]
    ignored_folders: list[Path]
    notices: list[str]
    root: Path
    given_splits: tuple[str, ...]
    background: list[Sample] = field(default_factory=list)  # "none of these" images (label -1)

    def splits(self) -> tuple[str, ...]:
        """Splits this dataset has: train and val always, test only when a test/ folder was given."""
        return SPLITS if "test" in self.given_splits else SPLITS[:2]

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {SPLITS}")
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per label and split, e.g. to show the real validation fraction of each label."""
        counts = {label: dict.fromkeys(self.splits(), 0) for label in self.labels}
        for s in self.samples:
            counts[self.labels[s.label]][s.split] += 1
        return counts

    def fingerprint(self) -> str:
        """sha256 over the sorted (label, digest, split) triples: identifies the exact data a run used."""
        triples = sorted((self.labels[s.label], s.digest, s.split) for s in self.samples)
        if self.background:
            triples += sorted(("", s.digest, s.split) for s in self.background)
        return hashlib.sha256(json.dumps(triples).encode("utf-8")).hexdigest()

    def summary_line(self) -> str:
        per_split = ", ".join(f"{name} {len(self.split(name))}" for name in self.splits())
        dropped = sum(len(d.paths) for d in self.duplicates)
        return (
            f"{len(self.samples)} images in {len(self.labels)} labels ({per_split}); "
            f"{len(self.skipped)} skipped, {_plural(dropped, 'duplicate')}, "
            f"{_plural(len(self.conflicts), 'conflict')}"
            + (f"; {len(self.background)} background images" if self.background else "")
        )


def scan_dataset(cfg: DataConfig, progress: bool = True, index_path: Path | None = None) -> Dataset:
    """Find, verify, de-duplicate and split the images under ``cfg.path``; raise DataError if unusable.

    ``index_path``: a file remembering verified images, so re-runs skip unchanged files.
    """
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    dirs = _split_dirs(root)
    labels = _label_folders(cfg, dirs["train"])
    ignored, notices = _unused_folders(root, dirs, labels, background_names(cfg, dirs["train"]))
    found, skipped = _find_files(dirs, labels)
    index = ScanIndex(index_path) if index_path else None
    samples, bad = _check_files(found, progress, index)
    skipped = sorted(skipped + bad, key=lambda s: str(s.path))
    names = tuple(labels)
    samples, duplicates, conflicts, dup_notices = _dedupe(samples, names)
    if "val" not in dirs:
        samples = _carve_val(samples, cfg.val_fraction)
    _require_train_images(names, labels, dirs["train"], samples, skipped, conflicts)
    background, bg_skipped, bg_notices = scan_background(cfg, dirs, {s.digest for s in samples}, progress, index)
    notices += dup_notices + _split_notices(names, samples, dirs) + bg_notices
    given = tuple(dirs) if dirs["train"] != root else ()
    skipped = sorted(skipped + bg_skipped, key=lambda s: str(s.path))
    return Dataset(names, samples, skipped, duplicates, conflicts, ignored, notices, root, given, background)


def _split_dirs(root: Path) -> dict[str, Path]:
    """Split → folder holding its label folders: given train/ [val/] [test/], or just the root as train."""
    if (root / "train").is_dir():
        return {name: root / name for name in SPLITS if (root / name).is_dir()}
    return {"train": root}


def _label_folders(cfg: DataConfig, train_dir: Path) -> dict[str, tuple[str, ...]]:
    """Label → its folder names, in label order, checked against what ``train_dir`` holds."""
    present = [p.name for p in _subfolders(train_dir) if p.name not in background_names(cfg, train_dir)]
    labels = cfg.label_folders()
    if labels is None:
        labels = {name: (name,) for name in present}
    owner: dict[str, str] = {}
    for label, folders in labels.items():
        for folder in folders:
            if not (train_dir / folder).is_dir():
                listing = ", ".join(present) or "none"
                raise DataError(f"{train_dir}: label folder '{folder}' not found (folders there: {listing})")
            if folder in owner:
                raise DataError(
                    f"{train_dir}: folder '{folder}' is used by two labels, '{owner[folder]}' and '{label}'"
                )
            owner[folder] = label
    if len(labels) < 2:
        found = f" ({', '.join(repr(name) for name in labels)})" if labels else ""
        raise DataError(f"{train_dir}: need at least two labels, found {len(labels)}{found}")
    return labels


def _unused_folders(
    root: Path, dirs: dict[str, Path], labels: dict[str, tuple[str, ...]], background: set[str]
) -> tuple[list[Path], list[str]]:
    """Folders that no label uses: worth a notice, since a typo in the config looks exactly like this."""
    used = {Path(folder).parts[0] for folders in labels.values() for folder in folders} | background
    ignored: list[tuple[Path, str]] = []
    if dirs["train"] != root:
        ignored += [(p, "not train/, val/ or test/") for p in _subfolders(root) if p.name not in SPLITS]
    for split_dir in dirs.values():
        ignored += [(p, "not in labels") for p in _subfolders(split_dir) if p.name not in used]
        ignored += [(p, "hidden: its name starts with a dot") for p in _hidden_data_folders(split_dir)]
    notices = [f"ignored folder '{p.relative_to(root).as_posix()}' ({why})" for p, why in ignored]
    return [p for p, _ in ignored], notices


def _find_files(
    dirs: dict[str, Path], labels: dict[str, tuple[str, ...]]
) -> tuple[list[Sample], list[Skipped]]:
    """Every file under the label folders: images as unchecked samples (no digest yet), others skipped."""
    found: dict[Path, Sample] = {}
    skipped: list[Skipped] = []
    for split, split_dir in dirs.items():
        for index, folders in enumerate(labels.values()):
            for folder in folders:
                for path in _walk(split_dir / folder):
                    if path.suffix.lower() in IMAGE_SUFFIXES:
                        found.setdefault(path, Sample(path, index, "", split))
                    else:
                        skipped.append(Skipped(path, f"not an image file ({path.suffix or 'no extension'})"))
    return sorted(found.values(), key=lambda s: str(s.path)), skipped


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name)), key=lambda p: p.name)


def _hidden_data_folders(folder: Path) -> list[Path]:
    """Hidden folders that hold images (``...``, ``.photos``): never used, but worth a word."""
    def holds_images(path: Path) -> bool:
        return any(f.suffix.lower() in IMAGE_SUFFIXES and not _hidden(f.name) for f in path.rglob("*"))

    return sorted(p for p in folder.iterdir() if _hidden(p.name) and p.is_dir() and holds_images(p))


def _hidden(name: str) -> bool:
    """Dot-files (.DS_Store, .git) and macOS zip leftovers are never data."""
    return name.startswith(".") or name == "__MACOSX"


def _walk(folder: Path) -> Iterator[Path]:
    """Non-hidden entries under ``folder`` that are not folders; follows folder links once each."""
    if not folder.is_dir():
        return
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        info = current.stat()
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as err:
            raise DataError(f"{current}: cannot list folder ({err.strerror or err})") from err
        for entry in entries:
            if _hidden(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link loop: not a folder; reading it fails, so it is skipped and listed
                is_dir = False
            if is_dir:
                pending.append(Path(entry.path))
            else:
                yield Path(entry.path)


def _check_files(found: list[Sample], progress: bool, index: ScanIndex | None = None
                 ) -> tuple[list[Sample], list[Skipped]]:
    """Read, hash and fully decode every image in parallel (Pillow releases the GIL while decoding).

    Files the ``index`` has already verified (same size and modification time) are not read again.
    """
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    known = {s.path: index.lookup(s.path) for s in found} if index else {}
    todo = [s for s in found if not known.get(s.path)]
    bar = progress_bar(len(todo), "scanning", progress)
    try:
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            checked = dict(zip((s.path for s in todo), pool.map(_check_file, [s.path for s in todo])))
            for sample in found:
                sha, reason = (known[sample.path], None) if known.get(sample.path) else checked[sample.path]
                if reason is None:
                    samples.append(replace(sample, digest=sha))
                    if index:
                        index.remember(sample.path, sha)
                else:
                    skipped.append(Skipped(sample.path, reason))
                if sample.path in checked:
                    bar.update(1)
    finally:
        bar.close()
    if index:
        index.save()
    return samples, skipped


def _check_file(path: Path) -> tuple[str, str | None]:
    """(digest, None) for a usable image, ("", reason) otherwise; bytes are read once for both."""
    try:
        data = read_bytes(path)
        decode_image(data, str(path))
    except ImageDecodeError as err:
        return "", str(err)
    return digest(data), None


def _workers() -> int:
    """Two threads per usable core: one decodes while the other waits for the disk."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(2, min(32, 2 * cores))


def _dedupe(
    samples: list[Sample], labels: tuple[str, ...]
) -> tuple[list[Sample], list[Duplicate], list[Conflict], list[str]]:
    """Collapse copies within a label to one sample; drop bytes that appear under several labels."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.digest].append(s)
    kept, duplicates, conflicts, notices = [], [], [], []
    for sha, group in groups.items():
        label_ids = sorted({s.label for s in group})
        if len(label_ids) > 1:
            conflicts.append(Conflict(sha, tuple(s.path for s in group), tuple(labels[i] for i in label_ids)))
            continue
        # Keep the copy in the earliest split: a photo given in both train/ and test/ would
        # otherwise inflate the test score, so it is trained on and not tested on.
        group.sort(key=lambda s: (SPLITS.index(s.split), str(s.path)))
        kept.append(group[0])
        if len(group) > 1:
            duplicates.append(Duplicate(sha, tuple(s.path for s in group[1:])))
        others = sorted({s.split for s in group} - {group[0].split}, key=SPLITS.index)
        if others:
            kept_in = group[0].split
            notices.append(f"'{group[0].path}' is also in {' and '.join(others)}: kept in {kept_in} only")
    kept.sort(key=lambda s: str(s.path))
    return kept, duplicates, conflicts, notices


def _carve_val(samples: list[Sample], val_fraction: float) -> list[Sample]:
    """Move each label's share of training images to val, chosen by content hash (see split.carve_val)."""
    by_label: dict[int, list[str]] = defaultdict(list)
    for s in samples:
        if s.split == "train":
            by_label[s.label].append(s.digest)
    val = set().union(*(carve_val(digests, val_fraction) for digests in by_label.values()))
    return [replace(s, split="val") if s.split == "train" and s.digest in val else s for s in samples]


def _require_train_images(
    names: tuple[str, ...],
    labels: dict[str, tuple[str, ...]],
    train_dir: Path,
    samples: list[Sample],
    skipped: list[Skipped],
    conflicts: list[Conflict],
) -> None:
    """Raise DataError for the first label with no training image, saying what happened to its files."""
    have = {s.label for s in samples if s.split == "train"}
    for index, name in enumerate(names):
        if index in have:
            continue
        folders = [train_dir / folder for folder in labels[name]]
        lost = [s for s in skipped if _under(s.path, folders)]
        clashes = [p for c in conflicts for p in c.paths if _under(p, folders)]
        details = []
        if lost:
            details.append(f"{len(lost)} skipped, e.g. '{lost[0].path.name}': {lost[0].reason}")
        if clashes:
            details.append(f"{len(clashes)} also filed under another label")
        where = ", ".join(str(f) for f in folders)
        why = "; ".join(details) or "no image files"
        raise DataError(f"label '{name}' has no usable images in {where} ({why})")


def _under(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def _split_notices(names: tuple[str, ...], samples: list[Sample], dirs: dict[str, Path]) -> list[str]:
    """Labels whose validation (or given test) split came out empty: their scores will be missing."""
    present = {(s.label, s.split) for s in samples}
    notices = []
    for split in ("val", "test") if "test" in dirs else ("val",):
        why = "" if split in dirs else " (too few images to hold any out)"
        notices += [f"label '{name}' has no {split} images{why}" for index, name in enumerate(names)
                    if (index, split) not in present]
    return notices


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
