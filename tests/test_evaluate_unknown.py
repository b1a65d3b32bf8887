"""``edgecam evaluate --unknown DIR``: how well a model's unknown score rejects images of no label.

Known images are saturated shades of red, green and blue (what the colours models recognise and
the unknown score was calibrated on); unknown ones are grey, black and white frames. The AUROC
and the sweep are checked on hand-computed cases, ties included, and against a brute force.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import (BLOCK_TENSORFLOW, COLORS_MODEL, COLORS_UNKNOWN_INT8_MODEL, COLORS_UNKNOWN_MODEL,
                      NO_HEAVY_MODULES)
from edgecam.cli import cli
from edgecam.evaluation.evaluate import evaluate_folder
from edgecam.evaluation.unknown import (NO_SCORE_NOTE, NO_THRESHOLD_NOTE, RULE, auroc, sweep, summary_lines,
                                        unknown_report)
from edgecam.runtime.classifier import Classifier
from helpers import isolated_env

# Saturated shades: the dominant channel high, the others low (channel order R, G, B).
SHADES = {"red": [(0.8, 0.1, 0.1), (0.9, 0.15, 0.05), (0.7, 0.05, 0.2)],
          "green": [(0.1, 0.8, 0.1), (0.15, 0.9, 0.05), (0.05, 0.7, 0.2)],
          "blue": [(0.1, 0.1, 0.8), (0.15, 0.05, 0.9), (0.2, 0.05, 0.7)]}
GREYS = [0, 60, 128, 200, 255]  # black, greys, white
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_png(path: Path, rgb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = np.full((40, 50, 3), np.round(np.asarray(rgb, float) * 255)[::-1], np.uint8)  # BGR for OpenCV
    assert cv2.imwrite(str(path), frame)
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    for label, shades in SHADES.items():
        for n, rgb in enumerate(shades):
            write_png(root / label / f"{n}.png", rgb)
    return root


@pytest.fixture
def greys(tmp_path) -> Path:
    """Grey, black and white frames (one in a sub-folder), a corrupt image, a text file and a hidden file."""
    root = tmp_path / "nothing"
    for i, level in enumerate(GREYS):
        write_png(root / ("sub" if i == 2 else "") / f"grey{level}.png", (level / 255,) * 3)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("shot on a grey day\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def run(tmp_path: Path, *args) -> tuple:
    """The CLI in-process (run folders inside tmp_path); returns (result, out folder)."""
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["evaluate", *map(str, args), "--out", str(out), "-q"])
    return result, out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- the numbers -----------------------------------------------------------------------------------
def brute_auroc(known, unknown) -> float:
    pairs = [(u > k) + 0.5 * (u == k) for u in unknown for k in known]
    return sum(pairs) / len(pairs)


def test_auroc_on_hand_computed_cases_ties_count_half():
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 1.0  # every unknown above every known
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5  # all tied
    # u=0.35: above 0.1, tied with 0.35 -> 1.5 of 4; u=0.9: above all four -> 4 of 4: 5.5 / 8
    assert auroc([0.1, 0.4, 0.35, 0.8], [0.35, 0.9]) == pytest.approx(0.6875)
    # u=1: tie with one of three knowns (0.5), above one (1) -> 1.5; u=2: above 1 and 1, tie with 2 -> 2.5: 4 / 6
    assert auroc([1, 2, 0], [1, 2]) == pytest.approx(4 / 6)
    assert auroc([], [1.0]) is None and auroc([1.0], []) is None


def test_auroc_matches_a_brute_force_count_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        known, unknown = rng.integers(0, 6, rng.integers(1, 30)), rng.integers(2, 9, rng.integers(1, 30))
        assert auroc(known, unknown) == pytest.approx(brute_auroc(known, unknown))


def test_the_sweep_runs_from_rejecting_all_to_keeping_all_and_its_area_is_the_auroc():
    rng = np.random.default_rng(1)
    known, unknown = rng.integers(0, 8, 40), rng.integers(3, 12, 25)  # overlapping, with ties
    kept, rejected = sweep(known, unknown)
    assert (kept[0], rejected[0]) == (0.0, 1.0) and (kept[-1], rejected[-1]) == (1.0, 0.0)
    assert np.all(np.diff(kept) >= 0) and np.all(np.diff(rejected) <= 0)
    area = float(np.sum(np.diff(kept) * (rejected[1:] + rejected[:-1]) / 2))  # trapezoids: ties count half
    assert area == pytest.approx(auroc(known, unknown))
    # Hand case: known {1, 2}, unknown {2, 3}: thresholds 1, 2, 3 keep 1/2, 1, 1 and reject 1, 1/2, 0.
    kept, rejected = sweep([1, 2], [2, 3])
    assert kept.tolist() == [0.0, 0.5, 1.0, 1.0] and rejected.tolist() == [1.0, 1.0, 0.5, 0.0]


def row(true: str, predicted: str, score: float) -> dict:
    return {"path": f"{true or 'u'}{score}.png", "true": true, "predicted": predicted, "score": 0.9,
            "unknown_score": score}


def test_the_report_on_hand_made_rows():
    known = [row("a", "a", 0.1), row("a", "a", 0.2), row("b", "b", 0.3), row("b", "a", 0.9)]  # the wrong one: high
    folders = {"x/nothing": [row("", "a", 0.8), row("", "b", 0.95)], "x/species": [row("", "a", 0.25),
                                                                                    row("", "b", 0.6)]}
    report = unknown_report(known, folders, "model", 0.5, accuracy=0.75, calibrated_keep=0.95)
    assert report["rejected"] == 0.75 and report["known_kept"] == 0.75
    assert report["accuracy_kept"] == 1.0 and report["accuracy_change"] == pytest.approx(0.25)
    assert report["folders"]["x/nothing"] == {"images": 2, "rejected": 1.0, "auroc": 0.875}  # 0.8 < 0.9 only
    assert report["folders"]["x/species"]["rejected"] == 0.5
    assert report["auroc"] == 0.75  # 0.8: above 3 of 4 knowns, 0.95: 4, 0.25: 2, 0.6: 3 -> 12 / 16
    assert (report["threshold"], report["threshold_source"], report["calibrated_keep"], report["rule"]) == (
        0.5, "model", 0.95, RULE)
    assert "note" not in report
    assert [r["decision"] for r in known] == ["known", "known", "known", "unknown"]
    assert [r["decision"] for r in folders["x/species"]] == ["known", "unknown"]
    assert summary_lines(report) == [
        "unknown: 75.0% of 4 rejected (nothing: 100%, species: 50%) · known kept 75.0% · AUROC 0.750 · "
        "accuracy 0.750 → 1.000 kept",
        f"  threshold 0.5 from the model's metadata ({RULE})"]


def test_the_report_without_a_threshold_or_without_an_unknown_score():
    for source, threshold, note in (("model", None, NO_THRESHOLD_NOTE), ("max-softmax", 0.5, NO_SCORE_NOTE)):
        known = [row("a", "a", 0.1), row("b", "b", 0.2)]
        folders = {"a/nothing": [row("", "a", 0.8)], "b/nothing": [row("", "a", 0.15)]}
        report = unknown_report(known, folders, source, threshold, accuracy=1.0)
        assert report["score"] == source and report["note"] == note
        assert report["threshold"] is None and report["threshold_source"] is None
        assert report["rejected"] is None and report["known_kept"] is None and report["accuracy_kept"] is None
        assert report["folders"]["a/nothing"] == {"images": 1, "rejected": None, "auroc": 1.0}
        assert report["auroc"] == 0.75
        assert all(r["decision"] == "" for r in known + folders["a/nothing"])
        assert summary_lines(report) == [  # two folders named alike: shown as given
            f"unknown: 2 images (a/nothing: 1, b/nothing: 1) · AUROC 0.750 ({source})", f"note: {note}"]


# -- the command -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [COLORS_UNKNOWN_MODEL, COLORS_UNKNOWN_INT8_MODEL], ids=["float32", "int8"])
def test_greys_are_rejected_and_every_shade_is_kept(tmp_path, data, greys, model):
    result, out = run(tmp_path, model, data, "--unknown", greys)
    assert result.exit_code == 0, result.output
    threshold = Classifier(model).unknown_threshold
    lines = result.stdout.splitlines()
    assert lines[0] == "accuracy: 1.0000 on 9 images (0 wrong, 2 skipped)"
    assert lines[-3:] == [
        "unknown: 100.0% of 5 rejected (nothing: 100%) · known kept 100.0% · AUROC 1.000 · accuracy 1.000 → 1.000 kept",
        f"  threshold {threshold:.4g} from the model's metadata ({RULE})", f"results: {out}"]

    metrics = json.loads((out / "metrics.json").read_text())
    u = metrics["unknown"]
    assert (u["score"], u["threshold"], u["threshold_source"], u["rule"]) == ("model", threshold, "model", RULE)
    assert (u["images"], u["known_images"], u["rejected"], u["known_kept"], u["auroc"]) == (5, 9, 1.0, 1.0, 1.0)
    assert (u["accuracy"], u["accuracy_kept"], u["accuracy_change"]) == (1.0, 1.0, 0.0)
    assert u["folders"] == {str(greys): {"images": 5, "rejected": 1.0, "auroc": 1.0}}
    assert "note" not in u and "unknown_predictions" not in metrics and "predictions" not in metrics
    assert {s["path"]: s["reason"].split(" (")[0] for s in metrics["skipped"]} == {
        str(greys / "broken.jpg"): "not an image", str(greys / "notes.txt"): "not an image file"}

    rows = read_csv(out / "predictions.csv")
    assert list(rows[0]) == ["path", "true", "predicted", "score", "unknown_score", "decision"]
    known, unknown = rows[:9], rows[9:]
    assert all(r["true"] and r["decision"] == "known" and float(r["unknown_score"]) <= threshold for r in known)
    assert sorted(Path(r["path"]).name for r in unknown) == sorted(f"grey{level}.png" for level in GREYS)
    assert all(r["true"] == "" and r["decision"] == "unknown" and float(r["unknown_score"]) > threshold
               for r in unknown)
    assert list(read_csv(out / "misclassified.csv")) == []
    assert (out / "misclassified.csv").read_text().splitlines() == ["path,true,predicted,score,unknown_score,decision"]
    png = out / "unknown.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and cv2.imread(str(png)) is not None
    assert (out / "confusion_matrix.png").exists()


def test_the_library_function_with_two_folders(tmp_path, data, greys):
    """Shades filed as unknown are (rightly, for this model) kept: that folder's rejection is 0."""
    look_alikes = tmp_path / "look-alikes"
    for n, rgb in enumerate([(0.85, 0.1, 0.1), (0.1, 0.1, 0.85)]):
        write_png(look_alikes / f"{n}.png", rgb)
    result = evaluate_folder(COLORS_UNKNOWN_MODEL, data, tmp_path / "out", progress=False,
                             unknown_dirs=[greys, look_alikes])
    u = result["unknown"]
    assert u["folders"][str(greys)]["rejected"] == 1.0 and u["folders"][str(look_alikes)]["rejected"] == 0.0
    assert u["rejected"] == pytest.approx(5 / 7) and u["known_kept"] == 1.0 and u["images"] == 7
    known = [r["unknown_score"] for r in result["predictions"]]
    unknown = [r["unknown_score"] for r in result["unknown_predictions"]]
    assert len(known) == 9 and len(unknown) == 7
    assert u["auroc"] == pytest.approx(brute_auroc(known, unknown))
    assert u["folders"][str(look_alikes)]["auroc"] == pytest.approx(brute_auroc(known, unknown[-2:]))
    assert [r["decision"] for r in result["unknown_predictions"]] == ["unknown"] * 5 + ["known"] * 2
    assert (tmp_path / "out" / "unknown.png").read_bytes()[:8] == PNG_MAGIC


def test_a_model_without_an_unknown_score_gives_the_max_softmax_auroc_only(tmp_path, data, greys):
    result, out = run(tmp_path, COLORS_MODEL, data, "--unknown", greys)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-3:] == [
        "unknown: 5 images (nothing: 5) · AUROC 1.000 (max-softmax)", f"note: {NO_SCORE_NOTE}", f"results: {out}"]
    u = json.loads((out / "metrics.json").read_text())["unknown"]
    assert (u["score"], u["auroc"], u["note"]) == ("max-softmax", 1.0, NO_SCORE_NOTE)  # a grey frame: 1/3 each
    assert u["rejected"] is None and u["known_kept"] is None and u["threshold"] is None
    assert u["accuracy"] == 1.0 and u["accuracy_kept"] is None
    rows = read_csv(out / "predictions.csv")
    assert all(r["decision"] == "" for r in rows) and len(rows) == 14
    assert all(float(r["unknown_score"]) == pytest.approx(1 - float(r["score"]), abs=1e-4) for r in rows)
    assert (out / "unknown.png").read_bytes()[:8] == PNG_MAGIC


def test_without_unknown_folders_nothing_changes(tmp_path, data):
    result, out = run(tmp_path, COLORS_UNKNOWN_MODEL, data)
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("unknown") for line in result.stdout.splitlines())
    assert "unknown" not in json.loads((out / "metrics.json").read_text())
    assert (out / "predictions.csv").read_text().splitlines()[0] == "path,true,predicted,score"
    assert not (out / "unknown.png").exists()


@pytest.mark.parametrize("case", ["missing", "no images", "only broken images"])
def test_an_unusable_unknown_folder_is_one_line_naming_it(tmp_path, data, case):
    folder = tmp_path / "nothing"
    if case != "missing":
        folder.mkdir()
        (folder / "notes.txt").write_text("no photos yet\n")
    if case == "only broken images":
        (folder / "a.jpg").write_bytes(b"")
    result, out = run(tmp_path, COLORS_UNKNOWN_MODEL, data, "--unknown", folder)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    expected = {"missing": f"Error: {folder}: --unknown folder not found",
                "no images": f"Error: {folder}: no images in this --unknown folder (.jpg, .jpeg, .png, .bmp, .webp)",
                "only broken images": f"Error: {folder}: no usable images in this --unknown folder (1 skipped, "
                                      "e.g. 'a.jpg': "}[case]
    assert line.startswith(expected), line
    if case != "only broken images":  # found before the output folder is made
        assert not out.exists()


def test_a_failing_plot_keeps_the_unknown_numbers(tmp_path, data, greys, monkeypatch):
    import matplotlib.figure

    def broken(self, *args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    result, out = run(tmp_path, COLORS_UNKNOWN_MODEL, data, "--unknown", greys)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["unknown"]["rejected"] == 1.0
    assert not (out / "unknown.png").exists()
    assert "note: could not draw unknown.png (MemoryError: std::bad_alloc)" in result.stderr


def test_without_tensorflow_or_matplotlib(tmp_path, data, greys):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "evaluate", str(COLORS_UNKNOWN_INT8_MODEL),
                           str(data), "--unknown", str(greys), "--out", str(out), "-q"], capture_output=True,
                          text=True, timeout=180, env=isolated_env(tmp_path, display=False), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == NO_HEAVY_MODULES and "Traceback" not in proc.stderr
    assert "unknown: 100.0% of 5 rejected" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["unknown"]["auroc"] == 1.0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "misclassified.csv", "predictions.csv"]
