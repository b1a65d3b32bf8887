"""What ``edgecam fleet`` prints: a table of the devices, or one JSON snapshot per line.

The table is redrawn in place (ANSI) once a second on a terminal; elsewhere a new table is
printed when something in it changed (the ages in LAST SEEN alone do not count). ``--json``
prints a whole snapshot per line, each time the snapshot changed (``last_seen_s`` alone does not
count); with ``--once``, exactly one. Device names, labels and models come from the network:
anything unprintable in them is shown as ``?`` (no terminal escapes from a broker).
"""

from __future__ import annotations

import json
import shutil
import time
from typing import TextIO

from edgecam.fleet.broker import Broker, Subscription
from edgecam.fleet.devices import Fleet

COLUMNS = ("DEVICE", "STATUS", "LABEL", "SCORE", "FPS", "MODEL", "SHA256", "LAST SEEN")
WIDEST = {"DEVICE": 24, "LABEL": 20, "MODEL": 28}  # longer values are cut with "…"
SHA_CHARS = 12
REFRESH = 1.0  # seconds between redraws on a terminal (LAST SEEN counts up)
SETTLE = 0.2  # seconds to let a burst of messages arrive before printing a changed table


def printable(text: str, width: int | None = None) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _number(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(device: dict) -> list[str]:
    sha = device["model_sha256"]
    return [printable(device["device"], WIDEST["DEVICE"]), device["status"] or "?",
            printable(device["label"], WIDEST["LABEL"]) if device["label"] is not None else "-",
            _number(device["score"], 2), _number(device["fps"], 1),
            printable(device["model"], WIDEST["MODEL"]) if device["model"] else "-",
            printable(sha[:SHA_CHARS]) if sha else "-", ago(device["last_seen_s"])]


def table(snapshot: dict, broker: str, problem: str | None = None) -> list[str]:
    """The lines of the table: a title, a header, one row per device, a footer when needed."""
    devices = snapshot["devices"]
    online = sum(d["status"] == "online" for d in devices)
    plural = "" if len(devices) == 1 else "s"
    lines = [f"{broker}, prefix {printable(snapshot['prefix'])}: {len(devices)} device{plural}, {online} online"]
    rows = [list(COLUMNS)] + [row(d) for d in devices]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    if not devices:
        lines.append(f"(no device has published under {printable(snapshot['prefix'])}/ yet)")
    if snapshot["ignored"]:
        n = snapshot["ignored"]
        lines.append(f"{n} malformed message{'' if n == 1 else 's'} ignored")
    if problem:
        lines.append(printable(problem))
    return lines


def _without_ages(snapshot: dict) -> dict:
    return {**snapshot, "devices": [{**d, "last_seen_s": None} for d in snapshot["devices"]]}


class View:
    """Prints snapshots to ``out``: JSON lines, tables on change, or a table redrawn in place."""

    def __init__(self, out: TextIO, broker: str, as_json: bool, live: bool):
        self.out, self.broker, self.as_json = out, broker, as_json
        self.in_place = live and not as_json and _isatty(out)
        self.shown_lines = 0
        self.last: object = None

    def show(self, snapshot: dict, problem: str | None = None, force: bool = False) -> None:
        key = (_without_ages(snapshot), problem)
        if key == self.last and not force and not self.in_place:
            return
        self.last = key
        if self.as_json:
            record = {"time": round(time.time(), 3), "broker": self.broker, **snapshot}
            if problem:
                record["problem"] = problem
            self.out.write(json.dumps(record) + "\n")
        elif self.in_place:
            self._redraw(table(snapshot, self.broker, problem) + ["(Ctrl-C to quit)"])
        else:
            separator = "\n" if self.shown_lines else ""
            lines = table(snapshot, self.broker, problem)
            self.out.write(separator + "\n".join(lines) + "\n")
            self.shown_lines += len(lines)
        self.out.flush()

    def _redraw(self, lines: list[str]) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line would break the count
        lines = [printable(line, width) for line in lines]
        up = f"\x1b[{self.shown_lines}F" if self.shown_lines else ""
        self.out.write(up + "\x1b[J" + "\n".join(lines) + "\n")
        self.shown_lines = len(lines)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def watch(broker: Broker, prefix: str, out: TextIO, as_json: bool = False, once: bool = False,
          wait: float = 0.5) -> None:
    """Show the devices under ``prefix`` until interrupted; with ``once``, print once and return.

    ``once`` prints after the broker has sent its retained messages and ``wait`` more seconds.
    Raises BrokerError (naming the broker, without credentials) when it cannot connect.
    """
    fleet = Fleet(prefix)
    subscription = Subscription(broker, fleet)
    subscription.connect()
    try:
        subscription.wait_retained()
        if once:
            time.sleep(max(0.0, wait))
        view = View(out, broker.name, as_json, live=not once)
        view.show(fleet.snapshot(), force=True)
        while not once:
            if subscription.changed.wait(REFRESH):
                time.sleep(SETTLE)
                subscription.changed.clear()
            view.show(fleet.snapshot(), subscription.problem)
    finally:
        subscription.close()
