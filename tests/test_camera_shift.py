"""The camera-shift test set (`edgecam datasets shift`) and finetune's `data.extra_tests`.

Each effect is checked against what its docstring promises (a measured brightness, noise level,
blur length, colour shift, crop or angle), the set against reproducibility (same seed -> same
bytes; camera_shift.json alone re-creates every file) and the command against bad input.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FLOWERS3_MODEL, FLOWERS_MINI, V1_WEIGHTS, WEIGHTS, need
from edgecam.cli import cli
from edgecam.config.finetune import DataConfig, load_finetune_config
from edgecam.data import camera_shift as cs
from edgecam.data.extra_tests import scan_extra_tests
from edgecam.data.images import load_rgb
from edgecam.errors import ConfigError, DataError


def photo() -> np.ndarray:
    return load_rgb(sorted(need(FLOWERS_MINI / "daisy").glob("*.jpg"))[0])


def grey(value: int = 128, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    return np.full((*size, 3), value, np.uint8)


def apply(effect: str, rgb: np.ndarray, **params) -> np.ndarray:
    """``effect`` with the given parameters (the others at their range's middle)."""
    full = {key.rstrip("+-"): (low + high) / 2 for key, (low, high) in cs.RANGES[effect].items()}
    out = cs._apply(effect, rgb, {**full, **params})
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    return out


# -- the effects ------------------------------------------------------------------------------------
def test_drawn_parameters_stay_in_their_documented_ranges_and_both_signs_occur():
    rng = np.random.default_rng(0)
    for effect, ranges in cs.RANGES.items():
        draws = [cs.draw(effect, rng) for _ in range(300)]
        for key, (low, high) in ranges.items():
            values = np.array([d[key.rstrip("+-")] for d in draws], dtype=float)
            magnitude = np.abs(values) if key.endswith("+-") else values
            assert low - 1e-3 <= magnitude.min() and magnitude.max() <= high + 1e-3, (effect, key)
            assert magnitude.max() - magnitude.min() > 0.5 * (high - low), (effect, key)  # the range is used
            if key.endswith("+-"):
                assert (values < 0).any() and (values > 0).any(), (effect, key)


def test_every_effect_keeps_dtype_and_channels_and_changes_a_photo():
    rgb = photo()
    for name, effect in cs.EFFECTS.items():
        out = effect(rgb, np.random.default_rng(3))
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, name
        same_size = cv2.resize(out, (rgb.shape[1], rgb.shape[0]))
        assert np.abs(same_size.astype(int) - rgb).mean() > 1.0, name
        if name not in ("off_centre", "tilt"):
            assert out.shape == rgb.shape, name


def test_low_light_darkens_by_its_exposure_in_linear_light():
    for exposure in (0.15, 0.5):
        out = apply("low_light", grey(128), exposure=exposure, shot_noise=0.002)
        ratio = cs.to_linear(out).mean() / cs.to_linear(grey(128)).mean()
        assert ratio == pytest.approx(exposure, rel=0.08)


@pytest.mark.parametrize("shot,read,low,high", [(0.001, 0.002, 3.0, 5.0), (0.006, 0.006, 8.5, 11.0)])
def test_sensor_noise_is_4_to_10_dn_at_mid_grey(shot, read, low, high):
    out = apply("sensor_noise", grey(128), shot_noise=shot, read_noise=read)
    assert low < out.astype(float).std() < high
    assert abs(out.astype(float).mean() - 128) < 1.0


def test_colour_cast_shifts_white_balance_the_documented_way():
    white = grey(180)
    bluer = apply("colour_cast", white, scene_kelvin=5000.0, mired_error=40.0)  # balanced for ~4170 K
    warmer = apply("colour_cast", white, scene_kelvin=5000.0, mired_error=-40.0)  # balanced for ~6250 K
    assert bluer[..., 2].mean() > bluer[..., 0].mean() + 10
    assert warmer[..., 0].mean() > warmer[..., 2].mean() + 10
    assert np.all(bluer[..., 1] == 180)  # gains are relative to green, as a camera's are
    daylight = cs.white_point(6500)
    assert np.allclose(daylight, 1.0, atol=0.07)  # the Planckian locus at 6500 K is near sRGB white


def test_jpeg_is_one_encode_at_its_quality_and_lower_quality_loses_more():
    rgb = photo()
    for quality in (15, 40):
        assert np.array_equal(apply("jpeg", rgb, quality=quality), cs.decode_jpeg(cs.encode_jpeg(rgb, quality)))
    error = {q: np.abs(apply("jpeg", rgb, quality=q).astype(int) - rgb).mean() for q in (15, 40)}
    assert error[15] > error[40] > 0.5


def test_defocus_keeps_flat_areas_and_spreads_an_edge_by_its_radius():
    assert np.abs(apply("defocus", grey(90), radius=0.012).astype(int) - 90).max() <= 1
    edge = grey(0, (200, 200))
    edge[:, 100:] = 255
    out = apply("defocus", edge, radius=0.02)  # 4 px
    row = out[100, :, 0].astype(int)
    spread = np.flatnonzero((row > 5) & (row < 250))
    assert 6 <= len(spread) <= 10 and 95 <= spread.mean() <= 105


def test_motion_blur_turns_a_point_into_a_streak_of_its_length_and_angle():
    dot = grey(0, (200, 200))
    dot[100, 100] = 255
    out = apply("motion_blur", dot, length=0.06, angle_deg=0.0)  # 12 px, horizontal
    lit = np.argwhere(out[..., 0] > 0)
    assert 10 <= np.ptp(lit[:, 1]) <= 14 and np.ptp(lit[:, 0]) <= 2
    out = apply("motion_blur", dot, length=0.06, angle_deg=90.0)
    lit = np.argwhere(out[..., 0] > 0)
    assert 10 <= np.ptp(lit[:, 0]) <= 14 and np.ptp(lit[:, 1]) <= 2


def test_low_resolution_removes_fine_detail_and_keeps_the_size():
    rgb = photo()

    def detail(image: np.ndarray) -> float:  # energy of the finest scale
        return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F).var())

    sharp, coarse = (apply("low_resolution", rgb, short_side_px=px) for px in (160, 80))
    assert sharp.shape == coarse.shape == rgb.shape
    assert detail(coarse) < detail(sharp) < 0.5 * detail(rgb)


def test_off_centre_is_a_crop_of_the_photo_pushed_towards_an_edge():
    rgb = photo()
    h, w = rgb.shape[:2]
    out = apply("off_centre", rgb, crop=0.7, offset=1.0, direction_deg=0.0)  # pushed fully right
    assert out.shape[:2] == (round(h * 0.7), round(w * 0.7))
    top = round((h - out.shape[0]) / 2)
    assert np.array_equal(out, rgb[top: top + out.shape[0], w - out.shape[1]:])


def test_tilt_rolls_the_picture_by_its_angle_without_invented_borders():
    canvas = grey(40, (300, 400))
    cv2.line(canvas, (20, 150), (380, 150), (255, 255, 255), 3)
    for roll in (-15.0, 5.0):
        out = apply("tilt", canvas, roll_deg=roll, pitch_deg=0.0)
        ys, xs = np.nonzero(out[..., 0] > 150)
        slope = np.polyfit(xs, ys, 1)[0]
        assert abs(abs(math.degrees(math.atan(slope))) - abs(roll)) < 1.0
        assert out.shape[1] / out.shape[0] == pytest.approx(400 / 300, rel=0.02)
        assert out.shape[0] < 300  # cropped to the area the tilted view covers
        assert out[..., 0].min() >= 35  # no black corners
    out = apply("tilt", canvas, roll_deg=0.0, pitch_deg=10.0)  # keystone: not a plain crop
    assert out.shape[0] < 300 and out.shape[1] < 400


def test_each_photo_gets_two_or_three_distinct_effects_in_camera_order():
    counts = set()
    for seed in range(60):
        steps = cs.choose(cs.image_rng(seed, "ab" * 32))
        names = [name for name, _ in steps]
        counts.add(len(names))
        assert len(set(names)) == len(names) and names == sorted(names, key=cs.ORDER.index)
    assert counts == {2, 3}


# -- the set --------------------------------------------------------------------------------------
def shift(*args: str):
    return CliRunner().invoke(cli, ["datasets", "shift", *map(str, args), "-q"])


@pytest.fixture
def mini(tmp_path) -> Path:
    """A copy of flowers-mini (3 labels x 10 photos) plus a corrupt photo and a text file."""
    src = tmp_path / "src"
    shutil.copytree(need(FLOWERS_MINI), src)
    (src / "daisy" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / "roses" / "notes.txt").write_text("not a photo")
    return src


def test_shift_writes_every_readable_photo_once_and_reproducibly(mini, tmp_path):
    result = shift(mini, tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "a")
    assert "camera shift: 30 images in 3 labels (daisy 10, roses 10, tulips 10)" in result.stderr
    assert "daisy/broken.jpg: " in result.stderr and "notes.txt: not an image file (.txt)" in result.stderr
    written = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.jpg"))
    source = sorted(p.relative_to(mini).as_posix() for p in mini.glob("*/*.jpg") if p.name != "broken.jpg")
    assert written == source
    manifest = json.loads((tmp_path / "a" / "camera_shift.json").read_text())
    assert (manifest["seed"], manifest["version"], len(manifest["images"])) == (0, cs.VERSION, 30)
    assert {s["path"].rsplit("/", 1)[1] for s in manifest["skipped"]} >= {"broken.jpg", "notes.txt"}

    assert shift(mini, tmp_path / "b").exit_code == 0
    assert shift(mini, tmp_path / "c", "--seed", "1").exit_code == 0
    for name in written + ["camera_shift.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    differ = [n for n in written if (tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes()]
    assert len(differ) >= 25


def test_the_manifest_alone_recreates_every_file(mini, tmp_path):
    assert shift(mini, tmp_path / "s").exit_code == 0
    manifest = json.loads((tmp_path / "s" / "camera_shift.json").read_text())
    for name, record in list(manifest["images"].items())[:12]:
        rgb, quality = load_rgb(mini / record["source"]), cs.SAVE_QUALITY
        for step in record["effects"]:
            params = {k: v for k, v in step.items() if k != "effect"}
            assert set(params) == {k.rstrip("+-") for k in cs.RANGES[step["effect"]]}
            if step["effect"] == "jpeg":
                quality = params["quality"]
            else:
                rgb = cs._apply(step["effect"], rgb, params)
        assert cs.encode_jpeg(rgb, quality) == (tmp_path / "s" / name).read_bytes(), name


def test_shift_refuses_what_it_should_in_one_line(mini, tmp_path):
    cases = [
        ((tmp_path / "missing", tmp_path / "x"), f"Error: {tmp_path / 'missing'}: source folder not found"),
        ((mini, mini / "shifted"), f"Error: {mini / 'shifted'}: is inside the source folder {mini}"),
        ((tmp_path, tmp_path / "y"), f"Error: {tmp_path}: holds train/"),
    ]
    (tmp_path / "train").mkdir()
    (tmp_path / "empty" / "label").mkdir(parents=True)
    cases.append(((tmp_path / "empty", tmp_path / "z"), f"Error: {tmp_path / 'empty'}: no images in label folders"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    cases.append(((mini, tmp_path / "other", "--force"), f"Error: {tmp_path / 'other'}: exists and is not a camera-shift set"))
    for args, message in cases:
        result = shift(*args)
        assert result.exit_code == 1 and result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    assert not (mini / "shifted").exists()


def test_a_previous_set_is_replaced_only_with_force(mini, tmp_path):
    dst = tmp_path / "s"
    assert shift(mini, dst).exit_code == 0
    result = shift(mini, dst, "--seed", "2")
    assert result.exit_code == 1 and "already holds a camera-shift set; pass --force" in result.stderr
    assert json.loads((dst / "camera_shift.json").read_text())["seed"] == 0
    assert shift(mini, dst, "--seed", "2", "--force").exit_code == 0
    assert json.loads((dst / "camera_shift.json").read_text())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_evaluate_scores_a_shift_set_like_any_folder(mini, tmp_path):
    assert shift(mini, tmp_path / "s").exit_code == 0
    result = CliRunner().invoke(cli, ["evaluate", str(FLOWERS3_MODEL), str(tmp_path / "s"), "--out",
                                      str(tmp_path / "eval"), "-q"])
    assert result.exit_code == 0, result.output
    assert "on 30 images" in result.stdout
    assert len((tmp_path / "eval" / "predictions.csv").read_text().splitlines()) == 31


# -- data.extra_tests -------------------------------------------------------------------------------
def test_extra_tests_config_override_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_finetune_config(None, ["data.extra_tests.camera_shift=shifted", "data.extra_tests.more=~/x"])
    assert cfg.data.extra_tests == {"camera_shift": tmp_path / "shifted", "more": Path.home() / "x"}
    assert load_finetune_config(None, ["data.extra_tests={a: /x, b: y}"]).data.extra_tests == {
        "a": Path("/x"), "b": tmp_path / "y"}
    for name in ("test", "a b", "-x", "a/b"):
        with pytest.raises(ConfigError, match=f"command line: data.extra_tests.{name}: must be a plain name"):
            load_finetune_config(None, [f"data.extra_tests.{name}=x"])
    with pytest.raises(ConfigError, match="data.extra_tests.a: expected a path"):
        load_finetune_config(None, ["data.extra_tests.a="])


def test_extra_tests_match_labels_by_name_and_refuse_unknown_ones(mini, tmp_path):
    labels = ("daisy", "roses", "tulips")
    (found,) = scan_extra_tests(DataConfig(path=mini, extra_tests={"mini": mini}), labels, progress=False)
    assert (found.name, len(found.dataset.samples), found.dataset.labels) == ("mini", 30, labels)
    assert found.describe()["counts"] == {"daisy": 10, "roses": 10, "tulips": 10}
    renamed = DataConfig(path=mini, labels={"flower": ("daisy",), "roses": ("roses",), "tulips": ("tulips",)},
                         extra_tests={"mini": mini})
    (found,) = scan_extra_tests(renamed, ("flower", "roses", "tulips"), progress=False)
    assert found.dataset.labels == ("flower", "roses", "tulips")  # folder daisy holds label flower
    with pytest.raises(DataError, match=r"data.extra_tests.mini: .*'tulips' is not a label of this model"):
        scan_extra_tests(DataConfig(path=mini, extra_tests={"mini": mini}), ("daisy", "roses"), progress=False)
    with pytest.raises(DataError, match=f"data.extra_tests.gone: {tmp_path / 'gone'}: folder not found"):
        scan_extra_tests(DataConfig(path=mini, extra_tests={"gone": tmp_path / "gone"}), labels, progress=False)


@pytest.mark.slow
def test_finetune_reports_accuracy_on_an_extra_test(mini, tmp_path):
    need(V1_WEIGHTS)
    from edgecam.training.finetune import finetune

    assert shift(mini, tmp_path / "shifted").exit_code == 0
    cfg = load_finetune_config(None, [
        f"data.path={mini}", f"model.weights={WEIGHTS}", f"output={tmp_path / 'runs'}", f"cache={tmp_path / 'cache'}",
        "name=t", "model.backbone=mobilenet_v1", "model.alpha=0.25", "train.epochs=5", "train.augment.views=0",
        f"data.extra_tests.camera_shift={tmp_path / 'shifted'}"])
    result = finetune(cfg, progress=False)
    report = json.loads((result.run_dir / "report.json").read_text())
    extra = report["metrics"]["tflite"]["camera_shift"]
    assert extra["images"] == 30 and 0.0 <= extra["accuracy"] <= 1.0
    assert report["data"]["extra_tests"]["camera_shift"]["counts"] == {"daisy": 10, "roses": 10, "tulips": 10}
    assert set(report["metrics"]["tflite"]) == {"val", "camera_shift"}
    assert report["unknown"] is None or report["unknown"]["known_split"] == "val"  # from val, not the extra test
    text = (result.run_dir / "report.md").read_text()
    assert f"| camera_shift (extra test) | 30 | — | {extra['accuracy']:.1%} |" in text
    assert (result.run_dir / "confusion_matrix_camera_shift.png").stat().st_size > 0
    assert (result.run_dir / "misclassified_camera_shift.csv").exists()
