"""The tree cells and ``TreeRNN`` against the float64 NumPy per-node
recursion of ``reference/numpy_trees.py``: outputs on 200 random trees of
mixed shapes per cell, gradients against central differences, a batch of
trees against each tree alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import parity
from kerasrnn.trees import ChildSumTreeLSTMCell
from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import RecursiveCell
from kerasrnn.trees import TreeRNN
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import encode
from reference import numpy_trees as ref
from reference.tree_shapes import random_trees

FEATURES, UNITS = 5, 6
# name -> (cell factory, max arity of the random trees, reference)
CELLS = {
    "recursive_positional": (
        lambda **kw: RecursiveCell(UNITS, max_children=2, **kw), 2,
        lambda ch, x, W, U, b: ref.recursive(ch, x, W, U, b, shared=False)),
    "recursive_positional_k3": (
        lambda **kw: RecursiveCell(UNITS, max_children=3, **kw), 3,
        lambda ch, x, W, U, b: ref.recursive(ch, x, W, U, b, shared=False)),
    "recursive_shared": (
        lambda **kw: RecursiveCell(UNITS, shared=True, **kw), 5,
        lambda ch, x, W, U, b: ref.recursive(ch, x, W, U, b, shared=True)),
    "nary_binary": (
        lambda **kw: NaryTreeLSTMCell(UNITS, max_children=2, **kw), 2,
        lambda ch, x, W, U, b: ref.nary_tree_lstm(ch, x, W, U, b, K=2)[0]),
    "nary_k3": (
        lambda **kw: NaryTreeLSTMCell(UNITS, max_children=3, **kw), 3,
        lambda ch, x, W, U, b: ref.nary_tree_lstm(ch, x, W, U, b, K=3)[0]),
    "child_sum": (
        lambda **kw: ChildSumTreeLSTMCell(UNITS, **kw), 5,
        lambda ch, x, W, U, b: ref.child_sum_tree_lstm(ch, x, W, U, b)[0]),
}
VOCABULARY = Vocabulary([])


def built_layer(name, dtype="float32", seed=0):
    make, _, _ = CELLS[name]
    layer = TreeRNN(make(dtype=dtype), dtype=dtype)
    layer.build((None, None, FEATURES), (None, None, None), (None, None))
    rng = np.random.default_rng(seed)
    # Weights of scale 0.5 (not the initializers'): gates away from their
    # resting values, so every term of the equations matters.
    layer.cell.set_weights(
        [rng.normal(0, 0.5, w.shape) for w in layer.cell.get_weights()]
    )
    return layer


def node_inputs(rng, trees, nodes):
    x = np.zeros((len(trees), nodes, FEATURES))
    for b, tree in enumerate(trees):
        x[b, :tree.size] = rng.normal(size=(tree.size, FEATURES))
    return x


def reference_states(name, layer, tree, x):
    W, U, b = (np.asarray(w, np.float64) for w in layer.cell.get_weights())
    return CELLS[name][2](tree.children, x, W, U, b)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_layer_equals_per_node_recursion_on_200_trees(name):
    rng = np.random.default_rng(7)
    trees = random_trees(rng, 200, CELLS[name][1])
    layer = built_layer(name)
    worst = 0.0
    for start in range(0, 200, 50):
        batch = trees[start:start + 50]
        inputs, _ = encode(batch, VOCABULARY)
        x = node_inputs(rng, batch, inputs["levels"].shape[1])
        nodes, roots = layer(x.astype("float32"), inputs["children"],
                             inputs["levels"])
        nodes, roots = np.asarray(nodes), np.asarray(roots)
        for b, tree in enumerate(batch):
            expected = reference_states(name, layer, tree, x[b, :tree.size])
            worst = max(worst, parity.record(
                "tree cells vs NumPy per-node recursion (float64)",
                nodes[b, :tree.size], expected))
            np.testing.assert_array_equal(nodes[b, tree.size:], 0.0)
            np.testing.assert_array_equal(roots[b], nodes[b, 0])
    assert worst <= 1e-5, worst
    shapes = {max((len(k) for k in t.children), default=0) for t in trees}
    assert max(shapes) == CELLS[name][1]


@pytest.mark.parametrize("name", ["recursive_positional", "nary_binary",
                                  "child_sum"])
def test_a_batch_equals_each_tree_alone(name):
    rng = np.random.default_rng(3)
    trees = random_trees(rng, 12, CELLS[name][1])
    layer = built_layer(name)
    inputs, _ = encode(trees, VOCABULARY)
    x = node_inputs(rng, trees, inputs["levels"].shape[1]).astype("float32")
    together = np.asarray(layer(x, inputs["children"], inputs["levels"])[0])
    for b, tree in enumerate(trees):
        alone, _ = encode([tree], VOCABULARY)
        single = layer(x[b:b + 1, :tree.size], alone["children"],
                       alone["levels"])[0]
        np.testing.assert_allclose(together[b, :tree.size],
                                   np.asarray(single)[0], atol=1e-6)


@pytest.mark.parametrize("name", ["recursive_positional", "recursive_shared",
                                  "nary_k3", "child_sum"])
def test_gradients_match_central_differences(name):
    rng = np.random.default_rng(11)
    trees = random_trees(rng, 4, CELLS[name][1], max_size=9)
    layer = built_layer(name, dtype="float64")
    inputs, _ = encode(trees, VOCABULARY)
    x = node_inputs(rng, trees, inputs["levels"].shape[1])
    weights = [np.asarray(w, np.float64) for w in layer.cell.get_weights()]
    probe = rng.normal(size=(len(trees), x.shape[1], UNITS))

    def reference_loss(x, weights):
        total = 0.0
        for b, tree in enumerate(trees):
            h = CELLS[name][2](tree.children, x[b, :tree.size], *weights)
            total += float(np.sum(h * probe[b, :tree.size]))
        return total

    x_var = tf.Variable(x)
    with tf.GradientTape() as tape:
        nodes, _ = layer(x_var, inputs["children"], inputs["levels"])
        loss = tf.reduce_sum(nodes * probe)
    grads = tape.gradient(
        loss, [x_var] + [w.value for w in layer.cell.weights])
    arrays = [x] + weights
    eps = 1e-6
    for index, (array, grad) in enumerate(zip(arrays, grads)):
        grad = np.asarray(tf.convert_to_tensor(grad))
        flat = array.reshape(-1)
        for position in rng.choice(flat.size, min(12, flat.size),
                                   replace=False):
            shifted = []
            for sign in (1, -1):
                moved = [a.copy() for a in arrays]
                moved[index].reshape(-1)[position] += sign * eps
                shifted.append(reference_loss(moved[0], moved[1:]))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            analytic = grad.reshape(-1)[position]
            assert abs(numeric - analytic) <= 1e-6 + 1e-5 * abs(numeric), (
                index, position, numeric, analytic)


def test_positional_cell_with_fewer_slots_sees_empty_positions():
    rng = np.random.default_rng(5)
    trees = random_trees(rng, 20, 2)
    layer = built_layer("nary_k3")
    inputs, _ = encode(trees, VOCABULARY, max_children=2)
    x = node_inputs(rng, trees, inputs["levels"].shape[1])
    nodes = np.asarray(layer(x.astype("float32"), inputs["children"],
                             inputs["levels"])[0])
    for b, tree in enumerate(trees):
        expected = reference_states("nary_k3", layer, tree, x[b, :tree.size])
        np.testing.assert_allclose(nodes[b, :tree.size], expected,
                                   atol=1e-5)


def test_more_children_than_positions_is_refused():
    layer = TreeRNN(NaryTreeLSTMCell(4, max_children=2))
    with pytest.raises(ValueError, match="2 child positions but `children` "
                                         "has 3 slots"):
        layer(np.zeros((1, 4, 3), "float32"), np.full((1, 4, 3), -1),
              np.zeros((1, 4), "int32"))


@pytest.mark.parametrize("make, message", [
    (lambda: RecursiveCell(0), "`units` must be a positive int"),
    (lambda: RecursiveCell(3, max_children=0), "`max_children` must be"),
    (lambda: NaryTreeLSTMCell(3, max_children="2"), "`max_children` must"),
    (lambda: TreeRNN(keras.layers.LSTMCell(3)), "must be a kerasrnn tree"),
    (lambda: TreeRNN(ChildSumTreeLSTMCell(3), dropout=1.0), "`dropout`"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize("name", sorted(CELLS))
def test_config_round_trip(name):
    layer = built_layer(name)
    clone = TreeRNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert type(clone.cell) is type(layer.cell)
    clone.build((None, None, FEATURES), (None, None, None), (None, None))
    clone.cell.set_weights(layer.cell.get_weights())
    rng = np.random.default_rng(2)
    trees = random_trees(rng, 6, CELLS[name][1])
    inputs, _ = encode(trees, VOCABULARY)
    x = node_inputs(rng, trees, inputs["levels"].shape[1]).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(layer(x, inputs["children"], inputs["levels"])[0]),
        np.asarray(clone(x, inputs["children"], inputs["levels"])[0]))


def test_dropout_acts_in_training_only():
    rng = np.random.default_rng(4)
    trees = random_trees(rng, 8, 5)
    inputs, _ = encode(trees, VOCABULARY)
    x = node_inputs(rng, trees, inputs["levels"].shape[1]).astype("float32")
    plain = built_layer("child_sum")
    dropped = TreeRNN(ChildSumTreeLSTMCell(UNITS), dropout=0.5, seed=1)
    dropped.build((None, None, FEATURES), (None, None, None), (None, None))
    dropped.cell.set_weights(plain.cell.get_weights())
    args = (x, inputs["children"], inputs["levels"])
    np.testing.assert_allclose(np.asarray(dropped(*args)[0]),
                               np.asarray(plain(*args)[0]), atol=1e-7)
    first = np.asarray(dropped(*args, training=True)[0])
    second = np.asarray(dropped(*args, training=True)[0])
    assert np.abs(first - np.asarray(plain(*args)[0])).max() > 1e-3
    assert np.abs(first - second).max() > 1e-3
