"""Export: ONNX with native recurrent operators, SavedModel, int8.

* ``to_onnx(model, directory)``: ``model.onnx`` (opset 17, every kerasrnn
  recurrent layer a native ``RNN``/``LSTM``/``GRU`` node) and
  ``manifest.json``, checked against Keras on random inputs.
* ``to_saved_model(model, directory)``: a SavedModel whose
  ``serving_default`` signature takes and returns named tensors.
* ``quantize_onnx(directory)``: int8 dynamic quantization of that model,
  with the change in outputs it causes.
* ``to_triton(model, repository)``: a Triton Inference Server model
  repository (``config.pbtxt`` per model; generation by BLS).
* ``to_onnx_tree(model, directory, vocabulary)``: a tree classifier
  (``kerasrnn.trees``) as a ``Loop`` over its levels, served by
  ``kerasrnn_serving.trees.TreePredictor``.

Serve the result with the TensorFlow-free ``kerasrnn_serving`` package
(numpy and onnxruntime only).
"""

from kerasrnn.export.onnx import build_onnx
from kerasrnn.export.onnx import op_inventory
from kerasrnn.export.onnx import supported_layers
from kerasrnn.export.onnx import to_onnx
from kerasrnn.export.quantize import quantize_onnx
from kerasrnn.export.trees import to_onnx_tree
from kerasrnn.export.triton import to_triton

__all__ = [
    "build_onnx",
    "op_inventory",
    "quantize_onnx",
    "supported_layers",
    "to_onnx",
    "to_onnx_tree",
    "to_saved_model",
    "to_triton",
]


def __getattr__(name):
    # SavedModel export is TensorFlow's: imported when asked for, so the
    # rest of kerasrnn.export loads on a machine without TensorFlow.
    if name == "to_saved_model":
        from kerasrnn.export.saved_model import to_saved_model

        return to_saved_model
    raise AttributeError(f"module 'kerasrnn.export' has no attribute {name!r}")

