"""``edgecam doctor``: one line per check, the fix when one fails, ``--json``, exit code 1 on a failure.

Real checks run for real here (Python, packages, LiteRT with XNNPACK, OpenCV, disk); the parts a
workstation lacks are faked where the check looks for them: a ``vcgencmd`` script on PATH, a
``/sys/class/thermal`` and a ``/dev`` in tmp_path, a picamera2 that will not import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BLOCK_TENSORFLOW, FLOWERS3_MODEL, NO_HEAVY_MODULES
from helpers import isolated_env
from edgecam.doctor import Check, device, format_text, software

NAMES = ["python", "packages", "tensorflow", "numpy", "litert", "opencv", "display", "cameras", "disk cache",
         "disk runs"]
UNDER_VOLTAGE_FIX = ("use the official power supply (5 V 3 A for a Pi 4, 5 V 5 A for a Pi 5) and a short, thick "
                     "USB-C cable; under-voltage slows the Pi down (FPS can halve) and can corrupt the SD card")


def doctor(tmp_path: Path, *args: str, block: str | None = None, path_first: Path | None = None):
    """The real CLI in a subprocess (TensorFlow, Keras, matplotlib refused when ``block`` is given)."""
    env = isolated_env(tmp_path, display=False, EDGECAM_CACHE=str(tmp_path / "cache"))
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    command = [sys.executable, "-m", "edgecam", "doctor", *args]
    if block is not None:
        env["EDGECAM_BLOCK"] = block
        command = [sys.executable, "-c", BLOCK_TENSORFLOW, "doctor", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """name -> (status, rest of the line) for every check line (all but the summary)."""
    found = {}
    for line in stdout.splitlines()[:-1]:
        status, rest = line.split(None, 1)
        name = next(n for n in sorted(NAMES + ["raspberry pi", "throttling", "temperature", "model"], key=len,
                                      reverse=True) if rest.startswith(n + " "))
        found[name] = (status, rest[len(name):].strip())
    return found


def fake_vcgencmd(folder: Path, output: str, code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "vcgencmd"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = get_throttled ] || exit 2\necho '{output}'\nexit {code}\n")
    script.chmod(0o755)
    return folder


def test_every_check_prints_one_line_with_its_result_here(tmp_path):
    proc = doctor(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = rows(proc.stdout)
    assert list(found) == NAMES + ["raspberry pi"]
    statuses = {name: status for name, (status, _) in found.items()}
    assert statuses["python"] == statuses["packages"] == statuses["litert"] == statuses["opencv"] == "ok"
    assert found["litert"][1].startswith("ai_edge_litert: a test model ran in ") and found["litert"][1].endswith(
        " ms with XNNPACK")
    assert found["tensorflow"] == ("ok", found["tensorflow"][1]) and "finetune can run here" in found["tensorflow"][1]
    assert found["display"] == ("warn", "none (DISPLAY and WAYLAND_DISPLAY are unset): the window cannot open; fix: "
                                        "use `edgecam run --headless` or `--serve PORT`, or run from the desktop")
    assert found["disk cache"][0] == "ok" and found["disk cache"][1].endswith(f"GB free for {tmp_path / 'cache'}")
    assert found["raspberry pi"][0] == "skip"
    assert proc.stdout.splitlines()[-1].startswith("no problems, ")


def test_doctor_imports_no_tensorflow_and_json_parses(tmp_path):
    """As on a Pi: TensorFlow refused, doctor still answers (TensorFlow 'not installed'), and --json is JSON."""
    proc = doctor(tmp_path, "--json", block="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == NO_HEAVY_MODULES
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == NAMES + ["raspberry pi"]
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in report["checks"])
    tensorflow = report["checks"][2]
    assert tensorflow["status"] == "skip" and "pip install 'edgecam[train]'" in tensorflow["detail"]


def test_without_opencv_it_fails_and_says_how_to_install_it(tmp_path):
    proc = doctor(tmp_path, block="cv2")
    assert proc.returncode == 1
    status, text = rows(proc.stdout)["opencv"]
    assert status == "FAIL" and text.endswith(
        "run, collect, evaluate and benchmark need it; fix: on a Raspberry Pi `sudo apt install python3-opencv` (in a "
        "venv made with --system-site-packages), elsewhere `pip install 'edgecam[opencv]'`")
    assert proc.stdout.splitlines()[-1].startswith("1 problem, ")
    assert json.loads(doctor(tmp_path, "--json", block="cv2").stdout)["ok"] is False


def test_a_fake_vcgencmd_reporting_under_voltage_is_named_with_its_fix(tmp_path):
    bin_dir = fake_vcgencmd(tmp_path / "bin", "throttled=0x50005")
    proc = doctor(tmp_path, path_first=bin_dir)
    assert proc.returncode == 0, proc.stdout  # slower, not broken: a warning
    found = rows(proc.stdout)
    assert "raspberry pi" not in found
    assert found["throttling"] == ("warn", f"now: under-voltage, throttled (throttled=0x50005); fix: {UNDER_VOLTAGE_FIX}")
    assert found["temperature"][0] in ("ok", "warn", "skip")  # this machine's own /sys/class/thermal
    report = json.loads(doctor(tmp_path, "--json", path_first=bin_dir).stdout)
    throttling = next(c for c in report["checks"] if c["name"] == "throttling")
    assert throttling["status"] == "warn" and throttling["fix"] == UNDER_VOLTAGE_FIX


@pytest.mark.parametrize("output, code, expected", [
    ("throttled=0x0", 0, ("ok", "no under-voltage or throttling since boot (throttled=0x0)")),
    ("throttled=0x50000", 0, ("warn", f"since boot: under-voltage, throttled (throttled=0x50000); fix: "
                                      f"{UNDER_VOLTAGE_FIX}")),
    ("throttled=0x80008", 0, ("warn", "now: soft temperature limit (throttled=0x80008); fix: add a heatsink or a "
                                      "fan; the Pi slows down from about 80 °C")),
    ("VCHI initialization failed", 255, ("warn", "vcgencmd get_throttled: VCHI initialization failed; fix: add "
                                                 "yourself to the video group: `sudo usermod -aG video $USER` (then "
                                                 "log in again)")),
])
def test_throttling_states(tmp_path, monkeypatch, output, code, expected):
    bin_dir = fake_vcgencmd(tmp_path / "bin", output, code)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    check = device.throttling()
    status, rest = check.line().split(None, 1)
    assert (status, rest.removeprefix("throttling").strip()) == expected


def test_cpu_temperature_from_sys_class_thermal(tmp_path):
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    assert device.temperature(tmp_path / "thermal") == Check("temperature", "ok", "CPU at 48.3 °C")
    (zone / "temp").write_text("85100\n")
    hot = device.temperature(tmp_path / "thermal")
    assert hot.status == "warn" and hot.detail == "CPU at 85.1 °C: the Pi throttles from about 80 °C"
    assert device.temperature(tmp_path / "none").status == "skip"


def test_numpy_that_hides_apts_numpy_from_picamera2_fails_with_the_fix(tmp_path, monkeypatch):
    """A picamera2 whose compiled part refuses this numpy (as apt's does under pip's numpy 2), apt's numpy 1.24."""
    fake = tmp_path / "site"
    (fake / "picamera2").mkdir(parents=True)
    (fake / "picamera2" / "__init__.py").write_text(
        "raise ImportError('numpy.core.multiarray failed to import')\n")
    apt = tmp_path / "dist-packages"
    (apt / "numpy-1.24.2.egg-info").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.setenv("PYTHONPATH", str(fake))
    check = software.numpy_abi(apt)
    import numpy

    assert check.status == "fail" and check.fix == software.NUMPY_FIX
    assert check.detail.startswith(f"{numpy.__version__} from ") and check.detail.endswith(
        "hides apt's numpy 1.24.2 that picamera2 is built against (ImportError: numpy.core.multiarray failed to import)")
    assert check.line().startswith("FAIL  numpy")


def test_cameras_leave_out_the_pis_codec_nodes_and_say_what_opened(tmp_path):
    dev, sysfs = tmp_path / "dev", tmp_path / "video4linux"
    for node, name in (("video0", "USB camera"), ("video10", "bcm2835-codec-decode")):
        (dev).mkdir(exist_ok=True)
        (dev / node).write_bytes(b"")  # not a device: OpenCV cannot open it
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
    check = device.cameras(dev, sysfs)
    assert check.status == "warn" and check.detail.startswith(
        "none found (OpenCV opens none of video0): edgecam run needs --source FILE/URL")


def test_model_option_reads_labels_and_preprocessing_back_or_fails(tmp_path):
    proc = doctor(tmp_path, "--model", str(FLOWERS3_MODEL))
    assert proc.returncode == 0, proc.stdout
    status, text = rows(proc.stdout)["model"]
    assert status == "ok" and text.startswith(f"{FLOWERS3_MODEL}: 3 labels (daisy, roses, tulips); input 64x64 uint8; "
                                              "preprocessing uint8 RGB pixels, centre-cropped")
    assert "(stated in the model)" in text

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model at all")
    proc = doctor(tmp_path, "--model", str(broken))
    assert proc.returncode == 1
    assert rows(proc.stdout)["model"] == ("FAIL", f"{broken}: not a TFLite model (no TFL3 identifier); fix: re-export "
                                                  "it with `edgecam finetune`, or use a TFLite image classifier "
                                                  "(input [1, H, W, 3], output [1, N])")
    assert rows(doctor(tmp_path, "--model", "missing.tflite").stdout)["model"] == (
        "FAIL", "missing.tflite: model file not found; fix: check the path")


def test_low_disk_is_a_warning_with_the_fix(tmp_path):
    check = software.disk("disk runs", tmp_path / "not" / "yet" / "runs", low=1 << 62)
    assert check.status == "warn" and check.detail.endswith(f"GB free for {tmp_path / 'not' / 'yet' / 'runs'}")
    assert check.fix.startswith("free some space")
    text = format_text([check, Check("python", "ok", "3.11")])
    assert text.splitlines()[-1] == "no problems, 1 warning"
