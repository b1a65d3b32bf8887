"""``export.target: imx500``: the trained classifier as ``packerOut.zip`` for the Raspberry Pi AI Camera.

After the normal export, the trained weights go across to the IMX500 venv in a framework-neutral
form (one array per layer weight, by layer name, in an ``.npz``: the main environment's Keras 3
files do not load in that venv's Keras 2.15) with the images it needs as uint8 arrays:
calibration images from the training split, the validation and test images with their labels,
and a few images with the trained model's probabilities to check the rebuilt network against.
``child.py`` does the rest there. The run folder gets ``packerOut.zip``, the converter's memory
report and ``imx500.json`` (labels, input, fit: what ``edgecam run network.rpk`` reads beside the
``.rpk``); the report gets a section (float against quantised, fit, input format). The same
accuracy gate as int8 applies (``export.max_accuracy_drop``, on the validation split): a network
that fails it is kept as ``packerOut_rejected.zip``. ``model.tflite`` is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgecam import files
from edgecam.config.finetune import FinetuneConfig
from edgecam.console import log, progress as progress_items
from edgecam.data.dataset import Dataset
from edgecam.errors import ConfigError, ExportError
from edgecam.modelfile.preprocess import Preprocessing
from edgecam.training.imx500 import env

CHILD = Path(__file__).with_name("child.py")
BACKBONES = ("mobilenet_v1", "mobilenet_v2")  # what child.build rebuilds (v3 has a Rescaling inside)
CHECK_IMAGES = 8  # images the rebuilt network must give the trained model's probabilities on
METADATA = "imx500.json"


def require(cfg: FinetuneConfig) -> Path:
    """Before any training: the backbone can go to the IMX500, and Java and the venv are there."""
    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"export.target: imx500 supports model.backbone {' or '.join(BACKBONES)}, "
                          f"got {cfg.model.backbone}")
    return env.require()


def export_imx500(model, dataset: Dataset, cfg: FinetuneConfig, run_dir: Path, progress: bool = True) -> dict:
    """Quantise, measure and convert ``model`` (the trained Keras 3 classifier) in the IMX500 venv.

    Returns the report's ``imx500`` section; its ``failed`` (if any) is the one-line reason the
    run must end with an error once the rest of the report is written.
    """
    try:
        python = require(cfg)
    except (ExportError, ConfigError) as exc:  # the CLI checks first; a library caller learns it here
        return {"failed": str(exc), "error": str(exc)}
    log("IMX500: quantising for the AI Camera in the IMX500 venv (TensorFlow 2.15, MCT, imxconv-tf)")
    with tempfile.TemporaryDirectory(prefix="edgecam-imx500-") as tmp:
        job_dir = Path(tmp)
        splits = write_job(job_dir, model, dataset, cfg, progress)
        result = run_child(python, job_dir, progress)
        if "error" in result:
            return {"failed": f"IMX500 export: {result['error']}", "error": result["error"]}
        section = summarise(result, splits)
        keep_files(job_dir, result, run_dir, dataset, cfg, section)
    return gate(section, run_dir, cfg.export.max_accuracy_drop)


def network_name(run_name: str) -> str:
    """The network's name on the camera (the converter takes it from the file name)."""
    return ("edgecam_" + re.sub(r"[^A-Za-z0-9_]", "_", run_name))[:40]


def layer_weights(model, backbone: str) -> dict[str, np.ndarray]:
    """Every weight of the backbone's layers and the head's classifier, keyed "layer/index"."""
    from edgecam.training.backbone import base_model

    out = {}
    layers = list(base_model(model.get_layer(f"{backbone}_features")).layers)
    layers.append(model.get_layer("head").get_layer("probability"))
    for layer in layers:
        for i, value in enumerate(layer.get_weights()):
            out[f"{layer.name}/{i}"] = np.asarray(value, np.float32)
    return out


def write_job(job_dir: Path, model, dataset: Dataset, cfg: FinetuneConfig, progress: bool) -> list[str]:
    """The child's inputs in ``job_dir``; returns the splits it measures."""
    from edgecam.training.finetune import _calibration_images

    np.savez(job_dir / "weights.npz", **layer_weights(model, cfg.model.backbone))
    calibration = _calibration_images(dataset, cfg)
    np.save(job_dir / "calibration.npy", calibration)
    splits = [name for name in ("val", "test") if dataset.split(name)]
    for name in splits:
        images, labels = load_split(dataset, name, cfg, progress)
        np.save(job_dir / f"{name}_images.npy", images)
        np.save(job_dir / f"{name}_labels.npy", labels)
    check = calibration[:CHECK_IMAGES]
    np.save(job_dir / "check_images.npy", check)
    np.save(job_dir / "check_probabilities.npy", model.predict(check.astype(np.float32), verbose=0))
    job = {"backbone": cfg.model.backbone, "alpha": cfg.model.alpha, "input_size": cfg.model.input_size,
           "labels": list(dataset.labels), "network": network_name(cfg.name), "splits": splits,
           "calibration_images": int(len(calibration))}
    (job_dir / "job.json").write_text(json.dumps(job, indent=1) + "\n")
    return splits


def load_split(dataset: Dataset, split: str, cfg: FinetuneConfig, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """A split's images as the model sees them (uint8, fitted to the input) and their labels."""
    from edgecam.data.images import load_rgb

    size, rule = (cfg.model.input_size, cfg.model.input_size), Preprocessing(fit=cfg.model.fit)
    samples = dataset.split(split)
    images = np.stack([rule.apply(load_rgb(s.path), size)
                       for s in progress_items(samples, f"IMX500 {split} images", progress)])
    return images, np.asarray([s.label for s in samples], np.int64)


def run_child(python: Path, job_dir: Path, progress: bool = True) -> dict:
    """``child.py`` in the IMX500 venv; its result.json (``{"error": ...}`` when it failed)."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONNOUSERSITE": "1"}
    environment.pop("PYTHONPATH", None)  # the main environment's packages must not leak in
    if not progress:
        environment["TQDM_DISABLE"] = "1"  # MCT's progress bars
    try:  # both to Python's stderr: fd 2 may be /dev/null (console.quiet_native_logs)
        stream = sys.stderr if _has_fd(sys.stderr) else None
        done = subprocess.run([str(python), str(CHILD), str(job_dir)], stdout=stream, stderr=stream, env=environment)
    except OSError as exc:
        return {"error": f"cannot start {python}: {exc.strerror or exc}"}
    result_path = job_dir / "result.json"
    if not result_path.is_file():
        return {"error": f"the IMX500 step ended without a result (exit code {done.returncode}); its output is above"}
    return json.loads(result_path.read_text())


def _has_fd(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def summarise(result: dict, splits: list[str]) -> dict:
    """The report's section from the child's figures."""
    converter = result["converter"]
    inputs = converter["inputs"]
    return {
        "packer": "packerOut.zip",
        "memory_report": converter["report_file"],
        "fits": converter["fits"],
        "memory": {k: converter[k] for k in ("memory_usage", "memory_available", "memory_utilisation")},
        "input": inputs[0] if len(inputs) == 1 else inputs,
        "uint8_pixels": len(inputs) == 1 and (inputs[0]["bits"], inputs[0]["format"], inputs[0]["scale"])
        == (8, "unsigned", 1.0),
        "outputs": converter["outputs"],
        "splits": result["splits"],
        "float_check": result["float_check"],
        "calibration_images": result["calibration_images"],
        "target_platform": result["target_platform"],
        "unknown_score": None,  # not on the sensor in this version: README, "Raspberry Pi AI Camera"
        "timings_s": result["timings_s"],
        "versions": result["versions"],
    }


def keep_files(job_dir: Path, result: dict, run_dir: Path, dataset: Dataset, cfg: FinetuneConfig,
               section: dict) -> None:
    """packerOut.zip, the memory report, the converter's log and imx500.json into the run folder."""
    converted = Path(result["packer"]).parent
    for source, name in ((converted / "packerOut.zip", "packerOut.zip"),
                         (converted / section["memory_report"], section["memory_report"]),
                         (converted / "dnnParams.xml", "dnnParams.xml"),
                         (job_dir / "imxconv.log", "imxconv.log")):
        with files.atomic_path(run_dir / name) as tmp:
            shutil.copyfile(source, tmp)
    size = cfg.model.input_size
    described = {"edgecam_imx500": 1, "network": network_name(cfg.name), "labels": list(dataset.labels),
                 "input_size": [size, size], "fit": cfg.model.fit,
                 "preprocessing": Preprocessing(fit=cfg.model.fit).describe((size, size)),
                 "output": "probabilities", "unknown_score": None}
    files.write_text(run_dir / METADATA, json.dumps(described, indent=1) + "\n")


def gate(section: dict, run_dir: Path, max_drop: float) -> dict:
    """Reject a network that does not fit or lost too much validation accuracy (kept, renamed)."""
    val = section["splits"].get("val")
    drop = val["float_accuracy"] - val["quantised_accuracy"] if val else 0.0
    reason = None
    if not section["fits"]:
        reason = f"the network does not fit in the IMX500's memory ({section['memory']['memory_usage']} needed)"
    elif drop > max_drop:
        reason = (f"the quantised network lost {drop:.1%} validation accuracy "
                  f"(limit export.max_accuracy_drop={max_drop})")
    if reason:
        (run_dir / "packerOut.zip").replace(run_dir / "packerOut_rejected.zip")
        section.update(packer="packerOut_rejected.zip", rejected=reason,
                       failed=f"IMX500 export: {reason}; kept as {run_dir / 'packerOut_rejected.zip'}")
    return section
