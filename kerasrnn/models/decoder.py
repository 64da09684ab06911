"""``RecurrentDecoder``: stacked cells, optional attention, output layer.

One decoder step, for the previous token ``y_{t-1}`` (Luong et al. 2015,
with input feeding when attention is on)::

    x_t    = [E y_{t-1} ; ã_{t-1}]                  ã: attentional vector
    h_t^l  = cell_l(h_t^{l-1}, s_{t-1}^l)           l = 1..L, h_t^0 = x_t
    c_t, α_t = attention(h_t^L, memory, mask)       (if attention)
    ã_t    = tanh(W_c [c_t ; h_t^L])                (else ã_t = h_t^L)
    logits = ã_t W_o + b_o      or ã_t P Eᵀ + b_o  (tied to E)

``step`` runs it once (generation, export); ``call`` runs it over a
teacher-forced sequence in the backend's time loop
(``kerasrnn.layers.time_loop``: ``tf.while_loop``, ``lax.scan``, a Python
loop on PyTorch) with the very same step,
feeding, with probability ``p`` per row and step, a token sampled from the
model's previous output instead of the ground truth (scheduled sampling,
Bengio et al. 2015).
"""

import keras
from keras import ops

from kerasrnn.cells.registry import resolve_cell
from kerasrnn.cells.registry import serialize_cell
from kerasrnn.validation import check_choice
from kerasrnn.validation import check_int
from kerasrnn.validation import check_rate
from kerasrnn.models import initializers
from kerasrnn.models.attention import BahdanauAttention
from kerasrnn.models.attention import LuongAttention
from kerasrnn.decoding.tensors import stateless_categorical
from kerasrnn.decoding.tensors import stateless_uniform
from kerasrnn.layers.time_loop import run_time_loop

ATTENTIONS = (None, "bahdanau", "luong_dot", "luong_general")
# The attention half of a decoder state, after the cells' states.
ATTENTION_STATE = ("attentional", "memory", "keys", "memory_mask")


def stack_state_names(cell, layers):
    """``{name}_{l}`` for each of ``cell.state_names`` and layer ``l``,
    layer-major: the flat state of ``layers`` stacked cells."""
    return [f"{name}_{layer}" for layer in range(layers)
            for name in cell.state_names]


@keras.saving.register_keras_serializable(package="kerasrnn")
class RecurrentDecoder(keras.layers.Layer):
    """Decoder of a sequence-to-sequence model (equations in the module doc).

    Args:
        vocabulary_size: V, the target vocabulary.
        embedding_dim: E, the size of the target embedding.
        units: H, the state size of every layer and the size of ``ã``.
        cell: a registered cell: its name (``"lstm"``, ``"gru"``,
            ``"simple_rnn"``..., see ``kerasrnn.cells.cell_names()``), its
            class, or a cell object whose configuration (all but name and
            units) every cell copies.
        num_layers: L, stacked cells.
        attention: None, ``"bahdanau"``, ``"luong_dot"`` or
            ``"luong_general"``.
        attention_units: hidden size of the Bahdanau score (default H).
        tie_embeddings: share E between the embedding and the output layer
            (Press & Wolf 2017); ``P (H, E)`` maps ``ã`` to E when H != E.
        dropout: rate on the embedded tokens, between layers and on ``ã``.
        seed: seed of the dropout and scheduled-sampling draws.
        embeddings_initializer, kernel_initializer, recurrent_initializer,
            bias_initializer, attention_initializer, output_initializer:
            see ``Seq2Seq`` (the same defaults).

    State (a dict, every leaf with the batch as leading axis, so searches
    can tile and reorder it): ``cells`` (per layer, the cell's states),
    and with attention ``attentional`` (ã), ``memory (B, S, D)``, ``keys``
    (the attention's precomputed memory half) and ``memory_mask (B, S)``.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim,
        units,
        cell="lstm",
        num_layers=1,
        attention=None,
        attention_units=None,
        tie_embeddings=False,
        dropout=0.0,
        seed=None,
        embeddings_initializer=None,
        kernel_initializer=None,
        recurrent_initializer=None,
        bias_initializer=None,
        attention_initializer=None,
        output_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.initializers = initializers.resolve(locals())
        init = self.initializers
        self.vocabulary_size = check_int(
            "vocabulary_size", vocabulary_size
        )
        self.embedding_dim = check_int("embedding_dim", embedding_dim)
        self.units = check_int("units", units)
        spec, cell_template = resolve_cell(cell)
        self.cell = cell
        self.num_layers = check_int("num_layers", num_layers)
        self.attention = check_choice("attention", attention, ATTENTIONS)
        self.attention_units = attention_units
        self.tie_embeddings = bool(tie_embeddings)
        self.dropout = check_rate("dropout", dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        self.embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim,
            **initializers.fresh(init, "embeddings_initializer"),
            name="embedding",
        )
        self.cells = [
            spec.cell_class(
                units, name=f"cell_{index}",
                **{**initializers.cell_arguments(init), **cell_template},
            )
            for index in range(num_layers)
        ]
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, seed=seed, name="dropout"
        )
        self.attention_layer = None
        self.attentional_dense = None
        if attention == "bahdanau":
            self.attention_layer = BahdanauAttention(
                attention_units or units,
                kernel_initializer=initializers.fresh_one(
                    init, "attention_initializer"),
                bias_initializer=initializers.fresh_one(
                    init, "bias_initializer"),
                name="attention",
            )
        elif attention is not None:
            self.attention_layer = LuongAttention(
                attention.split("_")[1],
                kernel_initializer=initializers.fresh_one(
                    init, "attention_initializer"),
                name="attention",
            )
        if self.attention_layer is not None:
            self.attentional_dense = keras.layers.Dense(
                units, activation="tanh", use_bias=False,
                kernel_initializer=initializers.fresh_one(
                    init, "output_initializer"),
                name="attentional",
            )
        self.tied_projection = None
        if self.tie_embeddings:
            if units != embedding_dim:
                self.tied_projection = keras.layers.Dense(
                    embedding_dim, use_bias=False,
                    kernel_initializer=initializers.fresh_one(
                        init, "output_initializer"),
                    name="tied_projection",
                )
            self.output_layer = None
        else:
            self.output_layer = keras.layers.Dense(
                vocabulary_size,
                kernel_initializer=initializers.fresh_one(
                    init, "output_initializer"),
                bias_initializer=initializers.fresh_one(
                    init, "bias_initializer"),
                name="output",
            )

    @property
    def feeds_attention(self):
        return self.attention_layer is not None

    def state_names(self):
        """The flat names of the state (``h_0``, ``c_0``, ... then, with
        attention, ``ATTENTION_STATE``): exported graphs and signatures
        name their state tensors so."""
        names = stack_state_names(self.cells[0], self.num_layers)
        if self.feeds_attention:
            names += list(ATTENTION_STATE)
        return names

    def flatten_state(self, state):
        """The state dict as ``{name: tensor}`` (``state_names``)."""
        names = iter(self.state_names())
        flat = {next(names): tensor for states in state["cells"]
                for tensor in states}
        flat.update({name: state[name] for name in names})
        return flat

    def nest_state(self, flat):
        """``{name: tensor}`` back into the state dict."""
        per_cell = len(self.cells[0].state_names)
        names = self.state_names()
        state = {"cells": [
            [flat[names[layer * per_cell + k]] for k in range(per_cell)]
            for layer in range(self.num_layers)
        ]}
        if self.feeds_attention:
            state.update({name: flat[name] for name in ATTENTION_STATE})
        return state

    def build(self, memory_shape=None):
        self.embedding.build((None,))
        input_dim = self.embedding_dim + (
            self.units if self.feeds_attention else 0
        )
        for cell in self.cells:
            cell.build((None, input_dim))
            input_dim = self.units
        if self.feeds_attention:
            if memory_shape is None or memory_shape[-1] is None:
                raise ValueError(
                    "A decoder with attention needs the memory size to "
                    f"build. Received: memory_shape={memory_shape}"
                )
            self.attention_layer.build(
                (None, self.units), tuple(memory_shape)
            )
            self.attentional_dense.build((None, self.units + memory_shape[-1]))
        if self.tie_embeddings:
            if self.tied_projection is not None:
                self.tied_projection.build((None, self.units))
            self.output_bias = self.add_weight(
                shape=(self.vocabulary_size,), name="output_bias",
                initializer=initializers.fresh_one(
                    self.initializers, "bias_initializer"),
            )
        else:
            self.output_layer.build((None, self.units))
        self.built = True

    def initial_state(self, cell_states, memory=None, memory_mask=None):
        """The state of the first step.

        Args:
            cell_states: per layer, the list of that cell's states.
            memory: encoder outputs ``(B, S, D)`` (attention only).
            memory_mask: bool ``(B, S)``, True at real source steps.
        """
        state = {"cells": [list(states) for states in cell_states]}
        if self.feeds_attention:
            batch = ops.shape(memory)[0]
            if memory_mask is None:
                memory_mask = ops.ones(ops.shape(memory)[:2], "bool")
            state.update(
                attentional=ops.zeros(
                    (batch, self.units), dtype=self.compute_dtype
                ),
                memory=memory,
                keys=self.attention_layer.precompute(memory),
                memory_mask=ops.cast(memory_mask, "bool"),
            )
        return state

    def project(self, outputs):
        """Logits: ``ã W_o + b_o``, or tied ``ã P Eᵀ + b_o``."""
        if not self.tie_embeddings:
            return self.output_layer(outputs)
        if self.tied_projection is not None:
            outputs = self.tied_projection(outputs)
        weights = ops.convert_to_tensor(self.embedding.embeddings)
        return ops.matmul(outputs, ops.transpose(weights)) + self.output_bias

    def step(self, token_ids, state, training=False):
        """One step: ``(token_ids (B,), state) -> (logits (B, V), state,
        alignments (B, S) or None)``."""
        outputs, state, alignments = self.step_outputs(
            token_ids, state, training=training
        )
        return self.project(outputs), state, alignments

    def step_outputs(self, token_ids, state, training=False):
        """``step`` before the output layer: returns ``(ã (B, H), state,
        alignments)``."""
        inputs = self.dropout_layer(
            self.embedding(token_ids), training=training
        )
        if self.feeds_attention:
            inputs = ops.concatenate([inputs, state["attentional"]], axis=-1)
        cell_states = []
        for index, cell in enumerate(self.cells):
            if index > 0:
                inputs = self.dropout_layer(inputs, training=training)
            inputs, states = cell(
                inputs, state["cells"][index], training=training
            )
            cell_states.append(list(states))
        new_state = dict(state, cells=cell_states)
        alignments = None
        outputs = inputs
        if self.feeds_attention:
            context, alignments = self.attention_layer(
                inputs, state["keys"], state["memory"], state["memory_mask"]
            )
            outputs = self.attentional_dense(
                ops.concatenate([context, inputs], axis=-1)
            )
            new_state["attentional"] = outputs
        outputs = self.dropout_layer(outputs, training=training)
        return outputs, new_state, alignments

    def call(
        self, decoder_inputs, state, sampling_probability=None,
        training=False,
    ):
        """Runs ``step`` over ``decoder_inputs (B, T)``; returns ``(logits
        (B, T, V), alignments (B, T, S) or None)``.

        With ``sampling_probability`` p > 0, each row at each step t >= 1
        reads, with probability p, a token drawn from
        ``softmax(logits_{t-1})`` instead of ``decoder_inputs[:, t]``. No
        gradient flows through the draw. p = 0 (or None) is plain teacher
        forcing.

        The loop keeps ``ã_t`` and the output layer runs once on all steps
        afterwards (one large matmul instead of T small ones); only the
        draws of scheduled sampling project inside the loop.
        """
        decoder_inputs = ops.cast(decoder_inputs, "int32")
        batch, steps = ops.shape(decoder_inputs)[:2]
        seed = None
        if sampling_probability is not None:
            sampling_probability = ops.cast(sampling_probability, "float32")
            seed = keras.random.randint(
                (2,), 0, 2**30, dtype="int32", seed=self.seed_generator
            )
        # The loop reads, per step, the token and the step index t.
        positions = ops.broadcast_to(
            ops.arange(steps, dtype="int32")[None], (batch, steps)
        )
        inputs = ops.stack([decoder_inputs, positions], axis=-1)
        dtype = self.compute_dtype
        previous = ops.zeros((batch, self.units), dtype)
        flat_state = keras.tree.flatten(state)
        width = self.units
        if self.feeds_attention:
            width = width + ops.shape(state["memory"])[1]

        def step(inputs_t, loop_states):
            token, t = inputs_t[:, 0], inputs_t[0, 1]
            previous_outputs, *flat = loop_states
            step_state = keras.tree.pack_sequence_as(state, flat)
            if seed is not None:
                token = self._scheduled_token(
                    token, t, previous_outputs, seed, sampling_probability
                )
            outputs, step_state, alignments = self.step_outputs(
                token, step_state, training=training
            )
            both = outputs
            if alignments is not None:
                both = ops.concatenate(
                    [outputs, ops.cast(alignments, outputs.dtype)], axis=-1
                )
            return both, [outputs, *keras.tree.flatten(step_state)]

        _, both, _ = run_time_loop(
            step, inputs, [previous, *flat_state],
            zero_output=ops.zeros((batch, width), dtype),
            unroll=self._unrolled(training),
        )
        outputs = both[..., :self.units]
        logits = self.project(outputs)
        alignments = None
        if self.feeds_attention:
            alignments = both[..., self.units:]
        return logits, alignments

    def _scheduled_token(self, token, t, previous_outputs, seed,
                         sampling_probability):
        """Scheduled sampling at step ``t``: per row, with probability p,
        a token drawn from the previous step's ``softmax(logits)`` (no
        gradient) instead of ``token``; never at t = 0. The draws are a
        function of ``seed (2,)`` and t."""

        def scheduled():
            pairs = [ops.stack([seed[0] + k, seed[1] + t]) for k in (0, 1)]
            logits = ops.stop_gradient(self.project(previous_outputs))
            sampled = stateless_categorical(
                ops.cast(logits, "float32"), pairs[0]
            )
            coin = stateless_uniform(ops.shape(token), pairs[1])
            use = ops.logical_and(coin < sampling_probability, t > 0)
            return ops.where(use, sampled, token)

        return ops.cond(sampling_probability > 0, scheduled, lambda: token)

    def _unrolled(self, training):
        """JAX's ``lax.scan`` body cannot advance a ``SeedGenerator``, so
        a decoder that draws dropout masks in training runs a Python loop
        (its length is static on JAX) there."""
        if not training or keras.config.backend() != "jax":
            return False
        return self.dropout > 0 or any(
            cell.dropout > 0 or cell.recurrent_dropout > 0
            for cell in self.cells
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "cell": serialize_cell(self.cell),
                "num_layers": self.num_layers,
                "attention": self.attention,
                "attention_units": self.attention_units,
                "tie_embeddings": self.tie_embeddings,
                "dropout": self.dropout,
                "seed": self.seed,
                **initializers.serialize(self.initializers),
            }
        )
        return config
