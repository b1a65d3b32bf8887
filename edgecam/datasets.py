"""Public datasets on demand (``edgecam datasets get flowers``): download once, verify, extract, split.

Standard library only, so it works wherever edgecam is installed. The steps, each safe to
interrupt, in the datasets folder (``$EDGECAM_CACHE/datasets``, default
``~/.cache/edgecam/datasets``, or ``--dest``):

  flower_photos.tgz.part   the download in progress; the next run resumes it (HTTP Range)
  flower_photos.tgz        downloaded and verified against the SHA-256 pinned below;
                           deleted once extracted
  .flowers.XXXX.tmp/       the extraction in progress; removed on failure or by the next run
  flowers/                 the result, renamed into place when complete: train/<label>/,
                           test/<label>/, LICENSE.txt and dataset.json (source, rule, counts)

The split: a photo goes to test/ when ``sha256(b"edgecam-test-split:" + <sha256 hex of its
bytes>)``, read as a fraction of 2**256, is below 0.2; every other photo goes to train/. A
photo's side depends on its bytes alone, so the split is the same on every machine, and
byte-identical copies always land on the same side.

Tests and mirrors only: ``EDGECAM_DATASETS_URL`` replaces the address (a folder holding the
same file names), and ``EDGECAM_DATASETS_SHA256`` the pinned checksum, honoured only together
with ``EDGECAM_DATASETS_URL`` (for tests serving a small archive of the same layout).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgecam.console import log, progress, progress_bar
from edgecam.errors import DataError, DownloadError, OutputError
from edgecam.files import cache_dir, make_folder

URL_ENV, SHA256_ENV = "EDGECAM_DATASETS_URL", "EDGECAM_DATASETS_SHA256"
TEST_FRACTION = 0.2
_SALT = b"edgecam-test-split:"
_CHUNK = 1 << 16
_TIMEOUT = 30  # seconds without a byte before a download counts as stalled
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass(frozen=True)
class Source:
    """A public archive of ``top/<label>/<photo>`` folders, pinned by size and SHA-256."""

    name: str  # the folder it becomes: <datasets>/<name>/
    file: str
    urls: tuple[str, ...]  # tried in order
    sha256: str
    size: int
    top: str  # the one folder inside the archive
    about: str


DATASETS = {
    "flowers": Source(
        name="flowers",
        file="flower_photos.tgz",
        urls=("https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
              "http://download.tensorflow.org/example_images/flower_photos.tgz"),
        sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",  # TFDS's pinned checksum
        size=228_813_984,
        top="flower_photos",
        about="TensorFlow's flower photos: 3,670 photos of daisy, dandelion, roses, sunflowers, tulips "
              "(CC BY 2.0, photographers credited in LICENSE.txt)",
    ),
}


def datasets_dir() -> Path:
    return cache_dir() / "datasets"


def goes_to_test(digest: str) -> bool:
    """The split rule: True for the ~20% of photos (by the sha256 hex ``digest`` of their bytes) that are test."""
    value = int(hashlib.sha256(_SALT + digest.encode("ascii")).hexdigest(), 16)
    return value / 2**256 < TEST_FRACTION


def get_dataset(name: str, dest: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The folder of dataset ``name`` (train/ and test/), downloading and splitting it on first use."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} (available: {', '.join(sorted(DATASETS))})")
    source = DATASETS[name]
    root = Path(dest).expanduser() if dest is not None else datasets_dir()
    final = root / source.name
    if _complete(final):
        return final
    make_folder(root)
    with _locked(root / f".{source.name}.lock"):
        if _complete(final):  # another run finished it while this one waited
            return final
        if final.exists():
            raise DataError(f"{final}: exists but holds no train/ folder; move it away or pass --dest DIR")
        for leftover in root.glob(f".{source.name}.*.tmp"):  # an extraction a crash interrupted
            shutil.rmtree(leftover, ignore_errors=True)
        archive = _fetch(source, root, final, progress)
        counts = _unpack(source, archive, final, progress)
        archive.unlink(missing_ok=True)
    log(f"{source.name}: {sum(counts['train'].values()):,} train and {sum(counts['test'].values()):,} test "
        f"photos in {final}")
    return final


def _complete(folder: Path) -> bool:
    return (folder / "train").is_dir()


@contextlib.contextmanager
def _locked(path: Path):
    """One download per folder at a time (no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        handle = open(path, "a")
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write ({exc.strerror or exc})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another edgecam to finish in {path.parent} ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- download ------------------------------------------------------------------------------------
def _addresses(source: Source) -> tuple[tuple[str, ...], str]:
    """The URLs to try and the checksum to expect (a test mirror may bring its own)."""
    mirror = os.environ.get(URL_ENV, "").strip()
    if not mirror:
        return source.urls, source.sha256
    expected = os.environ.get(SHA256_ENV, "").strip().lower() or source.sha256
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DownloadError(f"{SHA256_ENV}: expected 64 hex digits, got {expected!r}")
    return (mirror.rstrip("/") + "/" + source.file,), expected


def _fetch(source: Source, root: Path, final: Path, show: bool) -> Path:
    """The verified archive in ``root``: already there, or downloaded (resuming a .part)."""
    urls, expected = _addresses(source)
    size = source.size if expected == source.sha256 else None
    archive, part = root / source.file, root / f"{source.file}.part"
    if archive.is_file():
        if _sha256(archive) == expected:
            return archive
        archive.unlink()
    if size is not None and part.is_file() and part.stat().st_size > size:
        part.unlink()
    url = _download_any(urls, part, size, final, show)
    digest = _sha256(part)
    if digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: checksum mismatch (SHA-256 {digest}, expected {expected}); "
                            "the download was deleted and nothing was extracted")
    os.replace(part, archive)
    return archive


def _download_any(urls: tuple[str, ...], part: Path, size: int | None, final: Path, show: bool) -> str:
    """Download into ``part`` from the first URL that answers; returns that URL."""
    unreachable: list[str] = []
    for url in urls:
        try:
            _download(url, part, size, show)
            return url
        except _Unreachable as exc:
            unreachable.append(str(exc))
    raise DownloadError(f"{unreachable[0]}; on an offline machine put the flowers folder (train/ and test/, one "
                        f"folder per label) at {final}, or pass data.path=... to edgecam finetune")


class _Unreachable(Exception):
    """No answer from a host (try the next URL)."""


def _download(url: str, part: Path, size: int | None, show: bool) -> None:
    have = part.stat().st_size if part.is_file() else 0
    if have and have == size:
        return  # complete already: the checksum decides
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is whole
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        host = urllib.parse.urlsplit(url).netloc or url
        raise _Unreachable(f"could not reach {host}: {_reason(exc)}") from None
    with response:
        if have and response.status != 206:  # the server ignored the Range header: start again
            have = 0
        elif have and not (response.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server resumed at the wrong place; the partial download was "
                                "deleted, run the command again")
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        _check_space(part.parent, (total or 0) - have + (total or 0), "download and extract")
        _receive(response, url, part, have, total, show)


def _receive(response, url: str, part: Path, have: int, total: int | None, show: bool) -> None:
    """Append the body to ``part``; a connection that ends early keeps what came, for resuming."""
    bar = progress_bar(total or 0, f"download {part.name.removesuffix('.part')}", show, unit="B")
    bar.update(have)
    got = have
    try:
        with open(part, "ab" if have else "wb") as out:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(_ended_early(url, got, total, exc)) from None
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    except OSError as exc:  # writing: a full disk, a quota
        raise OutputError(f"{part}: cannot write ({exc.strerror or exc}); free some space and run the command "
                          "again to resume") from None
    finally:
        bar.close()
    if total is not None and got < total:
        raise DownloadError(_ended_early(url, got, total, None))


def _ended_early(url: str, got: int, total: int | None, exc: BaseException | None) -> str:
    of = f" of {total:,}" if total else ""
    why = f": {_reason(exc)}" if exc is not None else ""
    return f"{url}: download ended early ({got:,}{of} bytes{why}); run the command again to resume"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else _digest(f)


def _digest(f) -> str:
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def _check_space(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if need and free < need * 1.05:
        raise OutputError(f"{folder}: {free / 1e6:,.0f} MB free, but {need / 1e6:,.0f} MB are needed to {what}; "
                          "free some space or pass --dest DIR on another disk")


# -- extract and split ----------------------------------------------------------------------------
def _unpack(source: Source, archive: Path, final: Path, show: bool) -> dict[str, Counter]:
    """Extract ``archive`` into a temp folder, split it there, rename the result to ``final``."""
    _check_space(final.parent, archive.stat().st_size, "extract")
    tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}.", suffix=".tmp", dir=final.parent))
    try:
        raw, out = tmp / "raw", tmp / source.name
        try:
            with tarfile.open(archive) as tar:
                members = _safe_members(tar, source.top, archive)
                for member in progress(members, f"extract {archive.name}", show, unit="file"):
                    _extract(tar, member, raw)
        except (tarfile.TarError, EOFError, zlib.error) as exc:  # a mirror's archive that is not one
            archive.unlink(missing_ok=True)
            raise DataError(f"{archive}: not a readable archive ({exc}); it was deleted, run the command again") from None
        counts = _split(raw / source.top, out)
        if not counts["train"]:
            raise DataError(f"{archive}: no photos under {source.top}/<label>/")
        _write_json(out / "dataset.json", _description(source, counts))
        os.rename(out, final)
        return counts
    except OSError as exc:
        hint = "; free some space and run the command again" if exc.errno in _NO_SPACE else ""
        raise OutputError(f"{final.parent}: cannot extract {archive.name} ({exc.strerror or exc}){hint}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_members(tar: tarfile.TarFile, top: str, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's files and folders under ``top/``; any link, device, absolute or ``..`` path refuses it all."""
    members = []
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
            kind = "a link" if member.issym() or member.islnk() else "not a plain file" if not (
                member.isfile() or member.isdir()) else "a path outside the folder"
            raise DataError(f"{archive}: refusing to extract {member.name!r} ({kind}); nothing was extracted")
        if path.parts and path.parts[0] == top:
            members.append(member)
    return members


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python 3.12, and security releases of 3.10 and 3.11
        tar.extract(member, into, filter="data")
    else:
        tar.extract(member, into, set_attrs=False)


def _split(top: Path, out: Path) -> dict[str, Counter]:
    """Move each ``top/<label>/...`` file to ``out/train/`` or ``out/test/`` by the split rule; top-level files to ``out/``."""
    counts: dict[str, Counter] = {"train": Counter(), "test": Counter()}
    out.mkdir()
    for path in sorted(p for p in top.rglob("*") if p.is_file()):
        relative = path.relative_to(top)
        if len(relative.parts) == 1:  # LICENSE.txt
            target = out / relative
        else:
            side = "test" if goes_to_test(_sha256(path)) else "train"
            counts[side][relative.parts[0]] += 1
            target = out / side / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    return counts


def _description(source: Source, counts: dict[str, Counter]) -> dict:
    return {
        "name": source.name, "about": source.about, "file": source.file, "sha256": _addresses(source)[1],
        "url": _addresses(source)[0][0],
        "split": f"test when sha256(b'{_SALT.decode()}' + sha256 hex of the photo) / 2**256 < {TEST_FRACTION}",
        "photos": {side: dict(sorted(c.items())) for side, c in counts.items()},
    }


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
