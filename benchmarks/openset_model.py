"""Open-set rejection end to end (issue 9): real ``finetune`` runs, exported models, the edge runtime.

Where ``benchmarks/openset.py`` compares scoring rules on cached embeddings, this script runs the
issue's acceptance protocol on what a user gets: ``edgecam.training.finetune.finetune`` with the
default settings (only ``model.weights`` points at the offline ImageNet weights), the exported
``model.tflite`` and its ``unknown_score`` output read by ``Classifier.classify_all`` (LiteRT).

- train      daisy, dandelion, roses of ``flowers/train`` (the usual val split carved out of it);
- runs       float32 (default); int8 (``export.quantization=int8``); float32 with a background
             folder (``data.background``: 300 "nothing here" frames of seed --seed + 1, written as
             PNG to a temporary folder); float32 with ``export.unknown.enabled=false`` (timing only);
- known      those three labels in ``flowers/test``;
- unknown    sunflowers and tulips of ``flowers/test`` ("species") and 300 nothing frames of seed
             --seed (1), written as PNG to a temporary folder and decoded like any photo.

Per model two rows: its ``unknown_score`` at the calibrated threshold of its metadata (0.5;
unknown when above), and max-softmax (1 - top probability) with a threshold keeping the same share
(metadata ``unknown.keep``, 0.95) of the known *validation* images, computed with the same model.
Columns: share of known val and test images kept, accuracy on known test without rejection and
among the kept images, drop (acc - acc|kept, negative = rejection removed more errors), AUROC known
vs species and share of species rejected, share of nothing frames rejected and AUROC known vs
nothing. Targets: (1) kept >= 0.93 and drop <= 1 point; (2) species AUROC >= 0.86; (3) nothing
rejected >= 0.95; (4) with the background folder, nothing >= 0.99 and (1) still holds; (5) int8
within 2 points of float32 on kept, drop, species AUROC and nothing rejected. Met ones are marked.

Timing: the float32 models with and without the unknown score (and the background one) are
invoked in turn on one prepared frame, interleaved, --reps times each after a warm-up, with 1 and
2 interpreter threads; the median wall time of ``invoke()`` and the ratio (goal: <= 1.10).

Run:  .venv/bin/python benchmarks/openset_model.py > openset_model.txt
The first run embeds what the embedding cache lacks and exports four models (a few minutes on
2 cores, int8 conversion is the slowest part); re-runs train and export again (byte-identical
models) but take embeddings and the runtime's outputs (keyed by model content) from caches.
Options: --shared DIR (default $EDGECAM_SHARED or ../shared), --output DIR (default
runs/bench/openset, git-ignored; run folders <output>/<run>/<n>/), --reuse (measure the last run
folders instead of training again), --nothing N (300), --seed S (1), --reps N (200),
--cache DIR (edgecam's embedding cache). Progress on stderr, the tables on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
KNOWN, SPECIES = ("daisy", "dandelion", "roses"), ("sunflowers", "tulips")
TARGETS = {"kept": 0.93, "drop": 0.01, "species_auroc": 0.86, "nothing": 0.95, "nothing_bg": 0.99,
           "int8": 0.02, "cost": 0.10}
FLOAT, INT8, BACKGROUND, PLAIN = "float32", "int8", "float32 + background", "float32, no unknown"
RUN_NAMES = {FLOAT: "float32", INT8: "int8", BACKGROUND: "background", PLAIN: "no-unknown"}
GROUPS = ("val", "test", "species", "nothing")
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


# -- the runs ------------------------------------------------------------------------------------
def configs(args, background: Path) -> dict:
    from edgecam.config.finetune import DataConfig, ExportConfig, FinetuneConfig, ModelConfig, UnknownConfig

    base = FinetuneConfig(data=DataConfig(path=args.shared / "datasets" / "flowers", labels=KNOWN),
                          model=ModelConfig(weights=str(args.shared / "weights")), output=args.output,
                          cache=str(args.cache or ""))
    return {
        FLOAT: base,
        INT8: replace(base, export=ExportConfig(quantization="int8")),
        BACKGROUND: replace(base, data=replace(base.data, background=(str(background),))),
        PLAIN: replace(base, export=ExportConfig(unknown=UnknownConfig(enabled=False))),
    }


def train_all(args, background: Path) -> dict[str, tuple[Path, str]]:
    """Run -> (model.tflite, note); one real ``finetune`` per run, or the last run folder with --reuse."""
    from edgecam.errors import ExportError
    from edgecam.training.finetune import finetune

    models = {}
    for run, cfg in configs(args, background).items():
        cfg = replace(cfg, name=RUN_NAMES[run])
        last = args.output / cfg.name / "last" / "model.tflite"
        note = ""
        if args.reuse and last.exists():
            log(f"{run}: reusing {last.resolve()}")
            rejected = json.loads((last.parent / "report.json").read_text()).get("export", {}).get("rejected")
            note = f"REJECTED int8, float32 fallback measured: {rejected}" if rejected else ""
        else:
            log(f"{run}: finetune into {args.output / cfg.name}/")
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # stdout is for the tables
                    finetune(cfg, progress=not args.quiet)
            except ExportError as exc:  # the int8 model failed the quality gate: float32 was kept
                note = f"REJECTED int8, float32 fallback measured: {exc}"
                log(f"{run}: {note}")
            log(f"{run}: finetune took {time.perf_counter() - started:.0f} s")
        models[run] = (last.resolve(), note)
    return models


# -- the images ----------------------------------------------------------------------------------
@dataclass
class Images:
    paths: dict  # group -> list of image paths
    digests: dict  # group -> list of content digests (cache keys)
    y: dict  # "val"/"test" -> label indices in KNOWN order
    kinds: list  # nothing frame kinds


def images(args, tmp: Path) -> Images:
    from edgecam import files
    from edgecam.config.finetune import DataConfig
    from edgecam.data.dataset import scan_dataset
    from edgecam.data.nothing import frame_kind, write_nothing_frames

    root = Path(args.cache) if args.cache else files.cache_dir()
    flowers = args.shared / "datasets" / "flowers"
    known = scan_dataset(DataConfig(path=flowers, labels=KNOWN), progress=False, index_path=root / "scan-index.json")
    species = scan_dataset(DataConfig(path=flowers, labels=SPECIES), progress=False,
                           index_path=root / "scan-index.json").split("test")
    nothing = write_nothing_frames(tmp / f"nothing-seed{args.seed}", args.nothing, args.seed)
    samples = {"val": known.split("val"), "test": known.split("test"), "species": species}
    paths = {g: [s.path for s in v] for g, v in samples.items()} | {"nothing": nothing}
    digests = {g: [s.digest for s in v] for g, v in samples.items()}
    digests["nothing"] = [hashlib.sha256(p.read_bytes()).hexdigest() for p in nothing]
    y = {g: np.asarray([s.label for s in samples[g]]) for g in ("val", "test")}
    log(f"images: val {len(paths['val'])}, test {len(paths['test'])}, species {len(species)}, "
        f"nothing {len(nothing)} (seed {args.seed})")
    return Images(paths, digests, y, [frame_kind(i) for i in range(len(nothing))])


@dataclass
class Outputs:
    probs: dict  # group -> (n, classes)
    score: dict  # group -> (n,) unknown_score, or None without one
    threshold: float | None  # the model's calibrated unknown threshold (metadata)
    keep: float  # share of known val images its threshold was calibrated to keep
    size: int  # model file bytes
    unknown: dict  # the metadata's description of the unknown score ({} without one)


def run_model(model: Path, data: Images, cache: Path, groups=GROUPS, quiet=False) -> Outputs:
    """Every image of ``groups`` through ``Classifier.classify_all``; outputs cached by model and image content."""
    from edgecam.console import progress
    from edgecam.data.images import load_rgb
    from edgecam.runtime.classifier import Classifier

    classifier = Classifier(model)
    if tuple(classifier.labels) != KNOWN:
        raise SystemExit(f"{model}: labels {classifier.labels}, expected {KNOWN}")
    model_hash = hashlib.sha256(model.read_bytes()).hexdigest()[:24]
    probs, scores = {}, {}
    for group in groups:
        key = hashlib.sha256(json.dumps(data.digests[group]).encode()).hexdigest()[:16]
        path = cache / f"{model_hash}-{group}-{key}.npz"
        if path.exists():
            with np.load(path) as saved:
                probs[group], scores[group] = saved["probs"], saved["scores"]
        else:
            rows = [classifier.classify_all(load_rgb(p))
                    for p in progress(data.paths[group], f"{model.parent.parent.name} {group}", not quiet)]
            probs[group] = np.stack([r[0] for r in rows])
            scores[group] = np.asarray([np.nan if r[1] is None else r[1] for r in rows], np.float64)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(path, probs=probs[group], scores=scores[group])
    has_score = classifier.unknown_threshold is not None
    stated = classifier.info.extra.get("unknown") if classifier.info and has_score else None
    return Outputs(probs, scores if has_score else None, classifier.unknown_threshold,
                   classifier.unknown_keep or 0.95, classifier.size_bytes, stated or {})


# -- the figures ---------------------------------------------------------------------------------
def figures(out: Outputs, data: Images, rule: str) -> dict:
    """One table row: the model's unknown score ("unknown score") or max-softmax ("max-softmax")."""
    from edgecam.evaluation.unknown import auroc
    from edgecam.training.unknown import calibrate

    if rule == "unknown score":
        score, threshold = out.score, out.threshold
    else:  # higher = stranger, as the unknown score; threshold keeps the same share of known val
        score = {g: 1.0 - p.max(axis=1) for g, p in out.probs.items()}
        threshold = calibrate(score["val"], out.keep)
    rejected = {g: s > threshold for g, s in score.items()}
    kept = ~rejected["test"]
    correct = out.probs["test"].argmax(axis=1) == data.y["test"]
    row = {"val_kept": 1 - rejected["val"].mean(), "kept": kept.mean(), "acc": correct.mean(),
           "acc_kept": correct[kept].mean() if kept.any() else 0.0,
           "species_auroc": auroc(score["test"], score["species"]), "species_rej": rejected["species"].mean(),
           "nothing": rejected["nothing"].mean(), "nothing_auroc": auroc(score["test"], score["nothing"]),
           "missed_n": {k: sum(1 for kk, r in zip(data.kinds, rejected["nothing"]) if kk == k and not r)
                        for k in dict.fromkeys(data.kinds)},
           "threshold": threshold}
    row["drop"] = row["acc"] - row["acc_kept"]
    return row


def met(row: dict, background: bool) -> dict:
    one = row["kept"] >= TARGETS["kept"] and row["drop"] <= TARGETS["drop"]
    marks = {"1": one, "2": row["species_auroc"] >= TARGETS["species_auroc"],
             "3": row["nothing"] >= TARGETS["nothing"]}
    if background:
        marks["4"] = one and row["nothing"] >= TARGETS["nothing_bg"]
    return marks


COLUMNS = ("val_kept", "kept", "acc", "acc_kept", "drop", "species_auroc", "species_rej", "nothing", "nothing_auroc")
HEADERS = ("val kept", "kept", "acc", "acc|kept", "drop", "sp AUROC", "sp rej", "nothing rej", "noth AUROC")
INT8_COLUMNS = ("kept", "drop", "species_auroc", "nothing")


def print_table(rows: dict, notes: dict, sizes: dict, described: dict) -> None:
    width = 44
    print("Open-set rejection through the edge runtime (issue 9): models exported by finetune, trained on "
          f"{', '.join(KNOWN)}; species = {', '.join(SPECIES)} of flowers/test; nothing = generated frames.")
    print(f"{'model / rule':<{width}}" + "".join(f"{h:>12}" for h in HEADERS) + "  met")
    targets = ("", f">={TARGETS['kept']:.2f}", "", "", f"<={TARGETS['drop']:.3f}", f">={TARGETS['species_auroc']:.2f}",
               "", f">={TARGETS['nothing']:.2f}/.99bg", "")
    print(f"{'target':<{width}}" + "".join(f"{t:>12}" for t in targets))
    for (run, rule), row in rows.items():
        marks = met(row, run == BACKGROUND)
        cells = "".join(f"{row[k]:>12.3f}" for k in COLUMNS)
        name = f"{run}: {rule} (> {row['threshold']:.4g})"
        print(f"{name:<{width}}{cells}  " + " ".join(k if ok else "-" for k, ok in marks.items()))
    if (INT8, "unknown score") in rows:
        for rule in ("unknown score", "max-softmax"):
            a, b = rows[(INT8, rule)], rows[(FLOAT, rule)]
            diffs = {k: a[k] - b[k] for k in COLUMNS}
            ok = all(abs(diffs[k]) <= TARGETS["int8"] for k in INT8_COLUMNS)
            cells = "".join(f"{diffs[k]:>+12.3f}" for k in COLUMNS)
            print(f"{'int8 - float32: ' + rule:<{width}}{cells}  {'5' if ok else '-'}")
    print("met: 1 = kept >= 0.93 and drop <= 1 point; 2 = species AUROC >= 0.86; 3 = nothing rejected >= 0.95; "
          "4 (background run) = nothing rejected >= 0.99 and 1 holds; 5 = int8 within 2 points of float32 on "
          "kept, drop, sp AUROC and nothing rej. (> t): unknown when the score is above t (max-softmax: 1 - top "
          "probability, t keeping the model's calibrated share of known val). drop = acc - acc|kept.")
    for (run, rule), row in rows.items():
        missed = ", ".join(f"{k} {n}" for k, n in row["missed_n"].items() if n)
        print(f"nothing frames kept, by kind ({run}: {rule}): {missed or 'none'}")
    for run, size in sizes.items():
        u = described.get(run) or {}
        about = (f"; unknown score {u.get('rule')}, {u.get('examples')} training images"
                 + (f", {u['background_examples']} background images" if u.get("background_examples") else "")
                 + f", mid layer {u.get('mid_layer')}") if u else "; no unknown score"
        print(f"{run}: {size / 1e6:.2f} MB model.tflite{about}" + (f"  [{notes[run]}]" if notes.get(run) else ""))


# -- timing --------------------------------------------------------------------------------------
def time_models(models: dict, frame: np.ndarray, reps: int, threads=(1, 2), warmup: int = 10) -> dict:
    """(threads, run) -> (median wall s, median process CPU s) of ``invoke()``; the models take turns,
    in alternating order, so a busy machine disturbs them alike."""
    from edgecam.runtime.classifier import Classifier
    from edgecam.runtime.litert import make_interpreter

    tensors = {run: Classifier(path).prepare(frame) for run, path in models.items()}
    result = {}
    for n in threads:
        interpreters = {run: make_interpreter(n, model_path=str(path)) for run, path in models.items()}
        for run, interpreter in interpreters.items():
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensors[run])
            for _ in range(warmup):
                interpreter.invoke()
        wall, cpu = {run: [] for run in models}, {run: [] for run in models}
        order = list(models)
        for rep in range(reps):
            for run in order if rep % 2 == 0 else order[::-1]:
                started, cpu_started = time.perf_counter(), time.process_time()
                interpreters[run].invoke()
                wall[run].append(time.perf_counter() - started)
                cpu[run].append(time.process_time() - cpu_started)
        for run in models:
            result[(n, run)] = (statistics.median(wall[run]), statistics.median(cpu[run]))
        log(f"timing, {n} thread(s): " + ", ".join(f"{run} {result[(n, run)][0] * 1e3:.2f} ms" for run in models))
        del interpreters
    return result


def print_timing(timing: dict, reps: int, load: tuple) -> None:
    print(f"\nInference time of one frame: LiteRT invoke(), median of {reps} repetitions, the models taking turns "
          f"(load average {load[0]:.2f} before, {load[1]:.2f} after; another busy process distorts 2 threads most):")
    print(f"{'threads':<9}{'model':<24}{'wall ms':>10}{'CPU ms':>10}{'wall ratio':>12}{'CPU ratio':>11}  met")
    base = {}
    for (n, run), (wall, cpu) in timing.items():
        base.setdefault(n, (wall, cpu))
        ratio, cpu_ratio = wall / base[n][0], cpu / base[n][1]
        mark = "" if (wall, cpu) == base[n] else ("met" if ratio <= 1 + TARGETS["cost"] else "-")
        print(f"{n:<9}{run:<24}{wall * 1e3:>10.2f}{cpu * 1e3:>10.2f}{ratio:>12.3f}{cpu_ratio:>11.3f}  {mark}")
    print(f"goal: the unknown score adds <= {TARGETS['cost']:.0%} to inference time (wall ratio <= "
          f"{1 + TARGETS['cost']:.2f} against {next(iter(timing))[1]}); CPU = the process's CPU time (all threads).")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared")))
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench" / "openset")
    parser.add_argument("--reuse", action="store_true", help="measure the last run folders if they exist")
    parser.add_argument("--nothing", type=int, default=300, help="nothing frames (evaluation and background)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the evaluation nothing frames; background: +1")
    parser.add_argument("--reps", type=int, default=200, help="timed invokes per model and thread count")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache (default: edgecam's)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    args.shared, args.output = args.shared.resolve(), args.output.resolve()
    from edgecam.data.images import load_rgb
    from edgecam.data.nothing import write_nothing_frames

    with tempfile.TemporaryDirectory(prefix="openset-") as tmp:
        background = Path(tmp) / f"background-seed{args.seed + 1}"
        write_nothing_frames(background, args.nothing, args.seed + 1)
        log(f"background folder: {args.nothing} nothing frames of seed {args.seed + 1} in {background}")
        models = train_all(args, background)
        data = images(args, Path(tmp))
        outputs_cache = args.output / "outputs"
        outputs = {run: run_model(path, data, outputs_cache, quiet=args.quiet)
                   for run, (path, _) in models.items() if run != PLAIN}
        plain = run_model(models[PLAIN][0], data, outputs_cache, ("test",), args.quiet)
    rows = {(run, rule): figures(out, data, rule) for run, out in outputs.items()
            for rule in ("unknown score", "max-softmax") if out.score is not None or rule == "max-softmax"}
    print_table(rows, {run: note for run, (_, note) in models.items()},
                {run: models[run][0].stat().st_size for run in models},
                {run: out.unknown for run, out in outputs.items()})
    used = outputs[BACKGROUND].unknown.get("background_examples")
    if used != args.nothing:
        print(f"note: {args.nothing} background frames were written, the {BACKGROUND} model stores {used} "
              "(finetune keeps byte-identical background images once: some flat frames repeat)")
    change = np.abs(plain.probs["test"] - outputs[FLOAT].probs["test"]).max()
    print(f"probabilities on known test, {FLOAT} vs {PLAIN}: max |difference| {change:.2g} "
          "(the unknown score must not change the classifier)")
    timed = {run: models[run][0] for run in (PLAIN, FLOAT, BACKGROUND)}
    load = os.getloadavg()[0]
    timing = time_models(timed, load_rgb(data.paths["test"][0]), args.reps)
    print_timing(timing, args.reps, (load, os.getloadavg()[0]))
    log("done")


if __name__ == "__main__":
    main()
