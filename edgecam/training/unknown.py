"""The unknown score: how far a frame is from everything the model was trained on.

Softmax is confidently wrong on things it has never seen, and a distance in embedding space
misses unseen things that look like known ones; the score adds both kinds of evidence
(measured in benchmarks/openset.py, README "Unknown"):

- ``logit``: the largest logit of the head (low when no label fits well);
- ``near``:  cosine similarity to the nearest training image, on square-rooted embeddings;
- ``mid``:   the same on a mid-level layer's pooled activations (textures and parts, which
             tell an unseen flower from a known one better than the final embedding);
- ``background`` (only with background folders): how much nearer the frame is to a
             background image than to any training image (a nearest-neighbour vote).

Each term is standardised on the known validation images and the weighted sum is negated:
higher = stranger. The threshold keeps ``keep`` of the validation images; the model outputs
``sigmoid((score - threshold) / SOFTNESS)``, so 0.5 is the calibrated threshold in every model
and an int8 model can carry it as uint8 like its probabilities. The same
arithmetic runs here (numpy, to fit and calibrate) and inside the exported model
(``append_unknown_score``); the tests hold the two to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecam.training.graph import Graph, quantise_rows

# Mid-level layer tapped per backbone: the last full-resolution expansion before the final
# stride (14x14 at 224). Backbones without an entry use the other terms only.
TAPS = {"mobilenet_v2": "block_13_expand_relu", "mobilenet_v1": "conv_pw_11_relu"}
WEIGHTS = {"logit": 1.0, "near": 1.0, "mid": 0.5}
# A frame nearer to a background image than to any training image is pushed far past any
# threshold: 20 standardised units per unit of cosine similarity.
BACKGROUND_WEIGHT = 20.0
OUTPUT = "unknown_score"
SOFTNESS = 1.0  # standardised units per unit of logit in the output's sigmoid


def power_normalise(x: np.ndarray) -> np.ndarray:
    """ReLU, square root, L2 norm: the form both banks are stored and compared in."""
    x = np.sqrt(np.maximum(np.asarray(x, np.float32), 0.0))
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


@dataclass
class UnknownRule:
    kernel: np.ndarray  # (D, N) head weights, for the logit term
    bias: np.ndarray  # (N,)
    bank: np.ndarray  # (K, D) power-normalised training embeddings (int8 rows, dequantised)
    mid_bank: np.ndarray | None  # (K, M) power-normalised mid-level features, or None
    background: np.ndarray | None  # (B, D) power-normalised background embeddings, or None
    mean: np.ndarray  # per term, on the known validation images
    std: np.ndarray
    threshold: float = float("inf")
    keep: float = 0.95
    tap: str | None = None

    @property
    def terms(self) -> list[str]:
        return ["logit", "near"] + (["mid"] if self.mid_bank is not None else [])

    def term_values(self, pooled: np.ndarray, mid: np.ndarray | None = None) -> np.ndarray:
        """(n, terms) raw term values; background gate excluded."""
        near = dynamic_int8(power_normalise(pooled)) @ self.bank.T
        values = [(pooled @ self.kernel + self.bias).max(axis=1), near.max(axis=1)]
        if self.mid_bank is not None:
            values.append((dynamic_int8(power_normalise(mid)) @ self.mid_bank.T).max(axis=1))
        return np.stack(values, axis=1).astype(np.float32)

    def coefficients(self) -> tuple[np.ndarray, float]:
        """Weights and bias of the final sum: score = terms @ w + b (standardising folded in)."""
        weights = np.asarray([WEIGHTS[t] for t in self.terms], np.float32)
        return -weights / self.std, float((weights * self.mean / self.std).sum())

    def score(self, pooled: np.ndarray, mid: np.ndarray | None = None) -> np.ndarray:
        """Unknown score per row (higher = stranger)."""
        w, b = self.coefficients()
        score = self.term_values(pooled, mid) @ w + b
        if self.background is not None:
            normalised = dynamic_int8(power_normalise(pooled))
            gap = (normalised @ self.background.T).max(axis=1) - (normalised @ self.bank.T).max(axis=1)
            score = score + BACKGROUND_WEIGHT * np.maximum(gap, 0.0)
        return score.astype(np.float32)

    def output(self, pooled: np.ndarray, mid: np.ndarray | None = None) -> np.ndarray:
        """What the model outputs: 0..1, above 0.5 = beyond the calibrated threshold."""
        z = np.clip((self.score(pooled, mid) - self.threshold) / SOFTNESS, -80, 80)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def describe(self) -> dict:
        """What the model's metadata says about its unknown score (read by the runtime)."""
        return {
            "output": OUTPUT,
            "threshold": 0.5,
            "score_threshold": round(float(self.threshold), 6),
            "keep": self.keep,
            "rule": " + ".join(f"{WEIGHTS[t]:g}*z({t})" for t in self.terms)
                    + (" + background vote" if self.background is not None else ""),
            "examples": int(len(self.bank)),
            "background_examples": int(len(self.background)) if self.background is not None else 0,
            "mid_layer": self.tap if self.mid_bank is not None else None,
            "higher": "stranger",
        }


def choose_examples(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` examples, the same share of every label (sorted)."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[: max(1, round(limit * np.mean(labels == c)))]
             for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))[:limit]


def fit_unknown(kernel, bias, train: np.ndarray, train_mid: np.ndarray | None, val: np.ndarray,
                val_mid: np.ndarray | None, keep: float, background: np.ndarray | None = None,
                tap: str | None = None) -> UnknownRule:
    """Banks from ``train`` (plain views), standardisation and threshold from ``val``."""
    rule = UnknownRule(  # the banks exactly as the model stores them, so calibration sees what it runs
        np.asarray(kernel, np.float32), np.asarray(bias, np.float32), int8_rows(power_normalise(train)),
        int8_rows(power_normalise(train_mid)) if train_mid is not None else None,
        int8_rows(power_normalise(background)) if background is not None and len(background) else None,
        mean=np.zeros(2 + (train_mid is not None), np.float32), std=np.ones(2 + (train_mid is not None), np.float32),
        keep=keep, tap=tap,
    )
    values = rule.term_values(val, val_mid)
    rule.mean, rule.std = values.mean(axis=0), np.maximum(values.std(axis=0), 1e-6)
    rule.threshold = calibrate(rule.score(val, val_mid), keep)
    return rule


def calibrate(known_scores: np.ndarray, keep: float) -> float:
    """The threshold that keeps ``keep`` of the known images (score <= threshold is kept).

    It lies halfway between the last score kept and the next one, so that no calibration image
    sits on the threshold, where float rounding in the model would decide it.
    """
    scores = np.sort(np.asarray(known_scores, np.float64))
    if not len(scores):
        return float("inf")
    last = min(int(np.ceil(keep * len(scores))) - 1, len(scores) - 1)
    if last + 1 < len(scores):
        return float((scores[last] + scores[last + 1]) / 2)
    return float(scores[last] + max(0.5 * scores.std(), 1e-3))


def dynamic_int8(x: np.ndarray) -> np.ndarray:
    """``x`` rounded as LiteRT's XNNPACK rounds the input of an int8-weight FULLY_CONNECTED: per
    row, to 256 levels between min(x, 0) and max(x, 0) (the bank comparisons run that way)."""
    low, high = np.minimum(x.min(axis=-1, keepdims=True), 0), np.maximum(x.max(axis=-1, keepdims=True), 0)
    scale = np.maximum(high - low, 1e-12) / 255.0
    zero = np.round(-128 - low / scale)
    return ((np.clip(np.round(x / scale) + zero, -128, 127) - zero) * scale).astype(np.float32)


def int8_rows(values: np.ndarray) -> np.ndarray:
    """``values`` as the model stores them: int8 with one scale per row (returned dequantised)."""
    data, scale = quantise_rows(values)
    return (data * scale[:, None]).astype(np.float32)


def append_unknown_score(g: Graph, pooled: int, mid: int | None, rule: UnknownRule, as_uint8: bool = False) -> int:
    """Add the rule's arithmetic to graph ``g``; returns the [1, 1] output tensor (``output``),
    uint8 with scale 1/256 when ``as_uint8`` (MediaPipe wants all outputs quantised or none)."""
    s = g.schema
    x = g.as_float(pooled)
    logits = g.dense(x, rule.kernel, rule.bias, "unknown/logits")
    terms = [g.reduce("REDUCE_MAX", logits, (1,), "unknown/max_logit")]
    normalised = _power_normalise(g, x, "unknown/features")
    near = g.reduce("REDUCE_MAX", g.dense(normalised, rule.bank.T, None, "unknown/bank", int8=True), (1,),
                    "unknown/near")
    terms.append(near)
    if rule.mid_bank is not None:
        mid_n = _power_normalise(g, g.as_float(mid), "unknown/mid_features")
        terms.append(g.reduce("REDUCE_MAX", g.dense(mid_n, rule.mid_bank.T, None, "unknown/mid_bank", int8=True),
                              (1,), "unknown/mid"))
    concat = s.ConcatenationOptionsT()
    concat.axis = 1
    stacked = g.op("CONCATENATION", terms, "unknown/terms", (1, len(terms)), concat)
    w, b = rule.coefficients()
    shifted = g.dense(stacked, w[:, None] / SOFTNESS, np.asarray([(b - rule.threshold) / SOFTNESS], np.float32),
                      "unknown/sum")
    if rule.background is not None:
        shifted = _background_vote(g, normalised, near, shifted, rule)
    probability = g.op("LOGISTIC", [shifted], "unknown/logistic", (1, 1))
    return g.quantize(probability, 1.0 / 256, 0, "unknown/uint8") if as_uint8 else probability


def _background_vote(g: Graph, normalised: int, near: int, shifted: int, rule: UnknownRule) -> int:
    s = g.schema
    nearest_bg = g.reduce("REDUCE_MAX", g.dense(normalised, rule.background.T, None, "unknown/background",
                                                int8=True), (1,), "unknown/near_background")
    gap = g.op("RELU", [g.op("SUB", [nearest_bg, near], "unknown/gap", (1, 1), s.SubOptionsT())],
               "unknown/gap_relu", (1, 1))
    weight = g.constant("unknown/background_weight", np.float32([BACKGROUND_WEIGHT / SOFTNESS]))
    vote = g.op("MUL", [gap, weight], "unknown/vote", (1, 1), s.MulOptionsT())
    return g.op("ADD", [shifted, vote], "unknown/with_vote", (1, 1), s.AddOptionsT())


def _power_normalise(g: Graph, x: int, name: str) -> int:
    shape = g.shape(x)
    root = g.op("SQRT", [g.op("RELU", [x], name + "/relu", shape)], name + "/sqrt", shape)
    return g.op("L2_NORMALIZATION", [root], name + "/l2", shape, g.schema.L2NormOptionsT())
