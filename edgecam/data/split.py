"""Carve a validation split out of the training images by content hash.

An image's side depends only on its bytes: not on its file name, the scan order, a seed or
the other images. So renaming or adding photos never moves an existing photo between train
and val, and a model's validation score stays comparable across runs on a growing dataset.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

_SALT = b"edgecam-split:"


def split_score(digest: str) -> float:
    """A uniform number in [0, 1) fixed by the image's sha256 digest; below val_fraction means val.

    Re-hashing with a salt (rather than using the digest itself) keeps the split independent
    of anything else that might sort or sample images by digest.
    """
    value = int(hashlib.sha256(_SALT + digest.encode("ascii")).hexdigest(), 16)
    return value / 2**256


def carve_val(digests: Iterable[str], val_fraction: float) -> set[str]:
    """The digests (of one label's training images) that go to validation.

    An image goes to val if its split_score is below ``val_fraction``, so each label gets
    about that fraction (stratified) and an image's side does not depend on its name, the scan
    order or a seed. Two guards keep a label trainable, the only parts where other images of
    the label matter: val never takes more than ``val_fraction`` of the label (when chance puts
    more below the threshold, the highest scores stay in train; without it a new label of 4
    field frames could give 3 to val and be trained on one), and a label with 2+ images gives
    val at least its lowest-score image (and keeps at least one in train).
    """
    ranked = sorted((split_score(d), d) for d in set(digests))
    val = [d for score, d in ranked if score < val_fraction]
    val = val[:max(1, math.floor(len(ranked) * val_fraction + 1e-9))]
    if not val and len(ranked) >= 2:
        val = [ranked[0][1]]
    if ranked and len(val) == len(ranked):
        val = val[:-1]
    return set(val)
