"""Attention over encoder outputs: Bahdanau (additive) and Luong (dot,
general).

Each layer scores a query ``q (B, Q)`` against every memory step
``m_s (B, S, D)``, then::

    a_s = softmax_s(score(q, m_s))       alignments, masked steps get 0
    c   = Σ_s a_s m_s                    context (B, D)

The memory-side half of the score does not depend on the query, so it is
computed once per source (``keys = precompute(memory)``) and each decoder
step only does ``call(query, keys, memory, memory_mask)``.
"""

import keras
import ml_dtypes
from keras import ops

from kerasrnn.cells.base import fresh_initializer
from kerasrnn.validation import check_int


def masked_score(dtype):
    """The score of masked (padding) steps: the lowest finite value of the
    scores' dtype (-65504 in float16), so that it needs no cast that
    overflows, and a row with no valid step gives uniform weights instead
    of NaN."""
    return float(ml_dtypes.finfo(keras.backend.standardize_dtype(dtype)).min)


def _masked_softmax(scores, mask):
    if mask is not None:
        scores = ops.where(
            ops.cast(mask, "bool"), scores, masked_score(scores.dtype)
        )
    return ops.softmax(scores, axis=-1)


def _context(alignments, memory):
    return ops.einsum("bs,bsd->bd", alignments, memory)


class _Attention(keras.layers.Layer):
    """Shared contract: ``precompute(memory) -> keys`` and
    ``call(query, keys, memory, memory_mask) -> (context, alignments)``."""

    def build(self, query_shape, memory_shape):
        self.query_dim = query_shape[-1]
        self.memory_dim = memory_shape[-1]

    def call(self, query, keys, memory, memory_mask=None):
        alignments = _masked_softmax(self.score(query, keys), memory_mask)
        return _context(alignments, memory), alignments

    def compute_output_shape(self, query_shape, keys_shape, memory_shape,
                             memory_mask_shape=None):
        return (query_shape[0], memory_shape[-1]), tuple(memory_shape[:2])


@keras.saving.register_keras_serializable(package="kerasrnn")
class BahdanauAttention(_Attention):
    """Additive attention (Bahdanau et al. 2015)::

        score(q, m_s) = vᵀ tanh(q W_q + m_s W_m + b)

    with ``W_q (Q, units)``, ``W_m (D, units)``, ``b, v (units,)``.
    ``keys = memory W_m + b``.

    Args:
        units: the size of the hidden layer of the score.
        kernel_initializer: initialiser of ``W_q``, ``W_m`` and ``v``.
        bias_initializer: initialiser of ``b``.

    Reference:
        Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly
        Learning to Align and Translate", ICLR 2015.
    """

    def __init__(
        self,
        units,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_int("units", units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, query_shape, memory_shape):
        super().build(query_shape, memory_shape)
        self.query_kernel = self.add_weight(
            shape=(self.query_dim, self.units), name="query_kernel",
            initializer=fresh_initializer(self.kernel_initializer),
        )
        self.memory_kernel = self.add_weight(
            shape=(self.memory_dim, self.units), name="memory_kernel",
            initializer=fresh_initializer(self.kernel_initializer),
        )
        self.bias = self.add_weight(
            shape=(self.units,), name="bias",
            initializer=self.bias_initializer,
        )
        self.score_vector = self.add_weight(
            shape=(self.units,), name="score_vector",
            initializer=fresh_initializer(self.kernel_initializer),
        )

    def precompute(self, memory):
        return ops.matmul(memory, self.memory_kernel) + self.bias

    def score(self, query, keys):
        hidden = ops.tanh(
            keys + ops.expand_dims(ops.matmul(query, self.query_kernel), 1)
        )
        return ops.einsum("bsu,u->bs", hidden, self.score_vector)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
        }


@keras.saving.register_keras_serializable(package="kerasrnn")
class LuongAttention(_Attention):
    """Multiplicative attention (Luong et al. 2015)::

        dot:      score(q, m_s) = qᵀ m_s          (needs Q = D)
        general:  score(q, m_s) = qᵀ W_a m_s      W_a (Q, D)

    ``keys = memory`` (dot) or ``memory W_aᵀ`` (general).

    Args:
        score_mode: ``"dot"`` or ``"general"``.
        kernel_initializer: initialiser of ``W_a`` (general).

    Reference:
        Luong, Pham & Manning, "Effective Approaches to Attention-based
        Neural Machine Translation", EMNLP 2015.
    """

    SCORE_MODES = ("dot", "general")

    def __init__(
        self, score_mode="general", kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if score_mode not in self.SCORE_MODES:
            raise ValueError(
                f"`score_mode` must be one of {self.SCORE_MODES}. Received: "
                f"score_mode={score_mode!r}"
            )
        self.score_mode = score_mode

    def build(self, query_shape, memory_shape):
        super().build(query_shape, memory_shape)
        if self.score_mode == "dot":
            if self.query_dim != self.memory_dim:
                raise ValueError(
                    "Luong 'dot' attention needs queries and memory of one "
                    f"size. Received: query size {self.query_dim}, memory "
                    f"size {self.memory_dim}; use score_mode='general'."
                )
            self.kernel = None
        else:
            self.kernel = self.add_weight(
                shape=(self.query_dim, self.memory_dim), name="kernel",
                initializer=fresh_initializer(self.kernel_initializer),
            )

    def precompute(self, memory):
        if self.kernel is None:
            return memory
        return ops.matmul(memory, ops.transpose(self.kernel))

    def score(self, query, keys):
        return ops.einsum("bsq,bq->bs", keys, query)

    def get_config(self):
        return {
            **super().get_config(),
            "score_mode": self.score_mode,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
        }
