"""What fine-tuning the backbone's top blocks on cached activations costs and gains (issue 12).

On flowers (``train/`` with validation carved from it, ``test/``) with MobileNetV2 1.0/224 and the
default finetune settings, one invocation measures:

- ``head only``: the head on cached embeddings (``train.fine_tune_blocks=0``), the baseline;
- for each N in ``--blocks`` and each learning rate in ``--lr``: the activations below the top N
  blocks computed by LiteRT (seconds for train views, val, test and the shift set: cold the first
  time a cut is seen, from disk after), their size on disk, the seconds of each fine-tune epoch
  (``train.fine_tune_epochs``, early stopping as in finetune), and the Keras accuracy on val, test
  and the camera-shift set (``--shift``, label folders; made from flowers/test if not given);
- for each N, the old path's epoch: the whole backbone run on the images with the same top blocks
  trained (Keras, timed on ``--old-batches`` batches after one warm-up batch, extrapolated to the
  training split: it trains on one view per image, the new path on 1 + augment.views).

Accuracies are Keras's on cached embeddings/activations (the exported model is checked by
``edgecam finetune`` itself). The table goes to stdout, progress to stderr; ``--json`` keeps the rows.

    nice -n 10 .venv/bin/python benchmarks/tune_cost.py > tune_cost.txt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from edgecam import files
from edgecam.config.finetune import DataConfig, load_finetune_config
from edgecam.data.dataset import scan_dataset

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.npy"))


def accuracy(head, embeddings: np.ndarray, samples) -> float:
    y = np.asarray([s.label for s in samples])
    if not len(y):
        return float("nan")
    return float((head.predict(embeddings, batch_size=256, verbose=0).argmax(axis=1) == y).mean())


def old_epoch_seconds(cfg, head, dataset, blocks: int, batches: int) -> float:
    """(wall, CPU) seconds of one epoch of the old path: images through the whole backbone, top blocks
    trained."""
    import keras

    from edgecam.data.images import load_rgb
    from edgecam.training.backbone import base_model, build_backbone, cut_layer, upper_model
    from edgecam.training.head import assemble
    from edgecam.training.tune import unfreeze_top

    backbone = build_backbone(cfg.model)
    base = base_model(backbone)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = False
    unfreeze_top(upper_model(backbone, cut_layer(cfg.model.backbone, backbone, blocks)))
    model = assemble(backbone, head)
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=keras.losses.CategoricalCrossentropy())
    train, size, bs = dataset.split("train"), cfg.model.input_size, cfg.train.batch_size
    rng = np.random.default_rng(0)
    picks = rng.choice(len(train), (batches + 1) * bs, replace=False)
    x = np.stack([backbone_pixels(load_rgb(train[i].path), size) for i in picks]).astype(np.float32)
    y = np.eye(len(dataset.labels), dtype=np.float32)[[train[i].label for i in picks]]
    model.train_on_batch(x[:bs], y[:bs])  # warm-up: tracing
    start, cpu = time.perf_counter(), time.process_time()
    for b in range(1, batches + 1):
        model.train_on_batch(x[b * bs:(b + 1) * bs], y[b * bs:(b + 1) * bs])
    steps = -(-len(train) // bs) / batches
    return (time.perf_counter() - start) * steps, (time.process_time() - cpu) * steps


def backbone_pixels(rgb, size):
    from edgecam.modelfile.preprocess import fit_to_input

    return fit_to_input(rgb, (size, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
    parser.add_argument("--data", type=Path, default=shared / "datasets" / "flowers")
    parser.add_argument("--weights", type=Path, default=shared / "weights")
    parser.add_argument("--shift", type=Path, help="Camera-shift copy of flowers/test [default: "
                        "<cache>/flowers-test-shift, made with seed 0 like `edgecam datasets shift` if absent].")
    parser.add_argument("--cache", type=Path, default=files.cache_dir())
    parser.add_argument("--blocks", default="1,2,3,4", help="comma-separated")
    parser.add_argument("--lr", default="1e-4", help="comma-separated")
    parser.add_argument("--old-batches", type=int, default=10, help="0: do not time the old path")
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="finetune config overrides, key=value")
    args = parser.parse_args()

    from edgecam.training import finetune
    from edgecam.training.backbone import build_backbone, cut_layer
    from edgecam.training.embeddings import EmbeddingCache
    from edgecam.training.tune import ActivationCache, fine_tune_blocks

    cfg = load_finetune_config(None, [f"data.path={args.data}", f"model.weights={args.weights}",
                                      f"cache={args.cache}", "name=tune-cost", *args.overrides])
    dataset = scan_dataset(cfg.data, progress=False, index_path=args.cache / "scan-index.json")
    log(dataset.summary_line())
    shift = []
    if args.shift is None:
        args.shift = args.cache / "flowers-test-shift"
        if not (args.shift / "camera_shift.json").is_file():
            from edgecam.data.shift_set import make_shift_set

            make_shift_set(args.data / "test", args.shift, seed=0)
    if (args.shift / dataset.labels[0]).is_dir():
        shift = scan_dataset(DataConfig(path=args.shift, labels=dataset.labels), progress=False).samples
        log(f"shift set: {len(shift)} images in {args.shift}")
    cache = EmbeddingCache(args.cache, cfg.model)
    start = time.perf_counter()
    embedded = finetune._embed(cache, dataset, cfg, True)
    shift_emb = cache.embeddings(shift, desc="embedding shift")[:, 0] if shift else None
    embed_s, computed = time.perf_counter() - start, cache.misses
    timer = finetune._Timer()
    head_only = replace(cfg, train=replace(cfg.train, fine_tune_blocks=0))  # the baseline, whatever the default
    _, head, _, _, _ = finetune._train(dataset, embedded, head_only, timer, cache, True)
    head_weights = head.get_weights()
    train, val, test = dataset.split("train"), dataset.split("val"), dataset.split("test")
    views = 1 + cfg.train.augment.views
    rows = [{"config": "head only", "blocks": 0, "lr": cfg.train.learning_rate, "cut": "",
             "act_s": embed_s, "act_computed": computed, "act_mb": 0.0, "epoch_s": timer.stages["train"],
             "epochs": 0, "val": accuracy(head, embedded["val"], val), "test": accuracy(head, embedded["test"], test),
             "shift": accuracy(head, shift_emb, shift) if shift else float("nan"), "old_epoch_s": float("nan"),
             "epoch_cpu_s": float("nan"), "old_epoch_cpu_s": float("nan")}]
    log(json.dumps(rows[-1]))

    for blocks in [int(b) for b in args.blocks.split(",")]:
        old = None
        for lr in [float(v) for v in args.lr.split(",")]:
            c = replace(cfg, train=replace(cfg.train, fine_tune_blocks=blocks, fine_tune_learning_rate=lr))
            backbone = build_backbone(c.model)
            head.set_weights(head_weights)
            cut = cut_layer(c.model.backbone, backbone, blocks)
            acts = ActivationCache(cache, cut)
            start = time.perf_counter()
            acts.activations(train, c.train.augment.views, c.train.augment, c.train.seed, "activations train")
            for name, samples in (("val", val), ("test", test), ("shift", shift)):
                acts.activations(samples, desc=f"activations {name}")
            act_s, act_computed = time.perf_counter() - start, acts.misses
            cpu = time.process_time()
            tuned = fine_tune_blocks(backbone, head, dataset, cache, c, memo=False)  # timed: never taken as kept
            cpu = time.process_time() - cpu  # training and the tuned embeddings: about one epoch more
            if tuned.reverted:  # the head-only model again
                tuned.accuracy = {"val": rows[0]["val"], "test": rows[0]["test"]}
                shift_acc = rows[0]["shift"]
            else:
                shift_acc = accuracy(head, tuned.features.embeddings(shift, progress=False)[:, 0], shift) \
                    if shift else float("nan")
            if old is None and args.old_batches:
                log(f"old path, {blocks} blocks: timing {args.old_batches} batches")
                old, old_cpu = old_epoch_seconds(c, head, dataset, blocks, args.old_batches)
            elif old is None:
                old, old_cpu = float("nan"), float("nan")
            seconds = tuned.history["seconds"]
            rows.append({"config": f"top {blocks} blocks", "blocks": blocks, "lr": lr, "cut": cut,
                         "act_s": act_s, "act_computed": act_computed, "act_mb": folder_bytes(acts.dir) / 1e6,
                         "epoch_s": statistics.median(seconds), "epochs": len(seconds),
                         "epoch_cpu_s": cpu / (len(seconds) + 1), "old_epoch_cpu_s": old_cpu,
                         "val": tuned.accuracy["val"], "test": tuned.accuracy["test"], "shift": shift_acc,
                         "reverted": tuned.reverted, "old_epoch_s": old})
            log(json.dumps(rows[-1]))

    print(f"flowers: train {len(train)} images x {views} views, val {len(val)}, test {len(test)}, "
          f"shift {len(shift)}; {cfg.model.backbone} {cfg.model.alpha}/{cfg.model.input_size}; "
          f"fine-tune epochs <= {cfg.train.fine_tune_epochs}, patience {cfg.train.patience}, "
          f"batch {cfg.train.batch_size}; {os.cpu_count()} cores")
    print(f"seed {cfg.train.seed}, model.fit {cfg.model.fit}, augment {asdict(cfg.train.augment)}, "
          f"label_smoothing {cfg.train.label_smoothing}, l2 {cfg.train.l2}")
    print("head only: act s = embedding seconds (train views, val, test, shift; "
          f"{rows[0]['act_computed']} images computed), epoch s = whole head training")
    print("epoch s: median wall seconds per fine-tune epoch; cpu: process CPU seconds per epoch (the run's CPU "
          "time / (epochs + 1)); old: the old path's epoch, extrapolated")
    header = (f"{'config':<16}{'lr':>8}  {'cut':<20}{'act s':>7}{'computed':>9}{'act MB':>8}{'epoch s':>9}"
              f"{'cpu':>7}{'epochs':>7}{'old s':>8}{'old cpu':>8}{'val':>7}{'test':>7}{'shift':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['config']:<16}{r['lr']:>8.0e}  {r['cut']:<20}{r['act_s']:>7.1f}{r['act_computed']:>9}"
              f"{r['act_mb']:>8.0f}{r['epoch_s']:>9.1f}{r['epoch_cpu_s']:>7.1f}{r['epochs']:>7}"
              f"{r['old_epoch_s']:>8.1f}{r['old_epoch_cpu_s']:>8.1f}"
              f"{r['val']:>7.3f}{r['test']:>7.3f}{r['shift']:>7.3f}"
              + ("  (kept head-only)" if r.get("reverted") else ""))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
