"""Sequence layers: the time loop, directions, stacks and pooling."""

from kerasrnn.layers.bidirectional import Bidirectional
from kerasrnn.layers.pooling import SequencePooling
from kerasrnn.layers.rnn import RNN
from kerasrnn.layers.stacked import GRU
from kerasrnn.layers.stacked import IndRNN
from kerasrnn.layers.stacked import LSTM
from kerasrnn.layers.stacked import PeepholeLSTM
from kerasrnn.layers.stacked import SimpleRNN
from kerasrnn.layers.stacked import StackedRecurrent

__all__ = [
    "Bidirectional",
    "GRU",
    "IndRNN",
    "LSTM",
    "PeepholeLSTM",
    "RNN",
    "SequencePooling",
    "SimpleRNN",
    "StackedRecurrent",
]
