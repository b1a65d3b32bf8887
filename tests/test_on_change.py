"""--on-change loses nothing: every announced label runs the command, one at a time, in order.

The command runs in a worker thread behind a bounded queue: a slow command delays the next
change instead of skipping it; only when the queue is full is the oldest waiting change dropped
(said once, counted at the end). When the run ends, what waits gets a short grace to run.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from click.testing import CliRunner

import runfixtures as rf
from conftest import COLORS_MODEL
from helpers import wait_until
from edgecam.cli import cli
from edgecam.runtime.decisions import ChangeCommand, Decision

SLOW = "sleep 0.3; echo \"$EDGECAM_LABEL $EDGECAM_SCORE\" >> {out}"
RED, GREEN, BLUE = (200, 20, 20), (20, 200, 20), (20, 20, 200)


def change(label: str, score: float = 0.9) -> Decision:
    return Decision(label, score, True)


def lines(path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_slow_command_runs_for_every_change_in_order(tmp_path, capsys):
    out = tmp_path / "changes.txt"
    command = ChangeCommand(SLOW.format(out=out))
    labels = ["red", "green", "blue", "unknown", "red"]
    started = time.monotonic()
    for i, label in enumerate(labels):  # all at once: each comes while the first command still sleeps
        command(change(label, 0.5 + i / 10))
    assert time.monotonic() - started < 0.2  # the caller (the camera loop) never waits for a command
    wait_until(lambda: len(lines(out)) == len(labels), 10, "every change's command")
    command.close()
    assert lines(out) == [[label, f"{0.5 + i / 10:.4f}"] for i, label in enumerate(labels)]
    assert command.ran == len(labels) and command.dropped == 0
    # One at a time: five commands of 0.3 s each take at least 1.5 s together.
    assert time.monotonic() - started >= 1.5
    assert capsys.readouterr().err == ""  # nothing lost, nothing to say


def test_a_full_queue_drops_the_oldest_waiting_change_and_says_so_once(tmp_path, capsys):
    out = tmp_path / "changes.txt"
    command = ChangeCommand(SLOW.format(out=out), size=3, grace=5)
    command(change("c0"))
    wait_until(lambda: command.waiting == 0, 5, "the first command to start")
    for i in range(1, 10):  # nine more while c0 runs: the queue holds three
        command(change(f"c{i}"))
    assert command.waiting == 3 and command.dropped == 6
    command.close()  # the three waiting ones run within the grace
    assert [row[0] for row in lines(out)] == ["c0", "c7", "c8", "c9"]  # the newest kept, in order
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning: on_change: ")]
    assert warnings == ["warning: on_change: 3 changes wait for the command: dropping the oldest (the command is "
                        "slower than the label changes; the count is given at the end)"]
    assert err[-1] == "on_change: 4 commands run, 0 changes not run (the run ended), 6 dropped (queue full)"


def test_closing_lets_the_running_command_finish_and_counts_what_was_not_run(tmp_path, capsys):
    out = tmp_path / "changes.txt"
    command = ChangeCommand(f"sleep 0.6; echo \"$EDGECAM_LABEL\" >> {out}", grace=0.2)
    for label in ("a", "b", "c"):
        command(change(label))
    wait_until(lambda: command.waiting == 2, 5, "the first command to start")
    started = time.monotonic()
    command.close()
    assert time.monotonic() - started < 0.5  # the grace, not the commands, bounds the wait
    command(change("d"))  # after close: ignored
    err = capsys.readouterr().err.splitlines()
    assert err == ["on_change: a command still runs after 0.2 s; left to finish",
                   "on_change: 0 commands run, 2 changes not run (the run ended), 0 dropped (queue full)"]
    wait_until(lambda: lines(out) == [["a"]], 5, "the running command to finish on its own")
    time.sleep(0.7)
    assert lines(out) == [["a"]]  # b, c and d never ran


def test_edgecam_run_runs_the_command_for_every_announced_label(tmp_path):
    """End to end: a video whose label changes every 4 frames (far faster than the 0.3 s command);
    the run ends at the end of the file, and every change has run, in order, when it returns."""
    colours = [RED, GREEN, BLUE, RED]
    video = rf.write_video(tmp_path / "colours.avi", [np.full((48, 64, 3), c, np.uint8) for c in colours
                                                      for _ in range(4)], "FFV1")
    out = tmp_path / "changes.txt"
    saved = signal.getsignal(signal.SIGTERM)  # the run command installs a SIGTERM handler
    try:
        result = CliRunner().invoke(cli, ["run", str(COLORS_MODEL), "--source", str(video), "--headless", "--hold", "0",
                                       "--on-change", SLOW.format(out=out)])
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert result.exit_code == 0, result.output
    announced = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("label: ")]
    assert announced == ["red", "green", "blue", "red"]
    assert [row[0] for row in lines(out)] == announced  # all of them, in order, before the command returned
    assert "on_change:" not in result.stderr


@pytest.mark.parametrize("size", [1, 32])
def test_the_queue_size_is_at_least_one(tmp_path, size):
    command = ChangeCommand("true", size=size)
    assert command.size == size
    command.close()
    tiny = ChangeCommand("true", size=0)
    assert tiny.size == 1
    tiny.close()
