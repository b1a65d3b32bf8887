"""``edgecam run --keep DIR`` (issue 11): the frames that teach the model something, kept as JPEG + JSON pairs.

A two-minute video (10 FPS, lossless) made of the colour model's scenes: solid colours (known),
grey and black (unknown to the model), a long static stretch of each kind, colours flickering
frame by frame, pale colours between two labels (a low margin) and fast label changes. It runs
through the real loop with ``--keep``; the pairs it leaves are checked against the contract the
review page and ``finetune`` read. A run killed with SIGKILL while it saves must leave only whole
pairs, before and after the next start's clean-up. Frames of a video file are timed by the video
(``capture.FrameGrabber``), so the rate limits work on a file processed in a second.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import runfixtures as rf
from conftest import BLOCK_TENSORFLOW, COLORS_UNKNOWN_MODEL
from helpers import wait_until
from edgecam import __version__
from edgecam.cli import cli
from edgecam.config.camera import KEEP_REASONS, KeepConfig, RunConfig
from edgecam.config.loader import load_values
from edgecam.errors import ConfigError, OutputError
from edgecam.runtime import keeper as keeper_module
from edgecam.runtime import loop
from edgecam.runtime.control import ModelVersion
from edgecam.runtime.keeper import Keeper, open_keeper
from edgecam.runtime.keeper.select import RateLimit, Reasons, Recent, signature
from edgecam.runtime.keeper.store import PAIR_FILE, TEMP_FILE, Store, stem_of
from edgecam.runtime.overlay import draw_overlay
from edgecam.runtime.result import Result

RED, GREEN, BLUE = (200, 20, 20), (20, 200, 20), (20, 20, 200)
GREY, BLACK = (128, 128, 128), (0, 0, 0)
PALE_RED, PALE_GREEN = (200, 195, 20), (195, 200, 20)  # top 0.56, margin 0.12: known at --threshold 0.5
FPS, SIZE = 10.0, (120, 160)
CONTRACT = {"time", "reason", "top", "label", "unknown_score", "model", "model_sha256", "source", "frame",
            "width", "height", "edgecam"}
SUMMARY = re.compile(r"^keep: (\d+) frames kept in .* \((.*)\); (\d+) dropped \(.*\), (\d+) evicted .*, (\d+) not "
                     r"written; skipped (\d+) near-duplicates and (\d+) over the rate limits$", re.M)


# -- the video ----------------------------------------------------------------------------------
def scenes() -> list[tuple[str, list[tuple[int, int, int]]]]:
    """(name, colour of each frame): 1200 frames, two minutes at 10 FPS."""
    cycle = [c for k in range(10) for c in [(RED, GREEN, BLUE)[k % 3]] * 20]  # a new label every 2 s
    return [
        ("red", [RED] * 100),
        ("grey", [GREY] * 300),  # 30 s static, unknown
        ("green", [GREEN] * 300),  # 30 s static, known and sure
        ("flicker", [(RED, BLUE)[i % 2] for i in range(100)]),  # a new colour every frame: never held
        ("pale", [PALE_RED] * 50 + [PALE_GREEN] * 50),  # low margin
        ("black", [BLACK] * 100),
        ("cycle", cycle),
    ]


def ranges() -> dict[str, range]:
    out, start = {}, 0
    for name, colours in scenes():
        out[name] = range(start, start + len(colours))
        start += len(colours)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    frames = [np.full((*SIZE, 3), c, np.uint8) for _, colours in scenes() for c in colours]
    assert len(frames) == 1200
    return rf.write_video(tmp_path_factory.mktemp("keep-video") / "scenes.avi", frames, "FFV1", FPS)


@pytest.fixture
def no_drops(monkeypatch):
    """A writer queue that never overflows: the video runs at thousands of frames per second, and a busy
    machine's disk could make these runs drop a frame; how many are kept must depend on the rules alone.
    (Dropping has its own test, with a disk that is slow on purpose.)"""
    monkeypatch.setattr(keeper_module, "QUEUE_SIZE", 100_000)


def run_keep(video: Path, folder: Path, capsys, **keep) -> dict:
    """The real loop on ``video`` with ``--keep folder`` (threshold 0.5: the user's rule, so pale colours are
    known with a low margin; the model's own rule calls them unknown); returns the keeper's summary counts."""
    cfg = RunConfig(model=str(COLORS_UNKNOWN_MODEL), source=str(video), threshold=0.5,
                    keep=KeepConfig(dir=str(folder), **keep))
    capsys.readouterr()
    loop.run(cfg, window=False)
    err = capsys.readouterr().err
    match = SUMMARY.search(err)
    assert match, err
    kept, per, dropped, evicted, failed, duplicates, limited = match.groups()
    per_reason = {r: int(n) for r, n in (item.split() for item in per.split(", "))} if per != "none" else {}
    return {"kept": int(kept), "per_reason": per_reason, "dropped": int(dropped), "evicted": int(evicted),
            "failed": int(failed), "duplicates": int(duplicates), "limited": int(limited), "log": err}


def pairs(folder: Path) -> list[dict]:
    """The sidecars in ``folder``, oldest first, each with its ``stem``; asserts every file is part of a pair."""
    names = sorted(p.name for p in folder.iterdir())
    stems = sorted({PAIR_FILE.match(n)["stem"] for n in names if PAIR_FILE.match(n)})
    assert names == sorted(f"{s}.{kind}" for s in stems for kind in ("jpg", "json")), names
    return [{**json.loads((folder / f"{s}.json").read_text()), "stem": s} for s in stems]


def in_any_minute(times: list[float]) -> int:
    """The most of ``times`` within any 60 s (a sliding window)."""
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + 60) for start in times), default=0)


# -- acceptance: the two-minute video ---------------------------------------------------------------
def test_the_video_keeps_frames_for_every_reason_each_pair_by_the_contract(video, tmp_path, capsys, no_drops):
    folder = tmp_path / "kept"
    counts = run_keep(video, folder, capsys, sample=0.05)  # 5%: the static stretches see many sample draws
    kept = pairs(folder)
    assert counts["kept"] == len(kept) and counts["dropped"] == counts["failed"] == counts["evicted"] == 0
    reasons = collections.Counter(k["reason"] for k in kept)
    assert set(reasons) == set(KEEP_REASONS), reasons
    assert reasons == collections.Counter(counts["per_reason"])
    where = ranges()
    frames = {k["frame"]: k for k in kept}
    assert all(frames[f]["reason"] == "unknown" for f in frames if f in where["grey"] or f in where["black"])
    assert any(f in where["flicker"] and k["reason"] == "disagree" for f, k in frames.items())
    assert any(f in where["pale"] and k["reason"] == "low_margin" for f, k in frames.items())
    assert not any(k["reason"] == "flip" and k["frame"] < where["grey"].start for k in kept)  # the first label
    # The long static stretches: kept once (per reason), not 300 times; the rate limits were never needed.
    for name in ("grey", "green"):
        inside = collections.Counter(k["reason"] for k in kept if k["frame"] in where[name])
        assert inside and max(inside.values()) == 1, (name, inside)
    assert collections.Counter(k["reason"] for k in kept if k["frame"] in where["grey"]) == {"unknown": 1}
    assert counts["duplicates"] > 500 and counts["limited"] == 0

    sha = hashlib.sha256(COLORS_UNKNOWN_MODEL.read_bytes()).hexdigest()
    t0 = kept[0]["time"] - kept[0]["frame"] / FPS  # the video's start: frames are timed by the video
    for k in kept:
        assert CONTRACT <= set(k) and set(k) - CONTRACT <= {"announced", "stem"}, sorted(k)
        assert re.fullmatch(rf"\d{{8}}-\d{{6}}-\d{{3}}_{k['reason']}_{k['frame']}", k["stem"])
        assert k["stem"] == stem_of(k["time"], k["reason"], k["frame"])
        assert k["time"] == pytest.approx(t0 + k["frame"] / FPS, abs=0.002)
        assert (k["model"], k["model_sha256"], k["edgecam"]) == ("colors_unknown.tflite", sha, __version__)
        assert (k["source"], k["width"], k["height"]) == (str(video), SIZE[1], SIZE[0])
        assert isinstance(k["unknown_score"], float) and 0.0 <= k["unknown_score"] <= 1.0
        assert len(k["top"]) == 3 and all(set(t) == {"label", "score"} for t in k["top"])
        assert (k["label"] == "unknown") == (k["reason"] == "unknown")
        if k["reason"] == "low_margin":
            assert k["top"][0]["score"] - k["top"][1]["score"] < 0.2 and k["label"] != "unknown"


def test_a_kept_jpeg_is_the_raw_camera_frame_not_the_annotated_one(video, tmp_path, capsys, no_drops):
    folder = tmp_path / "kept"
    run_keep(video, folder, capsys, sample=0.05)
    raw_frames = rf.read_video(video)
    kept = pairs(folder)
    for k in kept:
        jpeg = (folder / f"{k['stem']}.jpg").read_bytes()
        assert jpeg.endswith(b"\xff\xd9")
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        raw = raw_frames[k["frame"]]
        assert rgb.shape == raw.shape
        assert np.abs(rgb.astype(int) - raw).max() <= 4, k["stem"]  # JPEG of a flat colour at quality 90
        annotated = cv2.cvtColor(raw, cv2.COLOR_RGB2BGR)
        draw_overlay(annotated, [(t["label"], t["score"]) for t in k["top"]], 10.0, 1.0, headline=k["label"])
        assert np.abs(rgb.astype(int) - cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB)).max() > 60


def test_with_smoothing_a_frame_that_disagrees_with_the_average_is_kept(video, tmp_path, capsys, no_drops):
    """The sidecar's top is the frame's own (before smoothing): it shows why the frame disagrees."""
    cfg = RunConfig(model=str(COLORS_UNKNOWN_MODEL), source=str(video), threshold=0.5, smoothing=0.8, hold=0.0,
                    max_frames=ranges()["flicker"].stop, keep=KeepConfig(dir=str(tmp_path / "kept"), sample=0.0))
    loop.run(cfg, window=False)
    disagree = [k for k in pairs(tmp_path / "kept") if k["reason"] == "disagree"]
    assert disagree and all(k["frame"] in ranges()["flicker"] for k in disagree)
    # The average still says green while the frame itself is red (or blue).
    assert all(k["top"][0]["label"] != k["label"] == k["announced"] == "green" for k in disagree)


def test_the_rate_limits_hold_per_minute_and_per_hour(video, tmp_path, capsys, no_drops):
    # Duplicates kept too (min_change 0): only the limits stand between a busy scene and the disk.
    every = run_keep(video, tmp_path / "per-minute", capsys, min_change=0.0, sample=0.05)
    kept = pairs(tmp_path / "per-minute")
    assert every["limited"] > 0
    per_reason = collections.defaultdict(list)
    for k in kept:
        per_reason[k["reason"]].append(k["time"])
    assert all(in_any_minute(times) <= 6 for times in per_reason.values())
    assert in_any_minute(per_reason["flip"]) == 6 and len(per_reason["flip"]) > 6  # the limit was reached

    hourly = run_keep(video, tmp_path / "per-hour", capsys, min_change=0.0, sample=0.05, per_hour=3)
    reasons = collections.Counter(k["reason"] for k in pairs(tmp_path / "per-hour"))
    assert max(reasons.values()) == 3 and reasons["flip"] == 3 and hourly["limited"] > every["limited"]


def test_the_quota_evicts_the_oldest_whole_pairs(video, tmp_path, capsys, monkeypatch, no_drops):
    saved: dict[str, int] = {}  # every pair written: its bytes
    real = loop.open_keeper

    def watched(*args, **kwargs):
        keeper = real(*args, **kwargs)
        save = keeper.store.save

        def spy(stem, jpeg, sidecar):
            save(stem, jpeg, sidecar)
            saved[stem] = len(jpeg) + len(sidecar)

        keeper.store.save = spy
        return keeper

    monkeypatch.setattr(loop, "open_keeper", watched)
    folder, quota = tmp_path / "kept", 12_000  # 12 kB: a few pairs of 160x120 frames
    counts = run_keep(video, folder, capsys, min_change=0.0, sample=0.05, quota_mb=quota / 1e6)
    kept = [k["stem"] for k in pairs(folder)]
    total = sum((folder / f"{stem}.{kind}").stat().st_size for stem in kept for kind in ("jpg", "json"))
    assert total <= quota and counts["evicted"] > 0 and total == sum(saved[stem] for stem in kept)
    assert len(saved) == counts["kept"] == len(kept) + counts["evicted"]
    assert kept == sorted(saved)[-len(kept):]  # the newest survive: the oldest went first
    assert total + saved[sorted(saved)[-len(kept) - 1]] > quota  # and no more than needed went


# -- acceptance: SIGKILL while saving --------------------------------------------------------------
def check_whole_pairs(folder: Path, temp_allowed: bool) -> tuple[int, int]:
    """Every sidecar has its JPEG, every JPEG under a final name is whole; returns (pairs, temp files)."""
    names = [p.name for p in folder.iterdir()]
    finals = {n for n in names if PAIR_FILE.match(n)}
    temps = [n for n in names if TEMP_FILE.match(n)]  # hidden: .<stem>.jpg.XXXXXXXX.tmp
    assert set(names) == finals | set(temps), names
    assert temp_allowed or not temps, temps
    for name in finals:
        if name.endswith(".json"):
            assert name[:-5] + ".jpg" in finals, f"{name} without its JPEG"
            assert CONTRACT <= set(json.loads((folder / name).read_text()))
        else:
            data = (folder / name).read_bytes()
            assert data.endswith(b"\xff\xd9") and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) \
                is not None, f"{name} is not a whole JPEG"
            if not temp_allowed:
                assert name[:-4] + ".json" in finals, f"{name} without its sidecar after the clean-up"
    return sum(n.endswith(".json") for n in finals), len(temps)


def test_sigkill_while_saving_leaves_only_whole_pairs(tmp_path):
    rng = np.random.default_rng(0)
    base = [np.full((240, 320, 3), c, np.uint8) for c in (RED, GREEN, BLUE, GREY)]
    frames = [np.clip(base[i // 10 % 4] + rng.integers(-40, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
              for i in range(40)]
    video = rf.write_video(tmp_path / "noisy.mp4", frames * 100, "mp4v")  # 4000 frames: long enough to be killed
    folder, config = tmp_path / "kept", tmp_path / "busy.yaml"
    # Every frame is a candidate and none a duplicate: the writer is never idle.
    config.write_text("keep:\n  sample: 1.0\n  min_change: 0\n  per_minute: 1000000\n  per_hour: 1000000\n")
    args = [sys.executable, "-c", BLOCK_TENSORFLOW, "run", str(COLORS_UNKNOWN_MODEL), "--source", str(video),
            "--headless", "--config", str(config), "--keep", str(folder)]
    left = []  # (temp files, JPEGs without sidecar) after each kill
    for wait_for in (3, 10, 25):  # kill at a few different moments
        start = len(list(folder.glob("*.json"))) if folder.exists() else 0
        with open(tmp_path / "stderr.txt", "w") as err:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(lambda: len(list(folder.glob("*.json"))) >= start + wait_for or proc.poll() is not None,
                       60, "pairs to appear", interval=0.002)
            assert proc.poll() is None, f"the run ended before it was killed:\n{(tmp_path / 'stderr.txt').read_text()}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        complete, temps = check_whole_pairs(folder, temp_allowed=True)  # before any clean-up
        assert complete >= start + wait_for
        left.append((temps, len(list(folder.glob("*.jpg"))) - complete))
    # The next start removes what the killed runs left (temp files, JPEGs without sidecar), keeps every pair.
    before = {p.name for p in folder.glob("*.json")}
    done = subprocess.run(args + ["--max-frames", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert before <= {p.name for p in folder.glob("*.json")}
    check_whole_pairs(folder, temp_allowed=False)
    if any(left[-1]):  # the earlier rounds' were removed by the next round's start
        assert re.search(rf"^keep: removed {sum(left[-1])} incomplete files? from ", done.stderr, re.M)
    print(f"left by the kills (temp files, JPEGs without sidecar): {left}")


# -- the parts ------------------------------------------------------------------------------------
def result(label="red", top=(("red", 0.9), ("green", 0.06), ("blue", 0.04)), changed=False, frame=0, t=0.0,
           raw_top=(), **extra) -> Result:
    return Result(frame, t, tuple(top), label, top[0][1], changed, 10.0, 1.0, 1.0, raw_top=tuple(raw_top), **extra)


def test_the_reasons_in_order_and_only_those_asked_for():
    reasons = Reasons(KeepConfig(sample=0.0))
    assert reasons.of(result(changed=True)) is None  # the run's first label: no flip, sure, agreed
    assert reasons.of(result("unknown", changed=True)) == "unknown"  # unknown before flip
    assert reasons.of(result("green", (("green", 0.9), ("red", 0.1)), changed=True)) == "flip"
    # The hold still shows green: the frame's own top label (red) disagrees with it.
    assert reasons.of(result("red")) == "disagree"
    # Smoothing: the decided label (green, on average) is not the frame's own top label (red).
    smoothed = result("green", (("green", 0.6), ("red", 0.4)), raw_top=(("red", 0.7), ("green", 0.3)))
    assert reasons.of(smoothed) == "disagree"
    assert reasons.of(result("green", (("green", 0.55), ("red", 0.45)))) == "low_margin"
    assert reasons.of(result("green", (("green", 0.95), ("red", 0.05)))) is None
    only = Reasons(KeepConfig(reasons=("low_margin",), sample=0.0))
    only.of(result(changed=True))
    assert only.of(result("unknown", (("red", 0.5), ("green", 0.45)))) is None  # unknown frames have no margin
    assert only.of(result("green", (("green", 0.55), ("red", 0.45)), changed=True)) == "low_margin"


def test_the_sample_is_a_seeded_share_of_the_confident_frames():
    def picks(seed):
        reasons = Reasons(KeepConfig(sample=0.01, seed=seed))
        return [i for i in range(20000) if reasons.of(result(changed=i == 0)) == "sample"]

    assert picks(1) == picks(1) != picks(2)
    assert 140 < len(picks(1)) < 260  # 1% of 20,000
    assert Reasons(KeepConfig(sample=1.0)).of(result("unknown")) == "unknown"  # never instead of a reason


def test_rate_limits_slide_and_survive_a_clock_set_back():
    limits = RateLimit(KeepConfig(per_minute=2, per_hour=3))
    for t in (0.0, 10.0):
        assert limits.allows("flip", t)
        limits.take("flip", t)
    assert not limits.allows("flip", 59.9) and limits.allows("unknown", 59.9)  # per reason
    assert limits.allows("flip", 60.1)
    limits.take("flip", 60.1)
    assert not limits.allows("flip", 200.0)  # three in the hour
    assert limits.allows("flip", 3600.5)  # the first has left the hour
    limits.take("flip", 3600.5)
    assert limits.allows("flip", 100.0)  # a clock set back an hour starts afresh, rather than waiting an hour


def test_near_duplicates_are_judged_on_a_thumbnail():
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (640, 480))
    noisy = np.clip(scene + rng.normal(0, 4, scene.shape), 0, 255).astype(np.uint8)  # sensor noise
    moved = scene.copy()
    moved[100:300, 200:400] = (255, 0, 0)  # something entered 13% of the view
    recent = Recent(6.0)
    recent.add("unknown", signature(scene))
    assert recent.near("unknown", signature(noisy))
    assert not recent.near("unknown", signature(moved))
    assert not recent.near("flip", signature(noisy))  # per reason
    assert not Recent(0.0).near("unknown", signature(scene))  # 0: every frame is new
    red, green = (np.full((480, 640, 3), c, np.uint8) for c in (RED, GREEN))
    recent.add("sample", signature(red))
    assert not recent.near("sample", signature(green))  # colour counts: a red scene is not a green one


def test_stems_are_utc_to_the_millisecond():
    assert stem_of(0.0, "flip", 7) == "19700101-000000-000_flip_7"
    assert stem_of(1738333501.1234, "low_margin", 12345) == "20250131-142501-123_low_margin_12345"
    assert stem_of(59.9999, "unknown", 0) == "19700101-000059-999_unknown_0"


def write_pair(folder: Path, stem: str, size: int = 1000) -> None:
    (folder / f"{stem}.jpg").write_bytes(b"\xff\xd8" + bytes(size - 4) + b"\xff\xd9")
    (folder / f"{stem}.json").write_text("{}")


def test_the_store_cleans_up_an_interrupted_run_and_leaves_other_files(tmp_path):
    folder = tmp_path
    write_pair(folder, "20250101-000000-000_flip_1")
    (folder / "20250101-000001-000_unknown_2.jpg").write_bytes(b"\xff\xd8")  # JPEG without sidecar
    (folder / "20250101-000002-000_sample_3.json").write_text("{}")  # sidecar without JPEG
    (folder / ".20250101-000003-000_flip_4.jpg.ab12cd34.tmp").write_bytes(b"\xff")  # a write cut short
    (folder / ".20250101-000003-000_flip_4.json.x_y9.tmp").write_bytes(b"{")
    for name in ("notes.txt", "reviewed.json", "20250101-000001-000_unknown_2.review.json", ".hidden.tmp"):
        (folder / name).write_text("theirs")
    store = Store(folder, 10**9)
    assert store.open() == 4
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".hidden.tmp", "20250101-000000-000_flip_1.jpg", "20250101-000000-000_flip_1.json",
         "20250101-000001-000_unknown_2.review.json", "notes.txt", "reviewed.json"])
    assert store.pairs == {"20250101-000000-000_flip_1": 1002} and store.total == 1002


def test_the_store_evicts_the_oldest_pairs_first_and_counts_what_others_removed(tmp_path):
    for i in range(5):
        write_pair(tmp_path, f"2025010{i + 1}-000000-000_sample_{i}")
    store = Store(tmp_path, 3500)
    store.open()
    assert store.evict() == 2  # 5 x 1002 bytes in 3500
    assert sorted(store.pairs) == [f"2025010{i + 1}-000000-000_sample_{i}" for i in (2, 3, 4)]
    for kind in ("json", "jpg"):  # a review tool took one away
        (tmp_path / f"20250103-000000-000_sample_2.{kind}").unlink()
    store.save("20250106-000000-000_flip_9", bytes(1000), b"{}")
    assert store.evict() == 0 and store.total == 3 * 1002  # read again before evicting: it still fits
    store.save("20250107-000000-000_flip_10", bytes(4000), b"{}")  # alone bigger than the quota: gone as well
    assert store.evict() == 4 and store.pairs == {} and not list(tmp_path.iterdir())


class SlowStore(Store):
    """A disk that takes its time (until ``go`` is set), or refuses (``fail``)."""

    def __init__(self, folder, fail=False):
        super().__init__(folder, 10**9)
        self.go, self.fail = threading.Event(), fail

    def save(self, stem, jpeg, sidecar):
        self.go.wait(10)
        if self.fail:
            raise OutputError(f"{self.folder / stem}.jpg: cannot write (No space left on device)")
        super().save(stem, jpeg, sidecar)


def keeper_on(store: Store, lines: list, wait: bool = False, **keep) -> Keeper:
    store.open()
    cfg = KeepConfig(dir=str(store.folder), sample=1.0, min_change=0.0, per_minute=10**6, per_hour=10**6, **keep)
    return Keeper(cfg, store, "camera 0", ModelVersion("/models/a.tflite", "a" * 64), log=lines.append, queue_size=8,
                  wait=wait)


def test_a_slow_disk_never_holds_up_the_loop_frames_are_dropped_and_counted(tmp_path):
    lines: list[str] = []
    store = SlowStore(tmp_path)
    keeper = keeper_on(store, lines)
    frame = np.zeros((480, 640, 3), np.uint8)
    start = time.perf_counter()
    for i in range(100):
        keeper.write_raw(result(changed=i == 0, frame=i, t=i / 10), frame)
    assert time.perf_counter() - start < 1.0  # the disk holds every save for up to 10 s
    assert keeper.dropped in (91, 92)  # 8 wait, and one is being written (if the writer took it yet)
    assert sum("dropping frames" in line for line in lines) == 1
    store.go.set()
    keeper.close()
    assert keeper.kept["sample"] == 100 - keeper.dropped  # what waited is written at the end
    assert f"; {keeper.dropped} dropped" in lines[-1]


def test_frames_of_a_file_wait_for_a_slow_disk_none_dropped(tmp_path):
    """A video file is not a camera: its loop may wait, so what is kept depends on the file alone,
    not on how busy the machine was."""
    lines: list[str] = []
    store = SlowStore(tmp_path)
    keeper = keeper_on(store, lines, wait=True)
    frame = np.zeros((48, 64, 3), np.uint8)
    threading.Timer(0.5, store.go.set).start()  # the disk holds the first saves for half a second
    start = time.perf_counter()
    for i in range(30):
        keeper.write_raw(result(changed=i == 0, frame=i, t=i / 10), frame)
    assert time.perf_counter() - start >= 0.4  # the loop waited for the disk
    keeper.close()
    assert keeper.dropped == 0 and keeper.kept["sample"] == 30
    assert not any("dropping frames" in line for line in lines)


def test_a_disk_that_refuses_is_said_once_and_the_run_goes_on(tmp_path):
    lines: list[str] = []
    store = SlowStore(tmp_path, fail=True)
    store.go.set()
    keeper = keeper_on(store, lines)
    for i in range(5):
        keeper.write_raw(result(frame=i, t=float(i)), np.zeros((48, 64, 3), np.uint8))
        time.sleep(0.02)
    keeper.close()
    assert keeper.failed == 5 and not any(keeper.kept.values())
    assert sum("No space left on device" in line for line in lines) == 1
    assert "5 not written" in lines[-1]


def test_a_reloaded_model_is_named_in_the_sidecars_from_its_first_frame(tmp_path):
    lines: list[str] = []
    keeper = keeper_on(Store(tmp_path, 10**9), lines)
    frame = np.zeros((48, 64, 3), np.uint8)
    keeper.write_raw(result(frame=1, t=1.0), frame)
    keeper.write_raw(result(frame=2, t=2.0, model_path="/models/b.tflite", model_sha256="b" * 64), frame)
    keeper.write_raw(result(frame=3, t=3.0), frame)
    keeper.close()
    models = [(k["frame"], k["model"], k["model_sha256"][0], k["source"]) for k in pairs(tmp_path)]
    assert models == [(1, "a.tflite", "a", "camera 0"), (2, "b.tflite", "b", "camera 0"),
                      (3, "b.tflite", "b", "camera 0")]


def test_a_keep_folder_that_cannot_be_made_fails_before_any_frame(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/kept: cannot create folder"):
        open_keeper(KeepConfig(dir=str(tmp_path / "file" / "kept")), "camera 0", None, log=lambda line: None)


# -- configuration and the command line ----------------------------------------------------------------
def test_keep_settings_are_checked_and_named(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("keep:\n  dir: kept\n  reasons: [unknown, flipp]\n")
    with pytest.raises(ConfigError, match=r"run\.yaml:3: keep\.reasons: 'flipp' is not a reason; use any of "
                                          r"unknown, flip, disagree, low_margin, sample$"):
        load_values(RunConfig, config, {})
    config.write_text("keep:\n  per_minit: 3\n")
    with pytest.raises(ConfigError, match=r"keep\.per_minit: unknown key \(did you mean 'per_minute'\?\)"):
        load_values(RunConfig, config, {})
    for key, value in (("margin", 1.5), ("sample", -0.1), ("per_hour", 0), ("quota_mb", 0), ("quality", 30)):
        with pytest.raises(ConfigError, match=rf"keep\.{key}: must"):
            load_values(RunConfig, None, {"keep": {key: value}})
    cfg = load_values(RunConfig, None, {"keep": {"dir": "kept", "reasons": "unknown"}})
    assert cfg.keep == KeepConfig(dir="kept", reasons=("unknown",))


def test_the_command_line_keeps_frames(video, tmp_path, no_drops):
    saved = signal.getsignal(signal.SIGTERM)
    try:
        outcome = CliRunner().invoke(cli, ["run", str(COLORS_UNKNOWN_MODEL), "--source", str(video), "--headless",
                                           "--max-frames", "500", "--keep", str(tmp_path / "kept")])
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert outcome.exit_code == 0, outcome.output
    kept = pairs(tmp_path / "kept")
    # The model's own rule: grey is unknown; the flip to green and the hold's disagreement come next.
    assert {k["reason"] for k in kept} >= {"unknown", "flip", "disagree"}
    assert "keep: frames worth a second look go to" in outcome.output
