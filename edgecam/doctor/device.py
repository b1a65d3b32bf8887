"""Checks of the machine: a display, cameras, and on a Raspberry Pi its power and temperature."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgecam.doctor import Check

THERMAL = Path("/sys/class/thermal")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
VIDEO4LINUX = Path("/sys/class/video4linux")
# /dev/video* nodes of the Pi's own hardware blocks: codecs and ISPs, never a camera to open.
NOT_CAMERAS = ("codec", "isp", "hevc", "pispbe", "rpivid", "bcm2835-", "rp1-cfe", "unicam")
# Bits of `vcgencmd get_throttled`: (bit now, bit since boot, what, fix).
THROTTLE_BITS = (
    (0, 16, "under-voltage", "use the official power supply (5 V 3 A for a Pi 4, 5 V 5 A for a Pi 5) and a short, "
                             "thick USB-C cable; under-voltage slows the Pi down (FPS can halve) and can corrupt "
                             "the SD card"),
    (1, 17, "ARM frequency capped", "the same fix as under-voltage and heat: a proper power supply and cooling"),
    (2, 18, "throttled", "improve cooling (heatsink or fan, airflow) and power"),
    (3, 19, "soft temperature limit", "add a heatsink or a fan; the Pi slows down from about 80 °C"),
)
HOT = 80.0  # °C: the Pi 4 and 5 start to throttle here


def display() -> Check:
    if sys.platform in ("darwin", "win32"):
        return Check("display", "ok", f"{sys.platform}: windows open on the desktop")
    names = [f"{k}={os.environ[k]}" for k in ("WAYLAND_DISPLAY", "DISPLAY") if os.environ.get(k)]
    if not names:
        return Check("display", "warn", "none (DISPLAY and WAYLAND_DISPLAY are unset): the window cannot open",
                     "use `edgecam run --headless` or `--serve PORT`, or run from the desktop")
    return Check("display", "ok", ", ".join(names))


def cameras(dev: Path = Path("/dev"), sysfs: Path = VIDEO4LINUX) -> Check:
    """Cameras picamera2 lists, and /dev/video* nodes OpenCV can open (the Pi's codec nodes left out)."""
    found = _picamera2_cameras()
    nodes = [p for p in sorted(dev.glob("video*"), key=_node_number) if not _is_hardware_block(p, sysfs)]
    openable, closed = [], []
    for node in nodes[:10]:
        (openable if _opens(node) else closed).append(node.name)
    parts = []
    if found is not None:
        parts.append(f"picamera2: {', '.join(found) if found else 'none'}")
    if nodes:
        parts.append(f"OpenCV opens {', '.join(openable) or 'none'} of {', '.join(openable + closed)}")
    if found or openable:
        return Check("cameras", "ok", "; ".join(parts))
    where = "; ".join(parts) or "no picamera2 and no /dev/video*"
    return Check("cameras", "warn", f"none found ({where}): edgecam run needs --source FILE/URL",
                 "connect a camera (Pi camera: check the ribbon cable and `rpicam-hello --list-cameras`; USB: "
                 "`ls /dev/video*`, and add yourself to the video group: `sudo usermod -aG video $USER`)")


def _node_number(path: Path) -> int:
    digits = path.name.removeprefix("video")
    return int(digits) if digits.isdigit() else 1 << 30


def _is_hardware_block(node: Path, sysfs: Path) -> bool:
    try:
        name = (sysfs / node.name / "name").read_text().strip().lower()
    except OSError:
        return False
    return any(word in name for word in NOT_CAMERAS)


def _picamera2_cameras(timeout: float = 20) -> list[str] | None:
    """Models of the cameras picamera2 sees, or None without picamera2 (asked in a subprocess: libcamera may hang)."""
    from edgecam.doctor.software import findable

    if not findable("picamera2"):
        return None
    code = "import json; from picamera2 import Picamera2; print(json.dumps(Picamera2.global_camera_info()))"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
        info = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return []
    return [str(camera.get("Model", "camera")) for camera in info]


def _opens(node: Path) -> bool:
    try:
        import cv2
    except ImportError:
        return False
    capture = cv2.VideoCapture(str(node))
    try:
        return bool(capture.isOpened())
    finally:
        capture.release()


# -- Raspberry Pi ---------------------------------------------------------------------------------
def is_raspberry_pi() -> bool:
    try:
        model = DEVICE_TREE_MODEL.read_bytes().decode(errors="replace")
    except OSError:
        model = ""
    return "Raspberry Pi" in model or shutil.which("vcgencmd") is not None


def raspberry_pi(thermal: Path = THERMAL) -> list[Check]:
    if not is_raspberry_pi():
        return [Check("raspberry pi", "skip", "not a Raspberry Pi (no vcgencmd): power and temperature not checked")]
    return [throttling(), temperature(thermal)]


def throttling() -> Check:
    """``vcgencmd get_throttled``: under-voltage and throttling, now and since boot (they halve FPS silently)."""
    try:
        proc = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("throttling", "warn", f"vcgencmd get_throttled failed ({exc})", "`sudo apt install libraspberrypi-bin`")
    text = proc.stdout.strip()
    if proc.returncode != 0 or not text.startswith("throttled="):
        why = (proc.stderr or proc.stdout).strip().splitlines()[:1] or [f"exit code {proc.returncode}"]
        return Check("throttling", "warn", f"vcgencmd get_throttled: {why[0]}",
                     "add yourself to the video group: `sudo usermod -aG video $USER` (then log in again)")
    try:
        bits = int(text.split("=", 1)[1], 16)
    except ValueError:
        return Check("throttling", "warn", f"vcgencmd get_throttled said {text!r}")
    now = [what for bit, _, what, _ in THROTTLE_BITS if bits >> bit & 1]
    past = [what for _, bit, what, _ in THROTTLE_BITS if bits >> bit & 1 and what not in now]
    if not now and not past:
        return Check("throttling", "ok", f"no under-voltage or throttling since boot ({text})")
    fixes = [fix for _, _, what, fix in THROTTLE_BITS if what in now or what in past]
    detail = "; ".join(filter(None, [f"now: {', '.join(now)}" if now else "",
                                     f"since boot: {', '.join(past)}" if past else ""]))
    return Check("throttling", "warn", f"{detail} ({text})", fixes[0])


def temperature(thermal: Path = THERMAL) -> Check:
    """The CPU temperature (the ``cpu-thermal`` zone, else the first)."""
    zones = sorted(thermal.glob("thermal_zone*"))
    chosen = next((z for z in zones if _read(z / "type") == "cpu-thermal"), zones[0] if zones else None)
    raw = _read(chosen / "temp") if chosen else ""
    if not raw.lstrip("-").isdigit():
        return Check("temperature", "skip", f"no reading in {thermal}")
    celsius = int(raw) / 1000
    if celsius >= HOT:
        return Check("temperature", "warn", f"CPU at {celsius:.1f} °C: the Pi throttles from about {HOT:.0f} °C",
                     "add a heatsink or a fan, and give the case some airflow")
    return Check("temperature", "ok", f"CPU at {celsius:.1f} °C")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
