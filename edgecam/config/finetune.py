"""Typed configuration of ``edgecam finetune``; ``configs/example.yaml`` documents every key.

Each library function takes only the section it needs (``DataConfig``, ``TrainConfig``, ...).
Relative paths are taken from the working directory, as on the command line, and made
absolute once at load time so the resolved config saved with a run is unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from edgecam.config import loader

Backbone = Literal["mobilenet_v2", "mobilenet_v1", "mobilenet_v3_small", "mobilenet_v3_large"]
Quantization = Literal["float32", "float16", "int8"]
Target = Literal["tflite", "imx500"]  # edgecam.training.imx500: also packerOut.zip for the AI Camera
Fit = Literal["center_crop", "resize"]  # edgecam.modelfile.preprocess.FITS
MAX_NAME = 100  # a run name is a folder name: well under any file system's limit
MAX_SEED = 2**32 - 1  # NumPy's seed range
# runs/<EVALUATE_RUNS>/<n>/ holds `edgecam evaluate` results, so no finetune run may take that name.
EVALUATE_RUNS = "evaluate"
# A name of data.extra_tests: it becomes a row of the report and part of file names.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Width multipliers and input sizes Keras publishes ImageNet weights for.
ALPHAS = {
    "mobilenet_v1": (0.25, 0.5, 0.75, 1.0),
    "mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "mobilenet_v3_small": (0.75, 1.0),
    "mobilenet_v3_large": (0.75, 1.0),
}
# Numbered blocks per backbone: the most train.fine_tune_blocks can be (training.backbone.BLOCKS).
BLOCKS = {"mobilenet_v1": 13, "mobilenet_v2": 16, "mobilenet_v3_small": 10, "mobilenet_v3_large": 14}
INPUT_SIZES = {
    "mobilenet_v1": (128, 160, 192, 224),
    "mobilenet_v2": (96, 128, 160, 192, 224),
    "mobilenet_v3_small": (224,),
    "mobilenet_v3_large": (224,),
}


@dataclass(frozen=True)
class DataConfig:
    # Folder with one sub-folder per label, or with train/ [val/] [test/] splits of such folders.
    path: Path = Path("datasets/mydata")
    # Labels to train, in output order. A list of folder names, or a mapping
    # label -> folder name(s) to rename or merge folders. Empty: every folder, sorted.
    labels: tuple[str, ...] | dict[str, tuple[str, ...]] = ()
    # Fraction of images held out for validation when the data has no val/ folder.
    val_fraction: float = 0.2
    # Folders of "none of these" photos: a folder name beside the label folders (never a label
    # then), or any other folder. They teach the unknown score what to reject; never a class.
    background: tuple[str, ...] = ()
    # Extra labelled test sets, name -> folder (one sub-folder per label, named like the labels or
    # their folders): the exported model's accuracy on each is reported next to val and test, e.g.
    # the camera-shift set of `edgecam datasets shift`. Override: data.extra_tests.NAME=FOLDER.
    extra_tests: dict[str, Path] = field(default_factory=dict)

    def validate(self):
        for name in self.extra_tests:
            if not _PLAIN_NAME.fullmatch(name) or name in ("train", "val", "test"):
                return f"extra_tests.{name}", ("must be a plain name (letters, digits, _ . -; not train, val or "
                                               "test): it names the report's row and files")
        if not 0.0 < self.val_fraction < 0.9:
            return "val_fraction", f"must be between 0 and 0.9, got {self.val_fraction}"
        if isinstance(self.labels, tuple) and len(set(self.labels)) != len(self.labels):
            return "labels", "lists a label twice"
        named = set(self.labels) if isinstance(self.labels, tuple) else set(self.labels) | {
            folder for folders in self.labels.values() for folder in folders}
        for entry in self.background:
            if not entry.strip():
                return "background", "an empty folder name"
            if entry in named:
                return "background", f"'{entry}' is also a label"
        return None

    def label_folders(self) -> dict[str, tuple[str, ...]] | None:
        """Label → folder names it is made of, in label order; None means 'every folder'."""
        if isinstance(self.labels, dict):
            return dict(self.labels)
        if self.labels:
            return {name: (name,) for name in self.labels}
        return None


@dataclass(frozen=True)
class ModelConfig:
    backbone: Backbone = "mobilenet_v2"
    # Width multiplier of the backbone (see ALPHAS for ones with ImageNet weights).
    alpha: float = 1.0
    # Square input size in pixels; the exported model takes uint8 RGB frames of this size.
    input_size: int = 224
    # "imagenet" (Keras downloads and caches it), a .h5 weights file, a folder holding Keras'
    # cached weight files (as in ~/.keras/models/), or "none" (random weights: for speed tests).
    weights: str = "imagenet"
    # Dropout before the classifier layer.
    dropout: float = 0.2
    # How a photo or frame is fitted to the square input: "center_crop" (the largest centred
    # square; the edges are lost) or "resize" (the whole frame, squeezed). Stated in the model.
    # "resize" classifies off-centre objects a little better (benchmarks/levers.py), but trained
    # on a few dozen photos its unknown score lets more "nothing here" frames through.
    fit: Fit = "center_crop"

    def validate(self):
        if self.weights == "imagenet" and self.alpha not in ALPHAS[self.backbone]:
            return "alpha", f"{self.alpha} has no ImageNet weights for {self.backbone}; use one of {ALPHAS[self.backbone]}"
        if self.weights == "imagenet" and self.input_size not in INPUT_SIZES[self.backbone]:
            return "input_size", f"{self.input_size} is not supported by {self.backbone}; use one of {INPUT_SIZES[self.backbone]}"
        if not 0.0 < self.alpha <= 2.0 or not 32 <= self.input_size <= 1024:
            return "alpha" if not 0.0 < self.alpha <= 2.0 else "input_size", "out of range"
        if not 0.0 <= self.dropout < 1.0:
            return "dropout", f"must be in [0, 1), got {self.dropout}"
        return None


@dataclass(frozen=True)
class AugmentConfig:
    # Extra augmented views per training image (0 turns augmentation off). Each view's
    # embedding is cached, so more views cost time once, not per epoch.
    views: int = 1
    flip: bool = True
    # Max rotation in degrees, max zoom (fraction), max brightness/contrast change (fraction).
    rotation: float = 10.0
    zoom: float = 0.15
    brightness: float = 0.2
    contrast: float = 0.2
    # Share of views that also get what a small camera does to a scene, each effect half the
    # time at a random strength up to its maximum: low light (darker by up to ``dark``), a colour
    # cast (channel gains off by up to ``color``), blur (up to ``blur`` pixels), sensor noise (up
    # to ``noise`` of full scale) and JPEG (quality down to ``jpeg``; 0 = off).
    camera: float = 1.0
    dark: float = 0.6
    color: float = 0.15
    blur: float = 1.5
    noise: float = 0.04
    jpeg: int = 30

    def validate(self):
        if not 0 <= self.views <= 16:
            return "views", f"must be 0..16, got {self.views}"
        for key in ("zoom", "brightness", "contrast", "dark", "color"):
            if not 0.0 <= getattr(self, key) < 1.0:
                return key, f"must be in [0, 1), got {getattr(self, key)}"
        if not 0.0 <= self.rotation <= 180.0:
            return "rotation", f"must be 0..180 degrees, got {self.rotation}"
        if not 0.0 <= self.camera <= 1.0:
            return "camera", f"must be in [0, 1], got {self.camera}"
        if not 0.0 <= self.blur <= 10.0:
            return "blur", f"must be 0..10 pixels, got {self.blur}"
        if not 0.0 <= self.noise <= 0.5:
            return "noise", f"must be in [0, 0.5], got {self.noise}"
        if not (self.jpeg == 0 or 1 <= self.jpeg <= 95):
            return "jpeg", f"must be 0 (off) or a quality 1..95, got {self.jpeg}"
        return None


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 0.001
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Weight classes by inverse frequency so a rare label is not ignored.
    class_weight: bool = True
    # Stop when validation loss has not improved for this many epochs (best weights restored).
    patience: int = 5
    # L2 penalty on the classifier's weights, and label smoothing of its targets (0 = off).
    l2: float = 0.0
    label_smoothing: float = 0.0
    # Second stage: also train the backbone's top N blocks (and the head), on the cached activations
    # below them (0 = off; edgecam.training.tune). Defaults from benchmarks/tune_cost.py and the map.
    fine_tune_blocks: int = 3
    fine_tune_epochs: int = 3
    fine_tune_learning_rate: float = 1e-4
    # Replaced by fine_tune_blocks; kept so that an old config gets an error saying so.
    fine_tune_layers: int = 0

    def validate(self):
        for key in ("epochs", "batch_size", "patience", "fine_tune_epochs"):
            if getattr(self, key) < 1:
                return key, f"must be at least 1, got {getattr(self, key)}"
        for key in ("learning_rate", "fine_tune_learning_rate"):
            if not 0.0 < getattr(self, key) < 1.0:
                return key, f"must be between 0 and 1, got {getattr(self, key)}"
        if not 0 <= self.seed <= MAX_SEED:
            return "seed", f"must be 0..{MAX_SEED}, got {self.seed}"
        if self.fine_tune_layers:
            return "fine_tune_layers", ("replaced by train.fine_tune_blocks: the top N blocks, trained on cached "
                                        "activations")
        if self.fine_tune_blocks < 0:
            return "fine_tune_blocks", f"must be 0 or more, got {self.fine_tune_blocks}"
        if not 0.0 <= self.l2 < 1.0:
            return "l2", f"must be in [0, 1), got {self.l2}"
        if not 0.0 <= self.label_smoothing < 1.0:
            return "label_smoothing", f"must be in [0, 1), got {self.label_smoothing}"
        return None


@dataclass(frozen=True)
class UnknownConfig:
    # Give the model an unknown score (README "Unknown"): frames unlike every training image
    # are "unknown" instead of the nearest label.
    enabled: bool = True
    # Share of the known validation images the calibrated threshold keeps.
    keep: float = 0.95
    # At most this many training images are stored in the model to compare frames with
    # (the same share of each label); 2,000 add ~3.7 MB to a MobileNetV2 model.
    examples: int = 2000

    def validate(self):
        if not 0.5 <= self.keep < 1.0:
            return "keep", f"must be in [0.5, 1), got {self.keep}"
        if not 1 <= self.examples <= 100_000:
            return "examples", f"must be 1..100000, got {self.examples}"
        return None


@dataclass(frozen=True)
class ExportConfig:
    quantization: Quantization = "float32"
    # An int8 model whose accuracy drops by more than this (0.02 = 2 points) against the
    # float model fails the export; the float model is kept.
    max_accuracy_drop: float = 0.02
    # Images drawn from the training split to calibrate int8 quantization.
    calibration_images: int = 200
    unknown: UnknownConfig = field(default_factory=UnknownConfig)
    # "tflite", or "imx500": also quantise and convert for the Raspberry Pi AI Camera
    # (packerOut.zip beside model.tflite; needs `edgecam imx500 setup` and Java 17).
    target: Target = "tflite"

    def validate(self):
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            return "max_accuracy_drop", f"must be in [0, 1], got {self.max_accuracy_drop}"
        if self.calibration_images < 1:
            return "calibration_images", f"must be at least 1, got {self.calibration_images}"
        return None


@dataclass(frozen=True)
class FinetuneConfig:
    # Run name: results go to <output>/<name>/<n>/.
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # Folder that holds the run folders.
    output: Path = Path("runs")
    # Embedding cache folder ("" = ~/.cache/edgecam or $EDGECAM_CACHE).
    cache: str = ""

    def validate(self):
        if len(self.name) > MAX_NAME:
            return "name", f"at most {MAX_NAME} characters (got {len(self.name)})"
        if (not self.name or any(c in self.name for c in "/\\") or self.name in (".", "..")
                or not self.name.isprintable()):
            return "name", f"must be a plain folder name, got {self.name!r}"
        if self.name == EVALUATE_RUNS:
            return "name", f"{EVALUATE_RUNS!r} is where `edgecam evaluate` keeps its results; pick another name"
        if self.train.fine_tune_blocks > BLOCKS[self.model.backbone]:
            return "train.fine_tune_blocks", (f"{self.model.backbone} has {BLOCKS[self.model.backbone]} blocks, "
                                              f"got {self.train.fine_tune_blocks}")
        return None


def load_finetune_config(path: str | Path | None, overrides=()) -> FinetuneConfig:
    """Read and validate a finetune config (``path`` None: defaults) plus ``key=value`` overrides."""
    cfg = loader.load(FinetuneConfig, path, overrides)
    return resolve_paths(cfg, Path.cwd())


def _background_entry(entry: str, root: Path, base: Path) -> str:
    """A folder name beside the label folders stays a name; any other entry becomes a full path."""
    if "/" not in entry and ((root / entry).is_dir() or (root / "train" / entry).is_dir()):
        return entry
    path = Path(entry).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_paths(cfg: FinetuneConfig, base: Path) -> FinetuneConfig:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    weights = cfg.model.weights
    if weights not in ("imagenet", "none") and not Path(weights).expanduser().is_absolute():
        weights = str((base / Path(weights).expanduser()).resolve())
    cache = cfg.cache
    if cache and not Path(cache).expanduser().is_absolute():
        cache = str((base / cache).resolve())
    root = absolute(cfg.data.path)
    background = tuple(_background_entry(entry, root, base) for entry in cfg.data.background)
    extra_tests = {name: absolute(path.expanduser()) for name, path in cfg.data.extra_tests.items()}
    return replace(
        cfg,
        data=replace(cfg.data, path=root, background=background, extra_tests=extra_tests),
        model=replace(cfg.model, weights=weights),
        output=absolute(cfg.output),
        cache=cache,
    )
