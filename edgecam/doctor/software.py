"""Checks of the software: Python, packages, numpy against apt's picamera2, LiteRT, OpenCV, disk, a model."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgecam.doctor import Check
from edgecam.files import cache_dir

# The base install's requirements (pyproject.toml), by distribution name.
REQUIRED = ("numpy", "ai-edge-litert", "ml_dtypes", "flatbuffers", "pillow", "click", "pyyaml", "paho-mqtt")
OPENCV_FIX = ("on a Raspberry Pi `sudo apt install python3-opencv` (in a venv made with --system-site-packages), "
              "elsewhere `pip install 'edgecam[opencv]'`")
APT_PACKAGES = Path("/usr/lib/python3/dist-packages")  # where Debian's python3-* packages live
NUMPY_FIX = ("`pip uninstall numpy` in this venv, so apt's python3-numpy (which picamera2 is built against) is the "
             "one imported; edgecam's base install keeps it (see the README's Raspberry Pi section)")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def findable(module: str) -> bool:
    """``module`` is installed (found, not imported); an import hook that refuses it counts as absent."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):
        return Check("python", "fail", f"{version} ({sys.executable})", "edgecam needs Python 3.10 or newer")
    return Check("python", "ok", f"{version} ({sys.executable})")


def packages() -> Check:
    found = {name: _version(name) for name in ("edgecam", *REQUIRED)}
    missing = [name for name, version in found.items() if version is None and name != "ai-edge-litert"]
    if found["ai-edge-litert"] is None and _version("tflite-runtime"):
        found["ai-edge-litert"] = f"absent, tflite-runtime {_version('tflite-runtime')} instead"
    elif found["ai-edge-litert"] is None:
        missing.append("ai-edge-litert")
    text = ", ".join(f"{name} {version}" for name, version in found.items() if version)
    if missing:
        return Check("packages", "fail", f"missing {', '.join(missing)}; found {text}",
                     "reinstall edgecam: `pip install edgecam` (from a clone: `pip install .`)")
    return Check("packages", "ok", text)


def tensorflow() -> Check:
    """Whether ``edgecam finetune`` can work here (found, never imported: that takes seconds and a lot of memory)."""
    if not findable("tensorflow"):
        return Check("tensorflow", "skip", "not installed: fine for run, evaluate, collect and benchmark; "
                     "finetune needs `pip install 'edgecam[train]'` (on a workstation, not a Pi)")
    return Check("tensorflow", "ok", f"{_version('tensorflow') or 'installed'}: edgecam finetune can run here")


def numpy_abi(apt_packages: Path = APT_PACKAGES) -> Check:
    """numpy imports, and, where apt's picamera2 is installed, is the numpy it was built against."""
    try:
        import numpy
    except ImportError as exc:
        return Check("numpy", "fail", f"cannot import numpy ({exc})", "`pip install edgecam` (or apt's python3-numpy)")
    where = Path(numpy.__file__).parent.parent
    if not findable("picamera2"):
        return Check("numpy", "ok", f"{numpy.__version__} ({where}); no picamera2 here to match")
    apt = _apt_version("numpy", apt_packages)
    shadowed = apt is not None and where != apt_packages and apt.split(".")[0] != numpy.__version__.split(".")[0]
    error = _import_error("picamera2")
    if shadowed or error:
        why = error or "picamera2's compiled parts need that numpy"
        return Check("numpy", "fail", f"{numpy.__version__} from {where} hides apt's numpy {apt or '?'} "
                     f"that picamera2 is built against ({why})", NUMPY_FIX)
    return Check("numpy", "ok", f"{numpy.__version__} ({where}); picamera2 imports with it")


def _apt_version(name: str, apt_packages: Path) -> str | None:
    for info in sorted(apt_packages.glob(f"{name}-*.*-info")):  # numpy-1.24.2.egg-info, numpy-1.24.2.dist-info
        match = re.match(rf"{name}-([0-9][^-]*?)(?:\.egg|\.dist)-info$", info.name)
        if match:
            return match.group(1)
    return None


def _import_error(module: str, timeout: float = 60) -> str | None:
    """None if ``module`` imports in a fresh Python, else the last line of its error."""
    try:
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"import {module} hung for {timeout:.0f} s"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"import {module} exited with {proc.returncode}"


def litert() -> Check:
    """The interpreter imports and runs a tiny model; XNNPACK (the fast CPU path) takes it."""
    from edgecam.errors import EdgecamError
    from edgecam.runtime.litert import interpreter_class, make_interpreter

    try:
        cls = interpreter_class()
    except EdgecamError as exc:
        return Check("litert", "fail", str(exc), "`pip install ai-edge-litert`")
    name = cls.__module__.split(".")[0]
    try:
        from edgecam.modelfile.probe import EXPECTED, INPUT, tiny_model

        import numpy as np

        interpreter = make_interpreter(1, model_content=tiny_model())
        start = time.perf_counter()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.array([INPUT], np.float32))
        interpreter.invoke()
        ms = (time.perf_counter() - start) * 1000
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)
    except ImportError as exc:  # tflite_runtime alone has no schema to build the probe with
        return Check("litert", "ok", f"{name} imports; inference not checked ({exc})")
    except Exception as exc:  # noqa: BLE001 - any failure of the native runtime is the finding
        return Check("litert", "fail", f"{name} cannot run a model ({type(exc).__name__}: {exc})",
                     "`pip install --force-reinstall ai-edge-litert`")
    if [round(float(v), 3) for v in output] != list(EXPECTED):
        return Check("litert", "fail", f"{name} computed {output.tolist()} instead of {list(EXPECTED)}",
                     "`pip install --force-reinstall ai-edge-litert`")
    ops = [op.get("op_name") for op in getattr(interpreter, "_get_ops_details", lambda: [])()]
    if "DELEGATE" in ops:
        return Check("litert", "ok", f"{name}: a test model ran in {ms:.2f} ms with XNNPACK")
    return Check("litert", "warn", f"{name}: a test model ran, but without XNNPACK (several times slower on a CPU)",
                 "`pip install --upgrade ai-edge-litert` (its wheels include XNNPACK)")


def opencv() -> Check:
    try:
        import cv2
    except ImportError as exc:
        fix = OPENCV_FIX
        if "libGL" in str(exc) or "libgthread" in str(exc):
            fix = "`sudo apt install libgl1 libglib2.0-0` (OpenCV's wheel needs them)"
        return Check("opencv", "fail", f"not installed or not importable ({exc}): run, collect, evaluate and "
                     "benchmark need it", fix)
    gui = _gui_backend(cv2.getBuildInformation())
    if gui in ("", "NONE"):
        return Check("opencv", "warn", f"{cv2.__version__} without GUI support (a headless build): no window, but "
                     "--headless and --serve work", "`pip install opencv-python` in place of opencv-python-headless "
                     "(Raspberry Pi: apt's python3-opencv has one)")
    return Check("opencv", "ok", f"{cv2.__version__} with GUI support ({gui})")


def _gui_backend(build_information: str) -> str:
    match = re.search(r"^\s*GUI:\s*(\S+)", build_information, re.MULTILINE)
    return match.group(1) if match else ""


def default_folders() -> dict[str, Path]:
    return {"disk cache": cache_dir(), "disk runs": Path("runs")}


def disk(name: str, folder: Path, low: int = 1_000_000_000) -> Check:
    """Free space where ``folder`` is (or would be created)."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        return Check(name, "warn", f"{folder}: cannot tell free space ({exc.strerror or exc})")
    text = f"{free / 1e9:,.1f} GB free for {folder}"
    if free < low:
        return Check(name, "warn", text, "free some space: a flowers download and its embeddings need about 1 GB")
    return Check(name, "ok", text)


def model(path: Path) -> Check:
    """The model loads, and its labels and preprocessing read back; one inference on a grey frame."""
    from edgecam.errors import EdgecamError

    try:
        from edgecam.runtime.classifier import Classifier

        import numpy as np

        classifier = Classifier(path)
        height, width = classifier.input_size
        start = time.perf_counter()
        classifier.classify(np.full((height, width, 3), 128, np.uint8))
        ms = (time.perf_counter() - start) * 1000
    except EdgecamError as exc:
        fix = "check the path" if str(exc).endswith("not found") else (
            "re-export it with `edgecam finetune`, or use a TFLite image classifier (input [1, H, W, 3], output [1, N])")
        return Check("model", "fail", str(exc), fix)
    labels = ", ".join(classifier.labels[:5]) + (", ..." if len(classifier.labels) > 5 else "")
    stated = "stated in the model" if classifier.info and classifier.info.extra.get("preprocessing") else "default"
    return Check("model", "ok", f"{path}: {len(classifier.labels)} labels ({labels}); input {width}x{height} "
                 f"{classifier.input_dtype.name}; preprocessing {classifier.preprocessing.summary()} ({stated}); "
                 f"{ms:.1f} ms per frame")
