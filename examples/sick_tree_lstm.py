"""SICK semantic relatedness with the dependency (Child-Sum) Tree-LSTM and
Tai et al.'s similarity head, against a kerasrnn BiLSTM with the same head
and the same embeddings.

Both read the sentence pair, make one vector per sentence (the root's
``h``; the BiLSTM's final forward and backward states), and predict a
distribution over the scores 1..5 trained with KL divergence to the sparse
target (Tai, Socher & Manning 2015, §4.2). Reported on test at the epoch of
the best dev Pearson r: Pearson r, Spearman ρ, MSE.

Embeddings: ``--glove FILE --embedding-dim D`` (Tai et al.: GloVe 840B
300d, ``glove.840B.300d.sick.txt``, cased tokens; kept frozen, as theirs)
or random (trained).

    python examples/sick_tree_lstm.py                 # built-in pairs
    python examples/sick_tree_lstm.py \\
        --data ../shared/data/sick/treelstm_preprocessed \\
        --glove ../shared/data/glove_sst/glove.840B.300d.sick.txt \\
        --embedding-dim 300 --epochs 5
"""

import argparse
import dataclasses
import pathlib
import time

import keras
import numpy as np

import kerasrnn
from kerasrnn.trees import ChildSumTreeLSTMCell
from kerasrnn.trees import SimilarityHead
from kerasrnn.trees import TreeBatches
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import load_vectors
from kerasrnn.trees import read_sick
from kerasrnn.trees import similarity_distribution
from kerasrnn.trees import tree_similarity
from kerasrnn.trees.data import sample_relatedness_pairs

# Tai et al. 2015, Table 3 (GloVe 840B 300d): Pearson r, Spearman ρ, MSE.
TAI = [("Tai et al. dependency Tree-LSTM", 0.8676, 0.8083, 0.2532),
       ("Tai et al. Bi-LSTM", 0.8567, 0.7966, 0.2736),
       ("Tai et al. LSTM", 0.8528, 0.7911, 0.2831)]


@dataclasses.dataclass
class Config:
    data: str = None
    glove: str = None
    epochs: int = 5
    units: int = 150
    embedding_dim: int = 300
    hidden_units: int = 50
    batch_size: int = 25
    learning_rate: float = 1e-3
    max_train: int = None
    seed: int = 0


def load_splits(config):
    if config.data is None:
        a, b, y = sample_relatedness_pairs(1200, seed=config.seed)
        cut = [(0, 900), (900, 1050), (1050, 1200)]
        splits = {name: (a[i:j], b[i:j], y[i:j])
                  for name, (i, j) in zip(("train", "dev", "test"), cut)}
    else:
        root = pathlib.Path(config.data)
        splits = {name: read_sick(root / name)
                  for name in ("train", "dev", "test")}
    if config.max_train:
        splits["train"] = tuple(s[:config.max_train]
                                for s in splits["train"])
    return splits


def pearson(x, y):
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def ranks(x):
    """Ranks with ties averaged (for Spearman's ρ)."""
    order = np.argsort(x, kind="stable")
    rank = np.empty(len(x))
    rank[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        rank[tied] = rank[tied].mean()
    return rank


def scores(predicted, gold):
    return {"pearson": pearson(predicted, gold),
            "spearman": pearson(ranks(predicted), ranks(gold)),
            "mse": float(np.mean((predicted - gold) ** 2))}


def sentence_ids(trees, vocabulary):
    # The words in sentence order (`positions` maps nodes back to words).
    rows = []
    for tree in trees:
        words = [None] * tree.size
        for node, position in enumerate(tree.positions):
            words[position] = tree.tokens[node]
        rows.append([vocabulary.id(w) for w in words])
    ids = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return ids


def bilstm_similarity(vocabulary, config):
    left = keras.Input((None,), dtype="int32", name="a_ids")
    right = keras.Input((None,), dtype="int32", name="b_ids")
    embedding = keras.layers.Embedding(len(vocabulary), config.embedding_dim,
                                       mask_zero=True, name="embedding")
    encoder = kerasrnn.LSTM(config.units, bidirectional=True)
    p, score = SimilarityHead(config.hidden_units, name="similarity")(
        [encoder(embedding(left)), encoder(embedding(right))])
    return keras.Model({"a_ids": left, "b_ids": right},
                       {"distribution": p, "score": score}, name="bilstm")


def train_best(model, data, splits, config):
    """Trains epoch by epoch; keeps the weights of the best dev r."""
    best, best_weights, seconds = -2.0, None, 0.0
    for epoch in range(config.epochs):
        start = time.perf_counter()
        model.fit(data["train"], epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        dev = scores(predict(model, data["dev"]), splits["dev"][2])
        print(f"  {model.name} epoch {epoch + 1}: dev r {dev['pearson']:.4f}"
              f" ({seconds:.0f}s training)")
        if dev["pearson"] > best:
            best, best_weights = dev["pearson"], model.get_weights()
    model.set_weights(best_weights)
    test = scores(predict(model, data["test"]), splits["test"][2])
    return best, test, seconds


def predict(model, data):
    """Scores in data-set order (batches may come bucketed)."""
    out = np.zeros(sum(len(rows) for rows in data.batches))
    for index, rows in enumerate(data.batches):
        out[rows] = np.asarray(
            model.predict_on_batch(data[index][0])["score"])
    return out


class SequencePairs(keras.utils.PyDataset):
    """Word-id pairs batched as ``like`` (a ``TreeBatches``) batches them,
    shuffled with it."""

    def __init__(self, ids_a, ids_b, targets, like, **kwargs):
        super().__init__(**kwargs)
        self.ids = (ids_a, ids_b)
        self.targets = targets
        self.like = like

    @property
    def batches(self):
        return self.like.batches

    def __len__(self):
        return len(self.batches)

    def on_epoch_end(self):
        self.like.on_epoch_end()

    def __getitem__(self, index):
        rows = self.batches[index]
        x = {"a_ids": self.ids[0][rows], "b_ids": self.ids[1][rows]}
        y = self.targets[rows]
        return x, {"distribution": similarity_distribution(y), "score": y}


def main(config):
    keras.utils.set_random_seed(config.seed)
    splits = load_splits(config)
    print({k: len(v[2]) for k, v in splits.items()}, "pairs;", config)
    everything = [t for a, b, _ in splits.values() for t in a + b]
    if config.glove:
        vocabulary = Vocabulary.from_trees(everything)
        matrix, found = load_vectors(config.glove, vocabulary,
                                     config.embedding_dim, seed=config.seed)
        print(f"GloVe vectors for {found} of {len(vocabulary) - 2} words")
    else:
        vocabulary = Vocabulary.from_trees(
            splits["train"][0] + splits["train"][1])
        matrix = None

    def tree_data(split, shuffle):
        a, b, y = splits[split]
        return TreeBatches((a, b), vocabulary, targets=y,
                           batch_size=config.batch_size, shuffle=shuffle,
                           seed=config.seed,
                           target_fn=lambda y: {
                               "distribution": similarity_distribution(y),
                               "score": y})

    def sequence_data(split, shuffle):
        a, b, y = splits[split]
        return SequencePairs(sentence_ids(a, vocabulary),
                             sentence_ids(b, vocabulary), y,
                             tree_data(split, shuffle))

    results = {}
    for model, make_data in (
        (tree_similarity(len(vocabulary), ChildSumTreeLSTMCell(config.units),
                         embedding_dim=config.embedding_dim,
                         hidden_units=config.hidden_units,
                         name="tree_lstm"), tree_data),
        (bilstm_similarity(vocabulary, config), sequence_data),
    ):
        embedding = model.get_layer("embedding")
        embedding.build((None, None))
        if matrix is not None:
            embedding.set_weights([matrix])
            embedding.trainable = False
        model.compile(keras.optimizers.Adam(config.learning_rate),
                      loss={"distribution": "kl_divergence"})
        data = {split: make_data(split, split == "train")
                for split in ("train", "dev", "test")}
        results[model.name] = train_best(model, data, splits, config)

    embedding = (f"GloVe {config.embedding_dim}d frozen" if config.glove
                 else f"random {config.embedding_dim}d trained")
    print(f"\nSICK relatedness ({config.epochs} epochs, H={config.units}, "
          f"{embedding}, Adam {config.learning_rate}, batch "
          f"{config.batch_size}); test at best dev r:")
    print(f"  {'':34} {'r':>7} {'rho':>7} {'MSE':>7}")
    for name, (dev, test, seconds) in results.items():
        print(f"  ours {name:<29} {test['pearson']:7.4f} "
              f"{test['spearman']:7.4f} {test['mse']:7.4f}  (dev r "
              f"{dev:.4f}, {seconds:.0f}s)")
    if config.data is not None:
        for name, r, rho, mse in TAI:
            print(f"  {name:<34} {r:7.4f} {rho:7.4f} {mse:7.4f}")
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field in dataclasses.fields(Config):
        parser.add_argument("--" + field.name.replace("_", "-"),
                            type=field.type, default=field.default)
    return Config(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main(parse_args())
