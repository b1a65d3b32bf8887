"""How much does int8 lose against float32, on the test photos and under camera shift, seed by seed?

The map (model_map.py) trains each setting with seed 0 only, and an int8 model's loss moves with
the tuned weights and the calibration photos, both of which follow the seed. This script trains
the defaults once per seed (``train.seed``, --seeds) with ``export.quantization=int8``, which keeps
the float32 model beside the int8 one (``model_float32.tflite``, the same bytes a float32 run of
that seed exports), and runs both through the edge runtime, as ``edgecam evaluate`` does, on
``flowers/test`` and on its camera-shift copy (``edgecam datasets shift``, seed 0). Prints a
markdown table and the mean loss; about 3 minutes per seed on 2 cores (one embedding cache is
shared by the seeds: the plain photos are embedded once).

Run:  .venv/bin/python benchmarks/int8_seeds.py [--seeds 0 1 2] [--out runs/bench/int8_seeds]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from model_map import FLOWERS, ROOT, V2, Setting, accuracy, finetune, log, shift_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "int8_seeds")
    args = parser.parse_args()
    shifted = shift_set(args.out)
    rows = []
    for seed in args.seeds:
        log(f"seed {seed}: training (int8, with the float32 model kept)")
        int8, _, _, _ = finetune(Setting(f"defaults seed {seed}", [f"train.seed={seed}"], V2), args.out, "int8",
                                 args.out / "cache")
        models = {"float32": int8.with_name("model_float32.tflite"), "int8": int8}
        rows.append({"seed": seed} | {f"{split} {q}": accuracy(model, folder)
                                      for split, folder in (("test", FLOWERS / "test"), ("shift", shifted))
                                      for q, model in models.items()})
    print("| seed | test f32 | test int8 | int8 - f32 | shift f32 | shift int8 | int8 - f32 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['test float32']:.1%} | {r['test int8']:.1%} "
              f"| {100 * (r['test int8'] - r['test float32']):+.1f} | {r['shift float32']:.1%} "
              f"| {r['shift int8']:.1%} | {100 * (r['shift int8'] - r['shift float32']):+.1f} |")
    for split in ("test", "shift"):
        losses = [100 * (r[f"{split} int8"] - r[f"{split} float32"]) for r in rows]
        print(f"{split}: int8 - float32 {statistics.mean(losses):+.1f} points on average "
              f"(from {min(losses):+.1f} to {max(losses):+.1f}) over seeds {', '.join(map(str, args.seeds))}")


if __name__ == "__main__":
    main()
