"""Compares the host's and the emulated Pi's outputs for scripts/pi_emulation.sh (stdlib only).

  compare.py predictions HOST.csv HOST_DATA_DIR PI.csv PI_DATA_DIR [--tol 1e-3]
      `edgecam evaluate` predictions.csv files: same images, identical predicted labels,
      scores within --tol.
  compare.py frames HOST.jsonl PI.jsonl
      `edgecam run --headless` output (one JSON object per frame with "top": [{"label",
      "score"}, ...]): same number of frames and the same top label on every frame.

Prints one summary line (parsed by the shell script: key=value pairs after the colon) and
exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys


def _rows(csv_path: str, data_dir: str) -> dict[str, dict]:
    base = os.path.normpath(data_dir)
    rows = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rel = os.path.relpath(os.path.normpath(row["path"]), base)
            rows[rel] = row
    return rows


def predictions(args) -> int:
    host, pi = _rows(args.host_csv, args.host_data), _rows(args.pi_csv, args.pi_data)
    problems = []
    if not host:
        problems.append(f"{args.host_csv}: no predictions")
    if set(host) != set(pi):
        only_host, only_pi = sorted(set(host) - set(pi)), sorted(set(pi) - set(host))
        problems.append(f"different images: only on host {only_host[:5]}, only on Pi {only_pi[:5]}")
    common = sorted(set(host) & set(pi))
    label_diff = [k for k in common if host[k]["predicted"] != pi[k]["predicted"]]
    score_diff = {k: abs(float(host[k]["score"]) - float(pi[k]["score"])) for k in common}
    max_diff = max(score_diff.values(), default=0.0)
    for k in label_diff:
        problems.append(f"{k}: host says {host[k]['predicted']} ({host[k]['score']}), "
                        f"Pi says {pi[k]['predicted']} ({pi[k]['score']})")
    if max_diff > args.tol:
        worst = max(score_diff, key=score_diff.get)
        problems.append(f"score difference {max_diff:.4f} > {args.tol} on {worst}")
    for p in problems:
        print(f"  MISMATCH: {p}")
    same = len(common) - len(label_diff)
    print(f"evaluate: images={len(common)} labels_equal={same}/{len(common)} max_score_diff={max_diff:.4f}"
          f" tol={args.tol}")
    return 1 if problems else 0


def _frames(path: str) -> tuple[list[dict], int]:
    frames, other = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                other += line != ""
                continue
            frames.append(json.loads(line))
    return frames, other


def _top(frame: dict) -> tuple[str, float]:
    top = frame["top"][0]
    return top["label"], float(top["score"])


def frames(args) -> int:
    (host, host_other), (pi, pi_other) = _frames(args.host_jsonl), _frames(args.pi_jsonl)
    problems = []
    if not host:
        problems.append(f"{args.host_jsonl}: no JSON frames")
    if len(host) != len(pi):
        problems.append(f"frame count differs: host {len(host)}, Pi {len(pi)}")
    equal, max_diff = 0, 0.0
    for i, (h, p) in enumerate(zip(host, pi)):
        try:
            (hl, hs), (pl, ps) = _top(h), _top(p)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            problems.append(f"frame {i}: no usable 'top' ({err!r})")
            continue
        max_diff = max(max_diff, abs(hs - ps))
        if hl == pl:
            equal += 1
        else:
            problems.append(f"frame {i}: host says {hl} ({hs:.4f}), Pi says {pl} ({ps:.4f})")
    for p in problems[:20]:
        print(f"  MISMATCH: {p}")
    n = min(len(host), len(pi))
    print(f"run: frames={n} top_labels_equal={equal}/{n} max_top_score_diff={max_diff:.4f}"
          f" non_json_lines_host={host_other} non_json_lines_pi={pi_other}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("predictions")
    p.add_argument("host_csv")
    p.add_argument("host_data")
    p.add_argument("pi_csv")
    p.add_argument("pi_data")
    p.add_argument("--tol", type=float, default=1e-3)
    f = sub.add_parser("frames")
    f.add_argument("host_jsonl")
    f.add_argument("pi_jsonl")
    args = parser.parse_args()
    return predictions(args) if args.what == "predictions" else frames(args)


if __name__ == "__main__":
    sys.exit(main())
