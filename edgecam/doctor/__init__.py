"""``edgecam doctor``: is this machine ready for edgecam, and if not, what to do about it.

One line per check: its status, what was found, and the fix when something is wrong. Each check
is a small function that returns a ``Check``; nothing here imports TensorFlow (it runs on a Pi),
and everything that could hang or crash (picamera2, vcgencmd, a camera) runs in a subprocess
or with a timeout.

Statuses: ``ok``; ``warn`` (works, but slower or with less: no GUI, no camera, throttling);
``FAIL`` (something edgecam needs, or that was asked for with ``--model``, cannot work: the
exit code is then 1); ``skip`` (does not apply here, e.g. the Raspberry Pi checks on a PC).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

STATUSES = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # one of STATUSES
    detail: str
    fix: str = ""

    def line(self, width: int = 11) -> str:
        label = "FAIL" if self.status == "fail" else self.status
        fix = f"; fix: {self.fix}" if self.fix and self.status in ("warn", "fail") else ""
        return f"{label:<4}  {self.name:<{width}}  {self.detail}{fix}"


def run_checks(model: Path | None = None, folders: dict[str, Path] | None = None) -> list[Check]:
    """Every check, in the order they print; ``model`` adds the model check, ``folders`` names the disk checks."""
    from edgecam.doctor import device, software

    checks = [
        software.python(),
        software.packages(),
        software.tensorflow(),
        software.numpy_abi(),
        software.litert(),
        software.opencv(),
        device.display(),
        device.cameras(),
        *[software.disk(name, path) for name, path in (folders or software.default_folders()).items()],
        *device.raspberry_pi(),
    ]
    if model is not None:
        checks.append(software.model(model))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def format_text(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [c.line(width) for c in checks]
    problems, warnings = (sum(c.status == s for c in checks) for s in ("fail", "warn"))
    summary = ", ".join([_count(problems, "problem") if problems else "no problems",
                         _count(warnings, "warning") if warnings else "no warnings"])
    return "\n".join(lines + [summary])


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def format_json(checks: list[Check]) -> str:
    return json.dumps({"ok": not failed(checks), "checks": [asdict(c) for c in checks]}, indent=2)
