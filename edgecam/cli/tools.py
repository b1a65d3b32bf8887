"""The commands around the main ones: benchmark, datasets, doctor, fleet, review, imx500.

Thin like the rest (``edgecam.cli``): parse, call the library, print. Registered on the ``edgecam``
group by ``edgecam/cli/__init__.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgecam.console import quiet_native_logs as _quiet_native_logs
from edgecam.errors import EdgecamError


def need_opencv() -> None:
    """The camera commands need OpenCV, which the base install leaves to apt (Pi) or an extra."""
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        from edgecam.doctor.software import OPENCV_FIX  # the one install hint (doctor says it too)

        raise EdgecamError(f"OpenCV is not installed ({exc}): {OPENCV_FIX}") from None


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--runs", default=50, show_default=True, help="Timed inferences per thread count.")
@click.option("--threads", "thread_counts", help="Comma-separated thread counts [default: 1..all cores].")
def benchmark(model, runs, thread_counts):
    """Interpreter latency over thread counts, model size and peak memory of MODEL.tflite."""
    try:
        counts = [int(t) for t in thread_counts.split(",")] if thread_counts else None
    except ValueError:
        raise click.UsageError(f"--threads: expected numbers like 1,2,4, got {thread_counts!r}") from None
    need_opencv()
    _quiet_native_logs()
    from edgecam.runtime.benchmark import benchmark_model, format_table

    click.echo(format_table(benchmark_model(model, runs=runs, thread_counts=counts)))


@click.group()
def datasets():
    """Public datasets, downloaded once into a cache (`edgecam datasets get flowers`); camera-shift copies."""


@datasets.command("get")
@click.argument("name", metavar="NAME")
@click.option("--dest", type=click.Path(path_type=Path),
              help="Folder to put it in [default: $EDGECAM_CACHE/datasets, else ~/.cache/edgecam/datasets].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def datasets_get(name, dest, quiet):
    """Download dataset NAME (flowers) once, verify it, split it into train/ and test/; print its folder."""
    from edgecam.datasets import get_dataset

    click.echo(get_dataset(name, dest, progress=not quiet))


@datasets.command("shift")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Seed of the effects chosen per photo.")
@click.option("--force", is_flag=True, help="Replace a camera-shift set already in DST.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def datasets_shift(src, dst, seed, force, quiet):
    """Copy SRC (a folder per label) to DST as a Pi camera sees it, 2-3 seeded effects per photo; print DST."""
    need_opencv()
    from edgecam.data.shift_set import make_shift_set

    click.echo(make_shift_set(src, dst, seed=seed, force=force, progress=not quiet).path)


@click.command()
@click.option("--model", type=click.Path(path_type=Path), help="Also check that this .tflite loads, with its labels "
              "and preprocessing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, for scripts.")
def doctor(model, as_json):
    """Check this machine for edgecam: packages, LiteRT, OpenCV, display, cameras, disk, a Pi's power.

    One line per check, with the fix when something is wrong; exit code 1 when something cannot work.
    """
    _quiet_native_logs()
    from edgecam.doctor import failed, format_json, format_text, run_checks

    checks = run_checks(model)
    click.echo(format_json(checks) if as_json else format_text(checks))
    if failed(checks):
        raise SystemExit(1)


@click.command(context_settings={"show_default": True})
@click.argument("broker", metavar="mqtt://[USER@]HOST[:PORT]")
@click.option("--prefix", default="edgecam", help="Topic prefix the cameras publish under (<prefix>/<device>/...).")
@click.option("--username", help="Broker user name [default: the URL's].")
@click.option("--password-file", type=click.Path(path_type=Path),
              help="File whose first line is the broker password ($EDGECAM_MQTT_PASSWORD wins).")
@click.option("--ca-file", type=click.Path(path_type=Path),
              help="mqtts://: CA certificate to trust [default: the system's].")
@click.option("--cert-file", type=click.Path(path_type=Path), help="mqtts://: client certificate, if the broker asks.")
@click.option("--key-file", type=click.Path(path_type=Path), help="mqtts://: the client certificate's key.")
@click.option("--json", "as_json", is_flag=True, help="One JSON snapshot of every device per line, on each change.")
@click.option("--once", is_flag=True, help="Print once, after the broker's retained messages, and exit.")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0.5, help="With --once: seconds to keep listening "
              "after the retained messages (e.g. for heartbeats) before printing.")
def fleet(broker, prefix, username, password_file, ca_file, cert_file, key_file, as_json, once, wait):
    """Every edgecam camera on an MQTT broker: online or not, label, score, FPS, model, last seen.

    Built from what `edgecam run --mqtt` leaves on the broker (retained messages and heartbeats).
    Updates live until Ctrl-C: redrawn in place on a terminal, else a new table (or JSON line) on
    each change. The password: $EDGECAM_MQTT_PASSWORD, else --password-file (one in the URL works
    too, and wins, but `ps` shows it).
    """
    from edgecam.fleet import parse_broker, watch

    target = parse_broker(broker, username, password_file, ca_file, cert_file, key_file)
    watch(target, prefix, sys.stdout, as_json=as_json, once=once, wait=wait)


@click.command(context_settings={"show_default": True})
@click.argument("kept", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--dataset", metavar="DATASET_DIR", required=True, type=click.Path(path_type=Path),
              help="Dataset to file frames into (one folder per label; a new label makes a new folder).")
@click.option("--serve", "address", default="8080", metavar="[HOST:]PORT", help="Address of the page; "
              "127.0.0.1 unless HOST is given (0.0.0.0 = every interface, with a token).")
@click.option("--token", help="Access token [default: generated when HOST is not loopback].")
@click.option("--background-folder", default="background", help="Folder in DATASET_DIR for background frames.")
def review(kept, dataset, address, token, background_folder):
    """Review the frames `edgecam run --keep DIR` kept, in a browser, and file them into DATASET_DIR.

    A tap or a key files the selected frame under a label (1-9, or type a new one), as background
    (b), discards it (x) or undoes the last action (u). Needs no camera and no model.
    """
    from edgecam.config.camera import ServeConfig

    need_opencv()
    from edgecam.serving.review_page import review as serve_review

    serve_review(kept, dataset, ServeConfig(address, token or ""), background_folder)


@click.group()
def imx500():
    """The Raspberry Pi AI Camera's toolchain, for `edgecam finetune ... export.target=imx500`."""


@imx500.command("setup")
@click.option("--force", is_flag=True, help="Rebuild it even when it is ready.")
def imx500_setup(force):
    """Build the pinned venv with Sony's quantiser and converter (TensorFlow 2.15, ~2.3 GB) once; needs Java 17."""
    from edgecam.training.imx500 import env

    env.setup(force=force, log=lambda message: click.echo(message, err=True))
    if env.java_problem():
        raise EdgecamError(env.java_problem())
