"""kerasrnn: recurrent networks for Keras 3, written from the gate equations.

Layout: ``cells`` (one time step) → ``layers`` (time loop, directions,
stacks, pooling) → ``weights`` (Keras / PyTorch / ONNX layouts).
``trees``: recursive networks over trees (Tree-RNN, N-ary and Child-Sum
Tree-LSTM, run level by level).
"""

from kerasrnn import requirements

requirements.check()

from kerasrnn.cells import GRUCell  # noqa: E402
from kerasrnn.cells import LSTMCell  # noqa: E402
from kerasrnn.cells import SimpleRNNCell  # noqa: E402
from kerasrnn.layers import GRU  # noqa: E402
from kerasrnn.layers import LSTM  # noqa: E402
from kerasrnn.layers import RNN  # noqa: E402
from kerasrnn.layers import Bidirectional  # noqa: E402
from kerasrnn.layers import SequencePooling  # noqa: E402
from kerasrnn.layers import SimpleRNN  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "GRUCell",
    "LSTMCell",
    "SequencePooling",
    "SimpleRNN",
    "SimpleRNNCell",
]
