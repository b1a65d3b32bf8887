"""``edgecam finetune``: folders of photos → run folder with model, report and plots.

Scan → embed (cached) → train head → [fine-tune top layers] → export → check the exported
file with the edge runtime → report. Every step's output lands in one new run folder.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecam import files
from edgecam.config import loader
from edgecam.config.finetune import FinetuneConfig
from edgecam.data.dataset import Dataset, Sample, scan_dataset
from edgecam.data.extra_tests import ExtraTest, scan_extra_tests
from edgecam.errors import ExportError
from edgecam.evaluation.evaluate import evaluate_samples
from edgecam.modelfile.preprocess import Preprocessing
from edgecam.training.backbone import FLOAT_STEM
from edgecam.training.embeddings import EmbeddingCache
from edgecam.training.open_set import fit_rule, int8_features_model, unknown_section
from edgecam.training.tflite import append_head, attach_unknown


@dataclass
class FinetuneResult:
    run_dir: Path
    model_path: Path
    report: dict
    timings: dict[str, float] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Timer:
    """Named wall-clock stages for the report (what took how long)."""

    def __init__(self):
        self.stages: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.stages[name] = round(time.perf_counter() - self.start, 3)

        return _Stage()


def finetune(cfg: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    """Run the whole workstation pipeline for ``cfg``; raises EdgecamError subclasses on bad input."""
    timer, started = _Timer(), time.perf_counter()
    cache_root = Path(cfg.cache) if cfg.cache else files.cache_dir()
    with timer("scan"):  # first, so data errors come before TensorFlow's slow import
        dataset = scan_dataset(cfg.data, progress=progress, index_path=cache_root / "scan-index.json")
        extra_tests = scan_extra_tests(cfg.data, dataset.labels, progress, cache_root / "scan-index.json")
    log(dataset.summary_line())
    for notice in dataset.notices:
        log(f"note: {notice}")
    for extra in extra_tests:
        log(f"extra test {extra.name}: {len(extra.dataset.samples)} images in {extra.root}"
            + (f", {len(extra.dataset.skipped)} skipped" if extra.dataset.skipped else ""))

    from edgecam.training.report import write_report

    run_dir = files.next_run_dir(cfg.output, cfg.name)
    log(f"run folder: {run_dir}")
    files.write_text(run_dir / "config.yaml", _yaml(loader.to_dict(cfg)))
    cache = EmbeddingCache(cache_root, cfg.model)
    backbone = _backbone_for_tuning(cache, cfg, timer)
    with timer("embed"):
        embedded = _embed(cache, dataset, cfg, progress)
    model, head, stages, keras_acc, features = _train(dataset, embedded, cfg, timer, cache, progress, backbone)
    with timer("unknown"):
        rule = fit_rule(features, dataset, embedded, head, cfg, progress)
    with timer("save_keras"):
        _save_keras(model, run_dir / "model.keras")
    with timer("export"):
        # The float model is the backbone .tflite plus the head (and the unknown score): the cached
        # one, or the fine-tuned one converted once (train.fine_tune_blocks).
        float_tflite = append_head(features.features_model(), *head.get_layer("probability").get_weights(), rule=rule)
        model_path, exported = _export(model, dataset, cfg, run_dir, keras_acc, float_tflite, rule)
    with timer("evaluate"):
        evaluations, unknown_report = _check(model_path, dataset, cache, rule is not None, progress, extra_tests)
    result_note = _quality_gate(cfg, keras_acc, evaluations)
    if result_note:  # the metrics below are the rejected int8 model's; model.tflite is float32 now
        exported.update(rejected=result_note, quantization="float32", bytes=exported["float32_bytes"])
    files.write_text(run_dir / "labels.txt", "".join(f"{label}\n" for label in dataset.labels))
    result_note = _imx500(model, dataset, cfg, run_dir, exported, timer, progress) or result_note

    timer.stages["total"] = round(time.perf_counter() - started, 3)  # all but the report itself
    report = write_report(
        run_dir, cfg, dataset, stages, keras_acc, evaluations, exported, timer.stages,
        cache_stats={"hits": cache.hits, "computed": cache.misses}, unknown=unknown_report,
    )
    files.point_link(run_dir.parent / "last", run_dir.name)
    if result_note:
        raise ExportError(result_note)
    return FinetuneResult(run_dir, model_path, report, timer.stages)


def _backbone_for_tuning(cache: EmbeddingCache, cfg: FinetuneConfig, timer: _Timer):
    """With train.fine_tune_blocks: the Keras backbone, built before embedding so that the embedding
    pass also keeps the activations fine-tuning reads (one backbone pass); else None."""
    if not cfg.train.fine_tune_blocks:
        return None
    from edgecam.training.backbone import build_backbone
    from edgecam.training.tune import share_embedding_pass

    with timer("build_model"):
        backbone = build_backbone(cfg.model)
    share_embedding_pass(backbone, cache, cfg)
    return backbone


def _imx500(model, dataset: Dataset, cfg: FinetuneConfig, run_dir: Path, exported: dict, timer: _Timer,
            progress: bool) -> str | None:
    """export.target imx500: packerOut.zip beside model.tflite, which stays as it is; why it failed, if it did."""
    if cfg.export.target != "imx500":
        return None
    from edgecam.training.imx500.export import export_imx500

    with timer("imx500"):
        exported["imx500"] = export_imx500(model, dataset, cfg, run_dir, progress)
    return exported["imx500"].get("failed")


def _check(model_path: Path, dataset: Dataset, cache: EmbeddingCache, scored: bool, progress: bool,
           extra_tests: tuple[ExtraTest, ...] = ()):
    """The exported model on val, test and each extra test through the edge runtime; the unknown
    section (from val and test only) if ``scored``. An extra test's result also has ``extra_test``."""
    evaluations = {name: evaluate_samples(model_path, samples, dataset.labels, desc=f"checking {name}",
                                          progress=progress, cache_dir=cache.root / "checks", unknown_scores=scored)
                   for name, samples in (("val", dataset.split("val")), ("test", dataset.split("test")))
                   if samples}
    report = (unknown_section(model_path, evaluations, dataset, model_path.parent, progress, cache.root / "checks")
              if scored else None)
    for extra in extra_tests:  # labels by name: evaluate_samples maps them onto the model's
        evaluations[extra.name] = evaluate_samples(model_path, extra.dataset.samples, extra.dataset.labels,
                                                   desc=f"checking {extra.name}", progress=progress,
                                                   cache_dir=cache.root / "checks")
        evaluations[extra.name]["extra_test"] = extra.describe()
    return evaluations, report


def _embed(cache: EmbeddingCache, dataset: Dataset, cfg: FinetuneConfig, progress: bool) -> dict[str, np.ndarray]:
    """Embeddings per split: train (images x views x dim), val and test (images x dim)."""
    train, val, test = dataset.split("train"), dataset.split("val"), dataset.split("test")
    out = {"train": cache.embeddings(train, cfg.train.augment.views, cfg.train.augment, cfg.train.seed,
                                     "embedding train", progress),
           "val": cache.embeddings(val, desc="embedding val", progress=progress)[:, 0]}
    if test:
        out["test"] = cache.embeddings(test, desc="embedding test", progress=progress)[:, 0]
    log(f"embeddings: {cache.hits} images from cache, {cache.misses} computed")
    return out


def _train(dataset: Dataset, embedded: dict[str, np.ndarray], cfg: FinetuneConfig, timer: _Timer,
           cache: EmbeddingCache, progress: bool = True, backbone=None):
    """Head on the cached embeddings, then (optionally) the top backbone blocks on cached activations
    (of ``backbone``, built here if not given).

    Returns (the full Keras model, the head, training histories per stage, Keras accuracy per split,
    the backbone features the unknown score and the float model are built on: ``cache`` or the tuned
    backbone's). Fine-tuning replaces ``embedded`` with the tuned backbone's embeddings.
    """
    from edgecam.training.backbone import build_backbone
    from edgecam.training.head import assemble, train_head

    e_train, e_val = embedded["train"], embedded["val"]
    y_val = _labels_of(dataset.split("val"))
    with timer("train"):
        x = e_train.reshape(-1, e_train.shape[-1])
        y = np.repeat(_labels_of(dataset.split("train")), e_train.shape[1])
        head, history = train_head(x, y, e_val, y_val, len(dataset.labels), cfg.model.dropout, cfg.train)
    stages = {"head": history}
    keras_acc = {"val": _head_accuracy(head, e_val, y_val)}
    if "test" in embedded:
        keras_acc["test"] = _head_accuracy(head, embedded["test"], _labels_of(dataset.split("test")))
    with timer("assemble"):
        backbone = backbone if backbone is not None else build_backbone(cfg.model)
        model = assemble(backbone, head)
    features = cache
    if cfg.train.fine_tune_blocks:
        from edgecam.training.tune import fine_tune_blocks

        with timer("fine_tune"):
            tuned = fine_tune_blocks(backbone, head, dataset, cache, cfg, progress)
        stages["fine_tune"] = tuned.history
        if not tuned.reverted:
            keras_acc, features = tuned.accuracy, tuned.features
            embedded.update(tuned.embedded)
    return model, head, stages, keras_acc, features


def _save_keras(model, path: Path) -> None:
    import keras

    with files.atomic_path(path) as tmp:
        named = tmp.with_suffix(".keras")  # Keras insists on the suffix
        try:
            keras.saving.save_model(model, named)
            named.replace(tmp)
        finally:
            named.unlink(missing_ok=True)


def _labels_of(samples: list[Sample]) -> np.ndarray:
    return np.asarray([s.label for s in samples], dtype=np.int64)


def _head_accuracy(head, embeddings: np.ndarray, y: np.ndarray) -> float:
    probs = head.predict(embeddings, batch_size=256, verbose=0)
    return float((probs.argmax(axis=1) == y).mean()) if len(y) else 0.0


def _calibration_images(dataset: Dataset, cfg: FinetuneConfig) -> np.ndarray:
    """Training photos as training saw them: with augmented views on, every other one is its first
    augmented view (camera effects included), so int8's ranges also cover camera-like frames."""
    from edgecam.data.images import load_rgb
    from edgecam.training import augment

    train, t = dataset.split("train"), cfg.train
    rng = np.random.default_rng(t.seed)
    picks = rng.choice(len(train), size=min(cfg.export.calibration_images, len(train)), replace=False)
    size, rule = cfg.model.input_size, Preprocessing(fit=cfg.model.fit)
    images = []
    for n, i in enumerate(sorted(picks)):
        rgb = load_rgb(train[i].path)
        images.append(augment.augmented_view(rgb, size, t.augment, augment.view_rng(t.seed, train[i].digest, 0), rule)
                      if t.augment.views and n % 2 else rule.apply(rgb, (size, size)))
    return np.stack(images)


def _export(model, dataset: Dataset, cfg: FinetuneConfig, run_dir: Path, keras_acc: dict,
            float_tflite: bytes | None, rule):
    """Write model.tflite (and model_float32.tflite beside an int8 one, as the fallback)."""
    from edgecam.training import export

    q = cfg.export.quantization
    extra = {
        "edgecam": 1,  # nothing run-specific: the same data, config and seed give the same bytes
        "backbone": cfg.model.backbone,
        "alpha": cfg.model.alpha,
        "input_size": cfg.model.input_size,
        "quantization": q,
        "preprocessing": Preprocessing(fit=cfg.model.fit).describe((cfg.model.input_size, cfg.model.input_size)),
        "keras_accuracy": keras_acc,
        "dataset_fingerprint": dataset.fingerprint(),
    }
    if rule is not None:
        extra["unknown"] = rule.describe()
    log(f"exporting {q} TFLite model")
    calibration = _calibration_images(dataset, cfg) if q == "int8" else None
    stem = FLOAT_STEM.get(cfg.model.backbone)
    if q == "float32" and float_tflite:
        tflite = float_tflite
    elif rule is not None:  # the converter sees the features too; the score is appended after
        converted = export.convert(int8_features_model(model, cfg.model), q, calibration, stem)
        tflite = attach_unknown(converted, rule, len(dataset.labels))
    else:
        tflite = export.convert(model, q, calibration, stem)
    info = export.model_info(cfg.name, dataset.labels, extra)
    exported = {"quantization": q, "bytes": export.write_model(run_dir / "model.tflite", tflite, info)}
    if q == "int8":
        float_info = export.model_info(cfg.name, dataset.labels, {**extra, "quantization": "float32"})
        float_path = run_dir / "model_float32.tflite"
        exported["float32_bytes"] = export.write_model(
            float_path, float_tflite or export.convert(model, "float32"), float_info)
    return run_dir / "model.tflite", exported


def _quality_gate(cfg: FinetuneConfig, keras_acc: dict, evaluations: dict) -> str | None:
    """An int8 model that lost too much accuracy is demoted: the float32 model becomes model.tflite."""
    if cfg.export.quantization != "int8" or "val" not in evaluations:
        return None
    drop = keras_acc["val"] - evaluations["val"]["metrics"]["accuracy"]
    if drop <= cfg.export.max_accuracy_drop:
        return None
    run_dir = Path(evaluations["val"]["model"]).parent
    (run_dir / "model.tflite").replace(run_dir / "model_int8_rejected.tflite")
    (run_dir / "model_float32.tflite").replace(run_dir / "model.tflite")
    return (
        f"int8 model lost {drop:.1%} validation accuracy (limit export.max_accuracy_drop={cfg.export.max_accuracy_drop}); "
        f"kept the float32 model as {run_dir / 'model.tflite'}"
    )


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
