"""The Raspberry Pi AI Camera (IMX500): export with Sony's toolchain, run through picamera2.

Proven here: the export for real up to ``packerOut.zip`` (slow; needs the IMX500 venv of
``edgecam imx500 setup`` and Java 17, and skips saying so without them), the errors without Java,
without the venv or with a network the converter refuses, and the run loop against a fake of
picamera2's IMX500 interface (tests/fake_imx500.py) that returns recorded output tensors in each
frame's metadata. Not proven here: a real camera, ``imx500-package`` (Pi only).
"""

from __future__ import annotations

import ast
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fake_imx500
from conftest import FLOWERS3_MODEL, V1_WEIGHTS, WEIGHTS
from helpers import FLOWERS_MINI, need
from edgecam.config.camera import RunConfig
from edgecam.config.finetune import load_finetune_config
from edgecam.errors import ConfigError, EdgecamError, ExportError, ModelError
from edgecam.runtime import imx500 as runtime_imx500
from edgecam.training import imx500 as training_imx500
from edgecam.training.imx500 import child, env
from edgecam.training.imx500.export import gate, require

TIMING_KEYS = ("time", "fps", "inference_ms", "latency_ms")
# What imxconv-tf 3.18.2 printed for a network with Keras' Rescaling layer (seen in the IMX500 venv).
CONVERTER_LOG = """2026-11-29 19:30:50,146 INFO : Converting r.keras [/venv/uni/common/logger.py:179]
2026-11-29 19:31:22,168 ERROR : CODE: [USOP] The network contains unsupported ops: keras.src.layers.preprocessing.\
image_preprocessing.Rescaling [/venv/lib/python3.11/site-packages/uni/common/logger.py:185]
"""


# -- config and toolchain errors (fast) -----------------------------------------------------------
def test_export_target_is_a_config_key_with_two_values():
    assert load_finetune_config(None, []).export.target == "tflite"
    assert load_finetune_config(None, ["export.target=imx500"]).export.target == "imx500"
    with pytest.raises(ConfigError, match="target"):
        load_finetune_config(None, ["export.target=hailo"])


def test_mobilenet_v3_is_refused_before_training():
    cfg = load_finetune_config(None, ["export.target=imx500", "model.backbone=mobilenet_v3_small"])
    with pytest.raises(ConfigError, match="mobilenet_v1 or mobilenet_v2"):
        require(cfg)


def test_without_java_edgecam_finetune_stops_at_once_in_one_line(tmp_path):
    """Before any training (TensorFlow is not even imported): one line naming Java 17 and how to get it."""
    from runfixtures import NO_HEAVY_MODULES, edgecam

    done = edgecam("finetune", f"data.path={FLOWERS_MINI}", f"output={tmp_path / 'runs'}", "export.target=imx500",
                   env={**os.environ, "PATH": str(tmp_path / "no-java")}, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode != 0 and len(errors) == 1, done.stderr
    assert "Java 17" in errors[0] and "openjdk-17-jre-headless" in errors[0]
    assert done.stderr.splitlines()[-1] == NO_HEAVY_MODULES and not (tmp_path / "runs").exists()


def test_without_the_venv_the_error_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECAM_IMX500_VENV", str(tmp_path / "nowhere"))
    monkeypatch.setattr(env, "java_version", lambda: 17)
    with pytest.raises(ExportError) as caught:
        env.require()
    assert "\n" not in str(caught.value) and "edgecam imx500 setup" in str(caught.value)
    # A venv whose setup did not finish (no marker) or that was built for other pins is not ready either.
    (tmp_path / "nowhere" / "bin").mkdir(parents=True)
    (tmp_path / "nowhere" / "bin" / "python").write_text("")
    assert "no IMX500 toolchain" in env.venv_problem()
    (tmp_path / "nowhere" / env.MARKER).write_text(json.dumps({"pins": ["tensorflow==2.14.0"]}))
    assert "other versions" in env.venv_problem()
    (tmp_path / "nowhere" / env.MARKER).write_text(json.dumps({"pins": list(env.PINS)}))
    assert env.venv_problem() is None


def test_old_java_is_named(monkeypatch):
    monkeypatch.setattr(env, "java_version", lambda: 11)
    assert "the java on PATH is 11" in env.java_problem()


def test_child_imports_nothing_from_edgecam():
    """child.py runs in the IMX500 venv, where edgecam's Keras 3 code cannot load."""
    tree = ast.parse(Path(child.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] == "edgecam"}


def test_rescaling_is_caught_before_the_converter_and_its_refusal_is_one_line():
    assert child.rejected_layers(["InputLayer", "TFOpLambda", "Rescaling", "Functional"]) == ["Rescaling"]
    assert child.rejected_layers(["InputLayer", "TFOpLambda", "Functional", "Dense"]) == []
    assert child.converter_error(CONVERTER_LOG) == ("CODE: [USOP] The network contains unsupported ops: "
                                                   "keras.src.layers.preprocessing.image_preprocessing.Rescaling")


def section(val_float=0.9, val_quantised=0.9, fits=True) -> dict:
    return {"splits": {"val": {"images": 100, "float_accuracy": val_float, "quantised_accuracy": val_quantised,
                               "agreement": 0.97}},
            "fits": fits, "memory": {"memory_usage": "3.9MB", "memory_available": "8.00MB",
                                     "memory_utilisation": "49%"},
            "input": {"bits": 8, "format": "unsigned", "scale": 1.0, "shape": [224, 224, 3], "name": "image:0"},
            "uint8_pixels": True, "packer": "packerOut.zip", "target_platform": "imx500/v1",
            "calibration_images": 200, "float_check": 1e-5}


@pytest.mark.parametrize("kwargs, reason", [
    ({"val_quantised": 0.85}, "lost 5.0% validation accuracy"),
    ({"fits": False}, "does not fit"),
])
def test_the_accuracy_gate_and_the_fit_reject_the_network(tmp_path, kwargs, reason):
    (tmp_path / "packerOut.zip").write_bytes(b"zip")
    rejected = gate(section(**kwargs), tmp_path, 0.02)
    assert reason in rejected["failed"] and not (tmp_path / "packerOut.zip").exists()
    assert (tmp_path / "packerOut_rejected.zip").read_bytes() == b"zip"
    assert "**Rejected:**" in "\n".join(training_imx500.report_lines(rejected))


def test_a_network_within_the_gate_is_kept_and_reported(tmp_path):
    (tmp_path / "packerOut.zip").write_bytes(b"zip")
    kept = gate(section(val_quantised=0.89), tmp_path, 0.02)
    assert "failed" not in kept and (tmp_path / "packerOut.zip").exists()
    text = "\n".join(training_imx500.report_lines(kept))
    assert "| val | 100 | 90.0% | 89.0% | 97.0% |" in text and "fits in the chip" in text
    assert "8-bit unsigned, scale 1, 224x224x3" in text
    assert training_imx500.summary_line(kept) == ("imx500: packerOut.zip fits (3.9MB of 8.00MB); val accuracy "
                                                  "0.8900 quantised, 0.9000 float, 97.0% the same answer")


# -- the run loop with a fake AI Camera (fast) ----------------------------------------------------------
def recorded_frames(count: int = 6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Photos as the image-folder source hands them out, and flowers3.tflite's probabilities for each."""
    from edgecam.runtime.classifier import Classifier
    from edgecam.runtime.sources import parse_source

    source = parse_source(str(need(FLOWERS_MINI)))
    source.open()
    frames = [source.read() for _ in range(count)]
    classifier = Classifier(FLOWERS3_MODEL)
    return frames, [classifier.classify_all(frame)[0] for frame in frames]


def network_beside(tmp_path: Path, labels=("daisy", "roses", "tulips"), fit="center_crop") -> Path:
    network = tmp_path / "out" / "network.rpk"
    network.parent.mkdir(parents=True)
    network.write_bytes(b"9464 recorded network")
    (network.parent / "imx500.json").write_text(json.dumps({"labels": list(labels), "fit": fit,
                                                            "input_size": [224, 224]}))
    return network


def run_loop(cfg: RunConfig, capsys, monkeypatch) -> tuple[list[dict], list[tuple]]:
    """Run the camera loop; (JSON lines without their timings, (top, headline) of each overlay drawn)."""
    from edgecam.runtime import loop
    from edgecam.runtime.outputs import Output
    from edgecam.runtime.overlay import draw_overlay as real

    drawn = []

    def draw(bgr, top, fps, inference_ms, headline=None):
        drawn.append((tuple(top), headline))
        return real(bgr, top, fps, inference_ms, headline=headline)

    class Watcher(Output):
        wants_pixels = True

    monkeypatch.setattr(loop, "draw_overlay", draw)
    capsys.readouterr()
    loop.run(cfg, window=False, extra_outputs=lambda classifier, source: [Watcher()])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING_KEYS} for line in lines], drawn


def test_the_fake_camera_gives_the_same_lines_overlay_and_decisions_as_litert(tmp_path, capsys, monkeypatch):
    frames, probabilities = recorded_frames()
    settings = dict(headless=True, hold=0.0, smoothing=0.3, top_k=2, threshold=0.42)
    litert, litert_drawn = run_loop(RunConfig(model=str(FLOWERS3_MODEL), source=str(FLOWERS_MINI),
                                              max_frames=len(frames), **settings), capsys, monkeypatch)
    # Two frames before the network has answered (no outputs in their metadata): never classified.
    device = fake_imx500.install(monkeypatch, frames[:2] + frames, [None, None] + [[p] for p in probabilities])
    monkeypatch.setattr(runtime_imx500.IMX500Camera, "live", False)  # every frame, as from a file: lines pair up
    network = network_beside(tmp_path)
    imx500, imx500_drawn = run_loop(RunConfig(model=str(network), **settings), capsys, monkeypatch)
    assert len(litert) == len(frames) and [line["frame"] for line in imx500] == list(range(len(frames)))
    assert imx500 == litert and imx500_drawn == litert_drawn
    assert {line["label"] for line in litert} == {"daisy", "roses", "unknown"} and "unknown_score" not in imx500[0]
    assert device.network == str(network.resolve()) and device.served == len(frames) + 2
    assert device.calls[:5] == ["IMX500", "Picamera2", "progress_bar", "start", "set_auto_aspect_ratio"]
    assert device.released == device.served and device.calls[-2:] == ["stop", "close"]


def test_labels_come_from_labels_txt_or_the_option_and_a_resize_network_keeps_the_whole_sensor(tmp_path, monkeypatch):
    network = tmp_path / "network.rpk"
    network.write_bytes(b"net")
    with pytest.raises(ModelError, match="no labels: put imx500.json or labels.txt"):
        runtime_imx500.network_info(network)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    assert runtime_imx500.network_info(network).labels == ("a", "b")
    assert runtime_imx500.network_info(network, ["x", "y"]).labels == ("x", "y")
    described = network_beside(tmp_path / "r", fit="resize")
    frames, probabilities = recorded_frames(1)
    device = fake_imx500.install(monkeypatch, frames, [[probabilities[0]]])
    classifier, camera = runtime_imx500.open_network(described)
    assert "set_auto_aspect_ratio" not in device.calls
    rgb = camera.read()
    assert np.array_equal(rgb, frames[0])
    probs, unknown = classifier.infer_all(classifier.prepare(rgb))
    assert np.array_equal(probs, probabilities[0]) and unknown is None
    with pytest.raises(ModelError, match="did not come from the AI Camera"):
        classifier.prepare(rgb.copy())
    camera.close()


def test_a_network_with_other_outputs_or_another_source_is_one_line(tmp_path, monkeypatch):
    network = network_beside(tmp_path)
    frames, _ = recorded_frames(1)
    fake_imx500.install(monkeypatch, frames, [[np.float32([0.2, 0.8])]])
    classifier, camera = runtime_imx500.open_network(network)
    with pytest.raises(ModelError, match="outputs 2 values, but there are 3 labels"):
        classifier.infer_all(classifier.prepare(camera.read()))
    with pytest.raises(ModelError, match="--source video.mp4 cannot feed it"):
        runtime_imx500.open_network(network, source="video.mp4")


def test_without_picamera2_the_run_fails_in_one_line(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails, as on a machine without it
    with pytest.raises(EdgecamError, match="picamera2 with IMX500 support: not installed"):
        runtime_imx500.open_network(network_beside(tmp_path))


def test_an_rpk_is_not_reloaded_while_running(tmp_path):
    from edgecam.runtime.reload import load_model

    with pytest.raises(EdgecamError, match="cannot be swapped while running"):
        load_model(tmp_path / "network.rpk")


# -- the real export (slow; needs the IMX500 venv and Java) ----------------------------------------
def need_toolchain() -> None:
    problem = env.java_problem() or env.venv_problem()
    if problem:
        pytest.skip(f"IMX500 toolchain missing: {problem}")


@pytest.fixture(scope="module")
def imx500_run(tmp_path_factory):
    """flowers-mini with MobileNet v1 0.25, exported for the IMX500 for real."""
    need_toolchain()
    need(V1_WEIGHTS)
    need(FLOWERS_MINI)
    from edgecam.training.finetune import finetune

    root = tmp_path_factory.mktemp("imx500")
    cfg = load_finetune_config(None, [
        f"data.path={FLOWERS_MINI}", f"model.weights={WEIGHTS}", f"output={root / 'runs'}", f"cache={root / 'cache'}",
        "name=imx", "model.backbone=mobilenet_v1", "model.alpha=0.25", "train.augment.views=0", "train.epochs=15",
        "export.target=imx500", "export.max_accuracy_drop=0.2"])
    return finetune(cfg, progress=False)


@pytest.mark.slow
def test_finetune_converts_a_small_model_end_to_end(imx500_run):
    run_dir, report = imx500_run.run_dir, imx500_run.report
    imx = report["export"]["imx500"]
    assert "failed" not in imx and imx["fits"] and imx["uint8_pixels"]
    assert imx["input"]["shape"] == [224, 224, 3] and imx["outputs"][0]["shape"] == [3]
    with zipfile.ZipFile(run_dir / "packerOut.zip") as packed:
        manifest = json.loads(packed.read("manifest.json"))
        assert manifest["Target"] == "IMX500" and manifest["Network Name"] == "edgecam_imx"
        assert {"dnnParams.xml", "l2staticData.bin"} <= set(packed.namelist())
    assert json.loads((run_dir / imx["memory_report"]).read_text())["Memory Report"]["Fit In Chip"] is True
    val = imx["splits"]["val"]
    assert val["images"] >= 3 and val["agreement"] >= 0.66
    assert val["float_accuracy"] == pytest.approx(report["metrics"]["keras"]["val"], abs=1e-6)
    assert (run_dir / "model.tflite").is_file()  # the normal export is still there
    described = json.loads((run_dir / "imx500.json").read_text())
    assert described["labels"] == ["daisy", "roses", "tulips"] and described["fit"] == "center_crop"
    assert "## Raspberry Pi AI Camera (IMX500)" in (run_dir / "report.md").read_text()


@pytest.mark.slow
def test_a_network_the_converter_refuses_is_one_line(imx500_run, tmp_path):
    """The same trained network with its scaling as Keras' Rescaling layer: refused by edgecam's own
    check, and (with that check off) by imxconv-tf itself, each as one line."""
    import keras

    from edgecam.data.dataset import scan_dataset
    from edgecam.training.imx500 import export

    cfg = load_finetune_config(imx500_run.run_dir / "config.yaml", [])
    model = keras.saving.load_model(imx500_run.run_dir / "model.keras")
    dataset = scan_dataset(cfg.data, progress=False)
    for check, expected in ((True, "layers the IMX500 converter refuses: Rescaling"),
                            (False, "imxconv-tf refused the network: CODE: [USOP] The network contains "
                                    "unsupported ops")):
        job_dir = tmp_path / f"check-{check}"
        job_dir.mkdir()
        export.write_job(job_dir, model, dataset, cfg, progress=False)
        job = json.loads((job_dir / "job.json").read_text())
        (job_dir / "job.json").write_text(json.dumps({**job, "scaling": "rescaling", "layer_check": check}))
        result = export.run_child(env.venv_python(), job_dir)
        assert expected in result["error"] and "\n" not in result["error"]


@pytest.mark.slow
def test_without_the_venv_after_training_model_tflite_stays_and_the_error_is_one_line(tmp_path, monkeypatch):
    """A library caller (no CLI check first) learns it after the normal export: model.tflite and the
    report are there, the run ends with one line."""
    need(V1_WEIGHTS)
    from edgecam.runtime.classifier import Classifier
    from edgecam.training.finetune import finetune

    monkeypatch.setenv("EDGECAM_IMX500_VENV", str(tmp_path / "nowhere"))
    cfg = load_finetune_config(None, [
        f"data.path={need(FLOWERS_MINI)}", f"model.weights={WEIGHTS}", f"output={tmp_path / 'runs'}",
        f"cache={tmp_path / 'cache'}", "name=imx", "model.backbone=mobilenet_v1", "model.alpha=0.25",
        "train.augment.views=0", "train.epochs=5", "export.target=imx500"])
    with pytest.raises(ExportError) as caught:
        finetune(cfg, progress=False)
    message = str(caught.value)
    assert "\n" not in message and ("edgecam imx500 setup" in message or "Java" in message)
    run_dir = tmp_path / "runs" / "imx" / "1"
    assert Classifier(run_dir / "model.tflite").labels == ("daisy", "roses", "tulips")
    assert not (run_dir / "packerOut.zip").exists()
    assert f"**Not exported:** {message}" in (run_dir / "report.md").read_text()
