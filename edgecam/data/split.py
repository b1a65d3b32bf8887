"""Carve a validation split out of the training images by content hash.

An image's side depends only on its bytes: not on its file name, the scan order, a seed or
the other images. So renaming or adding photos never moves an existing photo between train
and val, and a model's validation score stays comparable across runs on a growing dataset.
"""

from __future__ import annotations

import hashlib
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

    An image goes to val iff its split_score is below ``val_fraction``, so each label gets
    about that fraction (stratified) and an image's side never depends on other images.
    Tiny labels get a fallback, the only part that can change when images are added: a label
    with 2+ images whose scores put none in val gives val its lowest-score image (the first
    to join val as the fraction grows), and one whose scores put all in val keeps its
    highest-score image in train.
    """
    ranked = sorted((split_score(d), d) for d in set(digests))
    val = [d for score, d in ranked if score < val_fraction]
    if not val and len(ranked) >= 2:
        val = [ranked[0][1]]
    if ranked and len(val) == len(ranked):
        val = val[:-1]
    return set(val)
