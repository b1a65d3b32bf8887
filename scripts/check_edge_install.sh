#!/usr/bin/env bash
# Checks (needs PyPI) that the base install is Pi-safe:
#  1. it resolves to aarch64 CPython 3.11 wheels (Raspberry Pi OS Bookworm, glibc 2.36),
#     with numpy held at apt's 1.24.2, and pulls in no TensorFlow;
#  2. in a venv that already holds numpy 1.24.2, `pip install .` replaces nothing of it.
# Usage: bash scripts/check_edge_install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}

"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" .
wheel=$(ls "$work"/dist/edgecam-*.whl)

platforms=(--platform manylinux2014_aarch64 --platform linux_aarch64)
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
echo "== 1. aarch64 / CPython 3.11 resolution with numpy==1.24.2"
"$python" -m pip download --quiet --dest "$work/aarch64" --only-binary=:all: "${platforms[@]}" \
    --python-version 3.11 --implementation cp --abi cp311 "$wheel" "numpy==1.24.2"
ls "$work/aarch64"
if ls "$work/aarch64" | grep -qi '^tensorflow'; then echo "FAIL: tensorflow in the base install"; exit 1; fi
if ls "$work/aarch64" | grep -v -E 'aarch64|none-any' | grep -q .; then echo "FAIL: non-aarch64 wheels"; exit 1; fi
ls "$work/aarch64" | grep -q '^numpy-1\.24\.2-' || { echo "FAIL: numpy 1.24.2 not kept"; exit 1; }

echo "== 2. install into a venv that holds numpy 1.24.2 (as --system-site-packages sees apt's)"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "numpy==1.24.2"
"$work/venv/bin/pip" install --quiet "$wheel"
"$work/venv/bin/python" - <<'PY'
import importlib.metadata as md, importlib.util, sys
numpy = md.version("numpy")
print("numpy", numpy, "| ml_dtypes", md.version("ml_dtypes"), "| ai-edge-litert", md.version("ai-edge-litert"))
assert numpy == "1.24.2", f"numpy was replaced: {numpy}"
assert importlib.util.find_spec("tensorflow") is None, "tensorflow got installed"
from ai_edge_litert.interpreter import Interpreter  # imports with numpy 1.24
from edgecam.modelfile.metadata import read_metadata  # the edge side imports
print("OK: numpy 1.24.2 kept, no tensorflow, LiteRT imports")
PY
