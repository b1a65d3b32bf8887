"""What does ``edgecam run --keep DIR`` cost the camera loop? (issue 11: FPS with --keep >= 95% of without)

Runs ``edgecam run MODEL --source VIDEO --headless`` on the same video, side by side in one
invocation, in ROUNDS rounds (order rotating), and reports medians:

1. without --keep
2. ``--keep DIR`` with the defaults (6 frames per reason per minute, 60 per hour, near-duplicates
   skipped, a 0.2% sample): what a camera runs
3. ``--keep DIR`` with every frame a candidate (``keep.sample: 1``, ``min_change: 0``, 600 per
   minute): the writer thread never idles, the queue overflows and drops; the worst case, for scale

Each --keep run starts with an empty folder. Per run: the summary's mean FPS (first to last
result), the CPU time per frame of the whole process (all threads, from /proc between its first
and last JSON line; a busy machine disturbs it far less than wall time) and what was kept.
Ratios are against run 1 of the same round.

The video (640x480, a Pi camera's default size, 10 FPS): photos of the flowers test split
(``../shared`` or $EDGECAM_SHARED) in a mixed order with a generated "nothing here" frame
(``edgecam.data.nothing``) as every fourth scene, each held ``--hold-frames`` frames (default 30:
3 s of video). The loop runs the video several times faster than real time, so the frames kept
per second of wall time are several times those of a live camera: harsher than real use.

Run:   .venv/bin/python benchmarks/keep_cost.py [--model MODEL.tflite] [--rounds 5] [--scenes 60]
                                             [--hold-frames 30] [--nice -20]
Without --model it uses runs/bench/openset/float32/last/model.tflite (MobileNetV2 with an unknown
score, trained on daisy, dandelion and roses by benchmarks/openset_model.py: the other flowers and
the nothing frames are often unknown), else runs/bench/flowers/last/model.tflite (MobileNetV2, five
labels, no unknown score; benchmarks/run_speed.py), else the tiny test model
tests/data/colors_unknown.tflite, whose loop runs thousands of frames per second: there the fixed
cost per frame weighs far more than on a real model. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import cpu_seconds, paired_medians

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
FLOWERS_TEST = SHARED / "datasets" / "flowers" / "test"
DEFAULT_MODELS = (ROOT / "runs" / "bench" / "openset" / "float32" / "last" / "model.tflite",
                  ROOT / "runs" / "bench" / "flowers" / "last" / "model.tflite",
                  ROOT / "tests" / "data" / "colors_unknown.tflite")
VIDEO_SIZE = (640, 480)
GOAL = 0.95
NICE = 0  # --nice: niceness added to every measured child
VARIANTS = ("without --keep", "--keep", "--keep, every frame")
KEEP_SUMMARY = re.compile(r"^keep: (\d+) frames kept in .* \((.*)\); (\d+) dropped", re.M)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edgecam() -> list[str]:
    script = Path(sys.executable).with_name("edgecam")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecam"]


def make_video(path: Path, scenes: int, hold_frames: int) -> tuple[int, str]:
    import cv2
    import numpy as np

    from edgecam.data.nothing import nothing_frame

    # A fixed mixed order (by a hash of the name), so consecutive photos mostly differ in label.
    files = sorted(FLOWERS_TEST.rglob("*.jpg"), key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, VIDEO_SIZE)
    colours = [(40, 40, 200), (40, 200, 40), (200, 40, 40)]
    frames = photos = 0
    for i in range(scenes):
        if i % 4 == 3:
            frame = cv2.cvtColor(nothing_frame(i, seed=11, size=VIDEO_SIZE), cv2.COLOR_RGB2BGR)
        elif files:
            frame = cv2.resize(cv2.imread(str(files[photos % len(files)])), VIDEO_SIZE, interpolation=cv2.INTER_AREA)
            photos += 1
        else:
            frame = np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), colours[i % len(colours)], np.uint8)
        for _ in range(hold_frames):
            writer.write(frame)
            frames += 1
    writer.release()
    what = f"{photos} flowers test photos" if files else "solid colours (no flowers photos found)"
    return frames, f"{what} and {scenes // 4} 'nothing here' frames"


def measure(model: Path, video: Path, extra: list[str]) -> dict:
    args = edgecam() + ["run", str(model), "--source", str(video), "--headless", *extra]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=(lambda: os.nice(NICE)) if NICE else None)
        first = last = None
        lines = 0
        for _ in proc.stdout:
            lines += 1
            if first is None:
                first = cpu_seconds(proc.pid)
            else:
                last = cpu_seconds(proc.pid)
        proc.wait()
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"edgecam run {' '.join(extra)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    match = re.search(r"^(\d+) frames, (\d+) dropped, ([\d.]+) FPS", stderr, re.M)
    kept = KEEP_SUMMARY.search(stderr)
    if extra and not kept:
        raise SystemExit(f"edgecam run {' '.join(extra)} gave no keep summary:\n{stderr[-2000:]}")
    return {"fps": float(match.group(3)), "frames": int(match.group(1)),
            "cpu_ms": 1000 * (last - first) / max(1, lines - 1),
            "kept": int(kept.group(1)) if kept else 0, "per_reason": kept.group(2) if kept else "",
            "dropped": int(kept.group(3)) if kept else 0}


def run_rounds(rounds: int, model: Path, video: Path, work: Path) -> dict[str, list[dict]]:
    busy = work / "busy.yaml"
    busy.write_text(json.dumps({"keep": {"sample": 1.0, "min_change": 0, "per_minute": 600, "per_hour": 36000}}))
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    measure(model, video, [])  # warm the disk cache and the imports
    runs = 0
    for r in range(rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        for name in order:
            runs += 1
            folder = work / f"kept-{runs}"
            extra = {"without --keep": [], "--keep": ["--keep", str(folder)],
                     "--keep, every frame": ["--keep", str(folder), "--config", str(busy)]}[name]
            row = measure(model, video, extra)
            results[name].append(row)
            kept = f", kept {row['kept']} ({row['per_reason']}), dropped {row['dropped']}" if extra else ""
            log(f"round {r + 1}/{rounds} {name:<20} {row['fps']:8.1f} FPS {row['cpu_ms']:7.2f} ms CPU/frame{kept}")
    return results


def report(model: Path, frames: int, what: str, results: dict[str, list[dict]]) -> None:
    base = results["without --keep"]
    print(f"model {model.name} ({model.stat().st_size / 1e6:.1f} MB); video {frames} frames {VIDEO_SIZE[0]}x"
          f"{VIDEO_SIZE[1]} ({frames / 10:.0f} s at 10 FPS) from {what}; {len(base)} rounds; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'run':<20} {'FPS':>8} {'ratio':>7} {'CPU ms/frame':>13} {'ratio':>7} {'kept':>6} {'dropped':>8}")
    for name in VARIANTS:
        rows = results[name]
        fps, fps_ratio, cpu, cpu_ratio = paired_medians(rows, base)
        kept = statistics.median(r["kept"] for r in rows)
        dropped = statistics.median(r["dropped"] for r in rows)
        print(f"{name:<20} {fps:8.1f} {fps_ratio:7.3f} {cpu:13.2f} {cpu_ratio:7.3f} {kept:6.0f} {dropped:8.0f}")
    print(f"kept with the defaults, per reason (round 1): {results['--keep'][0]['per_reason']}")
    ratio = statistics.median(r["fps"] / b["fps"] for r, b in zip(results["--keep"], base))
    print(f"goal: FPS with --keep >= {GOAL:.0%} of without: {'met' if ratio >= GOAL else 'NOT met'} "
          f"(median ratio {ratio:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a .tflite classifier [default: the open-set benchmark model, "
                        "else the flowers benchmark model, else the tiny colours test model]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=60, help="scenes in the video (every fourth a nothing frame)")
    parser.add_argument("--hold-frames", type=int, default=30, help="frames each scene is held (30 = 3 s of video)")
    parser.add_argument("--nice", type=int, default=0, help="run the measured children at this niceness; as root, "
                        "-20 gives them the CPU on a busy machine (the CPU figures need no such help)")
    args = parser.parse_args()
    global NICE
    NICE = args.nice
    model = args.model or next((m for m in DEFAULT_MODELS if m.exists()), DEFAULT_MODELS[-1])
    with tempfile.TemporaryDirectory(prefix="edgecam-keep-cost-") as work:
        work = Path(work)
        video = work / "video.mp4"
        frames, what = make_video(video, args.scenes, args.hold_frames)
        results = run_rounds(args.rounds, model, video, work)
    report(model, frames, what, results)


if __name__ == "__main__":
    main()
