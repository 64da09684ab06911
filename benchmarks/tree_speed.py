"""Training throughput (trees/s) of the constituency Tree-LSTM classifier:
``TreeRNN``'s level-by-level batches against a per-node recursion of the
same model (the same Keras layers and weights, one cell call per node, in
the same process) and against a PyTorch per-node implementation of the
same cell and loss.

Each trains with Adam and a loss at every labelled node; the per-node
recursion is first checked to give the level-batched model's logits.

    python benchmarks/tree_speed.py --data ../shared/data/sst/train.txt
    python benchmarks/tree_speed.py          # built-in trees
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf
import torch

from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import TreeBatches
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import encode
from kerasrnn.trees import read_bracketed
from kerasrnn.trees import tree_classifier
from kerasrnn.trees.data import sample_sentiment_trees

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                  ignore_class=-1)


def keras_per_node_logits(model, tree, vocabulary):
    """The model's node logits by recursion: one cell call per node."""
    embedding = model.get_layer("embedding")
    cell = model.get_layer("tree").cell
    head = model.get_layer("classifier")
    zeros = tf.zeros((1, cell.units))
    states = [None] * tree.size

    def visit(node):
        kids = [visit(k) for k in tree.children[node]]
        kids += [[zeros, zeros]] * (cell.max_children - len(kids))
        token = np.array([[vocabulary.id(tree.tokens[node])]], np.int32)
        x = embedding(token)[:, 0]
        children = [tf.stack([k[0] for k in kids], axis=1),
                    tf.stack([k[1] for k in kids], axis=1)]
        states[node] = cell(x, children)
        return states[node]

    visit(0)
    return head(tf.concat([s[0] for s in states], axis=0))


def batches(trees, batch_size):
    return [trees[i:i + batch_size] for i in range(0, len(trees), batch_size)]


def labels_of(tree):
    return [-1 if y is None else y for y in tree.labels]


def per_node_keras(model, trees, vocabulary, batch_size):
    """Eager: per batch, every tree node by node under one tape, then one
    optimizer step (as Tai et al.'s Torch code accumulates a batch)."""
    optimizer = keras.optimizers.Adam(1e-3)
    weights = model.trainable_weights
    optimizer.build(weights)

    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.add_n([
                LOSS(np.array(labels_of(t)),
                     keras_per_node_logits(model, t, vocabulary))
                for t in batch]) / len(batch)
        optimizer.apply(tape.gradient(loss, weights), weights)

    step(trees[:1])                               # first-call overheads
    start = time.perf_counter()
    for batch in batches(trees, batch_size):
        step(batch)
    return len(trees) / (time.perf_counter() - start)


def level_batched(model, trees, vocabulary, batch_size):
    model.compile(keras.optimizers.Adam(1e-3), loss={"nodes": LOSS})
    data = TreeBatches(trees, vocabulary, batch_size=batch_size,
                       shuffle=True, targets=lambda y: {"nodes": y})
    model.fit(data, epochs=1, verbose=0)          # traces the step
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    return len(trees) / (time.perf_counter() - start)


class TorchTreeLSTM(torch.nn.Module):
    """The binary N-ary Tree-LSTM classifier in PyTorch, per node."""

    def __init__(self, vocabulary_size, dim, units, classes):
        super().__init__()
        self.units = units
        self.embedding = torch.nn.Embedding(vocabulary_size, dim)
        self.w = torch.nn.Linear(dim, 4 * units)
        # i, f_1, f_2, c, o from the two children's h.
        self.u = torch.nn.Linear(2 * units, 5 * units, bias=False)
        self.head = torch.nn.Linear(units, classes)

    def node(self, token, kids):
        h_cat = torch.cat([k[0] for k in kids], dim=-1)
        x = self.embedding.weight[token] if token > 0 else torch.zeros(
            self.embedding.embedding_dim)
        x_i, x_f, x_c, x_o = self.w(x).chunk(4)
        z_i, z_f1, z_f2, z_c, z_o = self.u(h_cat).chunk(5)
        i, o = torch.sigmoid(x_i + z_i), torch.sigmoid(x_o + z_o)
        f1, f2 = torch.sigmoid(x_f + z_f1), torch.sigmoid(x_f + z_f2)
        u = torch.tanh(x_c + z_c)
        c = i * u + f1 * kids[0][1] + f2 * kids[1][1]
        return o * torch.tanh(c), c

    def forward(self, tree, tokens):
        zeros = torch.zeros(self.units)
        out = [None] * tree.size

        def visit(n):
            kids = [visit(k) for k in tree.children[n]]
            kids += [(zeros, zeros)] * (2 - len(kids))
            out[n] = self.node(tokens[n], kids)
            return out[n]

        visit(0)
        return self.head(torch.stack([h for h, _ in out]))


def per_node_torch(trees, vocabulary, dim, units, batch_size):
    """Per batch: each tree forward and backward node by node (gradients
    accumulate), then one optimizer step."""
    model = TorchTreeLSTM(len(vocabulary), dim, units, 5)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-1)

    def step(batch):
        optimizer.zero_grad()
        for tree in batch:
            tokens = [vocabulary.id(t) for t in tree.tokens]
            loss = loss_fn(model(tree, tokens),
                           torch.tensor(labels_of(tree))) / len(batch)
            loss.backward()
        optimizer.step()

    step(trees[:1])
    start = time.perf_counter()
    for batch in batches(trees, batch_size):
        step(batch)
    return len(trees) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="a PTB-bracket file (SST train.txt)")
    parser.add_argument("--trees", type=int, default=2000,
                        help="trees for the level-batched run")
    parser.add_argument("--per-node-trees", type=int, default=60)
    parser.add_argument("--units", type=int, default=150)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra- and inter-op threads of TF and torch")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    keras.utils.set_random_seed(0)
    trees = (read_bracketed(args.data) if args.data
             else sample_sentiment_trees(args.trees))[:args.trees]
    vocabulary = Vocabulary.from_trees(trees)
    few = trees[:args.per_node_trees]
    model = tree_classifier(len(vocabulary), NaryTreeLSTMCell(args.units),
                            5, embedding_dim=args.dim)
    # The per-node recursion is the same model: same logits.
    inputs, _ = encode(few[:5], vocabulary)
    batched = model.predict(inputs, verbose=0)["nodes"]
    for b, tree in enumerate(few[:5]):
        np.testing.assert_allclose(
            np.asarray(keras_per_node_logits(model, tree, vocabulary)),
            batched[b, :tree.size], atol=1e-5)
    nodes = np.mean([t.size for t in trees])
    print(f"{len(trees)} trees (mean {nodes:.1f} nodes), H={args.units}, "
          f"embedding {args.dim}, batch {args.batch_size}, "
          f"{args.threads} thread(s) each for TF and torch")
    per_node = per_node_keras(model, few, vocabulary, args.batch_size)
    torch_rate = per_node_torch(few, vocabulary, args.dim, args.units,
                                args.batch_size)
    batched_rate = level_batched(model, trees, vocabulary, args.batch_size)
    print(f"level-batched TreeRNN (fit)   {batched_rate:8.1f} trees/s")
    print(f"per-node recursion, Keras     {per_node:8.1f} trees/s  "
          f"(level-batched {batched_rate / per_node:.1f}x)")
    print(f"per-node recursion, PyTorch   {torch_rate:8.1f} trees/s  "
          f"(level-batched {batched_rate / torch_rate:.1f}x)")


if __name__ == "__main__":
    main()
