"""What a person sees in the terminal: log lines and progress bars, both on stderr.

stdout stays for results a script reads (``edgecam run --headless`` JSON lines). Progress bars
use tqdm when it is installed (the train extra) and are silently absent otherwise: a Pi
without tqdm loses the bar, not the command.
"""

from __future__ import annotations

import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img"):
    """A bar with ``update(n)`` and ``close()``; a do-nothing one when disabled, empty or without tqdm.

    ``unit="B"`` counts bytes (shown as kB, MB, ...).
    """
    if not enabled or not total:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    scaled = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5, **scaled)


def progress(items, desc: str, enabled: bool = True, unit: str = "img"):
    """Iterate ``items`` with a bar (see ``progress_bar``)."""
    items = list(items)
    bar = progress_bar(len(items), desc, enabled, unit)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
