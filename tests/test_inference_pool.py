"""The embedding pass's worker pool (``edgecam.runtime.inference_pool``), on a committed tiny model:
every item's outputs come back in order, equal to one interpreter's, whichever worker ran them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import DATA
from edgecam.runtime.inference_pool import ImageRunner, run_images

MODEL = (DATA / "colors_unknown.tflite").read_bytes()  # uint8 32x32 in; probability, unknown_score out


def images_of(item: int) -> list[np.ndarray]:
    rng = np.random.default_rng(item)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(1 + item % 3)]


def test_outputs_come_back_in_order_and_equal_one_interpreters():
    used = set()

    def prepare(item: int) -> list[np.ndarray]:
        used.add(threading.get_ident())
        return images_of(item)

    items = list(range(60))
    got = list(run_images(MODEL, prepare, items, [None, "unknown_score"], workers=3))
    single = ImageRunner(MODEL, ["probability", "unknown_score"])
    assert [item for item, _ in got] == items
    for item, outputs in got:
        expected = [single(image) for image in images_of(item)]
        assert len(outputs) == len(expected)  # one entry per image the item gave
        for out, ref in zip(outputs, expected):
            assert out[0].shape == (3,) and out[1].shape == (1,)
            np.testing.assert_array_equal(out[0], ref[0])
            np.testing.assert_array_equal(out[1], ref[1])
    assert len(used) > 1  # the work was spread over the workers


def test_an_error_preparing_an_item_reaches_the_caller():
    def prepare(item: int) -> list[np.ndarray]:
        if item == 7:
            raise ValueError("photo 7 is broken")
        return images_of(item)

    seen = []
    with pytest.raises(ValueError, match="photo 7"):
        for item, _ in run_images(MODEL, prepare, list(range(20)), [None], workers=2):
            seen.append(item)
    assert seen == list(range(7))  # everything before it arrived, in order
