"""kerasrnn: recurrent networks for Keras 3, written from the gate equations.

Layout: ``cells`` (one time step) → ``layers`` (time loop, directions,
stacks, pooling) → ``weights`` (Keras / PyTorch / ONNX layouts).
"""

from kerasrnn.cells import GRUCell
from kerasrnn.cells import LSTMCell
from kerasrnn.cells import SimpleRNNCell
from kerasrnn.layers import GRU
from kerasrnn.layers import LSTM
from kerasrnn.layers import RNN
from kerasrnn.layers import Bidirectional
from kerasrnn.layers import SequencePooling
from kerasrnn.layers import SimpleRNN

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
