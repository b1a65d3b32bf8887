"""How fast is ``edgecam run`` next to the interpreter alone; how fast does it start; how much memory?

Everything runs in child processes of this script, in one invocation, so the figures that
matter are ratios between measurements taken side by side on the same (possibly busy)
machine. Measured, for each model (default: two, see MODELS below) and each thread setting:

1. decode only   frames/s and CPU time per frame of reading the benchmark video with
                 cv2.VideoCapture and converting BGR -> RGB (what the capture thread does): the
                 loop pays this CPU too, beside the interpreter.
2. interpreter   frames/s of ``Classifier.infer`` on one prepared tensor (a frame of the video),
                 in a loop, after a warm-up: the best the loop could do. The same model file.
3. loop          ``edgecam run MODEL --source VIDEO --headless --threads N``: the summary's mean
                 FPS (first to last result, start-up excluded) over the whole video; the JSON
                 lines give the mean inference time inside the loop. Goal: >= 0.9 x interpreter.
   Both sides get the same interpreter thread count N, set explicitly: the interpreter child
   passes ``num_threads=N`` to ``Classifier``, the loop gets ``--threads N``. The settings
   (``--threads``): "all" = os.cpu_count(), what ``edgecam run`` uses by default, and "spare"
   = one fewer, which leaves a core to the capture thread (decoding and crop/resize). On 2 cores
   with a fast model, "all" cannot reach the goal: the interpreter alone keeps both cores busy,
   and the loop must also decode every frame (figure 1) on them.
   Steps 2-3 are repeated in ROUNDS rounds (order alternating) and medians are reported, with
   the CPU time per frame of both (all threads; for the loop read from /proc between its first
   and last result), which a busy machine disturbs much less than wall time: the difference is
   the work the loop adds (decoding, crop/resize, JSON). The loop's stdout (a JSON line per frame)
   is read every few milliseconds, not line by line: the reader wakes up a few hundred times a
   second instead of once per frame, so it takes little CPU from the loop it measures.
   ``--against DIR`` also runs ``edgecam run`` from another checkout (PYTHONPATH=DIR, e.g. a
   ``git worktree`` of an older commit) in the same rounds: before/after from the same minutes.
4. start-up      wall time from just before Popen to the first JSON line on stdout of
                 ``edgecam run MODEL --source VIDEO --headless --max-frames 1`` with TensorFlow,
                 Keras and tf_keras made unimportable (as on a Raspberry Pi); one unmeasured
                 run first warms the disk cache. Goal: < 1 s. Also its CPU time to that line,
                 import-only children for comparison, and the same steps timed one by one
                 inside one child (wall and CPU). First model only.
5. memory        peak RSS of each ``edgecam run`` child (os.wait4's rusage of that child).
                 Goal: < 150 MB for MobileNetV2 1.0/224.

MODELS (``--models``, comma-separated; a name below or a .tflite path):
  default   runs/bench/flowers/last/model.tflite: MobileNetV2 1.0/224 on the flowers, what
            ``edgecam finetune`` makes by default (with its unknown_score output);
  smallest  runs/bench/flowers_v1_025/last/model.tflite: MobileNet v1 0.25/224 on the flowers,
            the smallest backbone edgecam trains (with its unknown_score output).
Either is trained first (a few minutes; the embedding cache makes re-runs fast) if missing:
``edgecam finetune data.path=FLOWERS model.weights=WEIGHTS name=flowers output=runs/bench -q``,
plus ``model.backbone=mobilenet_v1 model.alpha=0.25`` and ``name=flowers_v1_025`` for the smallest
(runs/ is git-ignored; ``--output`` puts them elsewhere). A model file made before open-set scores
(no unknown_score output) is said on stderr: delete its run folder to train it again.

The video: FRAMES distinct photos from the flowers test split (cycled past 717), centre-cropped
to 320x240, written as MJPEG (.avi, what a USB webcam sends) into a temporary folder. 1000 frames
by default: a fast model runs them in about a second.

Run:   .venv/bin/python benchmarks/run_speed.py [--models default,smallest] [--threads all,spare]
                                             [--rounds 3] [--frames 1000] [--nice -20] [--against DIR]
       (``--model FILE``, repeatable, measures those files instead of --models.)
On a busy machine, wall-clock figures swing by 2x from round to round; as root, ``--nice -20``
runs the measured children ahead of other work, so absolute figures come closer to an idle
machine's (it does not make the machine idle: compare the CPU figures too). Where the kernel
groups processes by session (autogroup), a niceness only counts inside its group, so each
measured child then also starts its own session and sets that group's niceness. Progress goes
to stderr, the table to stdout.
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
# name: (run name under --output, extra finetune settings, what it is)
MODELS = {
    "default": ("flowers", [], "MobileNetV2 1.0/224"),
    "smallest": ("flowers_v1_025", ["model.backbone=mobilenet_v1", "model.alpha=0.25"], "MobileNet v1 0.25/224"),
}
READ_EVERY = 0.005  # seconds between reads of a loop's stdout

GOAL_RATIO, GOAL_STARTUP_S, GOAL_RSS_MB = 0.9, 1.0, 150.0
NICE = 0  # --nice: niceness added to every measured child

# The child that times the interpreter alone. argv: model video frames warmup threads
INTERPRETER_ONLY = r"""
import json, sys, time
import cv2
from edgecam.runtime.classifier import Classifier
model, video, frames, warmup, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ok, bgr = cv2.VideoCapture(video).read()
classifier = Classifier(model, num_threads=threads)
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
n, start, cpu = 0, time.perf_counter(), time.process_time()
while True:
    ok, frame = cap.read()
    if not ok:
        break
    cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    n += 1
print(json.dumps({"fps": n / (time.perf_counter() - start), "frames": n,
                  "cpu_ms": 1000 * (time.process_time() - cpu) / n}))
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


def run_child(args: list[str], every: float = 0.0, pythonpath: str | None = None) -> dict:
    """Run a child to the end, reading its stdout.

    Returns stdout (and its lines), stderr, peak RSS (MB, the child's own rusage), the wall
    time from just before Popen to the first stdout line (``t_first``) and to the exit
    (``t_total``), the child's CPU time at its first and last stdout line (``cpu_first``,
    ``cpu_last``; ``lines_between`` came between them) and in all (``cpu_s``).
    With ``every`` (seconds), stdout is read that often instead of line by line (see the
    docstring, 3.); the CPU times are then taken at the first and last read that brought lines.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env,
                                preexec_fn=(lambda: _renice(NICE)) if NICE else None)
        lines: list[str] = []
        marks: list[tuple[float, float, int]] = []  # (wall, child CPU, lines so far) at reads that brought lines
        if every:
            _read_every(proc, every, lines, marks)
        else:
            for line in proc.stdout:
                lines.append(line.decode())
                marks.append((time.perf_counter(), cpu_seconds(proc.pid), len(lines)))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        total = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}... failed ({proc.returncode}):\n{stderr[-2000:]}")
    first, last = (marks[0], marks[-1]) if marks else ((None, None, 0), (None, None, 0))
    return {"stdout": "".join(lines), "lines": lines, "stderr": stderr, "rss_mb": usage.ru_maxrss / 1024.0,
            "t_first": first[0] - start if first[0] is not None else None, "t_total": total,
            "cpu_first": first[1], "cpu_last": last[1] if len(marks) > 1 else None,
            "lines_between": last[2] - first[2], "cpu_s": usage.ru_utime + usage.ru_stime}


def _read_every(proc, every: float, lines: list[str], marks: list) -> None:
    """Read ``proc``'s stdout every ``every`` seconds until it closes, whole lines into ``lines``."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    pending, closed = b"", False
    while not closed:
        time.sleep(every)
        got = []
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                closed = True
                break
            got.append(chunk)
        if got:
            *complete, pending = (pending + b"".join(got)).split(b"\n")
            if complete:
                lines.extend(line.decode() + "\n" for line in complete)
                marks.append((time.perf_counter(), cpu_seconds(proc.pid), len(lines)))
    if pending:
        lines.append(pending.decode())
    proc.stdout.close()


def _renice(niceness: int) -> None:
    """In the child before exec: its own session (so its own autogroup, where the kernel has them)
    at ``niceness``, and ``niceness`` inside it."""
    os.setsid()
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(niceness))
    except OSError:
        pass  # no autogroups: the plain niceness is what counts
    os.nice(niceness)


def ensure_models(args) -> list[tuple[str, Path]]:
    """(name, model file) for each of ``--models``, training the named ones that are missing."""
    models = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in MODELS:
            if not Path(name).is_file():
                raise SystemExit(f"--models: {name} is neither {' nor '.join(MODELS)} nor a model file")
            models.append((Path(name).stem, Path(name)))
            continue
        run, settings, what = MODELS[name]
        model = args.output / run / "last" / "model.tflite"
        if not model.exists():
            log(f"training the {name} model ({what}) into {args.output / run} (a few minutes; the embedding "
                "cache makes re-runs fast)")
            subprocess.run(edgecam() + ["finetune", f"data.path={FLOWERS}", f"model.weights={WEIGHTS}", *settings,
                                        f"name={run}", f"output={args.output}", "-q"], check=True)
        models.append((f"{name} ({what})", model))
    for name, model in models:
        if not _has_unknown_output(model):
            log(f"note: {model} has no unknown_score output (made before open-set scores?): delete its run "
                "folder to train it again")
    return models


def _has_unknown_output(model: Path) -> bool:
    from edgecam.runtime.classifier import UNKNOWN_OUTPUT
    from edgecam.runtime.litert import make_interpreter

    return any(o["name"] == UNKNOWN_OUTPUT for o in make_interpreter(1, model_path=str(model)).get_output_details())


def thread_settings(spec: str) -> list[tuple[str, int]]:
    """(label, count) for each of ``--threads``: all, spare or a number; the same count twice is measured once."""
    cores = os.cpu_count() or 1
    settings: dict[int, str] = {}
    for item in [t.strip() for t in spec.split(",") if t.strip()]:
        if item == "all":
            settings.setdefault(cores, f"{cores} (all cores: the default)")
        elif item == "spare":
            settings.setdefault(max(1, cores - 1), f"{max(1, cores - 1)} (a core left to capture)")
        elif item.isdigit() and int(item) > 0:
            settings.setdefault(int(item), item)
        else:
            raise SystemExit(f"--threads: expected all, spare or numbers, got {item!r}")
    return [(label, count) for count, label in settings.items()]


def make_video(path: Path, frames: int) -> int:
    import cv2
    import numpy as np

    from edgecam.modelfile.preprocess import fit_to_input

    photos = sorted((FLOWERS / "test").rglob("*.jpg"))[:frames] or sorted(FLOWERS.rglob("*.jpg"))[:frames]
    if not photos:
        raise SystemExit(f"no photos under {FLOWERS}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, VIDEO_SIZE)
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


def measure_loop(model: Path, video: Path, threads: int, pythonpath: str | None = None) -> dict:
    r = run_child(edgecam() + ["run", str(model), "--source", str(video), "--headless", "--threads", str(threads)],
                  every=READ_EVERY, pythonpath=pythonpath)
    match = re.search(r"^(\d+) frames, (\d+) dropped, ([\d.]+) FPS", r["stderr"], re.M)
    if not match:
        raise SystemExit(f"no summary line from edgecam run:\n{r['stderr'][-2000:]}")
    results = [json.loads(line) for line in r["lines"]]
    infer = [x["inference_ms"] for x in results[5:]] or [0.0]
    latency = [x["latency_ms"] for x in results[5:]] or [0.0]
    frames = int(match.group(1))
    return {"fps": float(match.group(3)), "frames": frames, "dropped": int(match.group(2)),
            "infer_ms": statistics.fmean(infer), "latency_ms": statistics.fmean(latency), "rss_mb": r["rss_mb"],
            "cpu_ms": 1000 * (r["cpu_last"] - r["cpu_first"]) / max(1, r["lines_between"])}


def measure_interpreter(model: Path, video: Path, frames: int, threads: int) -> dict:
    r = run_child([sys.executable, "-c", INTERPRETER_ONLY, str(model), str(video), str(frames), "10", str(threads)])
    return {**json.loads(r["stdout"]), "rss_mb": r["rss_mb"]}


def measure_decode(video: Path) -> dict:
    return json.loads(run_child([sys.executable, "-c", DECODE_ONLY, str(video)])["stdout"])


def measure_startup(model: Path, video: Path) -> dict:
    r = run_child([sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(model), "--source", str(video), "--headless",
                   "--max-frames", "1"])  # read line by line: the first line's time is the figure
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
    parser.add_argument("--models", default="default,smallest",
                        help="comma-separated: default, smallest (trained into --output if missing) or .tflite paths")
    parser.add_argument("--model", action="append", default=[], help="a .tflite classifier (repeatable; replaces --models)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the named models are trained")
    parser.add_argument("--threads", default="all,spare",
                        help="interpreter thread counts, the same on both sides: all (os.cpu_count()), spare (one "
                             "fewer) or numbers [default: all,spare]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=1000, help="frames in the benchmark video")
    parser.add_argument("--nice", type=int, default=0,
                        help="run every measured child at this niceness; as root, -20 gives them the CPU on a busy "
                             "machine so absolute figures approach an idle machine's (ratios need no such help)")
    parser.add_argument("--against", metavar="DIR",
                        help="also run edgecam run from this checkout (PYTHONPATH=DIR) in the same rounds: before/after")
    args = parser.parse_args()
    global NICE
    NICE = args.nice
    if args.model:
        args.models = ",".join(args.model)

    models = ensure_models(args)
    with tempfile.TemporaryDirectory(prefix="edgecam-run-speed-") as work:
        measure_all(args, models, thread_settings(args.threads), Path(work) / "flowers_320x240.avi")


def measure_all(args, models: list[tuple[str, Path]], threads: list[tuple[str, int]], video: Path) -> None:
    frames = make_video(video, args.frames)
    log(f"video {video}: {frames} frames {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}; {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}" + (f"; children at nice {NICE}" if NICE else "")
        + "".join(f"\n  {name}: {model} ({model.stat().st_size / 1e6:.1f} MB)" for name, model in models))

    cases = [(name, model, label, n) for name, model in models for label, n in threads]
    sides = ["interpreter", "loop"] + (["before"] if args.against else [])
    rows = {(name, label): {side: [] for side in sides} for name, _, label, _ in cases}
    decodes = []
    for r in range(args.rounds):
        decodes.append(measure_decode(video))
        for name, model, label, n in cases:
            got = {}
            for side in (sides if r % 2 == 0 else sides[::-1]):
                if side == "interpreter":
                    got[side] = measure_interpreter(model, video, frames, n)
                else:
                    got[side] = measure_loop(model, video, n, args.against if side == "before" else None)
                rows[name, label][side].append(got[side])
            i, loop = got["interpreter"], got["loop"]
            log(f"round {r + 1}, {name}, threads {n}: interpreter {i['fps']:.1f} FPS ({i['infer_ms']:.2f} ms, "
                f"CPU {i['cpu_ms']:.2f} ms/frame); loop {loop['fps']:.1f} FPS ({loop['frames']} frames, "
                f"{loop['dropped']} dropped, inference {loop['infer_ms']:.2f} ms, latency {loop['latency_ms']:.2f} ms, "
                f"CPU {loop['cpu_ms']:.2f} ms/frame, RSS {loop['rss_mb']:.0f} MB); ratio {loop['fps'] / i['fps']:.2f}"
                + (f"; before: {got['before']['fps']:.1f} FPS, ratio {got['before']['fps'] / i['fps']:.2f}, "
                   f"CPU {got['before']['cpu_ms']:.2f} ms/frame" if args.against else ""))
        log(f"round {r + 1}: decode only {decodes[-1]['fps']:.0f} FPS, CPU {decodes[-1]['cpu_ms']:.2f} ms/frame")
    first_model = models[0][1]
    measure_startup(first_model, video)  # unmeasured: warms the disk cache
    startups, baselines, stages = [], [], []
    for _ in range(args.rounds):
        startups.append(measure_startup(first_model, video))
        baselines.append(measure_baselines())
        stages.append(measure_stages(first_model, video))
        s = startups[-1]
        log(f"start-up: first result after {s['first_s']:.2f} s, process done after {s['total_s']:.2f} s, "
            f"CPU {s['cpu_first_s']:.2f} s to the first result, {s['cpu_s']:.2f} s in all, RSS {s['rss_mb']:.0f} MB; "
            + ", ".join(f"{k} {v:.2f} s" for k, v in baselines[-1].items()))

    def med(values):
        return statistics.median(values)

    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
          + (f"; measured children at nice {NICE}" if NICE else "") + f"; median of {args.rounds} rounds; "
          f"video {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {frames} frames, decode only {med(d['fps'] for d in decodes):.0f} FPS, "
          f"CPU {med(d['cpu_ms'] for d in decodes):.2f} ms/frame")
    head = (f"{'model':<34} {'threads':<26} {'interpreter':>11} {'edgecam run':>11} {'ratio':>6} {'goal':<7} "
            f"{'inference: interp./loop':>23} {'CPU/frame: interp./loop':>23}")
    if args.against:
        head += f"  {'before: FPS':>11} {'ratio':>6} {'CPU/frame':>9}"
    print(head)
    for name, _, label, _ in cases:
        row = rows[name, label]
        ratio = med(x["fps"] / i["fps"] for x, i in zip(row["loop"], row["interpreter"]))
        line = (f"{name:<34} {label:<26} {med(x['fps'] for x in row['interpreter']):>7.1f} FPS "
                f"{med(x['fps'] for x in row['loop']):>7.1f} FPS {ratio:>6.2f} {ok(ratio >= GOAL_RATIO):<7} "
                f"{med(x['infer_ms'] for x in row['interpreter']):>13.2f} / {med(x['infer_ms'] for x in row['loop']):.2f} ms "
                f"{med(x['cpu_ms'] for x in row['interpreter']):>13.2f} / {med(x['cpu_ms'] for x in row['loop']):.2f} ms")
        if args.against:
            before = med(x["fps"] / i["fps"] for x, i in zip(row["before"], row["interpreter"]))
            line += (f"  {med(x['fps'] for x in row['before']):>7.1f} FPS {before:>6.2f} "
                     f"{med(x['cpu_ms'] for x in row['before']):>6.2f} ms")
        print(line)
    print(f"ratio = edgecam run / interpreter, round by round (goal >= {GOAL_RATIO}); CPU/frame counts all threads")
    if args.against:
        print(f"before = edgecam run from {args.against}, in the same rounds, against the same interpreter figure")
    print()
    startup = statistics.median(s["first_s"] for s in startups)
    rss = {name: max(x["rss_mb"] for (n, _), row in rows.items() if n == name for x in row["loop"]) for name, _ in models}
    interp_rss = max(x["rss_mb"] for (n, _), row in rows.items() if n == models[0][0] for x in row["interpreter"])
    table = [
        (f"start-up to first result (no TF), {models[0][0]}", f"{startup:.2f} s", f"< {GOAL_STARTUP_S:.0f} s",
         ok(startup < GOAL_STARTUP_S)),
        ("  CPU time to first result", f"{statistics.median(x['cpu_first_s'] for x in startups):.2f} s", "", ""),
        *((f"peak RSS of edgecam run, {name}", f"{mb:.0f} MB", f"< {GOAL_RSS_MB:.0f} MB", ok(mb < GOAL_RSS_MB))
          for name, mb in rss.items()),
        ("  (interpreter-only child, for scale)", f"{interp_rss:.0f} MB", "", ""),
    ]
    for name, value, goal, verdict in table:
        print(f"{name:<56} {value:>8}  {goal:<10} {verdict}")
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
