"""The IMX500 half of ``export.target: imx500``, run by the IMX500 venv's Python: ``python child.py JOB``.

That Python has TensorFlow 2.15 with Keras 2, Sony's quantiser (MCT) and converter; edgecam's
training side is Keras 3, whose files do not load there, so this script imports nothing from
edgecam and takes everything as plain files in the JOB folder (``job.json``, ``weights.npz`` with
every layer's weights by name, images as uint8 ``.npy``). It rebuilds the trained network in
Keras 2 with the input scaling written as multiply and subtract (the converter rejects Keras'
``Rescaling`` layer), checks it gives the trained model's outputs, quantises it with MCT for the
IMX500, measures float against quantised, and converts it with ``imxconv-tf``. The figures (or
``{"error": one line}``) go to ``JOB/result.json``; progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

# Keras preprocessing layers, which the converter refuses ("unsupported ops"; proven for Rescaling):
# scaling belongs in plain arithmetic, the rest outside the network.
REJECTED_LAYERS = frozenset({"Rescaling", "Normalization", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation",
                             "RandomZoom", "RandomContrast", "RandomBrightness"})
FLOAT_TOLERANCE = 2e-3  # largest difference in probability allowed between the rebuilt and the trained model
TPC = ("tensorflow", "imx500", "v1")  # MCT's target platform capabilities for the IMX500
BATCH = 16


class JobError(Exception):
    """A one-line reason the job failed (what the main process shows the user)."""


def log(message: str) -> None:
    print(f"imx500: {message}", file=sys.stderr, flush=True)


def rejected_layers(class_names) -> list[str]:
    """The layer classes among ``class_names`` that the converter refuses."""
    return sorted({name for name in class_names if name in REJECTED_LAYERS})


def build(job: dict, weights):
    """The trained classifier in Keras 2: uint8-valued float input → scaling → backbone → softmax."""
    import tensorflow as tf

    size = int(job["input_size"])
    shape = (size, size, 3)
    factory = {"mobilenet_v1": tf.keras.applications.MobileNet,
               "mobilenet_v2": tf.keras.applications.MobileNetV2}[job["backbone"]]
    base = factory(input_shape=shape, alpha=float(job["alpha"]), include_top=False, weights=None, pooling="avg")
    inputs = tf.keras.Input(shape, name="image")
    if job.get("scaling") == "rescaling":  # only for tests: a network the converter must refuse
        x = tf.keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    else:
        x = inputs * (1.0 / 127.5) - 1.0
    head = tf.keras.layers.Dense(len(job["labels"]), activation="softmax", name="probability")
    model = tf.keras.Model(inputs, head(base(x)), name=job["network"])
    _load_weights(base.layers + [head], weights)
    return model


def _load_weights(layers, weights) -> None:
    used = set()
    for layer in layers:
        if not layer.weights:
            continue
        keys = [f"{layer.name}/{i}" for i in range(len(layer.weights))]
        missing = [k for k in keys if k not in weights]
        if missing:
            raise JobError(f"the trained weights have no {missing[0]} (another backbone or Keras version?)")
        try:
            layer.set_weights([weights[k] for k in keys])
        except ValueError as exc:
            raise JobError(f"layer {layer.name}: {str(exc).splitlines()[0]}") from None
        used.update(keys)
    unused = sorted(set(weights.files) - used)
    if unused:
        raise JobError(f"trained weights {unused[0]} (and {len(unused) - 1} more) have no layer in the rebuilt network")


def check_float(model, job_dir: Path) -> float:
    """Largest difference between the rebuilt model's and the trained model's probabilities."""
    images = np.load(job_dir / "check_images.npy").astype(np.float32)
    expected = np.load(job_dir / "check_probabilities.npy")
    got = model.predict(images, batch_size=BATCH, verbose=0)
    diff = float(np.abs(got - expected).max())
    if diff > FLOAT_TOLERANCE:
        raise JobError(f"the network rebuilt in Keras 2 disagrees with the trained one (probabilities differ by up "
                       f"to {diff:.4f}, allowed {FLOAT_TOLERANCE})")
    return diff


def quantise(model, calibration: np.ndarray):
    """MCT post-training quantisation for the IMX500. One frame of 0s and 255s goes first so that
    the input's range is the whole pixel range (8-bit unsigned, scale 1) whatever the photos are."""
    import model_compression_toolkit as mct

    extremes = np.zeros((1,) + calibration.shape[1:], np.float32)
    extremes[:, ::2] = 255.0
    images = np.concatenate([extremes, calibration.astype(np.float32)])

    def batches():
        for start in range(0, len(images), BATCH):
            yield [images[start:start + BATCH]]

    tpc = mct.get_target_platform_capabilities(*TPC)
    quantised, _ = mct.ptq.keras_post_training_quantization(model, batches, target_platform_capabilities=tpc)
    return quantised


def evaluate(float_model, quantised, job_dir: Path, splits: list[str]) -> dict:
    """Per split: float and quantised accuracy and how often the two give the same top label."""
    out = {}
    for split in splits:
        images = np.load(job_dir / f"{split}_images.npy", mmap_mode="r")
        labels = np.load(job_dir / f"{split}_labels.npy")
        f_top, q_top = [], []
        for start in range(0, len(images), 64):
            batch = np.asarray(images[start:start + 64], np.float32)
            f_top.append(float_model.predict(batch, batch_size=BATCH, verbose=0).argmax(axis=1))
            q_top.append(quantised.predict(batch, batch_size=BATCH, verbose=0).argmax(axis=1))
        f_top, q_top = np.concatenate(f_top), np.concatenate(q_top)
        out[split] = {"images": int(len(labels)), "float_accuracy": float((f_top == labels).mean()),
                      "quantised_accuracy": float((q_top == labels).mean()),
                      "agreement": float((f_top == q_top).mean())}
        log(f"{split}: float {out[split]['float_accuracy']:.4f}, quantised {out[split]['quantised_accuracy']:.4f}, "
            f"same answer {out[split]['agreement']:.1%} ({len(labels)} images)")
    return out


def export_keras(quantised, path: Path, check: bool = True) -> None:
    import model_compression_toolkit as mct

    names = [type(layer.layer if hasattr(layer, "layer") else layer).__name__ for layer in quantised.layers]
    refused = rejected_layers(names) if check else []
    if refused:
        raise JobError(f"the quantised network has layers the IMX500 converter refuses: {', '.join(refused)}")
    mct.exporter.keras_export_model(model=quantised, save_model_path=str(path))


def convert(keras_path: Path, out_dir: Path) -> None:
    """``imxconv-tf`` (run from this Python, whatever path the venv's scripts name); its log is kept."""
    command = [sys.executable, "-c", "import sys; from imx500_converter.main_tf import main; "
               "sys.argv[0] = 'imxconv-tf'; sys.exit(main())", "-i", str(keras_path), "-o", str(out_dir),
               "--overwrite-output"]
    log_path = out_dir.parent / "imxconv.log"
    with open(log_path, "w") as log_file:
        done = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT)
    if done.returncode or not (out_dir / "packerOut.zip").is_file():
        raise JobError(f"imxconv-tf refused the network: {converter_error(log_path.read_text(errors='replace'))}")


def converter_error(text: str) -> str:
    """The converter's first ERROR line, without its time stamp and source location."""
    for line in text.splitlines():
        match = re.search(r"\bERROR\s*:\s*(.*?)(\s*\[[^\]]*\])?\s*$", line)
        if match and match.group(1):
            return match.group(1)
    last = [line for line in text.splitlines() if line.strip()]
    return last[-1].strip() if last else "no output"


def memory_report(out_dir: Path) -> dict:
    """What the converter says about fit and memory, and the input and output tensors' formats."""
    reports = sorted(out_dir.glob("*_MemoryReport.json"))
    if not reports:
        raise JobError(f"imxconv-tf wrote no memory report in {out_dir}")
    memory = json.loads(reports[0].read_text())["Memory Report"]
    params = ElementTree.parse(out_dir / "dnnParams.xml").getroot()

    def tensor(element) -> dict:
        return {"name": element.get("name"), "bits": int(element.get("bitsPerElement")),
                "format": element.get("format"), "scale": float(element.get("scale")),
                "shape": [int(d.get("size")) for d in element.iter("dimension")]}

    return {"fits": bool(memory.get("Fit In Chip")), "memory_usage": memory.get("Memory Usage"),
            "memory_available": memory.get("Total Memory Available On Chip"),
            "memory_utilisation": memory.get("Memory Utilization"), "report_file": reports[0].name,
            "inputs": [tensor(e) for e in params.iter("inputTensor")],
            "outputs": [tensor(e) for e in params.iter("outputTensor")]}


def versions() -> dict:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("tensorflow", "model_compression_toolkit", "imx500-converter")}


def run(job_dir: Path) -> dict:
    job = json.loads((job_dir / "job.json").read_text())
    timings, start = {}, time.perf_counter()
    with np.load(job_dir / "weights.npz") as weights:
        model = build(job, weights)
    check = job.get("layer_check", True)  # off only in the test that shows the converter's own refusal
    refused = rejected_layers(type(layer).__name__ for layer in model.layers) if check else []
    if refused:
        raise JobError(f"the network has layers the IMX500 converter refuses: {', '.join(refused)}")
    float_diff = check_float(model, job_dir)
    log(f"rebuilt {job['backbone']} in Keras 2: probabilities within {float_diff:.2g} of the trained model")
    t = time.perf_counter()
    quantised = quantise(model, np.load(job_dir / "calibration.npy"))
    timings["quantise"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    measured = evaluate(model, quantised, job_dir, job["splits"])
    timings["evaluate"] = round(time.perf_counter() - t, 1)
    out_dir = job_dir / "converted"
    keras_path = job_dir / f"{job['network']}.keras"
    export_keras(quantised, keras_path, check)
    log("converting with imxconv-tf (a minute or two)")
    t = time.perf_counter()
    convert(keras_path, out_dir)
    timings["convert"] = round(time.perf_counter() - t, 1)
    timings["total"] = round(time.perf_counter() - start, 1)
    return {"splits": measured, "float_check": float_diff, "calibration_images": int(job["calibration_images"]),
            "target_platform": "/".join(TPC[1:]), "converter": memory_report(out_dir), "timings_s": timings,
            "versions": versions(), "packer": str(out_dir / "packerOut.zip")}


def main(argv: list[str]) -> int:
    job_dir = Path(argv[1])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result = run(job_dir)
        code = 0
    except JobError as exc:
        result, code = {"error": str(exc)}, 1
    except Exception as exc:  # anything TensorFlow or MCT raise: one line for the user, the trace on stderr
        import traceback

        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result, code = {"error": f"{type(exc).__name__}: {first}"}, 1
    (job_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
