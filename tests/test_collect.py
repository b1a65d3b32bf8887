"""``edgecam collect``: labelled photos from a camera, by key, HTTP and the browser page, into
folders that ``edgecam finetune`` takes as they are.

The camera is a fake live source showing real photos (flowers-mini); see test_serve.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FLOWERS_MINI, WEIGHTS
from edgecam.cli import cli
from edgecam.collect import CollectConfig, CollectError, Collector, collect, draw_counts, existing_labels
from edgecam.runtime.capture import Frame
from test_serve import FakeCamera, browser, request, status_of, wait_until  # noqa: F401  (browser: fixture)

LABELS = ("daisy", "roses", "tulips")
JSON = {"Content-Type": "application/json"}


def photos_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    return image


@contextlib.contextmanager
def running_collect(dataset: Path, camera: FakeCamera, labels=LABELS, **options):
    """``collect --serve`` in a thread on a free loopback port; yields (server, summary dict)."""
    cfg = CollectConfig(dataset=dataset, labels=tuple(labels), serve=options.pop("serve", "127.0.0.1:0"), **options)
    ready: queue.Queue = queue.Queue()
    stop, failures, summary = threading.Event(), [], {}

    def target():
        try:
            summary.update(collect(cfg, stop=stop, source=camera, on_ready=ready.put))
        except BaseException as exc:
            failures.append(exc)
            ready.put(None)

    thread = threading.Thread(target=target, name="collect", daemon=True)
    thread.start()
    server = ready.get(timeout=30)
    if server is None:
        raise failures[0]
    try:
        wait_until(lambda: server.page.frame >= 0, 20, "the first camera frame")
        yield server, summary
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "collect did not stop"
    if failures:
        raise failures[0]


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

    preview = cv2.cvtColor(frames[3].rgb, cv2.COLOR_RGB2BGR)
    assert draw_counts(preview, LABELS, collector.counts, flash="daisy").shape == (480, 640, 3)
    assert existing_labels(root) == ["daisy", "roses", "tulips"]


def test_a_frame_is_saved_under_one_label_only(tmp_path, monkeypatch):
    """Two quick saves (say daisy, then roses) never store the same frame twice: finetune would drop both."""
    monkeypatch.setattr("edgecam.collect.FRAME_WAIT", 0.2)
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
    with running_collect(root, camera, burst=4, interval=0.1) as (server, summary):
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

    args = [sys.executable, "-m", "edgecam", "finetune", "-q", f"data.path={root}", f"model.weights={WEIGHTS}",
            f"output={tmp_path / 'runs'}", f"cache={tmp_path / 'cache'}", "name=collected",
            "model.backbone=mobilenet_v1", "model.alpha=0.25", "train.epochs=5", "train.augment.views=0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "collected" / "1"
    assert (run_dir / "labels.txt").read_text() == "daisy\nroses\ntulips\n"
    report = json.loads((run_dir / "report.json").read_text())
    assert not report["data"]["skipped"] and not report["data"]["duplicates"], report["data"]
    assert not report["data"]["conflicts"], report["data"]["conflicts"]
    assert sum(sum(split.values()) for split in report["data"]["counts"].values()) == 24
    assert (run_dir / "model.tflite").stat().st_size > 0


# -- the command line ----------------------------------------------------------------------------
def test_collect_cli_errors(tmp_path):
    runner = CliRunner()
    data = str(tmp_path / "data")
    result = runner.invoke(cli, ["collect", data])
    assert result.exit_code == 2 and "Error: --labels: name the labels, e.g. --labels mug,keys,nothing" in result.stderr
    for labels, message in (
        ("a,a", "Error: --labels: a label is listed twice (a, a)\n"),
        ("a,../b", "Error: --labels: '../b' cannot be a folder name (use letters, digits, - or _)\n"),
        ("a,.hidden", "Error: --labels: '.hidden' cannot be a folder name (use letters, digits, - or _)\n"),
        ("a,b,c,d,e,f,g,h,i,j", "Error: --labels: the window has keys 1-9, so at most 9 labels (got 10); "
                                "the --serve page takes any number\n"),
    ):
        result = runner.invoke(cli, ["collect", data, "--labels", labels])
        assert (result.exit_code, result.stderr) == (2, message), labels
    result = runner.invoke(cli, ["collect", data, "--labels", "a,b", "--serve", "0.0.0.0:0", "--token", "abc"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: --token: use at least 8")
    result = runner.invoke(cli, ["collect", data, "--labels", "a,b", "--resolution", "big"])
    assert result.exit_code == 2 and result.stderr == "Error: --resolution: expected WIDTHxHEIGHT (e.g. 640x480), got 'big'\n"
    assert not (tmp_path / "data").exists()  # nothing is created before the options are valid


def test_collect_cli_serves_and_needs_no_window(tmp_path):
    """`collect --serve` on an image folder: starts, prints the page, ends with the folder; no window needed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "edgecam", "collect", str(data), "--labels", "mug,keys",
                           "--source", str(FLOWERS_MINI / "daisy"), "--serve", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "collect page: http://127.0.0.1:" in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"saved 0 photos to {data}: mug +0 (0), keys +0 (0)"
    assert sorted(p.name for p in data.iterdir()) == ["keys", "mug"]
    # Without --serve it needs a display: a one-line error (OpenCV's Qt build would abort instead).
    proc = subprocess.run([sys.executable, "-m", "edgecam", "collect", str(tmp_path / "other"), "--labels", "mug",
                           "--source", str(FLOWERS_MINI / "daisy")], capture_output=True, text=True, timeout=120,
                          env=env)
    assert (proc.returncode, proc.stderr) == (1, "Error: no display for the preview window (DISPLAY is not set); "
                                                 "use --serve PORT to collect from a browser\n")
    assert not (tmp_path / "other").exists()
