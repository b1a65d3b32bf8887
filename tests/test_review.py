"""``edgecam review``: kept frames (``edgecam run --keep DIR``) filed into a dataset from a browser.

A kept folder made by hand as ``run --keep`` writes it (JPEG + JSON sidecar pairs, plus the
files a reviewer must not see), a dataset with two labels, and the review page on a real
loopback server: the JSON API (list, filter, file, background, discard, undo, bad labels,
unknown frames, tokens), the page mounted beside the live view, the command, and the page in
headless Chromium (helpers.Chromium). ``EDGECAM_UPDATE_DOCS=1`` makes the browser test write its
screenshot to docs/review.png (the README shows it); otherwise it stays in the test's folder.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import BLOCK_TENSORFLOW, FLOWERS_MINI, NO_HEAVY_MODULES, need
from helpers import decode_png, isolated_env, request, wait_until
from edgecam.cli import cli
from edgecam.collect.review import DISCARDED, PROVENANCE, KeptFrames
from edgecam.config.camera import ServeConfig
from edgecam.config.finetune import DataConfig
from edgecam.data.dataset import scan_dataset
from edgecam.serving.review_page import ReviewPage, mount_review
from edgecam.serving.run_page import RunPage
from edgecam.serving.server import start_server

REPO = Path(__file__).resolve().parents[1]
JSON = {"Content-Type": "application/json"}
LOOPBACK = ServeConfig(address="127.0.0.1:0")
T0 = 1_735_732_800.0  # 2025-01-01 12:00 UTC
# (reason, decided label, top scores, unknown score): newest last
KEPT = [
    ("sample", "daisy", [("daisy", 0.97), ("roses", 0.02)], None),
    ("low_margin", "daisy", [("daisy", 0.48), ("roses", 0.41)], None),
    ("flip", "roses", [("roses", 0.71), ("daisy", 0.25)], None),
    ("disagree", "roses", [("daisy", 0.52), ("roses", 0.45)], None),
    ("unknown", "unknown", [("roses", 0.55), ("daisy", 0.40)], 0.83),
]


def stem_of(i: int, reason: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(T0 + 60 * i)) + "-250"
    return f"{stamp}_{reason}_{100 * i + 7}"


def sidecar(i: int, reason: str, label: str, top, unknown_score) -> dict:
    return {"time": T0 + 60 * i + 0.25, "reason": reason, "top": [{"label": n, "score": s} for n, s in top],
            "label": label, "unknown_score": unknown_score, "model": "models/flowers.tflite",
            "model_sha256": "ab" * 32, "source": "camera 0", "frame": 100 * i + 7, "width": 160, "height": 120,
            "edgecam": "0.0.test"}


def frame_image(i: int, photos: list[Path] | None = None) -> np.ndarray:
    """A frame as the camera saw it: a real photo when given, else a distinct synthetic picture."""
    if photos:
        return cv2.resize(cv2.imread(str(photos[i % len(photos)])), (320, 240))
    rng = np.random.default_rng(i)
    image = np.full((120, 160, 3), (40 * i, 160 - 20 * i, 90), np.uint8)
    cv2.circle(image, (30 + 25 * i, 60), 20, (255, 255, 255), -1)
    return np.clip(image + rng.integers(0, 12, image.shape), 0, 255).astype(np.uint8)


def make_kept(root: Path, kept=KEPT, photos: list[Path] | None = None) -> dict[str, Path]:
    """A kept folder as `run --keep` leaves it; returns stem -> JPEG path. Adds what must not be listed."""
    root.mkdir(parents=True, exist_ok=True)
    stems = {}
    for i, (reason, label, top, unknown) in enumerate(kept):
        stem = stem_of(i, reason)
        assert cv2.imwrite(str(root / f"{stem}.jpg"), frame_image(i, photos))
        (root / f"{stem}.json").write_text(json.dumps(sidecar(i, reason, label, top, unknown)))
        stems[stem] = root / f"{stem}.jpg"
    assert cv2.imwrite(str(root / "20250101-130000-000_sample_999.jpg"), frame_image(9))  # no sidecar (yet)
    (root / ".20250101-130100-000_flip_1000.json.tmp").write_text("{")  # a sidecar being written
    (root / ".hidden.json").write_text("{}")
    (root / "notes.txt").write_text("not a frame\n")
    (root / "20250101-130200-000_flip_1001.json").write_text("{not json")  # its JPEG below: still not a frame
    assert cv2.imwrite(str(root / "20250101-130200-000_flip_1001.jpg"), frame_image(8))
    return stems


@pytest.fixture
def review(tmp_path):
    """(kept folder, dataset, stems newest first, running server) for the review of five kept frames."""
    kept, dataset = tmp_path / "kept", tmp_path / "data"
    stems = list(make_kept(kept))[::-1]
    for n, label in enumerate(("daisy", "roses")):
        (dataset / label).mkdir(parents=True)
        assert cv2.imwrite(str(dataset / label / "old.jpg"), frame_image(20 + n))
    with start_server(ReviewPage(KeptFrames(kept, dataset)), LOOPBACK) as server:
        yield kept, dataset, stems, server


def get(server, path: str, **headers) -> tuple[int, dict]:
    code, _, body = request(server.port, path, headers=headers)
    return code, json.loads(body)


def post(server, action: str, body: dict | None = None, **headers) -> tuple[int, dict]:
    code, _, data = request(server.port, f"/api/{action}", "POST", {**JSON, **headers}, json.dumps(body or {}).encode())
    return code, json.loads(data)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- the API ------------------------------------------------------------------------------------
def test_list_filters_and_images(review):
    kept, dataset, stems, server = review
    code, listing = get(server, "/api/kept")
    assert code == 200
    assert [f["stem"] for f in listing["frames"]] == stems  # newest first; nothing but complete pairs
    assert listing["total"] == 5 and listing["labels"] == ["daisy", "roses"] and listing["background"] == "background"
    assert listing["reasons"] == {"disagree": 1, "flip": 1, "low_margin": 1, "sample": 1, "unknown": 1}
    assert listing["guesses"] == {"daisy": 2, "roses": 2, "unknown": 1}
    assert listing["kept_dir"] == str(kept.resolve()) and listing["dataset"] == str(dataset.resolve())
    assert listing["undo"] is None
    newest = listing["frames"][0]
    assert newest == {"stem": stems[0], "image": f"kept/{stems[0]}.jpg", "time": T0 + 240.25, "reason": "unknown",
                      "label": "unknown", "score": None, "top": [{"label": "roses", "score": 0.55},
                                                                  {"label": "daisy", "score": 0.4}],
                      "unknown_score": 0.83, "model": "models/flowers.tflite", "frame": 407, "width": 160,
                      "height": 120}
    assert listing["frames"][1]["score"] == 0.45  # the decided label's score, not the top one's

    assert [f["reason"] for f in get(server, "/api/kept?reason=flip")[1]["frames"]] == ["flip"]
    assert [f["reason"] for f in get(server, "/api/kept?label=daisy")[1]["frames"]] == ["low_margin", "sample"]
    assert [f["reason"] for f in get(server, "/api/kept?label=roses&reason=disagree")[1]["frames"]] == ["disagree"]
    filtered = get(server, "/api/kept?label=tulips")[1]
    assert filtered["frames"] == [] and filtered["total"] == 5 and filtered["guesses"]["daisy"] == 2

    code, headers, jpeg = request(server.port, f"/kept/{stems[2]}.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    assert jpeg == (kept / f"{stems[2]}.jpg").read_bytes()
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)
    for path in ("/kept/20250101-130000-000_sample_999.jpg", "/kept/20250101-130200-000_flip_1001.jpg",
                 "/kept/nope.jpg", "/kept/../data/daisy/old.jpg", "/kept/..%2fdata%2fdaisy%2fold.jpg",
                 "/kept/.hidden.jpg", f"/kept/{stems[0]}.json", "/kept/%2e%2e/kept/x.jpg"):
        code, _, body = request(server.port, path)
        assert code == 404 and not body.startswith(b"\xff\xd8"), path


def test_file_moves_the_photo_and_its_sidecar_into_the_dataset(review):
    kept, dataset, stems, server = review
    stem = stems[3]  # low_margin, the model said daisy
    photo, record = (kept / f"{stem}.jpg").read_bytes(), json.loads((kept / f"{stem}.json").read_text())
    before = time.time()
    code, answer = post(server, "file", {"stem": stem, "label": "roses"})
    assert code == 200 and answer["filed"] == f"roses/{stem}.jpg" and answer["label"] == "roses"
    assert answer["undo"] == {"action": "file", "stem": stem, "label": "roses"}
    assert not (kept / f"{stem}.jpg").exists() and not (kept / f"{stem}.json").exists()
    assert (dataset / "roses" / f"{stem}.jpg").read_bytes() == photo
    filed = json.loads((dataset / "roses" / PROVENANCE / f"{stem}.json").read_text())
    assert {k: v for k, v in filed.items() if k != "filed"} == record
    assert filed["filed"]["label"] == "roses" and before - 1 <= filed["filed"]["time"] <= time.time() + 1

    # A new label makes its folder; the list no longer shows what was filed.
    assert post(server, "file", {"stem": stems[0], "label": "tulips"})[0] == 200
    assert (dataset / "tulips" / f"{stems[0]}.jpg").is_file()
    listing = get(server, "/api/kept")[1]
    assert [f["stem"] for f in listing["frames"]] == [stems[1], stems[2], stems[4]]
    assert listing["labels"] == ["daisy", "roses", "tulips"]
    assert listing["undo"] == {"action": "file", "stem": stems[0], "label": "tulips"}
    assert not [p for p in dataset.rglob("*") if p.name.endswith(".tmp")]  # no temp files left
    # Filed again (it is gone from the kept folder): 404.
    assert post(server, "file", {"stem": stem, "label": "daisy"})[0] == 404

    # The dataset scan takes the filed photos as photos of their labels and never sees .edgecam/.
    scanned = scan_dataset(DataConfig(path=dataset), progress=False)
    assert scanned.labels == ("daisy", "roses", "tulips")
    paths = {s.path.relative_to(dataset).as_posix() for s in scanned.samples}
    assert {f"roses/{stem}.jpg", f"tulips/{stems[0]}.jpg"} <= paths and not scanned.skipped


def test_background_goes_to_the_background_folder(review, tmp_path):
    kept, dataset, stems, server = review
    code, answer = post(server, "background", {"stem": stems[0]})
    assert code == 200 and answer["filed"] == f"background/{stems[0]}.jpg"
    assert (dataset / "background" / f"{stems[0]}.jpg").is_file()
    assert json.loads((dataset / "background" / PROVENANCE / f"{stems[0]}.json").read_text())["filed"]["label"] \
        == "background"
    listing = get(server, "/api/kept")[1]
    assert listing["labels"] == ["daisy", "roses"]  # the background folder is never a label
    assert listing["undo"] == {"action": "background", "stem": stems[0], "label": "background"}
    scanned = scan_dataset(DataConfig(path=dataset, background=("background",)), progress=False)
    assert [s.path.name for s in scanned.background] == [f"{stems[0]}.jpg"]

    # Another folder name, as --background-folder names it.
    other = KeptFrames(kept, dataset, background="nothing")
    assert other.file_background(stems[1])["filed"] == f"nothing/{stems[1]}.jpg"
    assert (dataset / "nothing" / PROVENANCE / f"{stems[1]}.json").is_file()


def test_discard_and_undo_put_every_file_back(review):
    kept, dataset, stems, server = review
    original_kept, original_data = tree(kept), tree(dataset)
    code, answer = post(server, "discard", {"stem": stems[1]})
    assert code == 200 and answer == {"discarded": stems[1], "undo": {"action": "discard", "stem": stems[1],
                                                                      "label": None}}
    assert sorted(p.name for p in (kept / DISCARDED).iterdir()) == [f"{stems[1]}.jpg", f"{stems[1]}.json"]
    assert stems[1] not in [f["stem"] for f in get(server, "/api/kept")[1]["frames"]]
    assert post(server, "file", {"stem": stems[2], "label": "daisy"})[0] == 200
    assert post(server, "background", {"stem": stems[3]})[0] == 200

    # Undo takes the actions back, last first, until there is none.
    assert post(server, "undo")[1]["undone"] == {"action": "background", "stem": stems[3], "label": "background"}
    assert (kept / f"{stems[3]}.jpg").is_file() and not (dataset / "background" / f"{stems[3]}.jpg").exists()
    code, answer = post(server, "undo")
    assert code == 200 and answer["undone"] == {"action": "file", "stem": stems[2], "label": "daisy"}
    assert answer["undo"] == {"action": "discard", "stem": stems[1], "label": None}
    assert post(server, "undo")[1]["undone"]["action"] == "discard"
    code, answer = post(server, "undo")
    assert (code, answer) == (409, {"error": "nothing to undo"})
    # Byte for byte as before (the sidecar without "filed"); emptied helper folders may stay.
    assert tree(kept) == original_kept and tree(dataset) == original_data
    assert [f["stem"] for f in get(server, "/api/kept")[1]["frames"]] == stems
    assert server.page.kept.done == {"file": 0, "background": 0, "discard": 0}


def test_undo_refuses_when_the_files_were_moved_meanwhile(review):
    kept, dataset, stems, server = review
    assert post(server, "file", {"stem": stems[0], "label": "daisy"})[0] == 200
    (dataset / "daisy" / f"{stems[0]}.jpg").unlink()  # someone tidied the dataset by hand
    code, answer = post(server, "undo")
    assert code == 409 and answer["error"].startswith("cannot undo: ") and "no longer there" in answer["error"]
    assert not (kept / f"{stems[0]}.json").exists()  # nothing half-restored
    assert post(server, "undo")[0] == 409  # forgotten: there is nothing before it


@pytest.mark.parametrize("label", ["../x", "a/b", "", ".hidden", "..", ".", "a\\b", " padded", "tab\tname",
                                   "x" * 65, None, 7, ["daisy"]])
def test_bad_labels_are_refused_and_nothing_is_written(review, tmp_path, label):
    kept, dataset, stems, server = review
    before = tree(tmp_path)
    code, answer = post(server, "file", {"stem": stems[0], "label": label})
    assert code == 400 and answer["error"].startswith("label: "), answer
    assert tree(tmp_path) == before  # not a byte anywhere: inside DATASET_DIR or outside it


def test_a_label_folder_that_leads_outside_the_dataset_is_refused(review, tmp_path):
    kept, dataset, stems, server = review
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (dataset / "linked").symlink_to(outside, target_is_directory=True)
    code, answer = post(server, "file", {"stem": stems[0], "label": "linked"})
    assert code == 400 and "leads outside" in answer["error"]
    assert list(outside.iterdir()) == [] and (kept / f"{stems[0]}.jpg").is_file()


def test_unknown_frames_are_404_and_bodies_are_checked(review, tmp_path):
    kept, dataset, stems, server = review
    before = tree(tmp_path)
    for stem in ("20250101-000000-000_flip_1", "../kept/" + stems[0], "..", "", ".hidden", None, 3,
                 "20250101-130000-000_sample_999", "20250101-130200-000_flip_1001", stems[0] + ".jpg"):
        for action, body in (("file", {"stem": stem, "label": "daisy"}), ("background", {"stem": stem}),
                             ("discard", {"stem": stem})):
            code, answer = post(server, action, body)
            assert code == 404 and answer["error"].startswith("no kept frame"), (action, stem, answer)
    assert post(server, "file", {"label": "daisy"})[0] == 404  # no stem at all
    assert post(server, "rename", {"stem": stems[0]})[0] == 404
    code, _, _ = request(server.port, "/api/file", "POST", {"Content-Type": "text/plain"}, b'{"stem": "x"}')
    assert code == 415  # JSON only: other sites cannot post forms to it
    code, _, _ = request(server.port, "/api/kept", headers={"Host": "attacker.example"})
    assert code == 403  # DNS rebinding, as for every page without a token
    assert tree(tmp_path) == before


def test_a_token_guards_every_route_off_loopback(tmp_path):
    kept = tmp_path / "kept"
    stems = list(make_kept(kept))
    page = ReviewPage(KeptFrames(kept, tmp_path / "data"))
    before = tree(tmp_path)
    with start_server(page, ServeConfig(address="0.0.0.0:0")) as server:
        token = server.token
        assert len(token) >= 16
        for path in ("/", "/api/kept", f"/kept/{stems[0]}.jpg", "/static/review.js", f"/api/kept?token={token}x"):
            assert request(server.port, path)[0] == 401, path
        for action in ("file", "background", "discard", "undo"):
            code, answer = post(server, action, {"stem": stems[0], "label": "daisy"})
            assert code == 401 and "token" in answer["error"], action
        assert tree(tmp_path) == before
        assert get(server, f"/api/kept?token={token}")[1]["total"] == 5
        assert request(server.port, f"/kept/{stems[0]}.jpg?token={token}")[0] == 200
        bearer = {"Authorization": f"Bearer {token}"}
        assert post(server, "file", {"stem": stems[0], "label": "daisy"}, **bearer)[0] == 200
        assert (tmp_path / "data" / "daisy" / f"{stems[0]}.jpg").is_file()
        code, _, html = request(server.port, f"/?token={token}")
        assert code == 200 and f'src="static/review.js?token={token}"'.encode() in html


def test_the_live_view_links_to_the_review_when_frames_are_kept(tmp_path):
    kept = tmp_path / "kept"  # not made yet: `run --keep` makes it once the camera runs
    page = RunPage("model.tflite", "camera 0")
    mount_review(page, kept)
    with start_server(page, ServeConfig("127.0.0.1:0", token="my-own-secret")) as server:
        port, query = server.port, "?token=my-own-secret"
        status = json.loads(request(port, f"/api/status{query}")[2])
        assert status["review"] == "review/"
        html = request(port, f"/{query}")[2]
        assert b'<a id="review" class="tab" href="review/?token=my-own-secret" hidden>' in html
        code, headers, _ = request(port, f"/review{query}")
        assert code == 308 and headers["Location"] == f"/review/{query}"  # its relative links need the slash
        code, _, html = request(port, f"/review/{query}")
        assert code == 200 and b'src="static/review.js?token=my-own-secret"' in html and b'id="stream"' not in html
        assert request(port, "/review/api/kept")[0] == 401  # the same token
        listing = json.loads(request(port, f"/review/api/kept{query}")[2])
        assert listing["total"] == 0 and listing["dataset"] is None and listing["live"] == "../"
        stems = list(make_kept(kept))
        listing = json.loads(request(port, f"/review/api/kept{query}")[2])
        assert listing["total"] == 5
        assert request(port, f"/review/kept/{stems[0]}.jpg{query}")[0] == 200
        assert request(port, f"/review/static/style.css{query}")[0] == 200
        code, _, body = request(port, f"/review/api/file{query}", "POST", JSON,
                                json.dumps({"stem": stems[0], "label": "daisy"}).encode())
        assert code == 409 and b"no dataset folder" in body  # this one only discards and undoes
        code, _, _ = request(port, f"/review/api/discard{query}", "POST", JSON, json.dumps({"stem": stems[0]}).encode())
        assert code == 200 and (kept / DISCARDED / f"{stems[0]}.jpg").is_file()
    without = RunPage("model.tflite")
    with start_server(without, LOOPBACK) as server:
        assert json.loads(request(server.port, "/api/status")[2])["review"] is None
        assert request(server.port, "/review/api/kept")[0] == 404



def test_the_live_view_files_into_keep_dataset(tmp_path):
    """``edgecam run --serve --keep DIR --keep-dataset DATA``: the review tab of the running camera files too."""
    from edgecam.cli import OPTION_KEYS
    from edgecam.config.camera import KeepConfig
    from helpers import FakeCamera, served_page

    assert OPTION_KEYS["keep_dataset"] == "keep.dataset"  # --keep-dataset sets keep.dataset
    kept, dataset = tmp_path / "kept", tmp_path / "data"
    stems = list(make_kept(kept))
    keep = KeepConfig(dir=str(kept), dataset=str(dataset), reasons=("unknown",))
    with served_page("run", FakeCamera(), keep=keep) as server:
        listing = json.loads(request(server.port, "/review/api/kept")[2])
        assert listing["dataset"] == str(dataset.resolve()) and listing["total"] >= 5
        code, _, body = request(server.port, "/review/api/file", "POST", JSON,
                                json.dumps({"stem": stems[0], "label": "daisy"}).encode())
        assert code == 200, body
    assert (dataset / "daisy" / f"{stems[0]}.jpg").is_file()
    assert (dataset / "daisy" / PROVENANCE / f"{stems[0]}.json").is_file() and not (kept / f"{stems[0]}.jpg").exists()



def test_run_keep_starting_up_meanwhile_never_takes_a_half_moved_pair_for_a_leftover(tmp_path, monkeypatch):
    """``edgecam run --keep`` removes half pairs at start-up (what a killed run left); a review moving a
    pair (sidecar first, then the JPEG) at that moment holds the folder's lock, so the JPEG is not removed."""
    import threading

    from edgecam.collect import review as review_module
    from edgecam.runtime.keeper.store import Store

    kept = tmp_path / "kept"
    stems = list(make_kept(kept))
    frames = KeptFrames(kept, None)
    halfway, go_on = threading.Event(), threading.Event()
    real_move = review_module._move

    def slow_move(source, target):
        moved = real_move(source, target)
        if source.suffix == ".json":  # the sidecar is in the bin, the JPEG still in the folder
            halfway.set()
            go_on.wait(10)
        return moved

    monkeypatch.setattr(review_module, "_move", slow_move)
    discard = threading.Thread(target=frames.discard, args=(stems[0],))
    discard.start()
    assert halfway.wait(10)
    store = Store(kept, quota_bytes=10**9)
    opened = threading.Thread(target=lambda: setattr(store, "removed", store.open()))
    opened.start()
    opened.join(0.5)
    assert opened.is_alive()  # waits for the review's move
    go_on.set()
    discard.join(10)
    opened.join(10)
    assert (kept / DISCARDED / f"{stems[0]}.jpg").is_file() and (kept / DISCARDED / f"{stems[0]}.json").is_file()
    # What it removed is only what make_kept left as a killed run would: the JPEG without a sidecar.
    assert store.removed == 1 and not (kept / "20250101-130000-000_sample_999.jpg").exists() and stems[0] not in store.pairs and set(stems[1:]) <= set(store.pairs)


# -- the command ----------------------------------------------------------------------------------
def test_review_cli_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["review", "missing", "--dataset", "data"])
    assert (result.exit_code, result.stderr) == (
        1, "Error: missing: kept-frames folder not found (edgecam run --keep DIR writes it)\n")
    (tmp_path / "kept").mkdir()
    result = runner.invoke(cli, ["review", "kept", "--dataset", "data", "--serve", "0.0.0.0:0", "--token", "short"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: command line: --token: use at least 8 ")
    result = runner.invoke(cli, ["review", "kept", "--dataset", "data", "--serve", "host:http"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: command line: --serve: expected [HOST:]PORT")
    result = runner.invoke(cli, ["review", "kept", "--dataset", "data", "--background-folder", "../bg"])
    assert result.exit_code == 2 and result.stderr.startswith(
        "Error: command line: --background-folder: '../bg' cannot be a folder name")
    result = runner.invoke(cli, ["review", "kept"])
    assert result.exit_code == 2 and "--dataset" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # nothing written, no dataset made


def test_review_cli_serves_without_tensorflow_until_ctrl_c(tmp_path):
    stems = list(make_kept(tmp_path / "kept"))
    env = isolated_env(tmp_path, display=False)
    proc = subprocess.Popen([sys.executable, "-c", BLOCK_TENSORFLOW, "review", "kept", "--dataset", "data",
                             "--serve", "0"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("review page: ") for line in lines):
            line = proc.stderr.readline()
            assert line, f"exited early: {''.join(lines)}"
            lines.append(line)
        root = tmp_path.resolve()
        assert f"review: 5 kept frames in {root / 'kept'}; filing into {root / 'data'}\n" in lines
        url = lines[-1].split()[2]
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        code, _, _ = request(port, "/api/file", "POST", JSON, json.dumps({"stem": stems[0], "label": "mug"}).encode())
        assert code == 200 and (tmp_path / "data" / "mug" / f"{stems[0]}.jpg").is_file()
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=20) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ("review: filed 1, background 0, discarded 0 (train with: edgecam finetune "
            f"data.path={root / 'data'})") in rest
    assert rest.splitlines()[-1] == NO_HEAVY_MODULES


# -- the page in a browser ---------------------------------------------------------------------------
def card(stem: str) -> str:
    return f".card[data-stem='{stem}']"


def test_review_page_files_discards_and_undoes_in_chromium(tmp_path, browser):
    photos = sorted(need(FLOWERS_MINI / "daisy").glob("*.jpg"))[:3] + sorted((FLOWERS_MINI / "roses").glob("*.jpg"))[:3]
    photos += sorted((FLOWERS_MINI / "tulips").glob("*.jpg"))[:2]
    kept, dataset = tmp_path / "kept", tmp_path / "flowers"
    extra = [("low_margin", "roses", [("roses", 0.51), ("tulips", 0.39)], None),
             ("sample", "daisy", [("daisy", 0.99), ("tulips", 0.01)], None),
             ("flip", "tulips", [("tulips", 0.66), ("roses", 0.30)], None)]
    stems = list(make_kept(kept, KEPT + extra, photos))[::-1]
    for label in ("daisy", "roses", "tulips"):
        (dataset / label).mkdir(parents=True)
    with start_server(ReviewPage(KeptFrames(kept, dataset)), LOOPBACK) as server:
        browser.viewport(1000, 700)
        browser.open(server.local_url)
        browser.wait_js("document.querySelectorAll('.card').length === 8", what="eight cards")
        browser.wait_js("[...document.querySelectorAll('.card img')].every((i) => i.naturalWidth === 320)",
                        what="the thumbnails")
        assert [browser.js(f"document.querySelectorAll('.card')[{i}].dataset.stem") for i in range(8)] == stems
        assert browser.text(f"{card(stems[0])} .guess") == "tulips" and browser.text(f"{card(stems[0])} .tag") == "flip"
        assert browser.text(f"{card(stems[3])} .guess") == "unknown"
        assert browser.text(f"{card(stems[3])} .score") == "roses 55%"  # unknown has no score: the best label's
        assert browser.text(f"{card(stems[4])} .tag") == "disagree"
        assert browser.js("[...document.querySelectorAll('button.target')].map((b) => b.textContent)") == \
            ["1daisy", "2roses", "3tulips"]
        assert browser.text("#conn") == "8 kept" and browser.js("document.querySelector('.card.selected').dataset.stem") \
            == stems[0]

        # A click selects a frame, a click on a label files it (and the next frame is selected).
        tap(browser, card(stems[1]))
        browser.click("button.target[data-label='daisy']")
        wait_until(lambda: (dataset / "daisy" / f"{stems[1]}.jpg").is_file(), 10, "the frame filed under daisy")
        assert (dataset / "daisy" / PROVENANCE / f"{stems[1]}.json").is_file()
        browser.wait_js(f"!document.querySelector(\"{card(stems[1])}\")", what="the filed card to go")
        browser.wait_js(f"document.querySelector('#message').textContent === 'filed daisy/{stems[1]}.jpg'")
        assert browser.js("document.querySelector('.card.selected').dataset.stem") == stems[2]
        browser.wait_js("[...document.querySelectorAll('.card img')].every((i) => i.complete)", what="the images")
        shot = browser.screenshot()  # seven frames left, one selected, the last filing said: the README's picture
        save_screenshot(shot, tmp_path)
        image = decode_png(shot)
        assert image.shape[:2] == (700, 1000) and image.std() > 20

        # Keys: x discards the selected frame, u brings it back, 3 files it under tulips, Ctrl-Z undoes.
        press(browser, "x")
        wait_until(lambda: (kept / DISCARDED / f"{stems[2]}.jpg").is_file(), 10, "the discarded frame")
        browser.wait_js(f"!document.querySelector(\"{card(stems[2])}\")", what="the discarded card to go")
        press(browser, "u")
        wait_until(lambda: (kept / f"{stems[2]}.json").is_file(), 10, "the discarded frame back")
        browser.wait_js(f"!!document.querySelector(\"{card(stems[2])}.selected\")", what="the frame back, selected")
        press(browser, "3")
        wait_until(lambda: (dataset / "tulips" / f"{stems[2]}.jpg").is_file(), 10, "the frame filed under tulips")
        press(browser, "z", ctrl=True)
        wait_until(lambda: (kept / f"{stems[2]}.jpg").is_file(), 10, "Ctrl-Z to undo")
        assert not (dataset / "tulips" / f"{stems[2]}.jpg").exists()

        # b: background; a typed label makes a new folder.
        tap(browser, card(stems[3]))
        press(browser, "b")
        wait_until(lambda: (dataset / "background" / f"{stems[3]}.jpg").is_file(), 10, "the background frame")
        tap(browser, card(stems[5]))
        browser.js("document.querySelector('#new-name').value = 'sunflowers'; true")
        browser.click("#new-label button")
        wait_until(lambda: (dataset / "sunflowers" / f"{stems[5]}.jpg").is_file(), 10, "the new label")
        browser.wait_js("document.querySelectorAll('button.target').length === 4", what="the new label's button")
        browser.wait_js("document.querySelector('#new-name').value === ''", what="the text box to empty")

        # Filters: why kept, and the model's guess.
        choose(browser, "#reason", "low_margin")
        browser.wait_js("document.querySelectorAll('.card').length === 2", what="two low-margin frames")
        choose(browser, "#guess", "roses")
        browser.wait_js("document.querySelectorAll('.card').length === 1", what="one low-margin frame said roses")
        choose(browser, "#reason", "")
        choose(browser, "#guess", "")
        browser.wait_js("document.querySelectorAll('.card').length === 5", what="all five left")
        left = {p.stem for p in kept.glob("*.json")} & {p.stem for p in kept.glob("*.jpg")} & set(stems)
        assert left == set(stems) - {stems[1], stems[3], stems[5]}

        # A phone: two columns, nothing sideways, thumb-sized targets stuck to the bottom.
        browser.viewport(390, 844, mobile=True)
        time.sleep(0.3)
        assert browser.js("document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.js("getComputedStyle(document.querySelector('#grid')).gridTemplateColumns.split(' ').length") == 2
        for selector in ("button.target", "#discard", "#undo", "#background"):
            assert browser.rect(selector)["height"] >= 44, selector
        bar = browser.rect("#bar")
        assert bar["y"] + bar["height"] <= 844 + 1


def choose(browser, selector: str, value: str) -> None:
    """Pick ``value`` in the <select> ``selector``, as a person would (a change event follows)."""
    browser.js(f"(() => {{ const menu = document.querySelector({json.dumps(selector)}); menu.value = {json.dumps(value)};"
               "menu.dispatchEvent(new Event('change')); return true; })()")


def tap(browser, selector: str) -> None:
    """A real click on ``selector``, scrolled to the middle of the screen first (clear of the action bar)."""
    browser.js(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}}); true")
    browser.click(selector)


def press(browser, key: str, ctrl: bool = False) -> None:
    """A real key press (down + up) as a keyboard sends it."""
    code = f"Key{key.upper()}" if key.isalpha() else f"Digit{key}"
    for kind in ("keyDown", "keyUp"):
        browser.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, text=key if not ctrl else "",
                     modifiers=2 if ctrl else 0, windowsVirtualKeyCode=ord(key.upper()))


def save_screenshot(png: bytes, tmp_path: Path) -> None:
    """Into the test's folder; with EDGECAM_UPDATE_DOCS=1 also to docs/review.png (in 256 colours, a third the size)."""
    (tmp_path / "review.png").write_bytes(png)
    if os.environ.get("EDGECAM_UPDATE_DOCS"):
        image = Image.open(io.BytesIO(png)).convert("RGB")
        image.quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            REPO / "docs" / "review.png", optimize=True)
