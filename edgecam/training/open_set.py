"""Fitting the unknown score in ``finetune``: which images it learns from and how it is exported.

The banks are the plain views of the training images (augmented views would only repeat them),
standardisation and threshold come from the validation split, background images (if given)
form the background bank. The float model gets the score appended to the cached backbone; the
converter formats see a model whose extra outputs are the features the score needs.
"""

from __future__ import annotations

import numpy as np

from edgecam.config.finetune import FinetuneConfig
from edgecam.console import log
from edgecam.data.dataset import Dataset
from edgecam.training.embeddings import EmbeddingCache
from edgecam.training.unknown import UnknownRule, choose_examples, fit_unknown

MIN_VAL = 3  # validation images needed to calibrate a threshold at all


def fit_rule(cache: EmbeddingCache, dataset: Dataset, embedded: dict, head, cfg: FinetuneConfig,
             progress: bool = True) -> UnknownRule | None:
    """The calibrated unknown score for this run, or None when it is off or cannot be had."""
    ucfg = cfg.export.unknown
    if not ucfg.enabled:
        return None
    train, val = dataset.split("train"), dataset.split("val")
    if len(val) < MIN_VAL:
        log(f"note: no unknown score: {len(val)} validation images are too few to calibrate it")
        return None
    if len(val) < 50:
        log(f"note: the unknown threshold is calibrated on only {len(val)} validation images: a rough guess")
    picks = choose_examples(np.asarray([s.label for s in train]), ucfg.examples, cfg.train.seed)
    chosen = [train[i] for i in picks]
    background = [s for s in dataset.background if s.split == "train"]
    bg = cache.embeddings(background, desc="embedding background", progress=progress)[:, 0] if background else None
    kernel, bias = head.get_layer("probability").get_weights()
    rule = fit_unknown(
        kernel, bias, embedded["train"][picks, 0], cache.mid_features(chosen, progress=progress),
        embedded["val"], cache.mid_features(val, progress=progress), ucfg.keep, background=bg, tap=cache.tap)
    log(f"unknown score: {rule.describe()['rule']}, {len(chosen)} training images"
        + (f", {len(background)} background images" if background else "")
        + f"; threshold keeps {ucfg.keep:.0%} of validation images")
    return rule


def int8_features_model(model, cfg_model):
    """The classifier with the features the unknown score needs as extra outputs:
    (probabilities, pooled embedding[, mid-level features]) for the converter."""
    import keras

    from edgecam.training.backbone import build_backbone, copy_weights
    from edgecam.training.unknown import TAPS

    tap = TAPS.get(cfg_model.backbone)
    features = build_backbone(cfg_model, tap)
    copy_weights(model.get_layer(features.name), features)  # the classifier's backbone, fine-tuned or not
    head = model.get_layer("head")
    inputs = keras.Input(model.input_shape[1:], name="image")
    outputs = features(inputs)
    pooled, rest = (outputs[0], list(outputs[1:])) if tap else (outputs, [])
    return keras.Model(inputs, [head(pooled), pooled] + rest, name="edgecam_classifier_features")


NOTHING_FRAMES, NOTHING_SEED = 200, 7  # generated "nothing here" frames the report tries the model on


def unknown_section(model_path, evaluations: dict, dataset: Dataset, run_dir, progress: bool = True,
                    cache_dir=None) -> dict | None:
    """The report's ``unknown`` section, measured on the exported model through the edge runtime:
    known images kept (test, else validation) against generated "nothing here" frames and the
    held-out background images; draws unknown.png. None when the model has no unknown score.
    ``cache_dir``: the outputs cache of ``evaluate_samples`` (a re-run's byte-identical model is not run again)."""
    from edgecam import console
    from edgecam.data.images import load_rgb
    from edgecam.data.nothing import nothing_frame
    from edgecam.evaluation import unknown
    from edgecam.evaluation.evaluate import OutputCache, cached_outputs
    from edgecam.runtime.classifier import Classifier

    classifier = Classifier(model_path)
    if classifier.unknown_threshold is None:
        return None
    split = "test" if "test" in evaluations else "val"
    known_rows = evaluations[split]["predictions"]
    cache = OutputCache(cache_dir, model_path, scored=True) if cache_dir else None

    def rows(keyed, desc):  # keyed: (cache key, a function giving the image)
        out = []
        for key, image in console.progress(keyed, desc, progress and not (cache and cache.covers(k for k, _ in keyed))):
            probs, (score, _) = cached_outputs(classifier, key, image, cache, True)
            out.append({"true": "", "predicted": classifier.labels[int(np.argmax(probs))], "unknown_score": score})
        return out

    nothing = [(f"nothing-{NOTHING_SEED}-{i}", lambda i=i: nothing_frame(i, NOTHING_SEED))
               for i in range(NOTHING_FRAMES)]
    groups = {"nothing here (generated)": rows(nothing, "nothing frames")}
    held_out = [s for s in dataset.background if s.split != "train"]
    if held_out:
        groups["background (val/test)"] = rows([(s.digest, lambda s=s: load_rgb(s.path)) for s in held_out],
                                               "background")
    if cache:
        cache.save()
    report = unknown.unknown_report(known_rows, groups, unknown.MODEL, classifier.unknown_threshold,
                                    evaluations[split]["metrics"]["accuracy"], classifier.info.extra["unknown"]["keep"])
    val = np.array([r["unknown_score"] for r in evaluations["val"]["predictions"]])
    report.update(known_split=split, val_kept=float(np.mean(val <= classifier.unknown_threshold)),
                  model=classifier.info.extra["unknown"])
    unknown.draw(report, known_rows, groups, run_dir / "unknown.png",
                 f"unknown score: {split} images kept vs unknown rejected")
    return report
