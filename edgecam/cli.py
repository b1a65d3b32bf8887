"""The ``edgecam`` command: thin click commands that parse, load config, call the library, print.

Library errors (``EdgecamError``) become a one-line ``Error: ...`` and an exit code here, and
only here. Heavy imports (TensorFlow) happen inside the commands that need them, so
``edgecam run`` and ``edgecam evaluate`` start fast and work where TensorFlow is absent.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

import click

from edgecam import __version__
from edgecam.console import quiet_native_logs as _quiet_native_logs
from edgecam.errors import EdgecamError


class _Group(click.Group):
    """Turns library errors and interrupts into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        _raise_interrupt.signals = []
        signal.signal(signal.SIGTERM, _raise_interrupt)  # lets finally: blocks remove temp files
        try:
            return super().invoke(ctx)
        except EdgecamError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            # 128 + the signal, as a shell reports it: 143 for SIGTERM (systemd stop), 130 for Ctrl-C.
            sys.exit(128 + (signal.SIGTERM if signal.SIGTERM in _raise_interrupt.signals else signal.SIGINT))


def _raise_interrupt(signum, frame):
    _raise_interrupt.signals.append(signum)  # which signal it was, even if the interrupt is re-raised
    raise KeyboardInterrupt


_raise_interrupt.signals = []


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecam")
def cli():
    """Teach a camera to recognise your own things.

    \b
    Workstation:  edgecam finetune CONFIG.yaml [key=value ...]
    Anywhere:     edgecam evaluate MODEL.tflite DATA_DIR
    Camera:       edgecam run MODEL.tflite [--source ...] [--headless] [--serve PORT]
    Photos:       edgecam collect DATASET_DIR --labels a,b,c [--serve PORT]
    Kept frames:  edgecam review DIR --dataset DATASET_DIR [--serve PORT]
    Speed:        edgecam benchmark MODEL.tflite
    Data:         edgecam datasets get flowers
    This machine: edgecam doctor [--model MODEL.tflite] [--json]
    Cameras:      edgecam fleet mqtt://BROKER [--json] [--once]
    """


def _split_config_and_overrides(args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    if args and "=" not in args[0]:
        return args[0], list(args[1:])
    return None, list(args)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, metavar="[CONFIG.yaml] [KEY=VALUE]...")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def finetune(args, quiet):
    """Train a classifier on labelled image folders and export a .tflite.

    CONFIG.yaml is optional; any key can be set or overridden as KEY=VALUE, e.g.
    `edgecam finetune configs/flowers.yaml train.epochs=20 export.quantization=int8`.
    """
    from edgecam.config.finetune import load_finetune_config

    config_path, overrides = _split_config_and_overrides(args)
    for bad in (a for a in overrides if "=" not in a):
        raise click.UsageError(f"{bad!r}: expected KEY=VALUE (only the first argument may be a config file)")
    cfg = load_finetune_config(config_path, overrides)
    _quiet_native_logs()
    from edgecam.training.finetune import finetune as run_finetune

    result = run_finetune(cfg, progress=not quiet)
    tflite = result.report["metrics"]["tflite"]
    for split, metrics in tflite.items():
        keras = result.report["metrics"]["keras"].get(split)
        click.echo(f"{split} accuracy: {metrics['accuracy']:.4f} (model.tflite)"
                   + (f", {keras:.4f} (Keras)" if keras is not None else "") + f" on {metrics['images']} images")
    click.echo(f"model:  {result.model_path} ({result.report['export']['bytes'] / 1e6:.2f} MB, "
               f"{result.report['export']['quantization']})")
    click.echo(f"report: {result.run_dir / 'report.md'}")
    click.echo(f"done in {result.timings['total']:.1f} s")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--labels", type=click.Path(path_type=Path), help="Labels file for models without metadata.")
@click.option("--out", type=click.Path(path_type=Path), help="New output folder [default: runs/evaluate/<n>].")
@click.option("--unknown", "unknown_dirs", multiple=True, type=click.Path(path_type=Path), metavar="DIR",
              help="Folder of images that belong to no label (repeatable): how many the model rejects as unknown.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def evaluate(model, data_dir, labels, out, unknown_dirs, quiet):
    """Accuracy of MODEL.tflite on DATA_DIR (one folder per label), without TensorFlow.

    With --unknown DIR: also the share of DIR's images rejected as unknown at the model's calibrated
    threshold, the share of DATA_DIR's images kept, and the AUROC of the model's unknown score.
    """
    from edgecam.config.finetune import EVALUATE_RUNS
    from edgecam.errors import DataError
    from edgecam.files import new_output_dir, next_run_dir

    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found")
    _need_opencv()
    _quiet_native_logs()
    from edgecam.evaluation.evaluate import evaluate_folder
    from edgecam.evaluation.unknown import list_folders, summary_lines

    list_folders(unknown_dirs)  # a missing or empty --unknown folder fails before anything is written
    out = new_output_dir(out) if out else next_run_dir(Path("runs"), EVALUATE_RUNS)
    result = evaluate_folder(model, data_dir, out, labels_file=labels, progress=not quiet, unknown_dirs=unknown_dirs)
    m = result["metrics"]
    click.echo(f"accuracy: {m['accuracy']:.4f} on {m['images']} images ({len(result['misclassified'])} wrong, "
               f"{len(result['skipped'])} skipped)")
    width = max(len(label) for label in m["per_label"])
    for label, row in m["per_label"].items():
        click.echo(f"  {label:<{width}}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                   f"f1 {row['f1']:.3f}  n={row['support']}")
    for line in summary_lines(result["unknown"]) if "unknown" in result else []:
        click.echo(line)
    click.echo(f"results: {out}")


# Options whose YAML key is not their name with underscores (the web page has its own section).
OPTION_KEYS = {"serve": "serve.address", "token": "serve.token", "mqtt": "mqtt.url", "keep": "keep.dir",
               "keep_dataset": "keep.dataset"}


def _load_camera_config(cls, config_path: Path | None, options: dict):
    """A camera command's config: the --config file, with the options given on top."""
    from edgecam.config.loader import load_values

    values: dict = {}
    names = {}
    for name, value in options.items():
        key = OPTION_KEYS.get(name, name)
        names[key] = "--" + name.replace("_", "-")
        if value is None:
            continue
        *sections, leaf = key.split(".")
        node = values
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return load_values(cls, config_path, values, names)


def _need_opencv() -> None:
    """The camera commands need OpenCV, which the base install leaves to apt (Pi) or an extra."""
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        from edgecam.doctor.software import OPENCV_FIX  # the one install hint (doctor says it too)

        raise EdgecamError(f"OpenCV is not installed ({exc}): {OPENCV_FIX}") from None


@cli.command(context_settings={"show_default": True})
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML file with any of these options.")
@click.option("--source", "-s", help="Camera index, /dev/videoN, URL, video, image folder/glob, picamera2 [default: Pi camera, then camera 0].")
@click.option("--labels", help="Labels file, for models without label metadata.")
@click.option("--headless", is_flag=True, default=None, help="No window: one JSON object per frame on stdout.")
@click.option("--record", help="Also write the annotated video to this .mp4/.avi file.")
@click.option("--top-k", "top_k", type=int, help="Labels to show. [default: 3]")
@click.option("--threads", type=int, help="Interpreter threads (0 = all cores). [default: 0]")
@click.option("--resolution", help="Camera capture size, WxH. [default: 640x480]")
@click.option("--smoothing", type=float, help="Score smoothing over frames, 0..1 (0 = off). [default: 0]")
@click.option("--threshold", type=float, help="Below this top score the label is 'unknown'; turns off the "
              "model's calibrated unknown rejection. [default: the model's calibrated rejection if it has one, else 0]")
@click.option("--hold", type=float, help="Seconds a new label must hold before it is announced. [default: 0.5]")
@click.option("--on-change", "on_change", help="Command to run when the label changes (EDGECAM_LABEL, EDGECAM_SCORE).")
@click.option("--max-frames", "max_frames", type=int, help="Stop after N frames (0 = no limit).")
@click.option("--no-reconnect", "reconnect", flag_value=False, default=None, help="Do not reopen a failed live source.")
@click.option("--serve", metavar="[HOST:]PORT", help="Live page with stream, labels and FPS; 127.0.0.1 unless HOST "
              "is given (0.0.0.0 = every interface, with a token). Opens no window unless --window.")
@click.option("--token", help="Access token for the page [default: generated when HOST is not loopback].")
@click.option("--window", is_flag=True, default=None, help="With --serve: open the window too.")
@click.option("--mqtt", metavar="URL", help="Publish labels to this MQTT broker, mqtt://HOST[:PORT] or mqtts://... "
              "(TLS), with Home Assistant discovery; other settings under mqtt: in --config. Password: "
              "$EDGECAM_MQTT_PASSWORD or mqtt.password_file.")
@click.option("--keep", metavar="DIR", help="Save frames worth a second look (unknown, label flips, disagreements, low "
              "margins, a few samples) to DIR as JPEG + JSON, rate-limited; other settings under keep: in --config.")
@click.option("--keep-dataset", metavar="DATASET_DIR", help="With --keep and --serve: the page's review tab files "
              "kept frames into DATASET_DIR/<label>/ (as `edgecam review DIR --dataset DATASET_DIR`).")
def run(model, config_path, **options):
    """Classify camera frames with MODEL.tflite: labels, confidence and FPS on screen or as JSON lines.

    Needs no TensorFlow. Press q or Esc in the window to quit; Ctrl-C or SIGTERM stop cleanly.
    Replacing the model file (or SIGHUP) loads it again, checked, without stopping.
    With --serve, a browser shows the same (with --headless, JSON lines go to stdout as well).
    With --mqtt, label changes go to an MQTT broker too, found by Home Assistant (discovery).
    """
    from edgecam.config.camera import RunConfig

    options["model"] = str(model) if model is not None else None
    cfg = _load_camera_config(RunConfig, config_path, options)
    if not cfg.model:
        raise click.UsageError("no model: pass MODEL.tflite or set model: in --config")
    _need_opencv()
    _quiet_native_logs()
    from edgecam.runtime.control import Control

    control = Control()  # threshold, pause, snapshot, reload: SIGHUP (and MQTT) reach the loop through it
    extra = None
    if cfg.mqtt.url:
        from edgecam.mqtt.session import mqtt_outputs

        extra = mqtt_outputs(cfg, control)  # connects once the model is open; the loop closes it
    with _reload_on_sighup(control):
        if cfg.serve.address:
            from edgecam.serving.run_page import serve_run

            serve_run(cfg, control=control, extra_outputs=extra)
        else:
            from edgecam.runtime.loop import run as run_loop

            run_loop(cfg, control=control, extra_outputs=extra)


@contextlib.contextmanager
def _reload_on_sighup(control):
    """SIGHUP reloads the model (systemd's ExecReload, ``kill -HUP``), as daemons re-read their config.

    No SIGHUP on Windows, and signals can only be set from the main thread: then nothing is installed.
    """
    sighup = getattr(signal, "SIGHUP", None)
    try:
        previous = signal.signal(sighup, lambda signum, frame: control.request_reload("SIGHUP")) if sighup else None
    except ValueError:  # not the main thread (e.g. a test running the command in a thread)
        sighup = previous = None
    try:
        yield
    finally:
        if sighup:
            signal.signal(sighup, previous if previous is not None else signal.SIG_DFL)


@cli.command(context_settings={"show_default": True})
@click.argument("dataset", metavar="DATASET_DIR", type=click.Path(path_type=Path), required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML file with any of these options.")
@click.option("--labels", "-l", help="Comma-separated labels, in key order 1..9 [default: the folders in DATASET_DIR].")
@click.option("--source", "-s", help="Camera index, /dev/videoN, URL, video, image folder/glob, picamera2 [default: Pi camera, then camera 0].")
@click.option("--resolution", help="Camera capture size, WxH. [default: 640x480]")
@click.option("--serve", metavar="[HOST:]PORT", help="Collect from a browser page (one button per label, bursts) "
              "instead of a window; 127.0.0.1 unless HOST is given (then with a token).")
@click.option("--token", help="Access token for the page [default: generated when HOST is not loopback].")
@click.option("--quality", type=int, help="JPEG quality of saved photos, 50..100. [default: 95]")
@click.option("--burst", type=int, help="Photos per burst (page default), 1..1000. [default: 10]")
@click.option("--interval", type=float, help="Seconds between burst photos (page default), 0..60. [default: 0.5]")
def collect(dataset, config_path, labels, **options):
    """Take labelled photos into DATASET_DIR/<label>/ for `edgecam finetune data.path=DATASET_DIR`.

    Window: keys 1..9 save the current frame for label 1..9; q or Esc quits. With --serve, a
    browser page has one button per label and a burst mode. Needs no model.
    """
    from edgecam.config.camera import CollectConfig

    options["dataset"] = str(dataset) if dataset is not None else None
    options["labels"] = [name.strip() for name in labels.split(",")] if labels else None
    cfg = _load_camera_config(CollectConfig, config_path, options)
    if not cfg.dataset:
        raise click.UsageError("no dataset folder: pass DATASET_DIR or set dataset: in --config")
    _need_opencv()
    from edgecam.collect.session import collect as run_collect

    run_collect(cfg)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--runs", default=50, show_default=True, help="Timed inferences per thread count.")
@click.option("--threads", "thread_counts", help="Comma-separated thread counts [default: 1..all cores].")
def benchmark(model, runs, thread_counts):
    """Interpreter latency over thread counts, model size and peak memory of MODEL.tflite."""
    try:
        counts = [int(t) for t in thread_counts.split(",")] if thread_counts else None
    except ValueError:
        raise click.UsageError(f"--threads: expected numbers like 1,2,4, got {thread_counts!r}") from None
    _need_opencv()
    _quiet_native_logs()
    from edgecam.runtime.benchmark import benchmark_model, format_table

    click.echo(format_table(benchmark_model(model, runs=runs, thread_counts=counts)))


@cli.group()
def datasets():
    """Public datasets, downloaded once into a cache: `edgecam datasets get flowers`."""


@datasets.command("get")
@click.argument("name", metavar="NAME")
@click.option("--dest", type=click.Path(path_type=Path),
              help="Folder to put it in [default: $EDGECAM_CACHE/datasets, else ~/.cache/edgecam/datasets].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def datasets_get(name, dest, quiet):
    """Download dataset NAME (flowers) once, verify it, split it into train/ and test/; print its folder."""
    from edgecam.datasets import get_dataset

    click.echo(get_dataset(name, dest, progress=not quiet))


@cli.command()
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


@cli.command(context_settings={"show_default": True})
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


@cli.command(context_settings={"show_default": True})
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

    _need_opencv()
    from edgecam.serving.review_page import review as serve_review

    serve_review(kept, dataset, ServeConfig(address, token or ""), background_folder)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
