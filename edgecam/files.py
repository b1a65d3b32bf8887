"""Files: written complete or not at all (temp file, fsync, rename), read with one-line errors,
run folders that are never reused, and which names count as images."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from edgecam.errors import EdgecamError, OutputError

# Image files edgecam reads (any letter case), in data folders and image-folder sources alike.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or Ctrl-C before the rename leaves the old file (or none) and no partial one.
    ``durable=False`` skips the fsync, for caches whose readers check what they load.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk, a quota, a folder gone read-only: the write, not the caller
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s advisory lock (``flock`` on the folder itself: no file is made) while moving files in it.

    The keep folder has two writers in different processes: ``edgecam run --keep`` (which removes
    half pairs at start-up and evicts old pairs) and a review (which moves pairs out, a file at a
    time). Each takes this lock around what it does, so neither sees the other's half-done move as
    a leftover. Without flock (not POSIX) or without the folder, nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # no folder (yet): nothing in it to move
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def cache_dir() -> Path:
    """Where edgecam keeps what it can rebuild (embeddings, downloaded datasets): $EDGECAM_CACHE or ~/.cache/edgecam."""
    return Path(os.environ.get("EDGECAM_CACHE") or Path.home() / ".cache" / "edgecam")


def make_folder(path: Path) -> None:
    """``mkdir -p``, failing in one line that names the folder."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create folder ({exc.strerror or exc})") from None


def read_user_file(path: Path, what: str, error: type[Exception]) -> bytes:
    """Read a file the user named; every failure becomes one line: ``<path>: <what> not found``."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def next_run_dir(output: Path, name: str) -> Path:
    """Create and return ``output/name/<n>`` with n one above the highest existing run.

    ``mkdir`` without ``exist_ok`` makes the claim atomic, so two runs never share a folder.
    """
    parent = output / name
    make_folder(parent)
    taken = [int(p.name) for p in parent.iterdir() if p.name.isdigit()]
    n = max(taken, default=0) + 1
    while True:
        try:
            (parent / str(n)).mkdir()
            return parent / str(n)
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise OutputError(f"{parent / str(n)}: cannot create folder ({exc.strerror or exc})") from None


def point_link(link: Path, target: str) -> None:
    """Atomically (re)point symlink ``link`` at ``target`` (e.g. runs/flowers/last -> 3)."""
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(target)
        os.replace(tmp, link)
    except OSError:  # filesystems without symlinks: the numbered folder is still there
        tmp.unlink(missing_ok=True)


def new_output_dir(path: Path) -> Path:
    """Create ``path`` for a command's results; an existing folder with files in it is refused.

    Results are never overwritten: a second evaluation goes to a new folder.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise EdgecamError(f"{path}: already exists and is not empty; name a new folder (results are never overwritten)")
    make_folder(path)
    return path
