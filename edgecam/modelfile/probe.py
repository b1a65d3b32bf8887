"""The smallest useful model: one fully connected layer, 4 floats in, 2 out (the first two inputs).

Built here from LiteRT's own schema (no TensorFlow, no file to ship), so ``edgecam doctor``
can check that the interpreter runs on this machine, and whether XNNPACK takes the graph.
"""

from __future__ import annotations

import struct

from edgecam.modelfile._flatbuf import pack_tree

INPUT = (3.0, 5.0, 7.0, 9.0)
EXPECTED = (3.0, 5.0)  # the weights pick the first two inputs


def tiny_model() -> bytes:
    """A valid ``.tflite``: input ``x`` float32 [1, 4] → FULLY_CONNECTED → output ``y`` float32 [1, 2]."""
    from ai_edge_litert import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    weights = struct.pack("<8f", 1, 0, 0, 0, 0, 1, 0, 0)
    graph = schema.SubGraphT()
    graph.tensors = [_tensor(schema, "x", [1, 4], 1), _tensor(schema, "w", [2, 4], 2), _tensor(schema, "y", [1, 2], 3)]
    graph.inputs, graph.outputs = [0], [2]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]  # -1: no bias
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    graph.operators = [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.description = "edgecam probe"
    model.buffers = [schema.BufferT() for _ in range(4)]  # 0: the empty sentinel; 1, 3: activations
    model.buffers[2].data = weights
    return pack_tree(model)


def _tensor(schema, name: str, shape: list[int], buffer: int):
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, schema.TensorType.FLOAT32, buffer
    return tensor
