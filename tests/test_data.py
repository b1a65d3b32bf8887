"""Data ingest: decoding awkward images, scanning folders, de-duplication and the hash split."""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FLOWERS_MINI, need
from edgecam.config.finetune import DataConfig
from edgecam.data import images
from edgecam.data.dataset import Dataset, scan_dataset
from edgecam.files import IMAGE_SUFFIXES
from edgecam.data.images import ImageDecodeError, decode_rgb, digest, load_rgb
from edgecam.data.split import carve_val, split_score
from edgecam.errors import DataError

ABC = ("a", "b", "c")


def encode(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def tiny_image(seed: int) -> bytes:
    """A distinct small image: cheap to make by the hundred for split statistics."""
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "BMP")  # uncompressed: same bytes with any Pillow


def make_tree(root: Path, per_label: dict[str, range]) -> dict[str, Path]:
    """label -> folder, each holding one tiny BMP per seed; returns digest -> path."""
    paths = {}
    for label, seeds in per_label.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            data = tiny_image(seed)
            path = root / label / f"img{seed:04d}.bmp"
            path.write_bytes(data)
            paths[digest(data)] = path
    return paths


def scan(root: Path, labels=(), val_fraction: float = 0.2) -> Dataset:
    return scan_dataset(DataConfig(path=root, labels=labels, val_fraction=val_fraction), progress=False)


def splits_by_digest(ds: Dataset) -> dict[str, str]:
    return {s.digest: s.split for s in ds.samples}


def data_error(root: Path, labels=()) -> str:
    with pytest.raises(DataError) as caught:
        scan(root, labels)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- images -----------------------------------------------------------------------------


def test_every_image_suffix_in_any_case_is_scanned_and_others_are_not(tmp_path):
    formats = {"a.JPG": "JPEG", "b.jpeg": "JPEG", "c.Png": "PNG", "d.bmp": "BMP", "e.WebP": "WEBP",
               "f.gif": "GIF", "g.tiff": "TIFF"}
    for label in ("x", "y"):
        for i, (name, fmt) in enumerate(formats.items()):
            (tmp_path / label).mkdir(exist_ok=True)
            (tmp_path / label / name).write_bytes(encode(Image.new("RGB", (8, 8), (i * 30, 0, 0 if label == "x" else 99)), fmt))
    ds = scan(tmp_path, ("x", "y"))
    found = sorted(s.path.name for s in ds.samples if s.path.parent.name == "x")
    assert found == sorted(n for n in formats if n.lower().endswith(IMAGE_SUFFIXES))
    assert len(found) == 5
    sample = ds.samples[0]
    assert sample.digest == hashlib.sha256(sample.path.read_bytes()).hexdigest() == digest(sample.path.read_bytes())


@pytest.mark.parametrize(
    ("name", "reason"),
    [("empty", "empty file (0 bytes)"), ("truncated", "truncated image"), ("text_as_jpg", "not an image (cannot identify image file)")],
)
def test_broken_files_raise_with_a_reason(bad_data_tree, name, reason):
    path = bad_data_tree.bad[name]
    with pytest.raises(ImageDecodeError) as caught:
        decode_rgb(path.read_bytes(), name=str(path))
    assert str(caught.value) == reason
    assert caught.value.name == str(path)


def test_load_rgb_reports_unreadable_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        load_rgb(tmp_path / "missing.jpg")


def test_load_rgb_decodes_a_real_photo(bad_data_tree):
    rgb = load_rgb(bad_data_tree.photos["a"][0])
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.writeable


def test_cmyk_jpeg_becomes_rgb_close_to_the_original(bad_data_tree):
    rgb = load_rgb(bad_data_tree.odd["cmyk"])
    original = np.asarray(bad_data_tree.photo)
    assert rgb.shape == original.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - original).mean() < 8  # JPEG loss only, no inverted colours


def test_16bit_png_is_scaled_not_saturated(bad_data_tree):
    assert Image.open(bad_data_tree.odd["gray16"]).mode in ("I;16", "I")
    rgb = load_rgb(bad_data_tree.odd["gray16"])
    assert rgb.shape == (50, 200, 3) and rgb.dtype == np.uint8
    row = rgb[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)
    assert abs(row[100] - 128) <= 2  # mid-grey stays mid-grey
    assert (rgb == rgb[:, :, :1]).all()  # grey in all three channels


def test_32bit_int_and_float_images_are_scaled():
    ramp = np.linspace(0, 1, 64)[None, :].repeat(4, 0)
    as_int = decode_rgb(encode(Image.fromarray((ramp * 65535).astype(np.int32)), "TIFF"))  # how Pillow < 10 opens 16-bit PNGs
    as_float = decode_rgb(encode(Image.fromarray(ramp.astype(np.float32)), "TIFF"))
    for rgb in (as_int, as_float):
        assert rgb.shape == (4, 64, 3) and rgb.dtype == np.uint8
        assert rgb.min() == 0 and rgb.max() == 255


def test_rgba_is_composited_on_white(bad_data_tree):
    rgb = load_rgb(bad_data_tree.odd["rgba"])
    original = np.asarray(bad_data_tree.photo)
    half = original.shape[1] // 2
    assert rgb.shape == original.shape and rgb.dtype == np.uint8
    assert (rgb[:, :half] == 255).all()
    assert (rgb[:, half:] == original[:, half:]).all()


def test_exif_orientation_is_applied(bad_data_tree):
    rgb = load_rgb(bad_data_tree.odd["rotated"])
    width, height = bad_data_tree.photo.size
    assert width != height
    assert rgb.shape == (width, height, 3)  # stored landscape, shown portrait
    plain = decode_rgb(encode(bad_data_tree.photo, "JPEG"))
    assert np.array_equal(rgb, np.rot90(plain, k=-1))  # orientation 6: rotate 90 degrees clockwise


@pytest.mark.parametrize(
    ("img", "pixel"),
    [
        (Image.new("L", (3, 2), 7), (7, 7, 7)),
        (Image.new("1", (3, 2), 1), (255, 255, 255)),
        (Image.new("LA", (3, 2), (9, 0)), (255, 255, 255)),
        (Image.new("RGB", (3, 2), (1, 2, 3)), (1, 2, 3)),
    ],
)
def test_simple_modes_become_rgb(img, pixel):
    rgb = decode_rgb(encode(img))
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == pixel


def test_palette_transparency_is_white():
    img = Image.new("P", (3, 2), 0)
    img.putpalette([255, 0, 0] * 256)
    img.putpixel((1, 0), 1)
    rgb = decode_rgb(encode(img, transparency=0))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 1]) == (255, 0, 0)


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_rgb(encode(Image.new("L", (20, 20))))


# --- scanning the awkward tree -------------------------------------------------------------


def test_scan_reports_every_bad_file(bad_data_tree):
    ds = scan(bad_data_tree.root, ABC)
    reasons = {s.path: s.reason for s in ds.skipped}
    bad = bad_data_tree.bad
    assert reasons[bad["empty"]] == "empty file (0 bytes)"
    assert reasons[bad["truncated"]] == "truncated image"
    assert reasons[bad["text_as_jpg"]] == "not an image (cannot identify image file)"
    assert reasons[bad["notes"]] == "not an image file (.txt)"
    assert set(reasons) == set(bad.values())  # .DS_Store and the root's LICENSE.txt are silent
    used = {s.path for s in ds.samples}
    assert set(bad_data_tree.odd.values()) <= used
    assert bad_data_tree.upper in used  # upper-case suffix, in a sub-folder
    assert not any(s.path.name.startswith(".") for s in ds.skipped + ds.samples)


def test_scan_reports_conflicts_and_duplicates(bad_data_tree):
    ds = scan(bad_data_tree.root, ABC)
    [conflict] = ds.conflicts
    assert set(conflict.paths) == set(bad_data_tree.conflict) and conflict.labels == ("a", "c")
    assert not {s.path for s in ds.samples} & set(bad_data_tree.conflict)
    [duplicate] = ds.duplicates
    digests = [s.digest for s in ds.samples]
    assert digests.count(duplicate.digest) == 1
    kept = next(s.path for s in ds.samples if s.digest == duplicate.digest)
    assert {kept, *duplicate.paths} == set(bad_data_tree.duplicate)
    assert len(digests) == len(set(digests))


def test_scan_summary_counts_and_ignored_folder(bad_data_tree):
    ds = scan(bad_data_tree.root, ABC)
    assert ds.labels == ABC and ds.given_splits == () and ds.root == bad_data_tree.root
    assert ds.ignored_folders == [bad_data_tree.root / "d"]
    assert "ignored folder 'd' (not in labels)" in ds.notices
    counts = ds.counts()
    # a: 3 photos + UPPER.JPG; b: 3 photos + cmyk + rgba (copy collapsed); c: 3 + gray16 + rotated
    assert {label: sum(row.values()) for label, row in counts.items()} == {"a": 4, "b": 5, "c": 5}
    assert all(row["train"] >= 1 and row["val"] >= 1 for row in counts.values())
    train, val = len(ds.split("train")), len(ds.split("val"))
    assert ds.summary_line() == f"14 images in 3 labels (train {train}, val {val}); 4 skipped, 1 duplicate, 1 conflict"
    with pytest.raises(ValueError):
        ds.split("holdout")


def test_empty_label_folder_fails_in_one_line(bad_data_tree):
    message = data_error(bad_data_tree.root)
    assert "label 'd'" in message and str(bad_data_tree.root / "d") in message


def test_label_with_only_broken_files_names_a_reason(bad_data_tree):
    (bad_data_tree.root / "d" / "x.jpg").write_bytes(b"")
    message = data_error(bad_data_tree.root)
    assert "label 'd'" in message and "1 skipped" in message and "empty file" in message


def test_progress_bar_goes_to_stderr(bad_data_tree, capsys):
    scan_dataset(DataConfig(path=bad_data_tree.root, labels=ABC), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "scanning" in captured.err and "img" in captured.err  # the bar, on stderr
    scan_dataset(DataConfig(path=bad_data_tree.root, labels=ABC), progress=False)
    assert capsys.readouterr().err == ""


# --- the split ------------------------------------------------------------------------------


def test_split_is_deterministic(bad_data_tree):
    first, second = scan(bad_data_tree.root, ABC), scan(bad_data_tree.root, ABC)
    assert first.samples == second.samples
    assert first.fingerprint() == second.fingerprint()


def test_split_is_stratified(tmp_path):
    make_tree(tmp_path, {"a": range(0, 150), "b": range(1000, 1100), "c": range(2000, 2060)})
    ds = scan(tmp_path, val_fraction=0.25)
    for label, row in ds.counts().items():
        fraction = row["val"] / (row["train"] + row["val"])
        assert 0.12 < fraction < 0.38, (label, row)
    overall = len(ds.split("val")) / len(ds.samples)
    assert 0.18 < overall < 0.32


def test_adding_images_does_not_move_existing_ones(tmp_path):
    make_tree(tmp_path, {"a": range(0, 40), "b": range(100, 140)})
    before = splits_by_digest(scan(tmp_path))
    make_tree(tmp_path, {"a": range(40, 80), "b": range(140, 200), "c": range(300, 320)})
    after = splits_by_digest(scan(tmp_path))
    assert len(after) == len(before) + 40 + 60 + 20
    assert {d: after[d] for d in before} == before


def test_split_ignores_file_names(bad_data_tree):
    before = scan(bad_data_tree.root, ABC)
    for label in ABC:
        for n, path in enumerate(bad_data_tree.photos[label]):
            path.rename(path.with_name(f"zz_renamed_{n}{path.suffix}"))
    after = scan(bad_data_tree.root, ABC)
    assert splits_by_digest(after) == splits_by_digest(before)
    assert after.fingerprint() == before.fingerprint()
    assert {s.path for s in after.samples} != {s.path for s in before.samples}


def test_carve_val_uses_the_hash_threshold_the_share_cap_and_tiny_label_fallback():
    digests = [hashlib.sha256(bytes([n])).hexdigest() for n in range(200)]
    below = sorted((d for d in digests if split_score(d) < 0.3), key=split_score)
    val = carve_val(digests, 0.3)
    assert val == set(below[:60])  # under the threshold, but never more than the label's share (0.3 x 200)
    assert len(below) > 60 and carve_val(digests, 0.4) >= val  # (chance put more under it here)
    # A new label of 4 frames whose scores put 3 under the threshold: one goes to val, not 3.
    four = sorted(digests, key=split_score)[:3] + sorted(digests, key=split_score)[-1:]
    assert carve_val(four, 0.2) == {four[0]}
    assert carve_val(digests[:1], 0.3) == set()  # a single image stays in train
    ranked = sorted(digests[:5], key=split_score)
    low, high = split_score(ranked[0]), split_score(ranked[-1])
    assert carve_val(ranked, low / 2) == {ranked[0]}  # none under the threshold: lowest goes to val
    assert carve_val(ranked, (high + 1) / 2) == set(ranked[:-1])  # all under it: highest stays in train


def test_fingerprint_changes_with_the_split(bad_data_tree):
    ds = scan(bad_data_tree.root, ABC)
    first = ds.samples[0]
    other = "val" if first.split == "train" else "train"
    moved = replace(ds, samples=[replace(first, split=other)] + ds.samples[1:])
    assert moved.fingerprint() != ds.fingerprint()


# --- layouts, label mapping and errors ------------------------------------------------------


def test_given_splits_are_used_as_given(tmp_path):
    make_tree(tmp_path / "train", {"a": range(0, 10), "b": range(10, 20)})
    make_tree(tmp_path / "val", {"a": range(20, 23), "b": range(23, 25)})
    make_tree(tmp_path / "test", {"a": range(30, 32), "b": range(32, 36)})
    (tmp_path / "README.txt").write_text("about this data")
    ds = scan(tmp_path)
    assert ds.given_splits == ("train", "val", "test")
    assert ds.counts() == {"a": {"train": 10, "val": 3, "test": 2}, "b": {"train": 10, "val": 2, "test": 4}}
    for sample in ds.samples:
        assert sample.path.relative_to(tmp_path).parts[0] == sample.split
    assert ds.summary_line().startswith("31 images in 2 labels (train 20, val 5, test 6)")


def test_val_is_carved_when_only_train_and_test_are_given(tmp_path):
    make_tree(tmp_path / "train", {"a": range(0, 30), "b": range(30, 60)})
    make_tree(tmp_path / "test", {"a": range(60, 64), "b": range(64, 68), "extra": range(70, 72)})
    ds = scan(tmp_path)
    assert ds.given_splits == ("train", "test")
    assert all(row["val"] >= 1 and row["test"] == 4 for row in ds.counts().values())
    assert all(s.path.relative_to(tmp_path).parts[0] == "train" for s in ds.samples if s.split == "val")
    assert ds.ignored_folders == [tmp_path / "test" / "extra"]
    assert "ignored folder 'test/extra' (not in labels)" in ds.notices


def test_copy_in_train_and_test_is_kept_in_train_only(tmp_path):
    make_tree(tmp_path / "train", {"a": range(0, 5), "b": range(5, 10)})
    make_tree(tmp_path / "test", {"a": range(4, 5), "b": range(10, 12)})  # seed 4 in both
    ds = scan(tmp_path)
    [duplicate] = ds.duplicates
    assert duplicate.paths == (tmp_path / "test" / "a" / "img0004.bmp",)
    assert any("kept in train only" in n for n in ds.notices)


def test_label_mapping_merges_and_renames_folders(bad_data_tree):
    ds = scan(bad_data_tree.root, {"flower": ("a", "b"), "tulip": ("c",)})
    assert ds.labels == ("flower", "tulip")
    by_label = {name: {s.path.relative_to(bad_data_tree.root).parts[0] for s in ds.samples if s.label == i}
                for i, name in enumerate(ds.labels)}
    assert by_label == {"flower": {"a", "b"}, "tulip": {"c"}}
    assert ds.conflicts and ds.conflicts[0].labels == ("flower", "tulip")


def test_every_folder_is_a_label_sorted_by_name(tmp_path):
    make_tree(tmp_path, {"zebra": range(0, 3), "apple": range(3, 6), "Mango": range(6, 9)})
    (tmp_path / ".git").mkdir()
    assert scan(tmp_path).labels == ("Mango", "apple", "zebra")


def test_missing_data_folder(tmp_path):
    message = data_error(tmp_path / "nowhere")
    assert message == f"{tmp_path / 'nowhere'}: data folder not found"


def test_missing_label_folder(bad_data_tree):
    message = data_error(bad_data_tree.root, ("a", "tulip"))
    assert "'tulip'" in message and str(bad_data_tree.root) in message


def test_missing_label_folder_in_train(tmp_path):
    make_tree(tmp_path / "train", {"a": range(0, 3), "b": range(3, 6)})
    message = data_error(tmp_path, {"x": ("a",), "y": ("c",)})
    assert "'c'" in message and str(tmp_path / "train") in message


def test_fewer_than_two_labels(bad_data_tree):
    assert data_error(bad_data_tree.root, ("a",)) == f"{bad_data_tree.root}: need at least two labels, found 1 ('a')"


def test_one_folder_for_two_labels_is_an_error(bad_data_tree):
    assert "used by two labels" in data_error(bad_data_tree.root, {"x": ("a",), "y": ("a", "b")})


def test_linked_folders_are_followed_once(tmp_path):
    make_tree(tmp_path / "photos", {"a": range(0, 3), "b": range(3, 6)})
    (tmp_path / "data").mkdir()
    for label in ("a", "b"):
        (tmp_path / "data" / label).symlink_to(tmp_path / "photos" / label)
    (tmp_path / "photos" / "a" / "loop").symlink_to(tmp_path / "photos" / "a")
    ds = scan(tmp_path / "data")
    assert len(ds.samples) == 6 and not ds.duplicates


def test_scan_index_skips_unchanged_files_and_rechecks_changed_ones(tmp_path, monkeypatch):
    import edgecam.data.dataset as dataset_module

    root = tmp_path / "data"
    for label in ("daisy", "roses"):
        (root / label).mkdir(parents=True)
        for photo in sorted(need(FLOWERS_MINI / label).glob("*.jpg"))[:3]:
            shutil.copy(photo, root / label / photo.name)
    index = tmp_path / "index.json"
    first = scan_dataset(DataConfig(path=root), progress=False, index_path=index)

    calls = []
    real = dataset_module._check_file
    monkeypatch.setattr(dataset_module, "_check_file", lambda path: calls.append(path) or real(path))
    again = scan_dataset(DataConfig(path=root), progress=False, index_path=index)
    assert calls == [] and again.samples == first.samples

    victim = sorted((root / "roses").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # now truncated: must be checked again
    third = scan_dataset(DataConfig(path=root), progress=False, index_path=index)
    assert calls == [victim]
    assert [s.path for s in third.skipped] == [victim]
