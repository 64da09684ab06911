"""Recursive networks over trees: Tree-RNN, N-ary and Child-Sum Tree-LSTM.

* ``encoding``: ``Tree`` (nodes in pre-order, root 0), ``parse_bracketed``
  (PTB/SST), ``from_parents`` (dependency heads), ``Vocabulary``,
  ``encode`` (a batch of trees as padded ``tokens``/``children``/``levels``
  arrays); NumPy only.
* ``cells``: ``RecursiveCell`` (positional ``W_l, W_r`` or one shared
  ``W_c``), ``NaryTreeLSTMCell``, ``ChildSumTreeLSTMCell``.
* ``TreeRNN``: a whole batch of trees, one batched step per level.
* ``models``: ``tree_classifier`` (a label at every node, SST) and
  ``tree_similarity`` (Tai et al.'s relatedness model, SICK).
* ``data``: readers (SST, parent arrays, CoNLL-U, SICK), GloVe vectors,
  ``TreeBatches`` for ``fit``.
* ``gradient_paths``: root-to-leaf gradients against path length, in the
  tree and through a chain LSTM, and their plot.
"""

from kerasrnn.trees.cells import ChildSumTreeLSTMCell
from kerasrnn.trees.cells import NaryTreeLSTMCell
from kerasrnn.trees.cells import RecursiveCell
from kerasrnn.trees.cells import TreeCell
from kerasrnn.trees.data import TreeBatches
from kerasrnn.trees.data import load_vectors
from kerasrnn.trees.data import read_bracketed
from kerasrnn.trees.data import read_conllu
from kerasrnn.trees.data import read_parents
from kerasrnn.trees.data import read_sick
from kerasrnn.trees.encoding import Tree
from kerasrnn.trees.encoding import TreeFormatError
from kerasrnn.trees.encoding import Vocabulary
from kerasrnn.trees.encoding import encode
from kerasrnn.trees.encoding import from_parents
from kerasrnn.trees.encoding import glove_key
from kerasrnn.trees.encoding import parse_bracketed
from kerasrnn.trees.encoding import to_bracketed
from kerasrnn.trees.layer import TreeRNN
from kerasrnn.trees.models import SimilarityHead
from kerasrnn.trees.models import WordEmbedding
from kerasrnn.trees.models import similarity_distribution
from kerasrnn.trees.models import tree_classifier
from kerasrnn.trees.models import tree_similarity

__all__ = [
    "ChildSumTreeLSTMCell",
    "NaryTreeLSTMCell",
    "RecursiveCell",
    "SimilarityHead",
    "Tree",
    "TreeBatches",
    "TreeCell",
    "TreeFormatError",
    "TreeRNN",
    "Vocabulary",
    "WordEmbedding",
    "encode",
    "from_parents",
    "glove_key",
    "load_vectors",
    "parse_bracketed",
    "read_bracketed",
    "read_conllu",
    "read_parents",
    "read_sick",
    "similarity_distribution",
    "to_bracketed",
    "tree_classifier",
    "tree_similarity",
]
