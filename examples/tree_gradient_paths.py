"""Root-to-leaf gradients against path length: a Tree-LSTM over SST trees
against an LSTM over the same sentences (both at initialisation, the same
word vectors), plotted with ``kerasrnn.trees.gradient_paths``.

    python examples/tree_gradient_paths.py              # built-in trees
    python examples/tree_gradient_paths.py --data ../shared/data/sst/dev.txt \\
        --glove ../shared/data/glove_sst/glove.6B.50d.sst_sick.txt
"""

import argparse

import keras
import numpy as np

from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import glove_key
from kerasrnn.trees import load_vectors
from kerasrnn.trees import read_bracketed
from kerasrnn.trees.data import sample_sentiment_trees
from kerasrnn.trees.gradient_paths import by_length
from kerasrnn.trees.gradient_paths import leaf_gradients
from kerasrnn.trees.gradient_paths import plot_leaf_gradients


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="a PTB-bracket file (SST dev.txt)")
    parser.add_argument("--glove", help="GloVe 50d text file")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--units", type=int, default=150)
    parser.add_argument("--out", default="artifacts/tree_gradient_paths.png")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    trees = (read_bracketed(args.data) if args.data
             else sample_sentiment_trees(args.trees))[:args.trees]
    vocabulary = Vocabulary.from_trees(trees, key=glove_key)
    if args.glove:
        matrix, _ = load_vectors(args.glove, vocabulary, 50)
    else:
        matrix = np.random.default_rng(0).normal(
            0, 0.5, (len(vocabulary), 50)).astype("float32")
    result = leaf_gradients(trees, lambda w: matrix[vocabulary.id(w)],
                            NaryTreeLSTMCell(args.units), args.units)
    path = plot_leaf_gradients(
        result, args.out,
        title=f"{len(trees)} sentences, H={args.units}, at initialisation")
    for name, (lengths, norms) in result.items():
        values, means, _ = by_length(lengths, norms)
        print(f"{name:5}: mean path length {lengths.mean():5.2f} "
              f"(max {lengths.max()}); mean norm at length 1 "
              f"{means[values == 1][0]:.3g}, at 10 "
              f"{means[values == 10][0] if 10 in values else float('nan'):.3g}"
              f", at its longest {means[-1]:.3g}")
    for length in (1, 5, 10, 20, 30):
        row = []
        for name, (lengths, norms) in result.items():
            at = norms[lengths == length]
            row.append(f"{name} {at.mean():.3g} ({at.size} words)"
                       if at.size else f"{name} -")
        print(f"path length {length:2}: " + ", ".join(row))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
