"""Tree cells: one step of a recursive network, for a batch of nodes.

A tree cell computes a node's states from its input ``x`` (zeros for a node
without a word) and its children's states. ``TreeRNN`` calls it once per
level on all the nodes of that level:

* ``project(x)``: ``x W + b`` for every node of the batch, before the
  levels (one matmul);
* ``node_step(projected, child_states)``: ``child_states`` is a list (one
  entry per state, ``h`` first) of ``(M, K, H)`` tensors, the states of the
  ``K`` child slots of ``M`` nodes; an empty slot (a missing child) holds
  zeros. Returns the nodes' new states, a list of ``(M, H)``.

Weights follow the Keras layout: ``kernel (F, G·H)``, ``recurrent_kernel``
and ``bias (G·H,)``, gate blocks in the column order of ``GATE_ORDER``.
"""

import keras
from keras import ops

from kerasrnn.cells.base import unit_forget_bias
from kerasrnn.validation import check_int

GATE_ORDER = ("i", "f", "c", "o")


class TreeCell(keras.layers.Layer):
    """Base class of the tree cells (not registered: abstract).

    Subclasses set ``gate_count`` and ``state_names``, and define
    ``recurrent_shape()`` and ``node_step``. ``positions`` is the number of
    positional child slots (``K``, one recurrent weight per position), or
    None for cells that take any number of children.
    """

    gate_count = 1
    state_names = ("h",)
    positions = None

    def __init__(
        self,
        units,
        activation="tanh",
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_int("units", units)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)

    @property
    def state_size(self):
        return [self.units] * len(self.state_names)

    def recurrent_shape(self):
        raise NotImplementedError

    def bias_initial_value(self, shape, dtype=None):
        return self.bias_initializer(shape, dtype=dtype)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last axis of a tree cell's inputs must be known. "
                f"Received: input_shape={input_shape}"
            )
        width = self.gate_count * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width), initializer=self.kernel_initializer,
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=self.recurrent_shape(),
            initializer=self.recurrent_initializer,
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(
            shape=(width,), initializer=self.bias_initial_value, name="bias",
        )

    def project(self, inputs):
        """``x W + b``, ``(..., F) -> (..., G·H)``."""
        return ops.matmul(inputs, self.kernel) + self.bias

    def node_step(self, projected, child_states):
        raise NotImplementedError

    def call(self, inputs, child_states):
        return self.node_step(self.project(inputs), child_states)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config


def _concat_children(h_children, slots):
    # (M, K, H) -> (M, K·H): slot k's state in columns [kH, (k+1)H).
    return ops.reshape(h_children, (-1, slots * ops.shape(h_children)[-1]))


@keras.saving.register_keras_serializable(package="kerasrnn")
class RecursiveCell(TreeCell):
    """The recursive (Elman-style) tree cell, with positional or shared
    child weights (the seed's "Recursive Gated Networks")::

        positional:  h = g(x W + Σ_{k=1..K} h_k U_k + b)
                     (binary: h = g(x W + h_l U_l + h_r U_r + b))
        shared:      h = g(x W + (Σ_k h_k) U_c + b)

    ``recurrent_kernel`` is ``[U_1; …; U_K]`` stacked by rows ``(K·H, H)``
    (positional stationarity: one U per child position) or ``U_c (H, H)``
    (one matrix for every child, any number of children).

    Args:
        units: H.
        max_children: K, the child positions (positional only; ignored with
            ``shared=True``).
        shared: one ``U_c`` for all children.
        activation: ``g``, default ``"tanh"``.
        kernel_initializer, recurrent_initializer, bias_initializer: as in
            ``keras.layers.SimpleRNNCell``.

    Call arguments:
        inputs: ``(M, F)``.
        child_states: ``[h_children]``, ``(M, K, H)``, zeros where a node
            has no child in a slot.

    Returns:
        ``[h]``, ``(M, H)``.

    Example:

    >>> cell = RecursiveCell(4, max_children=2)
    >>> [h] = cell(keras.ops.ones((3, 5)), [keras.ops.zeros((3, 2, 4))])
    >>> tuple(h.shape)
    (3, 4)

    Reference: Socher et al., "Parsing Natural Scenes and Natural Language
    with Recursive Neural Networks", ICML 2011.
    """

    def __init__(self, units, max_children=2, shared=False, **kwargs):
        super().__init__(units, **kwargs)
        self.shared = bool(shared)
        if not self.shared:
            max_children = check_int("max_children", max_children)
        self.max_children = max_children
        self.positions = None if self.shared else max_children

    def recurrent_shape(self):
        rows = self.units if self.shared else self.max_children * self.units
        return (rows, self.units)

    def node_step(self, projected, child_states):
        (h_children,) = child_states
        if self.shared:
            recurrent = ops.matmul(
                ops.sum(h_children, axis=1), self.recurrent_kernel
            )
        else:
            recurrent = ops.matmul(
                _concat_children(h_children, self.max_children),
                self.recurrent_kernel,
            )
        return [self.activation(projected + recurrent)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {"max_children": self.max_children, "shared": self.shared}
        )
        return config


class _TreeLSTMBase(TreeCell):
    gate_count = len(GATE_ORDER)
    state_names = ("h", "c")

    def __init__(self, units, recurrent_activation="sigmoid",
                 unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = keras.activations.get(
            recurrent_activation
        )
        self.unit_forget_bias = bool(unit_forget_bias)

    def bias_initial_value(self, shape, dtype=None):
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        return unit_forget_bias(self.bias_initializer, self.units, dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "recurrent_activation": keras.activations.serialize(
                    self.recurrent_activation
                ),
                "unit_forget_bias": self.unit_forget_bias,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrnn")
class NaryTreeLSTMCell(_TreeLSTMBase):
    """The N-ary Tree-LSTM (Tai, Socher & Manning 2015, §3.2), for
    constituency trees: a forget gate per child, one U per child position.

    With ``[W_i W_f W_c W_o] = kernel``, ``[b_i b_f b_c b_o] = bias`` and the
    recurrent weights ``U^{(g)}_l`` (gate g, child position l) and
    ``U^{(f)}_{kl}`` (forget gate of child k, from child position l), for a
    node with children ``(h_l, c_l)``, l = 1..K (zeros where absent)::

        i   = σ(x W_i + Σ_l h_l U^{(i)}_l + b_i)
        f_k = σ(x W_f + Σ_l h_l U^{(f)}_{kl} + b_f)       k = 1..K
        u   = g(x W_c + Σ_l h_l U^{(c)}_l + b_c)
        o   = σ(x W_o + Σ_l h_l U^{(o)}_l + b_o)
        c   = i ⊙ u + Σ_k f_k ⊙ c_k
        h   = o ⊙ g(c)

    ``recurrent_kernel`` is ``(K·H, (K+3)·H)``: rows in blocks by child
    position l, columns in blocks ``i, f_1, …, f_K, c, o``.

    Args:
        units: H.
        max_children: K (2 for binary trees).
        activation: ``g``, default ``"tanh"``.
        recurrent_activation: σ, default ``"sigmoid"``.
        unit_forget_bias: initialise ``b_f`` to 1.
        kernel_initializer, recurrent_initializer, bias_initializer: as in
            ``keras.layers.LSTMCell``.

    Call arguments:
        inputs: ``(M, F)``.
        child_states: ``[h_children, c_children]``, each ``(M, K, H)``.

    Returns:
        ``[h, c]``, each ``(M, H)``.

    Example:

    >>> cell = NaryTreeLSTMCell(4, max_children=2)
    >>> kids = [keras.ops.zeros((3, 2, 4))] * 2
    >>> h, c = cell(keras.ops.ones((3, 5)), kids)
    >>> tuple(cell.recurrent_kernel.shape)
    (8, 20)

    Reference: Tai, Socher & Manning, "Improved Semantic Representations
    From Tree-Structured Long Short-Term Memory Networks", ACL 2015.
    """

    def __init__(self, units, max_children=2, **kwargs):
        super().__init__(units, **kwargs)
        self.max_children = check_int("max_children", max_children)
        self.positions = max_children

    def recurrent_shape(self):
        k = self.max_children
        return (k * self.units, (k + 3) * self.units)

    def node_step(self, projected, child_states):
        h_children, c_children = child_states
        k = self.max_children
        x_i, x_f, x_c, x_o = ops.split(projected, 4, axis=-1)
        z = ops.matmul(_concat_children(h_children, k), self.recurrent_kernel)
        blocks = ops.split(z, k + 3, axis=-1)
        z_i, z_f, z_c, z_o = blocks[0], blocks[1:k + 1], blocks[-2], blocks[-1]
        i = self.recurrent_activation(x_i + z_i)
        f = self.recurrent_activation(
            ops.expand_dims(x_f, 1) + ops.stack(z_f, axis=1)
        )
        u = self.activation(x_c + z_c)
        o = self.recurrent_activation(x_o + z_o)
        c = i * u + ops.sum(f * c_children, axis=1)
        h = o * self.activation(c)
        return [h, c]

    def get_config(self):
        config = super().get_config()
        config["max_children"] = self.max_children
        return config


@keras.saving.register_keras_serializable(package="kerasrnn")
class ChildSumTreeLSTMCell(_TreeLSTMBase):
    """The Child-Sum Tree-LSTM (Tai, Socher & Manning 2015, §3.1), for
    dependency trees: children summed, one forget gate per child computed
    from that child's own state; any number of children, in any order.

    With ``[W_i W_f W_c W_o] = kernel``, ``[U_i U_f U_c U_o] =
    recurrent_kernel`` ``(H, 4H)`` and ``[b_i b_f b_c b_o] = bias``, for a
    node with children ``(h_k, c_k)``::

        h̃   = Σ_k h_k
        i   = σ(x W_i + h̃ U_i + b_i)
        f_k = σ(x W_f + h_k U_f + b_f)
        u   = g(x W_c + h̃ U_c + b_c)
        o   = σ(x W_o + h̃ U_o + b_o)
        c   = i ⊙ u + Σ_k f_k ⊙ c_k
        h   = o ⊙ g(c)

    An empty child slot holds ``h_k = c_k = 0``: it adds nothing to h̃ and
    its ``f_k ⊙ c_k`` is 0, so padding slots change nothing.

    Args:
        units: H.
        activation: ``g``, default ``"tanh"``.
        recurrent_activation: σ, default ``"sigmoid"``.
        unit_forget_bias: initialise ``b_f`` to 1.
        kernel_initializer, recurrent_initializer, bias_initializer: as in
            ``keras.layers.LSTMCell``.

    Call arguments:
        inputs: ``(M, F)``.
        child_states: ``[h_children, c_children]``, each ``(M, K, H)``, any
            K.

    Returns:
        ``[h, c]``, each ``(M, H)``.

    Example:

    >>> cell = ChildSumTreeLSTMCell(4)
    >>> kids = [keras.ops.zeros((3, 5, 4))] * 2
    >>> h, c = cell(keras.ops.ones((3, 6)), kids)
    >>> tuple(c.shape)
    (3, 4)

    Reference: Tai, Socher & Manning, "Improved Semantic Representations
    From Tree-Structured Long Short-Term Memory Networks", ACL 2015.
    """

    def recurrent_shape(self):
        return (self.units, 4 * self.units)

    def node_step(self, projected, child_states):
        h_children, c_children = child_states
        x_i, x_f, x_c, x_o = ops.split(projected, 4, axis=-1)
        u_i, u_f, u_c, u_o = ops.split(self.recurrent_kernel, 4, axis=-1)
        h_sum = ops.sum(h_children, axis=1)
        i = self.recurrent_activation(x_i + ops.matmul(h_sum, u_i))
        f = self.recurrent_activation(
            ops.expand_dims(x_f, 1) + ops.matmul(h_children, u_f)
        )
        u = self.activation(x_c + ops.matmul(h_sum, u_c))
        o = self.recurrent_activation(x_o + ops.matmul(h_sum, u_o))
        c = i * u + ops.sum(f * c_children, axis=1)
        h = o * self.activation(c)
        return [h, c]
