"""Backbone embeddings, computed once per image (and augmented view) and cached on disk.

The frozen backbone is converted to a float32 ``.tflite`` once and run with LiteRT/XNNPACK on
every core (``inference_pool``), several times faster than Keras ``predict`` on a CPU.
Embeddings are keyed by image content and backbone settings, so extra epochs, new heads and
re-runs cost almost nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecam import files
from edgecam.console import log, progress_bar
from edgecam.config.finetune import AugmentConfig, ModelConfig
from edgecam.data.dataset import Sample
from edgecam.data.images import load_rgb
from edgecam.modelfile.preprocess import PREPROCESSING, Preprocessing
from edgecam.runtime.inference_pool import ImageRunner, run_images
from edgecam.training import augment
from edgecam.training.backbone import build_backbone, resolve_weights
from edgecam.training.graph import add_output, add_pooled_output
from edgecam.training.tflite import keras_to_tflite, uint8_input_model
from edgecam.training.unknown import TAPS


def backbone_key(cfg: ModelConfig) -> str:
    """Identifies the embedding function: architecture, size and the exact weights."""
    weights = resolve_weights(cfg)
    if weights and weights != "imagenet":
        with open(weights, "rb") as f:
            weights = hashlib.file_digest(f, "sha256").hexdigest()
    blob = json.dumps(
        {"backbone": cfg.backbone, "alpha": cfg.alpha, "size": cfg.input_size, "weights": weights, "pre": PREPROCESSING.version},
        sort_keys=True,
    )
    return f"{cfg.backbone}_{cfg.alpha}_{cfg.input_size}_" + hashlib.sha256(blob.encode()).hexdigest()[:12]


class EmbeddingCache:
    """``<root>/<backbone key>/`` holds the backbone ``.tflite`` and one ``.npy`` per image.

    Besides the pooled embedding, the plain view of each image also gets the pooled activation of
    a mid-level layer (``TAPS``), which the unknown score compares with the training images.
    Images reach the backbone through ``cfg.fit``'s rule; a fit other than the default keys its
    own files (``plain-resize``, ...), so switching fits never mixes pixels.
    """

    def __init__(self, root: Path, cfg: ModelConfig):
        self.cfg = cfg
        self.root = root
        self.dir = root / backbone_key(cfg)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tap = TAPS.get(cfg.backbone)
        self.rule = Preprocessing(fit=cfg.fit)
        self._suffix = "" if self.rule == PREPROCESSING else f"-{self.rule.fit}"
        self._runner = None  # for embed()
        self._cut, self._store = None, None  # see keep_activations
        self.hits = self.misses = 0

    def keep_activations(self, cut: str, store) -> None:
        """While computing embeddings, also hand each image's activation at layer ``cut`` (float16,
        plain view then augmented ones) to ``store(sample, rows, views, augment_cfg, seed)``: one
        backbone pass then serves fine-tuning too (``edgecam.training.tune``)."""
        self._cut, self._store, self._runner = cut, store, None

    def extractor_path(self) -> Path:
        path = self.dir / "backbone.tflite"
        if not path.exists():
            log(f"converting {self.cfg.backbone} backbone to TFLite (once per backbone)")
            files.write_bytes(path, keras_to_tflite(uint8_input_model(build_backbone(self.cfg))))
        return path

    def features_model(self) -> bytes:
        """The backbone with the mid-level layer's pooled activation as a second output (if any)."""
        backbone = self.extractor_path().read_bytes()
        return add_pooled_output(backbone, self.tap) if self.tap else backbone

    def embed(self, image: np.ndarray) -> np.ndarray:
        """Pooled embedding of one input-size uint8 RGB image, as the embedding pass computes it
        (one thread). Not cached: for pixels made elsewhere (benchmarks)."""
        if self._runner is None:
            self._runner = ImageRunner(*self.pass_model())
        return self._runner(image)[0].astype(np.float32)

    def _file(self, digest: str, kind: str) -> Path:
        return self.dir / kind / digest[:2] / f"{digest}.npy"

    def embeddings(
        self,
        samples: Sequence[Sample],
        views: int = 0,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        desc: str = "embedding",
        progress: bool = True,
    ) -> np.ndarray:
        """Array (len(samples), 1 + views, D): the plain image, then ``views`` augmented ones.

        Per-image files are the cache; the whole array is also kept as one "pack" keyed by the
        exact list of images, so a re-run of the same split loads one file, not thousands.
        """
        kinds = [f"plain{self._suffix}"] + ([f"aug-{augment.settings_key(augment_cfg, seed, self.rule)}"]
                                            if views else [])
        pack = self._pack_file(samples, kinds, views)
        packed = self._load(pack, len(samples), ndim=3)
        if packed is not None:
            self.hits += len(samples)
            return packed
        results: dict[int, list[np.ndarray]] = {}
        todo = []
        for i, s in enumerate(samples):
            parts = [self._load(self._file(s.digest, k), 1 if k == kinds[0] else views) for k in kinds]
            if all(p is not None for p in parts):
                results[i] = parts
                self.hits += 1
            else:
                todo.append(i)
        if todo:
            self.misses += len(todo)
            self._compute([samples[i] for i in todo], todo, kinds, views, augment_cfg, seed, results,
                          desc if progress else None)
        array = np.stack([np.concatenate(results[i], axis=0) for i in range(len(samples))]) if samples else \
            np.zeros((0, 1 + views, 0), np.float32)
        if samples:
            self._save(pack, array)
        return array

    def mid_features(self, samples: Sequence[Sample], desc: str = "mid-level features",
                     progress: bool = True) -> np.ndarray | None:
        """(len(samples), M) mid-level features of the plain images; None if the backbone has no tap."""
        if not self.tap:
            return None
        mid = f"mid{self._suffix}"
        pack = self._pack_file(samples, [mid], 0)
        packed = self._load(pack, len(samples))
        if packed is not None:
            return packed
        rows = [self._load(self._file(s.digest, mid), 1) for s in samples]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:  # cached before mid-level features were kept: embed the plain view again
            self._compute([samples[i] for i in todo], todo, [f"plain{self._suffix}"], 0, None, 0, {},
                          desc if progress else None)
            rows = [self._load(self._file(s.digest, mid), 1) for s in samples]
        array = np.concatenate(rows) if samples else np.zeros((0, 0), np.float32)
        if samples:
            self._save(pack, array)
        return array

    def _pack_file(self, samples: Sequence[Sample], kinds: list[str], views: int) -> Path:
        key = hashlib.sha256(json.dumps([kinds, views, [s.digest for s in samples]]).encode()).hexdigest()
        return self.dir / "packs" / f"{key[:32]}.npy"

    def pass_model(self) -> tuple[bytes, list[str | None]]:
        """The model the embedding pass runs and its outputs: pooled, [mid-level], [activation at the cut]."""
        model = self.features_model()
        outputs: list[str | None] = [None] + ([f"{self.tap}/mean"] if self.tap else [])
        if self._cut:
            model = add_output(model, self._cut)
            outputs.append(f"{self._cut}/activation")
        return model, outputs

    def _compute(self, samples, indices, kinds, views, augment_cfg, seed, results, desc):
        size = self.cfg.input_size
        self.extractor_path()  # convert before the progress bar starts
        model, outputs = self.pass_model()

        def prepare(s: Sample) -> list[np.ndarray]:
            rgb = load_rgb(s.path)
            batch = [self.rule.apply(rgb, (size, size))]
            for v in range(views):
                batch.append(augment.augmented_view(rgb, size, augment_cfg, augment.view_rng(seed, s.digest, v),
                                                    self.rule))
            return batch

        bar = progress_bar(len(samples) * (1 + views), desc or "", enabled=desc is not None)
        for (s, i), images in run_images(model, lambda item: prepare(item[0]), list(zip(samples, indices)), outputs):
            vectors = np.stack([out[0] for out in images]).astype(np.float32)
            if self.tap:
                self._save(self._file(s.digest, f"mid{self._suffix}"), images[0][1][None].astype(np.float32))
            if self._store:
                self._store(s, np.stack([out[-1] for out in images]).astype(np.float16), views, augment_cfg, seed)
            self._save(self._file(s.digest, kinds[0]), vectors[:1])
            results[i] = [vectors[:1]]
            if views:
                self._save(self._file(s.digest, kinds[1]), vectors[1:])
                results[i].append(vectors[1:])
            bar.update(len(images))
        bar.close()

    @staticmethod
    def _load(path: Path, rows: int, ndim: int = 2) -> np.ndarray | None:
        try:
            array = np.load(path)
        except (OSError, ValueError, EOFError):
            return None
        return array if array.ndim == ndim and array.shape[0] == rows else None

    @staticmethod
    def _save(path: Path, array: np.ndarray) -> None:
        with files.atomic_path(path, durable=False) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array)
