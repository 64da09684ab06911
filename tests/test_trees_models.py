"""The tree task models in Keras' workflow: fit, evaluate, predict, tf.data,
``.keras`` files, the per-node loss, and the similarity target."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasrnn.trees import ChildSumTreeLSTMCell
from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import RecursiveCell
from kerasrnn.trees import TreeBatches
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import encode
from kerasrnn.trees import similarity_distribution
from kerasrnn.trees import tree_classifier
from kerasrnn.trees import tree_similarity
from kerasrnn.trees.data import sample_relatedness_pairs
from kerasrnn.trees.data import sample_sentiment_trees

NODE_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                       ignore_class=-1)


def classifier(vocabulary, cell=None):
    model = tree_classifier(len(vocabulary), cell or NaryTreeLSTMCell(16), 5,
                            embedding_dim=8, dropout=0.1, output_dropout=0.1)
    model.compile(keras.optimizers.Adam(1e-2), loss={"nodes": NODE_LOSS},
                  metrics={"root": ["accuracy"]})
    return model


def test_classifier_learns_with_tree_batches_and_round_trips(tmp_path):
    trees = sample_sentiment_trees(150, seed=1)
    vocabulary = Vocabulary.from_trees(trees)
    model = classifier(vocabulary)
    data = TreeBatches(trees, vocabulary, batch_size=20, shuffle=True,
                       targets=lambda y: {"nodes": y, "root": y[:, 0]})
    losses = model.fit(data, epochs=3, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    inputs, _ = encode(trees[:7], vocabulary)
    predicted = model.predict(inputs, verbose=0)
    assert predicted["nodes"].shape == (7, inputs["levels"].shape[1], 5)
    np.testing.assert_allclose(predicted["root"], predicted["nodes"][:, 0],
                               atol=1e-6)
    path = tmp_path / "tree.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0)["root"],
                               predicted["root"], atol=1e-6)


def test_node_loss_is_the_mean_over_labelled_nodes():
    trees = sample_sentiment_trees(6, seed=2)
    vocabulary = Vocabulary.from_trees(trees)
    model = classifier(vocabulary, RecursiveCell(8, shared=True))
    inputs, labels = encode(trees, vocabulary)
    logits = np.asarray(model(inputs)["nodes"], np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = labels >= 0
    expected = -np.mean(np.take_along_axis(
        logp, np.maximum(labels, 0)[..., None], -1)[..., 0][real])
    loss = model.evaluate(inputs, {"nodes": labels, "root": labels[:, 0]},
                          verbose=0, return_dict=True)["loss"]
    assert abs(loss - expected) < 1e-5


def test_classifier_trains_from_tf_data():
    trees = sample_sentiment_trees(64, seed=3)
    vocabulary = Vocabulary.from_trees(trees)
    inputs, labels = encode(trees, vocabulary)
    dataset = tf.data.Dataset.from_tensor_slices(
        (inputs, {"nodes": labels, "root": labels[:, 0]})).batch(16)
    model = classifier(vocabulary)
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    assert 0.0 <= result["root_accuracy"] <= 1.0
    assert model.predict(dataset, verbose=0)["root"].shape == (64, 5)


def test_similarity_model_fits_and_round_trips(tmp_path):
    a, b, scores = sample_relatedness_pairs(60, seed=4)
    vocabulary = Vocabulary.from_trees(a + b)
    model = tree_similarity(len(vocabulary), ChildSumTreeLSTMCell(8),
                            embedding_dim=6, hidden_units=7)
    model.compile(keras.optimizers.Adam(1e-2),
                  loss={"distribution": "kl_divergence"},
                  metrics={"score": ["mse"]})
    data = TreeBatches((a, b), vocabulary, targets=scores, batch_size=15,
                       target_fn=lambda y: {
                           "distribution": similarity_distribution(y),
                           "score": y})
    model.fit(data, epochs=1, verbose=0)
    x, _ = data[0]
    predicted = model.predict_on_batch(x)
    distribution = np.asarray(predicted["distribution"])
    np.testing.assert_allclose(distribution.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(predicted["score"]),
                               distribution @ np.arange(1, 6), atol=1e-5)
    path = tmp_path / "sim.keras"
    model.save(path)
    again = keras.models.load_model(path).predict_on_batch(x)
    np.testing.assert_allclose(np.asarray(again["score"]),
                               np.asarray(predicted["score"]), atol=1e-6)
    # Swapping the sentences gives the same score: the head is symmetric.
    swapped = {("b_" if k.startswith("a_") else "a_") + k[2:]: v
               for k, v in x.items()}
    np.testing.assert_allclose(
        np.asarray(model.predict_on_batch(swapped)["score"]),
        np.asarray(predicted["score"]), atol=1e-6)


def test_similarity_distribution_has_the_score_as_mean():
    scores = np.random.default_rng(0).uniform(1, 5, 100)
    scores[:3] = [1.0, 5.0, 3.0]
    p = similarity_distribution(scores)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p @ np.arange(1, 6), scores, atol=1e-5)
    assert (np.count_nonzero(p, axis=-1) <= 2).all()
    with pytest.raises(ValueError, match="in \\[1, 5\\]"):
        similarity_distribution([0.5, 3.0])
