"""The ``kerasrnn`` command's data: files read and checked line by line,
and small built-in data sets (``--data builtin``).

Every reader returns plain Python lists and raises ``DataError`` naming the
file and line of the first problem, before anything is trained or written.

* ``read_columns``: tab-separated lines, two chosen columns (classifier:
  text, label; seq2seq: source, target; the Tatoeba ``fra.txt`` layout).
* ``read_conllu``: CoNLL-U sentences as ``(words, tags)``: the FORM
  column and the UPOS (or XPOS) column of each token line; comments,
  multi-word token ranges (``1-2``) and empty nodes (``1.1``) skipped.
* ``read_lines``: one text per line (language model).
"""

import os

import numpy as np
from kerasrnn import conllu


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


def _open(path):
    if not os.path.isfile(path):
        raise DataError(f"--data: no such file: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"--data: {path} is not UTF-8 text ({error})")


def _nonempty(rows, path, what):
    if not rows:
        raise DataError(f"--data: {path} holds no {what}")
    return rows


def read_columns(path, columns=(1, 2), limit=None):
    """``[(first, second), ...]`` from the 1-based ``columns`` of each
    non-blank line (at most ``limit`` rows); a line with fewer columns,
    or an empty field, is an error."""
    needed = max(columns)
    rows = []
    for number, line in enumerate(_open(path), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < needed:
            raise DataError(
                f"{path}:{number}: expected at least {needed} tab-separated "
                f"columns (--columns {columns[0]},{columns[1]}), found "
                f"{len(fields)}: {line[:60]!r}"
            )
        pair = tuple(fields[c - 1].strip() for c in columns)
        if not all(pair):
            raise DataError(f"{path}:{number}: an empty column: {line[:60]!r}")
        rows.append(pair)
        if limit is not None and len(rows) == limit:
            break
    return _nonempty(rows, path, "tab-separated rows")


def read_conllu(path, tag_column="upos", limit=None):
    """``[(words, tags), ...]``, one per sentence (at most ``limit``)."""
    index = {"upos": 3, "xpos": 4}[tag_column]
    tagged = []
    for _, words in conllu.sentences(_open(path), path, DataError):
        for number, fields in words:
            if fields[index] == "_":
                raise DataError(
                    f"{path}:{number}: no {tag_column.upper()} tag ('_') for "
                    f"{fields[1]!r}"
                )
        tagged.append(([fields[1] for _, fields in words],
                       [fields[index] for _, fields in words]))
        if limit is not None and len(tagged) == limit:
            break
    return _nonempty(tagged, path, "CoNLL-U sentences")


def read_lines(path, limit=None):
    """The non-blank lines (at most ``limit``)."""
    lines = [line for line in _open(path) if line.strip()][:limit]
    return _nonempty(lines, path, "text lines")


# --- built-in data ---------------------------------------------------------

_POSITIVE = "good great fine nice superb lovely".split()
_NEGATIVE = "bad awful poor nasty dull dreadful".split()
_NEUTRAL = "the film was a plot and it actors seemed story".split()
_LEXICON = {"the": "DET", "a": "DET", "cat": "NOUN", "dog": "NOUN",
            "bird": "NOUN", "sees": "VERB", "likes": "VERB", "big": "ADJ",
            "small": "ADJ", "red": "ADJ", "runs": "VERB", "park": "NOUN"}
_NUMBERS = "zero one two three four five six seven eight nine".split()


def builtin(task, count=600, seed=0):
    """A small deterministic data set for ``task``, in the form the
    readers return: classifier ``(text, label)`` pairs (sentiment words
    decide the label), tagger ``(words, tags)`` sentences (each word has
    one tag), seq2seq ``(source, target)`` pairs (number words to their
    digits, reversed) and lm lines (sentences of a tiny grammar)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        if task == "classifier":
            label = int(rng.integers(2))
            words = list(rng.choice(_NEUTRAL, 5)) + list(
                rng.choice(_POSITIVE if label else _NEGATIVE, 2))
            rng.shuffle(words)
            rows.append((" ".join(words), "pos" if label else "neg"))
        elif task == "tagger":
            words = [str(w) for w in rng.choice(
                list(_LEXICON), int(rng.integers(3, 9)))]
            rows.append((words, [_LEXICON[w] for w in words]))
        elif task == "seq2seq":
            digits = rng.integers(0, 10, int(rng.integers(1, 6)))
            rows.append((" ".join(_NUMBERS[d] for d in digits),
                         " ".join(str(d) for d in digits[::-1])))
        else:
            noun, verb, adjective = (
                str(rng.choice([w for w, t in _LEXICON.items() if t == tag]))
                for tag in ("NOUN", "VERB", "ADJ"))
            rows.append(f"the {adjective} {noun} {verb} the park .")
    return rows
