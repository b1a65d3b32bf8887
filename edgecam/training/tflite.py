"""Keras → TFLite bytes: the converter route, and a head appended without the converter.

``keras_to_tflite`` goes through a SavedModel (the route Keras 3 supports) and serves both the
backbone that computes the cached embeddings and the exported classifiers. The backbone is
converted once; ``append_softmax_head`` adds FULLY_CONNECTED + SOFTMAX to that graph, which
gives the float32 classifier in milliseconds instead of a 20-second converter round trip, and
runs exactly the backbone the head was trained on.
"""

from __future__ import annotations

import tempfile

import numpy as np

from edgecam.errors import ModelError
from edgecam.modelfile._flatbuf import FlatbufferError, pack_tree, unpack_model


def uint8_input_model(model):
    """Wrap a float 0..255 Keras model so it takes uint8 RGB directly (the export format)."""
    import keras

    inputs = keras.Input(model.input_shape[1:], dtype="uint8", name="image")
    return keras.Model(inputs, model(keras.ops.cast(inputs, "float32")), name=model.name)


def keras_to_tflite(model, converter_setup=None) -> bytes:
    """Keras 3 model → TFLite bytes via a SavedModel export (the route Keras 3 supports)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="edgecam-export-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if converter_setup is not None:
            converter_setup(converter)
        return converter.convert()


def _opcode(schema, tree, builtin: int) -> int:
    """Index of ``builtin`` in the model's operator codes, adding it if missing."""
    for i, code in enumerate(tree.operatorCodes or []):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    tree.operatorCodes = list(tree.operatorCodes or []) + [code]
    return len(tree.operatorCodes) - 1


def _tensor(schema, tree, graph, name: str, shape, buffer_data: bytes | None = None) -> int:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name, np.asarray(shape, np.int32), schema.TensorType.FLOAT32
    tensor.buffer = 0
    if buffer_data is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(buffer_data, np.uint8)
        tree.buffers = list(tree.buffers) + [buffer]
        tensor.buffer = len(tree.buffers) - 1
    graph.tensors = list(graph.tensors) + [tensor]
    return len(graph.tensors) - 1


def append_softmax_head(backbone: bytes, kernel: np.ndarray, bias: np.ndarray) -> bytes:
    """``backbone`` ([1, D] float output) + Dense(kernel (D, N), bias (N,)) + softmax → model bytes."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        tree = unpack_model(backbone)
    except FlatbufferError as exc:
        raise ModelError(f"backbone model: {exc}") from None
    graph = tree.subgraphs[0]
    (features,) = [int(i) for i in graph.outputs]
    dim, classes = kernel.shape
    if list(graph.tensors[features].shape) != [1, dim]:
        raise ModelError(f"backbone output shape {list(graph.tensors[features].shape)} does not fit a ({dim}, {classes}) head")
    weights = _tensor(schema, tree, graph, "head/kernel", (classes, dim), np.ascontiguousarray(kernel.T, np.float32).tobytes())
    biases = _tensor(schema, tree, graph, "head/bias", (classes,), np.ascontiguousarray(bias, np.float32).tobytes())
    logits = _tensor(schema, tree, graph, "head/logits", (1, classes))
    probs = _tensor(schema, tree, graph, "probability", (1, classes))

    dense = schema.OperatorT()
    dense.opcodeIndex = _opcode(schema, tree, schema.BuiltinOperator.FULLY_CONNECTED)
    dense.inputs, dense.outputs = np.array([features, weights, biases], np.int32), np.array([logits], np.int32)
    dense.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    dense.builtinOptions = schema.FullyConnectedOptionsT()
    softmax = schema.OperatorT()
    softmax.opcodeIndex = _opcode(schema, tree, schema.BuiltinOperator.SOFTMAX)
    softmax.inputs, softmax.outputs = np.array([logits], np.int32), np.array([probs], np.int32)
    softmax.builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    softmax.builtinOptions = schema.SoftmaxOptionsT()
    softmax.builtinOptions.beta = 1.0
    graph.operators = list(graph.operators) + [dense, softmax]
    graph.outputs = np.array([probs], np.int32)
    for signature in tree.signatureDefs or []:  # point the serving signature at the new output
        for entry in signature.outputs or []:
            entry.name, entry.tensorIndex = "probability", probs
    return pack_tree(tree)
