"""How fast is ``edgecam run`` next to the interpreter alone; how fast does it start; how much memory?

Everything runs in child processes of this script, in one invocation, so the figures that
matter are ratios between measurements taken side by side on the same (possibly busy)
machine. Measured, for one model (default: the flowers model, MobileNetV2 1.0/224):

1. decode only   frames/s of reading the benchmark video with cv2.VideoCapture and converting
                 BGR -> RGB (what the capture thread does): it must be far above the model's
                 speed, or the loop would be measuring the video, not the model.
2. interpreter   frames/s of ``Classifier.infer`` on one prepared tensor (a frame of the video),
                 in a loop, after a warm-up: the best the loop could do.
3. loop          ``edgecam run MODEL --source VIDEO --headless``: the summary's mean FPS (first
                 to last result, start-up excluded) over the whole video; the JSON lines give
                 the mean inference time inside the loop. Goal: >= 0.9 x interpreter.
   Steps 1-3 are repeated in ROUNDS rounds (order alternating) and medians are reported, with
   the CPU time per frame of both (all threads; for the loop read from /proc between its first
   and last result), which a busy machine disturbs much less than wall time: the difference is
   the work the loop adds (decoding, crop/resize, JSON).
4. start-up      wall time from just before Popen to the first JSON line on stdout of
                 ``edgecam run MODEL --source VIDEO --headless --max-frames 1`` with TensorFlow,
                 Keras and tf_keras made unimportable (as on a Raspberry Pi); one unmeasured
                 run first warms the disk cache. Goal: < 1 s. Also its CPU time to that line,
                 import-only children for comparison, and the same steps timed one by one
                 inside one child (wall and CPU).
5. memory        peak RSS of each ``edgecam run`` child (os.wait4's rusage of that child).
                 Goal: < 150 MB for MobileNetV2 1.0/224.

The video: FRAMES distinct photos from the flowers test split, centre-cropped to 320x240,
written as mp4 (mp4v) into a temporary folder.

Run:   .venv/bin/python benchmarks/run_speed.py [--model MODEL.tflite] [--rounds 3] [--frames 300] [--nice -20]
On a busy machine, wall-clock figures swing by 2x from round to round; as root, ``--nice -20``
runs the measured children ahead of other work, so absolute figures come closer to an idle
machine's (it does not make the machine idle: compare the CPU figures too).
Without --model it uses runs/bench/flowers/last/model.tflite (in the repository's git-ignored
runs/ folder, or under --output), training it first (a few minutes) with ``edgecam finetune
data.path=FLOWERS model.weights=WEIGHTS name=flowers output=runs/bench -q`` if it is not there. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
FLOWERS = SHARED / "datasets" / "flowers"
WEIGHTS = SHARED / "weights"
DEFAULT_OUTPUT = ROOT / "runs" / "bench"
VIDEO_SIZE = (320, 240)

GOAL_RATIO, GOAL_STARTUP_S, GOAL_RSS_MB = 0.9, 1.0, 150.0
NICE = 0  # --nice: niceness added to every measured child

# The child that times the interpreter alone. argv: model video frames warmup
INTERPRETER_ONLY = r"""
import json, sys, time
import cv2
from edgecam.runtime.classifier import Classifier
model, video, frames, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ok, bgr = cv2.VideoCapture(video).read()
classifier = Classifier(model)
tensor = classifier.prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
for _ in range(warmup):
    classifier.infer(tensor)
times = []
start, cpu = time.perf_counter(), time.process_time()
for _ in range(frames):
    t = time.perf_counter()
    classifier.infer(tensor)
    times.append(time.perf_counter() - t)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"fps": frames / elapsed, "infer_ms": 1000 * sum(times) / len(times), "cpu_ms": 1000 * cpu / frames}))
"""

# The child that times decoding alone. argv: video
DECODE_ONLY = r"""
import json, sys, time
import cv2
cap = cv2.VideoCapture(sys.argv[1])
n, start = 0, time.perf_counter()
while True:
    ok, frame = cap.read()
    if not ok:
        break
    cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    n += 1
print(json.dumps({"fps": n / (time.perf_counter() - start), "frames": n}))
"""

# `edgecam ...` with TensorFlow, Keras and tf_keras unimportable, as on a Pi.
BLOCK_TENSORFLOW = r"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked (edge run)")
sys.meta_path.insert(0, _Block())
from edgecam.cli import main
sys.argv = ["edgecam"] + sys.argv[1:]
main()
"""


# Start-up, stage by stage, in one child doing what `edgecam run` does before its first result.
# argv: model video. Prints {stage: seconds}; "python" is the time from process start
# (/proc/self/stat starttime) to the first line of this program.
STARTUP_STAGES = r"""
import os, time
t0 = time.perf_counter()
ticks = os.sysconf("SC_CLK_TCK")
with open("/proc/self/stat") as f:
    started = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
with open("/proc/uptime") as f:
    python = float(f.read().split()[0]) - started
stages = {"python start (interpreter, site)": (python, time.process_time())}
def stage(name, t=[t0, time.process_time()]):
    now, cpu = time.perf_counter(), time.process_time()
    stages[name] = (now - t[0], cpu - t[1]); t[0], t[1] = now, cpu
import sys, json
import numpy; stage("import numpy")
import cv2; stage("import cv2")
import click, yaml; stage("import click, yaml (CLI, config)")
from edgecam.runtime.loop import run; stage("import edgecam.runtime.loop (rest)")
from ai_edge_litert.interpreter import Interpreter; stage("import ai_edge_litert.interpreter")
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.sources import open_source
classifier = Classifier(sys.argv[1]); stage("Classifier(): read, metadata, interpreter")
source = open_source(sys.argv[2]); stage("open the video")
rgb = source.read(); stage("decode the first frame")
tensor = classifier.prepare(rgb); stage("prepare")
classifier.infer(tensor); stage("first inference")
classifier.infer(tensor); stage("second inference")
print(json.dumps(stages))
"""

# Import-only children, to set the start-up against what Python and the libraries cost alone.
BASELINES = {
    "python -c pass": "pass",
    "python -c 'import numpy, cv2'": "import numpy, cv2",
    "... + ai_edge_litert.interpreter": "import numpy, cv2, ai_edge_litert.interpreter",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edgecam() -> list[str]:
    script = Path(sys.executable).with_name("edgecam")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecam"]


def run_child(args: list[str]) -> dict:
    """Run a child to the end, reading its stdout line by line.

    Returns stdout (and its lines), stderr, peak RSS (MB, the child's own rusage), the wall
    time from just before Popen to the first stdout line (``t_first``) and to the exit
    (``t_total``), the child's CPU time at its first and last stdout line (``cpu_first``,
    ``cpu_last``) and in all (``cpu_s``).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                preexec_fn=(lambda: os.nice(NICE)) if NICE else None)
        t_first = cpu_first = cpu_last = None
        lines = []
        for line in proc.stdout:
            if t_first is None:
                t_first = time.perf_counter() - start
                cpu_first = cpu_seconds(proc.pid)
            else:
                cpu_last = cpu_seconds(proc.pid)
            lines.append(line)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        total = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}... failed ({proc.returncode}):\n{stderr[-2000:]}")
    return {"stdout": "".join(lines), "lines": lines, "stderr": stderr, "rss_mb": usage.ru_maxrss / 1024.0,
            "t_first": t_first, "t_total": total, "cpu_first": cpu_first, "cpu_last": cpu_last,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def ensure_model(args) -> Path:
    if args.model:
        return Path(args.model)
    model = args.output / "flowers" / "last" / "model.tflite"
    if not model.exists():
        log(f"training the flowers model into {args.output} (a few minutes; the embedding cache makes re-runs fast)")
        subprocess.run(edgecam() + ["finetune", f"data.path={FLOWERS}", f"model.weights={WEIGHTS}", "name=flowers",
                                    f"output={args.output}", "-q"], check=True)
    return model


def make_video(path: Path, frames: int) -> int:
    import cv2
    import numpy as np

    from edgecam.modelfile.preprocess import fit_to_input

    photos = sorted((FLOWERS / "test").rglob("*.jpg"))[:frames] or sorted(FLOWERS.rglob("*.jpg"))[:frames]
    if not photos:
        raise SystemExit(f"no photos under {FLOWERS}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, VIDEO_SIZE)
    written = 0
    for i in range(frames):
        bgr = cv2.imread(str(photos[i % len(photos)]))
        if bgr is None:
            continue
        frame = fit_to_input(bgr, (VIDEO_SIZE[1], VIDEO_SIZE[0]))  # centre crop + resize, any channel order
        writer.write(np.ascontiguousarray(frame))
        written += 1
    writer.release()
    return written


def measure_loop(model: Path, video: Path) -> dict:
    r = run_child(edgecam() + ["run", str(model), "--source", str(video), "--headless"])
    match = re.search(r"^(\d+) frames, (\d+) dropped, ([\d.]+) FPS", r["stderr"], re.M)
    if not match:
        raise SystemExit(f"no summary line from edgecam run:\n{r['stderr'][-2000:]}")
    results = [json.loads(line) for line in r["lines"]]
    infer = [x["inference_ms"] for x in results[5:]] or [0.0]
    latency = [x["latency_ms"] for x in results[5:]] or [0.0]
    frames = int(match.group(1))
    return {"fps": float(match.group(3)), "frames": frames, "dropped": int(match.group(2)),
            "infer_ms": statistics.fmean(infer), "latency_ms": statistics.fmean(latency), "rss_mb": r["rss_mb"],
            "cpu_ms": 1000 * (r["cpu_last"] - r["cpu_first"]) / max(1, frames - 1)}


def measure_interpreter(model: Path, video: Path, frames: int) -> dict:
    r = run_child([sys.executable, "-c", INTERPRETER_ONLY, str(model), str(video), str(frames), "10"])
    return {**json.loads(r["stdout"]), "rss_mb": r["rss_mb"]}


def measure_decode(video: Path) -> dict:
    return json.loads(run_child([sys.executable, "-c", DECODE_ONLY, str(video)])["stdout"])


def measure_startup(model: Path, video: Path) -> dict:
    r = run_child([sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(model), "--source", str(video), "--headless",
                   "--max-frames", "1"])
    if len(r["lines"]) != 1:
        raise SystemExit(f"expected one JSON line, got {len(r['lines'])}")
    return {"first_s": r["t_first"], "total_s": r["t_total"], "rss_mb": r["rss_mb"], "cpu_s": r["cpu_s"],
            "cpu_first_s": r["cpu_first"]}


def measure_baselines() -> dict:
    return {name: run_child([sys.executable, "-c", code])["t_total"] for name, code in BASELINES.items()}


def measure_stages(model: Path, video: Path) -> dict:
    return json.loads(run_child([sys.executable, "-c", STARTUP_STAGES, str(model), str(video)])["stdout"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .tflite classifier [default: the flowers model in --output]")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the flowers model is trained")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300, help="frames in the benchmark video")
    parser.add_argument("--nice", type=int, default=0,
                        help="run every measured child at this niceness; as root, -20 gives them the CPU on a busy "
                             "machine so absolute figures approach an idle machine's (ratios need no such help)")
    args = parser.parse_args()
    global NICE
    NICE = args.nice

    model = ensure_model(args)
    with tempfile.TemporaryDirectory(prefix="edgecam-run-speed-") as work:
        measure_all(args, model, Path(work) / "flowers_320x240.mp4")


def measure_all(args, model: Path, video: Path) -> None:
    frames = make_video(video, args.frames)
    log(f"model {model} ({model.stat().st_size / 1e6:.1f} MB); video {video}: {frames} frames "
        f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        + (f"; children at nice {NICE}" if NICE else ""))

    rows = {"decode": [], "interpreter": [], "loop": [], "ratio": []}
    for r in range(args.rounds):
        order = ("interpreter", "loop") if r % 2 == 0 else ("loop", "interpreter")
        decode = measure_decode(video)
        got = {}
        for name in order:
            got[name] = measure_interpreter(model, video, frames) if name == "interpreter" else measure_loop(model, video)
        rows["decode"].append(decode)
        rows["interpreter"].append(got["interpreter"])
        rows["loop"].append(got["loop"])
        rows["ratio"].append(got["loop"]["fps"] / got["interpreter"]["fps"])
        log(f"round {r + 1}: decode {decode['fps']:.0f} FPS; interpreter {got['interpreter']['fps']:.1f} FPS "
            f"({got['interpreter']['infer_ms']:.1f} ms); loop {got['loop']['fps']:.1f} FPS "
            f"({got['loop']['frames']} frames, {got['loop']['dropped']} dropped, inference {got['loop']['infer_ms']:.1f} ms, "
            f"latency {got['loop']['latency_ms']:.1f} ms, RSS {got['loop']['rss_mb']:.0f} MB); "
            f"ratio {rows['ratio'][-1]:.2f}; CPU per frame: interpreter {got['interpreter']['cpu_ms']:.1f} ms, "
            f"loop {got['loop']['cpu_ms']:.1f} ms")

    measure_startup(model, video)  # unmeasured: warms the disk cache
    startups, baselines, stages = [], [], []
    for _ in range(args.rounds):
        startups.append(measure_startup(model, video))
        baselines.append(measure_baselines())
        stages.append(measure_stages(model, video))
        s = startups[-1]
        log(f"start-up: first result after {s['first_s']:.2f} s, process done after {s['total_s']:.2f} s, "
            f"CPU {s['cpu_first_s']:.2f} s to the first result, {s['cpu_s']:.2f} s in all, RSS {s['rss_mb']:.0f} MB; "
            + ", ".join(f"{k} {v:.2f} s" for k, v in baselines[-1].items()))

    def med(name, key):
        return statistics.median(x[key] for x in rows[name])

    startup = statistics.median(s["first_s"] for s in startups)
    rss = max(x["rss_mb"] for x in rows["loop"])
    ratio = statistics.median(rows["ratio"])
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    table = [
        ("figure (median of %d rounds)" % args.rounds, "value", "goal", ""),
        ("video decode only, 320x240 mp4", f"{med('decode', 'fps'):.0f} FPS", "well above model", ""),
        ("interpreter only (Classifier.infer)", f"{med('interpreter', 'fps'):.1f} FPS", "", ""),
        ("  mean inference", f"{med('interpreter', 'infer_ms'):.1f} ms", "", ""),
        ("edgecam run --headless, same video", f"{med('loop', 'fps'):.1f} FPS", "", ""),
        ("  mean inference inside the loop", f"{med('loop', 'infer_ms'):.1f} ms", "", ""),
        ("loop / interpreter", f"{ratio:.2f}", f">= {GOAL_RATIO}", ok(ratio >= GOAL_RATIO)),
        ("CPU per frame, interpreter only", f"{med('interpreter', 'cpu_ms'):.1f} ms", "", ""),
        ("CPU per frame, edgecam run", f"{med('loop', 'cpu_ms'):.1f} ms", "", ""),
        ("start-up to first result (no TF)", f"{startup:.2f} s", f"< {GOAL_STARTUP_S:.0f} s", ok(startup < GOAL_STARTUP_S)),
        ("  CPU time to first result", f"{statistics.median(x['cpu_first_s'] for x in startups):.2f} s", "", ""),
        ("peak RSS of edgecam run", f"{rss:.0f} MB", f"< {GOAL_RSS_MB:.0f} MB", ok(rss < GOAL_RSS_MB)),
        ("  (interpreter-only child, for scale)", f"{max(x['rss_mb'] for x in rows['interpreter']):.0f} MB", "", ""),
    ]
    print(f"model: {model}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
          + (f"; measured children at nice {NICE}" if NICE else ""))
    for name, value, goal, verdict in table:
        print(f"{name:<40} {value:>10}  {goal:<18} {verdict}")
    print()
    print("start-up, wall time to exit of import-only children (median):")
    for name in BASELINES:
        print(f"  {name:<38} {statistics.median(b[name] for b in baselines):>8.2f} s")
    print(f"  {'edgecam run ... --max-frames 1 (exit)':<38} {statistics.median(x['total_s'] for x in startups):>8.2f} s"
          f"   (CPU {statistics.median(x['cpu_s'] for x in startups):.2f} s)")
    print("start-up stages inside one child (median wall / CPU seconds; CPU counts all threads):")
    for name in stages[0]:
        print(f"  {name:<42} {statistics.median(x[name][0] for x in stages):>6.3f} s"
              f" {statistics.median(x[name][1] for x in stages):>6.3f} s")
    total = [sum(v[0] for v in x.values()) for x in stages], [sum(v[1] for v in x.values()) for x in stages]
    print(f"  {'total':<42} {statistics.median(total[0]):>6.3f} s {statistics.median(total[1]):>6.3f} s")


if __name__ == "__main__":
    main()
