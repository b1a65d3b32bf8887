"""The run report: ``report.json`` for scripts, ``report.md`` and PNG plots for people."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path

from edgecam import files
from edgecam.config import loader
from edgecam.config.finetune import FinetuneConfig
from edgecam.data.dataset import Dataset
from edgecam.data.provenance import field_accuracy, field_counts
from edgecam.evaluation.evaluate import predictions_csv
from edgecam.training.imx500 import report_lines as imx500_report_lines
from edgecam.plots import confusion_matrix_png, training_curves_png

PACKAGES = ("edgecam", "tensorflow", "keras", "ai-edge-litert", "numpy", "opencv-python", "pillow")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_report(run_dir: Path, cfg: FinetuneConfig, dataset: Dataset, stages: dict, keras_acc: dict,
                 evaluations: dict, exported: dict, timings: dict, cache_stats: dict, unknown: dict | None = None) -> dict:
    labels = list(dataset.labels)
    splits = {name: ev for name, ev in evaluations.items() if "extra_test" not in ev}  # val, test
    field = field_counts(labels, dataset.samples)  # frames kept by edgecam run --keep, filed by edgecam review
    report = {
        "name": cfg.name,
        "run_dir": str(run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": cfg.train.seed,
        "config": loader.to_dict(cfg),
        "data": {
            "root": str(dataset.root),
            "fingerprint": dataset.fingerprint(),
            "labels": labels,
            "counts": dataset.counts(),
            "background": {split: sum(s.split == split for s in dataset.background)
                           for split in ("train", "val", "test")} if dataset.background else {},
            "field": field,
            "given_splits": list(dataset.given_splits),
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped],
            "duplicates": [{"kept_digest": d.digest, "paths": [str(p) for p in d.paths]} for d in dataset.duplicates],
            "conflicts": [{"paths": [str(p) for p in c.paths], "labels": list(c.labels)} for c in dataset.conflicts],
            "ignored_folders": [str(p) for p in dataset.ignored_folders],
            "notices": list(dataset.notices),
            "extra_tests": {name: ev["extra_test"] for name, ev in evaluations.items() if "extra_test" in ev},
        },
        "training": {"history": stages, "epochs_run": {k: len(v.get("loss", [])) for k, v in stages.items()}},
        "metrics": {
            "keras": keras_acc,
            "tflite": {name: ev["metrics"] for name, ev in evaluations.items()},
            "field": field_accuracy({name: ev["predictions"] for name, ev in splits.items()}) if field else {},
        },
        "export": exported,
        "unknown": unknown,
        "embedding_cache": cache_stats,
        "timings_s": timings,
        "versions": package_versions(),
    }
    _write_tables_and_plots(run_dir, labels, evaluations, stages)
    files.write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    files.write_text(run_dir / "report.md", markdown(report, evaluations))
    return report


def _write_tables_and_plots(run_dir: Path, labels: list[str], evaluations: dict, stages: dict) -> None:
    """misclassified_<split>.csv, the confusion matrices (the main split's, and one per extra test), the curves."""
    for name, ev in evaluations.items():
        scored = any("unknown_score" in r for r in ev["predictions"])
        files.write_text(run_dir / f"misclassified_{name}.csv", predictions_csv(ev["misclassified"], scored))
    main = "test" if "test" in evaluations else "val"
    plots = {"confusion_matrix.png": (f"{main} split", evaluations.get(main))}
    plots.update({f"confusion_matrix_{name}.png": (name, ev) for name, ev in evaluations.items() if "extra_test" in ev})
    for file_name, (what, ev) in plots.items():
        if ev is not None:
            m = ev["metrics"]
            confusion_matrix_png(m["confusion_matrix"], labels, run_dir / file_name,
                                 f"model.tflite on {what}: accuracy {m['accuracy']:.1%} ({m['images']} images)")
    training_curves_png(stages, run_dir / "training_curves.png")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _unknown_lines(u: dict | None) -> list[str]:
    """The "Unknown" section: what the calibrated threshold keeps and rejects, and the plot."""
    if not u:
        return []
    lines = ["## Unknown", "", f"Score: `{u['model']['rule']}`, {u['model']['examples']} training images stored"
             + (f", {u['model']['background_examples']} background images" if u["model"]["background_examples"] else "")
             + f". The threshold keeps {u['model']['keep']:.0%} of the validation images "
             f"(measured: {_pct(u['val_kept'])}).", "",
             "| images | count | decided unknown | AUROC vs known |", "|---|---|---|---|",
             f"| known ({u['known_split']}) | {u['known_images']} | {_pct(1 - u['known_kept'])} | — |"]
    for name, f in u["folders"].items():
        auroc = "—" if f["auroc"] is None else f"{f['auroc']:.3f}"
        lines.append(f"| {name} | {f['images']} | {_pct(f['rejected'])} | {auroc} |")
    lines += ["", f"Known-label accuracy ({u['known_split']}): {_pct(u['accuracy'])} on every image, "
              f"{_pct(u['accuracy_kept'])} on the images kept.", "", "![unknown](unknown.png)", ""]
    return lines


def _extra_test_lines(report: dict) -> list[str]:
    """The "Extra tests" section: each data.extra_tests folder, its accuracy and confusion matrix."""
    extra = report["data"]["extra_tests"]
    if not extra:
        return []
    tflite = report["metrics"]["tflite"]
    lines = ["## Extra tests", "", "The exported model on the labelled folders of `data.extra_tests`.", "",
             "| test | images | accuracy | folder |", "|---|---|---|---|"]
    lines += [f"| {name} | {tflite[name]['images']} | {_pct(tflite[name]['accuracy'])} | `{e['path']}` |"
              for name, e in extra.items()]
    for name, e in extra.items():
        recall = ", ".join(f"{label} {_pct(row['recall'])}" for label, row in tflite[name]["per_label"].items()
                           if row["support"])
        lines += ["", f"**{name}** — recall per label: {recall}"
                  + (f"; {len(e['skipped'])} files skipped" if e["skipped"] else "") + ".", ""]
        lines += [f"- note: {n}" for n in e["notices"]]
        lines += [f"![confusion matrix, {name}](confusion_matrix_{name}.png)"]
    return lines + [""]


def _field_lines(report: dict) -> list[str]:
    """The "Field data" section: filed frames per label and split, and how the model does on those held out."""
    counts, measured = report["data"]["field"], report["metrics"]["field"]
    if not counts:
        return []
    lines = ["## Field data", "", ("Frames kept by `edgecam run --keep` and filed by `edgecam review` "
                                   "(a sidecar in the label folder's `.edgecam/`):"), "",
             "| label | train | val | test |", "|---|---|---|---|"]
    lines += [f"| {label} | {c['train']} | {c['val']} | {c['test']} |" for label, c in counts.items() if any(c.values())]
    lines.append("")
    for split, m in measured.items():
        everything = report["metrics"]["tflite"][split]
        if m["images"]:
            right = round(m["accuracy"] * m["images"])
            lines.append(f"- {split}: {right} of {m['images']} field images right ({_pct(m['accuracy'])}); "
                         f"all {everything['images']} {split} images: {_pct(everything['accuracy'])}")
        else:
            lines.append(f"- {split}: no field images held out")
    return lines + [""]


def markdown(report: dict, evaluations: dict) -> str:
    data, metrics = report["data"], report["metrics"]
    lines = [f"# edgecam run `{report['name']}` — {Path(report['run_dir']).name}", ""]
    lines += ["## Accuracy", "", "| split | images | Keras model | exported model.tflite |", "|---|---|---|---|"]
    for split, m in metrics["tflite"].items():
        keras = metrics["keras"].get(split)
        shown = f"{split} (extra test)" if split in data["extra_tests"] else split
        lines.append(f"| {shown} | {m['images']} | {_pct(keras) if keras is not None else '—'} | {_pct(m['accuracy'])} |")
    exp = report["export"]
    if "rejected" in exp:
        lines += ["", f"**The int8 model was rejected:** {exp['rejected']}. The accuracy above is the int8 model's."]
    lines += ["", f"Exported as **{exp['quantization']}**, {exp['bytes'] / 1e6:.2f} MB"
              + (f" (float32: {exp['float32_bytes'] / 1e6:.2f} MB)" if "float32_bytes" in exp else "") + ".", ""]
    main = "test" if "test" in metrics["tflite"] else "val"
    if main in metrics["tflite"]:
        lines += [f"## Per label ({main} split)", "", "| label | precision | recall | F1 | images |", "|---|---|---|---|---|"]
        for label, row in metrics["tflite"][main]["per_label"].items():
            lines.append(f"| {label} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} | {row['support']} |")
        lines += ["", "![confusion matrix](confusion_matrix.png)", "", "![training curves](training_curves.png)", ""]
    lines += _extra_test_lines(report)
    lines += _unknown_lines(report.get("unknown"))
    lines += imx500_report_lines(report["export"].get("imx500"))  # export.target: imx500
    lines += _field_lines(report)
    lines += ["## Data", "", f"`{data['root']}` — fingerprint `{data['fingerprint'][:16]}`", "",
              "| label | " + " | ".join(next(iter(data["counts"].values()))) + " |",
              "|---|" + "---|" * len(next(iter(data["counts"].values())))]
    for label, counts in data["counts"].items():
        lines.append(f"| {label} | " + " | ".join(str(v) for v in counts.values()) + " |")
    lines += ["", f"Skipped files: {len(data['skipped'])}"]
    lines += [f"- `{s['path']}`: {s['reason']}" for s in data["skipped"]]
    lines += ["", f"Duplicate copies dropped: {sum(len(d['paths']) for d in data['duplicates'])}; "
              f"conflicts (same photo under different labels, excluded): {len(data['conflicts'])}"]
    lines += [f"- {', '.join(c['labels'])}: " + ", ".join(f"`{p}`" for p in c["paths"]) for c in data["conflicts"]]
    lines += [f"- note: {n}" for n in data["notices"]]
    for split, ev in evaluations.items():
        wrong = ev["misclassified"]
        lines += ["", f"## Misclassified ({split}): {len(wrong)}", ""]
        lines += [f"- `{Path(r['path']).name}`: {r['true']} → {r['predicted']} ({r['score']:.0%})" for r in wrong[:50]]
        if len(wrong) > 50:
            lines.append(f"- … {len(wrong) - 50} more in misclassified_{split}.csv")
    lines += ["", "## Timings", "", " · ".join(f"{k} {v:.1f} s" for k, v in report["timings_s"].items()),
              "", f"Seed {report['seed']}; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)
