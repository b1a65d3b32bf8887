"""What a person sees in the terminal: log lines and progress bars, both on stderr (and not the
native libraries' chatter: ``quiet_native_logs``).

stdout stays for results a script reads (``edgecam run --headless`` JSON lines). Progress bars
use tqdm when it is installed (the train extra) and are silently absent otherwise: a Pi
without tqdm loses the bar, not the command.
"""

from __future__ import annotations

import os
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


def quiet_native_logs() -> None:
    """Hide what TensorFlow's and LiteRT's C++ code prints (CUDA probing, delegate notices).

    That code writes straight to file descriptor 2, so fd 2 goes to /dev/null while Python's
    ``sys.stderr`` (progress bars, our messages, errors) moves to a copy of the real stderr.
    ``EDGECAM_DEBUG=1`` keeps everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("EDGECAM_DEBUG") or getattr(quiet_native_logs, "done", False):
        return
    try:
        if sys.stderr.fileno() != 2:  # already redirected (e.g. a test runner capturing output)
            return
    except (AttributeError, OSError, ValueError):
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:  # no usable fd 2 (e.g. under some test runners): leave things as they are
        return
    sys.stderr = open(real, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")
    quiet_native_logs.done = True
