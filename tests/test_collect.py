"""``edgecam collect``: labelled photos from a camera, by key, HTTP and the browser page, into
folders that ``edgecam finetune`` takes as they are.

The camera is a fake live source showing real photos (flowers-mini), helpers.FakeCamera; only
the finetune test (marked slow) uses TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import BLOCK_TENSORFLOW, FLOWERS_MINI, NO_HEAVY_MODULES, V1_WEIGHTS, WEIGHTS, need
from helpers import LABELS, FakeCamera, in_thread, isolated_env, request, status_of, wait_until
from edgecam.cli import cli
from edgecam.collect.photos import CollectError, Collector, existing_labels
from edgecam.collect.session import collect, draw_counts
from edgecam.config.camera import CollectConfig, ServeConfig
from edgecam.runtime.capture import Frame

JSON = {"Content-Type": "application/json"}


def photos_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return image


@contextlib.contextmanager
def running_collect(dataset: Path, camera: FakeCamera, labels=LABELS, **options):
    """``collect`` with its page on a free loopback port, in a thread, once the first frame is in.

    Yields (server, outcome); ``outcome["result"]`` is collect's summary once the block has ended.
    """
    cfg = CollectConfig(dataset=str(dataset), labels=tuple(labels), serve=ServeConfig(address="127.0.0.1:0"),
                        **options)
    assert cfg.validate() is None  # built directly, so checked here (the loader would)
    target = functools.partial(collect, cfg, source=camera)
    with in_thread(target, "collect", lambda server: server.page.frame >= 0, "the first camera frame") as running:
        yield running


def post(port: int, action: str, body: dict) -> tuple[int, dict]:
    code, _, data = request(port, f"/api/{action}", "POST", JSON, json.dumps(body).encode())
    return code, json.loads(data)


# -- keys (the window's path, without a window) -----------------------------------------------
def test_number_keys_save_frames_into_label_folders(tmp_path):
    camera = FakeCamera(fps=1000)
    root = tmp_path / "data"
    (root / "roses").mkdir(parents=True)
    (root / "roses" / "old.jpg").write_bytes((FLOWERS_MINI / "roses").glob("*.jpg").__next__().read_bytes())
    collector = Collector(root, LABELS, quality=90)
    assert collector.counts == {"daisy": 0, "roses": 1, "tulips": 0}  # photos already there count

    frames = [Frame(i, 1_700_000_000.0 + i / 10, camera.read()) for i in range(4)]
    first = collector.key(ord("1"), frames[0])
    second = collector.key(ord("1"), frames[1])
    third = collector.key(ord("3"), frames[2])
    assert first.parent == root / "daisy" and second.parent == root / "daisy" and third.parent == root / "tulips"
    assert first.name != second.name and first.name.startswith("2023") and first.suffix == ".jpg"
    for path, frame in ((first, frames[0]), (third, frames[2])):
        image = decode(path)
        assert image.shape == (480, 640, 3)
        # The saved photo is the raw frame (no overlay), as JPEG.
        assert np.abs(image.astype(int) - cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)).mean() < 4
    for key in (ord("4"), ord("0"), ord("q"), -1, 0x10FFFF + 5):  # no 4th label, not a label key
        assert collector.key(key, frames[3]) is None
    assert collector.counts == {"daisy": 2, "roses": 1, "tulips": 1}
    assert collector.saved == {"daisy": 2, "roses": 0, "tulips": 1}
    assert not [p for p in root.rglob("*") if p.is_file() and p.suffix != ".jpg"]  # no temp files left

    assert existing_labels(root) == ["daisy", "roses", "tulips"]


def green_rows(drawn: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Rows where drawing put draw_counts' green: changed pixels that are clearly green (white text never is)."""
    b, g, r = (drawn[..., i].astype(int) for i in range(3))
    green = (g > 150) & (g - np.maximum(b, r) > 80) & (drawn != frame).any(axis=2)
    return np.flatnonzero(green.any(axis=1))


def test_draw_counts_darkens_a_panel_and_flashes_the_saved_label():
    """The window's key help: a darkened panel at the top left, the label just saved in green."""
    camera = FakeCamera(fps=1000)
    frame = cv2.cvtColor(camera.read(), cv2.COLOR_RGB2BGR)
    counts = {"daisy": 2, "roses": 1, "tulips": 0}

    plain = frame.copy()
    assert draw_counts(plain, LABELS, counts) is plain  # drawn in place, like the overlay
    h, w = frame.shape[:2]
    # Above the first row of text the panel is the frame at 35 % brightness; far from it, untouched.
    assert np.array_equal(plain[:4, :120], (frame[:4, :120] * 0.35).astype(np.uint8))
    assert np.array_equal(plain[h // 2:, w // 2:], frame[h // 2:, w // 2:])
    white = (plain != frame).any(axis=2) & (plain >= 200).all(axis=2)
    assert white.sum() > 200 and white[: h // 2, : w // 2].sum() == white.sum()  # white text on the panel
    assert not green_rows(plain, frame).size  # nothing flashes

    flashed = {}
    for label in LABELS:
        image = draw_counts(frame.copy(), LABELS, counts, flash=label)
        flashed[label] = rows = green_rows(image, frame)
        assert rows.size >= 5, label
        # Apart from the flashed row, the same drawing as without a flash.
        band = slice(rows.min() - 3, rows.max() + 4)
        image[band] = plain[band]
        assert np.array_equal(image, plain), label
    # Each label's row is below the previous one's (rows in key order 1, 2, 3), and they never overlap.
    bands = [flashed[label] for label in LABELS]
    assert all(upper.max() < lower.min() for upper, lower in zip(bands, bands[1:])), bands


def test_a_frame_is_saved_under_one_label_only(tmp_path, monkeypatch):
    """Two quick saves (say daisy, then roses) never store the same frame twice: finetune would drop both."""
    monkeypatch.setattr("edgecam.collect.photos.FRAME_WAIT", 0.2)
    camera = FakeCamera(fps=1000)
    collector = Collector(tmp_path / "data", LABELS)
    with pytest.raises(CollectError, match="no new camera frame") as info:
        collector.save("daisy")  # nothing from the camera yet
    assert info.value.status == 503
    collector.offer(Frame(0, 1_700_000_000.0, camera.read()))
    daisy = collector.save("daisy")
    with pytest.raises(CollectError, match="no new camera frame"):
        collector.save("roses")  # the same frame again: waits for a new one, none comes
    collector.offer(Frame(1, 1_700_000_000.1, camera.read()))
    roses = collector.save("roses")
    assert daisy.read_bytes() != roses.read_bytes()
    with pytest.raises(CollectError, match="unknown label 'cats'"):
        collector.save("cats")


# -- HTTP: single photos and bursts -------------------------------------------------------------
def test_save_and_burst_over_http(tmp_path):
    root = tmp_path / "data"
    camera = FakeCamera(fps=20)
    with running_collect(root, camera, burst=4, interval=0.1) as (server, outcome):
        port = server.port
        status = status_of(port)
        assert status["labels"] == list(LABELS) and status["counts"] == {label: 0 for label in LABELS}
        assert status["defaults"] == {"burst": 4, "interval": 0.1} and status["source"] == camera.name

        code, body = post(port, "save", {"label": "roses"})
        assert code == 200 and body["saved"].startswith("roses/") and body["counts"]["roses"] == 1
        decode(root / body["saved"])

        code, body = post(port, "burst", {"label": "tulips"})  # the defaults: 4 photos, 0.1 s apart
        assert code == 202 and body["burst"]["total"] == 4
        wait_until(lambda: not status_of(port)["burst"]["running"], 20, "the burst to finish")
        tulips = photos_in(root / "tulips")
        assert len(tulips) == 4 and len({p.read_bytes() for p in tulips}) == 4  # each a new frame
        status = status_of(port)
        assert status["counts"] == {"daisy": 0, "roses": 1, "tulips": 4} and status["burst"]["done"] == 4
        assert status["last"].startswith("tulips/")

        assert post(port, "burst", {"label": "daisy", "count": 500, "interval": 0.2})[0] == 202
        code, body = post(port, "burst", {"label": "roses", "count": 2, "interval": 0})
        assert code == 409 and "running" in body["error"]
        code, body = post(port, "stop", {})
        assert code == 200 and not body["burst"]["running"] and body["burst"]["done"] < 500

        for action, payload, expected in (
            ("save", {"label": "cats"}, 400), ("save", {}, 400), ("burst", {"label": "daisy", "count": "10"}, 400),
            ("burst", {"label": "daisy", "count": 0}, 400), ("burst", {"label": "daisy", "interval": -1}, 400),
            ("delete", {"label": "daisy"}, 404),
        ):
            assert post(port, action, payload)[0] == expected, (action, payload)
        assert request(port, "/api/save", "POST", {"Content-Type": "text/plain"}, b'{"label": "daisy"}')[0] == 415
        daisies = len(photos_in(root / "daisy"))
    summary = outcome["result"]
    assert summary["counts"] == {"daisy": daisies, "roses": 1, "tulips": 4}
    assert summary["saved"] == summary["counts"]


def test_collect_page_buttons_save_photos_in_chromium(tmp_path, browser):
    root = tmp_path / "data"
    with running_collect(root, FakeCamera(fps=15)) as (server, _):
        browser.open(server.local_url)
        browser.wait_js("document.querySelectorAll('button.label').length === 3", what="the label buttons")
        browser.wait_js("document.querySelector('#stream').naturalWidth > 0", what="the stream")
        assert [browser.js(f"document.querySelectorAll('button.label')[{i}].dataset.label") for i in range(3)] \
            == list(LABELS)

        browser.click("button.label[data-label='roses']")
        wait_until(lambda: photos_in(root / "roses"), 10, "a photo in roses/")
        (photo,) = photos_in(root / "roses")
        assert decode(photo).shape == (480, 640, 3)
        browser.wait_js("document.querySelector(\"button[data-label='roses'] .count\").textContent === '1 photo'",
                        what="the roses count to show 1")
        assert browser.text("#message") == f"saved roses/{photo.name}"

        # Burst mode: 3 photos, as fast as new frames come.
        browser.click("input[name=mode][value=burst]")
        browser.js("document.querySelector('#count').value = 3; document.querySelector('#interval').value = 0; true")
        browser.click("button.label[data-label='daisy']")
        wait_until(lambda: len(photos_in(root / "daisy")) == 3, 15, "three photos in daisy/")
        browser.wait_js("document.querySelector(\"button[data-label='daisy'] .count\").textContent === '3 photos'",
                        what="the daisy count to show 3")
        assert not photos_in(root / "tulips")


# -- straight into finetune ----------------------------------------------------------------------
@pytest.mark.slow
def test_collected_folder_trains_with_finetune(tmp_path):
    """Collect a few photos per label through the HTTP API, then `edgecam finetune data.path=` on it."""
    root = tmp_path / "collected"
    camera = FakeCamera(fps=20)
    with running_collect(root, camera) as (server, _):
        for label in LABELS:
            camera.show(label)  # the camera now sees this kind of flower
            time.sleep(0.3)
            code, _ = post(server.port, "burst", {"label": label, "count": 8, "interval": 0.06})
            assert code == 202
            wait_until(lambda: not status_of(server.port)["burst"]["running"], 30, f"the {label} burst")
    assert {label: len(photos_in(root / label)) for label in LABELS} == {label: 8 for label in LABELS}

    need(V1_WEIGHTS)
    args = [sys.executable, "-m", "edgecam", "finetune", "-q", f"data.path={root}", f"model.weights={WEIGHTS}",
            f"output={tmp_path / 'runs'}", f"cache={tmp_path / 'cache'}", "name=collected",
            "model.backbone=mobilenet_v1", "model.alpha=0.25", "train.epochs=5", "train.augment.views=0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env=isolated_env(tmp_path, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "collected" / "1"
    assert (run_dir / "labels.txt").read_text() == "daisy\nroses\ntulips\n"
    report = json.loads((run_dir / "report.json").read_text())
    assert not report["data"]["skipped"] and not report["data"]["duplicates"], report["data"]
    assert not report["data"]["conflicts"], report["data"]["conflicts"]
    assert sum(sum(split.values()) for split in report["data"]["counts"].values()) == 24
    assert (run_dir / "model.tflite").stat().st_size > 0


# -- the command line ----------------------------------------------------------------------------
def test_collect_cli_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    data = str(tmp_path / "data")
    result = runner.invoke(cli, ["collect", data])
    assert (result.exit_code, result.stderr) == (2, "Error: labels: name the labels, e.g. --labels mug,keys,nothing "
                                                    f"({data} has no label folders yet)\n")
    for labels, message in (
        ("a,a", "--labels: a label is listed twice (a, a)"),
        ("a,../b", "--labels: '../b' cannot be a folder name (use letters, digits, - or _)"),
        ("a,.hidden", "--labels: '.hidden' cannot be a folder name (use letters, digits, - or _)"),
        ("a,b,c,d,e,f,g,h,i,j", "--labels: the window has keys 1-9, so at most 9 labels (got 10); "
                                "the page (serve) takes any number"),
    ):
        result = runner.invoke(cli, ["collect", data, "--labels", labels])
        assert (result.exit_code, result.stderr) == (2, f"Error: command line: {message}\n"), labels
    result = runner.invoke(cli, ["collect", data, "--labels", "a,b", "--serve", "0.0.0.0:0", "--token", "abc"])
    assert (result.exit_code, result.stderr) == (2, "Error: command line: --token: use at least 8 printable "
                                                    "characters without surrounding spaces (or leave it out and one "
                                                    "is generated)\n")
    result = runner.invoke(cli, ["collect", data, "--labels", "a,b", "--resolution", "big"])
    assert (result.exit_code, result.stderr) == (
        2, "Error: command line: --resolution: expected WIDTHxHEIGHT (e.g. 640x480), got 'big'\n")
    result = runner.invoke(cli, ["collect", data, "--labels", "a,b", "--serve", "localhost:"])
    assert (result.exit_code, result.stderr) == (
        2, "Error: command line: --serve: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every interface), "
           "got 'localhost:'\n")
    config = tmp_path / "collect.yaml"
    config.write_text(f"dataset: {data}\nlabels: [a, b]\nserve:\n  address: '8080:host'\n")
    result = runner.invoke(cli, ["collect", "--config", str(config)])
    assert (result.exit_code, result.stderr) == (
        2, f"Error: {config}:4: serve.address: expected [HOST:]PORT (e.g. 8080, or 0.0.0.0:8080 for every "
           "interface), got '8080:host'\n")
    assert not (tmp_path / "data").exists()  # nothing is created before the options are valid

    # Labels taken from the folders get the same checks: ten are too many for the window's keys.
    many = tmp_path / "many"
    for name in "abcdefghij":
        (many / name).mkdir(parents=True)
    result = runner.invoke(cli, ["collect", str(many)])
    assert (result.exit_code, result.stderr) == (
        2, "Error: labels: the window has keys 1-9, so at most 9 labels (got 10); the page (serve) takes any number "
           f"(the folders in {many})\n")


def test_collect_cli_serves_and_needs_no_window(tmp_path):
    """`collect --serve` on an image folder: starts, prints the page, ends with the folder; no window needed."""
    need(FLOWERS_MINI / "daisy")
    env = isolated_env(tmp_path, display=False)
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "collect", str(data), "--labels", "mug,keys",
                           "--source", str(FLOWERS_MINI / "daisy"), "--serve", "0"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "collect page: http://127.0.0.1:" in proc.stderr
    *_, summary, heavy = proc.stderr.splitlines()
    assert summary == f"saved 0 photos to {data}: mug +0 (0), keys +0 (0)" and heavy == NO_HEAVY_MODULES
    assert sorted(p.name for p in data.iterdir()) == ["keys", "mug"]
    # Without --serve it needs a display: a one-line error (OpenCV's Qt build would abort instead).
    proc = subprocess.run([sys.executable, "-m", "edgecam", "collect", str(tmp_path / "other"), "--labels", "mug",
                           "--source", str(FLOWERS_MINI / "daisy")], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (1, "Error: no display to open a window on (DISPLAY is not set); "
                                                 "use --serve PORT to collect from a browser\n")
    assert not (tmp_path / "other").exists()
