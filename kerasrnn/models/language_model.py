"""``LanguageModel``: embedding -> deep LSTM/GRU stack -> softmax.

The recurrent language model of Zaremba et al. (2014), with the output
matrix optionally tied to the embedding (Press & Wolf 2017).
"""

import keras
import numpy as np
from keras import ops

from kerasrnn import decoding
from kerasrnn.validation import check_rate
from kerasrnn.validation import check_int
from kerasrnn.decoding.options import split_options
from kerasrnn.cells.registry import resolve_cell
from kerasrnn.cells.registry import sequence_layer
from kerasrnn.cells.registry import serialize_cell
from kerasrnn.models import initializers
from kerasrnn.models.decoder import stack_state_names
from kerasrnn.models.lm_data import Vocabulary



def _uniform(scale):
    if scale is None:
        return None
    return keras.initializers.RandomUniform(-scale, scale)


@keras.saving.register_keras_serializable(package="kerasrnn")
class LanguageModel(keras.Model):
    """A recurrent language model over a token vocabulary.

    For token ids ``x_1 .. x_T`` and states ``s_0`` (zeros or carried)::

        e_t         = dropout(E[x_t])                    E: (V, D)
        h_t, s_t    = RNN_stack(e_t, s_{t-1})            num_layers x H
        logits_t    = dropout(h_t) W + b                 W = Eᵀ if tied
        p(x_{t+1} | x_≤t) = softmax(logits_t)

    Training minimises the cross-entropy of ``logits_t`` against
    ``x_{t+1}``; perplexity is ``exp`` of its mean per token.

    Args:
        vocabulary_size: V.
        embedding_dim: D (must equal ``units`` when ``tie_weights``).
        units: H, the state size of every recurrent layer.
        num_layers: recurrent layers in the stack.
        cell: a registered cell with a sequence layer: its name
            (``"lstm"``, ``"gru"``..., ``kerasrnn.cells.cell_names()``), its
            class, or a cell object whose configuration (all but name and
            units) the layers copy.
        tie_weights: use the embedding matrix, transposed, as the output
            matrix: one shared variable (Press & Wolf 2017).
        embedding_dropout: dropout on the embeddings.
        inter_layer_dropout: dropout between recurrent layers.
        output_dropout: dropout on the last layer's outputs, before the
            softmax. (Zaremba et al.'s regularised models use one rate for
            all three: the non-recurrent connections.)
        init_scale: None for the initialiser arguments below; a number s
            initialises every weight (embedding, kernels, biases, softmax)
            uniformly in [-s, s] with no forget-gate bias offset, as Zaremba
            et al. do (s = 0.1 for the small model), and excludes them.
        embeddings_initializer: the embedding (None: N(0, 1), as
            ``Seq2Seq``'s; Keras' U(-0.05, 0.05) trains an Adam LM more
            slowly: tiny Shakespeare, 2 x 256 LSTM, one epoch, 1.974 vs
            1.750 nats/char, ``examples/char_lm.py
            --embeddings-initializer``).
        kernel_initializer, recurrent_initializer, bias_initializer: the
            recurrent cells' (Keras' defaults ``"glorot_uniform"``,
            ``"orthogonal"``, ``"zeros"``; ``recurrent_initializer=None``
            keeps the cell's own, e.g. the IndRNN's).
        output_initializer: the softmax kernel (default
            ``"glorot_uniform"``; its bias starts at zero).
        stateful: when ``call`` gets no ``initial_state``, start from the
            states carried from the previous call and store the final ones
            (for ``fit(..., shuffle=False)`` on ``stream_dataset``);
            ``reset_states()`` zeroes them. Needs ``batch_size``.
        batch_size: the fixed batch size of a stateful model.
        seed: seed of the dropout layers.
        vocabulary: optional ``lm_data.Vocabulary`` of the model, saved in
            its ``.keras`` file; ``generate`` uses it when given none.

    Call arguments:
        token_ids: int ``(B, T)``.
        initial_state: None or the flat list of ``num_layers`` state lists
            (``[h, c]`` per LSTM layer, ``[h]`` per GRU layer), each
            ``(B, H)``.
        training: enables dropout.
        return_state: also return the final states.

    Returns:
        ``logits (B, T, V)``, or ``(logits, states)`` with ``return_state``.

    Example:

    >>> model = LanguageModel(50, embedding_dim=16, units=16, num_layers=2,
    ...                       tie_weights=True)
    >>> logits, states = model(np.zeros((3, 7), "int32"), return_state=True)
    >>> tuple(logits.shape), len(states)
    ((3, 7, 50), 4)

    Reference:
        Zaremba, Sutskever, Vinyals, "Recurrent Neural Network
        Regularization", arXiv:1409.2329 (2014). Press & Wolf, "Using the
        Output Embedding to Improve Language Models", EACL 2017.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim=200,
        units=200,
        num_layers=2,
        cell="lstm",
        tie_weights=False,
        embedding_dropout=0.0,
        inter_layer_dropout=0.0,
        output_dropout=0.0,
        init_scale=None,
        stateful=False,
        batch_size=None,
        seed=None,
        vocabulary=None,
        embeddings_initializer=None,
        kernel_initializer="glorot_uniform",
        recurrent_initializer=None,
        bias_initializer="zeros",
        output_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(vocabulary, dict):
            vocabulary = keras.saving.deserialize_keras_object(vocabulary)
        if vocabulary is not None and (
            not isinstance(vocabulary, Vocabulary)
            or vocabulary.size != vocabulary_size
        ):
            raise ValueError(
                "`vocabulary` must be an lm_data.Vocabulary of "
                f"vocabulary_size={vocabulary_size} tokens. Received: "
                f"{getattr(vocabulary, 'size', type(vocabulary).__name__)}"
            )
        self.vocabulary = vocabulary
        for name, value in (("vocabulary_size", vocabulary_size),
                            ("embedding_dim", embedding_dim),
                            ("num_layers", num_layers)):
            check_int(name, value)
        spec, cell_template = resolve_cell(cell)
        layer_class = sequence_layer(spec)
        if tie_weights and embedding_dim != units:
            raise ValueError(
                "`tie_weights=True` uses the embedding as the output matrix, "
                "so `embedding_dim` must equal `units`. Received: "
                f"embedding_dim={embedding_dim}, units={units}"
            )
        if init_scale is not None and not (
            isinstance(init_scale, (int, float)) and init_scale > 0
        ):
            raise ValueError(
                "`init_scale` must be None or a number > 0. Received: "
                f"init_scale={init_scale!r}"
            )
        if stateful and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int)
            or batch_size < 1
        ):
            raise ValueError(
                "`stateful=True` needs the fixed `batch_size` (a positive "
                f"integer). Received: batch_size={batch_size!r}"
            )
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.units = check_int("units", units)
        self.num_layers = num_layers
        self.cell = cell
        self.tie_weights = bool(tie_weights)
        self.embedding_dropout = check_rate(
            "embedding_dropout", embedding_dropout
        )
        self.inter_layer_dropout = check_rate(
            "inter_layer_dropout", inter_layer_dropout
        )
        self.output_dropout = check_rate("output_dropout", output_dropout)
        self.init_scale = init_scale
        self.stateful = bool(stateful)
        self.batch_size = batch_size
        self.seed = seed

        if embeddings_initializer is None:
            embeddings_initializer = initializers.DEFAULTS[
                "embeddings_initializer"]
        initializers_given = {
            "embeddings_initializer": embeddings_initializer,
            "kernel_initializer": kernel_initializer,
            "recurrent_initializer": recurrent_initializer,
            "bias_initializer": bias_initializer,
            "output_initializer": output_initializer,
        }
        if init_scale is not None:
            initializers_given = {
                name: _uniform(init_scale) for name in initializers_given
            }
        self.initializers = {
            name: keras.initializers.get(value)
            for name, value in initializers_given.items()
        }
        init = self.initializers
        self.embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim,
            embeddings_initializer=init["embeddings_initializer"],
            name="embedding",
        )
        cell_arguments = {
            name: init[name] for name in (
                "kernel_initializer", "recurrent_initializer",
                "bias_initializer")
            if init[name] is not None
        }
        if init_scale is not None and (
            "unit_forget_bias" in layer_class.cell_arguments()
        ):
            cell_arguments["unit_forget_bias"] = False
        self.recurrent = layer_class(
            units,
            num_layers=num_layers,
            inter_layer_dropout=self.inter_layer_dropout,
            return_sequences=True,
            return_state=True,
            seed=seed,
            name="recurrent",
            **{**cell_arguments, **cell_template},
        )
        self.embedding_dropout_layer = keras.layers.Dropout(
            self.embedding_dropout, seed=seed
        )
        self.output_dropout_layer = keras.layers.Dropout(
            self.output_dropout, seed=None if seed is None else seed + 1
        )
        self.output_layer = None
        if not self.tie_weights:
            self.output_layer = keras.layers.Dense(
                vocabulary_size,
                kernel_initializer=init["output_initializer"],
                bias_initializer=_uniform(init_scale) or "zeros",
                name="softmax",
            )
        self.carried_states = None

    @property
    def state_names(self):
        """The name of each state tensor (``h_0``, ``c_0``, ``h_1``...), in
        the order ``call`` uses; exports name their tensors so."""
        return stack_state_names(self.recurrent.recurrent_layers[0].cell,
                                 self.num_layers)

    @property
    def state_size(self):
        """The size of each state tensor, in the order ``call`` uses."""
        return [self.units] * len(self.state_names)

    def build(self, token_ids_shape):
        batch = token_ids_shape[0]
        self.embedding.build(token_ids_shape)
        self.recurrent.build((batch, None, self.embedding_dim))
        if self.tie_weights:
            self.output_bias = self.add_weight(
                shape=(self.vocabulary_size,),
                initializer=_uniform(self.init_scale) or "zeros",
                name="softmax_bias",
            )
        else:
            self.output_layer.build((batch, None, self.units))
        if self.stateful:
            # Carried states are not weights (as in Keras' stateful RNNs):
            # they are neither saved nor trained.
            object.__setattr__(self, "carried_states", [
                keras.Variable(
                    ops.zeros((self.batch_size, size)), trainable=False,
                    name=f"carried_state_{index}",
                )
                for index, size in enumerate(self.state_size)
            ])
        self.built = True

    def initial_state(self, batch_size):
        """Zero states for ``batch_size`` rows."""
        return [ops.zeros((batch_size, size)) for size in self.state_size]

    def reset_states(self):
        """Zeroes the carried states of a stateful model."""
        if not self.stateful:
            raise AttributeError(
                "reset_states() applies to a model built with "
                "stateful=True. Received: stateful=False"
            )
        for variable in self.carried_states or []:
            variable.assign(ops.zeros_like(variable))

    def project(self, hidden):
        """Logits ``hidden W + b`` (``W = Eᵀ`` when tied)."""
        if self.output_layer is not None:
            return self.output_layer(hidden)
        return ops.matmul(
            hidden, ops.transpose(self.embedding.embeddings)
        ) + self.output_bias

    def call(self, token_ids, initial_state=None, training=False,
             return_state=False):
        if len(token_ids.shape) != 2:
            raise ValueError(
                "`token_ids` must have shape (batch, time). Received: "
                f"shape={tuple(token_ids.shape)}"
            )
        carry = self.stateful and initial_state is None
        if carry:
            if token_ids.shape[0] not in (None, self.batch_size):
                raise ValueError(
                    f"This stateful model carries states for batch_size="
                    f"{self.batch_size}. Received a batch of "
                    f"{token_ids.shape[0]}; pass `initial_state` for "
                    "other batch sizes."
                )
            initial_state = [ops.convert_to_tensor(v)
                             for v in self.carried_states]
        embedded = self.embedding_dropout_layer(
            self.embedding(token_ids), training=training
        )
        outputs, *states = self.recurrent(
            embedded, initial_state=initial_state, training=training
        )
        if carry:
            for variable, state in zip(self.carried_states, states):
                variable.assign(state)
        logits = self.project(
            self.output_dropout_layer(outputs, training=training)
        )
        if return_state:
            return logits, states
        return logits

    def step(self, token_ids, state):
        """One decoding step for ``kerasrnn.decoding``: ``token_ids``
        int ``(B,)`` and the state list -> ``(logits (B, V), state)``."""
        logits, state = self(
            ops.expand_dims(token_ids, 1), initial_state=list(state),
            return_state=True,
        )
        return logits[:, 0], state

    def generate(
        self,
        prompt,
        vocabulary=None,
        max_length=100,
        method="sample",
        temperature=1.0,
        top_k=None,
        top_p=None,
        stop_at_eos=False,
        seed=None,
        **options,
    ):
        """Continues ``prompt`` by ``kerasrnn.decoding``.

        The prompt is read into the state, then the search runs from its
        last token. At word level the prompt is preceded by ``<eos>`` (a
        sentence start), so an empty prompt is allowed.

        Args:
            prompt: a string, tokenised by ``vocabulary``; a token missing
                from it is an error naming the token.
            vocabulary: the ``lm_data.Vocabulary`` of the model (None: the
                one it was built with).
            max_length: tokens to generate.
            method: ``"greedy"``, ``"sample"`` or ``"beam"``.
            temperature, top_k, top_p, seed: sampling options (only for
                ``"sample"``; ``temperature`` must be > 0).
            stop_at_eos: stop at ``<eos>`` (word level).
            **options: further options of the search (``beam_width``,
                ``length_penalty_weight``, ``min_length``...; see
                ``kerasrnn.decoding.options.OPTIONS``).

        Returns:
            The generated continuation as text.
        """
        if vocabulary is None:
            vocabulary = self.vocabulary
        if vocabulary is None:
            raise ValueError(
                "generate() needs the `vocabulary`: pass it, or build the "
                "model with vocabulary=."
            )
        if vocabulary.size != self.vocabulary_size:
            raise ValueError(
                f"`vocabulary` has {vocabulary.size} tokens but the model "
                f"predicts {self.vocabulary_size}."
            )
        if not isinstance(prompt, str):
            raise TypeError(
                f"`prompt` must be a str. Received: {type(prompt).__name__}"
            )
        ids = list(vocabulary.encode_text(prompt, strict=True))
        if vocabulary.eos_id is not None:
            ids = [vocabulary.eos_id] + ids
        if not ids:
            raise ValueError(
                "`prompt` must hold at least one character for a "
                "character-level model. Received: prompt=''"
            )
        if method == "sample":
            options.update(
                temperature=temperature, top_k=top_k, top_p=top_p,
                seed=seed,
            )
        elif (temperature, top_k, top_p, seed) != (1.0, None, None, None):
            raise ValueError(
                "`temperature`, `top_k`, `top_p` and `seed` apply to "
                f"method='sample'. Received: method={method!r}"
            )
        split_options(method, max_length, options)   # checks every option
        state = self.initial_state(1)
        if len(ids) > 1:
            _, state = self(
                np.asarray([ids[:-1]], "int32"), initial_state=state,
                return_state=True,
            )
        end_id = vocabulary.eos_id if stop_at_eos else None
        result = decoding.decode(
            self.step, np.asarray(ids[-1:], "int32"), list(state), end_id,
            max_length, method=method, **options,
        )
        tokens = result.to_lists(strip_end=False)[0][0]
        return vocabulary.decode(tokens)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "num_layers": self.num_layers,
                "cell": serialize_cell(self.cell),
                "tie_weights": self.tie_weights,
                "embedding_dropout": self.embedding_dropout,
                "inter_layer_dropout": self.inter_layer_dropout,
                "output_dropout": self.output_dropout,
                "init_scale": self.init_scale,
                "stateful": self.stateful,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "vocabulary": keras.saving.serialize_keras_object(
                    self.vocabulary
                ),
            }
        )
        if self.init_scale is None:   # else init_scale sets every one
            config.update(
                {name: keras.initializers.serialize(value)
                 for name, value in self.initializers.items()}
            )
        return config
