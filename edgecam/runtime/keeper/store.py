"""The keep folder: pairs ``<stem>.jpg`` + ``<stem>.json``, whole or not at all, within a quota.

Each file is written to a hidden temp name (``.<stem>.jpg.XXXXXXXX.tmp``), synced and renamed
into place (``edgecam.files.atomic_path``): the JPEG first, then the sidecar. So a pair is
complete once its sidecar exists, and at every moment every sidecar has its JPEG; a run that
is killed leaves at most a temp file and a JPEG without sidecar, which the next start removes.
Evicting removes the sidecar first, then the JPEG, for the same reason.

Only names of this form are touched: other files in the folder (a review tool's) are left alone.
Start-up clean-up and eviction hold the folder's lock (``edgecam.files.folder_lock``), as the
review does while it moves a pair, so a pair half moved by the review is never taken for a leftover.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from edgecam.config.camera import KEEP_REASONS
from edgecam.files import atomic_path, folder_lock, make_folder

STEM = rf"\d{{8}}-\d{{6}}-\d{{3}}_(?:{'|'.join(KEEP_REASONS)})_\d+"
PAIR_FILE = re.compile(rf"^(?P<stem>{STEM})\.(?P<kind>jpg|json)$")
TEMP_FILE = re.compile(rf"^\.(?P<stem>{STEM})\.(?:jpg|json)\.[^/]+\.tmp$")


def stem_of(capture_time: float, reason: str, frame: int) -> str:
    """``20250131-142501-123_unknown_4711``: the capture time in UTC (so names sort in time order all year,
    through daylight-saving changes), to the millisecond, the reason and the frame index."""
    whole = int(capture_time)
    millis = min(999, round((capture_time - whole) * 1000))
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(whole))}-{millis:03d}_{reason}_{frame}"


class Store:
    """The pairs in ``folder`` and their total size; ``save`` adds one, ``evict`` keeps the total within ``quota``."""

    def __init__(self, folder: str | os.PathLike, quota_bytes: int):
        self.folder, self.quota = Path(folder), int(quota_bytes)
        self.pairs: dict[str, int] = {}  # stem -> bytes of its two files
        self.total = 0  # bytes of all pairs
        self.evicted = 0

    def open(self) -> int:
        """Create the folder, remove what an interrupted run left (temp files, JPEGs without sidecar,
        sidecars without JPEG) and read the pairs there; returns how many files were removed."""
        make_folder(self.folder)
        removed = 0
        with folder_lock(self.folder):  # a review moving a pair out is not an interrupted run
            found = self._listing()
            for name in found["temp"]:
                removed += _remove(self.folder / name)
            for stem, kinds in found["pairs"].items():
                if len(kinds) < 2:
                    removed += sum(_remove(self.folder / f"{stem}.{kind}") for kind in kinds)
            self._scan()
        return removed

    def save(self, stem: str, jpeg: bytes, sidecar: bytes) -> None:
        """Write one pair, the JPEG first (OutputError when the disk refuses)."""
        for data, suffix in ((jpeg, "jpg"), (sidecar, "json")):
            with atomic_path(self.folder / f"{stem}.{suffix}") as tmp:
                tmp.write_bytes(data)
        self.total += len(jpeg) + len(sidecar) - self.pairs.get(stem, 0)
        self.pairs[stem] = len(jpeg) + len(sidecar)

    def evict(self) -> int:
        """Remove the oldest pairs until the total is within the quota (the newest too, if it alone is
        larger); returns how many. The folder is read again first: a review tool may have removed some."""
        if self.total <= self.quota:
            return 0
        gone = 0
        with folder_lock(self.folder):  # not a pair a review is moving
            self._scan()
            for stem in sorted(self.pairs):
                if self.total <= self.quota:
                    break
                _remove(self.folder / f"{stem}.json")  # the sidecar first: a pair is never seen half-removed
                _remove(self.folder / f"{stem}.jpg")
                self.total -= self.pairs.pop(stem)
                gone += 1
        self.evicted += gone
        return gone

    def _listing(self) -> dict:
        pairs: dict[str, list[str]] = {}
        temp = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if TEMP_FILE.match(entry.name):
                    temp.append(entry.name)
                elif (match := PAIR_FILE.match(entry.name)) and entry.is_file():
                    pairs.setdefault(match["stem"], []).append(match["kind"])
        return {"pairs": pairs, "temp": temp}

    def _scan(self) -> None:
        """The complete pairs in the folder now, with their sizes."""
        self.pairs = {}
        for stem, kinds in self._listing()["pairs"].items():
            if len(kinds) == 2:
                try:
                    size = sum((self.folder / f"{stem}.{kind}").stat().st_size for kind in kinds)
                except FileNotFoundError:  # removed meanwhile (a review tool)
                    continue
                self.pairs[stem] = size
        self.total = sum(self.pairs.values())


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
