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
from edgecam.cli import tools
from edgecam.cli.tools import need_opencv as _need_opencv


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
    AI Camera:    edgecam imx500 setup; finetune ... export.target=imx500; run network.rpk
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
    if cfg.export.target == "imx500":  # Java and the IMX500 venv, before minutes of training
        from edgecam.training.imx500.export import require

        require(cfg)
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
    if "imx500" in result.report["export"]:
        from edgecam.training.imx500 import summary_line

        click.echo(summary_line(result.report["export"]["imx500"]))
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
    """Classify camera frames with MODEL.tflite (or network.rpk: AI Camera): labels, score, FPS on screen or as JSON.

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


for _command in (tools.benchmark, tools.datasets, tools.doctor, tools.fleet, tools.review, tools.imx500):
    cli.add_command(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
