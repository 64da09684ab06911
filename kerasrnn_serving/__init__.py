"""TensorFlow-free serving of exported kerasrnn models.

Needs only numpy and onnxruntime (``onnxruntime-gpu`` for CUDA); importing
this package never imports TensorFlow or Keras.

* ``Predictor(directory)``: loads ``model.onnx`` and ``manifest.json``,
  checks inputs, batches, returns numpy arrays.
* ``python -m kerasrnn_serving predict|serve|info DIR`` (installed as
  ``kerasrnn-serving``): the command line and a small JSON-over-HTTP
  server (``kerasrnn_serving.server``).
"""

from kerasrnn_serving.predictor import InputError
from kerasrnn_serving.predictor import Predictor
from kerasrnn_serving.predictor import read_manifest

__all__ = ["InputError", "Predictor", "read_manifest"]
