"""Standard TFLite metadata for edgecam's image classifiers, written and read without TensorFlow.

A model file carries its own description the way TFLite Support / MediaPipe expect it:

- a ``ModelMetadata`` flatbuffer (file identifier ``M001``, ``metadata_schema.fbs``) stored in a
  model buffer that a ``Metadata`` entry named ``TFLITE_METADATA`` of the TFLite ``Model`` points
  at. Input tensor 0 is ``"image"`` (RGB ImageProperties, NormalizationOptions, Stats), output
  tensor 0 is ``"probability"`` (FeatureProperties, a TENSOR_AXIS_LABELS associated file);
- the associated files, appended after the flatbuffer as an uncompressed zip archive:
  ``labels.txt`` (one label per line) and, when ``ModelInfo.extra`` is not empty,
  ``edgecam.json`` (a model-level DESCRIPTIONS file holding e.g. backbone and metrics).

Only fields of metadata schema 1.0.0 are written, hence ``min_parser_version`` "1.0.0".
``read_metadata`` needs only the standard library (the edge runtime imports it on a Raspberry
Pi); ``embed_metadata`` also uses ``flatbuffers`` and LiteRT's generated schema object API.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from edgecam.errors import ModelError
from edgecam.files import read_user_file
from edgecam.modelfile._flatbuf import (
    FlatbufferError,
    Table,
    Writer,
    pack_model,
    read_named_buffer,
    root,
    unpack_model,
)

METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
EXTRA_FILE = "edgecam.json"
UNKNOWN_OUTPUT = "unknown_score"  # optional second output: how unlike the training images a frame is
MIN_PARSER_VERSION = "1.0.0"
_METADATA_ID = b"M001"

# Field slots (ids) in metadata_schema.fbs. A union field takes two: its type, then its value.
_FILE_NAME, _FILE_DESCRIPTION, _FILE_TYPE = 0, 1, 2  # AssociatedFile
_DESCRIPTIONS, _TENSOR_AXIS_LABELS = 1, 2  # AssociatedFileType
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2  # ContentProperties union
_RGB = 1  # ColorSpaceType
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union
_TM_NAME, _TM_DESCRIPTION, _TM_CONTENT, _TM_PROCESS_UNITS, _TM_STATS, _TM_FILES = 0, 1, 3, 4, 5, 6
_SG_INPUTS, _SG_OUTPUTS = 2, 3  # SubGraphMetadata
(_MM_NAME, _MM_DESCRIPTION, _MM_VERSION, _MM_SUBGRAPHS,
 _MM_AUTHOR, _MM_LICENSE, _MM_FILES, _MM_MIN_PARSER) = range(8)  # ModelMetadata


def _f32(value: float) -> float:
    """``value`` as stored in a float32 field (so a written and re-read ModelInfo compares equal)."""
    value = float(value)
    if math.isnan(value):
        return math.nan
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        raise ModelError(f"{value} does not fit a float32 metadata field") from None


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata says about a classifier.

    ``mean``/``std`` are the NormalizationOptions: input tensor = (pixel - mean) / std, one value
    for all channels or one per channel. edgecam models take uint8 pixels and normalise inside
    the graph, so they carry the identity (0,) / (1,). Empty tuples mean the metadata has none.
    (MediaPipe Tasks feeds uint8 inputs raw pixels whatever these say, and refuses a float32
    input without them; it accepts 1 or 3 values.)
    ``input_min``/``input_max`` are the input tensor's Stats (NaN when absent). ``extra`` is a JSON
    object (stored as ``edgecam.json``; JSON turns tuples into lists). Floats are rounded to
    float32 on construction, as the metadata stores them.
    """

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    labels: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    input_min: float = 0.0
    input_max: float = 255.0
    extra: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "labels", tuple(str(label) for label in self.labels))
        set_(self, "mean", tuple(_f32(v) for v in self.mean))
        set_(self, "std", tuple(_f32(v) for v in self.std))
        set_(self, "input_min", _f32(self.input_min))
        set_(self, "input_max", _f32(self.input_max))
        set_(self, "extra", dict(self.extra or {}))


# -- writing ---------------------------------------------------------------------------------


def embed_metadata(model: bytes, info: ModelInfo) -> bytes:
    """``model`` (a .tflite, with or without metadata) with ``info`` as its TFLite metadata.

    An existing TFLITE_METADATA entry and its associated files are replaced; other metadata
    entries (min_runtime_version, ...) are kept. Raises ModelError if ``model`` is not a TFLite
    image classifier whose output size matches ``info.labels``.
    """
    files = _associated_files(info)
    try:
        tree = unpack_model(bytes(model))
        width, height, unknown = _check_classifier(tree, info)
        flatbuffer = pack_model(tree, METADATA_NAME, _build_metadata(info, width, height, unknown))
    except FlatbufferError as exc:
        raise ModelError(f"not a valid TFLite model: {exc}") from None
    return _append_zip(flatbuffer, files)


def _check_classifier(tree, info: ModelInfo) -> tuple[int, int, bool]:
    """(width, height, has unknown score); ModelError unless ``tree`` is a 1-in classifier whose
    outputs are the probabilities and, optionally, a [1, 1] ``unknown_score``."""
    if not tree.subgraphs:
        raise ModelError("not a valid TFLite model (no subgraph)")
    graph = tree.subgraphs[0]
    inputs, outputs = _ints(graph.inputs), _ints(graph.outputs)
    if not all(0 <= i < len(graph.tensors or []) for i in inputs + outputs):
        raise ModelError("not a valid TFLite model (input/output names a missing tensor)")
    unknown = len(outputs) == 2 and _name(graph.tensors[outputs[1]]) == UNKNOWN_OUTPUT \
        and _ints(graph.tensors[outputs[1]].shape) == [1, 1]
    if len(inputs) != 1 or len(outputs) != 1 + unknown:
        raise ModelError(f"not an image classifier (expected 1 input and 1 output, or a second output "
                         f"named {UNKNOWN_OUTPUT!r}; got {len(inputs)} and {len(outputs)})")
    in_shape, out_shape = _ints(graph.tensors[inputs[0]].shape), _ints(graph.tensors[outputs[0]].shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or min(in_shape) <= 0:
        raise ModelError(f"not an image classifier (input shape {in_shape}, expected [1, H, W, 3])")
    if not out_shape or min(out_shape) <= 0 or math.prod(out_shape) != out_shape[-1]:
        raise ModelError(f"not an image classifier (output shape {out_shape}, expected [1, N])")
    _check_info(info, out_shape[-1])
    return in_shape[2], in_shape[1], unknown


def _name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name or "")


def _ints(values) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _check_info(info: ModelInfo, classes: int) -> None:
    if len(info.labels) != classes:
        raise ModelError(f"{len(info.labels)} labels, but the model outputs {classes} classes")
    for label in info.labels:
        if not label or label != label.strip() or "\n" in label or "\r" in label:
            raise ModelError(f"label {label!r} is empty, has surrounding spaces or a line break")
    if len(info.mean) != len(info.std) or len(info.mean) not in (0, 1, 3):
        raise ModelError(f"mean {info.mean} and std {info.std}: need 1 or 3 values each (or none)")
    if any(s == 0 or math.isnan(s) for s in info.std) or any(math.isnan(m) for m in info.mean):
        raise ModelError(f"std {info.std} / mean {info.mean}: values must be numbers, std non-zero")


def _build_metadata(info: ModelInfo, width: int, height: int, unknown: bool = False) -> bytes:
    w = Writer(2048)
    labels_file = _associated_file(w, LABELS_FILE, "One label per line, in output order.",
                                   _TENSOR_AXIS_LABELS)

    image = _image_tensor(w, info, width, height)

    # Output tensor: one probability per label.
    feature = w.table({})
    feature_content = w.table({0: ("u8", _FEATURE_PROPERTIES), 1: ("offset", feature)})
    probability = w.table({
        _TM_NAME: ("offset", w.string("probability")),
        _TM_DESCRIPTION: ("offset", w.string(f"Probabilities of the {len(info.labels)} labels.")),
        _TM_CONTENT: ("offset", feature_content),
        _TM_FILES: ("offset", w.offsets([labels_file])),
    })
    outputs = [probability]
    if unknown:  # described, so that readers that want metadata for every output accept it
        outputs.append(w.table({
            _TM_NAME: ("offset", w.string(UNKNOWN_OUTPUT)),
            _TM_DESCRIPTION: ("offset", w.string(
                "How unlike the training images the frame is (higher = stranger); "
                "above the threshold in the edgecam metadata the frame is 'unknown'.")),
            _TM_CONTENT: ("offset", w.table({0: ("u8", _FEATURE_PROPERTIES), 1: ("offset", w.table({}))})),
        }))
    subgraph = w.table({
        _SG_INPUTS: ("offset", w.offsets([image])),
        _SG_OUTPUTS: ("offset", w.offsets(outputs)),
    })

    model_files = None
    if info.extra:
        extra = _associated_file(w, EXTRA_FILE, "edgecam training record (JSON).", _DESCRIPTIONS)
        model_files = w.offsets([extra])
    meta = w.table({
        _MM_NAME: ("offset", w.string(info.name)),
        _MM_DESCRIPTION: ("offset", w.string(info.description)),
        _MM_VERSION: ("offset", w.string(info.version)),
        _MM_SUBGRAPHS: ("offset", w.offsets([subgraph])),
        _MM_AUTHOR: ("offset", w.string(info.author)),
        _MM_LICENSE: ("offset", w.string(info.license)),
        _MM_FILES: ("offset", model_files),
        _MM_MIN_PARSER: ("offset", w.string(MIN_PARSER_VERSION)),
    })
    return w.finish(meta, _METADATA_ID)


def _image_tensor(w: Writer, info: ModelInfo, width: int, height: int) -> int:
    """Input tensor metadata: RGB image with normalisation and value range."""
    size = w.table({0: ("u32", width), 1: ("u32", height)})
    image_props = w.table({0: ("i8", _RGB), 1: ("offset", size)})
    image_content = w.table({0: ("u8", _IMAGE_PROPERTIES), 1: ("offset", image_props)})
    units = None
    if info.mean:
        norm = w.table({0: ("offset", w.floats(info.mean)), 1: ("offset", w.floats(info.std))})
        units = w.offsets([w.table({0: ("u8", _NORMALIZATION_OPTIONS), 1: ("offset", norm)})])
    stats = None
    if not (math.isnan(info.input_min) or math.isnan(info.input_max)):
        stats = w.table({0: ("offset", w.floats([info.input_max])), 1: ("offset", w.floats([info.input_min]))})
    image = w.table({
        _TM_NAME: ("offset", w.string("image")),
        _TM_DESCRIPTION: ("offset", w.string(f"RGB image, {width}x{height}")),
        _TM_CONTENT: ("offset", image_content),
        _TM_PROCESS_UNITS: ("offset", units),
        _TM_STATS: ("offset", stats),
    })
    return image


def _associated_file(w: Writer, name: str, description: str, kind: int) -> int:
    return w.table({
        _FILE_NAME: ("offset", w.string(name)),
        _FILE_DESCRIPTION: ("offset", w.string(description)),
        _FILE_TYPE: ("i8", kind),
    })


def _associated_files(info: ModelInfo) -> dict[str, bytes]:
    files = {LABELS_FILE: ("\n".join(info.labels) + "\n").encode("utf-8")}
    if info.extra:
        try:
            text = json.dumps(info.extra, indent=2, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"extra metadata is not plain JSON ({exc})") from None
        files[EXTRA_FILE] = (text + "\n").encode("utf-8")
    return files


def _append_zip(flatbuffer: bytes, files: dict[str, bytes]) -> bytes:
    """``flatbuffer`` followed by an uncompressed zip of ``files`` (offsets count from byte 0).

    Stored, not deflated: TFLite Support and MediaPipe hand out associated files as views into
    the model buffer. Mode "w" on a stream positioned after the flatbuffer writes a fresh archive
    there (mode "a" would first go looking for a zip inside the weights). Fixed timestamps keep
    the output byte-for-byte reproducible.
    """
    out = io.BytesIO()
    out.write(flatbuffer)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    return out.getvalue()


# -- reading ---------------------------------------------------------------------------------


def read_metadata(model: bytes) -> ModelInfo | None:
    """The ModelInfo in ``model`` (the whole .tflite file), or None if it has no TFLite metadata.

    Works on any TFLite metadata, not only edgecam's: fields the file lacks come back empty
    (mean/std ``()``, Stats NaN). Raises ModelError for a corrupt or non-TFLite file.
    """
    model = bytes(model)
    try:
        data = read_named_buffer(model, METADATA_NAME)
    except FlatbufferError as exc:
        raise ModelError(f"not a valid TFLite model: {exc}") from None
    if data is None:
        return None
    try:
        return _parse_metadata(model, data)
    except FlatbufferError as exc:
        raise ModelError(f"corrupt TFLite metadata: {exc}") from None


def _parse_metadata(model: bytes, data: bytes) -> ModelInfo:
    meta = root(data, _METADATA_ID, "metadata buffer")
    graph = (meta.tables(_MM_SUBGRAPHS) or [None])[0]
    image = (graph.tables(_SG_INPUTS) or [None])[0] if graph else None
    probability = (graph.tables(_SG_OUTPUTS) or [None])[0] if graph else None

    mean = std = ()
    low = high = math.nan
    if image is not None:
        for unit in image.tables(_TM_PROCESS_UNITS):
            if unit.scalar(0, "B") == _NORMALIZATION_OPTIONS and unit.table(1) is not None:
                mean, std = unit.table(1).scalars(0, "f"), unit.table(1).scalars(1, "f")
                break
        stats = image.table(_TM_STATS)
        if stats is not None:
            high = (stats.scalars(0, "f") or (math.nan,))[0]
            low = (stats.scalars(1, "f") or (math.nan,))[0]

    labels: tuple[str, ...] = ()
    labels_name = _file_name(probability.tables(_TM_FILES), _TENSOR_AXIS_LABELS) if probability else None
    if labels_name:
        labels = _parse_label_lines(_zip_member(model, labels_name).decode("utf-8", "replace"))
    extra: dict = {}
    if any(f.string(_FILE_NAME) == EXTRA_FILE for f in meta.tables(_MM_FILES)):
        try:
            extra = json.loads(_zip_member(model, EXTRA_FILE))
        except ValueError as exc:
            raise ModelError(f"corrupt {EXTRA_FILE} in model ({exc})") from None
        if not isinstance(extra, dict):
            raise ModelError(f"corrupt {EXTRA_FILE} in model (not a JSON object)")

    return ModelInfo(
        name=meta.string(_MM_NAME) or "",
        description=meta.string(_MM_DESCRIPTION) or "",
        version=meta.string(_MM_VERSION) or "",
        author=meta.string(_MM_AUTHOR) or "",
        license=meta.string(_MM_LICENSE) or "",
        labels=labels,
        mean=mean,
        std=std,
        input_min=low,
        input_max=high,
        extra=extra,
    )


def _file_name(files: list[Table], kind: int) -> str | None:
    """Name of the first associated file of type ``kind`` (the schema's rule for duplicates)."""
    for f in files:
        if f.scalar(_FILE_TYPE, "b") == kind and f.string(_FILE_NAME):
            return f.string(_FILE_NAME)
    return None


def _zip_member(model: bytes, name: str) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return archive.read(name)
    except KeyError:
        raise ModelError(f"model metadata names associated file {name!r}, which the model lacks") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError,
            EOFError, ValueError, zlib.error) as exc:  # fmt: skip
        raise ModelError(f"model metadata names {name!r}, but the appended zip is unreadable ({exc})") from None


def _parse_label_lines(text: str) -> tuple[str, ...]:
    """TENSOR_AXIS_LABELS content: one label per "\n"-separated line, position = output index."""
    lines = [line.strip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return tuple(lines)


_INDEXED = re.compile(r"([0-9]+)(?::\s*|\s+)(\S.*)")


def read_labels_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Labels from a text file: each non-blank line, stripped, is the next label.

    Index-prefixed files (Coral / TF Hub style ``0 cat``, ``0  cat``, ``0: cat``, ``0:cat``) are
    recognised only when *every* non-blank line has such a prefix and the numbers run 0, 1, 2, ...
    in order; the prefixes are then removed. Anything else is read literally, so a plain file
    whose labels happen to start with a number keeps them.
    """
    try:
        text = read_user_file(path, "labels file", ModelError).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: labels file is not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ModelError(f"{path}: labels file has no labels")
    matches = [_INDEXED.fullmatch(line) for line in lines]
    if all(matches) and [int(m.group(1)) for m in matches] == list(range(len(lines))):
        return tuple(m.group(2).strip() for m in matches)
    return tuple(lines)
