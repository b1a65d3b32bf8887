"""Digests of images already verified, so a re-run of a scan skips unchanged files."""

from __future__ import annotations

import json
from pathlib import Path

from edgecam.files import write_text


class ScanIndex:
    """Digests of images already verified, keyed by path, size and modification time.

    Lets a re-run skip reading and decoding unchanged files (as git's index does); a file that
    changes gets a new size or mtime and is checked again.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    @staticmethod
    def _stamp(path: Path) -> list[int]:
        info = path.stat()
        return [info.st_size, info.st_mtime_ns, info.st_ino]

    def lookup(self, path: Path) -> str | None:
        entry = self.entries.get(str(path))
        try:
            return entry[3] if entry and entry[:3] == self._stamp(path) else None
        except OSError:
            return None

    def remember(self, path: Path, sha: str) -> None:
        entry = self._stamp(path) + [sha]
        if self.entries.get(str(path)) != entry:
            self.entries[str(path)] = entry
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(self.entries))
            self.dirty = False
