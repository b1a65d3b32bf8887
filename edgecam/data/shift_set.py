"""``edgecam datasets shift SRC DST``: write the camera-shift copy of a folder of label folders.

DST gets ``<label>/<stem>.jpg`` for every readable photo of SRC (see edgecam.data.camera_shift for
what is done to it) and ``camera_shift.json``: the seed, the version and, per file, its source and
effects with their parameters. The set is built in a hidden folder beside DST and renamed into place
when complete, so DST is either a whole set or absent. Same SRC and seed -> byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgecam.console import log, progress_bar
from edgecam.data import camera_shift
from edgecam.data.images import ImageDecodeError, decode_rgb, digest, read_bytes
from edgecam.errors import DataError, OutputError
from edgecam.files import IMAGE_SUFFIXES, make_folder

MANIFEST = "camera_shift.json"


@dataclass(frozen=True)
class ShiftSet:
    """What ``make_shift_set`` wrote: the folder, images per label, and the files left out with why."""

    path: Path
    counts: dict[str, int]
    skipped: list[dict]


def make_shift_set(src: Path, dst: Path, seed: int = 0, force: bool = False, progress: bool = True) -> ShiftSet:
    """Write the camera-shift set of ``src`` to ``dst``; ``force`` replaces a previous shift set there."""
    src, dst = Path(src), Path(dst)
    jobs, skipped = _list_source(src)
    _check_destination(src, dst, force)
    tmp = _fresh_folder(dst)
    try:
        images, bad = _write_images(src, jobs, tmp, seed, progress)
        skipped = sorted(skipped + bad, key=lambda s: s["path"])
        manifest = {"kind": camera_shift.KIND, "version": camera_shift.VERSION, "seed": seed, "source": str(src),
                    "effects": {name: {k: list(v) for k, v in r.items()} for name, r in camera_shift.RANGES.items()},
                    "images": images, "skipped": skipped}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _swap_into_place(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts: dict[str, int] = {}
    for name in images:
        counts[name.split("/")[0]] = counts.get(name.split("/")[0], 0) + 1
    result = ShiftSet(dst, dict(sorted(counts.items())), skipped)
    for line in summary_lines(result):
        log(line)
    return result


def summary_lines(result: ShiftSet) -> list[str]:
    """What was written, and each skipped file with its reason (at most 20 of them)."""
    total = sum(result.counts.values())
    lines = [f"camera shift: {total} images in {len(result.counts)} labels "
             f"({', '.join(f'{k} {v}' for k, v in result.counts.items())}), {len(result.skipped)} skipped"]
    lines += [f"skipped {s['path']}: {s['reason']}" for s in result.skipped[:20]]
    if len(result.skipped) > 20:
        lines.append(f"... {len(result.skipped) - 20} more skipped files in {result.path / MANIFEST}")
    return lines


def is_shift_set(folder: Path) -> bool:
    """True when ``folder`` holds a camera_shift.json that this command wrote."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")).get("kind") == camera_shift.KIND
    except (OSError, ValueError, AttributeError):
        return False


def _list_source(src: Path) -> tuple[list[tuple[Path, str]], list[dict]]:
    """(source file, output name "label/stem.jpg") for every image in SRC's label folders, and what is skipped."""
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    if (src / "train").is_dir():
        raise DataError(f"{src}: holds train/ (a whole dataset); name the folder of label folders, e.g. {src / 'test'}")
    jobs: list[tuple[Path, str]] = []
    skipped: list[dict] = []
    taken: set[str] = set()
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not _hidden(p.relative_to(src))):
        relative = path.relative_to(src)
        if len(relative.parts) < 2:
            skipped.append({"path": str(path), "reason": "not in a label folder"})
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append({"path": str(path), "reason": f"not an image file ({path.suffix or 'no extension'})"})
        else:
            name = relative.with_suffix(".jpg").as_posix()
            if name in taken:  # photo.png beside photo.jpg
                name = relative.with_name(f"{relative.stem}_{relative.suffix[1:].lower()}.jpg").as_posix()
            taken.add(name)
            jobs.append((path, name))
    if not jobs:
        raise DataError(f"{src}: no images in label folders (expected {src}/<label>/<photo>.jpg)")
    return jobs, skipped


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def _check_destination(src: Path, dst: Path, force: bool) -> None:
    """Refuse a DST inside SRC (it would become a label folder), or one holding anything but a shift set."""
    if dst.resolve() == src.resolve() or dst.resolve().is_relative_to(src.resolve()):
        raise OutputError(f"{dst}: is inside the source folder {src}; name a folder outside it")
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst}: exists and is not a folder")
    if not dst.exists() or not any(dst.iterdir()):
        return
    if not is_shift_set(dst):
        raise OutputError(f"{dst}: exists and is not a camera-shift set; name a new folder")
    if not force:
        raise OutputError(f"{dst}: already holds a camera-shift set; pass --force to replace it")


def _fresh_folder(dst: Path) -> Path:
    """The hidden folder beside ``dst`` the set is built in; leftovers of interrupted runs are removed."""
    make_folder(dst.parent)
    for leftover in dst.parent.glob(f".{dst.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    make_folder(tmp)
    return tmp


def _write_images(src: Path, jobs: list[tuple[Path, str]], out: Path, seed: int, progress: bool
                  ) -> tuple[dict, list[dict]]:
    """Shift every photo (two threads: OpenCV releases the GIL); per output name its record, and the unreadable."""
    images: dict[str, dict] = {}
    skipped: list[dict] = []
    bar = progress_bar(len(jobs), "camera shift", progress)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for (path, name), result in zip(jobs, pool.map(lambda job: _shift_file(job[0], seed), jobs)):
                bar.update(1)
                if isinstance(result, str):
                    skipped.append({"path": str(path), "reason": result})
                    continue
                data, record = result
                make_folder((out / name).parent)
                (out / name).write_bytes(data)
                images[name] = {"source": path.relative_to(src).as_posix(), **record}
    finally:
        bar.close()
    return images, skipped


def _shift_file(path: Path, seed: int) -> tuple[bytes, dict] | str:
    """(JPEG bytes, record) for one photo, or the reason it cannot be read."""
    try:
        data = read_bytes(path)
        rgb = decode_rgb(data, str(path))
    except ImageDecodeError as err:
        return str(err)
    sha = digest(data)
    jpeg, effects = camera_shift.shift_image(rgb, seed, sha)
    return jpeg, {"sha256": sha, "effects": effects}


def _swap_into_place(tmp: Path, dst: Path) -> None:
    """Rename the finished set to ``dst``; a previous set (or empty folder) there is removed after."""
    old = None
    try:
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old.{os.getpid()}.tmp")
            os.replace(dst, old)
        os.replace(tmp, dst)
    except OSError as exc:
        if old is not None and not dst.exists():
            os.replace(old, dst)
        raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
