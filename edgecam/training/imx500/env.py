"""The IMX500 toolchain's own venv: Sony's quantiser (MCT) and converter need TensorFlow 2.15 with
Keras 2, which cannot share a Python with edgecam's Keras 3.

``edgecam imx500 setup`` builds it once, pinned to the versions it was proven with, under the
cache folder (``$EDGECAM_CACHE/imx500-venv``, or ``$EDGECAM_IMX500_VENV``); ``require`` is what
``export.target: imx500`` checks first: Java 17+ on PATH (the converter's back end is Java) and
that venv, each missing one a one-line error saying how to get it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edgecam import files
from edgecam.errors import EdgecamError, ExportError

# `pip install "edge-mdt[tf]==1.3.0"` as resolved (and proven) on Python 3.11, x86-64 Linux.
REQUIREMENT = "edge-mdt[tf]==1.3.0"
PINS = (
    "absl-py==2.5.1", "annotated-types==0.8.0", "astunparse==1.6.3", "certifi==2026.10.19.post1", "cffi==2.1.1",
    "charset-normalizer==3.5.3", "cloudpickle==3.1.3", "contourpy==1.3.3", "conv-allocator==3.18.1",
    "cryptography==50.0.2", "cycler==0.12.1", "edge-mdt==1.3.0", "edge-mdt-cl==1.1.1", "edge-mdt-tpc==1.3.0",
    "flatbuffers==25.12.19", "fonttools==4.68.0", "gast==0.7.0", "google-auth==2.63.0",
    "google-auth-oauthlib==1.5.0", "google-pasta==0.2.0", "grpcio==1.85.3", "h5py==3.16.0", "idna==3.20",
    "ImageIO==2.38.1", "immutabledict==4.3.1", "imx500-converter==3.18.2", "joblib==1.6.0", "keras==2.15.0",
    "kiwisolver==1.5.1", "lazy-loader==0.6", "libclang==18.1.1", "Markdown==3.11.3", "MarkupSafe==3.0.4",
    "matplotlib==3.9.4", "mct-quantizers==1.6.0", "ml-dtypes==0.3.2", "model_compression_toolkit==2.5.1",
    "narwhals==2.29.0", "networkx==3.0", "numpy==1.26.4", "oauthlib==4.0.1", "opt_einsum==3.4.0",
    "ortools==9.9.3963", "packaging==26.4", "pandas==3.0.6", "pillow==13.0.0", "protobuf==4.25.5", "PuLP==3.3.2",
    "pyasn1==0.6.5", "pyasn1_modules==0.4.2", "pycparser==3.12", "pydantic==2.11.10", "pydantic_core==2.33.2",
    "pyparsing==3.3.3", "python-dateutil==4.0.0", "requests==2.34.2", "requests-oauthlib==2.0.0",
    "scikit-image==0.26.0", "scikit-learn==1.9.1", "scipy==1.17.1", "sdspconv==3.18.1", "six==1.17.0",
    "stringcase==1.2.0", "tensorboard==2.15.2", "tensorboard-data-server==0.7.2", "tensorflow==2.15.1",
    "tensorflow-estimator==2.15.0", "tensorflow-io-gcs-filesystem==0.37.1", "termcolor==3.3.0",
    "threadpoolctl==3.8.0", "tifffile==2026.3.3", "tqdm==4.70.1", "typing-inspection==0.4.5",
    "typing_extensions==4.16.0", "tzdata==2026.6", "uni_model==10.1.2", "uni_tensorflow==3.18.2", "urllib3==2.8.0",
    "Werkzeug==3.1.9", "wrapt==1.14.2",
)
PYTHONS = ((3, 9), (3, 10), (3, 11))  # what TensorFlow 2.15 has wheels for
MIN_JAVA = 17
MARKER = "edgecam-imx500.json"  # written last by setup: a venv without it is half-built
JAVA_FIX = "Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless"
SETUP = "run `edgecam imx500 setup` once (a separate venv with TensorFlow 2.15 and Sony's converter, ~2.3 GB)"


def venv_dir() -> Path:
    return Path(os.environ.get("EDGECAM_IMX500_VENV") or files.cache_dir() / "imx500-venv")


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def java_version() -> int | None:
    """The major version of the ``java`` on PATH (None: no java)."""
    java = shutil.which("java")
    if not java:
        return None
    try:
        text = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def java_problem() -> str | None:
    version = java_version()
    if version is None:
        return f"Sony's IMX500 converter needs Java {MIN_JAVA} or newer on PATH, and there is none ({JAVA_FIX})"
    if version < MIN_JAVA:
        return f"Sony's IMX500 converter needs Java {MIN_JAVA} or newer; the java on PATH is {version} ({JAVA_FIX})"
    return None


def venv_problem(venv: Path | None = None) -> str | None:
    venv = venv or venv_dir()
    marker = venv / MARKER
    if not venv_python(venv).exists() or not marker.is_file():
        return f"no IMX500 toolchain in {venv}: {SETUP}"
    try:
        built = json.loads(marker.read_text()).get("pins")
    except (OSError, ValueError, AttributeError):
        built = None
    if built != list(PINS):
        return f"the IMX500 toolchain in {venv} was built for other versions: run `edgecam imx500 setup` again"
    return None


def require() -> Path:
    """The IMX500 venv's Python, once Java and the venv are there (ExportError naming the fix if not)."""
    problem = java_problem() or venv_problem()
    if problem:
        raise ExportError(f"export.target=imx500: {problem}")
    return venv_python()


def base_python() -> str:
    """The Python to build the venv from: $EDGECAM_IMX500_PYTHON, else the one running edgecam."""
    python = os.environ.get("EDGECAM_IMX500_PYTHON") or sys.executable
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=60).stdout.split()
        version = (int(out[0]), int(out[1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        raise EdgecamError(f"EDGECAM_IMX500_PYTHON={python}: not a working Python") from None
    if version not in PYTHONS:
        raise EdgecamError(f"{python} is Python {version[0]}.{version[1]}; TensorFlow 2.15 needs 3.9 to 3.11: "
                           "set EDGECAM_IMX500_PYTHON to such a Python (e.g. /usr/bin/python3.11)")
    return python


def setup(force: bool = False, log=print) -> Path:
    """Build (or rebuild) the pinned venv; returns its folder. The marker that makes it count as
    ready is written last, so an interrupted setup leaves a venv that ``require`` refuses."""
    venv = venv_dir()
    if not force and venv_problem(venv) is None:
        log(f"IMX500 toolchain ready in {venv}")
        return venv
    python = base_python()
    shutil.rmtree(venv, ignore_errors=True)
    files.make_folder(venv.parent)
    log(f"building the IMX500 toolchain in {venv} ({REQUIREMENT}, TensorFlow 2.15; downloads ~2.3 GB)")
    _run([python, "-m", "venv", str(venv)], "creating the venv")
    pip = [str(venv_python(venv)), "-m", "pip", "--disable-pip-version-check"]
    _run(pip + ["install", "--upgrade", "pip"], "updating pip")
    _run(pip + ["install", REQUIREMENT, *PINS], "installing the pinned packages")
    _run([str(venv_python(venv)), "-c", "import model_compression_toolkit, imx500_converter"], "checking the venv")
    files.write_text(venv / MARKER, json.dumps({"requirement": REQUIREMENT, "pins": list(PINS)}, indent=1) + "\n")
    problem = java_problem()
    log(f"IMX500 toolchain ready in {venv}" + (f"; but {problem}" if problem else ""))
    return venv


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr)
    except OSError as exc:
        raise EdgecamError(f"imx500 setup: {what} failed: {exc}") from None
    if done.returncode:
        raise EdgecamError(f"imx500 setup: {what} failed (exit code {done.returncode}; pip's output is above)")
