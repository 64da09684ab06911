"""Cells: one time step of each recurrence, written from its equations."""

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.gru_cell import GRUCell
from kerasrnn.cells.lstm_cell import LSTMCell
from kerasrnn.cells.simple_rnn_cell import SimpleRNNCell

__all__ = ["GRUCell", "LSTMCell", "RecurrentCell", "SimpleRNNCell"]
