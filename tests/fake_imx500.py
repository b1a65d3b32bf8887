"""A stand-in for picamera2's IMX500 support, for machines without an AI Camera.

It has the part of picamera2's interface that edgecam.runtime.imx500 uses: ``IMX500(network_file)``
(``camera_num``, ``show_network_fw_progress_bar``, ``set_auto_aspect_ratio``, ``get_outputs``) and
``Picamera2(camera_num)`` (``create_preview_configuration``, ``start``, ``capture_request`` whose
request has ``make_array("main")``, ``get_metadata()`` and ``release()``, ``stop``, ``close``).
Each request is one recorded frame: the image as picamera2's "RGB888" gives it (B, G, R in memory)
and, in its metadata, the recorded output tensors the way the sensor delivers them: one flat list
of floats under ``CnnOutputTensor`` with the tensors' shapes beside it (a frame recorded with no
outputs has none, as while the network is still loading). ``install`` puts the fake in
``sys.modules`` as ``picamera2`` and ``picamera2.devices``; its ``Device`` records what was asked.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Device:
    frames: list[np.ndarray]  # RGB frames, in order
    outputs: list[list[np.ndarray] | None]  # per frame: its output tensors, or None (no outputs yet)
    network: str | None = None  # the network file loaded
    calls: list[str] = field(default_factory=list)
    released: int = 0
    served: int = 0


class FakeRequest:
    def __init__(self, device: Device, index: int):
        self.device, self.index = device, index

    def make_array(self, stream: str) -> np.ndarray:
        assert stream == "main"
        return np.ascontiguousarray(self.device.frames[self.index][:, :, ::-1])  # "RGB888": B, G, R

    def get_metadata(self) -> dict:
        outputs = self.device.outputs[self.index]
        if outputs is None:
            return {"SensorTimestamp": self.index}
        flat = np.concatenate([np.asarray(o, np.float32).reshape(-1, order="F") for o in outputs])
        return {"CnnOutputTensor": flat.tolist(), "CnnOutputTensorInfo": [list(np.shape(o)) for o in outputs]}

    def release(self) -> None:
        self.device.released += 1


def make_modules(device: Device) -> dict[str, types.ModuleType]:
    class IMX500:
        def __init__(self, network_file: str, camera_id: str = ""):
            if not Path(network_file).is_file():
                raise RuntimeError(f"Firmware file {network_file} does not exist.")
            device.network, self.camera_num, self.network_intrinsics = network_file, 0, None
            device.calls.append("IMX500")

        def show_network_fw_progress_bar(self) -> None:
            device.calls.append("progress_bar")

        def set_auto_aspect_ratio(self) -> None:
            device.calls.append("set_auto_aspect_ratio")

        def get_output_shapes(self, metadata: dict) -> list[list[int]]:
            return list(metadata.get("CnnOutputTensorInfo") or [])

        def get_outputs(self, metadata: dict, add_batch: bool = False):
            flat = metadata.get("CnnOutputTensor")
            if not flat:
                return None
            values, outputs, offset = np.fromiter(flat, dtype=np.float32), [], 0
            for shape in self.get_output_shapes(metadata):
                size = int(np.prod(shape))
                tensor = values[offset:offset + size].reshape(shape, order="F")
                outputs.append(tensor[None] if add_batch else tensor)
                offset += size
            return outputs

    class Picamera2:
        def __init__(self, camera_num: int = 0):
            device.calls.append("Picamera2")

        def create_preview_configuration(self, main=None, controls=None, buffer_count=4):
            return {"main": dict(main or {}), "controls": dict(controls or {}), "buffer_count": buffer_count}

        def start(self, config=None, show_preview=False) -> None:
            device.calls.append("start")

        def capture_request(self) -> FakeRequest:
            if device.served >= len(device.frames):
                raise RuntimeError("no more recorded frames")
            device.served += 1
            return FakeRequest(device, device.served - 1)

        def stop(self) -> None:
            device.calls.append("stop")

        def close(self) -> None:
            device.calls.append("close")

    package = types.ModuleType("picamera2")
    package.Picamera2 = Picamera2
    devices = types.ModuleType("picamera2.devices")
    devices.IMX500 = IMX500
    package.devices = devices
    return {"picamera2": package, "picamera2.devices": devices}


def install(monkeypatch, frames: list[np.ndarray], outputs: list[list[np.ndarray] | None]) -> Device:
    """The fake AI Camera as picamera2 for this test; returns its recording device."""
    device = Device(list(frames), list(outputs))
    for name, module in make_modules(device).items():
        monkeypatch.setitem(sys.modules, name, module)
    return device
