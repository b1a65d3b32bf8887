"""Small edits to a TFLite graph without the converter: new constants, operators and outputs.

The converter costs ~20 s per call and may rearrange what it is given; these edits append a
few builtin operators (a classifier head, the unknown score) to a graph that already exists,
so the exported model runs exactly the backbone the head and the score were fitted on.
"""

from __future__ import annotations

import re

import numpy as np

from edgecam.errors import ModelError
from edgecam.modelfile._flatbuf import FlatbufferError, pack_tree, unpack_model


class Graph:
    """The first subgraph of a model, open for appending: ``Graph(bytes) ... .to_bytes()``."""

    def __init__(self, model: bytes):
        from ai_edge_litert import schema_py_generated as schema

        self.schema = schema
        try:
            self.tree = unpack_model(model)
        except FlatbufferError as exc:
            raise ModelError(f"model: {exc}") from None
        self.graph = self.tree.subgraphs[0]

    # -- reading -----------------------------------------------------------------------------
    @property
    def outputs(self) -> list[int]:
        return [int(i) for i in self.graph.outputs]

    def shape(self, tensor: int) -> list[int]:
        return [int(d) for d in self.graph.tensors[tensor].shape]

    def name(self, tensor: int) -> str:
        name = self.graph.tensors[tensor].name
        return name.decode() if isinstance(name, bytes) else str(name)

    def find_activation(self, layer: str) -> int:
        """The rank-4 tensor a Keras layer named ``layer`` outputs (the converter keeps the names)."""
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        produced = {int(o) for op in self.graph.operators for o in op.outputs}
        for i in sorted(produced):
            if len(self.shape(i)) == 4 and pattern.search(self.name(i).split(";")[0]):
                return i
        raise ModelError(f"model: no activation of layer {layer!r} in the graph")

    def names_up_to(self, layer: str) -> list[str]:
        """Output names of the operators from the start through the first one of ``layer``."""
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        names = []
        for op in self.graph.operators:
            names += [self.name(int(o)) for o in op.outputs]
            if any(pattern.search(self.name(int(o))) for o in op.outputs):
                return names
        raise ModelError(f"model: no operator of layer {layer!r} in the graph")

    # -- writing -----------------------------------------------------------------------------
    def tensor(self, name: str, shape, dtype: str = "float32", data: np.ndarray | None = None) -> int:
        s = self.schema
        tensor = s.TensorT()
        tensor.name, tensor.shape = name, np.asarray(shape, np.int32)
        tensor.type = {"float32": s.TensorType.FLOAT32, "int32": s.TensorType.INT32}[dtype]
        tensor.buffer = 0
        if data is not None:
            buffer = s.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data, dtype).tobytes(), np.uint8)
            self.tree.buffers = list(self.tree.buffers) + [buffer]
            tensor.buffer = len(self.tree.buffers) - 1
        self.graph.tensors = list(self.graph.tensors) + [tensor]
        return len(self.graph.tensors) - 1

    def constant(self, name: str, values: np.ndarray) -> int:
        """A float32 constant."""
        values = np.asarray(values, np.float32)
        return self.tensor(name, values.shape, data=values)

    def op(self, kind: str, inputs: list[int], name: str, shape, options=None) -> int:
        """Append builtin ``kind`` with one new float32 output tensor; returns that tensor."""
        s = self.schema
        out = self.tensor(name, shape)
        op = s.OperatorT()
        op.opcodeIndex = self._opcode(getattr(s.BuiltinOperator, kind))
        op.inputs, op.outputs = np.asarray(inputs, np.int32), np.asarray([out], np.int32)
        if options is not None:
            op.builtinOptionsType = getattr(s.BuiltinOptions, type(options).__name__.removesuffix("T"))
            op.builtinOptions = options
        self.graph.operators = list(self.graph.operators) + [op]
        return out

    def quantize(self, x: int, scale: float, zero_point: int, name: str) -> int:
        """QUANTIZE float32 ``x`` to a new uint8 tensor with the given parameters."""
        s = self.schema
        out = self.tensor(name, self.shape(x))
        self.graph.tensors[out].type = s.TensorType.UINT8
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = np.asarray([scale], np.float32), np.asarray([zero_point], np.int64)
        self.graph.tensors[out].quantization = q
        op = s.OperatorT()
        op.opcodeIndex = self._opcode(s.BuiltinOperator.QUANTIZE)
        op.inputs, op.outputs = np.asarray([x], np.int32), np.asarray([out], np.int32)
        self.graph.operators = list(self.graph.operators) + [op]
        return out

    def as_float(self, tensor: int) -> int:
        """``tensor`` itself when float32, else its DEQUANTIZE (int8 models' features)."""
        if self.graph.tensors[tensor].type == self.schema.TensorType.FLOAT32:
            return tensor
        return self.op("DEQUANTIZE", [tensor], self.name(tensor).split(";")[0] + "/float", self.shape(tensor))

    def float_features(self, tensor: int) -> int:
        """``tensor`` as float32; a quantised spatial mean is redone in float from its input, since
        averaging the dequantised activations keeps the resolution a uint8 result would lose."""
        if self.graph.tensors[tensor].type == self.schema.TensorType.FLOAT32:
            return tensor
        producer = next((op for op in self.graph.operators if tensor in [int(o) for o in op.outputs]), None)
        if producer is not None and self._kind(producer) == self.schema.BuiltinOperator.MEAN:
            source = int(producer.inputs[0])
            if len(self.shape(source)) == 4 and len(self.shape(tensor)) == 2:
                return self.reduce("MEAN", self.as_float(source), (1, 2), self.name(tensor).split(";")[0] + "/mean",
                                   keep=False)
        return self.as_float(tensor)

    def uint8_io(self) -> None:
        """Make int8 inputs and outputs uint8 (same scale, zero point + 128), as edgecam's int8
        models have always been: a QUANTIZE in front of each input and after each output."""
        s = self.schema
        self.graph.inputs = np.array(self.graph.inputs, np.int32)
        self.graph.outputs = np.array(self.graph.outputs, np.int32)
        for position, tensor in enumerate(self.graph.inputs):
            if self.graph.tensors[tensor].type == s.TensorType.INT8:
                outer = self._retyped_copy(int(tensor), s.TensorType.UINT8, 128)
                self._requantize(outer, int(tensor), front=True)
                self.graph.inputs[position] = outer
        for position, tensor in enumerate(self.graph.outputs):
            if self.graph.tensors[tensor].type == s.TensorType.INT8:
                outer = self._retyped_copy(int(tensor), s.TensorType.UINT8, 128)
                self._requantize(int(tensor), outer, front=False)
                self.graph.outputs[position] = outer
        for signature in self.tree.signatureDefs or []:
            old_new = dict(zip(self._io_before, list(self.graph.inputs) + list(self.graph.outputs)))
            for entry in list(signature.inputs or []) + list(signature.outputs or []):
                entry.tensorIndex = int(old_new.get(entry.tensorIndex, entry.tensorIndex))

    def _retyped_copy(self, tensor: int, dtype: int, shift: int) -> int:
        if not hasattr(self, "_io_before"):
            self._io_before = [int(i) for i in self.graph.inputs] + [int(o) for o in self.graph.outputs]
        old = self.graph.tensors[tensor]
        new = self.tensor(self.name(tensor), self.shape(tensor))
        q = self.schema.QuantizationParametersT()
        q.scale = np.asarray(old.quantization.scale, np.float32)
        q.zeroPoint = np.asarray(old.quantization.zeroPoint, np.int64) + shift
        self.graph.tensors[new].type, self.graph.tensors[new].quantization = dtype, q
        old.name = self.name(tensor) + "/int8"
        return new

    def _requantize(self, source: int, target: int, front: bool) -> None:
        op = self.schema.OperatorT()
        op.opcodeIndex = self._opcode(self.schema.BuiltinOperator.QUANTIZE)
        op.inputs, op.outputs = np.asarray([source], np.int32), np.asarray([target], np.int32)
        self.graph.operators = ([op] if front else []) + list(self.graph.operators) + ([] if front else [op])

    def _kind(self, op) -> int:
        code = self.tree.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def set_outputs(self, outputs: list[int], names: list[str | None]) -> None:
        """New graph outputs, named ``names`` (None: as it is) in the tensors and the signature."""
        names = [name or self.name(tensor) for tensor, name in zip(outputs, names)]
        for tensor, name in zip(outputs, names):
            self.graph.tensors[tensor].name = name
        self.graph.outputs = np.asarray(outputs, np.int32)
        for signature in self.tree.signatureDefs or []:
            entries = []
            for tensor, name in zip(outputs, names):
                entry = self.schema.TensorMapT()
                entry.name, entry.tensorIndex = name, tensor
                entries.append(entry)
            signature.outputs = entries

    def to_bytes(self) -> bytes:
        return pack_tree(self.tree)

    def prune(self) -> None:
        """Drop the operators the outputs do not need, then the tensors and buffers no one uses."""
        needed, kept = {int(o) for o in self.graph.outputs}, []
        for op in reversed(self.graph.operators):
            if any(int(o) in needed for o in op.outputs):
                kept.append(op)
                needed.update(int(i) for i in op.inputs if int(i) >= 0)
        self.graph.operators = kept[::-1]
        needed.update(int(i) for i in self.graph.inputs)
        index = {old: new for new, old in enumerate(sorted(needed))}
        self.graph.tensors = [self.graph.tensors[old] for old in sorted(needed)]
        for op in self.graph.operators:
            op.inputs = np.asarray([index[int(i)] if int(i) >= 0 else -1 for i in op.inputs], np.int32)
            op.outputs = np.asarray([index[int(o)] for o in op.outputs], np.int32)
        self.graph.inputs = np.asarray([index[int(i)] for i in self.graph.inputs], np.int32)
        self.graph.outputs = np.asarray([index[int(o)] for o in self.graph.outputs], np.int32)
        for signature in self.tree.signatureDefs or []:
            for entry in list(signature.inputs or []) + list(signature.outputs or []):
                entry.tensorIndex = index[int(entry.tensorIndex)]
        self._prune_buffers()

    def _prune_buffers(self) -> None:
        used = {0} | {t.buffer for g in self.tree.subgraphs for t in g.tensors or []}
        used |= {m.buffer for m in self.tree.metadata or []}
        index = {old: new for new, old in enumerate(sorted(used))}
        self.tree.buffers = [self.tree.buffers[old] for old in sorted(used)]
        for tensor in (t for g in self.tree.subgraphs for t in g.tensors or []):
            tensor.buffer = index[tensor.buffer]
        for entry in self.tree.metadata or []:
            entry.buffer = index[entry.buffer]

    def _same_opcode(self, code) -> int:
        """Index of an operator code like ``code`` (another model's), added if missing; the
        version is the higher of the two."""
        custom = getattr(code, "customCode", None)
        for i, mine in enumerate(self.tree.operatorCodes or []):
            if (max(mine.builtinCode, mine.deprecatedBuiltinCode) == max(code.builtinCode, code.deprecatedBuiltinCode)
                    and getattr(mine, "customCode", None) == custom):
                mine.version = max(mine.version, code.version)
                return i
        self.tree.operatorCodes = list(self.tree.operatorCodes or []) + [code]
        return len(self.tree.operatorCodes) - 1

    def _opcode(self, builtin: int) -> int:
        """Index of ``builtin`` in the model's operator codes, adding it if missing."""
        for i, code in enumerate(self.tree.operatorCodes or []):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return i
        code = self.schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        self.tree.operatorCodes = list(self.tree.operatorCodes or []) + [code]
        return len(self.tree.operatorCodes) - 1

    # -- common blocks ---------------------------------------------------------------------------
    def int8_rows(self, name: str, values: np.ndarray) -> int:
        """An int8 constant with one scale per row (symmetric): a quarter of float32's bytes, and
        a FULLY_CONNECTED that reads it runs as a "hybrid" (float in and out) operator."""
        data, scale = quantise_rows(values)
        tensor = self.tensor(name, data.shape)
        t = self.graph.tensors[tensor]
        t.type = self.schema.TensorType.INT8
        buffer = self.schema.BufferT()
        buffer.data = np.frombuffer(data.tobytes(), np.uint8)
        self.tree.buffers = list(self.tree.buffers) + [buffer]
        t.buffer = len(self.tree.buffers) - 1
        q = self.schema.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = scale.astype(np.float32), np.zeros(len(scale), np.int64), 0
        t.quantization = q
        return tensor

    def dense(self, x: int, kernel: np.ndarray, bias: np.ndarray | None, name: str, int8: bool = False) -> int:
        """x [1, D] @ kernel (D, N) + bias → [1, N]; ``int8``: the kernel stored as int8 rows."""
        if int8:
            weights = self.int8_rows(name + "/kernel", np.asarray(kernel, np.float32).T)
        else:
            weights = self.constant(name + "/kernel", np.asarray(kernel, np.float32).T)
        inputs = [x, weights] + ([self.constant(name + "/bias", bias)] if bias is not None else [-1])
        options = self.schema.FullyConnectedOptionsT()
        return self.op("FULLY_CONNECTED", inputs, name, (1, kernel.shape[1]), options)

    def reduce(self, kind: str, x: int, axes: tuple[int, ...], name: str, keep: bool = True) -> int:
        """REDUCE_MAX / MEAN over ``axes``."""
        shape = [1 if a in axes else d for a, d in enumerate(self.shape(x))] if keep else \
            [d for a, d in enumerate(self.shape(x)) if a not in axes]
        options = self.schema.ReducerOptionsT()
        options.keepDims = keep
        axis = self.tensor(name + "/axes", (len(axes),), "int32", np.asarray(axes, np.int32))
        return self.op(kind, [x, axis], name, shape, options)


def quantise_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 data, scale per row): symmetric, the largest magnitude of each row at 127."""
    values = np.asarray(values, np.float32)
    scale = (np.maximum(np.abs(values).max(axis=1), 1e-12) / 127.0).astype(np.float32)
    return np.clip(np.round(values / scale[:, None]), -127, 127).astype(np.int8), scale


def add_pooled_output(model: bytes, layer: str) -> bytes:
    """The model with a second output: the spatial mean of layer ``layer``'s activation [1, C]."""
    g = Graph(model)
    tap = g.find_activation(layer)
    pooled = g.reduce("MEAN", g.as_float(tap), (1, 2), f"{layer}/mean", keep=False)
    g.set_outputs(g.outputs + [pooled], [None, f"{layer}/mean"])
    return g.to_bytes()


def add_output(model: bytes, layer: str) -> bytes:
    """The model with one more output: layer ``layer``'s activation, named ``<layer>/activation``."""
    g = Graph(model)
    g.set_outputs(g.outputs + [g.find_activation(layer)], [None] * len(g.outputs) + [f"{layer}/activation"])
    return g.to_bytes()


def splice(model: bytes, cut: str, upper: bytes) -> bytes:
    """``model`` with everything above layer ``cut``'s activation replaced by ``upper``, a model
    whose one input is that activation (MobileNetV2's top 3 blocks convert in 0.6 s, the whole
    backbone in 2 s).
    The outputs are ``upper``'s; operators, tensors and weights nothing needs any more are dropped."""
    g, top = Graph(model), Graph(upper)
    at = g.find_activation(cut)
    (entry,) = top.graph.inputs
    if top.shape(int(entry))[1:] != g.shape(at)[1:]:
        raise ModelError(f"model: {cut} gives {g.shape(at)}, the upper part takes {top.shape(int(entry))}")
    moved = {int(entry): at}
    for i, tensor in enumerate(top.graph.tensors):
        if i == int(entry):
            continue
        if tensor.buffer and top.tree.buffers[tensor.buffer].data is not None:
            g.tree.buffers = list(g.tree.buffers) + [top.tree.buffers[tensor.buffer]]
            tensor.buffer = len(g.tree.buffers) - 1
        else:
            tensor.buffer = 0
        g.graph.tensors = list(g.graph.tensors) + [tensor]
        moved[i] = len(g.graph.tensors) - 1
    for op in top.graph.operators:
        op.opcodeIndex = g._same_opcode(top.tree.operatorCodes[op.opcodeIndex])
        op.inputs = np.asarray([moved[int(i)] if int(i) >= 0 else -1 for i in op.inputs], np.int32)
        op.outputs = np.asarray([moved[int(o)] for o in op.outputs], np.int32)
        op.intermediates = None
        g.graph.operators = list(g.graph.operators) + [op]
    g.set_outputs([moved[int(o)] for o in top.graph.outputs], [None] * len(top.graph.outputs))
    g.prune()
    return g.to_bytes()
