"""What does ``edgecam run --mqtt`` cost the camera loop? (issue 10, acceptance 7: at most 2% of its FPS)

Runs ``edgecam run MODEL --source VIDEO --headless --hold 0.5`` on the same video, side by side in
one invocation, in ROUNDS rounds (order rotating) and reports medians:

1. without MQTT
2. ``--mqtt mqtt://127.0.0.1:PORT`` (a local mosquitto started by this script, anonymous, no
   persistence): every label change published (state + attributes, acknowledged), heartbeats
   every second (``mqtt.heartbeat: 1``, 30x the default rate), Home Assistant discovery
3. the same with ``mqtt.snapshot: true``: each change's annotated frame drawn and sent as JPEG
4. the MQTT side alone, in a child of its own: 2000 label changes written to the Output as fast
   as the broker acknowledges them; its CPU time per change, and what that is at the video's
   rate of changes against the loop's CPU per frame (end-to-end ratios of a few per cent are
   within the noise of a shared machine; this is not)

Per run: the summary's mean FPS (first to last result) and the CPU time per frame of the whole
process (all threads, from /proc between its first and last JSON line), which a busy machine
disturbs far less than wall time. Ratios are against run 1 of the same round.

The video: photos of the flowers test split (``../shared`` or $EDGECAM_SHARED) in a mixed order,
each held for ``--hold-frames`` frames (default 30: 3 s at the video's 10 FPS), so a label change
comes about every 40 frames (``--hold-frames 10``: every 13, a busy scene); without the photos,
solid colour stretches. MQTT's cost is per change (and per heartbeat), not per frame.

Run:   .venv/bin/python benchmarks/mqtt_cost.py [--model MODEL.tflite] [--rounds 5] [--photos 60]
                                             [--hold-frames 30] [--nice -20]
Without --model it uses runs/bench/flowers/last/model.tflite (MobileNetV2, what a Pi runs; train it
with benchmarks/run_speed.py), else the tiny test model tests/data/colors_unknown.tflite, whose loop
runs thousands of frames per second: there the fixed cost per frame weighs far more than on a
real model. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, paired_medians

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
FLOWERS_TEST = SHARED / "datasets" / "flowers" / "test"
DEFAULT_MODELS = (ROOT / "runs" / "bench" / "flowers" / "last" / "model.tflite",
                  ROOT / "tests" / "data" / "colors_unknown.tflite")
VIDEO_SIZE = (320, 240)
GOAL = 0.98
NICE = 0  # --nice: niceness added to every measured child
VARIANTS = ("without --mqtt", "--mqtt", "--mqtt, snapshot")


# A child that times the MQTT side alone: N label changes written to the Output as fast as the
# publisher takes them (each acknowledged by the broker), and the process's CPU time for it.
PER_CHANGE = r"""
import json, sys, time
from edgecam.config.mqtt import MqttConfig
from edgecam.mqtt.payloads import RunInfo
from edgecam.mqtt.session import start
from edgecam.mqtt.settings import resolve
from edgecam.runtime.result import Result
url, n = sys.argv[1], int(sys.argv[2])
settings = resolve(MqttConfig(url=url, device="bench-changes", heartbeat=3600, queue=n), env={})
output = start(settings, RunInfo("model.tflite", "0" * 64, "bench-changes"), None, lambda line: None)
time.sleep(0.5)  # the announcements are out
results = [Result(i, 1000.0 + i, (("a", 0.5), ("b", 0.3), ("c", 0.1)), "ab"[i % 2], 0.5, True, 30.0, 3.0, 4.0, 0.2)
           for i in range(n)]
wall, cpu = time.perf_counter(), time.process_time()
for r in results:
    output.write(r, None)
publisher = output.publisher
while len(publisher.changes) or publisher.inflight:
    time.sleep(0.0005)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
output.close()
print(json.dumps({"cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edgecam() -> list[str]:
    script = Path(sys.executable).with_name("edgecam")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecam"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(work: Path) -> tuple[subprocess.Popen, int]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(mosquitto):
        raise SystemExit("mosquitto not found: sudo apt-get install mosquitto (scripts/install.sh does it as root)")
    port = free_port()
    conf = work / "mosquitto.conf"
    root = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{root}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n")
    broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return broker, port
        except OSError:
            time.sleep(0.05)
    broker.kill()
    raise SystemExit("mosquitto did not start")


def make_video(path: Path, photos: int, hold_frames: int) -> tuple[int, str]:
    import cv2
    import numpy as np

    # A fixed mixed order (by a hash of the name), so consecutive photos mostly differ in label.
    files = sorted(FLOWERS_TEST.rglob("*.jpg"), key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())[:photos]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, VIDEO_SIZE)
    colours = [(40, 40, 200), (40, 200, 40), (200, 40, 40), (128, 128, 128)]
    frames = 0
    for i in range(photos):
        if files:
            frame = cv2.resize(cv2.imread(str(files[i % len(files)])), VIDEO_SIZE, interpolation=cv2.INTER_AREA)
        else:
            frame = np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), colours[i % len(colours)], np.uint8)
        for _ in range(hold_frames):
            writer.write(frame)
            frames += 1
    writer.release()
    return frames, (f"{photos} flowers test photos" if files else f"{photos} solid colours (no flowers photos found)")


def measure(model: Path, video: Path, extra: list[str]) -> dict:
    args = edgecam() + ["run", str(model), "--source", str(video), "--headless", "--hold", "0.5", *extra]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=(lambda: os.nice(NICE)) if NICE else None)
        first = last = None
        changes = lines = 0
        for line in proc.stdout:
            lines += 1
            changes += '"changed": true' in line
            if first is None:
                first = cpu_seconds(proc.pid)
            else:
                last = cpu_seconds(proc.pid)
        proc.wait()
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"edgecam run {' '.join(extra)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    if extra and "mqtt: connected to" not in stderr:
        raise SystemExit(f"edgecam run {' '.join(extra)} did not connect:\n{stderr[-2000:]}")
    match = re.search(r"^(\d+) frames, (\d+) dropped, ([\d.]+) FPS", stderr, re.M)
    return {"fps": float(match.group(3)), "frames": int(match.group(1)), "changes": changes,
            "cpu_ms": 1000 * (last - first) / max(1, lines - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a .tflite classifier [default: the flowers benchmark model, "
                        "else the tiny colours test model]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=60, help="photos in the video (about one label change each)")
    parser.add_argument("--hold-frames", type=int, default=30, help="frames each photo is held (30 = 3 s of video; "
                        "10 = a busy scene, a change every 13 frames or so)")
    parser.add_argument("--nice", type=int, default=0, help="run the measured children at this niceness; as root, "
                        "-20 gives them the CPU on a busy machine (the CPU figures need no such help)")
    args = parser.parse_args()
    global NICE
    NICE = args.nice
    model = args.model or next((m for m in DEFAULT_MODELS if m.exists()), DEFAULT_MODELS[-1])
    with tempfile.TemporaryDirectory(prefix="edgecam-mqtt-cost-") as work:
        work = Path(work)
        video = work / "video.mp4"
        frames, what = make_video(video, args.photos, args.hold_frames)
        broker, port = start_broker(work)
        try:
            results = run_rounds(args.rounds, model, video, port, work)
            out = subprocess.run([sys.executable, "-c", PER_CHANGE, f"mqtt://127.0.0.1:{port}", "2000"],
                                 capture_output=True, text=True, check=True, timeout=300).stdout
            per_change = json.loads(out)
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    report(model, frames, what, results, per_change)


def run_rounds(rounds: int, model: Path, video: Path, port: int, work: Path) -> dict[str, list[dict]]:
    configs = {}
    for name, snapshot in (("--mqtt", False), ("--mqtt, snapshot", True)):
        path = work / f"mqtt-{snapshot}.yaml"
        path.write_text(json.dumps({"mqtt": {"url": f"mqtt://127.0.0.1:{port}", "device": "bench", "heartbeat": 1,
                                             "snapshot": snapshot}}))
        configs[name] = ["--config", str(path)]
    extra = {"without --mqtt": [], **configs}
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    measure(model, video, [])  # warm the disk cache and the imports
    for r in range(rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        for name in order:
            results[name].append(measure(model, video, extra[name]))
            log(f"round {r + 1}/{rounds} {name:<18} {results[name][-1]['fps']:8.1f} FPS "
                f"{results[name][-1]['cpu_ms']:7.2f} ms CPU/frame, {results[name][-1]['changes']} changes")
    return results


def report(model: Path, frames: int, what: str, results: dict[str, list[dict]], per_change: dict) -> None:
    base = results["without --mqtt"]
    print(f"model {model.name} ({model.stat().st_size / 1e6:.1f} MB); video {frames} frames {VIDEO_SIZE[0]}x"
          f"{VIDEO_SIZE[1]} from {what}; {len(base)} rounds; {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'run':<18} {'FPS':>8} {'ratio':>7} {'CPU ms/frame':>13} {'ratio':>7} {'changes':>8}")
    for name in VARIANTS:
        rows = results[name]
        fps, fps_ratio, cpu, cpu_ratio = paired_medians(rows, base)
        print(f"{name:<18} {fps:8.1f} {fps_ratio:7.3f} {cpu:13.2f} {cpu_ratio:7.3f} {rows[0]['changes']:8d}")
    base_cpu = statistics.median(r["cpu_ms"] for r in base)
    changes_per_frame = base[0]["changes"] / base[0]["frames"]
    print(f"MQTT alone (2000 changes, each acknowledged): {per_change['cpu_ms']:.3f} ms CPU per change "
          f"({per_change['wall_ms']:.3f} ms wall); at this video's {changes_per_frame:.3f} changes per frame that is "
          f"{100 * per_change['cpu_ms'] * changes_per_frame / base_cpu:.2f}% of the loop's CPU per frame")
    worst = min(statistics.median(r["fps"] / b["fps"] for r, b in zip(results[n], base)) for n in VARIANTS[1:])
    print(f"goal: FPS with MQTT >= {GOAL:.0%} of without: {'met' if worst >= GOAL else 'NOT met'} "
          f"(worst median ratio {worst:.3f})")


if __name__ == "__main__":
    main()
