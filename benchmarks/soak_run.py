"""Does ``edgecam run --serve`` give back what viewers take? A soak test that prints figures.

One child runs for ``--minutes`` (default 5):

    edgecam run tests/data/flowers3.tflite --headless --serve 127.0.0.1:0 --source http://127.0.0.1:F/loop.mjpg

Its source loops forever: a short mp4 (``--clip`` seconds of moving, numbered frames, 320x240)
is written into a temporary folder, decoded once, and served by this script as a live MJPEG
stream at ``--fps`` on loopback (a file source would end: ``run`` reads files as fast as it
decodes them, about 2,600 frames/s with this tiny model, so five minutes would need an mp4 of
some 800,000 frames). While the child runs, a viewer comes every ``--every`` seconds: it opens
``/stream.mjpg`` and ``/api/events`` at once, reads both for ``--hold`` seconds and leaves.

The child's threads (/proc/PID/status Threads), open file descriptors (/proc/PID/fd) and
resident memory (VmRSS) are sampled at the start (after a warm-up with viewers and a settle),
during the soak (with and between viewers) and at the end (after the last viewer left and a
settle). PASS: threads and descriptors back to their start values, RSS within ``--rss-mb`` MB
of the start; and every viewer got frames and events.

Run:   .venv/bin/python benchmarks/soak_run.py [--minutes 5] [--every 4] [--hold 1.5] [--fps 25]
Everything (the clip, the child's stdout and stderr) goes into a temporary folder, removed at
the end. Progress goes to stderr, the table to stdout; the exit status is 0 on PASS, 1 on FAIL.
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "flowers3.tflite"
SIZE = (320, 240)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the looping source -------------------------------------------------------------------------
def make_clip(folder: Path, seconds: float, fps: float) -> Path:
    """An mp4 of moving colour bands with the frame number on each frame."""
    path = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    x = np.linspace(0, 1, SIZE[0])[None, :, None]
    for i in range(int(seconds * fps)):
        phase = i / (seconds * fps)
        frame = (127 + 127 * np.sin(2 * np.pi * (x + phase + np.array([0, 1 / 3, 2 / 3])))).astype(np.uint8)
        frame = np.ascontiguousarray(np.repeat(frame, SIZE[1], axis=0))
        cv2.putText(frame, f"{i:04d}", (90, 135), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
        writer.write(frame)
    writer.release()
    return path


def jpegs_of(clip: Path) -> list[bytes]:
    cap = cv2.VideoCapture(str(clip))
    jpegs = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    if not jpegs:
        raise SystemExit(f"cannot decode {clip}")
    return jpegs


def loop_server(jpegs: list[bytes], fps: float, stop: threading.Event) -> ThreadingHTTPServer:
    """``/loop.mjpg`` on a free loopback port: the clip's frames at ``fps``, over and over."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=loop")
            self.end_headers()
            period, due, i = 1.0 / fps, time.perf_counter(), 0
            try:
                while not stop.is_set():
                    jpeg = jpegs[i % len(jpegs)]
                    self.wfile.write(b"--loop\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpeg), jpeg))
                    i, due = i + 1, due + period
                    stop.wait(max(0.0, due - time.perf_counter()))
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


# -- the child and its resources ------------------------------------------------------------------
def resources(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    field = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+):\s+(\d+)", status, re.MULTILINE)}
    return {"threads": field["Threads"], "fds": len(os.listdir(f"/proc/{pid}/fd")), "rss_mb": field["VmRSS"] / 1024}


def wait_for_port(stderr_path: Path, child: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"live view: http://127\.0\.0\.1:(\d+)/", stderr_path.read_text())
        if found:
            return int(found.group(1))
        if child.poll() is not None:
            raise SystemExit(f"edgecam run ended early:\n{stderr_path.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"no 'live view' line within {timeout} s:\n{stderr_path.read_text()}")


def read_for(port: int, path: str, seconds: float, marker: bytes, out: dict) -> None:
    """GET ``path``, read for ``seconds`` and count ``marker`` (a frame's boundary, an event's data)."""
    count, tail, status = 0, b"", None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sock.settimeout(max(0.05, end - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    break
                if not data:
                    break
                if status is None:
                    status = int(data.split(b" ", 2)[1])
                chunk = tail + data
                count += chunk.count(marker) - tail.count(marker)
                tail = chunk[-len(marker):]
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out.update(status=status, count=count)


def viewer(port: int, hold: float) -> tuple[dict, dict]:
    """One visit: the stream and the events side by side for ``hold`` seconds."""
    stream, events = {}, {}
    threads = [threading.Thread(target=read_for, args=(port, "/stream.mjpg", hold, b"--edgecam-frame", stream)),
               threading.Thread(target=read_for, args=(port, "/api/events", hold, b"data: ", events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=hold + 15)
    return stream, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the soak (after the warm-up)")
    parser.add_argument("--every", type=float, default=4.0, help="seconds from one viewer's arrival to the next")
    parser.add_argument("--hold", type=float, default=1.5, help="seconds each viewer stays")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the looping source")
    parser.add_argument("--clip", type=float, default=4.0, help="seconds of the looped mp4")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the start sample (3 viewers)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of quiet before the start and end samples")
    parser.add_argument("--rss-mb", type=float, default=5.0, help="allowed RSS growth start -> end (MB)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgecam-soak-") as tmp:
        folder, stop = Path(tmp), threading.Event()
        feed = loop_server(jpegs_of(make_clip(folder, args.clip, args.fps)), args.fps, stop)
        source = f"http://127.0.0.1:{feed.server_address[1]}/loop.mjpg"
        command = [sys.executable, "-m", "edgecam", "run", str(MODEL), "--headless", "--serve", "127.0.0.1:0",
                   "--source", source]
        log("$ " + " ".join(command))
        stdout, stderr = folder / "stdout.jsonl", folder / "stderr.txt"
        env = {**os.environ, "HOME": str(folder), "TMPDIR": str(folder)}
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            child = subprocess.Popen(command, stdout=out, stderr=err, cwd=folder, env=env)
        try:
            port = wait_for_port(stderr, child)
            log(f"child {child.pid} serving on 127.0.0.1:{port}; warm-up {args.warmup:g} s")
            warm_end = time.monotonic() + args.warmup
            for _ in range(3):
                viewer(port, args.hold)
            time.sleep(max(0.0, warm_end - time.monotonic()))
            time.sleep(args.settle)
            start = resources(child.pid)
            log(f"start: {start}")

            during, visits, failed = [], 0, []
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.minutes * 60:
                arrive = time.monotonic()
                sampler = threading.Timer(args.hold / 2, lambda: during.append(resources(child.pid)))
                sampler.start()  # a sample while the viewer is connected
                stream, events = viewer(port, args.hold)
                sampler.join()
                visits += 1
                if stream.get("status") != 200 or not stream.get("count") or events.get("status") != 200 \
                        or not events.get("count"):
                    failed.append((visits, stream, events))
                time.sleep(max(0.0, arrive + args.every / 2 - time.monotonic()))
                during.append(resources(child.pid))  # a sample between viewers
                if visits % 15 == 0:
                    log(f"{time.monotonic() - t0:5.0f} s: {visits} viewers; now {during[-1]}; "
                        f"last: {stream.get('count')} frames, {events.get('count')} events")
                time.sleep(max(0.0, arrive + args.every - time.monotonic()))
                if child.poll() is not None:
                    raise SystemExit(f"edgecam run ended during the soak:\n{stderr.read_text()[-3000:]}")
            time.sleep(args.settle)
            end = resources(child.pid)
            log(f"end: {end}")
        finally:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            stop.set()
            feed.shutdown()
            feed.server_close()
        summary = [line for line in stderr.read_text().splitlines() if "frames," in line]
        with open(stdout, "rb") as lines:
            results = sum(1 for _ in lines)

    table = [("start (after warm-up)", start), ("during: lowest", {k: min(s[k] for s in during) for k in start}),
             ("during: highest", {k: max(s[k] for s in during) for k in start}), ("end (after settle)", end)]
    print(f"\nedgecam run --serve soak: {args.minutes:g} min, a viewer every {args.every:g} s for {args.hold:g} s "
          f"({visits} viewers), source {args.fps:g} FPS loop")
    print(f"{'':24}{'threads':>8}{'fds':>6}{'RSS MB':>9}")
    for name, s in table:
        print(f"{name:24}{s['threads']:>8}{s['fds']:>6}{s['rss_mb']:>9.1f}")
    print(f"child: {summary[-1] if summary else '(no summary line)'}; {results} JSON lines")
    checks = {
        "threads back to start": end["threads"] == start["threads"],
        "fds back to start": end["fds"] == start["fds"],
        f"RSS within {args.rss_mb:g} MB of start": abs(end["rss_mb"] - start["rss_mb"]) <= args.rss_mb,
        "every viewer got frames and events": not failed,
    }
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if failed:
        print(f"  viewers without frames or events: {failed[:5]}")
    verdict = all(checks.values())
    print("PASS" if verdict else "FAIL")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
