"""``<prefix>/set/...`` messages → calls on the run's control object.

The control object belongs to the camera loop (``edgecam.runtime.control``) and is thread-safe:
these calls come from paho's network thread. A payload that makes no sense is one log line and
is otherwise ignored; so is a retained command (it would fire again on every reconnect).
"""

from __future__ import annotations

import math
from operator import methodcaller
from typing import Callable, Protocol

from edgecam.console import log as _log
from edgecam.mqtt.topics import Topics


class Control(Protocol):
    """What MQTT commands can ask of a running loop."""

    def set_threshold(self, value: float | None) -> None: ...  # None: back to the model's calibrated rule

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def snapshot(self) -> None: ...

    def request_reload(self, reason: str) -> None: ...


class CommandError(ValueError):
    """A command payload that makes no sense (the message says what was expected)."""


def parse_threshold(payload: str) -> float | None:
    """``"0.35"`` → 0.35; ``"model"`` → None (the model's calibrated rule)."""
    text = payload.strip()
    if text.lower() == "model":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"expected a number 0..1 or 'model', got {_shown(payload)}")
    return value


def parse_switch(payload: str) -> bool:
    """``ON`` → True, ``OFF`` → False (any letter case)."""
    text = payload.strip().upper()
    if text not in ("ON", "OFF"):
        raise CommandError(f"expected ON or OFF, got {_shown(payload)}")
    return text == "ON"


def _shown(payload: str) -> str:
    text = payload if len(payload) <= 40 else payload[:40] + "..."
    return repr(text)


class Commands:
    """Hands each command message to ``control`` (None: the run takes no commands, each is logged)."""

    def __init__(self, topics: Topics, control: Control | None, log: Callable[[str], None] = _log):
        self.topics, self.control, self.log = topics, control, log

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> bool:
        """Act on one message; False (and one log line) when it was ignored."""
        name = self.topics.command_name(topic)
        if name is None:
            return False
        if retained:
            self.log(f"mqtt: {topic}: ignored a retained command (publish commands without retain)")
            return False
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.log(f"mqtt: {topic}: ignored (the payload is not UTF-8 text)")
            return False
        try:
            return self._do(name, text, topic)
        except (CommandError, ValueError) as exc:  # ValueError: the control refused the value
            self.log(f"mqtt: {topic}: ignored ({exc})")
            return False

    def _do(self, name: str, text: str, topic: str) -> bool:
        if name == "threshold":
            value = parse_threshold(text)
            call = methodcaller("set_threshold", value)
        elif name == "pause":
            call = methodcaller("pause" if parse_switch(text) else "resume")
        elif name == "snapshot":
            call = methodcaller("snapshot")
        elif name == "reload":
            call = methodcaller("request_reload", f"MQTT {topic}")
        else:
            raise CommandError("unknown command (expected set/threshold, set/pause, set/snapshot or set/reload)")
        if self.control is None:
            self.log(f"mqtt: {topic}: ignored (this run takes no commands)")
            return False
        call(self.control)
        return True
