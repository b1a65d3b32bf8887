"""``edgecam benchmark``: how fast a model runs here, so you can pick float32 or int8 for your Pi.

Times the interpreter alone (no camera, no drawing) on a fixed random frame, over thread
counts, after a warm-up; reports model size and the process's peak memory.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from edgecam.runtime.classifier import Classifier


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_inference(classifier: Classifier, runs: int, warmup: int = 5) -> np.ndarray:
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tensor = classifier.prepare(frame)
    for _ in range(warmup):
        classifier.infer(tensor)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        classifier.infer(tensor)
        times[i] = (time.perf_counter() - start) * 1000
    return times


def benchmark_model(model: str | os.PathLike, runs: int = 50, thread_counts: list[int] | None = None) -> dict:
    cores = os.cpu_count() or 1
    counts = thread_counts or sorted({1, *range(2, cores + 1, 2), cores})
    rows = []
    for threads in counts:
        classifier = Classifier(model, num_threads=threads)
        times = time_inference(classifier, runs)
        rows.append({"threads": threads, "mean_ms": float(times.mean()), "p50_ms": float(np.percentile(times, 50)),
                     "p90_ms": float(np.percentile(times, 90)), "fps": 1000.0 / float(times.mean())})
    return {
        "model": str(model),
        "size_mb": Path(model).stat().st_size / 1e6,
        "input": f"{classifier.input_size[1]}x{classifier.input_size[0]} {classifier.input_dtype.name}",
        "labels": len(classifier.labels),
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
    }


def format_table(report: dict) -> str:
    size = f"{report['size_mb']:.2f} MB" if report["size_mb"] >= 1 else f"{report['size_mb'] * 1000:.1f} kB"
    lines = [f"{report['model']}: {size}, input {report['input']}, {report['labels']} labels",
             f"{'threads':>7}  {'mean ms':>8}  {'p50 ms':>7}  {'p90 ms':>7}  {'FPS':>6}"]
    for r in report["rows"]:
        lines.append(f"{r['threads']:>7}  {r['mean_ms']:>8.2f}  {r['p50_ms']:>7.2f}  {r['p90_ms']:>7.2f}  {r['fps']:>6.1f}")
    lines.append(f"peak memory: {report['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
