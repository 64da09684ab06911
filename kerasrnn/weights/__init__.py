"""Weights in Keras, PyTorch and ONNX layouts.

``layouts`` converts one cell's arrays (pure NumPy, the only place where
gate permutations happen); ``transfer`` moves whole layers' weights.
"""

from kerasrnn.weights.layouts import keras_to_onnx
from kerasrnn.weights.layouts import keras_to_torch
from kerasrnn.weights.layouts import onnx_to_keras
from kerasrnn.weights.layouts import torch_to_keras
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
