"""Text to ids and back, and length-bucketed ``tf.data`` pipelines.

``Tokenizer`` wraps ``keras.layers.TextVectorization`` at the character or
word level with a fixed id layout::

    0 padding ("")   1 unknown ("[UNK]")   2 "[BOS]"   3 "[EOS]"   4.. tokens

Unknown characters or words map to id 1, never to an error.
"""

import json
import re
import string

import keras
import numpy as np

from kerasrnn.requirements import import_tensorflow

BOS, EOS = "[BOS]", "[EOS]"
LEVELS = ("char", "word")
# Punctuation becomes its own word: "Va !" -> "va", "!"; "l'eau" -> "l", "'",
# "eau".
_PUNCTUATION = "[" + re.escape(string.punctuation + "¡¿«»…’") + "]"


def _tensorflow():
    """TensorFlow, imported when a tokenizer or a pipeline is used, so
    ``kerasrnn.models`` loads without it."""
    return import_tensorflow(
        "kerasrnn.models.text (the tokenizers and tf.data pipelines)")


def split_punctuation(text):
    """Lower-cases and puts spaces around punctuation (a TF op, usable as
    ``TextVectorization(standardize=...)``)."""
    tf = _tensorflow()
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, _PUNCTUATION, r" \0 ")
    return tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))


@keras.saving.register_keras_serializable(package="kerasrnn")
class Tokenizer:
    """Character- or word-level tokenizer with BOS and EOS ids.

    Serialisable: ``get_config``/``from_config`` hold the vocabulary, so a
    ``Seq2Seq(..., source_tokenizer=, target_tokenizer=)`` saves its
    tokenizers in its ``.keras`` file and ``keras.models.load_model``
    restores them; ``save(path)``/``Tokenizer.load(path)`` write and read
    one as JSON.

    Args:
        level: ``"char"`` (every character, spaces included, is a token) or
            ``"word"`` (lower-cased, punctuation split off, whitespace
            separated).
        max_tokens: the most tokens kept by ``adapt`` (most frequent first),
            specials included; None keeps all.
        lowercase: lower-case at the character level too.
        vocabulary: a ready vocabulary (list of tokens, as returned by
            ``vocabulary``); it must contain ``"[BOS]"`` and ``"[EOS]"``.

    Example:

    >>> tokenizer = Tokenizer("char")
    >>> tokenizer.adapt(["12+3", "45"])
    >>> ids = tokenizer.encode(["3+12"], bos_eos=True)
    >>> tokenizer.decode(ids)
    ['3+12']
    """

    def __init__(self, level="word", max_tokens=None, lowercase=True,
                 vocabulary=None):
        if level not in LEVELS:
            raise ValueError(
                f"`level` must be one of {LEVELS}. Received: level={level!r}"
            )
        self.level = level
        self.max_tokens = max_tokens
        self.lowercase = lowercase
        self.layer = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def _make_layer(self, vocabulary=None, max_tokens=None):
        if self.level == "char":
            standardize = "lower" if self.lowercase else None
            split = "character"
        else:
            standardize, split = split_punctuation, "whitespace"
        # Ragged output is TensorFlow's only; elsewhere the layer pads with
        # id 0, which no token has (``encode`` strips it again).
        _tensorflow()   # TextVectorization runs on TensorFlow
        return keras.layers.TextVectorization(
            max_tokens=max_tokens, standardize=standardize, split=split,
            ragged=keras.config.backend() == "tensorflow",
            vocabulary=vocabulary,
        )

    def adapt(self, texts):
        """Builds the vocabulary from an iterable of strings."""
        tf = _tensorflow()
        layer = self._make_layer(
            max_tokens=None if self.max_tokens is None
            else self.max_tokens - 2
        )
        layer.adapt(tf.constant(list(texts)))
        tokens = layer.get_vocabulary()[2:]  # drop "" and "[UNK]"
        self.set_vocabulary(["", "[UNK]", BOS, EOS, *tokens])

    def set_vocabulary(self, vocabulary):
        vocabulary = list(vocabulary)
        missing = [t for t in (BOS, EOS) if t not in vocabulary]
        if missing:
            raise ValueError(
                f"The vocabulary must contain {BOS!r} and {EOS!r}; missing "
                f"{missing}. Received: {len(vocabulary)} tokens starting "
                f"{vocabulary[:6]}"
            )
        if vocabulary[:4] != ["", "[UNK]", BOS, EOS]:
            raise ValueError(
                "The vocabulary must start with '', '[UNK]', '[BOS]', "
                f"'[EOS]' (ids 0-3). Received: {vocabulary[:4]}"
            )
        self.layer = self._make_layer(vocabulary=vocabulary[2:])
        self._tokens = np.array(self.layer.get_vocabulary(), dtype=object)

    def _check_ready(self):
        if self.layer is None:
            raise ValueError(
                "The tokenizer has no vocabulary yet: call adapt(texts) or "
                "pass `vocabulary`."
            )

    @property
    def vocabulary(self):
        self._check_ready()
        return list(self._tokens)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    pad_id, oov_id, bos_id, eos_id = 0, 1, 2, 3

    def get_config(self):
        return {
            "level": self.level,
            "max_tokens": self.max_tokens,
            "lowercase": self.lowercase,
            "vocabulary": None if self.layer is None else self.vocabulary,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save(self, path):
        """Writes the tokenizer (its config, vocabulary included) as
        JSON."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.get_config(), handle, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        """The tokenizer ``save`` wrote to ``path``."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_config(json.load(handle))

    def encode(self, texts, bos_eos=False):
        """Ids of each text as a ``tf.RaggedTensor (N, None)``; with
        ``bos_eos`` each row is ``[bos, ..., eos]``."""
        tf = _tensorflow()
        self._check_ready()
        if isinstance(texts, str):
            texts = [texts]
        ids = self.layer(tf.constant(list(texts)))
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(
                keras.ops.convert_to_numpy(ids), padding=0
            )
        ids = tf.cast(ids, "int32")
        if bos_eos:
            ids = add_bos_eos(ids, self.bos_id, self.eos_id)
        return ids

    def decode(self, ids):
        """Texts from ids ``(N, T)`` (array, tensor or ragged): each row
        stops at its first EOS; padding and BOS are dropped."""
        tf = _tensorflow()
        self._check_ready()
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_list()
        elif not isinstance(ids, list):
            ids = np.asarray(ids).tolist()
        texts = []
        for row in ids:
            tokens = []
            for token in row:
                token = int(token)
                if token == self.eos_id:
                    break
                if token not in (self.pad_id, self.bos_id):
                    tokens.append(self._tokens[token])
            joiner = "" if self.level == "char" else " "
            texts.append(joiner.join(tokens))
        return texts


def add_bos_eos(ids, bos_id, eos_id):
    """``[bos, *row, eos]`` for each row of a ragged ``(N, None)`` tensor."""
    tf = _tensorflow()
    if not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
    rows = ids.nrows()
    column = tf.ones([rows, 1], ids.dtype)
    return tf.concat([column * bos_id, ids, column * eos_id], axis=1)


def pad(ids, pad_id=0, length=None):
    """A dense ``(N, length)`` int32 array from ragged ids (right padded)."""
    tf = _tensorflow()
    if isinstance(ids, tf.RaggedTensor):
        shape = None if length is None else [None, length]
        return ids.to_tensor(default_value=pad_id, shape=shape).numpy()
    return np.asarray(ids, "int32")


def bucketed_dataset(
    sources, targets, batch_size, boundaries, max_length=None, pad_id=0,
    shuffle=True, seed=None, drop_long=False,
):
    """Batches of similar length, padded per batch, for ``fit``.

    Uses ``tf.data.Dataset.bucket_by_sequence_length`` on
    ``max(len(source), len(target))``.

    Args:
        sources, targets: ragged ``(N, None)`` int ids (or lists of lists).
        batch_size: examples per batch.
        boundaries: increasing bucket boundaries, e.g. ``[8, 16, 32]``.
        max_length: the longest allowed source or target (default: no
            limit). Longer pairs are an error, or dropped with
            ``drop_long=True``.
        pad_id: padding id.
        shuffle, seed: shuffle the pairs each epoch.

    Returns:
        A ``tf.data.Dataset`` of ``(source (B, S), target (B, T))`` with a
        known cardinality: each bucket holds the same pairs in every epoch
        (only their order changes), so it yields ``Σ_buckets ceil(n_b /
        B)`` batches (``n_b`` pairs in bucket b; at least ``ceil(pairs /
        B)``, more when buckets end in partial batches) every epoch, and
        Keras' ``fit`` neither warns that the input "ran out of data" nor
        cuts a later epoch to the first one's length.
    """
    tf = _tensorflow()
    sources = _ragged("sources", sources)
    targets = _ragged("targets", targets)
    if sources.nrows() != targets.nrows():
        raise ValueError(
            "`sources` and `targets` must have as many rows. Received: "
            f"{int(sources.nrows())} and {int(targets.nrows())}"
        )
    if list(boundaries) != sorted(set(boundaries)) or not boundaries:
        raise ValueError(
            "`boundaries` must be a non-empty increasing list. Received: "
            f"boundaries={boundaries!r}"
        )
    lengths = np.maximum(
        sources.row_lengths().numpy(), targets.row_lengths().numpy()
    )
    if np.any(sources.row_lengths().numpy() == 0):
        raise ValueError(
            "`sources` contains empty sequences (rows "
            f"{np.flatnonzero(sources.row_lengths().numpy() == 0)[:5]})."
        )
    if max_length is not None:
        long = lengths > max_length
        if long.any() and not drop_long:
            raise ValueError(
                f"{int(long.sum())} pairs are longer than max_length="
                f"{max_length} (the longest has {int(lengths.max())} "
                "tokens). Raise `max_length` or pass drop_long=True."
            )
        keep = np.flatnonzero(~long)
        sources = tf.gather(sources, keep)
        targets = tf.gather(targets, keep)
        lengths = lengths[keep]
    # Bucket i holds lengths in [boundaries[i - 1], boundaries[i]).
    bucket_sizes = np.bincount(
        np.searchsorted(boundaries, lengths, side="right"))
    batches = int(np.sum(-(-bucket_sizes // batch_size)))
    # Slices of a ragged tensor are ragged; pad, then cut each row back to
    # its length so every element is a dense 1-D tensor.
    dataset = tf.data.Dataset.from_tensor_slices((
        sources.to_tensor(pad_id), sources.row_lengths(),
        targets.to_tensor(pad_id), targets.row_lengths(),
    )).map(lambda s, s_len, t, t_len: (s[:s_len], t[:t_len]))
    if shuffle:
        dataset = dataset.shuffle(
            int(sources.nrows()), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda s, t: tf.maximum(tf.size(s), tf.size(t)),
        bucket_boundaries=list(boundaries),
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=(pad_id, pad_id),
    )
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _ragged(name, ids):
    tf = _tensorflow()
    if isinstance(ids, tf.RaggedTensor):
        return tf.cast(ids, "int32")
    try:
        return tf.ragged.constant(ids, dtype="int32")
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"`{name}` must be a ragged tensor or a list of int lists. "
            f"Received: {type(ids).__name__}"
        ) from error
