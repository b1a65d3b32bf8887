"""Just enough FlatBuffers for TFLite metadata: a bounds-checked reader, a small table writer, and
the TFLite ``Model`` container (find / replace the buffer a named ``Model.metadata`` entry holds).

The reader works on plain ``bytes`` with :mod:`struct` and checks every offset before it follows
it, so a truncated or corrupt file raises :class:`FlatbufferError` (one line) instead of an
IndexError or struct.error from deep inside a generated accessor. Slots are the zero-based field
ids of the ``.fbs`` schema (a union field takes two slots: its type byte, then its value).

The writer wraps ``flatbuffers.Builder``; children (strings, vectors, sub-tables) must be written
before the table that points at them, as with any FlatBuffers builder.

The model is rewritten with LiteRT's generated object API (``ai_edge_litert.schema_py_generated``),
imported only when writing. Reading needs nothing but the standard library: it runs on the
Raspberry Pi, where TensorFlow is never installed.
"""

from __future__ import annotations

import struct
from typing import Sequence

from edgecam.errors import ModelError

_U16, _U32, _I32 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<i")
_SCALARS = {fmt: struct.Struct("<" + fmt) for fmt in "bBhHiIqQfd"}


class FlatbufferError(ValueError):
    """The bytes are not a well-formed FlatBuffer (bad offset, truncated, wrong identifier)."""


def _unpack(fmt: struct.Struct, buf: bytes, pos: int):
    if pos < 0 or pos + fmt.size > len(buf):
        raise FlatbufferError(f"offset {pos} is outside the {len(buf)}-byte buffer (truncated or corrupt)")
    return fmt.unpack_from(buf, pos)[0]


def root(buf: bytes, identifier: bytes | None = None, what: str = "flatbuffer") -> "Table":
    """The root table of ``buf``, after checking its 4-byte file identifier when given."""
    if len(buf) < 8:
        raise FlatbufferError(f"{what} is too short ({len(buf)} bytes)")
    if identifier is not None and bytes(buf[4:8]) != identifier:
        found = bytes(buf[4:8]).decode("latin-1")
        raise FlatbufferError(f"{what} has file identifier {found!r}, expected {identifier.decode()!r}")
    return Table(buf, _unpack(_U32, buf, 0))


class Table:
    """A read-only view of one table: ``buf`` is the whole flatbuffer, ``pos`` the table start."""

    __slots__ = ("buf", "pos", "_vtable", "_vtable_size", "_object_size")

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self._vtable = pos - _unpack(_I32, buf, pos)
        self._vtable_size = _unpack(_U16, buf, self._vtable)
        self._object_size = _unpack(_U16, buf, self._vtable + 2)
        if self._vtable_size < 4 or self._vtable_size % 2 or self._vtable + self._vtable_size > len(buf):
            raise FlatbufferError(f"table at offset {pos} has a corrupt vtable")
        if self._object_size < 4 or pos + self._object_size > len(buf):
            raise FlatbufferError(f"table at offset {pos} runs past the end of the buffer")

    def _field(self, slot: int) -> int:
        """Absolute position of the field's inline value, or 0 when the field is absent."""
        entry = 4 + 2 * slot
        if entry >= self._vtable_size:
            return 0
        offset = _unpack(_U16, self.buf, self._vtable + entry)
        if offset == 0:
            return 0
        if offset >= self._object_size:
            raise FlatbufferError(f"table at offset {self.pos}: field {slot} lies outside the table")
        return self.pos + offset

    def _indirect(self, slot: int) -> int:
        at = self._field(slot)
        return at and at + _unpack(_U32, self.buf, at)

    def scalar(self, slot: int, fmt: str, default=0):
        at = self._field(slot)
        return _unpack(_SCALARS[fmt], self.buf, at) if at else default

    def table(self, slot: int) -> "Table | None":
        at = self._indirect(slot)
        return Table(self.buf, at) if at else None

    def string(self, slot: int) -> str | None:
        at = self._indirect(slot)
        return _string_at(self.buf, at) if at else None

    def _vector(self, slot: int, elem_size: int) -> tuple[int, int] | None:
        at = self._indirect(slot)
        if not at:
            return None
        count = _unpack(_U32, self.buf, at)
        start = at + 4
        if start + count * elem_size > len(self.buf):
            raise FlatbufferError(f"vector at offset {at} ({count} items) runs past the end of the buffer")
        return start, count

    def bytes(self, slot: int) -> bytes | None:
        vec = self._vector(slot, 1)
        return None if vec is None else bytes(self.buf[vec[0] : vec[0] + vec[1]])

    def scalars(self, slot: int, fmt: str) -> tuple:
        packer = _SCALARS[fmt]
        vec = self._vector(slot, packer.size)
        if vec is None:
            return ()
        start, count = vec
        return struct.unpack_from(f"<{count}{fmt}", self.buf, start)

    def _offsets(self, slot: int) -> list[int]:
        vec = self._vector(slot, 4)
        if vec is None:
            return []
        start, count = vec
        return [start + 4 * i + _unpack(_U32, self.buf, start + 4 * i) for i in range(count)]

    def table_at(self, slot: int, index: int) -> "Table | None":
        """Item ``index`` of a vector of tables, or None when the vector is absent or too short."""
        vec = self._vector(slot, 4)
        if vec is None or not 0 <= index < vec[1]:
            return None
        at = vec[0] + 4 * index
        return Table(self.buf, at + _unpack(_U32, self.buf, at))

    def tables(self, slot: int) -> list["Table"]:
        return [Table(self.buf, at) for at in self._offsets(slot)]


def _string_at(buf: bytes, at: int) -> str:
    length = _unpack(_U32, buf, at)
    if at + 4 + length > len(buf):
        raise FlatbufferError(f"string at offset {at} runs past the end of the buffer")
    try:
        return bytes(buf[at + 4 : at + 4 + length]).decode("utf-8")
    except UnicodeDecodeError:
        raise FlatbufferError(f"string at offset {at} is not valid UTF-8") from None


# -- writing ---------------------------------------------------------------------------------

# Field kinds for Writer.table(): (builder method, size used to order fields for packing).
_KINDS = {
    "offset": ("PrependUOffsetTRelativeSlot", 4),
    "u8": ("PrependUint8Slot", 1),
    "i8": ("PrependInt8Slot", 1),
    "u32": ("PrependUint32Slot", 4),
    "f32": ("PrependFloat32Slot", 4),
}


class Writer:
    """Builds one flatbuffer bottom-up; every method returns the offset of what it wrote."""

    def __init__(self, initial_size: int = 1024):
        import flatbuffers

        self.builder = flatbuffers.Builder(initial_size)

    def string(self, text: str | None) -> int | None:
        return None if text is None else self.builder.CreateString(text)

    def floats(self, values: Sequence[float]) -> int:
        b = self.builder
        b.StartVector(4, len(values), 4)
        for value in reversed(values):
            b.PrependFloat32(float(value))
        return b.EndVector()

    def offsets(self, offsets: Sequence[int]) -> int:
        b = self.builder
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    def table(self, fields: dict[int, tuple[str, object]]) -> int:
        """A table from ``{slot: (kind, value)}``; fields whose value is None are left out."""
        present = [(slot, kind, value) for slot, (kind, value) in fields.items() if value is not None]
        b = self.builder
        b.StartObject(max(fields) + 1 if fields else 0)
        # Widest fields first keeps the inline part free of padding. A default of None makes
        # the builder write every given value, even one equal to the schema default.
        for slot, kind, value in sorted(present, key=lambda f: -_KINDS[f[1]][1]):
            getattr(b, _KINDS[kind][0])(slot, value, None)
        return b.EndObject()

    def finish(self, root_table: int, identifier: bytes) -> bytes:
        self.builder.Finish(root_table, file_identifier=identifier)
        return bytes(self.builder.Output())


def aligned_bytes_vector(builder, data: bytes, alignment: int = 16) -> int:
    """A ``[ubyte]`` vector whose first byte sits at a multiple of ``alignment`` in the final file.

    TFLite's schema asks for 16-byte aligned buffer data (``force_align: 16``), which the
    generated Python object API does not honour. Alignment is counted from the end of the
    buffer, which the builder keeps a multiple of its largest alignment, hence also from its start.
    """
    builder.Prep(alignment, len(data))
    return builder.CreateByteVector(data)


# -- the TFLite Model container --------------------------------------------------------------

TFLITE_ID = b"TFL3"
# Field slots in LiteRT's schema.fbs.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # Model
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2  # Buffer
_ENTRY_NAME, _ENTRY_BUFFER = 0, 1  # Metadata


def read_named_buffer(model: bytes, name: str) -> bytes | None:
    """The data of the buffer that ``Model.metadata`` entry ``name`` points at (None: no entry)."""
    tree = root(model, TFLITE_ID, "TFLite model")
    for entry in tree.tables(_MODEL_METADATA):
        if entry.string(_ENTRY_NAME) != name:
            continue
        index = entry.scalar(_ENTRY_BUFFER, "I")
        buffer = tree.table_at(_MODEL_BUFFERS, index)
        if buffer is None:
            raise FlatbufferError(f"metadata {name} points at missing buffer {index}")
        data = buffer.bytes(_BUFFER_DATA)
        offset, size = buffer.scalar(_BUFFER_OFFSET, "Q"), buffer.scalar(_BUFFER_SIZE, "Q")
        if data is None and offset > 1 and offset + size <= len(model):  # stored after the flatbuffer
            data = bytes(model[offset : offset + size])
        if not data:
            raise FlatbufferError(f"metadata {name} buffer {index} is empty")
        return data
    return None


def unpack_model(model: bytes):
    """LiteRT's object-API ``ModelT`` for ``model``; FlatbufferError if it cannot be parsed."""
    root(model, TFLITE_ID, "TFLite model")  # identifier and root offset, with a clear message
    from ai_edge_litert import schema_py_generated as schema

    try:
        return schema.ModelT.InitFromPackedBuf(model, 0)
    except Exception as exc:  # corrupt offsets surface as any of a dozen exception types
        raise FlatbufferError(f"TFLite model cannot be parsed ({type(exc).__name__})") from None


def pack_model(tree, name: str, data: bytes) -> bytes:
    """``tree`` (a ModelT) packed with ``data`` as the buffer of metadata entry ``name``.

    An existing entry called ``name`` is replaced (duplicates dropped, its buffer reused unless
    something else uses it); other entries and buffer 0, the empty sentinel, stay as they are.
    Buffer data is written 16-byte aligned, as TFLite's own converter does.
    """
    from ai_edge_litert import schema_py_generated as schema

    buffers = [_AlignedBuffer.of(b, schema) for b in (tree.buffers or [])] or [_AlignedBuffer(None, schema)]
    entries = list(tree.metadata or [])
    ours = [m for m in entries if _text(m.name) == name]
    reusable = [m.buffer for m in ours if 0 < m.buffer < len(buffers) and not _is_shared(tree, m)]
    if reusable:
        index = reusable[0]
        buffers[index].data = data
    else:
        index = len(buffers)
        buffers.append(_AlignedBuffer(data, schema))
    position = entries.index(ours[0]) if ours else len(entries)
    entries = [m for m in entries if m not in ours]
    entries.insert(position, schema.MetadataT(name=name, buffer=index))
    tree.buffers, tree.metadata = buffers, entries
    return pack_tree(tree)


def pack_tree(tree) -> bytes:
    """Serialise a ModelT, buffer data 16-byte aligned, as TFLite's own converter does."""
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    buffers = [b if isinstance(b, _AlignedBuffer) else _AlignedBuffer.of(b, schema) for b in (tree.buffers or [])]
    tree.buffers = buffers or [_AlignedBuffer(None, schema)]
    size = sum(len(b.data or b"") for b in tree.buffers)
    builder = flatbuffers.Builder(size + 16 * len(tree.buffers) + 65536)
    try:
        builder.Finish(tree.Pack(builder), file_identifier=TFLITE_ID)
    except Exception as exc:  # values a corrupt model smuggled through unpacking
        raise FlatbufferError(f"TFLite model cannot be re-packed ({type(exc).__name__})") from None
    return bytes(builder.Output())


class _AlignedBuffer:
    """A model buffer for ``ModelT.Pack`` that writes its data 16-byte aligned."""

    def __init__(self, data: bytes | None, schema):
        self.data, self.schema = data, schema

    @classmethod
    def of(cls, buffer, schema) -> "_AlignedBuffer":
        if buffer is None:
            return cls(None, schema)
        if buffer.offset > 1:  # data kept after the flatbuffer at a fixed offset would move
            raise ModelError("models that keep weights outside the flatbuffer (>2 GB) are not supported")
        data = buffer.data  # a numpy view into the input when numpy is installed, else a list
        if data is not None:
            data = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
        return cls(data, schema)

    def Pack(self, builder):  # noqa: N802 - the object API's method name
        data = None if self.data is None else aligned_bytes_vector(builder, self.data)
        self.schema.BufferStart(builder)
        if data is not None:
            self.schema.BufferAddData(builder, data)
        return self.schema.BufferEnd(builder)


def _text(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _is_shared(tree, entry) -> bool:
    """True if anything but ``entry`` uses its buffer (then it must not be overwritten)."""
    for graph in tree.subgraphs or []:
        if any(t.buffer == entry.buffer for t in graph.tensors or []):
            return True
    return any(m is not entry and m.buffer == entry.buffer for m in tree.metadata or [])
