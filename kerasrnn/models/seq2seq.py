"""``Seq2Seq``: an encoder-decoder ``keras.Model`` with attention, trained
with teacher forcing and scheduled sampling, decoding through
``kerasrnn.decoding``."""

import collections
import sys

import keras
import numpy as np
from keras import ops

from kerasrnn import decoding
from kerasrnn.validation import check_rate
from kerasrnn.validation import check_int
from kerasrnn.decoding.options import DTYPES
from kerasrnn.decoding.options import split_options
from kerasrnn.cells.registry import resolve_cell
from kerasrnn.cells.registry import sequence_layer
from kerasrnn.cells.registry import serialize_cell
from kerasrnn.models import initializers
from kerasrnn.models import text
from kerasrnn.models.decoder import RecurrentDecoder
from kerasrnn.validation import check_choice
from kerasrnn.models.metrics import MaskedTokenAccuracy
from kerasrnn.models.metrics import Perplexity
from kerasrnn.models.metrics import SequenceExactMatch
from kerasrnn.models.stateless import model_function
from kerasrnn.models.stateless import run_stateless
from kerasrnn.decoding.tensors import is_concrete
from kerasrnn.decoding.tensors import random_seed

BRIDGES = ("zero", "copy", "dense")
# Traced generate() graphs kept per model (one per method and static
# options).
GENERATE_CACHE_SIZE = 8


@keras.saving.register_keras_serializable(package="kerasrnn")
class Seq2Seq(keras.Model):
    """Encoder-decoder for sequence-to-sequence tasks.

    Shapes: source ``x (B, S)`` and target ``y (B, T)`` int ids, padded
    with ``pad_id``; a target is ``[bos, y_1, ..., y_n, eos, pad, ...]``
    (``kerasrnn.models.text`` builds them). The model trains on
    ``decoder input = y[:, :-1]`` against ``labels = y[:, 1:]``, padding
    masked out of the loss and the metrics::

        memory, states = Encoder(E_src x)        kerasrnn LSTM/GRU/SimpleRNN
        s_0 = bridge(states)                     zero | copy | dense
        logits_t = Decoder(y_{t-1}, s_{t-1}, memory)   see RecurrentDecoder

    Args:
        source_vocabulary_size, target_vocabulary_size: V_src, V_tgt.
        bos_id, eos_id: target start and end tokens; pad_id: padding of
            both sides (default 0).
        embedding_dim: size of both embeddings.
        units: H, the decoder's state size. A bidirectional encoder has
            H/2 units per direction (H must be even), so its concatenated
            outputs and states have size H.
        cell: both sides' cell, a registered one: its name (``"lstm"``,
            ``"gru"``, ``"simple_rnn"``..., ``kerasrnn.cells.cell_names()``),
            its class, or a cell object whose configuration (all but name
            and units) every cell copies.
        encoder_layers, decoder_layers: stacked layers.
        bidirectional: bidirectional encoder.
        bridge: encoder final states -> decoder initial states:
            ``"zero"`` (zeros), ``"copy"`` (layer l to layer l; needs as
            many layers; a bidirectional layer gives [forward; backward])
            or ``"dense"`` (one linear map of all final states).
        attention: None, ``"bahdanau"``, ``"luong_dot"``,
            ``"luong_general"``.
        attention_units: Bahdanau score size (default H).
        tie_embeddings: output layer shares the target embedding.
        dropout: on embeddings, between layers and on the decoder output.
        max_source_length: longer sources are an error (None: no limit).
        max_target_length: default ``max_length`` of ``generate``.
        seed: seed of dropout and scheduled sampling.
        embeddings_initializer: both embeddings (None: N(0, 1), PyTorch's
            ``nn.Embedding`` default; Keras' uniform ±0.05 trains several
            times more slowly, see ``kerasrnn.models.initializers``).
        kernel_initializer: the cells' input kernels W, encoder and
            decoder (None: ``"glorot_uniform"``).
        recurrent_initializer: the cells' recurrent kernels U (None: the
            cell's default, ``"orthogonal"`` for a dense ``U``).
        bias_initializer: the biases of the cells, the attention and the
            output layer (None: ``"zeros"``).
        attention_initializer: the attention's kernels (None: uniform in
            ±1/√fan_in, PyTorch's ``nn.Linear`` default; measured better
            than Glorot here, see ``kerasrnn.models.initializers``).
        output_initializer: the kernels of the bridge, the attentional
            layer and the output layer (None: as ``attention_initializer``).
        source_tokenizer, target_tokenizer: optional
            ``kerasrnn.models.text.Tokenizer`` s of the two sides, saved in
            the model's ``.keras`` file: ``generate_text`` then turns text
            into text. Their vocabulary sizes and BOS/EOS ids must match.

    Scheduled sampling: ``sampling_probability`` (a non-trainable
    variable, 0 by default, set by the ``ScheduledSampling`` callback) is
    the probability that a decoder step reads a token sampled from the
    model's own previous output instead of the ground truth, in
    ``train_step`` only. ``test_step`` is always teacher-forced.

    ``compile()`` defaults to ``default_optimizer()`` (Adam 1e-3, epsilon
    1e-8, gradients clipped to a global norm of 1), token cross-entropy on
    logits and the
    metrics token accuracy, perplexity and exact match.
    ``predict`` returns greedy ids ``(B, max_target_length)``.

    Example:

    >>> model = Seq2Seq(12, 12, bos_id=1, eos_id=2, units=16,
    ...                 attention="luong_general")
    >>> model.compile()
    >>> result = model.generate(np.array([[3, 4, 5]]), method="beam",
    ...                         beam_width=3)
    >>> tuple(result.ids.shape)
    (1, 1, 64)
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        bos_id,
        eos_id,
        pad_id=0,
        embedding_dim=64,
        units=128,
        cell="lstm",
        encoder_layers=1,
        decoder_layers=1,
        bidirectional=False,
        bridge="copy",
        attention=None,
        attention_units=None,
        tie_embeddings=False,
        dropout=0.0,
        max_source_length=None,
        max_target_length=64,
        seed=None,
        embeddings_initializer=None,
        kernel_initializer=None,
        recurrent_initializer=None,
        bias_initializer=None,
        attention_initializer=None,
        output_initializer=None,
        source_tokenizer=None,
        target_tokenizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_tokenizer = _tokenizer(
            "source_tokenizer", source_tokenizer, source_vocabulary_size
        )
        self.target_tokenizer = _tokenizer(
            "target_tokenizer", target_tokenizer, target_vocabulary_size,
            bos_id=bos_id, eos_id=eos_id,
        )
        self.initializers = initializers.resolve(locals())
        init = self.initializers
        self.source_vocabulary_size = check_int(
            "source_vocabulary_size", source_vocabulary_size
        )
        self.target_vocabulary_size = check_int(
            "target_vocabulary_size", target_vocabulary_size
        )
        check_special_ids(target_vocabulary_size, bos_id, eos_id, pad_id)
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.embedding_dim = check_int("embedding_dim", embedding_dim)
        self.units = check_int("units", units)
        spec, cell_template = resolve_cell(cell)
        self.cell = cell
        self.encoder_layers = check_int(
            "encoder_layers", encoder_layers
        )
        self.decoder_layers = check_int(
            "decoder_layers", decoder_layers
        )
        self.bidirectional = bool(bidirectional)
        if self.bidirectional and units % 2:
            raise ValueError(
                "A bidirectional encoder splits `units` between its two "
                f"directions, so `units` must be even. Received: units={units}"
            )
        self.bridge = check_choice("bridge", bridge, BRIDGES)
        if bridge == "copy" and encoder_layers != decoder_layers:
            raise ValueError(
                "bridge='copy' maps encoder layer l to decoder layer l and "
                "needs as many layers on both sides. Received: "
                f"encoder_layers={encoder_layers}, "
                f"decoder_layers={decoder_layers}; use bridge='dense' or "
                "'zero'."
            )
        self.attention = attention
        self.attention_units = attention_units
        self.tie_embeddings = bool(tie_embeddings)
        self.dropout = check_rate("dropout", dropout)
        if max_source_length is not None:
            check_int("max_source_length", max_source_length)
        self.max_source_length = max_source_length
        self.max_target_length = check_int(
            "max_target_length", max_target_length
        )
        self.seed = seed

        self.source_embedding = keras.layers.Embedding(
            source_vocabulary_size, embedding_dim,
            **initializers.fresh(init, "embeddings_initializer"),
            name="source_embedding",
        )
        self.source_dropout = keras.layers.Dropout(
            self.dropout, seed=seed, name="source_dropout"
        )
        directions = 2 if self.bidirectional else 1
        self.encoder = sequence_layer(spec)(
            units // directions,
            num_layers=encoder_layers,
            bidirectional=self.bidirectional,
            inter_layer_dropout=self.dropout,
            return_sequences=True,
            return_state=True,
            name="encoder",
            **{**initializers.cell_arguments(init), **cell_template},
        )
        self.states_per_cell = len(self.encoder.state_size)
        self.bridge_dense = None
        if bridge == "dense":
            self.bridge_dense = keras.layers.Dense(
                decoder_layers * self.states_per_cell * units,
                kernel_initializer=initializers.fresh_one(
                    init, "output_initializer"),
                bias_initializer=initializers.fresh_one(
                    init, "bias_initializer"),
                name="bridge",
            )
        self.decoder = RecurrentDecoder(
            target_vocabulary_size,
            embedding_dim,
            units,
            cell=cell,
            num_layers=decoder_layers,
            attention=attention,
            attention_units=attention_units,
            tie_embeddings=tie_embeddings,
            dropout=self.dropout,
            seed=seed,
            name="decoder",
            **initializers.fresh(init),
        )
        self.sampling_probability = self.add_weight(
            shape=(), initializer="zeros", trainable=False,
            name="sampling_probability",
        )
        self._generate_functions = collections.OrderedDict()
        self.build()

    def build(self, input_shape=None):
        self.source_embedding.build((None, None))
        self.encoder.build((None, None, self.embedding_dim))
        if self.bridge_dense is not None:
            directions = 2 if self.bidirectional else 1
            self.bridge_dense.build(
                (None, self.encoder_layers * self.states_per_cell
                 * directions * (self.units // directions))
            )
        self.decoder.build((None, None, self.units))
        self.built = True

    # --- forward ------------------------------------------------------------

    def encode(self, source, training=False):
        """Runs the encoder and the bridge; returns the decoder's first
        state (see ``RecurrentDecoder``)."""
        source = ops.cast(source, "int32")
        mask = ops.not_equal(source, self.pad_id)
        embedded = self.source_dropout(
            self.source_embedding(source), training=training
        )
        memory, *final_states = self.encoder(
            embedded, mask=mask, training=training
        )
        cell_states = self._bridge(final_states, ops.shape(source)[0])
        if self.decoder.feeds_attention:
            return self.decoder.initial_state(cell_states, memory, mask)
        return self.decoder.initial_state(cell_states)

    def _bridge(self, final_states, batch):
        per_cell = self.states_per_cell
        if self.bridge == "zero":
            return [
                cell.get_initial_state(batch) for cell in self.decoder.cells
            ]
        if self.bridge == "dense":
            flat = ops.split(
                self.bridge_dense(ops.concatenate(final_states, axis=-1)),
                self.decoder_layers * per_cell,
                axis=-1,
            )
            return [
                flat[layer * per_cell:(layer + 1) * per_cell]
                for layer in range(self.decoder_layers)
            ]
        # Copy: the encoder lists states layer-major, forward then backward.
        directions = 2 if self.bidirectional else 1
        cell_states = []
        for layer in range(self.decoder_layers):
            start = layer * directions * per_cell
            cell_states.append([
                ops.concatenate(
                    [final_states[start + d * per_cell + k]
                     for d in range(directions)],
                    axis=-1,
                )
                for k in range(per_cell)
            ])
        return cell_states

    def decode_step(self, token_ids, state):
        """The ``kerasrnn.decoding`` step function: ``(token_ids (B,),
        state) -> (logits (B, V), state)``."""
        logits, state, _ = self.decoder.step(token_ids, state)
        return logits, state

    def teacher_forced(
        self, source, decoder_inputs, sampling_probability=None,
        training=False,
    ):
        """``(logits (B, T, V), alignments (B, T, S) or None)`` for the
        decoder inputs ``(B, T)`` (a target without its last token)."""
        state = self.encode(source, training=training)
        return self.decoder(
            decoder_inputs, state, sampling_probability=sampling_probability,
            training=training,
        )

    def call(self, inputs, training=False):
        source, decoder_inputs = _unpack_inputs(inputs)
        logits, _ = self.teacher_forced(
            source, decoder_inputs, training=training
        )
        return logits

    def alignments(self, source, target):
        """Attention weights ``(B, T-1, S)`` of the teacher-forced target
        ``[bos, ..., eos]`` (equal to those seen while generating it)."""
        if not self.decoder.feeds_attention:
            raise ValueError(
                "alignments() needs a model with attention. Received: "
                "attention=None"
            )
        target = ops.convert_to_tensor(target, "int32")
        return self.teacher_forced(source, target[:, :-1])[1]

    # --- training -----------------------------------------------------------

    def compile(self, optimizer=None, loss=None, metrics=None, **kwargs):
        """``keras.Model.compile`` with this model's defaults: the
        optimizer ``default_optimizer()``, the token cross-entropy and the
        padding-aware metrics."""
        if optimizer is None:
            optimizer = default_optimizer()
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True
            )
        if metrics is None:
            metrics = [
                MaskedTokenAccuracy(self.pad_id),
                Perplexity(self.pad_id),
                SequenceExactMatch(self.pad_id),
            ]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        **kwargs)
        # Build the compiled loss and metrics on one all-padding token (zero
        # weight, so no state changes). Otherwise fit() under a distribution
        # strategy builds them from model(x) alone, which has no target.
        labels = ops.zeros((1, 1), "int32")
        logits = ops.zeros((1, 1, self.target_vocabulary_size))
        weights = ops.zeros((1, 1))
        self.compute_loss(y=labels, y_pred=logits, sample_weight=weights)
        self.compute_metrics(None, labels, logits, sample_weight=weights)
        self.reset_metrics()

    def compile_from_config(self, config):
        """Compiles a model loaded from a ``.keras`` file as it was saved
        (Keras skips a custom ``compile`` unless the model restores it);
        the optimizer's variables are then loaded by Keras."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit``, after checking the data eagerly (all of
        it for arrays, the first batch of a dataset); see
        ``check_pairs``."""
        self.check_pairs(*_first_pair(x, y))
        validation = kwargs.get("validation_data")
        if validation is not None:
            self.check_pairs(*_first_pair(validation, None),
                             what="validation_data")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``, after ``check_pairs`` as in ``fit``."""
        self.check_pairs(*_first_pair(x, y))
        return super().evaluate(x, y, *args, **kwargs)

    def check_pairs(self, source, target, what="training data"):
        """Checks ``(source (B, S), target (B, T))`` ids before training,
        naming the first bad row: ids outside the vocabularies, a target
        that does not start with ``bos_id``, or one with no token after
        BOS (nothing to learn from: its loss would be 0)."""
        if source is None or target is None:
            return
        _check_ids(what, "source", np.asarray(source),
                   self.source_vocabulary_size)
        self.check_targets(target, what)

    def check_targets(self, target, what="training data"):
        """The target half of ``check_pairs``."""
        target = np.asarray(target)
        _check_ids(what, "target", target, self.target_vocabulary_size)
        if target.shape[1] == 0 or target.shape[0] == 0:
            return
        wrong_start = np.flatnonzero(target[:, 0] != self.bos_id)
        if wrong_start.size:
            row = int(wrong_start[0])
            raise ValueError(
                f"{what}: target row {row} starts with id "
                f"{int(target[row, 0])}; every target must be [bos_id="
                f"{self.bos_id}, ..., eos_id={self.eos_id}] (see "
                "kerasrnn.models.text.add_bos_eos or Tokenizer.encode("
                "..., bos_eos=True))."
            )
        empty = np.flatnonzero(
            np.all(target[:, 1:] == self.pad_id, axis=1)
        )
        if empty.size:
            row = int(empty[0])
            raise ValueError(
                f"{what}: target row {row} has no token after BOS "
                f"({int(empty.size)} such rows): nothing to predict, so it "
                "would train with loss 0. A target needs at least its "
                f"eos_id={self.eos_id}."
            )

    def _shift(self, target, sample_weight):
        """Decoder inputs, labels and ``(B, T-1)`` weights (0 at padding)."""
        target = ops.cast(target, "int32")
        if len(target.shape) != 2:
            raise ValueError(
                "Targets must be int ids of shape (batch, time). Received: "
                f"shape={tuple(target.shape)}"
            )
        message = (f"Every target must start with bos_id={self.bos_id} "
                   "(see kerasrnn.models.text.add_bos_eos).")
        if keras.config.backend() == "tensorflow":
            import tensorflow as tf

            tf.debugging.assert_equal(target[:, 0], self.bos_id,
                                      message=message)
        elif is_concrete(target):
            # (Under a JAX trace the data were checked by fit/evaluate.)
            first = ops.convert_to_numpy(target[:, 0])
            if np.any(first != self.bos_id):
                raise ValueError(
                    f"{message} Received: first ids {first.tolist()}"
                )
        labels = target[:, 1:]
        weights = ops.cast(ops.not_equal(labels, self.pad_id), "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            if len(sample_weight.shape) == 1:
                sample_weight = ops.expand_dims(sample_weight, -1)
            weights = weights * sample_weight
        return target[:, :-1], labels, weights

    def _token_loss(self, source, labels, logits, weights, training):
        """``(loss, global token weight)``: the loss is this replica's
        share of the mean over the real tokens of the global batch,
        ``Σ_replica w·CE / Σ_global w`` (plus regularisation), so that
        the replicas' summed gradients are those of one device.

        Keras' default reduction divides by the local batch size and by
        the number of replicas; the weights are scaled to undo both."""
        total = global_sum(ops.sum(weights))
        replicas = _replicas()
        size = ops.cast(ops.size(weights) * replicas, "float32")
        normalised = weights * ops.divide_no_nan(size, total)
        loss = self.compute_loss(
            x=source, y=labels, y_pred=logits, sample_weight=normalised,
            training=training,
        )
        return loss, total

    def _update_metrics(self, source, labels, logits, weights, loss, total):
        local = ops.sum(weights)
        for metric in self.metrics:
            if metric.name == "loss":
                # Token-weighted, so the epoch loss is the mean token NLL:
                # this replica adds Σ_replica w·CE (its loss × Σ_global w).
                metric.update_state(
                    ops.divide_no_nan(loss * total, local),
                    sample_weight=local,
                )
        return self.compute_metrics(
            source, labels, logits, sample_weight=weights
        )

    def _loss(self, data, training):
        """The token loss of one batch (teacher forcing; in training with
        scheduled sampling) and what ``_update_metrics`` reads."""
        source, target, sample_weight = keras.utils.unpack_x_y_sample_weight(
            data
        )
        decoder_inputs, labels, weights = self._shift(target, sample_weight)
        logits, _ = self.teacher_forced(
            source, decoder_inputs,
            sampling_probability=(
                self.sampling_probability if training else None),
            training=training,
        )
        loss, total = self._token_loss(
            source, labels, logits, weights, training
        )
        return loss, (source, labels, logits, weights, loss, total)

    # Each backend's train_step is the one of the Keras guides
    # "Customizing what happens in fit()": a GradientTape on TensorFlow,
    # jax.value_and_grad of a stateless loss on JAX, backward() on PyTorch;
    # the loss, the metrics and the update are the same code.

    def train_step(self, *args):
        backend = keras.config.backend()
        if backend == "jax":
            return self._jax_train_step(*args)
        (data,) = args
        variables = self.trainable_variables
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss, outputs = self._loss(data, True)
                scaled = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, variables)
            self.optimizer.apply(gradients, variables)
        else:
            import torch

            self.zero_grad()
            loss, outputs = self._loss(data, True)
            self.optimizer.scale_loss(loss).backward()
            gradients = [variable.value.grad for variable in variables]
            with torch.no_grad():
                self.optimizer.apply(gradients, variables)
        return self._update_metrics(*outputs)

    def test_step(self, *args):
        if keras.config.backend() == "jax":
            return self._jax_test_step(*args)
        (data,) = args
        _, outputs = self._loss(data, False)
        return self._update_metrics(*outputs)

    def _jax_loss(self, trainable, non_trainable, metrics, data, training,
                  optimizer=None):
        """``_loss`` as a pure function of the variables' values (for
        ``jax.value_and_grad``): ``(scaled loss, (outputs, non_trainable,
        metrics))`` with the values the step left (seed generators...)."""
        groups = [(self.trainable_variables, trainable),
                  (self.non_trainable_variables, non_trainable),
                  (self.metrics_variables, metrics)]
        if optimizer is not None:
            groups.append((self.optimizer.variables, optimizer))

        def scaled_loss():
            loss, outputs = self._loss(data, training)
            scaled = self.optimizer.scale_loss(loss) if training else loss
            return scaled, outputs

        (scaled, outputs), (_, non_trainable, metrics, *_) = run_stateless(
            groups, scaled_loss)
        return scaled, (outputs, non_trainable, metrics)

    def _jax_metrics(self, metrics, outputs):
        logs, (metrics,) = run_stateless(
            [(self.metrics_variables, metrics)], self._update_metrics,
            *outputs)
        return logs, metrics

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer, metrics = state
        (_, (outputs, non_trainable, metrics)), gradients = (
            jax.value_and_grad(self._jax_loss, has_aux=True)(
                trainable, non_trainable, metrics, data, True, optimizer
            )
        )
        trainable, optimizer = self.optimizer.stateless_apply(
            optimizer, gradients, trainable
        )
        logs, metrics = self._jax_metrics(metrics, outputs)
        return logs, (trainable, non_trainable, optimizer, metrics)

    def _jax_test_step(self, state, data):
        trainable, non_trainable, metrics = state
        _, (outputs, non_trainable, metrics) = self._jax_loss(
            trainable, non_trainable, metrics, data, False
        )
        logs, metrics = self._jax_metrics(metrics, outputs)
        return logs, (trainable, non_trainable, metrics)

    def predict_step(self, *args):
        if keras.config.backend() == "jax":
            (trainable, non_trainable), data = args
            return model_function(self, self._predict_ids)(
                trainable, non_trainable, data)
        return self._predict_ids(*args)

    def _predict_ids(self, data):
        source, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(source, (tuple, list)):
            source = source[0]
        return self._search(source, "greedy", self.max_target_length).ids[
            :, 0
        ]

    # --- generation ---------------------------------------------------------

    def check_source(self, source):
        """``source`` as an int32 ``(B, S)`` tensor; empty, too long or
        out-of-vocabulary ids are errors."""
        source = ops.convert_to_tensor(source)
        if len(source.shape) != 2:
            raise ValueError(
                "`source` must hold int token ids of shape (batch, time). "
                f"Received: shape={tuple(source.shape)}"
            )
        if "int" not in str(source.dtype):
            raise TypeError(
                "`source` must hold integer token ids (tokenize text first, "
                f"e.g. with kerasrnn.models.text). Received: "
                f"dtype={source.dtype}"
            )
        length = source.shape[1]
        if length == 0:
            raise ValueError(
                "`source` is empty (time axis of length 0). Received: "
                f"shape={tuple(source.shape)}"
            )
        if self.max_source_length is not None and length is not None and (
            length > self.max_source_length
        ):
            raise ValueError(
                f"`source` has {length} steps, more than "
                f"max_source_length={self.max_source_length}."
            )
        if is_concrete(source):
            values = ops.convert_to_numpy(source)
            if values.size and (
                values.min() < 0
                or values.max() >= self.source_vocabulary_size
            ):
                raise ValueError(
                    "`source` ids must lie in [0, source_vocabulary_size="
                    f"{self.source_vocabulary_size}). Received: ids in "
                    f"[{values.min()}, {values.max()}]"
                )
        return ops.cast(source, "int32")

    def source_spec(self):
        """The ``tf.TensorSpec`` of the sources ``generate`` traces for:
        int32 ids ``(B, S)``."""
        import tensorflow as tf

        return tf.TensorSpec([None, None], "int32")

    def _search(self, source, method, max_length, **options):
        state = self.encode(source)
        start = ops.full((ops.shape(source)[0],), self.bos_id, "int32")
        return decoding.decode(
            self.decode_step, start, state, end_id=self.eos_id,
            max_length=max_length, method=method, pad_id=self.pad_id,
            forbidden_ids=(self.pad_id, self.bos_id), **options,
        )

    def generate(self, source, method="greedy", max_length=None, **options):
        """Decodes ``source (B, S)`` with ``kerasrnn.decoding``.

        Padding and BOS are never generated. Options are checked before
        anything runs; per-call values (``max_length``, ``min_length``,
        ``seed``, ``temperature``, ``top_k``, ``top_p``,
        ``length_penalty_weight``) are passed to one traced graph as
        tensors, so changing them costs no new trace; a graph is kept per
        method and ``beam_width``/``num_return``/``num_samples``, at most
        ``GENERATE_CACHE_SIZE`` of them (least recently used dropped).
        The graph is a ``tf.function`` on TensorFlow and a ``jax.jit``
        function on JAX (there ``max_length``, which sets the buffers'
        shapes, is part of the key); PyTorch runs the search eagerly.

        Args:
            source: int ids ``(B, S)``, padded with ``pad_id``.
            method: ``"greedy"``, ``"sample"`` or ``"beam"``.
            max_length: most generated tokens (default
                ``max_target_length``), the end token included.
            **options: the search's options
                (``kerasrnn.decoding.options.OPTIONS``): greedy
                ``min_length``; sample ``temperature``, ``top_k``,
                ``top_p``, ``seed``, ``num_samples``, ``min_length``; beam
                ``beam_width``, ``length_penalty_weight``, ``num_return``,
                ``min_length``.

        Returns:
            A ``kerasrnn.decoding.DecodingResult``; ``ids (B, K, T)`` start
            after BOS and end with EOS, then ``pad_id``.
        """
        if max_length is None:
            max_length = self.max_target_length
        static, dynamic = split_options(method, max_length, options)
        source = self.check_source(source)
        backend = keras.config.backend()
        if backend != "tensorflow" and method == "sample" and (
            "seed" not in dynamic
        ):
            # Drawn here, eagerly (a JAX trace cannot use the global
            # generator).
            dynamic["seed"] = random_seed()
        if backend == "torch":
            return self._search(source, method, **static, **dynamic)
        if backend == "jax":
            # max_length sets the buffers' shapes: static under jax.jit.
            static = dict(static, max_length=dynamic.pop("max_length"))
        key = (method, tuple(sorted(static.items())), tuple(sorted(dynamic)))
        function = self._generate_functions.pop(key, None)
        if function is None:
            build = (self._jax_generate_function if backend == "jax"
                     else self._tf_generate_function)
            function = build(method, static, dynamic)
        self._generate_functions[key] = function
        while len(self._generate_functions) > GENERATE_CACHE_SIZE:
            self._generate_functions.popitem(last=False)
        return function(source, dynamic)

    def _tf_generate_function(self, method, static, dynamic):
        """One ``tf.function`` of the search, the dynamic options as scalar
        tensors."""
        import tensorflow as tf

        return tf.function(
            lambda ids, values: self._search(ids, method, **static, **values),
            input_signature=[
                self.source_spec(),
                {k: tf.TensorSpec([], v.dtype) for k, v in dynamic.items()},
            ],
        )

    def _jax_generate_function(self, method, static, dynamic):
        """The search as one ``jax.jit`` function of the variables' values,
        the source and the dynamic options (scalar arrays)."""
        import jax

        variables = [*self.trainable_variables, *self.non_trainable_variables]

        def search(values, ids, options):
            result, _ = run_stateless(
                [(variables, values)],
                lambda: self._search(ids, method, **static, **options))
            return result

        compiled = jax.jit(search)

        def function(ids, options):
            options = {k: np.asarray(v, DTYPES[k]) for k, v in options.items()}
            return compiled([v.value for v in variables], ids, options)

        return function

    def generate_text(self, texts, method="greedy", max_length=None,
                      **options):
        """Translates ``texts`` (a str or a list of them) with the model's
        own tokenizers: the best hypothesis of each, as text (see
        ``generate`` for the arguments)."""
        if self.source_tokenizer is None or self.target_tokenizer is None:
            raise ValueError(
                "generate_text() needs the tokenizers: build the model with "
                "source_tokenizer= and target_tokenizer= (or call "
                "generate() on ids)."
            )
        if isinstance(texts, str):
            texts = [texts]
        ids = self.source_tokenizer.encode(texts)
        empty = np.flatnonzero(ids.row_lengths().numpy() == 0)
        if empty.size:
            raise ValueError(
                f"Text {int(empty[0])} has no tokens: {texts[empty[0]]!r}"
            )
        source = ids.to_tensor(default_value=self.pad_id).numpy()
        result = self.generate(source, method=method, max_length=max_length,
                               **options)
        return self.target_tokenizer.decode(
            ops.convert_to_numpy(result.ids)[:, 0]
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source_vocabulary_size": self.source_vocabulary_size,
                "target_vocabulary_size": self.target_vocabulary_size,
                "bos_id": self.bos_id,
                "eos_id": self.eos_id,
                "pad_id": self.pad_id,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "cell": serialize_cell(self.cell),
                "encoder_layers": self.encoder_layers,
                "decoder_layers": self.decoder_layers,
                "bidirectional": self.bidirectional,
                "bridge": self.bridge,
                "attention": self.attention,
                "attention_units": self.attention_units,
                "tie_embeddings": self.tie_embeddings,
                "dropout": self.dropout,
                "max_source_length": self.max_source_length,
                "max_target_length": self.max_target_length,
                "seed": self.seed,
                **initializers.serialize(self.initializers),
                "source_tokenizer": keras.saving.serialize_keras_object(
                    self.source_tokenizer
                ),
                "target_tokenizer": keras.saving.serialize_keras_object(
                    self.target_tokenizer
                ),
            }
        )
        return config


def check_special_ids(vocabulary_size, bos_id, eos_id, pad_id):
    """Raises a ValueError unless BOS, EOS and padding are three different
    ids of the target vocabulary."""
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id),
                        ("pad_id", pad_id)):
        if isinstance(value, bool) or not isinstance(value, int) or not (
            0 <= value < vocabulary_size
        ):
            raise ValueError(
                f"`{name}` must be a token id in [0, "
                f"target_vocabulary_size={vocabulary_size}). "
                f"Received: {name}={value!r}"
            )
    if len({bos_id, eos_id, pad_id}) != 3:
        raise ValueError(
            "`bos_id`, `eos_id` and `pad_id` must be three different "
            f"tokens. Received: bos_id={bos_id}, eos_id={eos_id}, "
            f"pad_id={pad_id}"
        )


def default_optimizer(learning_rate=1e-3):
    """Adam with PyTorch's epsilon (1e-8; Keras' default is 1e-7) and the
    gradient clipped to a global norm of 1 (``global_clipnorm``: the norm
    of all gradients together, as ``torch.nn.utils.clip_grad_norm_``;
    Keras' ``clipnorm`` clips each variable on its own). Measured on
    English-French (``benchmarks/seq2seq_vs_torch.py``): +1.7 greedy BLEU
    over ``Adam(clipnorm=1.0)``."""
    return keras.optimizers.Adam(
        learning_rate, epsilon=1e-8, global_clipnorm=1.0
    )


def _tokenizer(name, tokenizer, vocabulary_size, bos_id=None, eos_id=None):
    """``tokenizer`` (a ``text.Tokenizer``, its serialised config, or
    None), checked against the model's vocabulary and special ids."""
    if tokenizer is None:
        return None
    if isinstance(tokenizer, dict):
        tokenizer = keras.saving.deserialize_keras_object(tokenizer)
    if not isinstance(tokenizer, text.Tokenizer):
        raise TypeError(
            f"`{name}` must be a kerasrnn.models.text.Tokenizer. Received: "
            f"{type(tokenizer).__name__}"
        )
    if tokenizer.vocabulary_size != vocabulary_size:
        raise ValueError(
            f"`{name}` has {tokenizer.vocabulary_size} tokens but the model's "
            f"vocabulary has {vocabulary_size}."
        )
    if bos_id is not None and (tokenizer.bos_id, tokenizer.eos_id) != (
        bos_id, eos_id
    ):
        raise ValueError(
            f"`{name}` has bos_id={tokenizer.bos_id}, eos_id="
            f"{tokenizer.eos_id}; the model has bos_id={bos_id}, "
            f"eos_id={eos_id}."
        )
    return tokenizer


def global_sum(value):
    """``value`` summed over the replicas of a ``tf.distribute`` strategy
    (itself outside one, on one replica, or off TensorFlow)."""
    if keras.config.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _replicas():
    """Replicas in sync: a ``tf.distribute`` strategy's, 1 elsewhere."""
    if keras.config.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _check_ids(what, name, ids, size):
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{what}: the {name} must hold int token ids of shape "
            f"(batch, time). Received: shape={ids.shape}, "
            f"dtype={ids.dtype}"
        )
    bad = (ids < 0) | (ids >= size)
    if bad.any():
        row, step = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(
            f"{what}: {name} row {row}, step {step} holds id "
            f"{int(ids[row, step])}, outside [0, {name}_vocabulary_"
            f"size={size})."
        )


def _first_pair(x, y):
    """``(source, target)`` as numpy arrays: ``x``/``y`` themselves, or the
    first element of a ``tf.data.Dataset`` or of a tuple ``x``
    (``(source, target[, weights])``); ``(None, None)`` for input it
    cannot look into without consuming it (a Python generator or a
    ``keras.utils.PyDataset``, checked batch by batch in the graph)."""
    # Datasets and tf.Tensors exist only once TensorFlow is imported.
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, tf.data.Dataset):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(
            next(iter(x.take(1)))
        )
    elif y is None and isinstance(x, (tuple, list)) and len(x) in (2, 3):
        x, y = x[0], x[1]
    if isinstance(x, (dict, tuple, list)) or y is None:
        return None, None
    tensor = (tf.Tensor,) if tf is not None else ()
    if not isinstance(x, (np.ndarray, *tensor)) and not hasattr(
        x, "__array__"
    ):
        return None, None
    return np.asarray(x), np.asarray(y)


def _unpack_inputs(inputs):
    if isinstance(inputs, dict):
        missing = {"source", "decoder_inputs"} - set(inputs)
        if missing:
            raise ValueError(
                "Seq2Seq inputs as a dict need the keys 'source' and "
                f"'decoder_inputs'. Received keys: {sorted(inputs)}"
            )
        return inputs["source"], inputs["decoder_inputs"]
    if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
        return inputs
    raise ValueError(
        "Seq2Seq.call expects (source, decoder_inputs), two int tensors "
        "(B, S) and (B, T). To generate from a source alone use "
        f"generate(). Received: {type(inputs).__name__}"
    )
