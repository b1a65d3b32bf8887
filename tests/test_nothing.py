"""The "nothing here" frame generator: reproducible, varied, plain uint8 RGB frames."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from edgecam.data.images import load_rgb
from edgecam.data.nothing import (
    KINDS,
    SIZE,
    frame_kind,
    nothing_frame,
    nothing_frames,
    write_nothing_frames,
)


def test_frames_are_uint8_rgb_of_the_asked_size():
    frames = nothing_frames(len(KINDS), seed=1)
    assert len(frames) == len(KINDS)
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (SIZE[1], SIZE[0], 3) and frame.flags.c_contiguous
    small = nothing_frames(len(KINDS), seed=1, size=(64, 48))
    assert {f.shape for f in small} == {(48, 64, 3)}


def test_same_seed_same_bytes_and_frames_do_not_depend_on_n():
    a, b = nothing_frames(14, seed=3), nothing_frames(14, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a[:5], nothing_frames(5, seed=3)))
    assert np.array_equal(a[9], nothing_frame(9, seed=3))


def test_another_seed_gives_other_frames():
    a, b = nothing_frames(14, seed=1), nothing_frames(14, seed=2)
    assert not any(np.array_equal(x, y) for x, y in zip(a, b))


def test_every_kind_is_present_and_the_kinds_look_different():
    frames = nothing_frames(len(KINDS) * 3, seed=0)
    assert {frame_kind(i) for i in range(len(frames))} == set(KINDS)
    by_kind = {kind: [f for i, f in enumerate(frames) if frame_kind(i) == kind] for kind in KINDS}
    mean = {kind: np.mean([f.mean() for f in fs]) for kind, fs in by_kind.items()}
    # Local detail: mean absolute difference between horizontal neighbours.
    detail = {kind: np.mean([np.abs(np.diff(f.astype(np.int16), axis=1)).mean() for f in fs])
              for kind, fs in by_kind.items()}
    assert mean["dark"] < 25 < min(v for k, v in mean.items() if k != "dark")
    assert detail["noise"] > 20 > max(v for k, v in detail.items() if k != "noise")
    assert detail["blur"] < 5 and detail["wall"] < 6 and detail["gradient"] < 6
    skin = by_kind["skin"][0].reshape(-1, 3).astype(int)
    reddish = (skin[:, 0] > skin[:, 1]) & (skin[:, 1] > skin[:, 2])  # skin is R > G > B
    assert reddish.mean() > 0.1
    # JPEG at quality 1-8: flat 8x8 blocks, so few distinct colours compared with a noisy wall.
    distinct = {kind: np.mean([len(np.unique(f.reshape(-1, 3), axis=0)) for f in fs]) for kind, fs in by_kind.items()}
    assert distinct["jpeg"] < distinct["wall"]
    digests = {hashlib.sha256(f.tobytes()).hexdigest() for f in frames}
    assert len(digests) == len(frames)


def test_written_pngs_are_distinct_and_read_back_exactly(tmp_path):
    paths = write_nothing_frames(tmp_path / "nothing", len(KINDS) + 2, seed=5)
    assert [p.name for p in paths][:2] == ["nothing-5-0000-wall.png", "nothing-5-0001-gradient.png"]
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == len(paths)
    for i, path in enumerate(paths):
        assert Image.open(path).format == "PNG"
        assert np.array_equal(load_rgb(path), nothing_frame(i, seed=5))
    again = write_nothing_frames(tmp_path / "again", len(KINDS) + 2, seed=5)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_negative_count_is_refused():
    with pytest.raises(ValueError, match="n must be 0 or more"):
        nothing_frames(-1)
