"""The topics of one camera: a fixed contract (``edgecam fleet`` and Home Assistant build on it).

=========================  =========================================================  ========
topic                      payload                                                    retained
=========================  =========================================================  ========
<prefix>/availability      ``online`` / ``offline`` (the last will, and on a clean exit)  yes
<prefix>/state             the decided label (``unknown`` included), on every change     yes
<prefix>/attributes        JSON: the change's result, model and device                   yes
<prefix>/heartbeat         JSON every ``heartbeat`` seconds: counters and FPS            yes
<prefix>/snapshot          the annotated frame as JPEG, on each change (``snapshot``)    yes
<prefix>/set/threshold     command: a number 0..1, or ``model`` (the calibrated rule)    no
<prefix>/set/pause         command: ``ON`` / ``OFF``                                     no
<prefix>/set/snapshot      command: any payload (publish a snapshot now)                 no
<prefix>/set/reload        command: any payload (reload the model)                       no
=========================  =========================================================  ========
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE, OFFLINE = "online", "offline"
COMMANDS = ("threshold", "pause", "snapshot", "reload")


@dataclass(frozen=True)
class Topics:
    prefix: str
    discovery_prefix: str = "homeassistant"  # "" = no Home Assistant discovery

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def attributes(self) -> str:
        return f"{self.prefix}/attributes"

    @property
    def heartbeat(self) -> str:
        return f"{self.prefix}/heartbeat"

    @property
    def snapshot(self) -> str:
        return f"{self.prefix}/snapshot"

    def command(self, name: str) -> str:
        """``<prefix>/set/<name>`` for one of ``COMMANDS``."""
        return f"{self.prefix}/set/{name}"

    @property
    def commands(self) -> str:
        """The subscription that covers every command."""
        return f"{self.prefix}/set/+"

    def command_name(self, topic: str) -> str | None:
        """``<prefix>/set/pause`` → ``pause``; None for any other topic."""
        head = f"{self.prefix}/set/"
        return topic[len(head):] if topic.startswith(head) and "/" not in topic[len(head):] else None

    @property
    def ha_status(self) -> str | None:
        """Where Home Assistant says ``online`` when it (re)starts: time to announce again."""
        return f"{self.discovery_prefix}/status" if self.discovery_prefix else None

    def discovery(self, component: str, device: str, name: str) -> str:
        return f"{self.discovery_prefix}/{component}/{device}/{name}/config"
