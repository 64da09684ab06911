"""TensorFlow-free serving of exported kerasrnn models.

Needs only numpy and onnxruntime (``onnxruntime-gpu`` for CUDA); importing
this package never imports TensorFlow or Keras.

* ``Predictor(directory)``: loads ``model.onnx`` and ``manifest.json``,
  checks inputs, batches, returns numpy arrays.
* ``Generator(directory)``: an exported ``Seq2Seq``, ``LanguageModel`` or
  ``ImageCaptioner`` (encoder + one-step decoder graphs), decoded by
  ``search`` (greedy, sampling, beam: NumPy ports of
  ``kerasrnn.decoding``), text in, text out (``text``: the models'
  tokenizers without TensorFlow), streaming; image bytes in, captions
  out (``images``: Pillow).
* ``python -m kerasrnn_serving predict|generate|serve|info DIR``
  (installed as ``kerasrnn-serving``): the command line and a small
  JSON-over-HTTP server (``kerasrnn_serving.server``).
"""

__version__ = "0.1.0"

from kerasrnn_serving.generator import Generator  # noqa: E402
from kerasrnn_serving.predictor import InputError  # noqa: E402
from kerasrnn_serving.predictor import Predictor  # noqa: E402
from kerasrnn_serving.manifest import read as read_manifest  # noqa: E402

__all__ = ["Generator", "InputError", "Predictor", "read_manifest"]
