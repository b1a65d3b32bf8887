"""Home Assistant MQTT discovery: retained ``<discovery_prefix>/<component>/<device>/<object>/config``.

One device (``edgecam <device>``) with these entities, all unavailable while the camera is offline:

- ``sensor`` label: the decided label (``<prefix>/state``), the change's details as attributes
- ``sensor`` score: the label's score in %, from ``<prefix>/attributes``
- ``sensor`` fps: the loop's frames per second, from ``<prefix>/heartbeat``
- ``image`` snapshot: the annotated frame of the last change (only with ``mqtt.snapshot``)
- ``number`` threshold: 0..1, sent to ``<prefix>/set/threshold``

Keys are HA's full names (no abbreviations). ``default_entity_id`` suggests the entity id
(``sensor.edgecam_<device>_label``); an empty retained config removes an entity, which is how the
image goes away when snapshots are turned off.
"""

from __future__ import annotations

import json

from edgecam.mqtt.payloads import RunInfo
from edgecam.mqtt.topics import OFFLINE, ONLINE, Topics

MANUFACTURER = "edgecam"


def device_block(info: RunInfo) -> dict:
    return {
        "identifiers": [f"edgecam_{info.device}"],
        "name": f"edgecam {info.device}",
        "model": info.model,
        "manufacturer": MANUFACTURER,
        "sw_version": info.version,
    }


def _entity(component: str, key: str, name: str, topics: Topics, info: RunInfo) -> dict:
    unique = f"edgecam_{info.device}_{key}"
    return {
        "name": name,
        "unique_id": unique,
        "default_entity_id": f"{component}.{unique}",
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device_block(info),
        "origin": {"name": "edgecam", "sw_version": info.version},
    }


def entities(topics: Topics, info: RunInfo, snapshot: bool) -> list[tuple[str, str, dict | None]]:
    """(component, object id, config) of each entity; config None = remove that entity."""
    label = _entity("sensor", "label", "Label", topics, info) | {
        "state_topic": topics.state, "json_attributes_topic": topics.attributes, "icon": "mdi:cctv"}
    score = _entity("sensor", "score", "Score", topics, info) | {
        "state_topic": topics.attributes, "value_template": "{{ (value_json.score * 100) | round(1) }}",
        "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:percent"}
    fps = _entity("sensor", "fps", "FPS", topics, info) | {
        "state_topic": topics.heartbeat, "value_template": "{{ value_json.fps }}",
        "unit_of_measurement": "fps", "state_class": "measurement", "entity_category": "diagnostic",
        "icon": "mdi:speedometer"}
    image = _entity("image", "snapshot", "Snapshot", topics, info) | {
        "image_topic": topics.snapshot, "content_type": "image/jpeg"}
    threshold = _entity("number", "threshold", "Threshold", topics, info) | {
        "command_topic": topics.command("threshold"), "min": 0, "max": 1, "step": 0.01, "mode": "box",
        "entity_category": "config", "icon": "mdi:tune"}
    return [("sensor", "label", label), ("sensor", "score", score), ("sensor", "fps", fps),
            ("image", "snapshot", image if snapshot else None), ("number", "threshold", threshold)]


def messages(topics: Topics, info: RunInfo, snapshot: bool) -> list[tuple[str, str]]:
    """(topic, payload) of every retained discovery message; [] when discovery is off."""
    if not topics.discovery_prefix:
        return []
    return [(topics.discovery(component, info.device, key), json.dumps(config) if config else "")
            for component, key, config in entities(topics, info, snapshot)]
