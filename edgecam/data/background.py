"""Background folders: photos of "none of these", which teach the unknown score what to reject.

An entry of ``data.background`` is either a folder name beside the label folders (then it is
found in every split, like a label, but is never one) or the path of any other folder (then
all its images are training images). Images are verified like labelled ones; a background
image that is byte-identical to a labelled image is left out, since it cannot be both.
"""

from __future__ import annotations

from pathlib import Path

from edgecam.config.finetune import DataConfig
from edgecam.data.scan_index import ScanIndex
from edgecam.errors import DataError
from edgecam.files import IMAGE_SUFFIXES

BACKGROUND = -1  # Sample.label of a background image


def background_names(cfg: DataConfig, train_dir: Path) -> set[str]:
    """Background entries that are folders beside the label folders (so never labels)."""
    return {entry for entry in cfg.background if "/" not in entry and (train_dir / entry).is_dir()}


def background_folders(cfg: DataConfig, dirs: dict[str, Path]) -> list[tuple[str, Path]]:
    """(split, folder) for every background folder; DataError naming an entry that is no folder."""
    inside = background_names(cfg, dirs["train"])
    found: list[tuple[str, Path]] = []
    for entry in cfg.background:
        if entry in inside:
            found += [(split, folder / entry) for split, folder in dirs.items() if (folder / entry).is_dir()]
        elif Path(entry).expanduser().is_dir():
            found.append(("train", Path(entry).expanduser().resolve()))
        else:
            raise DataError(f"data.background: '{entry}' is neither a folder beside the label folders "
                            f"in {dirs['train']} nor a folder")
    return found


def scan_background(cfg: DataConfig, dirs: dict[str, Path], known_digests: set[str], progress: bool,
                    index: ScanIndex | None):
    """(background samples, skipped files, notices) for ``cfg.background``."""
    from edgecam.data.dataset import Sample, Skipped, _check_files, _walk

    found, skipped = [], []
    for split, folder in background_folders(cfg, dirs):
        for path in _walk(folder):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(Sample(path, BACKGROUND, "", split))
            else:
                skipped.append(Skipped(path, f"not an image file ({path.suffix or 'no extension'})"))
    samples, bad = _check_files(sorted(set(found), key=lambda s: str(s.path)), progress, index)
    kept, seen, notices, copies = [], set(), [], 0
    for s in samples:
        if s.digest in known_digests:
            notices.append(f"background image {s.path} is also a labelled image: left out of the background")
        elif s.digest in seen:
            copies += 1
        else:
            seen.add(s.digest)
            kept.append(s)
    if copies:
        notices.append(f"{copies} background image(s) are byte-identical copies of others: kept once")
    if cfg.background and not kept:
        raise DataError(f"data.background: no usable images in {', '.join(cfg.background)}")
    return kept, skipped + bad, notices
