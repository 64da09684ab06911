"""Weights in Keras, PyTorch and ONNX layouts.

``kerasrnn.cells.layouts`` converts one cell's arrays (the only place where
gate permutations happen; re-exported here); ``transfer`` moves whole
layers' weights.
"""

from kerasrnn.cells.layouts import keras_to_onnx
from kerasrnn.cells.layouts import keras_to_torch
from kerasrnn.cells.layouts import onnx_to_keras
from kerasrnn.cells.layouts import torch_to_keras
from kerasrnn.weights.transfer import load_keras_weights
from kerasrnn.weights.transfer import load_torch_state_dict
from kerasrnn.weights.transfer import to_onnx_weights
from kerasrnn.weights.transfer import to_torch_state_dict

__all__ = [
    "keras_to_onnx",
    "keras_to_torch",
    "load_keras_weights",
    "load_torch_state_dict",
    "onnx_to_keras",
    "to_onnx_weights",
    "to_torch_state_dict",
    "torch_to_keras",
]
