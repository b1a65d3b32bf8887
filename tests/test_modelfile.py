"""edgecam.modelfile: standard TFLite metadata, and the preprocessing rule a model states.

The fast tests work on the committed tiny models (tests/data, uint8 RGB in, 32x32, three
classes): with their metadata stripped they stand for what the converter writes (float with a
uint8 input, and full-integer int8). The metadata is checked by our own reader, LiteRT's
interpreter, MediaPipe's generated schema reader, and read again in a subprocess that cannot
import TensorFlow. Tests that need TensorFlow (a model fresh from the converter, MediaPipe
Tasks, which imports TensorFlow) are marked slow.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import COLORS_INT8_MODEL, COLORS_MODEL, FLOWERS3_MODEL, FLOWERS_MINI, need
from edgecam.cli import cli
from edgecam.errors import ModelError
from edgecam.modelfile._flatbuf import pack_tree
from edgecam.modelfile.metadata import ModelInfo, embed_metadata, read_labels_file, read_metadata
from edgecam.modelfile.preprocess import FITS, PREPROCESSING, Preprocessing, fit_to_input
from edgecam.runtime.classifier import Classifier

LABELS = ("daisy", "roses", "tulips")
REPO = Path(__file__).resolve().parents[1]
INFO = ModelInfo(
    name="flowers-tiny",
    description="Three flowers, for tests.",
    version="0.3.1",
    author="edgecam tests",
    license="Apache-2.0",
    labels=LABELS,
    mean=(0.0,),
    std=(1.0,),
    input_min=0.0,
    input_max=255.0,
    extra={"backbone": "tiny-conv", "input_size": [32, 32], "metrics": {"val_accuracy": 0.875}},
)


def strip_metadata(model: bytes) -> bytes:
    """``model`` without its TFLITE_METADATA entry, buffer and zip: as the converter wrote it."""
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    ours = [m for m in tree.metadata if m.name == b"TFLITE_METADATA"]
    assert len(ours) == 1 and ours[0].buffer == len(tree.buffers) - 1, "expected the entry embed_metadata appends"
    tree.metadata = [m for m in tree.metadata if m is not ours[0]]
    tree.buffers = tree.buffers[:-1]
    return pack_tree(tree)


@pytest.fixture(scope="module")
def models() -> types.SimpleNamespace:
    """``plain``/``int8``: .tflite bytes (uint8 [1,32,32,3] in, 3 classes), no metadata; from tests/data."""
    return types.SimpleNamespace(plain=strip_metadata(COLORS_MODEL.read_bytes()),
                                 int8=strip_metadata(COLORS_INT8_MODEL.read_bytes()))


@pytest.fixture(scope="module")
def converted() -> types.SimpleNamespace:
    """Like ``models``, but a Keras classifier fresh from TensorFlow's converter (slow tests only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.uint8)])
    def serve(image):
        return model(tf.cast(image, tf.float32))

    # The converter must see the variables through its trackable object: given the Keras 3
    # model itself it keeps them as uninitialised resource variables (the model outputs NaN).
    owner = tf.Module()
    owner.variables_ = [v.value for v in model.variables]

    def converter():
        return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], owner)

    plain = converter().convert()
    quant = converter()
    quant.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    quant.representative_dataset = lambda: ([rng.integers(0, 256, (1, 32, 32, 3), np.uint8)] for _ in range(8))
    quant.inference_input_type = tf.uint8
    quant.inference_output_type = tf.uint8
    return types.SimpleNamespace(plain=plain, int8=quant.convert())


def run_litert(model: bytes, image: np.ndarray, dequantise: bool = False) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    raw = interpreter.get_tensor(output["index"])[0]
    scale, zero = output["quantization"]
    return (raw.astype(np.float32) - zero) * scale if dequantise and scale else raw


def model_tree(model: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(model, 0)


def entry_names(model: bytes) -> list[str]:
    return [m.name.decode() for m in model_tree(model).metadata]


def flatbuffer_part(model: bytes) -> bytes:
    """The model without its appended zip."""
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        return model[: min(i.header_offset for i in archive.infolist())]


# -- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "int8"])
def test_round_trip(models, kind):
    model = embed_metadata(getattr(models, kind), INFO)
    assert model[4:8] == b"TFL3"
    info = read_metadata(model)
    assert info == INFO
    assert info.labels == LABELS and info.mean == (0.0,) and info.std == (1.0,)
    assert (info.input_min, info.input_max) == (0.0, 255.0)
    assert info.extra["metrics"] == {"val_accuracy": 0.875}


def test_floats_round_to_float32_and_compare_equal(models):
    info = ModelInfo(labels=LABELS, mean=(0.1, 0.2, 0.3), std=(58.4, 57.1, 57.4), input_min=-1.1, input_max=1.1)
    assert read_metadata(embed_metadata(models.plain, info)) == info
    assert info.mean[0] != 0.1 and abs(info.mean[0] - 0.1) < 1e-8


def test_associated_files_are_a_stored_zip(models):
    model = embed_metadata(models.plain, INFO)
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        assert archive.namelist() == ["labels.txt", "edgecam.json"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
        assert archive.read("labels.txt") == b"daisy\nroses\ntulips\n"
    bare = embed_metadata(models.plain, ModelInfo(labels=LABELS))
    with zipfile.ZipFile(io.BytesIO(bare)) as archive:
        assert archive.namelist() == ["labels.txt"]
    assert read_metadata(bare).extra == {}


def mediapipe_schema() -> types.ModuleType:
    """MediaPipe's generated metadata reader, loaded from its file: ``import mediapipe`` would load TensorFlow."""
    spec = importlib.util.find_spec("mediapipe")  # finds the package without running it
    if spec is None or not spec.origin:
        pytest.skip("mediapipe is not installed")
    path = Path(spec.origin).parent / "tasks" / "metadata" / "metadata_schema_py_generated.py"
    if not path.is_file():
        pytest.skip(f"{path} not found in this mediapipe")
    loader = importlib.util.spec_from_file_location("mediapipe_metadata_schema", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_metadata_fields_as_mediapipe_schema_reads_them(models):
    """Cross-check field ids with MediaPipe's own generated reader (not our hand-written one)."""
    fb = mediapipe_schema()
    model = embed_metadata(models.plain, INFO)
    tree = model_tree(model)
    entry = next(m for m in tree.metadata if m.name == b"TFLITE_METADATA")
    data = bytes(tree.buffers[entry.buffer].data)
    assert fb.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    meta = fb.ModelMetadata.GetRootAs(data, 0)
    assert meta.Name() == b"flowers-tiny" and meta.Version() == b"0.3.1" and meta.License() == b"Apache-2.0"
    assert meta.MinParserVersion() == b"1.0.0"
    assert meta.AssociatedFiles(0).Name() == b"edgecam.json"
    graph = meta.SubgraphMetadata(0)
    image, probability = graph.InputTensorMetadata(0), graph.OutputTensorMetadata(0)
    assert image.Name() == b"image" and probability.Name() == b"probability"
    assert image.Content().ContentPropertiesType() == fb.ContentProperties.ImageProperties
    props = fb.ImageProperties()
    props.Init(image.Content().ContentProperties().Bytes, image.Content().ContentProperties().Pos)
    assert props.ColorSpace() == fb.ColorSpaceType.RGB
    assert (props.DefaultSize().Width(), props.DefaultSize().Height()) == (32, 32)
    unit = image.ProcessUnits(0)
    assert unit.OptionsType() == fb.ProcessUnitOptions.NormalizationOptions
    norm = fb.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    assert (list(norm.MeanAsNumpy()), list(norm.StdAsNumpy())) == ([0.0], [1.0])
    assert (image.Stats().Min(0), image.Stats().Max(0)) == (0.0, 255.0)
    assert probability.Content().ContentPropertiesType() == fb.ContentProperties.FeatureProperties
    labels = probability.AssociatedFiles(0)
    assert (labels.Name(), labels.Type()) == (b"labels.txt", fb.AssociatedFileType.TENSOR_AXIS_LABELS)


def test_reembedding_replaces_the_entry(models):
    original = model_tree(models.plain)
    once = embed_metadata(models.plain, INFO)
    changed = ModelInfo(name="renamed", labels=("a", "b", "c"), mean=(127.5,), std=(127.5,))
    twice = embed_metadata(once, changed)
    assert read_metadata(twice) == changed
    assert embed_metadata(once, INFO) == once  # deterministic, and idempotent
    names = entry_names(twice)
    assert names.count("TFLITE_METADATA") == 1
    assert names == [m.name.decode() for m in original.metadata] + ["TFLITE_METADATA"]
    assert "min_runtime_version" in names
    tree = model_tree(twice)
    assert len(tree.buffers) == len(original.buffers) + 1  # the metadata buffer was reused
    assert tree.buffers[0].data is None or len(tree.buffers[0].data) == 0  # empty sentinel kept


def test_buffers_stay_16_byte_aligned(models):
    from ai_edge_litert import schema_py_generated as schema

    model = embed_metadata(models.int8, INFO)
    tree = schema.Model.GetRootAs(model, 0)
    starts = [tree.Buffers(i)._tab.Vector(4) for i in range(tree.BuffersLength()) if tree.Buffers(i).DataLength()]
    assert starts and all(start % 16 == 0 for start in starts)


@pytest.mark.parametrize("kind", ["plain", "int8"])
def test_model_still_runs_with_identical_outputs(models, kind):
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    original = getattr(models, kind)
    expected = run_litert(original, image)
    np.testing.assert_array_equal(run_litert(embed_metadata(original, INFO), image), expected)
    assert expected.dtype == (np.uint8 if kind == "int8" else np.float32)


def test_model_without_metadata_reads_as_none(models):
    assert read_metadata(models.plain) is None
    assert read_metadata(models.int8) is None
    assert read_metadata(COLORS_MODEL.read_bytes()).labels == ("red", "green", "blue")  # before stripping


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "int8"])
def test_models_fresh_from_the_converter(converted, kind):
    """The same contract on what TensorFlow's converter writes today (the fixtures were converted once)."""
    original = getattr(converted, kind)
    model = embed_metadata(original, INFO)
    assert read_metadata(original) is None and read_metadata(model) == INFO
    assert entry_names(model)[-1] == "TFLITE_METADATA" and entry_names(model)[:-1] == entry_names(original)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    np.testing.assert_array_equal(run_litert(model, image), run_litert(original, image))
    stripped = strip_metadata(model)
    assert read_metadata(stripped) is None and entry_names(stripped) == entry_names(original)
    np.testing.assert_array_equal(run_litert(stripped, image), run_litert(original, image))


def test_labels_come_from_the_file_the_metadata_names(models, monkeypatch):
    from edgecam.modelfile import metadata

    monkeypatch.setattr(metadata, "LABELS_FILE", "classes.txt")
    model = embed_metadata(models.plain, INFO)
    monkeypatch.undo()
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        assert "labels.txt" not in archive.namelist()
    assert read_metadata(model).labels == LABELS


def test_embedding_into_a_9mb_model_is_quick(models):
    """The object API copes with a MobileNet-sized model (~0.1 s here; bound kept loose for CI)."""
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    tree = model_tree(models.plain)
    tree.buffers.append(schema.BufferT(data=np.random.default_rng(0).integers(0, 256, 9_000_000, np.uint8)))
    builder = flatbuffers.Builder(10_000_000)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    big = bytes(builder.Output())
    start = time.perf_counter()
    model = embed_metadata(big, INFO)
    elapsed = time.perf_counter() - start
    assert read_metadata(model) == INFO
    assert len(model) > 9_000_000
    assert elapsed < 3.0, f"embed_metadata took {elapsed:.2f} s for a 9 MB model"


# -- no TensorFlow on the edge ---------------------------------------------------------------

BLOCK_TENSORFLOW = """
import sys

class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError("blocked for this test: " + name)
        return None

sys.meta_path.insert(0, BlockTensorFlow())
from pathlib import Path
from edgecam.modelfile.metadata import read_metadata

info = read_metadata(Path(sys.argv[1]).read_bytes())
try:
    import tensorflow
except ImportError:
    pass
else:
    raise SystemExit("the import blocker does not work")
print(",".join(info.labels), info.extra["backbone"], sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


def test_read_metadata_without_tensorflow(models, tmp_path):
    path = tmp_path / "flowers.tflite"
    path.write_bytes(embed_metadata(models.int8, INFO))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TENSORFLOW, str(path)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "daisy,roses,tulips tiny-conv []"


# -- a real consumer: MediaPipe Tasks --------------------------------------------------------


@pytest.fixture(scope="module")
def daisy_png(tmp_path_factory) -> Path:
    """A real daisy photo, resized to the model's 32x32 input (so MediaPipe does not resample)."""
    from PIL import Image

    photos = sorted(need(FLOWERS_MINI / "daisy").glob("*.jpg"))
    path = tmp_path_factory.mktemp("photo") / "daisy.png"
    Image.open(photos[0]).convert("RGB").resize((32, 32), Image.BILINEAR).save(path)
    return path


@pytest.mark.slow  # importing mediapipe imports TensorFlow
@pytest.mark.parametrize("kind", ["plain", "int8"])
def test_mediapipe_image_classifier_uses_our_labels(models, daisy_png, tmp_path, kind):
    mp = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from PIL import Image

    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(embed_metadata(getattr(models, kind), INFO))
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=3)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(mp.Image.create_from_file(str(daisy_png)))
    categories = result.classifications[0].categories
    assert {c.category_name for c in categories} == set(LABELS)
    assert all(c.category_name == LABELS[c.index] for c in categories)
    # MediaPipe fed the raw uint8 pixels (identity normalisation) and dequantised the int8 output.
    expected = run_litert(getattr(models, kind), np.asarray(Image.open(daisy_png)), dequantise=True)
    scores = np.array([next(c.score for c in categories if c.index == i) for i in range(3)])
    np.testing.assert_allclose(scores, expected, atol=1e-5)


# -- malformed input -------------------------------------------------------------------------


def assert_model_error(call, *args, match: str | None = None) -> str:
    with pytest.raises(ModelError) as caught:
        call(*args)
    message = str(caught.value)
    assert message and "\n" not in message
    if match:
        assert match in message, message
    return message


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "too short"),
        (b"not a model at all", "identifier"),
        (b"\x10\x00\x00\x00TFL3" + bytes(8), "outside"),
        (b"\xff\xff\xff\x7fTFL3" + bytes(64), "outside"),
    ],
    ids=["empty", "text", "zeros", "root-out-of-range"],
)
def test_garbage_raises_model_error(data, match):
    assert_model_error(read_metadata, data, match=match)
    assert_model_error(embed_metadata, data, INFO)


def test_wrong_identifier_raises_model_error(models):
    model = embed_metadata(models.plain, INFO)
    assert_model_error(read_metadata, model[:4] + b"ABCD" + model[8:], match="'TFL3'")
    at = model.index(b"M001")
    assert_model_error(read_metadata, model[:at] + b"M002" + model[at + 4 :], match="'M001'")


def test_truncated_models_raise_model_error(models):
    model = embed_metadata(models.plain, INFO)
    flatbuffer = len(flatbuffer_part(model))
    for cut in range(0, len(model), 7):
        assert_model_error(read_metadata, model[:cut])
    for cut in range(0, flatbuffer, 7):
        assert_model_error(embed_metadata, model[:cut], INFO)


def test_missing_associated_file_raises_model_error(models):
    model = flatbuffer_part(embed_metadata(models.plain, INFO))
    assert_model_error(read_metadata, model, match="labels.txt")


def test_corrupted_bytes_never_escape_as_other_errors(models):
    model = embed_metadata(models.plain, INFO)
    rng = np.random.default_rng(2)
    for _ in range(300):
        corrupt = bytearray(model)
        for at in rng.integers(0, len(model), rng.integers(1, 6)):
            corrupt[at] = rng.integers(0, 256)
        for call in (read_metadata, lambda m: embed_metadata(m, INFO)):
            try:
                call(bytes(corrupt))
            except ModelError as exc:
                assert "\n" not in str(exc)


@pytest.mark.parametrize(
    "info, match",
    [
        (ModelInfo(labels=("daisy", "roses")), "2 labels, but the model outputs 3 classes"),
        (ModelInfo(labels=("daisy", "roses", "")), "empty"),
        (ModelInfo(labels=("daisy", "roses", "tu\nlips")), "line break"),
        (ModelInfo(labels=LABELS, mean=(0.0, 0.0), std=(1.0, 1.0)), "1 or 3"),
        (ModelInfo(labels=LABELS, std=(0.0,)), "non-zero"),
        (ModelInfo(labels=LABELS, extra={"loss": float("nan")}), "JSON"),
    ],
    ids=["count", "empty-label", "newline", "two-means", "zero-std", "nan-json"],
)
def test_bad_model_info_raises_model_error(models, info, match):
    assert_model_error(embed_metadata, models.plain, info, match=match)


# -- labels files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("daisy\nroses\ntulips\n", LABELS),
        ("\ufeff  daisy \r\n\r\nroses\n\ntulips", LABELS),
        ("0 daisy\n1 roses\n2 tulips\n", LABELS),
        ("0  daisy\n1\troses\n2  tulips\n", LABELS),
        ("0: daisy\n1:roses\n2: tulips\n", LABELS),
        ("0 background\n1 red fox\n", ("background", "red fox")),
        ("1 euro\n2 euro\n", ("1 euro", "2 euro")),  # not numbered from 0: taken literally
        ("0 daisy\nroses\n2 tulips\n", ("0 daisy", "roses", "2 tulips")),  # not every line
        ("7up\n0 calories\n", ("7up", "0 calories")),
    ],
)
def test_read_labels_file(tmp_path, text, expected):
    path = tmp_path / "labels.txt"
    path.write_text(text, encoding="utf-8")
    assert read_labels_file(path) == expected


def test_read_labels_file_errors(tmp_path):
    assert_model_error(read_labels_file, tmp_path / "missing.txt", match="not found")
    (tmp_path / "blank.txt").write_text("\n \n")
    assert_model_error(read_labels_file, tmp_path / "blank.txt", match="no labels")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    assert_model_error(read_labels_file, tmp_path / "binary.txt", match="UTF-8")
    assert_model_error(read_labels_file, tmp_path, match="folder")


# -- the preprocessing a model states ------------------------------------------------------------
FIXTURES = {"colors": COLORS_MODEL, "colors_int8": COLORS_INT8_MODEL, "flowers3": FLOWERS3_MODEL}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_models_state_the_preprocessing_the_code_does(name):
    path = FIXTURES[name]
    classifier = Classifier(path)
    info = read_metadata(path.read_bytes())
    assert info.extra["preprocessing"] == PREPROCESSING.describe(classifier.input_size)
    assert classifier.preprocessing == PREPROCESSING


@pytest.mark.slow
def test_a_finetuned_model_states_the_preprocessing_the_code_does(tmp_path_factory):
    """The real export path (the session's small fine-tuned model, shared with test_run.py)."""
    import runfixtures

    from edgecam.config.finetune import ModelConfig

    path = runfixtures.trained_model(tmp_path_factory).path
    classifier, rule = Classifier(path), Preprocessing(fit=ModelConfig().fit)  # trained with the default fit
    assert read_metadata(path.read_bytes()).extra["preprocessing"] == rule.describe(classifier.input_size)
    assert classifier.preprocessing == rule


def reference_fit(rgb: np.ndarray, description: dict) -> np.ndarray:
    """The preprocessing, written from the metadata's description alone (not from edgecam's code)."""
    assert description["fit"] in ("center_crop", "resize") and description["input"]["color"] == "RGB"
    out_h, out_w = description["input"]["height"], description["input"]["width"]
    height, width = rgb.shape[:2]
    if description["fit"] == "resize":  # the whole frame
        h, w = height, width
    elif width * out_h >= height * out_w:  # wider than the input's aspect: keep every row
        h, w = height, max(1, round(height * out_w / out_h))
    else:
        h, w = max(1, round(width * out_h / out_w)), width
    top, left = (height - h) // 2, (width - w) // 2
    crop = rgb[top : top + h, left : left + w]
    resize = description["resize"]
    shrink = min(h / out_h, w / out_w)
    method = resize["method"] if shrink >= resize["when_shrinking_at_least"] else resize["otherwise"]
    interpolation = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}[method]
    return cv2.resize(crop, (out_w, out_h), interpolation=interpolation)


FRAMES = {  # (height, width) of camera frames and photos
    "landscape": (480, 640),
    "portrait": (640, 480),
    "odd-margins": (263, 320),
    "upscale": (20, 30),
    "upscale-portrait": (45, 17),
    "exact": (32, 32),
    "exact-height": (32, 57),
    "just-under-2x": (63, 90),
    "exactly-2x": (64, 64),
    "over-2x": (100, 70),
    "tiny": (1, 1),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_the_stated_preprocessing_reproduces_fit_to_input_exactly(name):
    path = FIXTURES[name]
    size = Classifier(path).input_size
    description = read_metadata(path.read_bytes()).extra["preprocessing"]
    rng = np.random.default_rng(3)
    methods = set()
    for frame, (h, w) in FRAMES.items():
        rgb = rng.integers(0, 256, (h, w, 3), np.uint8)  # noise: any shift or other filter shows
        expected = fit_to_input(rgb, size)
        assert expected.shape == (*size, 3), frame
        np.testing.assert_array_equal(reference_fit(rgb, description), expected, err_msg=f"{name}, {frame} frame")
        crop = PREPROCESSING.box(h, w, size[1] / size[0])[2:]
        methods.add(PREPROCESSING.interpolation(crop, size) if crop != size else "none")
    assert methods == {"area", "bilinear", "none"}  # every branch was compared


@pytest.mark.parametrize("size", [(24, 40), (40, 24), (224, 160)])
@pytest.mark.parametrize("fit", FITS)
def test_the_reference_agrees_for_inputs_that_are_not_square(size, fit):
    description = Preprocessing(fit=fit).describe(size)
    rng = np.random.default_rng(4)
    for frame, (h, w) in FRAMES.items():
        rgb = rng.integers(0, 256, (h, w, 3), np.uint8)
        np.testing.assert_array_equal(reference_fit(rgb, description), fit_to_input(rgb, size, fit),
                                      err_msg=f"{size}, {frame} frame")


@pytest.mark.parametrize("fit", FITS)
def test_every_fit_is_reproduced_from_its_description_on_every_branch(fit):
    rule, size = Preprocessing(fit=fit), (32, 32)
    description = rule.describe(size)
    assert description["fit"] == fit and Preprocessing.from_description(description) == rule
    rng = np.random.default_rng(5)
    methods = set()
    for frame, (h, w) in FRAMES.items():
        rgb = rng.integers(0, 256, (h, w, 3), np.uint8)
        np.testing.assert_array_equal(reference_fit(rgb, description), rule.apply(rgb, size), err_msg=frame)
        box = rule.box(h, w, 1.0)[2:]
        methods.add(rule.interpolation(box, size) if box != size else "none")
    assert methods == {"area", "bilinear", "none"}


def test_a_model_that_states_the_whole_frame_fit_gets_it_at_run_time(models, tmp_path):
    """A new model ("resize") is read back and fed whole frames; the old ones ("center_crop",
    version 2, like the committed fixtures) keep their centre crop."""
    description = Preprocessing(fit="resize").describe((32, 32))
    info = read_metadata(COLORS_MODEL.read_bytes())
    path = tmp_path / "whole.tflite"
    path.write_bytes(embed_metadata(models.plain, ModelInfo(**{**vars(info), "extra": {"preprocessing": description}})))
    new, old = Classifier(path), Classifier(COLORS_MODEL)
    assert (new.preprocessing.fit, old.preprocessing.fit) == ("resize", "center_crop")
    assert old.info.extra["preprocessing"]["version"] == 2
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, :20] = (255, 0, 0)  # a red band at the left edge: outside the centre crop
    np.testing.assert_array_equal(new.prepare(frame)[0], reference_fit(frame, description))
    assert new.prepare(frame)[0, :, :4].mean(axis=(0, 1))[0] > 200  # the band reaches the model
    assert old.prepare(frame)[0, :, :, 0].max() == 0  # and not the old model
    new.classify(frame)


def test_rules_with_other_pixels_have_other_keys():
    keys = {Preprocessing(fit=fit).key for fit in FITS} | {Preprocessing(area_from=3.0).key}
    assert len(keys) == len(FITS) + 1


def stated(**changes) -> dict:
    description = PREPROCESSING.describe((32, 32))
    for key, value in changes.items():
        *path, leaf = key.split("__")
        node = description
        for part in path:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return description


@pytest.mark.parametrize("description, message", [
    (stated(fit="stretch"), "is not supported by this edgecam; upgrade edgecam"),
    (stated(resize__method="lanczos"), "is not supported by this edgecam; upgrade edgecam"),
    (stated(resize__otherwise="nearest"), "is not supported by this edgecam; upgrade edgecam"),
    (stated(version=PREPROCESSING.version + 1), "is not supported by this edgecam; upgrade edgecam"),
    (stated(resize=None), "preprocessing metadata not understood"),
    (stated(resize__when_shrinking_at_least="twice"), "preprocessing metadata not understood"),
], ids=["fit", "method", "otherwise", "version", "no-resize", "bad-number"])
def test_an_unknown_stated_preprocessing_is_a_one_line_error(models, tmp_path, description, message):
    path = tmp_path / "future.tflite"
    info = read_metadata(COLORS_MODEL.read_bytes())
    path.write_bytes(embed_metadata(models.plain, ModelInfo(**{**vars(info), "extra": {"preprocessing": description}})))
    with pytest.raises(ModelError) as caught:
        Classifier(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text
    if "upgrade" in message:
        as_stored = read_metadata(path.read_bytes()).extra["preprocessing"]  # JSON: keys sorted
        assert as_stored == description
        assert text == f"{path}: preprocessing {as_stored!r} is not supported by this edgecam; upgrade edgecam"
    # The command says the same in one line, before looking for a camera.
    frame = tmp_path / "red.png"
    cv2.imwrite(str(frame), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    result = CliRunner().invoke(cli, ["run", str(path), "--source", str(frame), "--headless"])
    assert (result.exit_code, result.output) == (1, f"Error: {text}\n")
