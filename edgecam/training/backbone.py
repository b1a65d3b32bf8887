"""Pretrained MobileNet feature extractors that take raw 0..255 RGB (preprocessing inside).

Putting the backbone's own input scaling in the graph means the exported model takes plain
pixels, so no consumer can get the normalisation wrong.
"""

from __future__ import annotations

from pathlib import Path

from edgecam.config.finetune import ModelConfig
from edgecam.errors import ConfigError


def keras_weights_filename(cfg: ModelConfig) -> str:
    """The file name Keras downloads ImageNet no-top weights under (its cache key)."""
    size = cfg.input_size
    if cfg.backbone == "mobilenet_v1":
        alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[cfg.alpha]
        return f"mobilenet_{alpha_text}_{size}_tf_no_top.h5"
    if cfg.backbone == "mobilenet_v2":
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(cfg.alpha)}_{size}_no_top.h5"
    variant = "small" if cfg.backbone == "mobilenet_v3_small" else "large"
    return f"weights_mobilenet_v3_{variant}_224_{float(cfg.alpha)}_float_no_top_v2.h5"


def resolve_weights(cfg: ModelConfig) -> str | None:
    """``weights`` as Keras wants it: "imagenet" (download + cache), a file path, or None."""
    if cfg.weights in ("imagenet", "none"):
        return None if cfg.weights != "imagenet" else "imagenet"
    path = Path(cfg.weights)
    if path.is_dir():
        name = keras_weights_filename(cfg)
        for candidate in (path / name, path / "models" / name):
            if candidate.is_file():
                return str(candidate)
        raise ConfigError(f"model.weights: folder {path} has no {name} (the weights Keras uses for this backbone)")
    if not path.is_file():
        raise ConfigError(f"model.weights: {path}: no such file or folder")
    return str(path)


# The first layers an int8 export keeps in float (through this layer): they see the raw frame,
# and quantising them blurs what tells an empty or blurred frame from a photo (export.py).
FLOAT_STEM = {"mobilenet_v2": "expanded_conv_project", "mobilenet_v1": "conv_pw_1"}


def build_backbone(cfg: ModelConfig, tap: str | None = None) -> "keras.Model":
    """(H, W, 3) float 0..255 → pooled embedding vector, ImageNet weights, frozen.

    With ``tap``, a second output: the spatial mean of that inner layer's activation.
    """
    import keras

    shape = (cfg.input_size, cfg.input_size, 3)
    weights = resolve_weights(cfg)
    inputs = keras.Input(shape=shape, name="image")
    common = dict(input_shape=shape, alpha=cfg.alpha, include_top=False, weights=weights, pooling="avg")
    try:
        if cfg.backbone.startswith("mobilenet_v3"):
            factory = (
                keras.applications.MobileNetV3Small
                if cfg.backbone == "mobilenet_v3_small"
                else keras.applications.MobileNetV3Large
            )
            base = factory(include_preprocessing=True, **common)
            x = inputs
        else:
            factory = keras.applications.MobileNet if cfg.backbone == "mobilenet_v1" else keras.applications.MobileNetV2
            base = factory(**common)
            x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    except Exception as exc:  # download failures, bad weight files
        raise ConfigError(f"model.weights: cannot load {cfg.weights!r} for {cfg.backbone}: {str(exc).splitlines()[0]}") from None
    base.trainable = False
    if tap:
        pooled = keras.layers.GlobalAveragePooling2D(name=f"{tap}_mean")(base.get_layer(tap).output)
        base = keras.Model(base.inputs, [base.output, pooled], name=base.name)
    outputs = base(x, training=False)
    return keras.Model(inputs, outputs, name=f"{cfg.backbone}_features")


# The name of every layer of a numbered block (block number in group 1), per backbone. Blocks are
# what fine-tuning cuts by: the input of a block is one tensor, so the layers above it can run on
# a cached activation. Layers after the last block (MobileNetV2's Conv_1, the pooling) are always
# part of the tuned top.
BLOCKS = {
    "mobilenet_v2": r"block_(\d+)_",
    "mobilenet_v1": r"conv_(?:pad|dw|pw)_(\d+)(?:_|$)",
    "mobilenet_v3_small": r"expanded_conv_(\d+)_",
    "mobilenet_v3_large": r"expanded_conv_(\d+)_",
}


def base_model(backbone):
    """The pretrained Keras application inside a ``build_backbone`` model."""
    import keras

    return next(layer for layer in backbone.layers if isinstance(layer, keras.Model))


def block_count(backbone_name: str, backbone) -> int:
    """How many numbered blocks the backbone has (the most ``fine_tune_blocks`` can be)."""
    import re

    pattern = re.compile(BLOCKS[backbone_name])
    return len({m.group(1) for layer in base_model(backbone).layers if (m := pattern.match(layer.name))})


def cut_layer(backbone_name: str, backbone, blocks: int) -> str:
    """The layer whose output is the input of the top ``blocks`` blocks: everything above it is tuned."""
    import re

    pattern = re.compile(BLOCKS[backbone_name])
    layers = base_model(backbone).layers
    numbers = sorted({int(m.group(1)) for layer in layers if (m := pattern.match(layer.name))})
    if not 1 <= blocks <= len(numbers):
        raise ConfigError(f"train.fine_tune_blocks: {backbone_name} has {len(numbers)} blocks, got {blocks}")
    first = numbers[-blocks]
    start = next(i for i, layer in enumerate(layers) if (m := pattern.match(layer.name)) and int(m.group(1)) == first)
    return layers[start].input._keras_history.operation.name


def upper_model(backbone, cut: str, tap: str | None = None):
    """The backbone above layer ``cut``: its activation → pooled embedding (sharing the backbone's
    layers, so training it trains the backbone). With ``tap`` above the cut, a second output: the
    spatial mean of that layer's activation, as ``build_backbone(cfg, tap)`` gives it."""
    import keras

    base = base_model(backbone)
    outputs = base.output
    if tap:
        pooled = keras.layers.GlobalAveragePooling2D(name=f"{tap}_mean")(base.get_layer(tap).output)
        outputs = [outputs, pooled]
    return keras.Model(base.get_layer(cut).output, outputs, name=f"{base.name}_above_{cut}")


def copy_weights(source, target) -> None:
    """Give ``target`` (a ``build_backbone`` model, any tap) the weights of ``source`` (another one
    of the same backbone, e.g. fine-tuned), layer by layer."""
    source_base = base_model(source)
    for layer in base_model(target).layers:
        if layer.weights:
            layer.set_weights(source_base.get_layer(layer.name).get_weights())
