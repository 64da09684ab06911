"""``ImageCaptioner``: a ``Seq2Seq`` whose encoder reads an image.

Show and Tell (Vinyals et al. 2015) and Show, Attend and Tell (Xu et al.
2015) with the decoder, attention, ``train_step`` (teacher forcing,
scheduled sampling), metrics and decoding of ``Seq2Seq``; only the encoder
differs::

    a = CNN(I)                       feature map (B, h, w, D), any Keras
                                     image model (``conv_encoder``, a
                                     ``keras.applications`` backbone...)
    memory = reshape(a, (B, h·w, D)) the annotation vectors a_1..a_L
    s_0 = tanh(W_init mean_i a_i + b) every decoder state (each layer's h,
                                     and c for an LSTM)
    logits_t = Decoder(y_{t-1}, s_{t-1}, memory)   see RecurrentDecoder

Without attention (``attention=None``, Show and Tell) the image reaches
the decoder through ``s_0`` only. With attention (Show, Attend and Tell,
soft Bahdanau attention over the L grid cells) training adds the doubly
stochastic regulariser of Xu et al. (eq. 14), over the real target steps
t of each caption::

    λ Σ_i (1 − Σ_t α_ti)²

summed over the batch and divided, as the cross-entropy is, by the number
of target tokens (so the loss is Xu et al.'s objective per token).
"""

import collections

import keras
import numpy as np
from keras import ops

from kerasrnn.cells.registry import serialize_cell
from kerasrnn.models import initializers
from kerasrnn.models.decoder import RecurrentDecoder
from kerasrnn.models.seq2seq import Seq2Seq
from kerasrnn.models.seq2seq import _tokenizer
from kerasrnn.models.seq2seq import check_special_ids
from kerasrnn.models.seq2seq import global_sum
from kerasrnn.validation import check_int
from kerasrnn.validation import check_rate


def conv_encoder(input_shape=(32, 32, 3), filters=(32, 64, 64),
                 pools=(True, True, False), kernel_size=3,
                 name="conv_encoder"):
    """A small CNN image encoder: per entry of ``filters`` a ``Conv2D``
    (``kernel_size``, same padding, ReLU), followed by a 2×2
    ``MaxPooling2D`` where ``pools`` says so. Input float32 images
    ``(B, H, W, C)`` in [0, 1]; output the feature map ``(B, H/2^p, W/2^p,
    filters[-1])``, p the number of pools."""
    if len(pools) != len(filters):
        raise ValueError(
            "`pools` needs one flag per entry of `filters`. Received: "
            f"filters={tuple(filters)}, pools={tuple(pools)}"
        )
    layers = [keras.Input(tuple(input_shape), name="image")]
    for index, (count, pool) in enumerate(zip(filters, pools)):
        layers.append(keras.layers.Conv2D(
            count, kernel_size, padding="same", activation="relu",
            name=f"conv_{index}",
        ))
        if pool:
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool_{index}"))
    return keras.Sequential(layers, name=name)


def attention_coverage_penalty(alignments, step_mask):
    """``Σ_i (1 − Σ_t m_t α_ti)²`` per row: ``alignments (B, T, L)``,
    ``step_mask (B, T)`` 1 at real steps; returns ``(B,)``."""
    coverage = ops.einsum(
        "bti,bt->bi", alignments, ops.cast(step_mask, alignments.dtype)
    )
    return ops.sum(ops.square(1.0 - coverage), axis=-1)


@keras.saving.register_keras_serializable(package="kerasrnn")
class ImageCaptioner(Seq2Seq):
    """Image captioning (equations in the module doc).

    Shapes: images ``(B, H, W, C)`` float32 (in [0, 1] for the built-in
    data, ``kerasrnn.models.caption_data``), targets ``(B, T)`` as for
    ``Seq2Seq``: ``[bos, y_1, ..., y_n, eos, pad, ...]``. ``fit``,
    ``evaluate``, ``generate`` (greedy, sample, beam), ``alignments``,
    ``ScheduledSampling`` and ``compile``'s defaults are ``Seq2Seq``'s.

    Args:
        image_encoder: a Keras model from images to a feature map ``(B,
            h, w, D)``, with a fully known input shape (``conv_encoder``
            or e.g. ``keras.applications.MobileNet(include_top=False,
            weights=None, input_shape=...)``). It trains with the decoder
            unless the user sets ``image_encoder.trainable = False``.
        vocabulary_size: V, the caption vocabulary.
        bos_id, eos_id, pad_id: the caption's start, end and padding ids.
        embedding_dim, units, cell, decoder_layers, attention_units,
            tie_embeddings, dropout, seed: the decoder's, as in
            ``Seq2Seq``.
        attention: ``"bahdanau"`` (Show, Attend and Tell, default),
            ``"luong_general"``, or None (Show and Tell).
        attention_regularization: λ of the doubly stochastic regulariser
            (attention only; 0 turns it off).
        max_target_length: default ``max_length`` of ``generate``.
        tokenizer: optional ``kerasrnn.models.text.Tokenizer`` of the
            captions (saved with the model; ``generate_text`` uses it).
        embeddings_initializer, kernel_initializer, recurrent_initializer,
            bias_initializer, attention_initializer, output_initializer:
            as ``Seq2Seq`` (``output_initializer`` also initialises
            ``W_init``).

    ``Seq2Seq.__init__`` builds a text encoder; this class builds the
    image side instead and calls ``keras.Model.__init__`` directly, then
    sets what the inherited methods read.
    """

    def __init__(
        self,
        image_encoder,
        vocabulary_size,
        bos_id,
        eos_id,
        pad_id=0,
        embedding_dim=64,
        units=128,
        cell="lstm",
        decoder_layers=1,
        attention="bahdanau",
        attention_units=None,
        attention_regularization=1.0,
        tie_embeddings=False,
        dropout=0.0,
        max_target_length=32,
        seed=None,
        tokenizer=None,
        embeddings_initializer=None,
        kernel_initializer=None,
        recurrent_initializer=None,
        bias_initializer=None,
        attention_initializer=None,
        output_initializer=None,
        **kwargs,
    ):
        keras.Model.__init__(self, **kwargs)
        self.initializers = initializers.resolve(locals())
        init = self.initializers
        if isinstance(image_encoder, dict):
            image_encoder = keras.saving.deserialize_keras_object(
                image_encoder
            )
        self.image_encoder = _check_image_encoder(image_encoder)
        self.image_shape = tuple(
            int(size) for size in image_encoder.input_shape[1:]
        )
        *grid, self.feature_dim = image_encoder.output_shape[1:]
        self.feature_grid = tuple(int(size) for size in grid)
        self.target_vocabulary_size = check_int(
            "vocabulary_size", vocabulary_size
        )
        check_special_ids(vocabulary_size, bos_id, eos_id, pad_id)
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.source_tokenizer = None
        self.target_tokenizer = _tokenizer(
            "tokenizer", tokenizer, vocabulary_size, bos_id=bos_id,
            eos_id=eos_id,
        )
        self.embedding_dim = check_int("embedding_dim", embedding_dim)
        self.units = check_int("units", units)
        self.cell = cell
        self.decoder_layers = check_int("decoder_layers", decoder_layers)
        self.attention = attention
        self.attention_units = attention_units
        self.attention_regularization = float(attention_regularization)
        if self.attention_regularization < 0:
            raise ValueError(
                "`attention_regularization` (λ) must be >= 0. Received: "
                f"{attention_regularization}"
            )
        self.tie_embeddings = bool(tie_embeddings)
        self.dropout = check_rate("dropout", dropout)
        self.max_target_length = check_int(
            "max_target_length", max_target_length
        )
        self.seed = seed
        self.decoder = RecurrentDecoder(
            vocabulary_size, embedding_dim, units, cell=cell,
            num_layers=decoder_layers, attention=attention,
            attention_units=attention_units, tie_embeddings=tie_embeddings,
            dropout=self.dropout, seed=seed, name="decoder",
            **initializers.fresh(init),
        )
        self.states_per_cell = len(self.decoder.cells[0].state_names)
        self.initial_state_dense = keras.layers.Dense(
            decoder_layers * self.states_per_cell * units, activation="tanh",
            kernel_initializer=initializers.fresh_one(
                init, "output_initializer"),
            bias_initializer=initializers.fresh_one(
                init, "bias_initializer"),
            name="initial_state",
        )
        self.sampling_probability = self.add_weight(
            shape=(), initializer="zeros", trainable=False,
            name="sampling_probability",
        )
        self._generate_functions = collections.OrderedDict()
        self._attention_penalty = None
        self.build()

    def build(self, input_shape=None):
        self.initial_state_dense.build((None, self.feature_dim))
        self.decoder.build((None, None, self.feature_dim))
        self.built = True

    # --- forward ------------------------------------------------------------

    def encode_image(self, images, training=False):
        """``(memory (B, L, D), cell states)``: the flattened feature map
        and, per decoder layer, its first states."""
        features = self.image_encoder(
            ops.cast(images, "float32"), training=training
        )
        memory = ops.reshape(
            features, (-1, int(np.prod(self.feature_grid)), self.feature_dim)
        )
        flat = ops.split(
            self.initial_state_dense(ops.mean(memory, axis=1)),
            self.decoder_layers * self.states_per_cell, axis=-1,
        )
        per_cell = self.states_per_cell
        cell_states = [flat[layer * per_cell:(layer + 1) * per_cell]
                       for layer in range(self.decoder_layers)]
        return memory, cell_states

    def encode(self, source, training=False):
        """The decoder's first state for images ``(B, H, W, C)``."""
        memory, cell_states = self.encode_image(source, training=training)
        if self.decoder.feeds_attention:
            return self.decoder.initial_state(cell_states, memory)
        return self.decoder.initial_state(cell_states)

    def teacher_forced(
        self, source, decoder_inputs, sampling_probability=None,
        training=False,
    ):
        """``Seq2Seq.teacher_forced``; in training with attention it also
        computes the doubly stochastic penalty, which ``compute_loss``
        (called next by ``train_step``) adds to the loss."""
        logits, alignments = super().teacher_forced(
            source, decoder_inputs,
            sampling_probability=sampling_probability, training=training,
        )
        self._attention_penalty = None
        if training and alignments is not None and (
            self.attention_regularization > 0
        ):
            inputs = ops.cast(decoder_inputs, "int32")
            # Step t is real when it predicts a real label: its input is
            # neither padding nor the end token.
            real = ops.logical_and(ops.not_equal(inputs, self.pad_id),
                                   ops.not_equal(inputs, self.eos_id))
            tokens = global_sum(ops.sum(ops.cast(real, "float32")))
            penalty = ops.sum(attention_coverage_penalty(alignments, real))
            self._attention_penalty = self.attention_regularization * (
                ops.divide_no_nan(ops.cast(penalty, "float32"), tokens)
            )
        return logits, alignments

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        """Keras' loss, plus the attention penalty of the forward pass
        just run (``teacher_forced``) when training."""
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training,
        )
        penalty, self._attention_penalty = self._attention_penalty, None
        if training and penalty is not None:
            loss = loss + penalty
        return loss

    def attention_maps(self, images, target):
        """Attention over the grid ``(B, T-1, h, w)`` of each step of the
        teacher-forced target ``[bos, ..., eos]``: step t is what the
        decoder looked at when it produced token t+1."""
        weights = keras.ops.convert_to_numpy(self.alignments(
            self.check_source(images), target
        ))
        return weights.reshape(*weights.shape[:2], *self.feature_grid)

    # --- checks -------------------------------------------------------------

    def check_source(self, source):
        """Images as a float32 ``(B, H, W, C)`` tensor of the encoder's
        input shape; other shapes and integer pixels are errors."""
        source = ops.convert_to_tensor(source)
        _check_images(self.image_shape, tuple(source.shape),
                      str(source.dtype), "`images`")
        return ops.cast(source, "float32")

    def source_spec(self):
        import tensorflow as tf

        return tf.TensorSpec([None, *self.image_shape], "float32")

    def check_pairs(self, source, target, what="training data"):
        """Images of the encoder's input shape, and the targets checked as
        ``Seq2Seq.check_targets`` does."""
        if source is None or target is None:
            return
        source = np.asarray(source)
        _check_images(self.image_shape, source.shape, str(source.dtype),
                      f"{what}: the images")
        if len(source) != len(np.asarray(target)):
            raise ValueError(
                f"{what}: {len(source)} images but {len(target)} targets."
            )
        self.check_targets(target, what)

    # --- text ---------------------------------------------------------------

    def generate_text(self, images, method="greedy", max_length=None,
                      **options):
        """The best caption of each image, as text (needs ``tokenizer``;
        arguments as ``generate``)."""
        if self.target_tokenizer is None:
            raise ValueError(
                "generate_text() needs the caption tokenizer: build the "
                "model with tokenizer= (or call generate() for ids)."
            )
        result = self.generate(images, method=method, max_length=max_length,
                               **options)
        return self.target_tokenizer.decode(
            ops.convert_to_numpy(result.ids)[:, 0]
        )

    def get_config(self):
        config = keras.Model.get_config(self)
        config.update(
            {
                "image_encoder": keras.saving.serialize_keras_object(
                    self.image_encoder
                ),
                "vocabulary_size": self.target_vocabulary_size,
                "bos_id": self.bos_id,
                "eos_id": self.eos_id,
                "pad_id": self.pad_id,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "cell": serialize_cell(self.cell),
                "decoder_layers": self.decoder_layers,
                "attention": self.attention,
                "attention_units": self.attention_units,
                "attention_regularization": self.attention_regularization,
                "tie_embeddings": self.tie_embeddings,
                "dropout": self.dropout,
                "max_target_length": self.max_target_length,
                "seed": self.seed,
                **initializers.serialize(self.initializers),
                "tokenizer": keras.saving.serialize_keras_object(
                    self.target_tokenizer
                ),
            }
        )
        return config


def _check_image_encoder(encoder):
    if not isinstance(encoder, keras.Model):
        raise TypeError(
            "`image_encoder` must be a keras.Model from images (B, H, W, C) "
            "to a feature map (B, h, w, D), e.g. conv_encoder() or a "
            "keras.applications model with include_top=False. Received: "
            f"{type(encoder).__name__}"
        )
    try:
        input_shape, output_shape = encoder.input_shape, encoder.output_shape
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"`image_encoder` '{encoder.name}' has no known input shape: "
            f"build it on keras.Input((H, W, C)) ({error})."
        ) from None
    for shape, wanted in (
        (input_shape, "take one image input of a known shape (B, H, W, C). "
         f"Received: input_shape={input_shape}"),
        (output_shape, "output a feature map (B, h, w, D) (no pooling or "
         f"top). Received: output_shape={output_shape}"),
    ):
        if not isinstance(shape, tuple) or len(shape) != 4 or any(
            size is None for size in shape[1:]
        ):
            raise ValueError(
                f"`image_encoder` '{encoder.name}' must {wanted}")
    return encoder


def _check_images(expected, shape, dtype, what):
    if len(shape) != 4 or tuple(shape[1:]) != tuple(expected):
        raise ValueError(
            f"{what} must have shape (batch, {', '.join(map(str, expected))})"
            f" (the image encoder's input). Received: shape={tuple(shape)}"
        )
    if "float" not in dtype:
        raise TypeError(
            f"{what} must hold float pixels scaled to [0, 1] (see "
            "kerasrnn.models.caption_data.load_image). Received: "
            f"dtype={dtype}"
        )
    if shape[0] == 0:
        raise ValueError(f"{what} hold no image (batch of 0).")
