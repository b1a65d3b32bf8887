"""Which model for which camera? Accuracy against speed, for the settings a user can choose (issue 12).

Trains the flowers set (``../shared/datasets/flowers`` or $EDGECAM_SHARED) under each SETTING below
with ``edgecam finetune`` (a fresh embedding cache per setting, so the training time is a cold run's),
exports float32 and int8, and measures for each exported model:

- accuracy on ``flowers/test`` and on its camera-shift copy (``edgecam datasets shift``, seed 0),
  through the edge runtime exactly as ``edgecam evaluate`` does;
- training time on this machine: wall and CPU seconds of the cold float32 ``edgecam finetune`` (TF
  import included; CPU counts all threads, and is the steadier figure when other work shares the cores);
- single-frame latency with LiteRT (``Classifier.infer`` on one prepared frame, median of RUNS after a
  warm-up) at 1 and 4 threads, the models taking turns round by round so a busy machine slows all alike.

Prints a markdown table (stdout), writes ``model_map.json`` and the plot ``model_map.png`` (accuracy
on test and under camera shift against 1-thread latency, float32 and int8) into --out
(default runs/bench/model_map/), and copies the plot to docs/model_map.png with --docs.

Only MobileNetV2 1.0/224 and MobileNet v1 0.25/224 have ImageNet weights offline here. Other input
sizes load those same weights (a convolutional net takes any size; Keras' own files for 160 or 128,
trained at that size, would do a little better). Other widths have none: they are built with
``model.weights=none`` and reported for speed only (their accuracy would say nothing).

Run:   .venv/bin/python benchmarks/model_map.py [--only NAME ...] [--runs 50] [--rounds 3] [--docs] [--resume]
Takes about 30-40 minutes on 2 cores. Progress on stderr, the table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
FLOWERS = SHARED / "datasets" / "flowers"
WEIGHTS = SHARED / "weights"
V2 = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
V1 = WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"
EDGECAM = [sys.executable, "-m", "edgecam"]
THREADS = (1, 4)


@dataclass
class Setting:
    name: str
    overrides: list[str]
    weights: Path | None  # None: no offline weights, speed only
    family: str = "MobileNetV2 1.0"
    results: dict = field(default_factory=dict)


SETTINGS = [
    Setting("v2 1.0/224 defaults (top 3 blocks tuned)", [], V2),
    Setting("v2 1.0/224 head only", ["train.fine_tune_blocks=0"], V2),
    Setting("v2 1.0/224 head only, no augmentation", ["train.augment.views=0", "train.fine_tune_blocks=0"], V2),
    Setting("v2 1.0/224 head only, 4 augmented views", ["train.augment.views=4", "train.fine_tune_blocks=0"], V2),
    Setting("v2 1.0/160", ["model.input_size=160"], V2, "MobileNetV2 1.0, smaller input"),
    Setting("v2 1.0/128", ["model.input_size=128"], V2, "MobileNetV2 1.0, smaller input"),
    # Speed only (random weights): head only, as tuning random blocks would only cost time.
    Setting("v2 0.35/224 (speed only)", ["model.alpha=0.35", "train.fine_tune_blocks=0"], None, "MobileNetV2 narrower"),
    Setting("v2 0.5/160 (speed only)", ["model.alpha=0.5", "model.input_size=160", "train.fine_tune_blocks=0"], None,
            "MobileNetV2 narrower"),
    Setting("v1 0.25/224", ["model.backbone=mobilenet_v1", "model.alpha=0.25"], V1, "MobileNet v1 0.25"),
    Setting("v1 0.25/128", ["model.backbone=mobilenet_v1", "model.alpha=0.25", "model.input_size=128"], V1,
            "MobileNet v1 0.25"),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def finetune(setting: Setting, out: Path, quantization: str, cache: Path) -> tuple[Path, float, float, dict]:
    """One ``edgecam finetune`` run; returns (model path, wall seconds, CPU seconds, report.json).

    CPU = user + system time of the child, all threads: on a busy machine it moves far less than wall time."""
    weights = f"model.weights={setting.weights}" if setting.weights else "model.weights=none"
    name = f"{slug(setting.name)}_{quantization}"
    args = [*EDGECAM, "finetune", str(ROOT / "configs" / "flowers.yaml"), f"data.path={FLOWERS}", weights,
            f"output={out / 'runs'}", f"name={name}", f"cache={cache}", f"export.quantization={quantization}",
            # int8 is measured whatever its drop: the gate would swap in the float model
            "export.max_accuracy_drop=1.0", *setting.overrides, "-q"]
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - start
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"finetune failed for {setting.name} ({quantization}):\n{proc.stderr[-3000:]}")
    run_dir = out / "runs" / name / "last"
    return run_dir / "model.tflite", wall, cpu, json.loads((run_dir / "report.json").read_text())


def accuracy(model: Path, folder: Path) -> float:
    from edgecam.evaluation.evaluate import evaluate_folder

    result = evaluate_folder(model, folder, model.parent / f"eval_{folder.name}", progress=False)
    return result["metrics"]["accuracy"]


def latencies(models: dict[str, Path], runs: int, rounds: int) -> dict[str, dict[int, float]]:
    """Median ms per inference, per model and thread count; models take turns in each round."""
    from edgecam.runtime.benchmark import time_inference
    from edgecam.runtime.classifier import Classifier

    samples: dict[str, dict[int, list[float]]] = {key: {t: [] for t in THREADS} for key in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for threads in THREADS:
            for key in order:
                times = time_inference(Classifier(models[key], num_threads=threads), runs)
                samples[key][threads].append(float(statistics.median(times)))
        log(f"latency round {r + 1}/{rounds} done")
    return {key: {t: statistics.median(v) for t, v in per.items()} for key, per in samples.items()}


def shift_set(out: Path) -> Path:
    target = out / "flowers-test-camera-shift"
    if not (target / "camera_shift.json").is_file():
        log("generating the camera-shift copy of flowers/test")
        subprocess.run([*EDGECAM, "datasets", "shift", str(FLOWERS / "test"), str(target), "--force", "-q"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)  # it prints the folder: not the table's
    return target


def table(settings: list[Setting]) -> str:
    head = ("| setting | test f32 | shift f32 | test int8 | shift int8 | train s (CPU s) | ms f32 1t | ms f32 4t "
            "| ms int8 1t | ms int8 4t | MB f32 | MB int8 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def pct(value):
        return "—" if value is None else f"{value:.1%}"

    for s in settings:
        r = s.results
        ms, mb = r["ms"], r["mb"]
        lines.append(
            f"| {s.name} | {pct(r['test']['float32'])} | {pct(r['shift']['float32'])} | {pct(r['test']['int8'])} "
            f"| {pct(r['shift']['int8'])} | {r['train_s']:.0f} ({r['train_cpu_s']:.0f}) | {ms['float32'][1]:.2f} "
            f"| {ms['float32'][4]:.2f} | {ms['int8'][1]:.2f} | {ms['int8'][4]:.2f} | {mb['float32']:.1f} | {mb['int8']:.1f} |")
    return "\n".join(lines)


def plot(settings: list[Setting], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, split, title in ((axes[0], "test", "flowers test split"), (axes[1], "shift", "camera-shift copy")):
        for s in settings:
            r = s.results
            if r[split]["float32"] is None:
                continue
            for q, marker in (("float32", "o"), ("int8", "s")):
                ax.scatter(r["ms"][q][1], r[split][q], marker=marker, s=40,
                           color=f"C{settings.index(s) % 10}", label=s.name if q == "float32" else None)
            ax.plot([r["ms"]["float32"][1], r["ms"]["int8"][1]], [r[split]["float32"], r[split]["int8"]],
                    color=f"C{settings.index(s) % 10}", lw=0.8)
        ax.set_title(f"{title} (circle float32, square int8)")
        ax.set_xlabel("latency per frame, 1 thread, this machine (ms)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("edgecam on flowers: accuracy against speed (benchmarks/model_map.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "model_map")
    parser.add_argument("--only", nargs="*", help="Names (or parts of names) of the settings to run.")
    parser.add_argument("--runs", type=int, default=50, help="Inferences per latency measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Latency rounds (models take turns).")
    parser.add_argument("--docs", action="store_true", help="Copy the plot to docs/model_map.png.")
    parser.add_argument("--resume", action="store_true",
                        help="Take the settings an earlier invocation finished (<out>/settings/) as they are.")
    args = parser.parse_args()
    settings = [s for s in SETTINGS if not args.only or any(part in s.name for part in args.only)]
    args.out.mkdir(parents=True, exist_ok=True)
    shifted = shift_set(args.out)
    models = {}
    for s in settings:
        done = args.out / "settings" / f"{slug(s.name)}.json"
        if args.resume and done.is_file():  # trained and measured by an earlier invocation
            kept = json.loads(done.read_text())
            s.results = kept["results"]
            models.update({(s.name, q): Path(path) for q, path in kept["models"].items()})
            log(f"{s.name}: from {done}")
            continue
        cache = args.out / "cache" / slug(s.name)
        shutil.rmtree(cache, ignore_errors=True)  # a cold run: the embeddings are computed
        log(f"{s.name}: finetune float32 (cold)")
        f32, wall, cpu, _ = finetune(s, args.out, "float32", cache)
        log(f"{s.name}: finetune int8 (warm) in {wall:.0f} s before ({cpu:.0f} s CPU)")
        i8, _, _, _ = finetune(s, args.out, "int8", cache)
        s.results = {"train_s": wall, "train_cpu_s": cpu, "test": {}, "shift": {}, "mb": {}}
        for q, model in (("float32", f32), ("int8", i8)):
            known = s.weights is not None
            s.results["test"][q] = accuracy(model, FLOWERS / "test") if known else None
            s.results["shift"][q] = accuracy(model, shifted) if known else None
            s.results["mb"][q] = model.stat().st_size / 1e6
            models[(s.name, q)] = model
        log(f"{s.name}: test {s.results['test']}, shift {s.results['shift']}")
        done.parent.mkdir(exist_ok=True)
        done.write_text(json.dumps({"results": s.results, "models": {"float32": str(f32), "int8": str(i8)}}))
    measured = latencies({f"{name}|{q}": path for (name, q), path in models.items()}, args.runs, args.rounds)
    for s in settings:
        s.results["ms"] = {q: measured[f"{s.name}|{q}"] for q in ("float32", "int8")}
    text = table(settings)
    print(f"flowers: {FLOWERS}; {os.cpu_count()} cores; latency = median of {args.rounds} rounds x {args.runs}\n")
    print(text)
    (args.out / "model_map.json").write_text(json.dumps(
        [{"name": s.name, "overrides": s.overrides, "offline_weights": s.weights is not None, **s.results}
         for s in settings], indent=2, default=str))
    plot(settings, args.out / "model_map.png")
    if args.docs:
        shutil.copy(args.out / "model_map.png", ROOT / "docs" / "model_map.png")
    log(f"written: {args.out / 'model_map.json'}, {args.out / 'model_map.png'}")


if __name__ == "__main__":
    main()
