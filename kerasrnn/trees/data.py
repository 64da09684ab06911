"""Tree data sets: readers (SST PTB brackets, parent-array files, CoNLL-U,
SICK pairs), word vectors, and ``TreeBatches`` (batches for ``fit``).

Every reader names the file and line of a malformed tree.
"""

import pathlib

import keras
import numpy as np

from kerasrnn.trees.encoding import TreeFormatError
from kerasrnn.trees.encoding import encode
from kerasrnn.trees.encoding import from_parents
from kerasrnn.trees.encoding import parse_bracketed
from kerasrnn import conllu


def _lines(path):
    # Split on LF only: str.splitlines() would also split on U+2028 etc.
    text = pathlib.Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_bracketed(path):
    """The trees of a PTB-bracket file (SST ``train.txt``): one per line."""
    return [
        parse_bracketed(line, where=f"{path} line {number}")
        for number, line in enumerate(_lines(path), 1)
    ]


def read_parents(parents_path, tokens_path=None):
    """Dependency trees from a parent-array file (one tree a line,
    space-separated 1-based heads, 0 = root) and optionally its token file
    (the same lines, space-separated words): the SICK
    ``treelstm_preprocessed`` layout."""
    heads = _lines(parents_path)
    words = _lines(tokens_path) if tokens_path is not None else None
    if words is not None and len(words) != len(heads):
        raise TreeFormatError(
            f"{tokens_path} has {len(words)} lines but {parents_path} has "
            f"{len(heads)}; expected one line per tree in both."
        )
    trees = []
    for number, line in enumerate(heads, 1):
        where = f"{parents_path} line {number}"
        try:
            parents = [int(p) for p in line.split(" ") if p]
        except ValueError:
            raise TreeFormatError(
                f"{where}: parent indices are integers; found {line!r}."
            ) from None
        tokens = words[number - 1].split(" ") if words is not None else None
        trees.append(from_parents(parents, tokens, where=where))
    return trees


def read_conllu(path):
    """Dependency trees of a CoNLL-U file (words and HEAD column;
    multi-word ranges ``3-4`` and empty nodes ``5.1`` are skipped)."""
    trees = []
    for start, words in conllu.sentences(_lines(path), path,
                                         TreeFormatError):
        where = f"{path} sentence at line {start}"
        ids = [fields[0] for _, fields in words]
        if [int(i) for i in ids] != list(range(1, len(ids) + 1)):
            raise TreeFormatError(
                f"{where}: word IDs {ids[:8]} are not 1, 2, 3, ..."
            )
        heads = []
        for number, fields in words:
            try:
                heads.append(int(fields[6]))
            except ValueError:
                raise TreeFormatError(
                    f"{path} line {number}: HEAD must be an integer; found "
                    f"{fields[6]!r}."
                ) from None
        tokens = [fields[1] for _, fields in words]
        trees.append(from_parents(heads, tokens, where=where))
    return trees


def read_sick(directory):
    """One split of SICK in Tai et al.'s preprocessed layout (``a.parents``,
    ``a.toks``, ``b.parents``, ``b.toks``, ``sim.txt``): ``(trees_a,
    trees_b, scores)``."""
    directory = pathlib.Path(directory)
    a = read_parents(directory / "a.parents", directory / "a.toks")
    b = read_parents(directory / "b.parents", directory / "b.toks")
    scores = np.array([float(s) for s in _lines(directory / "sim.txt")])
    if not len(a) == len(b) == len(scores):
        raise TreeFormatError(
            f"{directory}: {len(a)} a-trees, {len(b)} b-trees and "
            f"{len(scores)} scores; expected equal counts."
        )
    return a, b, scores


def load_vectors(path, vocabulary, dim, seed=0, scale=0.05):
    """An embedding matrix for ``vocabulary`` from a GloVe text file.

    Words found (looked up with ``vocabulary.key``) get their vector; the
    others ``uniform(-scale, scale)``; row 0 (no word) is zero.

    Returns:
        ``(matrix (len(vocabulary), dim) float32, found)``: ``found`` is the
        number of vocabulary words that have a vector.
    """
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-scale, scale, (len(vocabulary), dim))
    matrix[0] = 0.0
    found = set()
    for number, line in enumerate(_lines(path), 1):
        word, _, rest = line.partition(" ")
        index = vocabulary.index.get(word)
        if index is None or index in found:
            continue
        values = np.array(rest.split(" "), dtype="float64")
        if values.shape != (dim,):
            raise ValueError(
                f"{path} line {number}: {values.size} numbers; expected "
                f"dim={dim}."
            )
        matrix[index] = values
        found.add(index)
    return matrix.astype("float32"), len(found)


class TreeBatches(keras.utils.PyDataset):
    """Batches of encoded trees for ``fit``/``evaluate``/``predict``.

    Trees are bucketed by size (sorted within windows of 50 batches, the
    batches shuffled each epoch when ``shuffle``), so that the trees of a
    batch have similar heights: a batch runs as many levels as its tallest
    tree. Every batch is padded to the data set's largest tree and widest
    node (per side of a pair): one shape, so ``fit`` traces its step once
    (Keras infers the input shapes from the first two batches).

    Args:
        inputs: a list of trees, or (pairs) a tuple of two lists.
        targets: a function ``labels (B, N) -> y`` for one tree per row
            (e.g. ``lambda y: {"nodes": y, "root": y[:, 0]}``), or an array
            of per-row targets given to ``target_fn``; None for predict.
        vocabulary: the ``Vocabulary``.
        batch_size: trees per batch.
        shuffle: reshuffle the batches every epoch.
        seed: the shuffling seed.
        max_children: ``K`` for every batch (default: the widest node).
        target_fn: maps the per-row targets of a batch to ``y``.
    """

    def __init__(self, inputs, vocabulary, targets=None, batch_size=25,
                 shuffle=False, seed=0, max_children=None, target_fn=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.pairs = isinstance(inputs, tuple)
        first = inputs[0] if self.pairs else inputs
        self.inputs = inputs
        self.vocabulary = vocabulary
        self.targets = targets
        self.target_fn = target_fn
        self.batch_size = batch_size
        self.shuffle = shuffle
        sides = inputs if self.pairs else (inputs,)
        self.max_nodes = [max(t.size for t in side) for side in sides]
        if max_children is None:
            max_children = max(
                max(len(k) for t in side for k in t.children) for side in sides
            )
        self.max_children = max(max_children, 1)
        self.rng = np.random.default_rng(seed)
        sizes = np.array([
            t.size + (inputs[1][i].size if self.pairs else 0)
            for i, t in enumerate(first)
        ])
        order = np.arange(len(sizes))
        window = 50 * batch_size
        if shuffle:
            order = self.rng.permutation(len(sizes))
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            order[start:start + window] = chunk[np.argsort(sizes[chunk],
                                                           kind="stable")]
        self.batches = [order[i:i + batch_size]
                        for i in range(0, len(order), batch_size)]

    def __len__(self):
        return len(self.batches)

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.batches)

    def _encode(self, trees, side=0, prefix=""):
        x, labels = encode(trees, self.vocabulary,
                           max_children=self.max_children,
                           max_nodes=self.max_nodes[side])
        return {f"{prefix}{k}": v for k, v in x.items()}, labels

    def __getitem__(self, index):
        rows = self.batches[index]
        if self.pairs:
            x, _ = self._encode([self.inputs[0][i] for i in rows], 0, "a_")
            x.update(
                self._encode([self.inputs[1][i] for i in rows], 1, "b_")[0]
            )
            labels = None
        else:
            x, labels = self._encode([self.inputs[i] for i in rows])
        if self.targets is None:
            return (x,)
        if callable(self.targets):
            return x, self.targets(labels)
        return x, self.target_fn(np.asarray(self.targets)[rows])



# The built-in sentiment set: word polarities, and "not"/"never" flip the
# phrase they head.
_POLARITY = {
    "superb": 2, "wonderful": 2, "good": 1, "funny": 1, "warm": 1,
    "awful": -2, "dreadful": -2, "bad": -1, "dull": -1, "flat": -1,
}
_NEUTRAL = ("the", "film", "story", "cast", "a", "plot", "is", "and", "was",
            "very", "its", "ending")
_NEGATORS = ("not", "never")


def sample_sentiment_trees(count, seed=0):
    """``count`` SST-like binary trees (labels 0-4 at every node) over a
    small vocabulary, for running the examples without data.

    A leaf's label is ``2 + polarity(word)``; an inner node's is
    ``2 - s_r`` when its left child is "not"/"never" (negation of the
    right phrase, ``s_r`` its label minus 2) and ``2 + clip(s_l + s_r, -2,
    2)`` otherwise, so the root depends on the tree's structure.
    """
    rng = np.random.default_rng(seed)
    words = list(_POLARITY) + list(_NEUTRAL) * 2 + list(_NEGATORS) * 2
    trees = []
    for _ in range(count):
        length = int(rng.integers(2, 12))
        sentence = [words[i] for i in rng.integers(0, len(words), length)]
        trees.append(parse_bracketed(_sentiment_bracket(sentence, rng)[0]))
    return trees


def _sentiment_bracket(words, rng):
    if len(words) == 1:
        word = words[0]
        score = _POLARITY.get(word, 0)
        return f"({score + 2} {word})", score, word in _NEGATORS
    split = int(rng.integers(1, len(words)))
    left, s_left, negator = _sentiment_bracket(words[:split], rng)
    right, s_right, _ = _sentiment_bracket(words[split:], rng)
    score = -s_right if negator else int(np.clip(s_left + s_right, -2, 2))
    return f"({score + 2} {left} {right})", score, False


def sample_relatedness_pairs(count, seed=0):
    """``count`` pairs of dependency trees with a relatedness score in
    [1, 5], for running the SICK example without data: tree b is tree a
    with ``k`` of its ``n`` words replaced, score ``5 - 4k/n``.

    Returns ``(trees_a, trees_b, scores)``.
    """
    rng = np.random.default_rng(seed)
    vocabulary = list(_POLARITY) + list(_NEUTRAL) + ["dog", "man", "runs",
                                                     "ball", "park", "cat"]
    trees_a, trees_b, scores = [], [], []
    for _ in range(count):
        size = int(rng.integers(3, 10))
        parents = [0] + [int(rng.integers(1, w + 1)) for w in range(1, size)]
        words = [vocabulary[i] for i in rng.integers(0, len(vocabulary),
                                                     size)]
        changed = int(rng.integers(0, size + 1))
        other = list(words)
        for position in rng.choice(size, changed, replace=False):
            other[position] = vocabulary[int(rng.integers(len(vocabulary)))]
        same = sum(a == b for a, b in zip(words, other))
        trees_a.append(from_parents(parents, words))
        trees_b.append(from_parents(parents, other))
        scores.append(1.0 + 4.0 * same / size)
    return trees_a, trees_b, np.array(scores)
