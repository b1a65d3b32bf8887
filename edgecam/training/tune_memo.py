"""What fine-tuning the top blocks gave, kept so that a re-run with the same inputs skips it.

Fine-tuning is deterministic: the same backbone, head, images, settings and seed give the same
weights. It is also the dearest part of a warm ``finetune`` (the embeddings are cached), so its
outcome is kept under ``<embedding cache>/<backbone key>/tuned/<key>/``: the tuned top blocks and
head, the training history, the tuned backbone's embeddings and (once exported) its ``.tflite``.
The key hashes everything the outcome depends on: the whole model and train config, the cut,
the head's weights before tuning, every image (content and label) of every split, and the
Keras version. Change any of them and the blocks are tuned again. The newest ``KEEP`` outcomes
per backbone are kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from edgecam import files
from edgecam.config import loader
from edgecam.config.finetune import FinetuneConfig
from edgecam.data.dataset import Dataset

VERSION = 2  # bump when fine-tuning itself changes (2: its own loop of train_on_batch, tune_fit.py)
KEEP = 4
DONE = "memo.json"  # written last: a folder without it is incomplete
FEATURES = "features.tflite"  # the tuned backbone, converted (once exported)


def memo_key(cfg: FinetuneConfig, cut: str, head, dataset: Dataset, rule_key: str) -> str:
    import keras

    h = hashlib.sha256(json.dumps({
        "version": VERSION, "keras": keras.__version__, "cut": cut, "fit": rule_key,
        "model": loader.to_dict(cfg.model), "train": loader.to_dict(cfg.train),
        "splits": {name: [[s.digest, s.label] for s in dataset.split(name)] for name in ("train", "val", "test")},
    }, sort_keys=True, default=str).encode())
    for weights in head.get_weights():
        h.update(np.ascontiguousarray(weights).tobytes())
    return h.hexdigest()[:32]


class TuneMemo:
    """One kept outcome (``load``/``save``) and the tuned backbone's ``.tflite`` beside it."""

    def __init__(self, root: Path, key: str):
        self.root, self.dir = root, root / key

    def load(self) -> dict | None:
        """{"meta": history/accuracy/reverted, "upper", "head": weight lists, "embedded": arrays} or None."""
        try:
            meta = json.loads((self.dir / DONE).read_text())
            with np.load(self.dir / "weights.npz") as w:
                upper = [w[f"upper_{i}"] for i in range(meta["upper"])]
                head = [w[f"head_{i}"] for i in range(meta["head"])]
            embedded = {}
            if not meta["reverted"]:
                with np.load(self.dir / "embedded.npz") as e:
                    embedded = {name: e[name] for name in e.files}
        except (OSError, ValueError, KeyError):
            return None
        (self.dir / DONE).touch()  # newest use: kept longest
        return {"meta": meta, "upper": upper, "head": head, "embedded": embedded}

    def save(self, meta: dict, upper: list, head: list, embedded: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in (DONE, FEATURES):  # a new outcome: what the folder held is not its
            (self.dir / old).unlink(missing_ok=True)
        arrays = {f"upper_{i}": w for i, w in enumerate(upper)} | {f"head_{i}": w for i, w in enumerate(head)}
        _write_npz(self.dir / "weights.npz", arrays)
        if embedded:
            _write_npz(self.dir / "embedded.npz", embedded)
        files.write_text(self.dir / DONE, json.dumps({**meta, "upper": len(upper), "head": len(head)}))
        self._prune()

    def features(self) -> bytes | None:
        try:
            return (self.dir / FEATURES).read_bytes()
        except OSError:
            return None

    def save_features(self, tflite: bytes) -> None:
        if self.dir.is_dir():
            files.write_bytes(self.dir / FEATURES, tflite)

    def _prune(self) -> None:
        kept = sorted((d for d in self.root.iterdir() if (d / DONE).is_file()),
                      key=lambda d: (d / DONE).stat().st_mtime, reverse=True)
        for old in kept[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)


def _write_npz(path: Path, arrays: dict) -> None:
    with files.atomic_path(path, durable=False) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
