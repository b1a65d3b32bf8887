"""The ``edgecam run`` window: a readable overlay, on screen, under a real X server.

Fast tests draw the overlay on 320x240, 640x480 and 1920x1080 frames (no window) and measure
the result: everything inside the frame, the text height growing with the frame, the bars as
long as the scores.

The slow test trains a small real model (MobileNet v1 0.25 on flowers-mini), makes an image
folder source from three real photos, starts its own Xvfb with a window manager, runs
``edgecam run MODEL --source FOLDER`` (not headless) in it, takes a screenshot of the screen
while the window is up, presses q in the window and checks the run ended with exit code 0 long
before the frames ran out. The screenshot must show a source frame with the overlay at its
top-left corner: the panel darkened, the green bars where the overlay puts them, and, read by
tesseract, the decided label as the headline, the model's labels (the top one first) and the
FPS figure. The screenshot is kept in the test's tmp folder (pytest --basetemp=DIR keeps it
somewhere known).

Debian packages the slow test needs: xvfb, openbox, xdotool, imagemagick (``import``),
tesseract-ocr; and an OpenCV with a GUI (opencv-python, not opencv-python-headless).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FLOWERS_MINI, V1_WEIGHTS, WEIGHTS, need
from edgecam.runtime.decisions import UNKNOWN
from edgecam.runtime.overlay import GREEN, decided_text, draw_overlay

TOP = [("sunflowers", 0.81), ("dandelion", 0.12), ("daisy", 0.05)]
GREY_LEVEL = 128  # a uniform frame: everything the overlay draws differs from it


# ---------------------------------------------------------------- overlay, no window

def _bands(mask_rows: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of each run of True in a 1-D array."""
    bands, start = [], None
    for i, on in enumerate(mask_rows):
        if on and start is None:
            start = i
        elif not on and start is not None:
            bands.append((start, i - 1))
            start = None
    if start is not None:
        bands.append((start, len(mask_rows) - 1))
    return bands


def measure_overlay(width: int, height: int, top=TOP, fps: float = 29.7, ms: float = 31.2) -> dict:
    """Draw on a uniform grey frame and measure what was drawn."""
    frame = np.full((height, width, 3), GREY_LEVEL, np.uint8)
    out = draw_overlay(frame.copy(), top, fps, ms)
    changed = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(changed)
    panel = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))  # x0, y0, x1, y1 inclusive
    out = out[: panel[3] + 2, : panel[2] + 2]  # nothing is drawn further out (up to the frame edge)
    bright = np.all(out > 180, axis=2)  # white text (not the grey 90 or green bars, not the 44 shade)
    green = (np.abs(out.astype(int) - GREEN).max(axis=2) <= 2)
    rows = []
    for y0, y1 in _bands(bright.any(axis=1)):
        bx = np.nonzero(bright[y0 : y1 + 1].any(axis=0))[0]
        gx = np.nonzero(green[y0 : y1 + 1].any(axis=0))[0]
        rows.append({"y0": y0, "y1": y1, "height": y1 - y0 + 1, "x0": int(bx.min()), "x1": int(bx.max()),
                     "green_w": len(gx)})
    bar = (out.astype(int) - (90, 90, 90))
    grey_or_green = (np.abs(bar).max(axis=2) <= 2) | green
    return {"image": out, "panel": panel, "bright": bright, "rows": rows, "bar_cols": grey_or_green}


@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1920, 1080), (1080, 1920), (160, 120)])
def test_overlay_stays_inside_the_frame(size):
    width, height = size
    m = measure_overlay(width, height)
    x0, y0, x1, y1 = m["panel"]
    assert (x0, y0) == (0, 0), "the panel sits at the top-left corner"
    # At most half the height from 240 lines up; tiny frames get readable text rather than a small panel.
    assert x1 < width and y1 < (height / 2 if height >= 240 else height), f"panel {m['panel']} on a {width}x{height} frame"
    # 3 label rows and the FPS line, each fully inside the shaded panel (nothing cut at its edge).
    assert len(m["rows"]) == len(TOP) + 1, m["rows"]
    for row in m["rows"]:
        assert 0 < row["x0"] and row["x1"] < x1 and 0 < row["y0"] and row["y1"] < y1, (row, m["panel"])
    # The percentages are drawn to the right of the bars, so the bar rows reach past the bars.
    for row, (_, score) in zip(m["rows"], TOP):
        counts = m["bar_cols"][row["y0"] : row["y1"] + 1].sum(axis=0)  # bar columns: filled top to bottom
        bar_cols = np.nonzero(counts >= 0.6 * counts.max())[0]
        assert row["x1"] > bar_cols.max(), f"no percentage right of the bar in {row}"
        # Bars as long as the scores.
        assert abs(row["green_w"] / len(bar_cols) - score) < 0.03, (row, len(bar_cols), score)


def test_overlay_text_scales_with_the_frame_and_stays_readable(tmp_path):
    heights = {}
    for width, height in ((320, 240), (640, 480), (1920, 1080)):
        status = measure_overlay(width, height)["rows"][-1]  # "29.7 FPS  31.2 ms": digits and capitals
        heights[height] = status["height"]
    assert heights[240] >= 8, f"text {heights[240]} px high at 320x240: too small to read"
    assert 12 <= heights[480] <= 16, heights
    assert 1.9 <= heights[1080] / heights[480] <= 2.6, heights  # 1080/480 = 2.25
    assert heights[1080] <= 40, heights

    # Long labels on a small frame: shortened or with shorter bars, never cut at the frame edge.
    long = [("my favourite coffee mug on the kitchen table", 1.0), ("keys", 0.0), ("nothing", 0.0)]
    for width, height in ((320, 240), (160, 120)):
        m = measure_overlay(width, height, long, fps=100.0, ms=999.9)
        assert len(m["rows"]) == 4 and all(r["x1"] < m["panel"][2] for r in m["rows"]), (width, m["rows"])
        assert not m["bright"][:, -1].any()

    # On a real photo at both extremes: the panel darkens the corner, the rest of the photo is untouched.
    photo = sorted((FLOWERS_MINI / "daisy").glob("*.jpg"))
    if photo:
        image = cv2.imread(str(photo[1] if len(photo) > 1 else photo[0]))
        for width, height in ((320, 240), (1920, 1080)):
            frame = cv2.resize(image, (width, height))
            out = draw_overlay(frame.copy(), TOP, 29.7, 31.2)
            cv2.imwrite(str(tmp_path / f"overlay-{height}.png"), out)  # kept to look at
            x1, y1 = measure_overlay(width, height)["panel"][2:]
            assert np.array_equal(out[y1 + 1 :], frame[y1 + 1 :]) and np.array_equal(out[:, x1 + 1 :], frame[:, x1 + 1 :])
            assert out[: y1 + 1, : x1 + 1].mean() < 0.6 * frame[: y1 + 1, : x1 + 1].mean()


# ---------------------------------------------------------------- a real window under Xvfb

TOOLS = {"Xvfb": "xvfb", "openbox": "openbox", "xdotool": "xdotool", "import": "imagemagick",
         "tesseract": "tesseract-ocr"}
FRAME_SIZE = (640, 480)
PHOTOS = {"daisy": "10140303196_b88d3d6cec.jpg", "roses": "11944957684_2cc806276e.jpg",
          "tulips": "10686568196_b1915544a8.jpg"}
# Frames in the source: the small model runs at 50-150 FPS, so this keeps the window up for
# 30-90 s, far longer than the test needs, yet costs nothing to make (links to three files).
SOURCE_FRAMES = 4500


def _require_display_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(TOOLS[t] for t in missing)
        pytest.skip(f"window test needs {', '.join(missing)}: apt-get install {packages}")
    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if not gui or gui.group(1).upper() == "NONE":
        pytest.skip("this OpenCV has no GUI (opencv-python-headless?): pip install opencv-python")


@pytest.fixture
def xvfb():
    """A private X server on a free display; yields the DISPLAY value."""
    _require_display_tools()
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display number and writes it to the pipe once it is ready.
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
        if not number.strip().isdigit():
            proc.kill()
            pytest.fail(f"Xvfb did not start: {proc.communicate(timeout=10)[1].decode(errors='replace')[-1000:]}")
        display = f":{number.strip().decode()}"
        wm = _start_window_manager(display)
        try:
            yield display
        finally:
            wm.terminate()
            try:
                wm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                wm.kill()
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _start_window_manager(display: str) -> subprocess.Popen:
    """openbox, a light window manager, on ``display``; returns once it is up.

    A desktop always has one, and Qt needs it here: on a bare X server, about one window in
    five under load is mapped but never painted (black for good), which no user would see.
    """
    env = {**os.environ, "DISPLAY": display}
    wm = subprocess.Popen(["openbox", "--sm-disable"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    # get_num_desktops succeeds once a window manager answers for the screen.
    while subprocess.run(["xdotool", "get_num_desktops"], env=env, capture_output=True).returncode != 0:
        if wm.poll() is not None or time.monotonic() > deadline:
            wm.kill()
            pytest.fail(f"openbox did not start on {display} (exit code {wm.poll()})")
        time.sleep(0.1)
    return wm


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A real classifier (daisy, roses, tulips) trained in tens of seconds."""
    from edgecam.config.finetune import load_finetune_config
    from edgecam.training.finetune import finetune

    need(FLOWERS_MINI)
    need(V1_WEIGHTS)
    work = tmp_path_factory.mktemp("window-model")
    cfg = load_finetune_config(None, [
        f"data.path={FLOWERS_MINI}", f"model.weights={WEIGHTS}", f"output={work / 'runs'}", f"cache={work / 'cache'}",
        "name=w", "model.backbone=mobilenet_v1", "model.alpha=0.25", "train.epochs=15", "train.augment.views=1",
    ])
    return finetune(cfg, progress=False).model_path


def make_frames(folder: Path) -> list[np.ndarray]:
    """A folder source of SOURCE_FRAMES 640x480 frames: three real photos, each for a third of them.

    The photos are written once as PNG (lossless, so the window must show exactly these pixels)
    and the frames are symbolic links to them, in name order. Returns the three BGR photos.
    """
    folder.mkdir()
    photos, files = [], []
    for label, name in PHOTOS.items():
        photo = cv2.resize(cv2.imread(str(FLOWERS_MINI / label / name)), FRAME_SIZE, interpolation=cv2.INTER_AREA)
        path = folder.parent / f"{label}.png"
        assert cv2.imwrite(str(path), photo)
        photos.append(photo)
        files.append(path)
    per_photo = SOURCE_FRAMES // len(files)
    for i in range(SOURCE_FRAMES):
        (folder / f"frame{i:05d}.png").symlink_to(files[min(i // per_photo, len(files) - 1)])
    return photos


def edgecam_command() -> list[str]:
    script = Path(sys.executable).with_name("edgecam")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecam"]


def screenshot(display: str, path: Path) -> np.ndarray:
    subprocess.run(["import", "-display", display, "-window", "root", str(path)], check=True, timeout=30,
                   capture_output=True)
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read the screenshot {path}"
    return image


def locate(screen: np.ndarray, frames: list[np.ndarray]) -> tuple[float, int, float, int, int]:
    """Find one of ``frames`` in a screenshot, shown at any scale from 0.5 to 1.

    Returns (match score, frame index, scale, x, y of the frame's top-left corner). Matched on
    the bottom half of the frames, which the overlay never covers: first on half-size images
    over all frames and scales, then at full size around the best scale and place.
    """
    gray = cv2.cvtColor(screen, cv2.COLOR_BGR2GRAY)
    halves = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[FRAME_SIZE[1] // 2 :] for f in frames]
    top_offset = FRAME_SIZE[1] // 2

    def match(image, half, scale):
        template = cv2.resize(half, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if template.shape[0] > image.shape[0] or template.shape[1] > image.shape[1]:
            return -1.0, 0, 0
        _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED))
        return score, x, y

    small = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    coarse = max((*match(small, half, s / 2), i, s) for i, half in enumerate(halves)
                 for s in np.arange(0.5, 1.0001, 0.05))
    _, x2, y2, i, s0 = coarse
    best = (-1.0, i, 1.0, 0, 0)
    margin = 24
    left, top = max(0, 2 * x2 - margin), max(0, 2 * y2 - margin)
    for s in np.arange(max(0.45, s0 - 0.05), min(1.0, s0 + 0.05) + 0.0001, 0.005):
        s = float(s)
        h, w = round(halves[i].shape[0] * s), round(halves[i].shape[1] * s)
        score, x, y = match(gray[top : top + h + 2 * margin, left : left + w + 2 * margin], halves[i], s)
        if score > best[0]:
            best = (score, i, s, left + x, top + y - round(top_offset * s))
    return best


def window_box(env: dict, window: str) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a window on the screen."""
    shell = subprocess.run(["xdotool", "getwindowgeometry", "--shell", window], env=env, check=True,
                           capture_output=True, text=True, timeout=30).stdout
    values = dict(line.split("=", 1) for line in shell.split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def locate_in_window(screen: np.ndarray, box: tuple[int, int, int, int], frames: list[np.ndarray]):
    """``locate`` within the window's part of the screenshot (quicker), in screen coordinates."""
    wx, wy, ww, wh = box
    if ww < 100 or wh < 100:
        return -1.0, 0, 1.0, 0, 0
    score, index, scale, x, y = locate(screen[wy : wy + wh, wx : wx + ww], frames)
    return score, index, scale, wx + x, wy + y


def ocr(image: np.ndarray, work: Path) -> str:
    """Text in a crop of white-on-dark overlay, read by tesseract (upscaled, inverted to dark on white)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    path = work / "ocr-input.png"
    cv2.imwrite(str(path), 255 - gray)
    result = subprocess.run(["tesseract", str(path), "-", "--psm", "6"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-1000:]
    return result.stdout


def _wait_for_window(env: dict, proc: subprocess.Popen, name: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], env=env,
                               capture_output=True, text=True)
        if found.stdout.split():
            return found.stdout.split()[0]
        time.sleep(0.2)
    pytest.fail(f"no window named {name!r} appeared (exit code {proc.poll()})")


def _press(env: dict, window: str, key: str) -> None:
    subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True, timeout=30)
    subprocess.run(["xdotool", "key", key], env=env, check=True, timeout=30)


@pytest.mark.slow
def test_window_shows_labels_and_fps_and_q_quits(xvfb, small_model, tmp_path):
    from edgecam.runtime.classifier import Classifier

    frames = make_frames(tmp_path / "frames")
    classifier = Classifier(small_model)
    labels = classifier.labels

    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_QPA")}
    env["DISPLAY"] = xvfb
    proc = subprocess.Popen(edgecam_command() + ["run", str(small_model), "--source", str(tmp_path / "frames"),
                                                 "--max-frames", str(SOURCE_FRAMES)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shot_path = tmp_path / "window.png"
    try:
        # 1. The window appears (named after the model).
        window = _wait_for_window(env, proc, "^edgecam - ")

        # 2. Once it shows frames (the first imshow, which also sets the window's size, follows
        #    the window by a moment), give the FPS figure a second to settle, then take the
        #    screenshot that is checked.
        located, box, screen = (-1.0,), (0, 0, 0, 0), None
        deadline = time.monotonic() + 60
        while located[0] < 0.9 and time.monotonic() < deadline and proc.poll() is None:
            box = window_box(env, window)
            screen = screenshot(xvfb, shot_path)
            located = locate_in_window(screen, box, frames)
        if located[0] < 0.9:
            wx, wy, ww, wh = box
            shown = screen[wy : wy + wh, wx : wx + ww] if screen is not None else np.zeros((1, 1, 3))
            ended = f"the run ended, exit code {proc.returncode}" if proc.poll() is not None else "the run is going on"
            err = proc.communicate(timeout=30)[1] if proc.poll() is not None else ""
            pytest.fail(f"no frame on screen (best match {located}, window at {box}, its pixels mean "
                        f"{shown.mean():.1f} std {shown.std():.1f}; {ended}) {err[-1500:]}")
        time.sleep(1.0)
        box = window_box(env, window)
        screen = screenshot(xvfb, shot_path)
        assert proc.poll() is None, "the run ended before the screenshot"

        # 3. q in the window ends the run, long before the frames would have.
        _press(env, window, "q")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    summary = re.search(r"^(\d+) frames, (\d+) dropped", err, re.M)
    assert summary, err[-2000:]
    assert 0 < int(summary.group(1)) < SOURCE_FRAMES, f"the run did not stop at q: {summary.group(0)}"

    # 4. The screenshot: not blank, and the frame on it carries the overlay.
    assert screen.std() > 20, "blank screenshot"
    score, index, scale, x, y = locate_in_window(screen, box, frames)
    assert score > 0.9, f"the frame is not on the screenshot (best match {score:.2f})"
    frame = frames[index]
    h, w = round(FRAME_SIZE[1] * scale), round(FRAME_SIZE[0] * scale)
    assert 0 <= x and 0 <= y and x + w <= screen.shape[1] and y + h <= screen.shape[0]
    shown = cv2.resize(screen[y : y + h, x : x + w], FRAME_SIZE, interpolation=cv2.INTER_LINEAR)

    probs, unknown_score = classifier.classify_all(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    top = [(p.label, p.score) for p in classifier.top_k(probs, 3)]
    # The decided label heads the panel (no smoothing: this frame's). The model carries an unknown
    # score; a training photo is not expected to be rejected, but the headline follows the model.
    rejected = classifier.unknown_threshold is not None and unknown_score > classifier.unknown_threshold
    decided = UNKNOWN if rejected else top[0][0]
    expected = draw_overlay(frame.copy(), top, 10.0, 10.0, headline=decided_text(decided, top[0][1]))
    changed = np.any(expected != frame, axis=2)
    ys, xs = np.nonzero(changed)
    px1, py1 = int(xs.max()) + 1, int(ys.max()) + 1  # the panel: from (0, 0) to here
    panel_shown = shown[:py1, :px1].astype(float).mean()
    panel_plain = frame[:py1, :px1].astype(float).mean()
    assert panel_shown < 0.6 * panel_plain, f"no dark panel: {panel_shown:.0f} vs {panel_plain:.0f} without overlay"
    rest = np.abs(shown[py1 + 10 :].astype(float) - frame[py1 + 10 :]).mean()
    assert rest < 8, f"the frame below the panel differs from the source by {rest:.1f} on average"

    def green_mask(image):
        return np.abs(image.astype(int) - GREEN).max(axis=2) < 40

    want, got = green_mask(expected), green_mask(shown)
    overlap = (want & got).sum() / max(1, (want | got).sum())
    assert want.sum() > 50 and overlap > 0.6, f"green bars: {got.sum()} px shown, {want.sum()} expected, IoU {overlap:.2f}"

    # 5. The text, read back: the decided label first, then every label (the model has three, all
    #    shown), the top one first, and the FPS.
    text = ocr(screen[y : y + round(py1 * scale), x : x + round(px1 * scale)], tmp_path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for label in labels:
        assert label in text, f"{label!r} not read on screen: {text!r}"
    assert lines[0].startswith(decided), f"decided label {decided!r} is not the headline: {lines}"
    assert lines[1].startswith(top[0][0]), f"top label {top[0][0]!r} is not the first row: {lines}"
    assert re.search(r"[\dOo]+\.[\dOo]\s*FPS", text), f"no FPS figure read on screen: {text!r}"


def _photos_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg")) if folder.is_dir() else []


@pytest.mark.slow
def test_collect_window_saves_a_photo_per_number_key_and_q_quits(xvfb, tmp_path):
    """`edgecam collect` in a real window (the runtime's Window): 1 and 2 save the frame shown
    under labels 1 and 2, the key help is drawn on it, and q ends the session."""
    frames = tmp_path / "frames"
    frames.mkdir()
    red = np.zeros((480, 640, 3), np.uint8)
    red[:] = (40, 40, 220)  # BGR: a red scene
    assert cv2.imwrite(str(tmp_path / "red.png"), red)
    for i in range(900):  # 60 s at the 15 FPS an image folder plays at: far longer than needed
        (frames / f"{i:04d}.png").symlink_to(tmp_path / "red.png")
    dataset = tmp_path / "dataset"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_QPA")}
    env["DISPLAY"] = xvfb
    proc = subprocess.Popen(edgecam_command() + ["collect", str(dataset), "--labels", "mug,keys", "--source", str(frames)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = _wait_for_window(env, proc, "^edgecam collect - ")
        for key, label in (("1", "mug"), ("2", "keys")):
            _press(env, window, key)
            wait_for = time.monotonic() + 20
            while not _photos_in(dataset / label) and time.monotonic() < wait_for and proc.poll() is None:
                time.sleep(0.1)
            assert _photos_in(dataset / label), f"key {key} saved nothing under {label}"
        shot = screenshot(xvfb, tmp_path / "collect-window.png")
        wx, wy, ww, wh = window_box(env, window)
        panel = shot[wy : wy + wh // 4, wx : wx + ww // 3].astype(int)
        assert (np.abs(panel - (255, 255, 255)).max(axis=2) < 40).any(), "no key help drawn in the window"
        _press(env, window, "q")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    for label in ("mug", "keys"):
        (photo,) = _photos_in(dataset / label)  # one key press, one photo
        saved = cv2.imread(str(photo))
        assert saved is not None and saved.shape == (480, 640, 3)
        assert abs(saved.reshape(-1, 3).mean(axis=0) - (40, 40, 220)).max() < 8  # the raw frame, no overlay
    assert "saved 2 photos" in err and "train with: edgecam finetune data.path=" in err
