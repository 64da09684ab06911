"""ONNX export of tree classifiers (a Loop over the levels with Gather and
ScatterND) against Keras, and the TensorFlow-free ``TreePredictor``."""

import json
import subprocess
import sys

import keras
import numpy as np
import onnxruntime
import pytest

import parity
from kerasrnn.export.trees import build_tree_onnx
from kerasrnn.export.trees import to_onnx_tree
from kerasrnn.trees import ChildSumTreeLSTMCell
from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import RecursiveCell
from kerasrnn.trees import TreeBatches
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import encode
from kerasrnn.trees import to_bracketed
from kerasrnn.trees import tree_classifier
from kerasrnn.trees.data import sample_sentiment_trees
from kerasrnn_serving.trees import TreeFormatError
from kerasrnn_serving.trees import TreePredictor
from reference.tree_shapes import random_trees

CELLS = {
    "recursive": (lambda: RecursiveCell(6, max_children=2), 2),
    "recursive_shared": (lambda: RecursiveCell(6, shared=True), 5),
    "nary_k3": (lambda: NaryTreeLSTMCell(6, max_children=3), 3),
    "child_sum": (lambda: ChildSumTreeLSTMCell(6), 5),
}
VOCABULARY = Vocabulary([f"w{i}" for i in range(20)])


def random_model(name, seed=0):
    model = tree_classifier(len(VOCABULARY), CELLS[name][0](), 5,
                            embedding_dim=4)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape))
    return model


def with_words(trees, rng):
    """The trees with a random word (or none) at every node."""
    out = []
    for tree in trees:
        words = [None if rng.random() < 0.2 else f"w{rng.integers(22)}"
                 for _ in range(tree.size)]
        out.append(type(tree)(tree.children, tuple(words), tree.labels,
                              tree.positions))
    return out


@pytest.mark.parametrize("name", sorted(CELLS))
def test_onnx_equals_keras_on_random_trees(name):
    rng = np.random.default_rng(1)
    model = random_model(name)
    session = onnxruntime.InferenceSession(
        build_tree_onnx(model).SerializeToString(),
        providers=["CPUExecutionProvider"])
    for count in (1, 37):
        trees = with_words(random_trees(rng, count, CELLS[name][1]), rng)
        inputs, _ = encode(trees, VOCABULARY)
        expected = model.predict(inputs, verbose=0)
        nodes, root = session.run(
            ["nodes", "root"],
            {k: v.astype(np.int64) for k, v in inputs.items()})
        for got, want in ((nodes, expected["nodes"]),
                          (root, expected["root"])):
            error = parity.record("tree classifier ONNX vs Keras", got, want)
            assert error <= 1e-5


def test_onnx_pads_fewer_child_slots_than_positions():
    rng = np.random.default_rng(2)
    model = random_model("nary_k3")
    session = onnxruntime.InferenceSession(
        build_tree_onnx(model).SerializeToString(),
        providers=["CPUExecutionProvider"])
    trees = with_words(random_trees(rng, 10, 2), rng)
    narrow, _ = encode(trees, VOCABULARY, max_children=2)
    wide, _ = encode(trees, VOCABULARY, max_children=3)
    feed = {k: v.astype(np.int64) for k, v in narrow.items()}
    (root,) = session.run(["root"], feed)
    np.testing.assert_allclose(
        root, model.predict(wide, verbose=0)["root"], atol=1e-5)


@pytest.fixture(scope="module")
def trained_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    trees = sample_sentiment_trees(120, seed=5)
    vocabulary = Vocabulary.from_trees(trees)
    model = tree_classifier(len(vocabulary), NaryTreeLSTMCell(12), 5,
                            embedding_dim=8)
    model.compile(
        keras.optimizers.Adam(1e-2),
        loss={"nodes": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=-1)})
    model.fit(TreeBatches(trees, vocabulary, batch_size=20,
                          targets=lambda y: {"nodes": y}),
              epochs=2, verbose=0)
    directory = tmp_path_factory.mktemp("tree_export")
    worst = to_onnx_tree(model, directory, vocabulary, check_trees=trees)
    return model, vocabulary, trees, directory, worst


def test_trained_classifier_exports_and_serves_from_text(trained_export):
    model, vocabulary, trees, directory, worst = trained_export
    assert worst <= 1e-5
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format"] == "kerasrnn-tree-onnx"
    predictor = TreePredictor(directory)
    texts = [to_bracketed(t) for t in trees[:9]]
    results = predictor.predict(texts)
    inputs, _ = encode(trees[:9], vocabulary)
    expected = model.predict(inputs, verbose=0)
    for b, (tree, result) in enumerate(zip(trees[:9], results)):
        logits = expected["root"][b]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        np.testing.assert_allclose(result["probabilities"], probabilities,
                                   atol=1e-5)
        assert result["node_labels"] == expected["nodes"][
            b, :tree.size].argmax(-1).tolist()


def test_predictor_takes_parent_arrays(trained_export):
    _, _, _, directory, _ = trained_export
    predictor = TreePredictor(directory)
    (result,) = predictor.predict(
        [{"parents": [2, 0], "tokens": ["not", "good"]}])
    # Node order is pre-order: "good" (the root) first; word order back.
    assert result["word_labels"] == result["node_labels"][::-1]
    with pytest.raises(TreeFormatError, match="tree 1: .*2 roots"):
        predictor.predict(["(2 (2 a) (2 b))",
                           {"parents": [0, 0], "tokens": ["a", "b"]}])
    with pytest.raises(TreeFormatError, match="3 children; this model's "
                                              "cell has 2 child positions"):
        predictor.predict([{"parents": [0, 1, 1, 1],
                            "tokens": ["a", "b", "c", "d"]}])
    with pytest.raises(TreeFormatError, match="tree 0: expected a "
                                              "bracketed tree"):
        predictor.predict([{"heads": [0]}])


def test_serving_trees_imports_neither_tensorflow_nor_keras(trained_export):
    _, _, trees, directory, _ = trained_export
    code = (
        "import sys\n"
        "from kerasrnn_serving.trees import TreePredictor\n"
        f"p = TreePredictor({str(directory)!r})\n"
        f"print(p.predict([{to_bracketed(trees[0])!r}])[0]['label'])\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'kerasrnn')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"0", "1", "2", "3", "4"}


def test_export_refuses_other_models_and_keys(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Expected a kerasrnn.trees."
                                         "tree_classifier"):
        build_tree_onnx(model)
    softplus = tree_classifier(4, RecursiveCell(3, activation="softplus"),
                               2, embedding_dim=2)
    with pytest.raises(ValueError, match="Activation 'softplus' has no ONNX"):
        build_tree_onnx(softplus)
    with pytest.raises(ValueError, match="vocabulary's `key`"):
        to_onnx_tree(random_model("recursive"), tmp_path,
                     Vocabulary([], key=str.lower))
    with pytest.raises(ValueError, match="not a tree classifier manifest"):
        (tmp_path / "manifest.json").write_text('{"format": "other"}')
        TreePredictor(tmp_path)
