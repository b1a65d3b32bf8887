"""Many images through one ``.tflite`` on every core: a single-threaded interpreter per worker.

Each worker thread prepares its own images (decode, fit, augment) and runs them through its own
one-thread interpreter; LiteRT and OpenCV release the GIL while they work, so the workers keep
every core busy. One interpreter using both cores, fed by prefetching threads, stalls whenever a
core is busy preparing: on 2 cores, 400 flowers photos (the plain view and one augmented view
each) took 3.6 s this way against 4.8 s that way, in one script. A single thread per
interpreter also makes an image's outputs the same whichever worker ran it.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from edgecam.runtime.litert import make_interpreter

T, S, R = TypeVar("T"), TypeVar("S"), TypeVar("R")
AHEAD = 4  # items in flight per worker: bounds the prepared images held in memory


def _ordered_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """``map(fn, items)`` in order, with at most ``ahead`` items submitted and not yet taken."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def map_on_workers(make: Callable[[], S], fn: Callable[[S, T], R], items: Iterable[T],
                   workers: int | None = None) -> Iterator[R]:
    """``fn(state, item)`` for each item, in order, on ``workers`` threads (default: one per core),
    each thread with its own ``state = make()`` (an interpreter: they are not shared)."""
    local = threading.local()

    def work(item: T) -> R:
        state = getattr(local, "state", None)
        if state is None:
            state = local.state = make()
        return fn(state, item)

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from _ordered_map(pool, work, items, AHEAD * workers)


def run_images(model: bytes, prepare: Callable[[T], list[np.ndarray]], items: Sequence[T],
               outputs: Sequence[str | None], workers: int | None = None) -> Iterator[tuple[T, list[list[np.ndarray]]]]:
    """For each item, in order: (item, per image ``prepare(item)`` gives, the outputs named in
    ``outputs``: None = the model's first). Outputs are copies, in the model's dtype."""
    return map_on_workers(lambda: ImageRunner(model, outputs),
                          lambda runner, item: (item, [runner(image) for image in prepare(item)]), items, workers)


class ImageRunner:
    """One single-threaded interpreter; call it with an image for the chosen outputs."""

    def __init__(self, model: bytes, outputs: Sequence[str | None]):
        self.interpreter = make_interpreter(1, model_content=model)
        self.input = self.interpreter.get_input_details()[0]["index"]
        details = self.interpreter.get_output_details()
        by_name = {d["name"]: d["index"] for d in details}
        self.outputs = [details[0]["index"] if name is None else by_name[name] for name in outputs]

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input, image[None])
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i)[0].copy() for i in self.outputs]
