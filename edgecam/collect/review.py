"""Kept frames (``edgecam run --keep DIR``) reviewed into a dataset: list, file, discard, undo.

A kept frame is a pair ``DIR/<stem>.jpg`` + ``DIR/<stem>.json`` (its sidecar: the model's top
scores, decided label, why it was kept, the model's SHA-256, ...). The pair counts once its
sidecar exists; hidden and temp files, and JPEGs without a sidecar, are not listed.

- **File** under a label: the JPEG moves to ``DATASET_DIR/<label>/<stem>.jpg`` and the sidecar,
  with ``"filed": {"label", "time"}`` added, to ``DATASET_DIR/<label>/.edgecam/<stem>.json``
  (a hidden folder: the dataset scan ignores it; ``edgecam finetune`` reads provenance there).
  **Background** is the same into ``DATASET_DIR/<background folder>/``.
- **Discard** moves the pair into ``DIR/.discarded/``.
- **Undo** puts the files of the last action back where they were (a stack of the last
  ``UNDO_DEPTH`` actions, kept in memory while the review runs).

Every file is written under a temporary name and renamed (across filesystems: copied, synced,
renamed, then the original removed), and nothing is ever written outside DIR and DATASET_DIR:
label names are checked (``label_problem``) and every destination is resolved and checked.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgecam.collect.photos import existing_labels
from edgecam.config.camera import label_problem
from edgecam.data.provenance import SIDECAR_FOLDER
from edgecam.errors import ActionError, EdgecamError
from edgecam.files import atomic_path, folder_lock, write_bytes

PROVENANCE = SIDECAR_FOLDER  # ".edgecam", beside the photos of a label folder: the sidecars of filed frames
DISCARDED = ".discarded"  # inside the kept folder: discarded pairs, until deleted by hand
UNDO_DEPTH = 100
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


class ReviewError(ActionError):
    """A review action that cannot be done (unknown frame, bad label, nothing to undo, ...)."""


@dataclass
class _Move:
    """One file an action moved or wrote: where it was, where it is now, the bytes it had."""

    source: Path
    target: Path
    original: bytes | None = None  # a sidecar rewritten on the way: its bytes as they were


@dataclass
class _Action:
    kind: str  # "file", "background" or "discard"
    stem: str
    label: str | None
    moves: list[_Move] = field(default_factory=list)

    def describe(self) -> dict:
        return {"action": self.kind, "stem": self.stem, "label": self.label}


class KeptFrames:
    """The kept folder and the dataset it is reviewed into; thread-safe (one action at a time)."""

    def __init__(self, kept: str | os.PathLike, dataset: str | os.PathLike | None,
                 background: str = "background", must_exist: bool = True):
        self.kept = Path(kept).resolve()
        if must_exist and not self.kept.is_dir():
            raise EdgecamError(f"{kept}: kept-frames folder not found (edgecam run --keep DIR writes it)")
        self.dataset = Path(dataset).resolve() if dataset else None
        if self.dataset is not None and self.dataset.exists() and not self.dataset.is_dir():
            raise EdgecamError(f"{dataset}: not a folder (the dataset: one folder per label)")
        problem = label_problem(background)
        if problem:
            raise EdgecamError(f"background folder: {problem}")
        self.background = background
        self.done = {"file": 0, "background": 0, "discard": 0}  # actions that stand (undone ones are taken off)
        self._lock = threading.Lock()
        self._undo: list[_Action] = []
        self._cache: dict[str, tuple[int, dict | None]] = {}  # stem -> (sidecar mtime_ns, its entry)

    # -- reading ------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        """The dataset's label folders (the background folder is not a label)."""
        if self.dataset is None:
            return []
        return [name for name in existing_labels(self.dataset) if name != self.background]

    def entries(self) -> list[dict]:
        """Every complete pair, newest first: what the page shows of each."""
        with self._lock:
            return self._entries()

    def _entries(self) -> list[dict]:
        found = []
        try:
            names = {entry.name for entry in os.scandir(self.kept)}
        except FileNotFoundError:  # `run --keep` has not made it yet
            return []
        except OSError as exc:
            raise EdgecamError(f"{self.kept}: cannot list folder ({exc.strerror or exc})") from None
        for name in names:
            stem = name[:-5]
            if not name.endswith(".json") or not _STEM.fullmatch(stem) or f"{stem}.jpg" not in names:
                continue
            entry = self._entry(stem)
            if entry is not None:
                found.append(entry)
        self._cache = {stem: cached for stem, cached in self._cache.items() if f"{stem}.json" in names}
        return sorted(found, key=lambda e: (e["time"] or 0, e["stem"]), reverse=True)

    def listing(self, reason: str = "", label: str = "") -> dict:
        """``GET /api/kept``: the frames (filtered by reason and the model's label) and what to filter by."""
        every = self.entries()
        shown = [e for e in every if (not reason or e["reason"] == reason) and (not label or e["label"] == label)]
        return {
            "kept_dir": str(self.kept),
            "dataset": str(self.dataset) if self.dataset else None,
            "labels": self.labels(),
            "background": self.background,
            "reasons": _counts(e["reason"] for e in every),
            "guesses": _counts(e["label"] for e in every),
            "total": len(every),
            "frames": shown,
            "undo": self._undo[-1].describe() if self._undo else None,
        }

    def image(self, stem: str) -> Path:
        """The JPEG of a complete pair (ReviewError 404 for anything else)."""
        return self._pair(stem)[0]

    def _entry(self, stem: str) -> dict | None:
        path = self.kept / f"{stem}.json"
        try:
            mtime = path.stat().st_mtime_ns
            cached = self._cache.get(stem)
            if cached and cached[0] == mtime:
                return cached[1]
            sidecar = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None  # gone meanwhile, or not JSON: not a kept frame
        entry = _describe(stem, sidecar) if isinstance(sidecar, dict) else None
        self._cache[stem] = (mtime, entry)
        return entry

    def _pair(self, stem) -> tuple[Path, Path]:
        if not isinstance(stem, str) or not _STEM.fullmatch(stem):
            raise ReviewError(f"no kept frame {str(stem)[:80]!r}", 404)
        jpg, sidecar = self.kept / f"{stem}.jpg", self.kept / f"{stem}.json"
        if not (jpg.is_file() and sidecar.is_file() and self._entry(stem) is not None):  # as listed
            raise ReviewError(f"no kept frame {stem!r} (filed or discarded already?)", 404)
        return jpg, sidecar

    # -- actions ------------------------------------------------------------------------------
    def file(self, stem, label) -> dict:
        """Move the pair into ``DATASET_DIR/<label>/`` (the sidecar into its ``.edgecam/``)."""
        return self._file(stem, label, "file")

    def file_background(self, stem) -> dict:
        return self._file(stem, self.background, "background")

    def discard(self, stem) -> dict:
        """Move the pair into ``DIR/.discarded/`` (undo brings it back)."""
        with self._lock, folder_lock(self.kept):  # `run --keep` cleans up and evicts under it too
            jpg, sidecar = self._pair(stem)
            bin_ = self.kept / DISCARDED
            action = _Action("discard", stem, None)
            try:  # the sidecar first: the pair leaves the list in one step
                action.moves.append(_move(sidecar, bin_ / sidecar.name))
                action.moves.append(_move(jpg, bin_ / jpg.name))
            except OSError as exc:
                _roll_back(action)
                raise ReviewError(f"{stem}: cannot discard ({exc.strerror or exc})", 500) from None
            self._done(action)
            return {"discarded": stem, "undo": action.describe()}

    def undo(self) -> dict:
        """Put the files of the last action back (ReviewError 409 when there is none or they moved)."""
        with self._lock, folder_lock(self.kept):
            if not self._undo:
                raise ReviewError("nothing to undo", 409)
            action = self._undo[-1]
            for move in action.moves:
                if not move.target.is_file():
                    self._undo.pop()  # cannot be undone: forget it, so the one before can be
                    raise ReviewError(f"cannot undo: {move.target} is no longer there", 409)
                if move.source.exists():
                    raise ReviewError(f"cannot undo: {move.source} exists again", 409)
            try:
                _roll_back(action)
            except OSError as exc:
                raise ReviewError(f"cannot undo: {exc.strerror or exc}", 500) from None
            self._undo.pop()
            self.done[action.kind] -= 1
            return {"undone": action.describe(), "undo": self._undo[-1].describe() if self._undo else None}

    def _file(self, stem, label, kind: str) -> dict:
        if self.dataset is None:
            raise ReviewError("no dataset folder to file into (edgecam review DIR --dataset DATASET_DIR)", 409)
        folder = self._label_folder(label)
        with self._lock, folder_lock(self.kept):  # `run --keep` cleans up and evicts under it too
            jpg, sidecar = self._pair(stem)
            target, record = folder / jpg.name, folder / PROVENANCE / sidecar.name
            if target.exists():
                raise ReviewError(f"{target} exists already", 409)
            original = sidecar.read_bytes()
            action = _Action(kind, stem, label)
            try:  # provenance, then the photo, then the kept sidecar goes: never a photo without a record
                write_bytes(record, _filed(original, label))
                action.moves.append(_Move(sidecar, record, original))
                action.moves.append(_move(jpg, target))
                sidecar.unlink()
            except (OSError, EdgecamError) as exc:
                _roll_back(action)
                raise ReviewError(f"{stem}: cannot file under {label!r} ({getattr(exc, 'strerror', None) or exc})",
                                  500) from None
            self._done(action)
            return {"filed": f"{label}/{target.name}", "stem": stem, "label": label, "undo": action.describe()}

    def _label_folder(self, label) -> Path:
        """``DATASET_DIR/<label>``, checked: a plain folder name that resolves inside the dataset."""
        if not isinstance(label, str):
            raise ReviewError("label: expected a folder name")
        problem = label_problem(label)
        if problem:
            raise ReviewError(f"label: {problem}")
        assert self.dataset is not None
        folder = self.dataset / label
        resolved = folder.resolve()
        if resolved == self.dataset or not resolved.is_relative_to(self.dataset):
            raise ReviewError(f"label: {label!r} leads outside {self.dataset}")
        if resolved.exists() and not resolved.is_dir():
            raise ReviewError(f"label: {folder} is not a folder")
        return resolved

    def _done(self, action: _Action) -> None:
        self.done[action.kind] += 1
        self._cache.pop(action.stem, None)
        self._undo.append(action)
        del self._undo[:-UNDO_DEPTH]


def _describe(stem: str, sidecar: dict) -> dict:
    """What the list says about one kept frame (missing or odd keys become None)."""
    top = [t for t in sidecar.get("top") or [] if isinstance(t, dict) and "label" in t]
    label = sidecar.get("label")
    score = sidecar.get("score")  # the decided label's; else its score among the top ones (none for "unknown")
    if not isinstance(score, (int, float)):
        score = next((t.get("score") for t in top if t["label"] == label), None)
    when = sidecar.get("time")
    return {
        "stem": stem,
        "image": f"kept/{stem}.jpg",
        "time": when if isinstance(when, (int, float)) else None,
        "reason": str(sidecar.get("reason") or ""),
        "label": str(label) if label is not None else "",
        "score": score,
        "top": top,
        "unknown_score": sidecar.get("unknown_score"),
        "model": sidecar.get("model"),
        "frame": sidecar.get("frame"),
        "width": sidecar.get("width"),
        "height": sidecar.get("height"),
    }


def _counts(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def _filed(original: bytes, label: str) -> bytes:
    sidecar = json.loads(original)
    sidecar["filed"] = {"label": label, "time": round(time.time(), 3)}
    return (json.dumps(sidecar, indent=1) + "\n").encode()


def _move(source: Path, target: Path) -> _Move:
    """Rename ``source`` to ``target`` (a new folder is made); across filesystems copy, sync, rename, remove."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another filesystem
            raise
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        source.unlink()
    return _Move(source, target)


def _roll_back(action: _Action) -> None:
    """Undo ``action``'s moves, last first: files go back, a rewritten sidecar gets its old bytes."""
    for move in reversed(action.moves):
        if move.original is None:
            _move(move.target, move.source)
        else:
            write_bytes(move.source, move.original)
            move.target.unlink(missing_ok=True)
