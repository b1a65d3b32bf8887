"""``edgecam datasets get flowers``: download, verify, extract atomically, split; every failure one line.

The download comes from a loopback mirror (an http.server thread on 127.0.0.1) holding a tiny
flowers-layout tarball built here: real photos from flowers-mini when it is there, generated ones
otherwise. EDGECAM_DATASETS_URL and EDGECAM_DATASETS_SHA256 point edgecam at it, as a mirror or a
test would; nothing leaves this machine. The command runs as a real subprocess: its stdout,
stderr and exit code are what a user sees.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from conftest import FLOWERS_MINI
from helpers import isolated_env
from edgecam.datasets import DATASETS, SHA256_ENV, URL_ENV, _addresses, goes_to_test

ARCHIVE = "flower_photos.tgz"
LABELS = ("daisy", "roses", "tulips")
LICENSE = b"All photos: CC BY 2.0 (a test archive).\n"


# -- the archive ----------------------------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generated_photo(label: str, n: int) -> bytes:
    """A 320x240 JPEG: noise around a colour per label (so a model can tell them apart)."""
    base = {"daisy": (230, 230, 210), "roses": (200, 30, 50), "tulips": (240, 160, 20)}.get(label, (90, 160, 60))
    rng = random.Random(f"{label}-{n}")
    img = Image.new("RGB", (320, 240), base)
    pixels = img.load()
    for _ in range(4000):
        x, y = rng.randrange(320), rng.randrange(240)
        pixels[x, y] = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in base)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def recompressed(photo: bytes, k: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(buffer, "JPEG", quality=95 - k % 30, subsampling=k // 30 % 3)
    return buffer.getvalue()


def flower_photos(per_label: int = 10, min_test: int = 2) -> dict[str, dict[str, bytes]]:
    """label -> {file name: JPEG bytes}: flowers-mini's photos when available, else generated ones.

    Re-encoded copies are added until every label has ``min_test`` photos the split rule puts in test/.
    """
    photos: dict[str, dict[str, bytes]] = {}
    for label in LABELS:
        real = sorted((FLOWERS_MINI / label).glob("*.jpg"))[:per_label]
        files = {p.name: p.read_bytes() for p in real} or {
            f"{label}_{n:02d}.jpg": generated_photo(label, n) for n in range(per_label)}
        first, k = next(iter(files.values())), 0
        while sum(goes_to_test(sha256(data)) for data in files.values()) < min_test:
            files[f"{label}_again_{k:02d}.jpg"] = recompressed(first, k)
            k += 1
        photos[label] = files
    return photos


def make_tarball(photos: dict[str, dict[str, bytes]], extra: list[tarfile.TarInfo] = ()) -> bytes:
    """``flower_photos/{LICENSE.txt,<label>/<photo>}`` gzipped, as the real archive is laid out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("flower_photos/LICENSE.txt", LICENSE)
        for label, files in photos.items():
            for name, data in sorted(files.items()):
                add(f"flower_photos/{label}/{name}", data)
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buffer.getvalue()


# -- the mirror -----------------------------------------------------------------------------------
class Mirror:
    """Serves ``files`` on 127.0.0.1 with HTTP Range support; records every request.

    ``cut_at``: stop sending a body at this byte offset of the file (the headers promised all of
    it), as a dropped connection does. ``ranges=False``: ignore Range headers (answer 200).
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.requests: list[tuple[str, str | None]] = []
        self.cut_at: int | None = None
        self.ranges = True
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                mirror.requests.append((self.path, self.headers.get("Range")))
                mirror.answer(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        data = self.files.get(handler.path.lstrip("/"))
        if data is None:
            handler.send_error(404, "Not Found")
            return
        start, wanted = 0, handler.headers.get("Range")
        if wanted and self.ranges:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                handler.send_error(416, "Range Not Satisfiable")
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        end = len(data) if self.cut_at is None else max(start, min(self.cut_at, len(data)))
        handler.wfile.write(data[start:end])
        handler.close_connection = True

    def downloads(self) -> list[tuple[str, str | None]]:
        return [r for r in self.requests if r[0] == f"/{ARCHIVE}"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def photos() -> dict[str, dict[str, bytes]]:
    return flower_photos()


@pytest.fixture(scope="module")
def tarball(photos) -> bytes:
    return make_tarball(photos)


@pytest.fixture
def mirror(tarball):
    server = Mirror({ARCHIVE: tarball})
    yield server
    server.close()


def env_for(tmp_path: Path, mirror: Mirror | None, checksum: str | None = None, **extra: str) -> dict[str, str]:
    """A subprocess environment: caches in tmp_path, downloads from ``mirror`` expecting ``checksum``."""
    env = isolated_env(tmp_path, display=False, EDGECAM_CACHE=str(tmp_path / "cache"), **extra)
    env.pop(URL_ENV, None)
    env.pop(SHA256_ENV, None)
    if mirror is not None:
        env[URL_ENV] = mirror.url
        env[SHA256_ENV] = checksum or sha256(mirror.files[ARCHIVE])
    return env


GET = [sys.executable, "-m", "edgecam", "datasets", "get", "flowers"]


def run_get(env: dict[str, str], *args: str, prefix: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run((prefix or GET) + list(args), capture_output=True, text=True, env=env, timeout=120,
                          **kwargs)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single line a failure prints (progress bars, which redraw with \\r, aside)."""
    lines = [line.rsplit("\r", 1)[-1] for line in proc.stderr.splitlines()]
    lines = [line for line in lines if line.strip() and not line.startswith(("download ", "extract "))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """What a failed or finished run left in the datasets folder besides the lock file."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".flowers.lock") if folder.is_dir() else []


def assert_split(folder: Path, photos: dict[str, dict[str, bytes]]) -> Counter:
    """Every photo exactly once, on the side the documented rule gives, under its label; counts per side."""
    assert (folder / "LICENSE.txt").read_bytes() == LICENSE
    found = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.jpg")}
    expected = {f"{'test' if goes_to_test(sha256(data)) else 'train'}/{label}/{name}": data
                for label, files in photos.items() for name, data in files.items()}
    assert found == expected
    description = json.loads((folder / "dataset.json").read_text())
    sides = Counter(name.split("/")[0] for name in found)
    assert {side: sum(n.values()) for side, n in description["photos"].items()} == sides
    return sides


# -- the rule -------------------------------------------------------------------------------------
def test_split_rule_is_a_fixed_function_of_the_photo_bytes():
    """The documented rule, pinned: sha256(b"edgecam-test-split:" + hex digest) / 2**256 < 0.2."""
    digests = [sha256(str(n).encode()) for n in range(20_000)]
    share = sum(map(goes_to_test, digests)) / len(digests)
    assert 0.19 < share < 0.21
    for digest in digests[:200]:
        value = int(hashlib.sha256(b"edgecam-test-split:" + digest.encode()).hexdigest(), 16)
        assert goes_to_test(digest) == (value / 2**256 < 0.2)
    assert [goes_to_test(sha256(str(n).encode())) for n in range(12)] == [
        goes_to_test(d) for d in digests[:12]]  # no state: same answers in any order


def test_the_production_source_is_pinned_and_a_stray_checksum_cannot_change_it(monkeypatch):
    flowers = DATASETS["flowers"]
    assert flowers.urls[0] == "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
    assert flowers.sha256 == "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
    assert flowers.size == 228_813_984 and flowers.file == ARCHIVE and flowers.top == "flower_photos"
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.setenv(SHA256_ENV, "0" * 64)  # honoured only together with a mirror
    assert _addresses(flowers) == (flowers.urls, flowers.sha256)
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9/mirror/")
    assert _addresses(flowers) == (("http://127.0.0.1:9/mirror/flower_photos.tgz",), "0" * 64)


# -- the happy path ---------------------------------------------------------------------------------
def test_get_downloads_verifies_extracts_and_splits_then_a_second_run_downloads_nothing(tmp_path, mirror, photos):
    env = env_for(tmp_path, mirror)
    first = run_get(env)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "cache" / "datasets" / "flowers"
    assert first.stdout == f"{folder}\n"
    assert "download flower_photos.tgz" in first.stderr  # the progress bar
    sides = assert_split(folder, photos)
    assert f"flowers: {sides['train']} train and {sides['test']} test photos in {folder}" in first.stderr
    assert leftovers(folder.parent) == ["flowers"]  # archive deleted, no temp folder
    assert mirror.downloads() == [(f"/{ARCHIVE}", None)]

    again = run_get(env, "-q")
    assert again.returncode == 0 and again.stdout == first.stdout and again.stderr == ""
    assert len(mirror.requests) == 1  # nothing downloaded


def test_dest_puts_the_folder_elsewhere(tmp_path, mirror, photos):
    proc = run_get(env_for(tmp_path, mirror), "--dest", str(tmp_path / "data"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "data" / "flowers")
    assert_split(tmp_path / "data" / "flowers", photos)
    assert not (tmp_path / "cache" / "datasets").exists()


# -- every failure: one line, non-zero exit, no partial folder ---------------------------------------
def test_checksum_mismatch_deletes_the_download_and_extracts_nothing(tmp_path, mirror):
    wrong = "0" * 64
    proc = run_get(env_for(tmp_path, mirror, checksum=wrong))
    assert proc.returncode == 1
    got = sha256(mirror.files[ARCHIVE])
    assert one_error_line(proc) == (f"Error: {mirror.url}{ARCHIVE}: checksum mismatch (SHA-256 {got}, expected {wrong}); "
                                    "the download was deleted and nothing was extracted")
    assert leftovers(tmp_path / "cache" / "datasets") == []


def test_a_truncated_download_is_one_line_and_the_next_run_resumes_it(tmp_path, mirror, photos):
    size = len(mirror.files[ARCHIVE])
    mirror.cut_at = size // 2
    env = env_for(tmp_path, mirror)
    proc = run_get(env)
    assert proc.returncode == 1
    assert one_error_line(proc) == (f"Error: {mirror.url}{ARCHIVE}: download ended early ({size // 2:,} of {size:,} "
                                    "bytes); run the command again to resume")
    datasets = tmp_path / "cache" / "datasets"
    assert leftovers(datasets) == [f"{ARCHIVE}.part"]  # kept for resuming; no folder
    assert (datasets / f"{ARCHIVE}.part").stat().st_size == size // 2

    mirror.cut_at = None
    proc = run_get(env, "-q")
    assert proc.returncode == 0, proc.stderr
    assert mirror.downloads()[-1] == (f"/{ARCHIVE}", f"bytes={size // 2}-")  # resumed, not restarted
    assert_split(datasets / "flowers", photos)
    assert leftovers(datasets) == ["flowers"]


def test_a_mirror_without_range_support_restarts_the_download_cleanly(tmp_path, mirror, photos):
    datasets = tmp_path / "cache" / "datasets"
    datasets.mkdir(parents=True)
    (datasets / f"{ARCHIVE}.part").write_bytes(b"stale bytes from another file")
    mirror.ranges = False
    proc = run_get(env_for(tmp_path, mirror), "-q")
    assert proc.returncode == 0, proc.stderr
    assert mirror.downloads() == [(f"/{ARCHIVE}", "bytes=29-")]  # asked to resume, got the whole file
    assert_split(datasets / "flowers", photos)


def test_no_network_names_the_host_and_the_offline_way(tmp_path, mirror):
    env = env_for(tmp_path, mirror)
    mirror.close()  # nothing listens on that port any more
    proc = run_get(env)
    assert proc.returncode == 1
    host = mirror.url.removeprefix("http://").rstrip("/")
    folder = tmp_path / "cache" / "datasets" / "flowers"
    assert one_error_line(proc) == (
        f"Error: could not reach {host}: Connection refused; on an offline machine put the flowers folder "
        f"(train/ and test/, one folder per label) at {folder}, or pass data.path=... to edgecam finetune")
    assert leftovers(folder.parent) == []


def test_a_missing_file_on_the_mirror_is_its_http_status(tmp_path, mirror):
    mirror.files.clear()
    proc = run_get(env_for(tmp_path, mirror, checksum="1" * 64))
    assert proc.returncode == 1
    assert one_error_line(proc) == f"Error: {mirror.url}{ARCHIVE}: HTTP 404 Not Found"


def test_an_unknown_dataset_is_refused():
    proc = subprocess.run([sys.executable, "-m", "edgecam", "datasets", "get", "cats"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr == "Error: unknown dataset 'cats' (available: flowers)\n"


# -- extraction: atomic, safe, and full disks --------------------------------------------------------
def place_archive(tmp_path: Path, data: bytes) -> Path:
    """Put ``data`` where a finished download leaves it (as if a run had stopped before extracting)."""
    datasets = tmp_path / "cache" / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    (datasets / ARCHIVE).write_bytes(data)
    return datasets


# Runs the CLI with tarfile's extract stopped after a few members: by SIGKILL (a crash) or SIGTERM.
STOP_DURING_EXTRACT = """
import os, signal, sys, tarfile
sig = getattr(signal, sys.argv.pop(1))
original, done = tarfile.TarFile.extract, []
def extract(self, *args, **kwargs):
    done.append(1)
    if len(done) == 4:
        os.kill(os.getpid(), sig)
    return original(self, *args, **kwargs)
tarfile.TarFile.extract = extract
from edgecam.cli import main
sys.argv = ["edgecam"] + sys.argv[1:]
main()
"""


def test_a_crash_during_extraction_leaves_no_folder_and_the_next_run_finishes_without_downloading(
        tmp_path, mirror, photos):
    datasets = place_archive(tmp_path, mirror.files[ARCHIVE])
    env = env_for(tmp_path, mirror)
    crash = run_get(env, "datasets", "get", "flowers", prefix=[sys.executable, "-c", STOP_DURING_EXTRACT, "SIGKILL"])
    assert crash.returncode == -signal.SIGKILL
    left = leftovers(datasets)
    assert ARCHIVE in left and "flowers" not in left
    assert any(name.startswith(".flowers.") and name.endswith(".tmp") for name in left)  # what the crash left

    proc = run_get(env, "-q")
    assert proc.returncode == 0, proc.stderr
    assert mirror.requests == []  # the verified archive was reused
    assert_split(datasets / "flowers", photos)
    assert leftovers(datasets) == ["flowers"]  # the crash's temp folder is gone too


def test_sigterm_during_extraction_removes_its_temp_folder(tmp_path, mirror):
    datasets = place_archive(tmp_path, mirror.files[ARCHIVE])
    proc = run_get(env_for(tmp_path, mirror), "datasets", "get", "flowers",
                   prefix=[sys.executable, "-c", STOP_DURING_EXTRACT, "SIGTERM"])
    assert proc.returncode != 0 and proc.stderr.strip().endswith("Interrupted.")
    assert leftovers(datasets) == [ARCHIVE]


def limit_file_size(limit: int):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_during_extraction_is_one_line_and_leaves_no_folder(tmp_path, mirror, photos):
    """RLIMIT_FSIZE makes any write past ``limit`` bytes fail with EFBIG, as a full disk fails with ENOSPC."""
    datasets = place_archive(tmp_path, mirror.files[ARCHIVE])
    largest = max(len(data) for files in photos.values() for data in files.values())
    proc = run_get(env_for(tmp_path, mirror), preexec_fn=limit_file_size(largest - 1))
    assert proc.returncode == 1
    assert one_error_line(proc) == (f"Error: {datasets}: cannot extract {ARCHIVE} (File too large); free some space "
                                    "and run the command again")
    assert leftovers(datasets) == [ARCHIVE]  # kept: the next run extracts without downloading
    assert mirror.requests == []

    proc = run_get(env_for(tmp_path, mirror), "-q")
    assert proc.returncode == 0, proc.stderr
    assert_split(datasets / "flowers", photos)


@pytest.mark.parametrize("member", ["link", "dotdot", "absolute"])
def test_an_archive_with_a_link_or_a_path_outside_is_refused_whole(tmp_path, photos, member):
    info = tarfile.TarInfo({"link": "flower_photos/daisy/evil.jpg", "dotdot": "flower_photos/../../evil.txt",
                            "absolute": "/etc/edgecam-evil.txt"}[member])
    if member == "link":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info.size = 4
    data = make_tarball(photos, [info])
    server = Mirror({ARCHIVE: data})
    try:
        proc = run_get(env_for(tmp_path, server), "-q")
    finally:
        server.close()
    assert proc.returncode == 1
    datasets = tmp_path / "cache" / "datasets"
    kind = "a link" if member == "link" else "a path outside the folder"
    assert one_error_line(proc) == f"Error: {datasets / ARCHIVE}: refusing to extract {info.name!r} ({kind}); " \
                                   "nothing was extracted"
    assert leftovers(datasets) == [ARCHIVE]
    assert not (tmp_path / "evil.txt").exists() and not Path("/etc/edgecam-evil.txt").exists()


def test_a_folder_in_the_way_is_named(tmp_path, mirror):
    datasets = tmp_path / "cache" / "datasets"
    (datasets / "flowers" / "my-own").mkdir(parents=True)
    proc = run_get(env_for(tmp_path, mirror))
    assert proc.returncode == 1
    assert one_error_line(proc) == (f"Error: {datasets / 'flowers'}: exists but holds no train/ folder; "
                                    "move it away or pass --dest DIR")
    assert mirror.requests == []


# -- acceptance: the README's first command on a fresh clone with no ../shared -------------------------
REPO = Path(__file__).resolve().parents[1]


def fresh_clone(dest: Path) -> tuple[Path, int]:
    """``git clone`` of this repository's HEAD, plus the work tree's uncommitted changes (none once committed).

    Returns the clone and how many files the work tree changed over HEAD.
    """
    def git(*args: str) -> list[str]:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=True, timeout=120).stdout
        return [name for name in out.decode().split("\0") if name]

    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], check=True, timeout=300,
                   capture_output=True)
    changed = git("ls-files", "-z", "--modified", "--others", "--exclude-standard")
    for name in changed:
        source, target = REPO / name, dest / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        else:  # deleted in the work tree
            target.unlink(missing_ok=True)
    return dest, len(changed)


@pytest.mark.slow
def test_make_demo_on_a_fresh_clone_without_shared_downloads_trains_and_evaluates(tmp_path, mirror, photos):
    """`make demo` in a clone with no ../shared beside it: the photos come from the (loopback) download.

    The clone reuses this venv (VENV=..., its install step marked done with -o) with the clone's own
    code first on the path; the weights come in through WEIGHTS= (offline here; Keras would download
    them), and DEMO_ARGS keeps the run small (MobileNet v1 0.25, a few epochs).
    """
    from conftest import V1_WEIGHTS, need

    need(V1_WEIGHTS)
    venv = Path(sys.prefix)
    for tool in ("git", "make"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    if not (venv / "bin" / "edgecam").is_file():
        pytest.skip(f"{venv} is not a venv with edgecam installed (run make install)")
    clone, changed = fresh_clone(tmp_path / "work" / "edgecam")
    assert not (clone.parent / "shared").exists() and not (clone / "runs").exists()
    env = env_for(tmp_path, mirror, PYTHONPATH=str(clone), TF_CPP_MIN_LOG_LEVEL="2")
    for key in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"):  # under `make test`: a make of its own
        env.pop(key, None)
    which = subprocess.run([venv / "bin" / "python", "-c", "import edgecam; print(edgecam.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert which.stdout.startswith(str(clone)), which.stdout  # the clone's code, not this work tree's

    start = time.monotonic()
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", f"{venv}/.installed", "demo", f"VENV={venv}", f"WEIGHTS=model.weights={V1_WEIGHTS}",
         "DEMO_ARGS=model.backbone=mobilenet_v1 model.alpha=0.25 train.epochs=30 train.learning_rate=0.003 "
         "train.augment.views=0"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"make demo on a fresh clone ({changed} uncommitted files copied over HEAD): {took:.0f} s\n{proc.stdout}")

    folder = tmp_path / "cache" / "datasets" / "flowers"
    sides = assert_split(folder, photos)
    assert mirror.downloads() == [(f"/{ARCHIVE}", None)]
    run = (clone / "runs" / "flowers" / "last").resolve()
    assert run == clone / "runs" / "flowers" / "1"
    for name in ("model.tflite", "report.md", "report.json", "evaluate/metrics.json", "evaluate/predictions.csv"):
        assert (run / name).stat().st_size > 0, name
    report = json.loads((run / "report.json").read_text())
    assert Path(report["data"]["root"]).resolve() == folder.resolve()  # trained on the download
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())["metrics"]
    assert metrics["images"] == sides["test"]
    assert f"accuracy: {metrics['accuracy']:.4f} on {sides['test']} images" in proc.stdout  # evaluate's summary
    assert "test accuracy:" in proc.stdout and "camera_shift accuracy:" in proc.stdout and proc.stdout.rstrip().endswith(
        "results: runs/flowers/last/ (report.md, model.tflite, confusion_matrix.png, evaluate_camera_shift/)")
    shifted = json.loads((run / "evaluate_camera_shift" / "metrics.json").read_text())["metrics"]
    assert shifted["images"] == sides["test"]  # the camera-shift copy of the downloaded test split, evaluated
