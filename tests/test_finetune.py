"""End-to-end finetune runs with real TensorFlow training and real LiteRT checks.

Uses MobileNet v1 0.25 (small and fast) on real photos; the flowers-scale run with
MobileNetV2 lives in the benchmark and the README's demo.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BLOCK_TENSORFLOW, FLOWERS_MINI, NO_HEAVY_MODULES, V1_WEIGHTS, WEIGHTS, need
from edgecam.config.finetune import load_finetune_config
from edgecam.modelfile.metadata import read_metadata
from edgecam.runtime.classifier import Classifier

pytestmark = pytest.mark.slow

SMALL = ["model.backbone=mobilenet_v1", "model.alpha=0.25", "train.epochs=15", "train.augment.views=1"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One embedding cache for the session: the backbone is converted once. Every test here uses it, so
    every test here skips (saying why) without the flowers-mini photos and the v1 0.25 weights."""
    need(FLOWERS_MINI)
    need(V1_WEIGHTS)
    return tmp_path_factory.mktemp("embedding-cache")


def config(tmp_path: Path, cache_dir: Path, data: Path, *extra: str):
    return load_finetune_config(None, [
        f"data.path={data}", f"model.weights={WEIGHTS}", f"output={tmp_path / 'runs'}",
        f"cache={cache_dir}", "name=t", *SMALL, *extra,
    ])


def run(cfg):
    from edgecam.training.finetune import finetune

    return finetune(cfg, progress=False)


def test_finetune_writes_a_complete_run_folder(tmp_path, cache_dir):
    result = run(config(tmp_path, cache_dir, FLOWERS_MINI))
    folder = result.run_dir
    assert folder == tmp_path / "runs" / "t" / "1" and (tmp_path / "runs" / "t" / "last").resolve() == folder
    for name in ("model.tflite", "labels.txt", "model.keras", "config.yaml", "report.json", "report.md",
                 "confusion_matrix.png", "training_curves.png", "misclassified_val.csv"):
        assert (folder / name).stat().st_size > 0, name
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "labels.txt").read_text() == "daisy\nroses\ntulips\n"
    report = json.loads((folder / "report.json").read_text())
    assert report["data"]["counts"] == {"daisy": {"train": 9, "val": 1}, "roses": {"train": 8, "val": 2},
                                        "tulips": {"train": 9, "val": 1}}
    assert set(report["versions"]) >= {"tensorflow", "ai-edge-litert", "numpy"}
    assert report["seed"] == 0 and len(report["data"]["fingerprint"]) == 64
    assert {"scan", "embed", "train", "export", "evaluate", "total"} <= set(report["timings_s"])

    # The exported file is self-describing: uint8 RGB in, labels inside, runs in LiteRT.
    classifier = Classifier(folder / "model.tflite")
    assert classifier.labels == ("daisy", "roses", "tulips")
    assert classifier.input_dtype == np.uint8 and classifier.input_size == (224, 224)
    info = read_metadata((folder / "model.tflite").read_bytes())
    assert info.mean == (0.0,) and info.std == (1.0,) and info.extra["backbone"] == "mobilenet_v1"
    # The reported tflite accuracy is what the runtime gets on the same images.
    from edgecam.data.images import load_rgb

    val = [r for r in report["metrics"]["tflite"]["val"]["per_label"].values()]
    assert sum(r["support"] for r in val) == 4
    photo = next((FLOWERS_MINI / "tulips").glob("*.jpg"))
    probs = classifier.classify(load_rgb(photo))
    assert probs.shape == (3,) and abs(float(probs.sum()) - 1.0) < 1e-3


def test_same_seed_same_metrics_and_cache_reused(tmp_path, cache_dir):
    first = run(config(tmp_path, cache_dir, FLOWERS_MINI, "train.seed=3"))
    second = run(config(tmp_path, cache_dir, FLOWERS_MINI, "train.seed=3"))
    assert second.run_dir != first.run_dir
    assert second.report["embedding_cache"]["computed"] == 0
    assert second.report["training"]["history"] == first.report["training"]["history"]
    assert second.report["metrics"] == first.report["metrics"]
    # Same data + config + seed = the same model file, byte for byte.
    assert (second.run_dir / "model.tflite").read_bytes() == (first.run_dir / "model.tflite").read_bytes()


def test_awkward_data_is_skipped_and_reported(tmp_path, cache_dir, bad_data_tree):
    result = run(config(tmp_path, cache_dir, bad_data_tree.root, "data.labels=[a,b,c]"))
    report = result.report
    skipped = {Path(s["path"]).name: s["reason"] for s in report["data"]["skipped"]}
    for name, path in bad_data_tree.bad.items():
        assert path.name in skipped, f"{name} not listed as skipped"
    assert skipped[bad_data_tree.bad["empty"].name] == "empty file (0 bytes)"
    assert "truncated" in skipped[bad_data_tree.bad["truncated"].name]
    assert len(report["data"]["conflicts"]) == 1
    assert sorted(report["data"]["conflicts"][0]["labels"]) == ["a", "c"]
    assert report["data"]["duplicates"] and report["data"]["ignored_folders"][0].endswith("d")
    text = (result.run_dir / "report.md").read_text()
    for path in bad_data_tree.bad.values():
        assert path.name in text
    # Usable: 3 photos per label, the odd-but-valid images and the .JPG; the duplicate
    # collapses into its original and both copies of the conflicting photo are left out.
    counts = report["data"]["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 3 * 3 + len(bad_data_tree.odd) + 1


def mediapipe_heads(model: Path, photo: Path) -> list[tuple[str, list[tuple[str, float]]]]:
    """What MediaPipe Tasks' ImageClassifier (a standard metadata consumer) makes of a model:
    (head name, [(label, score), ...]) per output, in output order."""
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=3)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(mp.Image.create_from_file(str(photo)))
    return [(head.head_name, [(c.category_name, c.score) for c in head.categories]) for head in result.classifications]


def test_int8_export_is_small_and_integer(tmp_path, cache_dir):
    from edgecam.data.nothing import nothing_frames

    result = run(config(tmp_path, cache_dir, FLOWERS_MINI, "export.quantization=int8", "export.max_accuracy_drop=1.0"))
    folder = result.run_dir
    # Both exported files carry label names a standard consumer shows, with the runtime's scores;
    # the unknown score is their second output (MediaPipe's second head), with the runtime's value too.
    from edgecam.data.images import load_rgb
    from edgecam.modelfile.preprocess import fit_to_input
    from PIL import Image

    photo = tmp_path / "daisy.png"  # exactly the model's input size: no consumer-side resizing
    Image.fromarray(fit_to_input(load_rgb(next((FLOWERS_MINI / "daisy").glob("*.jpg"))), (224, 224))).save(photo)
    nothing = nothing_frames(14, seed=5)  # two of each kind of "nothing here" frame
    for name in ("model.tflite", "model_float32.tflite"):
        ours = Classifier(folder / name)
        expected, expected_unknown = ours.classify_all(np.asarray(Image.open(photo)))
        heads = mediapipe_heads(folder / name, photo)
        assert len(heads) == 2, (name, heads)
        seen = heads[0][1]
        assert {label for label, _ in seen} == {"daisy", "roses", "tulips"}
        for label, score in seen:
            assert abs(score - expected[ours.labels.index(label)]) < 1e-3, (name, label)
        assert heads[1][0] == "unknown_score" and abs(heads[1][1][0][1] - expected_unknown) < 1e-3, (name, heads[1])
        # The score works in both: a photo it was trained on is known, "nothing here" frames are not.
        assert ours.unknown_threshold == 0.5 == ours.info.extra["unknown"]["threshold"]
        assert expected_unknown < 0.5, name
        rejected = sum(ours.classify_all(frame)[1] > 0.5 for frame in nothing)
        assert rejected >= len(nothing) - 1, f"{name}: only {rejected} of {len(nothing)} nothing frames rejected"
    int8 = Classifier(folder / "model.tflite")
    assert int8.labels == ("daisy", "roses", "tulips")
    assert int8.input_dtype == np.uint8 and int8._input["quantization"] == (1.0, 0)
    assert np.dtype(int8._output["dtype"]) == np.uint8  # the probabilities
    assert int8._unknown["name"] == "unknown_score" and np.dtype(int8._unknown["dtype"]) == np.uint8
    float32 = Classifier(folder / "model_float32.tflite")
    assert float32.input_dtype == np.uint8 and np.dtype(float32._output["dtype"]) == np.float32
    assert float32._unknown["name"] == "unknown_score" and np.dtype(float32._unknown["dtype"]) == np.float32
    assert (folder / "model.tflite").stat().st_size < 0.5 * (folder / "model_float32.tflite").stat().st_size
    assert result.report["export"]["quantization"] == "int8"
    # The report's unknown section is measured on the int8 model (model.tflite).
    assert result.report["unknown"]["folders"]["nothing here (generated)"]["rejected"] >= 0.9


def test_int8_gate_keeps_the_float_model(tmp_path):
    """An int8 model that lost too much accuracy is set aside and the float32 one takes its place."""
    from edgecam.training.finetune import _quality_gate

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"int8")
    (folder / "model_float32.tflite").write_bytes(b"float")
    cfg = load_finetune_config(None, ["export.quantization=int8", "export.max_accuracy_drop=0.02"])
    ok = _quality_gate(cfg, {"val": 0.90}, {"val": {"model": str(folder / "model.tflite"), "metrics": {"accuracy": 0.885}}})
    assert ok is None and (folder / "model.tflite").read_bytes() == b"int8"
    note = _quality_gate(cfg, {"val": 0.90}, {"val": {"model": str(folder / "model.tflite"), "metrics": {"accuracy": 0.85}}})
    assert note.startswith("int8 model lost 5.0% validation accuracy (limit export.max_accuracy_drop=0.02)")
    assert (folder / "model.tflite").read_bytes() == b"float"
    assert (folder / "model_int8_rejected.tflite").read_bytes() == b"int8"


def test_killed_during_export_leaves_no_partial_model_and_rerun_uses_cache(tmp_path, cache_dir):
    scratch = tmp_path / "scratch"  # the process's temp folder: the converter's SavedModel shows up here
    scratch.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch)}
    args = [sys.executable, "-m", "edgecam", "finetune", "-q", f"data.path={FLOWERS_MINI}",
            f"model.weights={WEIGHTS}", f"output={tmp_path / 'runs'}", f"cache={cache_dir}", "name=k", *SMALL,
            # int8 goes through a SavedModel export (its float stem needs the converter's debugger):
            # killed in there; its accuracy on 6 validation photos is no matter here
            "export.quantization=int8", "export.max_accuracy_drop=1.0"]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 600
        while not any(scratch.glob("edgecam-export-*/saved_model.pb")):
            assert proc.poll() is None, "finetune ended before its export"
            assert time.monotonic() < deadline, "no export started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-export: the SavedModel is written, the .tflite is not
        proc.wait(timeout=30)
    finally:
        proc.kill()
    folder = tmp_path / "runs" / "k" / "1"
    assert folder.is_dir() and not (folder / "model.tflite").exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".model.tflite")]

    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "embeddings: 30 images from cache, 0 computed" in proc.stderr
    assert Classifier(tmp_path / "runs" / "k" / "2" / "model.tflite").labels == ("daisy", "roses", "tulips")


def test_evaluate_cli_runs_without_tensorflow(tmp_path, cache_dir):
    """`edgecam evaluate` is edge-side code: it must work where importing TensorFlow fails."""
    model = run(config(tmp_path, cache_dir, FLOWERS_MINI)).model_path
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW, "evaluate", str(model), str(FLOWERS_MINI), "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.rstrip().endswith(NO_HEAVY_MODULES)
    assert proc.stdout.startswith("accuracy: ") and "on 30 images" in proc.stdout.splitlines()[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["images"] == 30
    assert sum(r["support"] for r in metrics["metrics"]["per_label"].values()) == 30
    assert not (out / "confusion_matrix.png").exists()  # matplotlib is blocked too, as on a bare Pi
    assert "note: matplotlib is not installed, skipping plots" in proc.stderr
    wrong = (out / "misclassified.csv").read_text().splitlines()
    assert wrong[0] == "path,true,predicted,score" and len(wrong) - 1 == len(metrics["misclassified"])

    missing = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, "evaluate", str(tmp_path / "nope.tflite"),
                              str(FLOWERS_MINI)], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert missing.stderr == f"Error: {tmp_path / 'nope.tflite'}: model file not found\n{NO_HEAVY_MODULES}\n"
