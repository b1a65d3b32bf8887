"""Which training defaults give the best accuracy, on the flowers photos and on a camera-shifted copy?

Issue 12: every lever of the cheap pipeline (frozen MobileNetV2, head trained on cached
embeddings) measured on the same data, one change at a time against the current defaults, then
the promising ones together:

- head         ``train_head`` with TrainConfig changes: L2 on the weights, label smoothing,
               dropout, learning rate, patience; and a plain multinomial logistic regression (L2,
               C=1 as in scikit-learn's default, full batch to convergence, numpy) for reference.
- views        augmented views per training image, 0..4 (``train.augment.views``).
- camera       camera-style effects on the augmented views (``train.augment.camera``: low light,
               colour cast, blur, noise, JPEG; edgecam.training.augment.camera_effects).
- fit          how a photo is fitted to the square input (``model.fit``): the centre crop, the
               whole frame resized, or training on both while the model uses one.
- test-time    averaging the embeddings of several crops of each test image (mirror, whole frame +
               centre crop, three crops along the long side): what doing it inside the exported
               graph would give, for N backbone passes per frame instead of one.
- input size   the 224 weights run at 256 or 288 (more of the photo's pixels, at 1.3x/1.65x MACs).

Data: ``flowers`` (train → its usual val split → test), and the camera-shift copy of flowers/test
(--shift, default ``<cache>/flowers-test-shift``, written there with seed 0 by
``edgecam.data.shift_set.make_shift_set`` as ``edgecam datasets shift`` does, if absent). Embeddings come
from edgecam's cache (``EmbeddingCache``, LiteRT; a second run embeds nothing); test-time crops are
kept in ``<cache>/<backbone>/levers/``. Every head is trained with the same seed (--seeds N: the
mean over seeds 0..N-1, which tells a real gain from seed noise: one test image is 0.14 points).

Columns: val, test and shift accuracy of the head on the embeddings (the exported float model
gives the same up to float rounding), head training seconds, and the backbone's cost per frame at
run time (1 = one pass at 224). Training cost is the number of views: each is one backbone pass
per training image in a cold ``finetune``, which must stay 10x faster than the Keras tutorial.
Run:  .venv/bin/python benchmarks/levers.py [--seeds 3] [--only NAME...] > levers.txt
(the first run embeds ~100,000 images and views: hours on 2 cores; later runs take minutes)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- data --------------------------------------------------------------------------------------------
@dataclass
class Data:
    dataset: object  # edgecam Dataset (flowers)
    shift: list  # Samples of the camera-shift set, labels in the dataset's order
    caches: dict = field(default_factory=dict)  # fit -> EmbeddingCache


def load_data(args) -> Data:
    from edgecam.config.finetune import DataConfig
    from edgecam.data.dataset import Sample, scan_dataset
    from edgecam.data.images import digest

    root = cache_root(args)
    dataset = scan_dataset(DataConfig(path=args.shared / "datasets" / "flowers"), progress=False,
                           index_path=root / "scan-index.json")
    log(dataset.summary_line())
    folder = Path(args.shift) if args.shift else root / "flowers-test-shift"
    if not folder.is_dir():
        from edgecam.data.shift_set import make_shift_set

        log(f"writing the camera-shift set of flowers/test to {folder} (once)")
        make_shift_set(args.shared / "datasets" / "flowers" / "test", folder, seed=0)
    shift = [Sample(path, label, digest(path.read_bytes()), "test")
             for label, name in enumerate(dataset.labels) for path in sorted((folder / name).glob("*.jpg"))]
    log(f"camera-shift set {folder}: {len(shift)} images")
    return Data(dataset, shift)


def cache_root(args) -> Path:
    from edgecam import files

    return Path(args.cache) if args.cache else files.cache_dir()


def cache_for(data: Data, args, fit: str, size: int = 224):
    """The embedding cache of MobileNetV2 1.0 at ``size`` (other sizes run the 224 weights)."""
    from edgecam.config.finetune import ModelConfig
    from edgecam.training.backbone import keras_weights_filename
    from edgecam.training.embeddings import EmbeddingCache

    if (fit, size) not in data.caches:
        weights = args.shared / "weights"
        if size != 224:
            weights = weights / keras_weights_filename(ModelConfig())
        cfg = ModelConfig(weights=str(weights), fit=fit, input_size=size)
        data.caches[fit, size] = EmbeddingCache(cache_root(args), cfg)
    return data.caches[fit, size]


def labels(samples) -> np.ndarray:
    return np.asarray([s.label for s in samples], dtype=np.int64)


# -- test-time crops ---------------------------------------------------------------------------------
def tta_images(rgb: np.ndarray, how: str, size: int) -> list[np.ndarray]:
    """The crops whose embeddings are averaged at test time."""
    from edgecam.modelfile.preprocess import Preprocessing

    crop, whole = Preprocessing("center_crop"), Preprocessing("resize")
    if how == "mirror":
        image = crop.apply(rgb, (size, size))
        return [image, np.ascontiguousarray(image[:, ::-1])]
    if how == "crop+whole":
        return [crop.apply(rgb, (size, size)), whole.apply(rgb, (size, size))]
    if how == "3crops":  # the centre square and the two at the ends of the long side
        h, w = rgb.shape[:2]
        s = min(h, w)
        boxes = [((h - s) // 2, (w - s) // 2), (0, 0), (h - s, w - s)]
        return [crop.apply(rgb[t:t + s, l:l + s], (size, size)) for t, l in boxes]
    raise ValueError(how)


TTA_PASSES = {"mirror": 2, "crop+whole": 2, "3crops": 3}


def tta_embeddings(cache, samples, how: str) -> np.ndarray:
    """(len(samples), D): mean embedding of the ``how`` crops, kept in one file per sample list."""
    from edgecam.data.images import load_rgb

    key = hashlib.sha256(("\n".join([how] + [s.digest for s in samples])).encode()).hexdigest()[:24]
    path = cache.dir / "levers" / f"tta-{how}-{key}.npy"
    if path.exists():
        return np.load(path)
    size = cache.cfg.input_size
    cache.extractor_path()
    log(f"embedding {len(samples)} images x {TTA_PASSES[how]} crops ({how})")
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = pool.map(lambda s: tta_images(load_rgb(s.path), how, size), samples)
        out = np.stack([np.mean([cache.embed(image) for image in batch], axis=0) for batch in batches])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


# -- embeddings of one lever -------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """One row: how training and evaluation embeddings are made, and how the head is trained."""

    name: str
    fit: str = "center_crop"  # the model's fit (val, test, shift and view 0 of train)
    train_fits: tuple[str, ...] = ()  # extra fits whose plain + augmented views are also trained on
    views: int = 1
    augment: dict = field(default_factory=dict)  # AugmentConfig changes
    train: dict = field(default_factory=dict)  # TrainConfig changes
    head: str = "edgecam"  # "edgecam" (train_head) | "logreg" (numpy, C=1)
    tta: str = ""  # test-time crops averaged ("" = one pass)
    size: int = 224  # input size (the backbone's cost grows with its square)


def embedded(data: Data, args, setup: Setup) -> dict:
    from edgecam.config.finetune import AugmentConfig, TrainConfig

    ds = data.dataset
    tr, va, te = ds.split("train"), ds.split("val"), ds.split("test")
    aug = replace(AugmentConfig(), views=setup.views, **{**V01_AUGMENT, **setup.augment})
    seed = TrainConfig().seed
    cache = cache_for(data, args, setup.fit, setup.size)
    trains = [cache.embeddings(tr, setup.views, aug, seed, "embedding train", True)]
    for fit in setup.train_fits:
        trains.append(cache_for(data, args, fit, setup.size).embeddings(tr, setup.views, aug, seed, f"embedding train ({fit})", True))
    out = {"train": np.concatenate(trains, axis=1), "y_train": labels(tr), "y_val": labels(va),
           "y_test": labels(te), "y_shift": labels(data.shift)}
    for name, samples in (("val", va), ("test", te), ("shift", data.shift)):
        if not samples:
            out[name] = None
        elif setup.tta and name != "val":
            out[name] = tta_embeddings(cache, samples, setup.tta)
        else:
            out[name] = cache.embeddings(samples, desc=f"embedding {name}", progress=True)[:, 0]
    return out


# -- heads -------------------------------------------------------------------------------------------
def logistic_regression(x: np.ndarray, y: np.ndarray, classes: int, c: float = 1.0, steps: int = 600):
    """Multinomial logistic regression with scikit-learn's objective (0.5|W|^2 + C * sum of
    cross-entropies), by full-batch Adam on the mean loss; returns (kernel, bias)."""
    x = np.asarray(x, np.float32)
    n, d = x.shape
    lam = np.float32(1.0 / (c * n))
    w, b = np.zeros((d, classes), np.float32), np.zeros(classes, np.float32)
    onehot = np.eye(classes, dtype=np.float32)[y]
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    for t in range(1, steps + 1):
        z = x @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        grads = [x.T @ g + lam * w, g.sum(axis=0)]
        for i, (param, grad) in enumerate(zip((w, b), grads)):
            m[i] = beta1 * m[i] + (1 - beta1) * grad
            v[i] = beta2 * v[i] + (1 - beta2) * grad * grad
            param -= lr * (m[i] / (1 - beta1**t)) / (np.sqrt(v[i] / (1 - beta2**t)) + 1e-8)
    return w, b


def evaluate(setup: Setup, e: dict, classes: int, seed: int) -> dict:
    from edgecam.config.finetune import TrainConfig

    x = e["train"].reshape(-1, e["train"].shape[-1])
    y = np.repeat(e["y_train"], e["train"].shape[1])
    start = time.perf_counter()
    if setup.head == "logreg":
        kernel, bias = logistic_regression(x, y, classes)
        predict = lambda z: z @ kernel + bias  # noqa: E731
        epochs = 0
    else:
        from edgecam.training.head import train_head

        cfg = replace(TrainConfig(), seed=seed, **{k: v for k, v in setup.train.items() if k != "dropout"})
        head, history = train_head(x, y, e["val"], e["y_val"], classes, setup.train.get("dropout", 0.2), cfg)
        predict = lambda z: head.predict(z, batch_size=1024, verbose=0)  # noqa: E731
        epochs = len(history["loss"])
    seconds = time.perf_counter() - start
    row = {"train_s": seconds, "epochs": epochs}
    for name in ("val", "test", "shift"):
        if e.get(name) is not None:
            row[name] = float((predict(e[name]).argmax(axis=1) == e[f"y_{name}"]).mean())
    return row


# -- the levers --------------------------------------------------------------------------------------
V01_AUGMENT = {"camera": 0.0}  # every row starts from the v0.1 defaults (no camera effects), not today's
CAMERA = {"camera": 0.5}

SETUPS = [
    Setup("defaults (v0.1: crop, 1 view, edgecam head)"),
    # head
    Setup("logistic regression C=1", head="logreg"),
    Setup("head l2=1e-4", train={"l2": 1e-4}),
    Setup("head l2=1e-3", train={"l2": 1e-3}),
    Setup("head label_smoothing=0.1", train={"label_smoothing": 0.1}),
    Setup("head label_smoothing=0.2", train={"label_smoothing": 0.2}),
    Setup("head dropout=0", train={"dropout": 0.0}),
    Setup("head dropout=0.5", train={"dropout": 0.5}),
    Setup("head lr=3e-4", train={"learning_rate": 3e-4}),
    Setup("head patience=15", train={"patience": 15}),
    Setup("head lr=3e-4 patience=15 ls=0.1", train={"learning_rate": 3e-4, "patience": 15, "label_smoothing": 0.1}),
    # views
    Setup("views=0", views=0),
    Setup("views=2", views=2),
    Setup("views=4", views=4),
    # camera-style augmentation
    Setup("camera=0.5, views=1", augment=CAMERA),
    Setup("camera=0.5, views=2", views=2, augment=CAMERA),
    Setup("camera=0.5, views=4", views=4, augment=CAMERA),
    Setup("camera=1.0, views=2", views=2, augment={"camera": 1.0}),
    # fit
    Setup("fit=resize", fit="resize"),
    Setup("fit=crop, trained on crop+resize", train_fits=("resize",)),
    Setup("fit=resize, trained on resize+crop", fit="resize", train_fits=("center_crop",)),
    # test-time crops
    Setup("tta mirror (2 passes)", tta="mirror"),
    Setup("tta crop+whole (2 passes)", tta="crop+whole"),
    Setup("tta 3 crops (3 passes)", tta="3crops"),
    # together
    Setup("views=4, logistic regression", views=4, head="logreg"),
    Setup("views=4, ls=0.1", views=4, train={"label_smoothing": 0.1}),
    Setup("views=4, lr=3e-4", views=4, train={"learning_rate": 3e-4}),
    Setup("views=4, zoom=0.3 rotation=15", views=4, augment={"zoom": 0.3, "rotation": 15.0}),
    Setup("views=4, camera=0.5 zoom=0.3 rotation=15", views=4, augment={**CAMERA, "zoom": 0.3, "rotation": 15.0}),
    Setup("views=4, camera=0.5, ls=0.1", views=4, augment=CAMERA, train={"label_smoothing": 0.1}),
    Setup("views=4, fit=resize", views=4, fit="resize"),
    Setup("views=4, camera=0.5, fit=resize", views=4, fit="resize", augment=CAMERA),
    Setup("views=8", views=8),
    Setup("views=8, camera=0.5", views=8, augment=CAMERA),
    Setup("views=4, camera=0.5, tta crop+whole", views=4, augment=CAMERA, tta="crop+whole"),
    # at the cost of today's defaults (one augmented view per training image)
    Setup("camera=1.0 (the new defaults)", augment={"camera": 1.0}),
    Setup("head class_weight=false", train={"class_weight": False}),
    Setup("camera=1.0, lr=3e-4", augment={"camera": 1.0}, train={"learning_rate": 3e-4}),
    Setup("camera=1.0, dropout=0.5", augment={"camera": 1.0}, train={"dropout": 0.5}),
    Setup("camera=1.0, label_smoothing=0.1", augment={"camera": 1.0}, train={"label_smoothing": 0.1}),
    Setup("camera=1.0, l2=1e-3", augment={"camera": 1.0}, train={"l2": 1e-3}),
    Setup("camera=1.0, lr=3e-4 dropout=0.5", augment={"camera": 1.0}, train={"learning_rate": 3e-4, "dropout": 0.5}),
    Setup("camera=1.0, views=2", views=2, augment={"camera": 1.0}),
    Setup("fit=resize, views=0", fit="resize", views=0),
    Setup("fit=resize, camera=0.5", fit="resize", augment=CAMERA),
    Setup("fit=resize, camera=1.0", fit="resize", augment={"camera": 1.0}),
    Setup("fit=resize, camera=0.5, lr=3e-4", fit="resize", augment=CAMERA, train={"learning_rate": 3e-4}),
    Setup("fit=resize, camera=0.5, dropout=0.5", fit="resize", augment=CAMERA, train={"dropout": 0.5}),
    Setup("fit=resize, camera=0.5, l2=1e-3", fit="resize", augment=CAMERA, train={"l2": 1e-3}),
    Setup("fit=resize, camera=0.5, views=2", fit="resize", views=2, augment=CAMERA),
    # input size (224 weights at a larger input: more pixels of the same photo)
    Setup("input 256 (1.3x MACs)", size=256),
    Setup("input 288 (1.65x MACs)", size=288),
    Setup("input 256, views=4, camera=0.5", size=256, views=4, augment=CAMERA),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGECAM_SHARED", REPO.parent / "shared")))
    parser.add_argument("--shift", default="", help="camera-shift set (default: <cache>/flowers-test-shift)")
    parser.add_argument("--cache", default="")
    parser.add_argument("--seeds", type=int, default=1, help="heads per row (seeds 0..N-1), figures are means")
    parser.add_argument("--only", nargs="*", default=[], help="rows whose name contains one of these")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    data = load_data(args)
    classes = len(data.dataset.labels)
    setups = [s for s in SETUPS if not args.only or any(o in s.name for o in args.only)]
    head = f"{'lever':<46} {'val':>6} {'test':>6} {'shift':>6} {'train s':>8} {'cost':>6}"
    print(f"flowers: train {len(data.dataset.split('train'))}, val {len(data.dataset.split('val'))}, "
          f"test {len(data.dataset.split('test'))}; shift {len(data.shift)}; heads per row: {args.seeds}")
    print(head)
    print("-" * len(head), flush=True)
    for setup in setups:
        e = embedded(data, args, setup)
        rows = [evaluate(setup, e, classes, seed) for seed in range(args.seeds)]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        shift = f"{mean['shift']:.4f}" if "shift" in mean else "-"
        passes = TTA_PASSES.get(setup.tta, 1) * (setup.size / 224) ** 2
        print(f"{setup.name:<46} {mean['val']:.4f} {mean['test']:.4f} {shift:>6} {mean['train_s']:>8.1f} "
              f"{passes:>6.2g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
