"""Language-model data: vocabularies and Zaremba-style stream batching.

A corpus is one long token stream. ``stream_windows`` cuts it the way
Zaremba et al. (2014) and the TensorFlow PTB tutorial do::

    streams = ids[:B * L].reshape(B, L)          L = len(ids) // B
    window i: x = streams[:, i*T     : (i+1)*T]
              y = streams[:, i*T + 1 : (i+1)*T + 1]
    i = 0 .. (L - 1) // T - 1

so row ``b`` of window ``i + 1`` continues row ``b`` of window ``i``: a model
that carries its state from window to window reads each of the B streams
from start to end. The label of token t is token t + 1.

Vocabularies map tokens to ids with ``keras.layers.StringLookup``. Word
level follows the PTB files: whitespace-separated words, ``<eos>`` at each
line end, ``<unk>`` for unknown words (id 0). Character level keeps every
character (spaces and newlines included) and ``<unk>`` (id 0) for unknown
characters.
"""

import collections
import os

import keras
import numpy as np
from keras import ops

from kerasrnn.requirements import require_tensorflow
from kerasrnn.validation import check_int

UNK, EOS = "<unk>", "<eos>"
LEVELS = ("word", "char")


def tokenize(text, level="word"):
    """Splits ``text`` into tokens.

    ``"word"``: each line's whitespace-separated words followed by
    ``<eos>`` (empty lines give nothing). ``"char"``: the characters.
    """
    _check_level(level)
    if not isinstance(text, str):
        raise TypeError(
            f"`text` must be a str. Received: {type(text).__name__}"
        )
    if level == "char":
        return list(text)
    tokens = []
    for line in text.splitlines():
        words = line.split()
        if words:
            tokens += words + [EOS]
    return tokens


def read_tokens(path, level="word"):
    """``tokenize`` of the UTF-8 file at ``path``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No such corpus file: {path!r}. Expected a UTF-8 text file."
        )
    with open(path, encoding="utf-8") as handle:
        return tokenize(handle.read(), level)


def _check_level(level):
    if level not in LEVELS:
        raise ValueError(
            f"`level` must be one of {LEVELS}. Received: level={level!r}"
        )


@keras.saving.register_keras_serializable(package="kerasrnn")
class Vocabulary:
    """Token <-> id mapping for a word- or character-level language model.

    Serialisable (``get_config``/``from_config``): a
    ``LanguageModel(..., vocabulary=)`` keeps it in its ``.keras`` file.

    Ids: ``0 = <unk>``; at word level ``1 = <eos>``; then the tokens by
    decreasing count (ties in sorted order), as in the TensorFlow PTB
    reader. On PTB this gives the standard 10,000 words.

    Args:
        tokens: the vocabulary, ``<unk>`` first (``<eos>`` second at word
            level), as ``Vocabulary.build(...).tokens`` returns.
        level: ``"word"`` or ``"char"``.

    Example:

    >>> vocab = Vocabulary.build(tokenize("a b a\\n", "word"))
    >>> vocab.tokens
    ['<unk>', '<eos>', 'a', 'b']
    >>> ids, unknown = vocab.encode(["a", "c", "<eos>"])
    >>> ids.tolist(), unknown
    ([2, 0, 1], 1)
    """

    def __init__(self, tokens, level="word"):
        _check_level(level)
        tokens = list(tokens)
        specials = [UNK, EOS] if level == "word" else [UNK]
        if tokens[:len(specials)] != specials:
            raise ValueError(
                f"A {level}-level vocabulary must start with {specials}. "
                f"Received: {tokens[:len(specials)]}"
            )
        if len(set(tokens)) != len(tokens):
            raise ValueError("`tokens` must not repeat a token.")
        self.level = level
        self.tokens = tokens
        self.lookup = keras.layers.StringLookup(
            vocabulary=tokens[1:], oov_token=UNK, num_oov_indices=1,
            mask_token=None,
        )
        self._index = {token: index for index, token in enumerate(tokens)}

    @classmethod
    def build(cls, tokens, level="word", max_size=None, min_count=1):
        """The vocabulary of a token list: the ``max_size`` most frequent
        tokens (specials included) seen at least ``min_count`` times."""
        _check_level(level)
        counts = collections.Counter(tokens)
        if not counts:
            raise ValueError(
                "Cannot build a vocabulary from an empty corpus. Received: "
                "0 tokens."
            )
        specials = [UNK, EOS] if level == "word" else [UNK]
        ranked = sorted(
            (item for item in counts.items() if item[0] not in specials),
            key=lambda item: (-item[1], item[0]),
        )
        words = [word for word, count in ranked if count >= min_count]
        if max_size is not None:
            words = words[:max(max_size - len(specials), 0)]
        return cls(specials + words, level)

    @property
    def size(self):
        return len(self.tokens)

    def get_config(self):
        return {"tokens": list(self.tokens), "level": self.level}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def unk_id(self):
        return 0

    @property
    def eos_id(self):
        return 1 if self.level == "word" else None

    def encode(self, tokens):
        """Ids of ``tokens`` (a token list) through the ``StringLookup``.

        Returns:
            ``(ids, unknown)``: int32 numpy ``(N,)``, and how many tokens
            were not in the vocabulary and became ``<unk>`` (a literal
            ``<unk>`` token in the text is not counted).
        """
        if len(tokens) == 0:
            return np.zeros([0], "int32"), 0
        ids = ops.convert_to_numpy(self.lookup(np.asarray(tokens, object)))
        ids = ids.astype("int32")
        literal = sum(1 for token in tokens if token == UNK)
        return ids, int(np.sum(ids == self.unk_id)) - literal

    def encode_text(self, text, strict=False):
        """Ids of ``tokenize(text, level)``. With ``strict``, a token
        outside the vocabulary raises a ValueError that names it (used for
        generation prompts); otherwise it maps to ``<unk>``."""
        tokens = tokenize(text, self.level)
        if self.level == "word" and tokens and not text.endswith("\n"):
            tokens = tokens[:-1]  # a prompt does not end its sentence
        if strict:
            unknown = sorted({t for t in tokens if t not in self._index})
            if unknown:
                raise ValueError(
                    f"The text contains {len(unknown)} token(s) missing "
                    f"from the vocabulary: {unknown[:10]}. Expected only "
                    f"the {self.size} known {self.level}s."
                )
        return self.encode(tokens)[0]

    def decode(self, ids):
        """The text of ``ids``: characters joined, or words joined by
        spaces with ``<eos>`` written as a newline."""
        tokens = [self.tokens[int(i)] for i in np.ravel(ids)]
        if self.level == "char":
            return "".join(tokens)
        lines, words = [], []
        for token in tokens:
            if token == EOS:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(token)
        return "".join(lines) + " ".join(words)


def stream_windows(ids, batch_size, num_steps):
    """Cuts a token stream into TBPTT windows (see the module docstring).

    Args:
        ids: int ``(N,)`` token ids.
        batch_size: B, the number of parallel streams.
        num_steps: T, the window length.

    Returns:
        ``(inputs, labels)``: int32 numpy ``(W, B, T)`` each, window ``i``
        at ``[i]``; ``labels[i, b, t]`` is the token after
        ``inputs[i, b, t]`` in stream ``b``.
    """
    ids = np.asarray(ids)
    check_int("batch_size", batch_size)
    check_int("num_steps", num_steps)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(
            "`ids` must be a non-empty 1-D token stream. Received: shape="
            f"{ids.shape}"
        )
    stream_length = ids.size // batch_size
    windows = (stream_length - 1) // num_steps
    if windows < 1:
        raise ValueError(
            f"The corpus is too short for one window: {ids.size} tokens in "
            f"batch_size={batch_size} streams of {stream_length} tokens, "
            f"but a window needs num_steps + 1 = {num_steps + 1} tokens per "
            "stream. Use a smaller `batch_size` or `num_steps`."
        )
    streams = ids[:batch_size * stream_length].reshape(
        batch_size, stream_length
    ).astype("int32")
    span = windows * num_steps
    inputs = streams[:, :span].reshape(batch_size, windows, num_steps)
    labels = streams[:, 1:span + 1].reshape(batch_size, windows, num_steps)
    return inputs.transpose(1, 0, 2), labels.transpose(1, 0, 2)


def stream_dataset(ids, batch_size, num_steps):
    """``stream_windows`` as a ``tf.data.Dataset`` of ``(inputs (B, T),
    labels (B, T))`` in stream order (never shuffle it: the order carries
    the state), for a training loop or ``fit(..., shuffle=False)``."""
    require_tensorflow("stream_dataset (a tf.data.Dataset)")
    import tensorflow as tf

    inputs, labels = stream_windows(ids, batch_size, num_steps)
    return tf.data.Dataset.from_tensor_slices((inputs, labels))
