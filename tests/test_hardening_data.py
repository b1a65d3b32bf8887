"""Careless or hostile input to finetune, evaluate and the config loader: one line, never a
traceback; nothing half-written; plots that scale and never cost the numbers.

Full disks are simulated with RLIMIT_FSIZE in a child process (CPython ignores SIGXFSZ, so a
write past the limit fails with EFBIG, as on a full disk).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import COLORS_MODEL, FLOWERS_MINI, V1_WEIGHTS, WEIGHTS, need
from edgecam.cli import cli
from edgecam.config.finetune import DataConfig, load_finetune_config
from edgecam.data.dataset import scan_dataset
from edgecam.errors import ConfigError

COLORS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


def color_tree(root: Path, per_label: int = 3) -> Path:
    """red/ green/ blue/ folders of distinct solid-colour PNGs (what COLORS_MODEL recognises)."""
    for label, rgb in COLORS.items():
        (root / label).mkdir(parents=True)
        for n in range(per_label):
            frame = np.full((40, 50, 3), rgb[::-1], np.uint8)
            frame[0, 0] = n  # distinct files (identical ones count once)
            assert cv2.imwrite(str(root / label / f"{n}.png"), frame)
    return root


def one_line_error(result, exit_code: int) -> str:
    """The one ``Error:`` line of a failed command (progress lines before it are fine; a traceback is not)."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def in_dir(path: Path):
    """CliRunner runs in the current folder: keep default run folders inside the test's tmp_path."""
    class _Cwd:
        def __enter__(self):
            self.old = os.getcwd()
            os.chdir(path)

        def __exit__(self, *exc):
            os.chdir(self.old)

    return _Cwd()


# -- 8. symlink loops are unreadable files, skipped and listed --------------------------------
def make_loops(label_dir: Path) -> list[Path]:
    (label_dir / "self.jpg").symlink_to("self.jpg")
    (label_dir / "ping.png").symlink_to("pong.png")
    (label_dir / "pong.png").symlink_to("ping.png")
    return [label_dir / "self.jpg", label_dir / "ping.png", label_dir / "pong.png"]


def test_symlink_loops_in_a_label_folder_are_skipped_and_listed(tmp_path):
    root = color_tree(tmp_path / "data")
    loops = make_loops(root / "red")
    dataset = scan_dataset(DataConfig(path=root), progress=False)
    assert len(dataset.samples) == 9
    skipped = {s.path: s.reason for s in dataset.skipped}
    assert set(skipped) == set(loops)
    assert all("symbolic links" in reason for reason in skipped.values()), skipped


def test_evaluate_skips_symlink_loops(tmp_path):
    root = color_tree(tmp_path / "data")
    make_loops(root / "green")
    with in_dir(tmp_path):
        result = CliRunner().invoke(cli, ["evaluate", str(COLORS_MODEL), str(root), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accuracy: 1.0000 on 9 images (0 wrong, 3 skipped)")


# -- 7. plots scale, and a failing plot never costs the metrics -------------------------------
PLOT_1001 = """
import resource, sys, time
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from edgecam.plots import confusion_matrix_png
rng = np.random.default_rng(0)
n = 1001
matrix = np.diag(rng.integers(1, 5, n))
matrix[rng.integers(0, n, 300), rng.integers(0, n, 300)] += 1
start = time.perf_counter()
ok = confusion_matrix_png(matrix.tolist(), [f"class {i}" for i in range(n)], sys.argv[1], "1001 classes")
print(ok, round(time.perf_counter() - start, 1))
"""


def test_confusion_matrix_of_1001_labels_is_drawn_within_bounded_memory(tmp_path):
    png = tmp_path / "cm.png"
    proc = subprocess.run([sys.executable, "-c", PLOT_1001, str(png)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    drawn, seconds = proc.stdout.split()
    assert drawn == "True" and float(seconds) < 60
    image = cv2.imread(str(png))
    assert image is not None and max(image.shape[:2]) < 4000, image.shape if image is not None else None
    assert "largest confusions" in proc.stderr or "most confused" in proc.stderr, proc.stderr


def test_a_plot_that_fails_keeps_the_metrics_and_the_summary(tmp_path, monkeypatch):
    import matplotlib.figure

    def broken(self, *args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    root = color_tree(tmp_path / "data")
    with in_dir(tmp_path):
        result = CliRunner().invoke(cli, ["evaluate", str(COLORS_MODEL), str(root), "--out", "out", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accuracy: 1.0000 on 9 images")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]["accuracy"] == 1.0
    assert not (tmp_path / "out" / "confusion_matrix.png").exists()
    assert "confusion_matrix.png" in result.stderr and "std::bad_alloc" in result.stderr
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


# -- 9. output folders that cannot be written: one line naming the folder ---------------------
def test_evaluate_into_a_folder_under_a_file_is_one_line(tmp_path):
    root = color_tree(tmp_path / "data")
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(cli, ["evaluate", str(COLORS_MODEL), str(root), "--out", str(tmp_path / "file" / "out")])
    line = one_line_error(result, 1)
    assert line == f"Error: {tmp_path / 'file' / 'out'}: cannot create folder (Not a directory)"


def test_finetune_output_under_a_file_is_one_line(tmp_path):
    need(FLOWERS_MINI)
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(cli, ["finetune", f"data.path={FLOWERS_MINI}", f"output={tmp_path / 'file' / 'runs'}",
                                      f"cache={tmp_path / 'cache'}", "-q"])
    line = one_line_error(result, 1)
    assert line == f"Error: {tmp_path / 'file' / 'runs' / 'run'}: cannot create folder (Not a directory)"


def test_finetune_output_on_a_read_only_filesystem_is_one_line(tmp_path):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    need(FLOWERS_MINI)
    result = CliRunner().invoke(cli, ["finetune", f"data.path={FLOWERS_MINI}", "output=/proc/self/edgecam-runs",
                                      f"cache={tmp_path / 'cache'}", "-q"])
    line = one_line_error(result, 1)
    assert line.startswith("Error: /proc/self/edgecam-runs/run: cannot create folder (")


def limited_write(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.slow
def test_finetune_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path):
    """6 + 9: the run folder holds no half-written or temporary file when a write fails."""
    need(FLOWERS_MINI)
    need(V1_WEIGHTS)
    args = [sys.executable, "-m", "edgecam", "finetune", "-q", f"data.path={FLOWERS_MINI}", f"model.weights={WEIGHTS}",
            f"output={tmp_path / 'runs'}", f"cache={tmp_path / 'cache'}", "name=full", "model.backbone=mobilenet_v1",
            "model.alpha=0.25", "train.epochs=2", "train.augment.views=0"]
    env = {**os.environ, "TMPDIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    warm = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)  # fills the cache
    assert warm.returncode == 0, warm.stderr[-2000:]
    keras_size = (tmp_path / "runs" / "full" / "1" / "model.keras").stat().st_size
    full = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600,
                          preexec_fn=limited_write(keras_size // 2))
    assert full.returncode == 1, full.stderr[-2000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {tmp_path / 'runs' / 'full' / '2' / 'model.keras'}: cannot write (File too large)"], \
        full.stderr[-2000:]
    assert "Traceback" not in full.stderr
    leftovers = [p.name for p in (tmp_path / "runs" / "full" / "2").iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    assert not (tmp_path / "runs" / "full" / "2" / "model.keras").exists()


# -- 10. values that would crash later are refused by the config ------------------------------
@pytest.mark.parametrize("override, message", [
    ("train.seed=-1", "command line: train.seed: must be 0..4294967295, got -1"),
    ("train.seed=100000000000000000000", "command line: train.seed: must be 0..4294967295, got 100000000000000000000"),
    ("name=" + "x" * 300, "command line: name: at most 100 characters (got 300)"),
    ("name=a\tb", "command line: name: must be a plain folder name, got 'a\\tb'"),
])
def test_out_of_range_values_are_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_finetune_config(None, [override])
    assert str(info.value) == message


@pytest.mark.slow  # seconds of waiting: keeps the fast tier under a minute
def test_a_10mb_name_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["finetune", "name=" + "n" * 10_000_000])
    line = one_line_error(result, 2)
    assert line == "Error: command line: name: at most 100 characters (got 10000000)"


# -- 11. YAML aliases: refused before they can expand ----------------------------------------
def test_yaml_aliases_are_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 30):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("data:\n  labels: *a29")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_finetune_config(path)
    assert time.perf_counter() - start < 2
    assert str(info.value) == f"{path}:2: YAML aliases (*a0) are not allowed in config files; write the value out"


# -- 12. folders that look hidden are listed, not silently dropped ----------------------------
def test_dot_folders_at_the_label_level_are_listed_as_ignored(tmp_path):
    root = color_tree(tmp_path / "data")
    shutil.copytree(root / "red", root / "...")
    (root / ".git").mkdir()
    dataset = scan_dataset(DataConfig(path=root), progress=False)
    assert dataset.labels == ("blue", "green", "red")
    assert "ignored folder '...' (hidden: its name starts with a dot)" in dataset.notices
    assert not any(".git" in n for n in dataset.notices)  # tool folders stay quiet
    assert root / "..." in dataset.ignored_folders


# -- 13. evaluate never overwrites results ----------------------------------------------------
def test_evaluate_out_refuses_a_folder_that_holds_results(tmp_path):
    root = color_tree(tmp_path / "data")
    out = tmp_path / "out"
    first = CliRunner().invoke(cli, ["evaluate", str(COLORS_MODEL), str(root), "--out", str(out), "-q"])
    assert first.exit_code == 0, first.output
    before = (out / "metrics.json").read_bytes()
    again = CliRunner().invoke(cli, ["evaluate", str(COLORS_MODEL), str(root), "--out", str(out), "-q"])
    line = one_line_error(again, 1)
    assert line == f"Error: {out}: already exists and is not empty; name a new folder (results are never overwritten)"
    assert (out / "metrics.json").read_bytes() == before
    with in_dir(tmp_path):  # without --out: a new numbered folder each time
        for _ in range(2):
            assert CliRunner().invoke(cli, ["evaluate", str(COLORS_MODEL), str(root), "-q"]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "evaluate").iterdir()) == ["1", "2"]
