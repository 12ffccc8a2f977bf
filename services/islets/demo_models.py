"""Tiny ONNX networks built on the spot (no downloaded weights): a colour rule written as a 1×1
convolution, and one that fails at run time. They prove loading, tiling, batching and error
handling of the ONNX backend in the tests, give the benchmark a network to batch, and let a demo
show model selection per job (write one into $ISLETNET_MODELS_DIR)."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

# 1×1 convolution scoring each pixel from its colour (inputs in [0, 1]):
#   background  0
#   exocrine    10·(0.75 - B)          pale tissue absorbs blue
#   islet       20·(R - G) - 2         dithizone: red, little green
COLOUR_WEIGHTS = np.array([[0, 0, 0], [0, 0, -10], [20, -20, 0]], dtype=np.float32).reshape(3, 3, 1, 1)
COLOUR_BIAS = np.array([0, 7.5, -2], dtype=np.float32)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def colour_model(path: Path, height: int | str = "H", width: int | str = "W", channels_out: int = 3) -> Path:
    """The 1×1-conv colour classifier; fixed height/width when ints are given."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels_out, height, width])
    weights = numpy_helper.from_array(COLOUR_WEIGHTS[:channels_out], "weights")
    bias = numpy_helper.from_array(COLOUR_BIAS[:channels_out], "bias")
    conv = helper.make_node("Conv", ["image", "weights", "bias"], ["logits"])
    return _save(helper.make_graph([conv], "colour", [image], [logits], [weights, bias]), path)


def failing_model(path: Path) -> Path:
    """Loads fine, fails at run time for any input other than 1×3×4×4 (a fixed Reshape)."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 4, 4])
    shape = numpy_helper.from_array(np.array([1, 3, 4, 4], dtype=np.int64), "shape")
    reshape = helper.make_node("Reshape", ["image", "shape"], ["logits"])
    return _save(helper.make_graph([reshape], "failing", [image], [logits], [shape]), path)
