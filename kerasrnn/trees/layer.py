"""``TreeRNN``: runs a tree cell over a batch of trees, level by level."""

import keras
from keras import ops

from kerasrnn.trees.cells import TreeCell
from kerasrnn.validation import check_rate


@keras.saving.register_keras_serializable(package="kerasrnn")
class TreeRNN(keras.layers.Layer):
    """Runs a tree cell bottom-up over a batch of trees, one level at a time.

    The trees come as ``kerasrnn.trees.encode`` writes them (node 0 the
    root, children numbered above their parents, ``levels`` the height of
    each node). The input part of every node, ``x W + b``, is computed for
    all nodes in one matmul; then each level is one batched step over the
    nodes of that level in *every* tree of the batch: gather their
    children's states, run ``cell.node_step`` on all of them at once,
    scatter the results. Equivalent loop::

        state[b, n] = zeros                       for every node
        for level in range(max(levels) + 1):
            for every (b, n) with levels[b, n] == level:     # one batch
                kids = [state[b, k] for k in children[b, n]]  # -1: zeros
                state[b, n] = cell(inputs[b, n], kids)

    The number of levels is the batch's largest tree height; nodes of the
    same level never depend on each other, so the loop is exact.

    Args:
        cell: a tree cell (``RecursiveCell``, ``NaryTreeLSTMCell``,
            ``ChildSumTreeLSTMCell``).
        dropout: fraction of the node inputs dropped in training (one
            mask entry per node and feature).
        seed: seed of the dropout.

    Call arguments:
        inputs: float ``(B, N, F)``, each node's input (zeros for nodes
            without a word, and for padding).
        children: int ``(B, N, K)``, each node's children (node numbers in
            the same tree; -1 for none). A positional cell with more
            positions than ``K`` sees the extra slots empty; more than its
            positions is an error.
        levels: int ``(B, N)``, each node's height; -1 marks padding.
        training: enables dropout.

    Returns:
        ``(node_states, root_states)``: ``h`` of every node ``(B, N, H)``
        (zeros at padding) and of the roots, ``(B, H)`` (node 0).

    Example:

    >>> from kerasrnn.trees import NaryTreeLSTMCell, encode, parse_bracketed
    >>> from kerasrnn.trees import Vocabulary
    >>> tree = parse_bracketed("(1 (0 a) (1 (1 b) (0 c)))")
    >>> inputs, _ = encode([tree], Vocabulary(["a", "b", "c"]))
    >>> layer = TreeRNN(NaryTreeLSTMCell(3))
    >>> x = keras.ops.ones((1, 5, 2))
    >>> nodes, roots = layer(x, inputs["children"], inputs["levels"])
    >>> tuple(nodes.shape), tuple(roots.shape)
    ((1, 5, 3), (1, 3))

    Reference: the level-by-level batching of DGL's Tree-LSTM example
    (``dgl.prop_nodes_topo``) and Looks et al., "Deep Learning with Dynamic
    Computation Graphs" (TensorFlow Fold), ICLR 2017.
    """

    def __init__(self, cell, dropout=0.0, seed=None, **kwargs):
        if not isinstance(cell, TreeCell):
            raise TypeError(
                "`cell` must be a kerasrnn tree cell (RecursiveCell, "
                "NaryTreeLSTMCell, ChildSumTreeLSTMCell). Received: "
                f"cell={cell!r}"
            )
        super().__init__(**kwargs)
        self.cell = cell
        self.dropout = check_rate("dropout", dropout)
        self.seed = seed
        self.input_dropout = (
            keras.layers.Dropout(self.dropout, seed=seed)
            if self.dropout else None
        )
        # The nodes of a level are found at run time (a dynamic shape).
        self.supports_jit = False

    def build(self, inputs_shape, children_shape, levels_shape):
        if len(inputs_shape) != 3 or len(children_shape) != 3 or len(
            levels_shape
        ) != 2:
            raise ValueError(
                "TreeRNN takes inputs (B, N, F), children (B, N, K) and "
                f"levels (B, N). Received: inputs={inputs_shape}, "
                f"children={children_shape}, levels={levels_shape}"
            )
        slots = children_shape[-1]
        positions = self.cell.positions
        if positions is not None and slots is not None and slots > positions:
            raise ValueError(
                f"The cell has {positions} child positions but `children` "
                f"has {slots} slots per node. Received: "
                f"children={children_shape}"
            )
        # A cell restored from a .keras file comes built.
        if not self.cell.built:
            self.cell.build((None, inputs_shape[-1]))

    def compute_output_shape(self, inputs_shape, children_shape,
                             levels_shape):
        batch, nodes = levels_shape
        return (batch, nodes, self.cell.units), (batch, self.cell.units)

    def call(self, inputs, children, levels, training=None):
        shape = ops.shape(levels)
        total = shape[0] * shape[1]
        if self.input_dropout is not None:
            inputs = self.input_dropout(inputs, training=training)
        projected = self.cell.project(
            ops.reshape(inputs, (total, ops.shape(inputs)[-1]))
        )
        children = ops.cast(children, "int32")
        positions = self.cell.positions
        if positions is not None and children.shape[-1] != positions:
            # Fewer slots than positions (build refused more): the extra
            # positions are empty.
            missing = positions - ops.shape(children)[-1]
            children = ops.pad(children, [[0, 0], [0, 0], [0, missing]],
                               constant_values=-1)
        # Children as rows of the flat state table; row `total` is a zero
        # row that every missing child reads.
        offsets = ops.reshape(ops.arange(shape[0], dtype="int32") * shape[1],
                              (-1, 1, 1))
        rows = ops.reshape(
            ops.where(children >= 0, children + offsets, total), (total, -1)
        )
        flat_levels = ops.reshape(ops.cast(levels, "int32"), (total,))
        units = self.cell.units
        table = [
            ops.zeros((total + 1, units), dtype=projected.dtype)
            for _ in self.cell.state_size
        ]

        def level_step(level, states):
            (nodes,) = ops.nonzero(ops.equal(flat_levels, level))
            kids = ops.take(rows, nodes, axis=0)
            new = self.cell.node_step(
                ops.take(projected, nodes, axis=0),
                [ops.take(s, kids, axis=0) for s in states],
            )
            at = ops.expand_dims(nodes, 1)
            return [ops.scatter_update(s, at, n) for s, n in zip(states, new)]

        table = ops.fori_loop(0, ops.max(flat_levels) + 1, level_step, table)
        h = ops.reshape(table[0][:total], (shape[0], shape[1], units))
        return h, h[:, 0]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell": keras.saving.serialize_keras_object(self.cell),
                "dropout": self.dropout,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(
            config["cell"]
        )
        return cls(**config)
