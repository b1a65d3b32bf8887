"""How fast is ``edgecam finetune`` compared with the Keras transfer-learning tutorial?

Everything is measured in one invocation on the same data, so the printed figures are
ratios that hold even on a busy machine. Stages, each in its own child process (so one
stage's memory, threads and compiled graphs cannot help or hurt the next):

1. edgecam cold   ``finetune()`` with defaults and a fresh, empty embedding cache.
2. edgecam warm   the same again with the cache the cold run filled.
3. embedding      images/s of the cached backbone .tflite run by LiteRT as finetune's embedding
                  pass runs it (``run_images``: one image per call, a one-thread interpreter per
                  core) vs Keras ``predict`` (batch 32) of the
                  same backbone (``build_backbone``) on the same preloaded images, each after a
                  warm-up. Decoding and crop/resize are excluded for both; the uint8 -> float cast
                  is inside the LiteRT graph (timed) but done beforehand for Keras (not timed).
4. keras tutorial the feature-extraction part of tensorflow.org's "Transfer learning and
                  fine-tuning" (MobileNetV2): image_dataset_from_directory (20 % validation,
                  seed 123), RandomFlip + RandomRotation(0.2), preprocess_input, frozen backbone
                  called with training=False, GlobalAveragePooling2D + Dropout(0.2) + Dense, Adam
                  with the tutorial's learning rate 0.0001, 10 epochs; every epoch decodes the JPEGs
                  and runs the backbone. Changes from the tutorial: 224x224 input (not 160), a 5-way
                  softmax head with sparse categorical crossentropy (not 1 logit), the real test/
                  folder for test accuracy, and no evaluate() before training.
                  Then, with the clock running on (unless --skip-tutorial-fine-tune), the
                  tutorial's fine-tuning part, the pipeline edgecam's default compares with (it
                  tunes the backbone's top blocks too): layers from 100 on trainable, RMSprop at a
                  tenth of the rate, 10 more epochs, test accuracy again.

Wall and CPU times (CPU = user + system time of all the child's threads, which other jobs on
the machine disturb far less than wall time) are measured inside each child after ``import
keras``: edgecam = the ``finetune()`` call (scan, embed, train, export, LiteRT check of val and
test); tutorial = dataset creation + model building + fit + evaluate. The total child-process
wall times (with imports) and the 1-minute load average around each stage are printed too.
Test accuracy: edgecam's exported model.tflite run with LiteRT; the tutorial's Keras model.

Run (40-70 min on 2 cores):  .venv/bin/python benchmarks/finetune_speed.py > bench.log 2>&1
Options: --quick (tiny subset, 2 tutorial epochs; NOT the real comparison), --skip-tutorial,
--skip-tutorial-fine-tune (its first part only),
--data FLOWERS_ROOT (with train/ and test/), --weights FOLDER_WITH_KERAS_H5, --keep; then any
finetune overrides (key=value) for the edgecam runs, e.g. train.fine_tune_blocks=0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The shared data beside the repository (../shared), or $EDGECAM_SHARED.
SHARED = Path(os.environ.get("EDGECAM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
V2_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
QUICK_BANNER = "QUICK MODE: small subset and 2 tutorial epochs - these figures are NOT the real comparison"


class Clock:
    """Wall and CPU seconds since creation."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict:
        return {"wall": time.perf_counter() - self.wall, "cpu": time.process_time() - self.cpu}


# ---------------------------------------------------------------- stages (child processes)

def stage_edgecam(args) -> dict:
    import keras  # noqa: F401 - import cost is outside the timing, as for the tutorial

    from edgecam.config.finetune import load_finetune_config
    from edgecam.training.finetune import finetune

    overrides = [f"data.path={args.data}", f"model.weights={args.weights}", f"cache={args.work / 'cache'}",
                 f"output={args.work / 'runs'}", "name=bench", *args.overrides]
    cfg = load_finetune_config(None, overrides)
    clock = Clock()
    result = finetune(cfg)
    return {**clock.read(), "acc": result.report["metrics"]["tflite"]["test"]["accuracy"],
            "timings": result.timings, "run_dir": str(result.run_dir), "cache": result.report["embedding_cache"]}


def stage_tutorial(args) -> dict:
    import keras
    import tensorflow as tf

    size, batch = (224, 224), 32
    weights = args.weights if args.weights.is_file() else args.weights / V2_WEIGHTS
    clock = Clock()
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.data / "train", validation_split=0.2, subset="both", seed=123, image_size=size, batch_size=batch)
    test_ds = keras.utils.image_dataset_from_directory(
        args.data / "test", shuffle=False, image_size=size, batch_size=batch)
    names = train_ds.class_names
    assert names == test_ds.class_names == sorted(names), (names, test_ds.class_names)
    train_ds, val_ds, test_ds = (d.prefetch(tf.data.AUTOTUNE) for d in (train_ds, val_ds, test_ds))

    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])
    base = keras.applications.MobileNetV2(input_shape=size + (3,), include_top=False, weights=str(weights))
    base.trainable = False
    inputs = keras.Input(size + (3,))
    x = augmentation(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.0001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)
    _, accuracy = model.evaluate(test_ds, verbose=0)
    result = {**clock.read(), "acc": float(accuracy), "epochs": args.epochs}
    if not args.skip_tutorial_fine_tune:  # the clock runs on: the whole tutorial's time
        tuned_accuracy = tutorial_fine_tune(model, base, train_ds, val_ds, test_ds, args.epochs)
        result["fine_tune"] = {**clock.read(), "acc": tuned_accuracy, "epochs": 2 * args.epochs}
    return result


def tutorial_fine_tune(model, base, train_ds, val_ds, test_ds, epochs: int) -> float:
    """The tutorial's second part, continuing the same fit: the base trainable from layer 100 on
    (BatchNorm stays in inference mode: the base is called with training=False), RMSprop at a tenth
    of the first part's rate, as many epochs again. Returns the test accuracy."""
    import keras

    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.0001 / 10),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_ds, validation_data=val_ds, epochs=2 * epochs, initial_epoch=epochs, verbose=2)
    return float(model.evaluate(test_ds, verbose=0)[1])


def stage_embedding(args) -> dict:
    import numpy as np

    from edgecam.config.finetune import ModelConfig
    from edgecam.data.images import load_rgb
    from edgecam.modelfile.preprocess import fit_to_input
    from edgecam.runtime.inference_pool import run_images
    from edgecam.training.backbone import build_backbone
    from edgecam.training.embeddings import EmbeddingCache

    paths = sorted((args.data / "train").rglob("*.jpg"))
    paths = paths[:: max(1, len(paths) // args.images)][: args.images]  # spread over all classes
    images = np.stack([fit_to_input(load_rgb(p), (224, 224)) for p in paths])  # uint8, not timed
    cfg = ModelConfig(weights=str(args.weights))

    cache = EmbeddingCache(args.work / "cache", cfg)
    model, outputs = cache.pass_model()

    def embed_all(count: int) -> np.ndarray:
        return np.stack([out[0][0] for _, out in run_images(model, lambda i: [images[i]], range(count), outputs)])

    embed_all(16)  # warm-up
    start = time.perf_counter()
    lite = embed_all(len(images))
    lite_s = time.perf_counter() - start

    backbone = build_backbone(cfg)
    floats = images.astype(np.float32)
    backbone.predict(floats[:64], batch_size=32, verbose=0)  # warm-up (traces the graph)
    start = time.perf_counter()
    ref = backbone.predict(floats, batch_size=32, verbose=0)
    keras_s = time.perf_counter() - start
    return {"n": len(images), "litert": len(images) / lite_s, "keras": len(images) / keras_s,
            "max_abs_diff": float(np.abs(lite - ref).max())}


def source_fingerprint() -> str:
    """Hash of the edgecam sources: shows when someone's edit lands between two stages."""
    root = Path(__file__).resolve().parents[1] / "edgecam"
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.py")))).hexdigest()[:12]


STAGES = {"edgecam": stage_edgecam, "tutorial": stage_tutorial, "embedding": stage_embedding}


# ---------------------------------------------------------------- driver

def run_stage(name: str, args, work: Path, label: str, overrides: list[str] | None = None) -> dict:
    """Run one stage in a child process; its output goes to ours, its result comes back as JSON.
    ``overrides``: the edgecam run's finetune overrides (default: the command line's)."""
    work.mkdir(parents=True, exist_ok=True)
    result_file = work / f"{''.join(c if c.isalnum() else '_' for c in label)}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--data", str(args.data),
               "--weights", str(args.weights), "--work", str(work), "--result", str(result_file),
               "--epochs", str(args.epochs), "--images", str(args.images),
               *(["--skip-tutorial-fine-tune"] if args.skip_tutorial_fine_tune else []),
               *(args.overrides if overrides is None else overrides)]
    print(f"\n=== {label} ===", file=sys.stderr, flush=True)
    start, load = time.perf_counter(), os.getloadavg()[0]
    subprocess.run(command, check=True)
    result = json.loads(result_file.read_text())
    result["process_wall"] = time.perf_counter() - start
    result["load"] = (load, os.getloadavg()[0])
    return result


def quick_subset(data: Path, work: Path, per_class: dict[str, int]) -> Path:
    """Copy the first few photos of every class and split into ``work/data``."""
    root = work / "data"
    for split, count in per_class.items():
        for folder in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            (root / split / folder.name).mkdir(parents=True)
            for photo in sorted(folder.glob("*.jpg"))[:count]:
                shutil.copy2(photo, root / split / folder.name / photo.name)
    return root


def read_all_files(root: Path) -> None:
    """Read every file once so the OS file cache is equally warm for every stage."""
    for path in root.rglob("*"):
        if path.is_file():
            path.read_bytes()


def print_table(cold: dict, warm: dict, tutorial: dict | None, embed: dict, quick: bool) -> None:
    lines = ["", f"{'':22}{'wall s':>9}{'cpu s':>9}{'test acc':>10}{'load before/after':>19}"]
    rows = [("edgecam cold", cold), ("edgecam warm", warm)]
    if tutorial:
        rows.append((f"keras tutorial ({tutorial['epochs']} ep)", tutorial))
    lines += [f"{name:22}{r['wall']:>9.1f}{r['cpu']:>9.1f}{r['acc']:>10.3f}{r['load'][0]:>13.1f} / {r['load'][1]:.1f}"
              for name, r in rows]
    whole = tutorial and tutorial.get("fine_tune")
    if whole:
        lines.append(f"{'tutorial+tune (' + str(whole['epochs']) + ' ep)':22}{whole['wall']:>9.1f}"
                     f"{whole['cpu']:>9.1f}{whole['acc']:>10.3f}")
    if tutorial:
        lines.append(f"speed-up (tutorial / edgecam cold): {tutorial['wall'] / cold['wall']:.1f}x   "
                     f"accuracy difference: {100 * (cold['acc'] - tutorial['acc']):+.1f} points")
        lines.append(f"speed-up in CPU time: {tutorial['cpu'] / cold['cpu']:.1f}x")
        if whole:
            lines.append(f"speed-up (tutorial with its fine-tuning / edgecam cold): {whole['wall'] / cold['wall']:.1f}x "
                         f"(CPU {whole['cpu'] / cold['cpu']:.1f}x)   accuracy difference: "
                         f"{100 * (cold['acc'] - whole['acc']):+.1f} points")
    else:
        lines.append("speed-up: tutorial skipped (--skip-tutorial)")
    lines.append(f"warm / cold: {warm['wall'] / cold['wall']:.2f}   (CPU time: {warm['cpu'] / cold['cpu']:.2f})")
    lines.append(f"embedding: litert {embed['litert']:.1f} img/s, keras predict {embed['keras']:.1f} img/s, "
                 f"ratio {embed['litert'] / embed['keras']:.1f}x  ({embed['n']} images, "
                 f"max |litert - keras| {embed['max_abs_diff']:.2g})")
    lines.append(f"child processes incl. imports, wall s: cold {cold['process_wall']:.1f}, warm {warm['process_wall']:.1f}"
                 + (f", tutorial {tutorial['process_wall']:.1f}" if tutorial else ""))
    for name, r in (("cold", cold), ("warm", warm)):
        stages = " · ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())
        lines.append(f"{name} stages s: {stages}   (cache: {r['cache']})")
    sources = {r["source"] for r in (cold, warm, embed)}
    lines.append(f"edgecam source {cold['source']}" if len(sources) == 1 else
                 f"WARNING: edgecam source changed between stages ({', '.join(sorted(sources))}): figures mix versions")
    if quick:
        lines += [QUICK_BANNER]
    print("\n".join(lines), flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "flowers")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights")
    parser.add_argument("--quick", action="store_true", help="tiny subset, 2 tutorial epochs (not the real comparison)")
    parser.add_argument("--skip-tutorial", action="store_true")
    parser.add_argument("--skip-tutorial-fine-tune", action="store_true",
                        help="stop the tutorial after its feature-extraction part (saves ~13 min on 2 cores)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (run folders, cache)")
    for internal in ("--stage", "--work", "--result"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--compare", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="another cold edgecam run with these overrides (own empty cache), in the same "
                             "invocation; repeatable")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="finetune config overrides for both edgecam runs, e.g. train.fine_tune_blocks=0")
    args = parser.parse_args(argv)
    args.data, args.weights = args.data.resolve(), args.weights.resolve()
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.stage:  # child process
        args.work = Path(args.work)
        source = source_fingerprint()
        Path(args.result).write_text(json.dumps({**STAGES[args.stage](args), "source": source}))
        return
    work = Path(tempfile.mkdtemp(prefix="edgecam-bench-"))
    try:
        if args.quick:
            print(QUICK_BANNER, flush=True)
            args.data = quick_subset(args.data, work, {"train": 40, "test": 15})
            args.epochs, args.images = 2, 64
        read_all_files(args.data)
        cold = run_stage("edgecam", args, work, "edgecam cold")
        warm = run_stage("edgecam", args, work, "edgecam warm")
        others = [(settings, run_stage("edgecam", args, work / f"compare{i}", f"edgecam cold, {settings}",
                                       settings.split()))
                  for i, settings in enumerate(args.compare)]
        embed = run_stage("embedding", args, work, "embedding throughput")
        tutorial = None if args.skip_tutorial else run_stage("tutorial", args, work, "keras tutorial")
        print_table(cold, warm, tutorial, embed, args.quick)
        for settings, other in others:
            print(f"edgecam cold with {settings}: {other['wall']:.1f} s wall, {other['cpu']:.1f} s CPU, test acc "
                  f"{other['acc']:.3f}" + (f"; speed-up {tutorial['wall'] / other['wall']:.1f}x (CPU "
                                           f"{tutorial['cpu'] / other['cpu']:.1f}x)" if tutorial else "")
                  + f"\n  stages s: {' · '.join(f'{k} {v:.1f}' for k, v in other['timings'].items())}", flush=True)
        print(f"edgecam settings: defaults{' + ' + ' '.join(args.overrides) if args.overrides else ''}", flush=True)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
