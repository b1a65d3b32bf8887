#!/usr/bin/env bash
# Checks (needs PyPI) that the edge commands work from a plain install, with no TensorFlow and
# no matplotlib, in a new venv:
#  1. base install only (no OpenCV): `edgecam run` and `edgecam collect` stop with one line
#     saying how to install OpenCV, exit code 1, no traceback;
#  2. base install + the `opencv` extra: `run`, `evaluate`, `collect` and `benchmark` work on
#     the committed tiny model (tests/data/colors.tflite) and solid-colour frames.
# Usage: bash scripts/check_edge_commands.sh      (the last line is PASS or FAIL: ...)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}
fail() { echo "FAIL: $*"; exit 1; }

"$python" -m venv "$work/venv"
edgecam="$work/venv/bin/edgecam"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet "$repo"
"$work/venv/bin/python" - <<'PY' || fail "the base install pulled in a heavy package"
import importlib.util
for name in ("tensorflow", "keras", "matplotlib", "cv2"):
    assert importlib.util.find_spec(name) is None, f"{name} is installed"
PY

echo "== 1. base install, no OpenCV"
model="$repo/tests/data/colors.tflite"
for cmd in "run $model --headless --source x.mp4" "collect $work/ds --labels a,b --serve 0"; do
    set +e; err=$(cd "$work" && $edgecam $cmd 2>&1 >/dev/null); code=$?; set -e
    echo "edgecam ${cmd%% *}: exit $code: $err"
    [ "$code" = 1 ] || fail "edgecam ${cmd%% *} exited $code"
    [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "edgecam ${cmd%% *}: more than one line"
    case "$err" in *"apt install python3-opencv"*"edgecam[opencv]"*) ;; *) fail "no install hint";; esac
done

echo "== 2. base install + opencv extra"
"$work/venv/bin/pip" install --quiet "$repo[opencv]"
"$work/venv/bin/python" - "$work" <<'PY'
import sys
from pathlib import Path
import cv2
import numpy as np
work = Path(sys.argv[1])
(work / "frames").mkdir()
for i, (name, rgb) in enumerate({"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}.items()):
    (work / "data" / name).mkdir(parents=True)
    for n in range(3):
        frame = np.full((48, 64, 3), rgb[::-1], np.uint8)  # OpenCV writes BGR
        frame[0, 0] = n  # no two files alike (evaluate counts a duplicate once)
        assert cv2.imwrite(str(work / "data" / name / f"{n}.png"), frame)
        assert cv2.imwrite(str(work / "frames" / f"{i}{n}.png"), frame)
PY
cd "$work"
$edgecam run "$model" --headless --source frames > run.jsonl 2> run.err || fail "run: $(cat run.err)"
labels=$("$work/venv/bin/python" -c "import json,sys; print(' '.join(json.loads(l)['label'] for l in open('run.jsonl')))")
echo "run: $labels"
[ "$labels" = "red red red green green green blue blue blue" ] || fail "run labels: $labels"
$edgecam evaluate "$model" data --out eval -q > eval.out 2> eval.err || fail "evaluate: $(cat eval.err)"
head -1 eval.out; grep -q "^accuracy: 1.0000 on 9 images" eval.out || fail "evaluate: $(cat eval.out)"
grep -q "matplotlib is not installed" eval.err || fail "evaluate did not say it skipped the plot"
[ -f eval/metrics.json ] && [ ! -f eval/confusion_matrix.png ] || fail "evaluate outputs"
$edgecam collect ds --labels a,b --serve 0 --source frames > collect.out 2> collect.err || fail "collect: $(cat collect.err)"
grep -q "saved 0 photos" collect.err || fail "collect: $(cat collect.err)"
$edgecam benchmark "$model" --runs 5 --threads 1 > bench.out 2> bench.err || fail "benchmark: $(cat bench.err)"
cat bench.out
grep -q "peak memory" bench.out || fail "benchmark table"
"$work/venv/bin/python" -c "import importlib.util as u; assert not any(u.find_spec(m) for m in ('tensorflow', 'matplotlib'))"
echo "PASS: run, evaluate, collect and benchmark without TensorFlow or matplotlib; one-line OpenCV hint without it"
