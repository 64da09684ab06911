"""Root-to-leaf gradient norms against path length, tree and chain."""

import numpy as np

from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import TreeRNN
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import encode
from kerasrnn.trees.data import sample_sentiment_trees
from kerasrnn.trees.gradient_paths import leaf_gradients
from kerasrnn.trees.gradient_paths import plot_leaf_gradients


def test_leaf_gradients_by_path_length_and_plot(tmp_path):
    trees = sample_sentiment_trees(6, seed=3)
    rng = np.random.default_rng(0)
    table = {}

    def vector(word):
        return table.setdefault(word, rng.normal(size=4).astype("float32"))

    cell = NaryTreeLSTMCell(5)
    result = leaf_gradients(trees, vector, cell, chain_units=5)
    leaves = [len(t.leaves()) for t in trees]
    depths, norms = result["tree"]
    assert len(depths) == sum(leaves)
    expected = [t.depths()[leaf] for t in trees for leaf in t.leaves()]
    np.testing.assert_array_equal(depths, expected)
    distances, chain_norms = result["chain"]
    np.testing.assert_array_equal(
        distances, [n - 1 - t for n in leaves for t in range(n)])
    assert np.all(norms > 0) and np.all(chain_norms > 0)

    # The first tree's first leaf, by central differences (float32).
    tree = trees[0]
    inputs, _ = encode([tree], Vocabulary([]))
    x = np.zeros((1, tree.size, 4), np.float64)
    for leaf in tree.leaves():
        x[0, leaf] = vector(tree.tokens[leaf])
    layer = TreeRNN(cell)
    leaf = tree.leaves()[0]
    eps, grad = 1e-2, []
    for feature in range(4):
        values = []
        for sign in (1, -1):
            moved = x.copy()
            moved[0, leaf, feature] += sign * eps
            _, root = layer(moved.astype("float32"), inputs["children"],
                            inputs["levels"])
            values.append(float(np.sum(np.asarray(root, np.float64))))
        grad.append((values[0] - values[1]) / (2 * eps))
    np.testing.assert_allclose(np.linalg.norm(grad), norms[0], rtol=1e-2)
    path = plot_leaf_gradients(result, tmp_path / "paths.png")
    assert path.stat().st_size > 10_000
