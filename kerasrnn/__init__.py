"""kerasrnn: recurrent networks for Keras 3, written from the gate equations.

Layout, one idea per package, each building on the ones before it:

* ``cells``: one time step of each recurrence, from its equations, and the
  cell registry (``cells.registry``: which cells exist and how each maps
  onto PyTorch and ONNX);
* ``layers``: the time loops (generic, fused training, inference), masks,
  directions, stacks, pooling;
* ``weights``: Keras / PyTorch / ONNX weight layouts and transfers;
* ``models``: classifiers' building blocks, ``Seq2Seq`` with attention,
  ``LanguageModel`` and their training;
* ``decoding``: greedy, sampling and beam search;
* ``export``: ONNX, SavedModel and Triton;
* ``diagnostics``: gradient flow, the long-range lab, plots;
* ``trees``: recursive networks over trees (Tree-RNN, N-ary and Child-Sum
  Tree-LSTM, run level by level; their data, tasks and gradient paths).

The TensorFlow-free runtime and server is the sibling package
``kerasrnn_serving``. Every public cell and sequence layer is importable
from here (``kerasrnn.LSTMCell``, ``kerasrnn.LSTM``).
"""

from kerasrnn import requirements

requirements.check()

from kerasrnn import cells  # noqa: E402
from kerasrnn import layers  # noqa: E402
from kerasrnn.cells import *  # noqa: E402,F403
from kerasrnn.layers import *  # noqa: E402,F403

__version__ = "0.1.0"

__all__ = sorted(
    name for name in {*cells.__all__, *layers.__all__}
    if name[0].isupper()
)
