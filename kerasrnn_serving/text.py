"""Text to token ids and back without TensorFlow.

Two codecs reproduce, id for id, the TensorFlow-based classes an exported
model was trained with; the manifest stores their config (the class's
``get_config()`` plus ``"kind"``) and ``codec_from_config`` rebuilds them.
Only the standard library and numpy are imported.

``TokenizerCodec`` mirrors ``kerasrnn.models.text.Tokenizer``
(``keras.layers.TextVectorization``, Keras 3.15, TensorFlow 2.21). Ids::

    0 padding ("")   1 unknown ("[UNK]")   2 "[BOS]"   3 "[EOS]"   4.. tokens

The rules below were measured on TensorFlow, not taken from its docs:

* Lower-casing is ``tf.strings.lower`` with its default ``encoding=""``:
  ASCII only. Of all code points (U+0001..U+10FFFF, surrogates aside) it
  changes exactly ``A-Z``; ``"ÉCOLE"`` becomes ``"École"``, and ``"Ä"``,
  ``"İ"``, ``"Σ"``, ``"Д"``, ``"Ａ"``, ``"K"`` (Kelvin) and ``"ẞ"`` are left
  as they are. Keras' ``"lower"`` standardize is that op and nothing else
  (``_preprocess`` in ``text_vectorization.py``).
* Character level (``split="character"``): ``tf.strings.unicode_split(...,
  "UTF-8")`` yields one token per code point, i.e. ``list(text)``; a
  combining accent (``"e\\u0301"``) or an emoji skin-tone modifier is a token
  of its own. Lower-casing (``lowercase=True``) is the ASCII rule above.
* Word level (``standardize=split_punctuation``, ``split="whitespace"``):

  1. ASCII lower-casing (the ``lowercase`` flag does not apply: words are
     always lower-cased);
  2. each character of ``string.punctuation + "¡¿«»…’"`` becomes
     ``" c "`` (RE2 ``\\0`` is the whole match); other quotes such as
     ``‘ “ ”`` stay inside words;
  3. runs of RE2 ``\\s`` become one space. RE2's ``\\s`` is ASCII
     ``[\\t\\n\\f\\r ]``: it matches neither ``\\v`` nor ``\\xa0``, ``\\x85``,
     ``\\u2003``, ``\\u3000`` or any other Unicode space;
  4. ``tf.strings.strip`` removes ASCII ``[\\t\\n\\v\\f\\r ]`` (``\\v``
     included) at both ends;
  5. ``tf.strings.split`` without ``sep`` splits on runs of the same six
     ASCII characters and drops empty pieces. ``\\xa0``, ``\\u2003``,
     ``\\x1c``-``\\x1f`` and every non-ASCII space stay inside a word:
     ``"a\\xa0b"`` is one (usually unknown) word.

* Lookup: a token is its index in the vocabulary, or 1 when it is not in
  it; ``""`` (never produced by the splits) is 0.
* Text Python cannot encode as UTF-8 (a lone surrogate such as
  ``"\\ud800"``) is refused: ``tf.constant`` raises a ValueError on it.
* ``decode`` stops each row at its first EOS, drops padding and BOS, and
  joins the tokens with ``""`` (char) or ``" "`` (word); ``[UNK]`` is
  written as ``"[UNK]"``.

``VocabularyCodec`` mirrors ``kerasrnn.models.lm_data.Vocabulary``, whose
splitting is plain Python: word level is, per ``str.splitlines()`` line,
``line.split()`` (Unicode whitespace) and ``"<eos>"`` after every line with
words; ``encode_text`` drops that last ``"<eos>"`` unless the text ends
with ``"\\n"`` (only ``"\\n"``: a text ending in ``"\\r"`` loses it too).
Character level is ``list(text)``. The ``StringLookup`` maps an unknown
token to 0, and so the literal word ``"<unk>"`` too (it is the OOV token),
and ``"<eos>"`` to 1. ``strict=True`` raises a ValueError naming the
unknown tokens (sorted; a literal ``"<unk>"`` is not unknown).

Where the TF classes would index Python-style (a negative id wraps round
to the end of the vocabulary, an id too large raises IndexError) or take
anything ``tf.constant`` converts (bytes, ints), the codecs refuse: ids
outside ``[0, size)`` raise ``TextError``, non-str text and non-integer ids
raise ``TypeError``. An empty list of texts encodes to ``[]`` (the
Tokenizer fails on it).
"""

import numbers
import re
import string

import numpy as np

PAD, UNK, BOS, EOS = "", "[UNK]", "[BOS]", "[EOS]"
TOKENIZER_LEVELS = ("char", "word")
VOCABULARY_LEVELS = ("word", "char")
VOCABULARY_UNK, VOCABULARY_EOS = "<unk>", "<eos>"

# The Tokenizer's punctuation class, in Python's `re` syntax (the same
# characters: RE2 and `re` read the escaped class alike).
PUNCTUATION = string.punctuation + "¡¿«»…’"
_PUNCTUATION = re.compile("[" + re.escape(PUNCTUATION) + "]")
# RE2's `\s` (not Python's Unicode `\s`).
_RE2_SPACES = re.compile("[\t\n\f\r ]+")
# What tf.strings.strip and tf.strings.split (no sep) treat as whitespace.
ASCII_WHITESPACE = "\t\n\v\f\r "
_ASCII_SPLIT = re.compile("[\t\n\v\f\r ]+")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class TextError(ValueError):
    """Text a codec cannot take; the message says what and what was
    expected."""


def ascii_lower(text):
    """``tf.strings.lower(text)``: only ``A-Z`` change."""
    return text.translate(_ASCII_LOWER)


def split_punctuation(text):
    """The Tokenizer's word-level standardize (``split_punctuation`` in
    ``kerasrnn.models.text``), string for string."""
    text = _PUNCTUATION.sub(r" \g<0> ", ascii_lower(text))
    return _RE2_SPACES.sub(" ", text).strip(ASCII_WHITESPACE)


def whitespace_split(text):
    """``tf.strings.split(text)``: pieces between runs of ASCII
    whitespace, no empty pieces."""
    return [piece for piece in _ASCII_SPLIT.split(text) if piece]


def _check_text(text, what="`text`"):
    if not isinstance(text, str):
        raise TypeError(
            f"{what} must be a str. Received: {type(text).__name__} "
            f"{_short(text)}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise TextError(
            f"{what} is not valid Unicode: {error.object[error.start]!r} at "
            f"index {error.start} cannot be encoded as UTF-8 (a lone "
            "surrogate?). Expected text that encodes as UTF-8."
        ) from None
    return text


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_tokens(tokens, name):
    if isinstance(tokens, (str, bytes)) or not isinstance(
        tokens, (list, tuple)
    ):
        raise TextError(
            f"`{name}` must be a list of str tokens. Received: "
            f"{type(tokens).__name__} {_short(tokens)}"
        )
    tokens = list(tokens)
    wrong = [(i, t) for i, t in enumerate(tokens) if not isinstance(t, str)]
    if wrong:
        index, token = wrong[0]
        raise TextError(
            f"`{name}` must hold only str tokens; {len(wrong)} are not, "
            f"the first at index {index}: {type(token).__name__} {token!r}."
        )
    seen, repeated = set(), []
    for token in tokens:
        if token in seen and token not in repeated:
            repeated.append(token)
        seen.add(token)
    return tokens, repeated


def _check_id(value, size, where):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Integral
    ):
        raise TypeError(
            f"Token ids must be integers. Received: {type(value).__name__} "
            f"{_short(value)} {where}."
        )
    value = int(value)
    if not 0 <= value < size:
        raise TextError(
            f"Token id {value} {where} is outside the vocabulary: expected "
            f"ids 0..{size - 1}."
        )
    return value


class TokenizerCodec:
    """``kerasrnn.models.text.Tokenizer`` without TensorFlow.

    Args:
        level: ``"char"`` or ``"word"``.
        vocabulary: the tokens, ``["", "[UNK]", "[BOS]", "[EOS]", ...]``
            (``Tokenizer.vocabulary``).
        lowercase: ASCII lower-casing at the character level (the word
            level always lower-cases).
        max_tokens: kept for the config only (it bounds ``adapt``).
    """

    kind = "tokenizer"
    pad_id, oov_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, level, vocabulary, lowercase=True, max_tokens=None):
        if level not in TOKENIZER_LEVELS:
            raise TextError(
                f"`level` must be one of {TOKENIZER_LEVELS}. Received: "
                f"level={level!r}"
            )
        if not isinstance(lowercase, bool):
            raise TextError(
                "`lowercase` must be True or False. Received: "
                f"lowercase={lowercase!r}"
            )
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
            or max_tokens < 1
        ):
            raise TextError(
                "`max_tokens` must be None or a positive integer. Received: "
                f"max_tokens={max_tokens!r}"
            )
        if vocabulary is None:
            raise TextError(
                "The tokenizer config has no vocabulary (vocabulary=None: "
                "the Tokenizer was never adapted). Expected its token list."
            )
        tokens, repeated = _check_tokens(vocabulary, "vocabulary")
        missing = [t for t in (BOS, EOS) if t not in tokens]
        if missing:
            raise TextError(
                f"The vocabulary must contain {BOS!r} and {EOS!r}; missing "
                f"{missing}. Received: {len(tokens)} tokens starting "
                f"{tokens[:6]}"
            )
        if tokens[:4] != [PAD, UNK, BOS, EOS]:
            raise TextError(
                "The vocabulary must start with '', '[UNK]', '[BOS]', "
                f"'[EOS]' (ids 0-3). Received: {tokens[:4]}"
            )
        if PAD in tokens[1:]:
            raise TextError(
                "The padding token '' may only be id 0. Received it at "
                f"index {tokens.index(PAD, 1)} too."
            )
        # StringLookup accepts "[UNK]" again further on (it never matches
        # a split token); any other repeat is an error there too.
        repeated = [t for t in repeated if t != UNK]
        if repeated:
            raise TextError(
                f"The vocabulary repeats {len(repeated)} token(s): "
                f"{repeated[:10]}. Expected each token once."
            )
        self.level = level
        self.lowercase = lowercase
        self.max_tokens = max_tokens
        self.vocabulary = tokens
        self._index = {}
        for index, token in enumerate(tokens):
            self._index.setdefault(token, index)

    def __repr__(self):
        return (
            f"TokenizerCodec(level={self.level!r}, "
            f"{self.vocabulary_size} tokens)"
        )

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def get_config(self):
        """The config of the Tokenizer this codec mirrors."""
        return {
            "level": self.level,
            "max_tokens": self.max_tokens,
            "lowercase": self.lowercase,
            "vocabulary": list(self.vocabulary),
        }

    def tokenize(self, text):
        """The tokens (strings) ``text`` is split into before lookup."""
        _check_text(text)
        if self.level == "char":
            return list(ascii_lower(text) if self.lowercase else text)
        return whitespace_split(split_punctuation(text))

    def _texts(self, texts):
        if isinstance(texts, str):
            return [texts]
        if isinstance(texts, bytes) or not hasattr(texts, "__iter__"):
            raise TypeError(
                "`texts` must be a str or a list of str. Received: "
                f"{type(texts).__name__} {_short(texts)}"
            )
        texts = list(texts)
        for index, text in enumerate(texts):
            _check_text(text, f"texts[{index}]")
        return texts

    def encode(self, texts):
        """Ids of each text (a str or a list of str): a list of int lists,
        without BOS or EOS."""
        return [
            [self._index.get(token, self.oov_id)
             for token in self.tokenize(text)]
            for text in self._texts(texts)
        ]

    def unknown_tokens(self, text):
        """The distinct tokens of ``text`` (after standardization, in order
        of first appearance) that ``encode`` maps to ``oov_id``."""
        unknown = []
        for token in self.tokenize(text):
            if self._index.get(token, self.oov_id) == self.oov_id and (
                token not in unknown
            ):
                unknown.append(token)
        return unknown

    def decode(self, rows):
        """The text of each row of ids: up to its first EOS, padding and
        BOS dropped."""
        if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
            raise TypeError(
                "`rows` must be an iterable of id sequences. Received: "
                f"{type(rows).__name__} {_short(rows)}"
            )
        joiner = "" if self.level == "char" else " "
        texts = []
        for r, row in enumerate(rows):
            if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
                raise TypeError(
                    f"Each row must be a sequence of ids; row {r} is "
                    f"{type(row).__name__} {_short(row)}."
                )
            tokens = []
            for t, value in enumerate(row):
                value = _check_id(
                    value, self.vocabulary_size, f"at row {r}, step {t}"
                )
                if value == self.eos_id:
                    break
                if value not in (self.pad_id, self.bos_id):
                    tokens.append(self.vocabulary[value])
            texts.append(joiner.join(tokens))
        return texts


def _vocabulary_tokenize(text, level):
    """``kerasrnn.models.lm_data.tokenize``."""
    if level == "char":
        return list(text)
    tokens = []
    for line in text.splitlines():
        words = line.split()
        if words:
            tokens += words + [VOCABULARY_EOS]
    return tokens


class VocabularyCodec:
    """``kerasrnn.models.lm_data.Vocabulary`` without TensorFlow.

    Args:
        tokens: ``Vocabulary.tokens``: ``"<unk>"`` first (``"<eos>"``
            second at word level).
        level: ``"word"`` or ``"char"``.
    """

    kind = "vocabulary"

    def __init__(self, tokens, level="word"):
        if level not in VOCABULARY_LEVELS:
            raise TextError(
                f"`level` must be one of {VOCABULARY_LEVELS}. Received: "
                f"level={level!r}"
            )
        tokens, repeated = _check_tokens(tokens, "tokens")
        specials = (
            [VOCABULARY_UNK, VOCABULARY_EOS] if level == "word"
            else [VOCABULARY_UNK]
        )
        if tokens[:len(specials)] != specials:
            raise TextError(
                f"A {level}-level vocabulary must start with {specials}. "
                f"Received: {tokens[:len(specials)]}"
            )
        if repeated:
            raise TextError(
                f"`tokens` repeats {len(repeated)} token(s): "
                f"{repeated[:10]}. Expected each token once."
            )
        self.level = level
        self.tokens = tokens
        self._index = {token: index for index, token in enumerate(tokens)}

    def __repr__(self):
        return f"VocabularyCodec(level={self.level!r}, {self.size} tokens)"

    @property
    def size(self):
        return len(self.tokens)

    @property
    def unk_id(self):
        return 0

    @property
    def eos_id(self):
        return 1 if self.level == "word" else None

    def get_config(self):
        """The config of the Vocabulary this codec mirrors."""
        return {"tokens": list(self.tokens), "level": self.level}

    def tokenize(self, text):
        """``kerasrnn.models.lm_data.tokenize(text, level)``."""
        return _vocabulary_tokenize(_check_text(text), self.level)

    def encode_text(self, text, strict=False):
        """Ids of ``text`` (a list of int). A word-level text not ending in
        ``"\\n"`` gets no final ``<eos>``. Unknown tokens become ``<unk>``
        (0), or with ``strict`` raise a TextError naming them."""
        tokens = self.tokenize(text)
        if self.level == "word" and tokens and not text.endswith("\n"):
            tokens = tokens[:-1]  # a prompt does not end its sentence
        if strict:
            unknown = sorted({t for t in tokens if t not in self._index})
            if unknown:
                raise TextError(
                    f"The text contains {len(unknown)} token(s) missing "
                    f"from the vocabulary: {unknown[:10]}. Expected only "
                    f"the {self.size} known {self.level}s."
                )
        return [self._index.get(token, self.unk_id) for token in tokens]

    def decode(self, ids):
        """The text of ``ids`` (any shape, read flat): characters joined,
        or words joined by spaces with ``<eos>`` written as a newline."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(
                "`ids` must be integer token ids. Received: "
                f"{type(ids).__name__} {_short(ids)}"
            )
        flat = np.asarray(ids, dtype=object).ravel().tolist()
        tokens = [
            self.tokens[_check_id(value, self.size, f"at index {index}")]
            for index, value in enumerate(flat)
        ]
        if self.level == "char":
            return "".join(tokens)
        lines, words = [], []
        for token in tokens:
            if token == VOCABULARY_EOS:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(token)
        return "".join(lines) + " ".join(words)


def codec_from_config(config):
    """The codec of a manifest entry: ``{"kind": "tokenizer",
    **Tokenizer.get_config()}`` or ``{"kind": "vocabulary",
    **Vocabulary.get_config()}``."""
    if not isinstance(config, dict):
        raise TextError(
            "A codec config must be a dict with a 'kind'. Received: "
            f"{type(config).__name__} {_short(config)}"
        )
    config = dict(config)
    kind = config.pop("kind", None)
    classes = {"tokenizer": TokenizerCodec, "vocabulary": VocabularyCodec}
    if kind not in classes:
        raise TextError(
            f"A codec config's 'kind' must be one of {sorted(classes)}. "
            f"Received: kind={kind!r}"
        )
    cls = classes[kind]
    allowed = {
        "tokenizer": ("level", "vocabulary", "lowercase", "max_tokens"),
        "vocabulary": ("tokens", "level"),
    }[kind]
    required = {"tokenizer": ("level", "vocabulary"),
                "vocabulary": ("tokens",)}[kind]
    unknown = sorted(set(config) - set(allowed))
    missing = [key for key in required if key not in config]
    if unknown or missing:
        raise TextError(
            f"A {kind!r} codec config takes the keys {list(allowed)} "
            f"(required: {list(required)}). Received unknown keys "
            f"{unknown} and missing {missing}."
        )
    return cls(**config)
