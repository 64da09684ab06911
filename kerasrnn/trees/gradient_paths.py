"""Root-to-leaf gradients against path length: in a tree, and in the chain
of the same sentence through a sequential LSTM (the seed's "the length of
linears is n, for trees log n", made visible).

For every sentence, the tree model's root state ``h_root`` and the chain's
final state ``h_T`` are read; the gradient of ``Σ_j h_j`` with respect to
each word's input vector is taken, and its norm set against the number of
recursive steps between that word and the output: the leaf's depth in the
tree, ``T - 1 - t`` in the chain. The same word vectors feed both.
"""

import keras
import numpy as np
from keras import ops
from matplotlib.figure import Figure

import kerasrnn
from kerasrnn.diagnostics.plots import save
from kerasrnn.requirements import require_tensorflow
from kerasrnn.trees.encoding import Vocabulary
from kerasrnn.trees.encoding import encode
from kerasrnn.trees.layer import TreeRNN


def leaf_gradients(trees, vectors, tree_cell, chain_units, seed=0):
    """Gradient norms of every word, by path length, in both models.

    Args:
        trees: trees whose leaves carry the words (left to right).
        vectors: ``{word: vector}`` (float, one size), or a function
            ``word -> vector``.
        tree_cell: the tree model's cell (built or not).
        chain_units: the sequential LSTM's size.
        seed: the LSTM's initialisation seed.

    Returns:
        ``{"tree": (depths, norms), "chain": (distances, norms)}``, one
        entry per word of every sentence (int and float arrays).
    """
    lookup = vectors if callable(vectors) else vectors.__getitem__
    sentences = [[tree.tokens[n] for n in tree.leaves()] for tree in trees]
    dim = len(lookup(sentences[0][0]))
    inputs, _ = encode(trees, Vocabulary([]))
    x_tree = np.zeros(inputs["tokens"].shape + (dim,), np.float32)
    x_chain = np.zeros((len(trees), max(map(len, sentences)), dim),
                       np.float32)
    for b, (tree, words) in enumerate(zip(trees, sentences)):
        for t, (leaf, word) in enumerate(zip(tree.leaves(), words)):
            x_tree[b, leaf] = x_chain[b, t] = lookup(word)
    require_tensorflow("tree_vs_chain_gradients (a tf.GradientTape)")
    import tensorflow as tf

    layer = TreeRNN(tree_cell)
    x_tree = tf.Variable(x_tree)
    with tf.GradientTape() as tape:
        _, roots = layer(x_tree, inputs["children"], inputs["levels"])
        total = ops.sum(roots)
    tree_grad = np.linalg.norm(tape.gradient(total, x_tree).numpy(), axis=-1)
    lengths = np.array([len(words) for words in sentences])
    mask = np.arange(x_chain.shape[1])[None, :] < lengths[:, None]
    chain = kerasrnn.LSTM(chain_units, kernel_initializer=_seeded(seed),
                          recurrent_initializer=_seeded(seed + 1,
                                                        "orthogonal"))
    x_chain = tf.Variable(x_chain)
    with tf.GradientTape() as tape:
        total = ops.sum(chain(x_chain, mask=mask))
    chain_grad = np.linalg.norm(tape.gradient(total, x_chain).numpy(),
                                axis=-1)
    depths, tree_norms, distances, chain_norms = [], [], [], []
    for b, tree in enumerate(trees):
        depth = tree.depths()
        for t, leaf in enumerate(tree.leaves()):
            depths.append(depth[leaf])
            tree_norms.append(tree_grad[b, leaf])
            distances.append(lengths[b] - 1 - t)
            chain_norms.append(chain_grad[b, t])
    return {"tree": (np.array(depths), np.array(tree_norms)),
            "chain": (np.array(distances), np.array(chain_norms))}


def _seeded(seed, kind="glorot_uniform"):
    return keras.initializers.get({"class_name": kind,
                                   "config": {"seed": seed}})


def by_length(lengths, norms):
    """``(length, mean norm, count)`` per path length."""
    values = np.unique(lengths)
    return (values, np.array([norms[lengths == v].mean() for v in values]),
            np.array([(lengths == v).sum() for v in values]))


def plot_leaf_gradients(result, path, title=None):
    """Mean gradient norm (log) against path length, tree and chain; below,
    how many words lie at each path length."""
    figure = Figure(figsize=(6.5, 6.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    styles = {"tree": ("tab:green", "tree: depth of the leaf"),
              "chain": ("tab:blue", "chain LSTM: T-1-t")}
    for name, (lengths, norms) in result.items():
        colour, label = styles[name]
        values, means, counts = by_length(lengths, norms)
        top.plot(values, means, marker=".", color=colour, label=label)
        bottom.bar(values + (0.2 if name == "tree" else -0.2), counts,
                   width=0.4, color=colour)
    top.set_yscale("log")
    top.set_ylabel("‖∂Σh_out/∂x_word‖ (mean)")
    top.grid(True, which="major", alpha=0.3)
    top.legend()
    bottom.set_xlabel("path length (recursive steps from word to output)")
    bottom.set_ylabel("words")
    if title:
        figure.suptitle(title)
    return save(figure, path)
