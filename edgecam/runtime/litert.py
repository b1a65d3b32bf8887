"""Which TFLite interpreter to use: LiteRT, or the older tflite_runtime wheel where installed."""

from __future__ import annotations

import os

from edgecam.errors import ModelError


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError("no TFLite interpreter installed: pip install ai-edge-litert") from None
    return Interpreter


def make_interpreter(num_threads: int | None = None, **source):
    """An allocated interpreter for ``model_path=...`` or ``model_content=...``."""
    interpreter = interpreter_class()(num_threads=num_threads or os.cpu_count() or 1, **source)
    interpreter.allocate_tensors()
    return interpreter
