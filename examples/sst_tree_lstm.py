"""SST sentiment with the constituency (binary) Tree-LSTM, against a
kerasrnn BiLSTM over the same sentences and the same embeddings.

The Tree-LSTM is trained with a loss at every labelled node and scored at
the root (Tai, Socher & Manning 2015, §4.1, §5.1); the BiLSTM reads the
sentence's words (the tree's leaves, left to right) and is trained on the
sentence label. Both keep the epoch with the best dev root accuracy and
report test at it.

Modes: ``fine`` (5 classes, all sentences) and ``binary`` (negative 0-1 vs
positive 3-4; neutral sentences dropped, neutral phrases unlabelled).
Embeddings: ``--glove FILE`` (e.g. ``glove.6B.50d.sst_sick.txt``, looked
up with ``glove_key``: PTB escapes undone, lower case; fine-tuned) or
random.

    python examples/sst_tree_lstm.py                  # built-in trees
    python examples/sst_tree_lstm.py --data ../shared/data/sst \\
        --glove ../shared/data/glove_sst/glove.6B.50d.sst_sick.txt \\
        --mode fine --epochs 3
"""

import argparse
import dataclasses
import pathlib
import time

import keras
import numpy as np

import kerasrnn
from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import Tree
from kerasrnn.trees import TreeBatches
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import glove_key
from kerasrnn.trees import load_vectors
from kerasrnn.trees import read_bracketed
from kerasrnn.trees import tree_classifier
from kerasrnn.trees.data import sample_sentiment_trees

# Tai et al. 2015, Table 2 (300d GloVe): test accuracy.
TAI = {
    "fine": [("Tai et al. constituency Tree-LSTM", 51.0),
             ("Tai et al. LSTM", 46.4), ("Tai et al. Bi-LSTM", 49.1)],
    "binary": [("Tai et al. constituency Tree-LSTM", 88.0),
               ("Tai et al. LSTM", 84.9), ("Tai et al. 2-layer LSTM", 86.3),
               ("Tai et al. Bi-LSTM", 87.5)],
}
BINARY = {0: 0, 1: 0, 2: -1, 3: 1, 4: 1}


@dataclasses.dataclass
class Config:
    data: str = None
    glove: str = None
    mode: str = "fine"
    epochs: int = 3
    units: int = 150
    embedding_dim: int = 50
    batch_size: int = 25
    learning_rate: float = 2e-3
    dropout: float = 0.5
    max_train: int = None
    seed: int = 0


def relabel(trees, mode):
    """Binary mode: node labels mapped (neutral: None), neutral roots
    dropped."""
    if mode == "fine":
        return trees
    out = []
    for tree in trees:
        labels = tuple(None if BINARY[y] < 0 else BINARY[y]
                       for y in tree.labels)
        if labels[0] is not None:
            out.append(Tree(tree.children, tree.tokens, labels))
    return out


def load_splits(config):
    if config.data is None:
        trees = sample_sentiment_trees(1200, seed=config.seed)
        splits = {"train": trees[:900], "dev": trees[900:1050],
                  "test": trees[1050:]}
    else:
        root = pathlib.Path(config.data)
        splits = {name: read_bracketed(root / f"{name}.txt")
                  for name in ("train", "dev", "test")}
    splits = {k: relabel(v, config.mode) for k, v in splits.items()}
    if config.max_train:
        splits["train"] = splits["train"][:config.max_train]
    return splits


def embeddings(config, splits):
    if config.glove:
        # Every split's words: the vectors are pretrained, not learned here.
        vocabulary = Vocabulary.from_trees(
            [t for s in splits.values() for t in s], key=glove_key)
        matrix, found = load_vectors(config.glove, vocabulary,
                                     config.embedding_dim, seed=config.seed)
        print(f"GloVe vectors for {found} of {len(vocabulary) - 2} words")
        return vocabulary, matrix
    vocabulary = Vocabulary.from_trees(splits["train"])
    return vocabulary, None


def sentence_ids(trees, vocabulary):
    rows = [[vocabulary.id(tree.tokens[n]) for n in tree.leaves()]
            for tree in trees]
    ids = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return ids


def bilstm(vocabulary, matrix, classes, config):
    init = ("uniform" if matrix is None
            else keras.initializers.Constant(matrix))
    return keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(len(vocabulary), config.embedding_dim,
                               embeddings_initializer=init, mask_zero=True),
        keras.layers.Dropout(config.dropout),
        kerasrnn.LSTM(config.units, bidirectional=True),
        keras.layers.Dropout(config.dropout),
        keras.layers.Dense(classes),
    ], name="bilstm")


def train_best(model, fit_data, dev, test, epochs, score):
    """Trains epoch by epoch; the weights of the best dev score are kept."""
    best, best_weights, seconds = -1.0, None, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.fit(*fit_data, epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        dev_score = score(model, dev)
        print(f"  {model.name} epoch {epoch + 1}: dev {dev_score:.2f}% "
              f"({seconds:.0f}s training)")
        if dev_score > best:
            best, best_weights = dev_score, model.get_weights()
    model.set_weights(best_weights)
    return best, score(model, test), seconds


def main(config):
    keras.utils.set_random_seed(config.seed)
    splits = load_splits(config)
    classes = 5 if config.mode == "fine" else 2
    print({k: len(v) for k, v in splits.items()}, "trees;", config)
    vocabulary, matrix = embeddings(config, splits)

    model = tree_classifier(
        len(vocabulary), NaryTreeLSTMCell(config.units, max_children=2),
        classes, embedding_dim=config.embedding_dim, dropout=config.dropout,
        output_dropout=config.dropout, name="tree_lstm")
    if matrix is not None:
        model.get_layer("embedding").set_weights([matrix])
    model.compile(
        keras.optimizers.Adam(config.learning_rate),
        loss={"nodes": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=-1)},
        metrics={"root": ["accuracy"]})

    def batches(trees, shuffle=False):
        return TreeBatches(trees, vocabulary, batch_size=config.batch_size,
                           shuffle=shuffle, seed=config.seed,
                           targets=lambda y: {"nodes": y, "root": y[:, 0]})

    def tree_score(model, trees):
        result = model.evaluate(batches(trees), verbose=0, return_dict=True)
        return 100 * result["root_accuracy"]

    tree_dev, tree_test, tree_seconds = train_best(
        model, (batches(splits["train"], shuffle=True),), splits["dev"],
        splits["test"], config.epochs, tree_score)

    baseline = bilstm(vocabulary, matrix, classes, config)
    baseline.compile(
        keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])

    def sequences(trees):
        return (sentence_ids(trees, vocabulary),
                np.array([t.labels[0] for t in trees], np.int32))

    def lstm_score(model, trees):
        x, y = sequences(trees)
        return 100 * model.evaluate(x, y, verbose=0, return_dict=True,
                                    batch_size=config.batch_size)["accuracy"]

    x, y = sequences(splits["train"])
    lstm_dev, lstm_test, lstm_seconds = train_best(
        baseline, (x, y), splits["dev"], splits["test"], config.epochs,
        lstm_score)

    embedding = (f"GloVe {config.embedding_dim}d" if config.glove
                 else f"random {config.embedding_dim}d")
    budget = (f"{config.epochs} epochs, H={config.units}, {embedding}, "
              f"Adam {config.learning_rate}, batch {config.batch_size}")
    print(f"\nSST {config.mode} ({budget}); test accuracy at best dev:")
    print(f"  ours constituency Tree-LSTM  {tree_test:5.1f}  "
          f"(dev {tree_dev:.1f}, {tree_seconds:.0f}s)")
    print(f"  ours BiLSTM                  {lstm_test:5.1f}  "
          f"(dev {lstm_dev:.1f}, {lstm_seconds:.0f}s)")
    if config.data is not None:
        for name, value in TAI[config.mode]:
            print(f"  {name:<34} {value:5.1f}  (300d GloVe, to convergence)")
    return {"tree_test": tree_test, "lstm_test": lstm_test,
            "tree_dev": tree_dev, "lstm_dev": lstm_dev}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field in dataclasses.fields(Config):
        parser.add_argument("--" + field.name.replace("_", "-"),
                            type=field.type, default=field.default)
    return Config(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main(parse_args())
