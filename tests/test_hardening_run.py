"""`edgecam run` under hostile conditions: secrets in stream URLs, a full disk while recording,
shell hooks next to the JSON stream, huge photos, streams that never deliver a frame, SIGTERM,
and foreign models that leave normalisation and softmax to the caller.

The CLI runs for real in a Python that cannot import TensorFlow (``BLOCK_TENSORFLOW``), against
the committed tiny models and loopback servers; the frame loop runs in-process where a fake
source is the point.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import BLOCK_TENSORFLOW, COLORS_MODEL, NO_HEAVY_MODULES
from edgecam.config.camera import RunConfig
from edgecam.runtime import capture, loop, sources
from edgecam.runtime.classifier import Classifier
from edgecam.runtime.sources import Source, SourceError, parse_source
from helpers import DATA, isolated_env, read_to_exit

# Float32 input in [-1, 1], raw logits out, no metadata (tests/data/make_fixtures.py).
COLORS_LOGITS_MODEL = DATA / "colors_logits.tflite"
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
PASSWORD = "s3cr3tPW"


# -- helpers --------------------------------------------------------------------------------------
def edgecam_cmd(*args) -> list[str]:
    return [sys.executable, "-c", BLOCK_TENSORFLOW, *map(str, args)]


def edgecam(tmp_path: Path, *args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The real CLI, TensorFlow blocked, writing nowhere but tmp_path."""
    return subprocess.run(edgecam_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=isolated_env(tmp_path, display=False), cwd=tmp_path, **kwargs)


def log_lines(proc) -> list[str]:
    """stderr lines before the heavy-modules line, after checking that line and that there is no traceback."""
    lines = proc.stderr.splitlines()
    assert lines and lines[-1] == NO_HEAVY_MODULES, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[:-1]


def json_lines(stdout: str) -> list[dict]:
    results = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(r, dict) for r in results), stdout[:2000]
    return results


def solid(name: str, h: int = 48, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), COLORS[name], np.uint8)


def write_image(path: Path, rgb: np.ndarray, *params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    return path


def image_folder(folder: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_image(folder / f"{i:02d}-{name}.png", solid(name))
    return folder


def write_video(path: Path, frames, fourcc: str = "FFV1", fps: float = 25.0) -> Path:
    writer = None
    for rgb in frames:
        if writer is None:
            h, w = rgb.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
            assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def frames_in(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


@contextlib.contextmanager
def http_server(handler):
    """A loopback HTTP server in a thread; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def multipart(self, parts) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for body in parts:
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body + b"\r\n")
            self.wfile.flush()


# -- 1. credentials in stream URLs ----------------------------------------------------------------
@pytest.mark.parametrize("text, shown", [
    ("rtsp://admin:pw@192.168.1.20:554/stream1", "rtsp://***@192.168.1.20:554/stream1"),
    ("http://admin:PASSWORD@cam/s.mjpg", "http://***@cam/s.mjpg"),
    ("https://user@cam.example.com:8443/live?x=1", "https://***@cam.example.com:8443/live?x=1"),
    ("RTSP://Admin:pw@cam/s", "RTSP://***@cam/s"),
    ("rtsp://admin:p@ss@w0rd@cam/s", "rtsp://***@cam/s"),  # unencoded @ in the password
    ("rtsp://admin:p/ss@cam/s", "rtsp://***@cam/s"),  # unencoded / in the password
    ("http://admin:p%40ss@[fe80::1]:8080/s", "http://***@[fe80::1]:8080/s"),
    ("http://:@cam/s", "http://***@cam/s"),
    ("Error: http://a:b@cam/x: cannot open; rtsp://c:d@cam2/y",  # every URL in a message
     "Error: http://***@cam/x: cannot open; rtsp://***@cam2/y"),
    ("http://cam/video.cgi?user=admin&pwd=secret&res=hd", "http://cam/video.cgi?user=admin&pwd=***&res=hd"),
    ("rtsp://cam/live?password=abc&token=xyz", "rtsp://cam/live?password=***&token=***"),
    # Nothing to hide: unchanged.
    ("rtsp://192.168.1.20:554/stream1", "rtsp://192.168.1.20:554/stream1"),
    ("http://cam/s.mjpg?fps=10", "http://cam/s.mjpg?fps=10"),
    ("photos/*.jpg", "photos/*.jpg"),
    ("me@example.com and /dev/video0", "me@example.com and /dev/video0"),
    ("", ""),
])
def test_redact_url_hides_user_info_and_keeps_host_and_path(text, shown):
    assert sources.redact_url(text) == shown
    assert sources.redact_url(shown) == shown  # idempotent


def test_sources_show_redacted_names_but_open_the_real_url():
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:9/stream"
    source = parse_source(url)
    assert source.name == "rtsp://***@127.0.0.1:9/stream" and source.spec == url
    with pytest.raises(SourceError) as info:  # a typo in the scheme: taken for a file name
        parse_source(f"htp://admin:{PASSWORD}@cam/s.mjpg")
    assert PASSWORD not in str(info.value) and str(info.value).startswith("htp://***@cam/s.mjpg: ")
    assert PASSWORD not in str(SourceError(f"{url}: cannot open"))


def test_a_stream_with_credentials_that_fails_to_open_never_shows_the_password(tmp_path):
    url = f"http://admin:{PASSWORD}@127.0.0.1:9/x.mjpg"  # port 9 (discard): nothing listens
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", url, "--headless")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert log_lines(proc) == ["Error: http://***@127.0.0.1:9/x.mjpg: cannot open"]
    assert PASSWORD not in proc.stderr + proc.stdout


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
def test_a_stream_with_credentials_is_opened_with_them_and_logged_without(tmp_path):
    """A loopback MJPEG camera that wants Basic auth and drops the connection after 3 frames."""
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(solid("red"), cv2.COLOR_RGB2BGR))[1].tobytes()
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    authorised = []

    class Camera(QuietHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            authorised.append(self.path)
            self.multipart([jpeg] * 3)

    with http_server(Camera) as port:
        url = f"http://admin:{PASSWORD}@127.0.0.1:{port}/s.mjpg"
        proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", url, "--headless", "--hold", "0",
                       "--max-frames", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = log_lines(proc)
    assert PASSWORD not in proc.stderr + proc.stdout
    shown = f"http://***@127.0.0.1:{port}/s.mjpg"
    assert log[0] == f"{COLORS_MODEL}: 3 labels, input 32x32 uint8; source: {shown}"
    assert f"{shown}: no frames, reopening" in log and f"{shown}: reopened" in log
    assert len(authorised) >= 2  # the real URL, credentials and all, opened it (twice)
    assert [r["label"] for r in json_lines(proc.stdout)] == ["red"] * 5


# -- 2. a recording that cannot be written ---------------------------------------------------------
def noise_video(path: Path, count: int = 40) -> Path:
    rng = np.random.default_rng(0)
    return write_video(path, (rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(count)))


def limit_file_size(limit: int):
    def preexec():  # CPython ignores SIGXFSZ, so writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_recording_that_hits_a_full_disk_is_an_error_and_leaves_no_file(tmp_path):
    source = noise_video(tmp_path / "noise.avi")  # mp4v makes ~8 kB of each noisy frame
    out = tmp_path / "recording" / "out.mp4"
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", source, "--headless", "--record", out,
                   preexec_fn=limit_file_size(64 * 1024))
    log = log_lines(proc)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert not any(line.startswith("recorded ") for line in log), log
    assert re.fullmatch(rf"Error: {re.escape(str(out))}: recording failed \(File too large\): (the file cannot be "
                        r"opened|it holds \d+ of 40 frames|its last frame cannot be read), so no video was kept",
                        log[-1]), log[-1]
    assert len(json_lines(proc.stdout)) == 40  # the run itself went on
    assert list(out.parent.iterdir()) == []  # neither the video nor its temp file is left


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_a_complete_recording_is_checked_and_kept(tmp_path, name):
    source = write_video(tmp_path / "colors.avi", [solid(n) for n in ["red", "green", "blue"] * 10])
    out = tmp_path / "recording" / name
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", source, "--headless", "--record", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"recorded 30 frames to {out}" in log_lines(proc)
    assert [p.name for p in out.parent.iterdir()] == [name] and frames_in(out) == 30


# -- 3. --on-change through the shell, beside the JSON stream --------------------------------------
def test_on_change_runs_in_a_shell_with_its_output_on_stderr(tmp_path):
    source = image_folder(tmp_path / "frames", ["red", "red", "red", "green", "green", "green"])
    command = 'echo hello; echo "$EDGECAM_LABEL $EDGECAM_SCORE" >> labels.txt; read line && echo "stdin: $line"'
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", source, "--headless", "--hold", "0",
                   "--on-change", command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json_lines(proc.stdout)  # nothing but JSON lines: the command's echo went elsewhere
    assert [r["label"] for r in results] == ["red"] * 3 + ["green"] * 3
    assert "hello" in proc.stderr.splitlines() and "stdin:" not in proc.stderr  # stdin is /dev/null
    # The command runs in the background and a change that comes while it runs is skipped
    # (documented), so the file holds the first label and maybe the second.
    written = [line.split() for line in (tmp_path / "labels.txt").read_text().splitlines()]
    assert [label for label, _ in written] in (["red"], ["red", "green"])
    assert all(0.99 < float(score) <= 1 for _, score in written)


# -- 4. a huge image --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def huge_red_jpeg(tmp_path_factory) -> Path:
    """12000x9000 (108 MP: 324 MB decoded), flat red at JPEG quality 5: under 2 MB on disk."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    return write_image(path, solid("red", 9000, 12000), cv2.IMWRITE_JPEG_QUALITY, 5)


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
def test_a_huge_image_is_decoded_reduced(huge_red_jpeg, tmp_path):
    source = parse_source(str(huge_red_jpeg), (640, 480))
    source.open()
    frame = source.read()
    assert frame.shape == (1125, 1500, 3)  # 1/8: the longer side is the first step at or above 2 x 640
    assert (np.abs(frame.astype(int) - COLORS["red"]) <= 16).all()  # quality 5 makes 255 into 246
    big = parse_source(str(huge_red_jpeg), (3840, 2160))
    big.open()
    assert big.read().shape == (4500, 6000, 3)  # 1/2 for a 4K request: at most 4096 px are wanted, 3000 is below
    png = write_image(tmp_path / "wide.png", solid("green", 300, 2800))
    small = parse_source(str(png), (320, 240))
    small.open()
    assert small.read().shape == (75, 700, 3)  # 1/4: 700 >= 640


def test_image_size_reads_png_and_jpeg_headers(tmp_path):
    from PIL import Image

    from edgecam.runtime.imagesize import image_size

    rgb = solid("blue", 30, 70)
    assert image_size(write_image(tmp_path / "a.png", rgb)) == (70, 30)
    assert image_size(write_image(tmp_path / "a.jpg", rgb)) == (70, 30)
    assert image_size(write_image(tmp_path / "p.jpg", rgb, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)) == (70, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated for display: the header keeps the stored size
    Image.fromarray(rgb).save(tmp_path / "exif.jpg", exif=exif.tobytes(), comment=b"x" * 5000)
    assert image_size(tmp_path / "exif.jpg") == (70, 30)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert image_size(tmp_path / "gray.png") == (70, 30)
    whole = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[:40])
    (tmp_path / "text.jpg").write_text("not a photo")
    Image.fromarray(rgb).save(tmp_path / "a.webp")
    for other in ("cut.jpg", "text.jpg", "a.webp", "missing.png"):
        assert image_size(tmp_path / other) is None, other  # then decoded as before


# Runs a command and writes its peak RSS (KiB) to argv[1]. The measuring parent must be small:
# Linux starts a child's peak at its parent's (fork copies the memory map and exec folds the old
# map's peak into the process's), so a peak taken by pytest after building a big image says nothing.
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def peak_rss_mb(tmp_path: Path, *args) -> tuple[float, subprocess.CompletedProcess]:
    """Run the CLI through MEASURE; its peak RSS in MiB, and how it ended."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    peak = tmp_path / "peak-rss.txt"
    proc = subprocess.run([sys.executable, "-c", MEASURE, peak, *edgecam_cmd(*args)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=isolated_env(tmp_path, display=False))
    return int(peak.read_text()) / 1024, proc


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
def test_a_huge_image_source_needs_little_memory_and_keeps_its_label(huge_red_jpeg, tmp_path):
    small = write_image(tmp_path / "small" / "red.jpg", solid("red", 480, 640))
    base, proc = peak_rss_mb(tmp_path / "small", "run", COLORS_MODEL, "--source", small, "--headless")
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak, proc = peak_rss_mb(tmp_path, "run", COLORS_MODEL, "--source", huge_red_jpeg, "--headless")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_lines(proc)
    assert [r["label"] for r in json_lines(proc.stdout)] == ["red"]
    full_decode = 12000 * 9000 * 3 / 2**20  # 309 MiB for the BGR image alone
    assert peak - base < full_decode / 10, f"peak {peak:.0f} MiB, {base:.0f} MiB for a 640x480 photo"


# -- 5. a source that never delivers a frame --------------------------------------------------------
class Opens(Source):
    """A live source: ``first`` red frames after the first open, then ``fail_opens`` failed opens,
    then ``later`` frames after each successful open (every read after that returns None)."""

    live = True

    def __init__(self, first: int = 0, fail_opens: int = 0, later: int = 0):
        self.name, self.first, self.fail_opens, self.later = "dead camera", first, fail_opens, later
        self.opens = self.given = 0

    def open(self):
        self.opens += 1
        if 1 < self.opens <= 1 + self.fail_opens:
            raise SourceError(f"{self.name}: cannot open")
        self.given = 0

    def read(self):
        time.sleep(0.002)
        if self.given >= (self.first if self.opens == 1 else self.later):
            return None
        self.given += 1
        return solid("red")


def run_with_deadline(cfg: RunConfig, source: Source, seconds: float) -> dict:
    """``loop.run`` on ``source``, stopped (and failed) if it is still running after ``seconds``."""
    stop, outcome = threading.Event(), {}

    def target():
        try:
            outcome["summary"] = loop.run(cfg, stop=stop, source=source)
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        stop.set()
        thread.join(10)
        pytest.fail(f"loop.run was still running after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


def test_a_live_source_that_never_delivers_ends_with_an_error(monkeypatch, capsys):
    monkeypatch.setattr(capture, "BACKOFF", (0.01, 0.02, 0.05))
    source = Opens()
    source.open()
    with pytest.raises(SourceError) as info:
        run_with_deadline(RunConfig(model=str(COLORS_MODEL), headless=True, hold=0), source, seconds=10)
    assert str(info.value) == "dead camera: no frames after 3 reopen attempts"
    assert source.opens == 1 + 3
    err = capsys.readouterr().err.splitlines()
    assert err.count("dead camera: no frames, reopening") == 3


def test_a_source_that_delivered_frames_is_reopened_for_as_long_as_it_takes(monkeypatch, capsys):
    monkeypatch.setattr(capture, "BACKOFF", (0.01, 0.02))
    source = Opens(first=2, fail_opens=6, later=10**6)  # two frames, six failed reopens, then frames again
    source.open()
    cfg = RunConfig(model=str(COLORS_MODEL), headless=True, hold=0, max_frames=4)
    summary = run_with_deadline(cfg, source, seconds=20)
    assert summary["frames"] == 4 and summary["reconnects"] == 1 and source.opens == 8
    out = capsys.readouterr()
    assert [r["label"] for r in json_lines(out.out)] == ["red"] * 4
    assert out.err.count("dead camera: cannot open; retrying in") == 6


def test_a_file_with_no_decodable_frame_is_an_error(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not a photo")
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", folder, "--headless")
    assert proc.returncode == 1 and proc.stdout == ""
    assert log_lines(proc)[-1] == f"Error: {folder}: no frame could be read"


class GarbageHandler(QuietHandler):
    def do_GET(self):
        if self.path == "/plain":  # 200 and bytes that are no video: OpenCV does not open it
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            self.wfile.write(bytes(range(256)) * 64)
        else:  # an MJPEG stream of parts that are no JPEG: OpenCV opens it, every read fails
            self.multipart([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8] * 20)


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
@pytest.mark.parametrize("path, error", [
    ("/plain", "cannot open"),
    ("/parts", "no frames after 3 reopen attempts"),
])
def test_an_http_stream_opencv_cannot_read_ends_with_one_line(tmp_path, path, error):
    with http_server(GarbageHandler) as port:
        started = time.monotonic()
        proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", f"http://127.0.0.1:{port}{path}", "--headless",
                       timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 1 and proc.stdout == ""
    assert log_lines(proc)[-1] == f"Error: http://127.0.0.1:{port}{path}: {error}"


# -- 6. SIGTERM and Ctrl-C ---------------------------------------------------------------------------
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_exits_143_ctrl_c_130_and_the_recording_is_finalised(tmp_path, signum, code):
    source = write_video(tmp_path / "long.avi", [solid(n) for n in ["red", "green", "blue"] * 1000])
    out = tmp_path / "recording" / "out.mp4"
    proc = subprocess.Popen(edgecam_cmd("run", COLORS_MODEL, "--source", source, "--headless", "--record", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=isolated_env(tmp_path, display=False),
                            # Python ignores SIGINT for good if it starts ignored (as in background jobs)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = [proc.stdout.readline() for _ in range(3)]  # JSON comes first: frames 0 and 1 are recorded
        assert all(first), proc.stderr.read()[-3000:]
        proc.send_signal(signum)
        rest, err = read_to_exit(proc)
    finally:
        proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(first) + rest, err)
    assert proc.returncode == code, err[-3000:]
    log = log_lines(done)
    assert log[-1] == "Interrupted."
    recorded = next(int(m.group(1)) for m in (re.fullmatch(rf"recorded (\d+) frames to {re.escape(str(out))}", line)
                                              for line in log) if m)
    assert 2 <= recorded < 3000 and [p.name for p in out.parent.iterdir()] == ["out.mp4"]
    assert recorded <= frames_in(out) <= recorded + 1


# -- 7. foreign float models: assumed normalisation, logits ----------------------------------------
def test_a_float_model_without_metadata_says_what_it_assumes_and_logits_become_probabilities(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    names = ["red", "green", "blue", "blue", "red"]
    source = image_folder(tmp_path / "frames", names)
    proc = edgecam(tmp_path, "run", COLORS_LOGITS_MODEL, "--labels", labels, "--source", source, "--headless",
                   "--hold", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = log_lines(proc)
    results = json_lines(proc.stdout)
    assert [r["label"] for r in results] == names
    for r in results:
        scores = [t["score"] for t in r["top"]]
        assert all(0 <= s <= 1 for s in scores) and sum(scores) == pytest.approx(1, abs=1e-3), r["top"]
        assert scores[0] > 0.99
    model = str(COLORS_LOGITS_MODEL)
    assert [line for line in log if line.startswith(model + ":")] == [
        f"{model}: no normalisation in the model's metadata: assuming inputs in [-1, 1], (pixel - 127.5) / 127.5 "
        "(for another, use a model whose metadata states mean and std)",
        f"{model}: 3 labels, input 32x32 float32; source: {source}",
        f"{model}: outputs are not probabilities (values from -8 to 16 on the first frame): "
        "applying softmax to them",
    ]


def test_models_with_metadata_and_probabilities_say_nothing_more(tmp_path):
    classifier = Classifier(COLORS_MODEL)
    probs = classifier.classify(solid("green"))
    assert probs.sum() == pytest.approx(1, abs=1e-4) and probs.argmax() == 1
    source = image_folder(tmp_path / "frames", ["red", "blue"])
    proc = edgecam(tmp_path, "run", COLORS_MODEL, "--source", source, "--headless", "--hold", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = log_lines(proc)
    assert not any("normalisation" in line or "softmax" in line for line in log), log


def test_the_classifier_softmaxes_logits_in_process(capsys):
    classifier = Classifier(COLORS_LOGITS_MODEL, labels=["red", "green", "blue"])
    for name in ["blue", "red"]:
        probs = classifier.classify(solid(name))
        assert probs.sum() == pytest.approx(1, abs=1e-5) and classifier.labels[int(probs.argmax())] == name
    err = capsys.readouterr().err
    assert err.count("applying softmax") == 1 and err.count("no normalisation") == 1
