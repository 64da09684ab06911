"""kerasrnn_serving.text encodes and decodes exactly as the TensorFlow
classes it mirrors (kerasrnn.models.text.Tokenizer and
kerasrnn.models.lm_data.Vocabulary), without importing TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import tokenize
from kerasrnn.models.text import Tokenizer
from kerasrnn.models.text import split_punctuation
from kerasrnn_serving import text

CORPUS = [
    "Va !", "Cours !", "l'eau", "L'Eau est froide.", "Qu’est-ce que c’est ?",
    "ÉCOLE «test» … ¿qué? ¡sí!", "École, été, où ; çà-et-là",
    "Je n'ai pas faim.", "Il a dit : « non » !", "naïve café Ärger",
    "tab\tand  spaces", "e\u0301te\u0301", "Hello, World! 42 + 3",
    "Straße STRASSE", "İstanbul ıi", "ΣΟΦΙΑ σοφία", "Привет, мир!",
]

TRICKY = [
    "", " ", "   ", "\t", "\n", "\r\n", "\v", "\f", "\xa0", "\u2003",
    "\u3000", "\x85", "\x1c\x1d\x1e\x1f", "\u2028\u2029", "\ufeff", "\x00",
    "Va !", "va!", "VA  !  ", "l'eau", "L'EAU", "l’eau", "Qu’est-ce que "
    "c’est ?", "ÉCOLE «test» … ¿qué? ¡sí!", "école", "ÉCOLE", "Ä", "ä",
    "İ", "ı", "I", "Σ", "σς", "ẞ", "ß", "\u212a", "Ａ", "Ǆǅǆ",
    "a\tb", "a\t\tb", "a\vb", "a\v\vb", " \va\v ", "a\xa0b", "\xa0a\xa0",
    "a\u2003b", "a\u3000b", "a\x85b", "a\x1cb", "a\fb\rc\nd",
    "\n\nVa !\n\n", "line one\nline two\n", "!", "!!!", "?!…", "«»",
    "‘quoted’", "“double”", "--", "...", "[BOS]", "[UNK]", "[EOS]",
    "<unk>", "zzz qqq", "Zèbre", "unknownword !", "😀", "👍🏽", "a😀b",
    "👨‍👩‍👧", "e\u0301", "E\u0301COLE", "\u0301", "ﬁ", "①②", "٣",
    "Hello, World! 42 + 3", "tab\tand  spaces", "Straße STRASSE",
    "İstanbul", "ΣΟΦΙΑ", "Привет, мир!", "a" * 300, "\\", "\\0", "$1",
    "a\\0b", "\U0010ffff", "\ue000", "mixed CASE Words",
]


@pytest.fixture(scope="module")
def tokenizers():
    """Real Tokenizers adapted on CORPUS, one per configuration."""
    made = {}
    for name, kwargs in {
        "char-lower": dict(level="char", lowercase=True),
        "char-cased": dict(level="char", lowercase=False),
        "word": dict(level="word"),
        "word-cased-flag": dict(level="word", lowercase=False),
        "word-max": dict(level="word", max_tokens=14),
        "char-max": dict(level="char", max_tokens=20),
    }.items():
        tokenizer = Tokenizer(**kwargs)
        tokenizer.adapt(CORPUS)
        made[name] = tokenizer
    return made


def codec_of(model):
    kind = "tokenizer" if isinstance(model, Tokenizer) else "vocabulary"
    # Through JSON, as a manifest stores it.
    config = json.loads(json.dumps({"kind": kind, **model.get_config()}))
    return text.codec_from_config(config)


def test_import_is_tensorflow_free():
    code = (
        "import sys, kerasrnn_serving.text as t\n"
        "t.codec_from_config({'kind': 'vocabulary', 'tokens': ['<unk>',"
        " '<eos>', 'a']}).encode_text('a b')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras'))\n"
        "print(bad)\n"
        "assert 'tensorflow' not in sys.modules, bad\n"
        "assert 'keras' not in sys.modules, bad\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_word_standardize_matches_split_punctuation():
    expected = [
        value.decode("utf-8")
        for value in split_punctuation(tf.constant(TRICKY)).numpy().tolist()
    ]
    assert [text.split_punctuation(s) for s in TRICKY] == expected
    split = [
        [piece.decode("utf-8") for piece in row]
        for row in tf.strings.split(tf.constant(TRICKY)).to_list()
    ]
    assert [text.whitespace_split(s) for s in TRICKY] == split


def test_ascii_lower_matches_tf_strings_lower():
    expected = tf.strings.lower(tf.constant(TRICKY)).numpy().tolist()
    assert [text.ascii_lower(s).encode() for s in TRICKY] == expected
    # The evidence behind the docstring: only A-Z change.
    assert text.ascii_lower("ÉCOLE Ä İ ΣΑΣ ДОМ Ａ") == "École Ä İ ΣΑΣ ДОМ Ａ"


@pytest.mark.parametrize("name", [
    "char-lower", "char-cased", "word", "word-cased-flag", "word-max",
    "char-max",
])
def test_tokenizer_encode_matches(tokenizers, name):
    tokenizer = tokenizers[name]
    codec = codec_of(tokenizer)
    assert codec.vocabulary == tokenizer.vocabulary
    assert codec.vocabulary_size == tokenizer.vocabulary_size
    assert (codec.pad_id, codec.oov_id, codec.bos_id, codec.eos_id) == (
        tokenizer.pad_id, tokenizer.oov_id, tokenizer.bos_id,
        tokenizer.eos_id,
    )
    expected = tokenizer.encode(TRICKY + CORPUS).to_list()
    assert codec.encode(TRICKY + CORPUS) == expected
    assert codec.encode(tuple(CORPUS)) == tokenizer.encode(CORPUS).to_list()
    for sample in ("Va !", "", "ÉCOLE «test»"):
        assert codec.encode(sample) == tokenizer.encode(sample).to_list()
    assert codec.encode([]) == []


@pytest.mark.parametrize("name", ["char-lower", "char-cased", "word"])
def test_tokenizer_decode_matches(tokenizers, name):
    tokenizer = tokenizers[name]
    codec = codec_of(tokenizer)
    rows = tokenizer.encode(TRICKY, bos_eos=True).to_list()
    assert codec.decode(rows) == tokenizer.decode(rows)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, tokenizer.vocabulary_size, size=(64, 12))
    ids[:8] = np.where(ids[:8] == 3, 4, ids[:8])  # some rows with no EOS
    assert codec.decode(ids) == tokenizer.decode(ids)
    assert codec.decode(ids.tolist()) == tokenizer.decode(ids.tolist())
    ragged = [[2, 4, 5, 3, 6], [], [0, 0], [1, 4, 1], [3], [4, 0, 5, 2, 6]]
    assert codec.decode(ragged) == tokenizer.decode(ragged)


def test_unknown_tokens(tokenizers):
    word = codec_of(tokenizers["word"])
    assert word.unknown_tokens("Va ! Zèbre zèbre, l'OURS") == [
        "zèbre", "ours"
    ]
    assert word.unknown_tokens("Va !") == []
    assert word.unknown_tokens("a\xa0b") == ["a\xa0b"]
    char = codec_of(tokenizers["char-cased"])
    assert char.unknown_tokens("Va😀a😀") == ["😀"]
    for name, sample in [("word", "Zèbre, l'OURS ?"), ("char-lower", "😀Vz")]:
        tokenizer = tokenizers[name]
        codec = codec_of(tokenizer)
        ids = tokenizer.encode([sample]).to_list()[0]
        tokens = codec.tokenize(sample)
        assert len(tokens) == len(ids)
        assert codec.unknown_tokens(sample) == list(dict.fromkeys(
            t for t, i in zip(tokens, ids) if i == tokenizer.oov_id
        ))


def _sweep_points():
    points = list(range(1, 0x3100)) + list(range(0x3100, 0x110000, 97))
    points += [0xFEFF, 0xE000, 0x1F600, 0x1F3FD, 0x10FFFF]
    return [chr(p) for p in points if not 0xD800 <= p < 0xE000]


def test_code_point_sweep():
    """Every code point below U+3100 (and a sample above) between letters,
    through real Tokenizers whose vocabularies know every other one."""
    points = _sweep_points()
    known = points[::2]
    samples = ["x" + c + "Y" + c + c for c in points]
    specials = ["", "[UNK]", "[BOS]", "[EOS]"]
    char_vocab = specials + sorted(set(known) | {"x", "y", "Y"})
    for lowercase in (True, False):
        tokenizer = Tokenizer("char", lowercase=lowercase,
                              vocabulary=char_vocab)
        codec = codec_of(tokenizer)
        assert codec.encode(samples) == tokenizer.encode(samples).to_list()
    words = {"x", "y"} | set(known) | {f"x{c}y{c}{c}" for c in known}
    word_vocab = specials + sorted(words - set(specials))
    tokenizer = Tokenizer("word", vocabulary=word_vocab)
    codec = codec_of(tokenizer)
    expected = tokenizer.encode(samples).to_list()
    assert codec.encode(samples) == expected
    # The sweep discriminates: split, punctuation and known words all occur.
    lengths = {len(row) for row in expected}
    assert {1, 2, 5} <= lengths


def test_invalid_unicode_is_refused_like_tensorflow(tokenizers):
    with pytest.raises(ValueError):
        tokenizers["word"].encode(["a\ud800"])
    codec = codec_of(tokenizers["word"])
    with pytest.raises(text.TextError, match="UTF-8"):
        codec.encode(["ok", "a\ud800"])
    vocabulary = Vocabulary.build(tokenize("a b\n"))
    with pytest.raises(ValueError):
        vocabulary.encode_text("a \ud800")
    with pytest.raises(text.TextError, match="surrogate"):
        codec_of(vocabulary).encode_text("a \ud800")


@pytest.fixture(scope="module")
def vocabularies():
    corpus = "\n".join(CORPUS) + "\n<unk> word\n"
    return {
        "word": Vocabulary.build(tokenize(corpus, "word")),
        "word-small": Vocabulary.build(tokenize(corpus, "word"), max_size=8),
        "char": Vocabulary.build(tokenize(corpus, "char"), "char"),
        "char-small": Vocabulary.build(
            tokenize(corpus, "char"), "char", max_size=10
        ),
    }


PROMPTS = TRICKY + CORPUS + [
    "Va !\n", "Va !", "a b\nc d", "a b\nc d\n", "a b\r", "a b\r\n",
    "\n", "\n\n", "x\n\n", "x\n ", "<unk> <eos>\n", "<eos>", "<unk>",
    "Va ! <unk> zèbre\n", "words\u2028more\u2029", "a\x1cb\x1dc",
    "a\xa0b\u2003c", "tabs\tand\vverticals\fform\n",
]


@pytest.mark.parametrize("name", ["word", "word-small", "char", "char-small"])
def test_vocabulary_matches(vocabularies, name):
    vocabulary = vocabularies[name]
    codec = codec_of(vocabulary)
    assert codec.tokens == vocabulary.tokens
    assert (codec.size, codec.unk_id, codec.eos_id) == (
        vocabulary.size, vocabulary.unk_id, vocabulary.eos_id
    )
    for prompt in PROMPTS:
        ids = codec.encode_text(prompt)
        assert ids == vocabulary.encode_text(prompt).tolist(), prompt
        assert codec.decode(ids) == vocabulary.decode(ids), prompt
        try:
            expected = vocabulary.encode_text(prompt, strict=True).tolist()
        except ValueError as error:
            with pytest.raises(text.TextError) as caught:
                codec.encode_text(prompt, strict=True)
            assert str(caught.value) == str(error)
        else:
            assert codec.encode_text(prompt, strict=True) == expected
    rng = np.random.default_rng(1)
    ids = rng.integers(0, vocabulary.size, size=(3, 40))
    assert codec.decode(ids) == vocabulary.decode(ids)
    assert codec.decode([]) == vocabulary.decode([])


def test_vocabulary_literal_specials(vocabularies):
    vocabulary = vocabularies["word"]
    codec = codec_of(vocabulary)
    # StringLookup maps the literal "<unk>" to 0 and "<eos>" to 1.
    assert vocabulary.encode_text("<unk> <eos> word\n").tolist()[:2] == [0, 1]
    assert codec.encode_text("<unk> <eos> word\n")[:2] == [0, 1]
    assert codec.encode_text("<unk> word", strict=True) == (
        vocabulary.encode_text("<unk> word", strict=True).tolist()
    )
    with pytest.raises(text.TextError, match=r"\['qqq', 'zzz'\]"):
        codec.encode_text("zzz word qqq zzz", strict=True)


def test_config_round_trip(tokenizers, vocabularies):
    for model in [*tokenizers.values(), *vocabularies.values()]:
        codec = codec_of(model)
        assert codec.get_config() == json.loads(
            json.dumps(model.get_config())
        )
        again = text.codec_from_config({"kind": codec.kind,
                                        **codec.get_config()})
        assert again.get_config() == codec.get_config()


SPECIALS = ["", "[UNK]", "[BOS]", "[EOS]"]


@pytest.mark.parametrize("config, match", [
    ({"kind": "bpe", "level": "word"}, "kind"),
    ({"level": "word", "vocabulary": SPECIALS}, "kind"),
    ({"kind": "tokenizer", "level": "byte", "vocabulary": SPECIALS}, "level"),
    ({"kind": "tokenizer", "level": "word", "vocabulary": None},
     "no vocabulary"),
    ({"kind": "tokenizer", "level": "word", "vocabulary": ["", "[UNK]"]},
     "missing"),
    ({"kind": "tokenizer", "level": "word",
      "vocabulary": ["[UNK]", "", "[BOS]", "[EOS]"]}, "start with"),
    ({"kind": "tokenizer", "level": "word", "vocabulary": SPECIALS + [""]},
     "padding token"),
    ({"kind": "tokenizer", "level": "word",
      "vocabulary": SPECIALS + ["a", "a"]}, "repeats"),
    ({"kind": "tokenizer", "level": "word", "vocabulary": SPECIALS + [5]},
     "only str"),
    ({"kind": "tokenizer", "level": "word", "vocabulary": "abc"},
     "list of str"),
    ({"kind": "tokenizer", "level": "char", "vocabulary": SPECIALS,
      "lowercase": "yes"}, "lowercase"),
    ({"kind": "tokenizer", "level": "char", "vocabulary": SPECIALS,
      "max_tokens": 0}, "max_tokens"),
    ({"kind": "tokenizer", "level": "char", "vocabulary": SPECIALS,
      "split": "whitespace"}, "unknown keys"),
    ({"kind": "tokenizer", "level": "char"}, "missing"),
    ({"kind": "vocabulary", "tokens": ["<eos>", "<unk>"]}, "start with"),
    ({"kind": "vocabulary", "tokens": ["a"], "level": "char"}, "start with"),
    ({"kind": "vocabulary", "tokens": ["<unk>", "<eos>"], "level": "line"},
     "level"),
    ({"kind": "vocabulary", "tokens": ["<unk>", "<eos>", "a", "a"]},
     "repeats"),
    ({"kind": "vocabulary", "tokens": ["<unk>", "<eos>", None]}, "only str"),
    ({"kind": "vocabulary"}, "missing"),
    (["tokenizer"], "dict"),
])
def test_bad_configs(config, match):
    with pytest.raises(text.TextError, match=match):
        text.codec_from_config(config)


def test_tokenizer_accepts_what_tokenizer_accepts():
    # StringLookup lets "[UNK]" appear again further on; so does the codec.
    vocabulary = SPECIALS + ["a", "[UNK]"]
    tokenizer = Tokenizer("word", vocabulary=vocabulary)
    codec = codec_of(tokenizer)
    assert codec.encode(["a [UNK] b"]) == tokenizer.encode(
        ["a [UNK] b"]).to_list()
    assert codec.decode([[4, 5]]) == tokenizer.decode([[4, 5]])


def test_bad_inputs(tokenizers, vocabularies):
    codec = codec_of(tokenizers["word"])
    for bad in (None, 3, b"bytes", [b"bytes"], ["ok", 4]):
        with pytest.raises(TypeError, match=type(
            bad[-1] if isinstance(bad, list) else bad
        ).__name__):
            codec.encode(bad)
    with pytest.raises(TypeError, match="int"):
        codec.unknown_tokens(5)
    size = codec.vocabulary_size
    with pytest.raises(text.TextError, match=f"0..{size - 1}"):
        codec.decode([[4, size]])
    with pytest.raises(text.TextError, match="-1"):
        codec.decode([[-1]])
    assert codec.decode([[3, -1]]) == [""]  # nothing is read after EOS
    with pytest.raises(TypeError, match="float"):
        codec.decode([[4.0]])
    with pytest.raises(TypeError, match="rows"):
        codec.decode(5)
    with pytest.raises(TypeError, match="row 0"):
        codec.decode([4, 5])
    vocabulary = codec_of(vocabularies["word"])
    with pytest.raises(TypeError, match="list"):
        vocabulary.encode_text(["a"])
    with pytest.raises(TypeError, match="bytes"):
        vocabulary.encode_text(b"a")
    with pytest.raises(text.TextError, match="outside"):
        vocabulary.decode([vocabulary.size])
    with pytest.raises(TypeError, match="integers"):
        vocabulary.decode(np.array([1.5]))
    with pytest.raises(TypeError, match="str"):
        vocabulary.decode("abc")
