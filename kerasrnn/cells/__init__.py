"""Cells: one time step of each recurrence, written from its equations.

Each cell file registers its class in ``registry`` (``cell_names()`` lists
them); the rest of kerasrnn learns which cells exist from there.
"""

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.gru_cell import GRUCell
from kerasrnn.cells.indrnn_cell import IndRNNCell
from kerasrnn.cells.lstm_cell import LSTMCell
from kerasrnn.cells.peephole_lstm_cell import PeepholeLSTMCell
from kerasrnn.cells.registry import cell_names
from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells.registry import register_cell
from kerasrnn.cells.simple_rnn_cell import SimpleRNNCell

__all__ = [
    "GRUCell",
    "IndRNNCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "RecurrentCell",
    "SimpleRNNCell",
    "cell_names",
    "cell_spec",
    "register_cell",
]
