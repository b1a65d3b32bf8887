"""Config files and key=value overrides: typed values, and one-line errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecam.cli import cli
from edgecam.config.camera import CollectConfig, RunConfig, ServeConfig
from edgecam.config.finetune import FinetuneConfig, load_finetune_config
from edgecam.config.loader import load_values
from edgecam.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def error_of(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_finetune_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_example_config_lists_every_key_with_defaults():
    """configs/example.yaml documents every key, and its values are the defaults."""
    cfg = load_finetune_config(REPO / "configs" / "example.yaml")
    defaults = load_finetune_config(None)
    assert cfg.train == defaults.train
    assert cfg.export == defaults.export
    assert cfg.model == defaults.model
    assert cfg.data.val_fraction == defaults.data.val_fraction
    text = (REPO / "configs" / "example.yaml").read_text()
    for section in ("data", "model", "train", "export"):
        for key in getattr(FinetuneConfig(), section).__dataclass_fields__:
            assert f"{key}:" in text, f"{section}.{key} is not documented in configs/example.yaml"


def test_values_are_typed_and_paths_absolute(tmp_path):
    path = write(tmp_path, "name: x\ndata:\n  path: photos\n  labels: {cat: [cats, kittens], dog: dogs}\ntrain:\n  epochs: 3\n")
    cfg = load_finetune_config(path)
    assert cfg.train.epochs == 3 and cfg.name == "x"
    assert cfg.data.path.is_absolute() and cfg.data.path.name == "photos"
    assert cfg.data.label_folders() == {"cat": ("cats", "kittens"), "dog": ("dogs",)}
    assert isinstance(cfg.train.learning_rate, float)


def test_weights_words_stay_words_and_a_weights_path_becomes_absolute(tmp_path):
    """imagenet and none (random weights, for speed tests) are not file names in the working folder."""
    for word in ("imagenet", "none"):
        assert load_finetune_config(write(tmp_path, f"model:\n  weights: {word}\n")).model.weights == word
    weights = load_finetune_config(write(tmp_path, "model:\n  weights: w/mobilenet.h5\n")).model.weights
    assert weights == str(Path.cwd() / "w" / "mobilenet.h5")


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    path = write(tmp_path, "name: x\ntrain:\n  epocs: 3\n")
    assert error_of(path) == f"{path}:3: train.epocs: unknown key (did you mean 'epochs'?)"


def test_unknown_top_level_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, "zzz: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}:1: zzz: unknown key (valid keys: name, data, model")


def test_wrong_type_and_out_of_range(tmp_path):
    assert error_of(write(tmp_path, "train:\n  epochs: many\n")) == (
        f"{tmp_path / 'cfg.yaml'}:2: train.epochs: expected an integer, got 'many'"
    )
    assert "train.batch_size: must be at least 1, got 0" in error_of(write(tmp_path, "train:\n  batch_size: 0\n"))
    assert "export.quantization: expected one of float32 | float16 | int8, got 'int4'" in error_of(
        write(tmp_path, "export:\n  quantization: int4\n")
    )
    assert "model.alpha: 0.3 has no ImageNet weights" in error_of(write(tmp_path, "model:\n  alpha: 0.3\n"))


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\ntrain:\n  epochs: [1, 2\n")
    message = error_of(path)
    assert message.startswith(f"{path}:") and "invalid YAML" in message


def test_missing_config_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_overrides_win_and_errors_point_at_command_line(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 3\n")
    assert load_finetune_config(path, ["train.epochs=7", "data.labels=[a,b]"]).train.epochs == 7
    assert error_of(path, ["train.epoch=7"]) == "command line: train.epoch: unknown key (did you mean 'epochs'?)"
    assert error_of(path, ["export.max_accuracy_drop=lots"]).startswith("command line: export.max_accuracy_drop:")
    assert error_of(path, ["trainepochs"]).startswith("command line: 'trainepochs': expected key=value")


def test_cli_config_errors_are_one_line_with_exit_code(tmp_path):
    path = write(tmp_path, "train:\n  epocs: 3\n")
    result = CliRunner().invoke(cli, ["finetune", str(path)])
    assert result.exit_code == 2
    assert result.output == f"Error: {path}:2: train.epocs: unknown key (did you mean 'epochs'?)\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_missing_data_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["finetune", f"data.path={tmp_path / 'missing'}", "-q"])
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'missing'}: data folder not found\n"


def test_cli_empty_label_is_one_line(bad_data_tree):
    result = CliRunner().invoke(cli, ["finetune", f"data.path={bad_data_tree.root}", "-q"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: label 'd' has no usable images")


@pytest.mark.parametrize("name, cls", [("run", RunConfig), ("collect", CollectConfig)])
def test_camera_example_configs_list_every_key_with_defaults(name, cls):
    """configs/run.yaml and configs/collect.yaml document every option of their command, at its default."""
    path = REPO / "configs" / f"{name}.yaml"
    assert load_values(cls, path, {}) == cls()
    text = path.read_text()
    for key in cls.__dataclass_fields__:
        assert f"\n{key}:" in text, f"{key} is not documented in {path.name}"
    for key in ServeConfig.__dataclass_fields__:
        assert f"\n  {key}:" in text, f"serve.{key} is not documented in {path.name}"


def test_camera_config_errors_name_the_option_or_the_file_line_and_key(tmp_path):
    path = write(tmp_path, "source: clip.mp4\nserve:\n  adress: 8080\n")
    with pytest.raises(ConfigError, match=r"^.*cfg\.yaml:3: serve\.adress: unknown key \(did you mean 'address'\?\)$"):
        load_values(RunConfig, path, {})
    names = {"serve.address": "--serve", "top_k": "--top-k"}
    with pytest.raises(ConfigError) as info:
        load_values(RunConfig, None, {"serve": {"address": "80:80:80"}}, names)
    assert str(info.value).startswith("command line: --serve: expected [HOST:]PORT")
    with pytest.raises(ConfigError) as info:
        load_values(RunConfig, None, {"top_k": 0}, names)
    assert str(info.value) == "command line: --top-k: must be at least 1, got 0"


def test_cli_run_and_collect_read_their_config_file(tmp_path):
    bad = write(tmp_path, "top_k: 0\n")
    result = CliRunner().invoke(cli, ["run", "model.tflite", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {bad}:1: top_k: must be at least 1, got 0"
    labels = write(tmp_path, "labels: [a, ../up]\n")
    result = CliRunner().invoke(cli, ["collect", str(tmp_path / "ds"), "--config", str(labels)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: {labels}:1: labels: '../up' cannot be a folder name "
                                     "(use letters, digits, - or _)")
    assert not (tmp_path / "ds").exists()


def test_an_unknown_override_is_blamed_on_the_command_line():
    with pytest.raises(ConfigError) as info:
        load_finetune_config(None, ["bogus.key=1"])
    assert str(info.value).startswith("command line: bogus: unknown key")


def test_finetune_run_name_cannot_take_the_evaluate_folder():
    with pytest.raises(ConfigError) as info:
        load_finetune_config(None, ["name=evaluate"])
    assert str(info.value) == ("command line: name: 'evaluate' is where `edgecam evaluate` keeps its results; "
                               "pick another name")
