"""Monte-Carlo dropout (``kerasrnn.diagnostics.uncertainty``).

The statistics are checked against NumPy written from the formulas over
the same samples; the samples themselves against what dropout must do:
seeded runs repeat, rate 0 gives no spread, and an input-dropout mask is
one per sequence (constant over time, new for each row and sample). ECE
and AUROC are checked against brute-force computations.
"""

import keras
import numpy as np
import pytest
from keras import ops
from matplotlib.image import imread

import kerasrnn
from kerasrnn.diagnostics import uncertainty as mc
from kerasrnn.models import LanguageModel
from kerasrnn.models import Seq2Seq

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def classifier(dropout=0.3, recurrent_dropout=0.3, classes=4, seed=None):
    return keras.Sequential([
        keras.Input((6, 3)),
        kerasrnn.LSTM(8, dropout=dropout, recurrent_dropout=recurrent_dropout,
                      seed=seed),
        keras.layers.Dense(classes),
    ])


def inputs(batch=5, steps=6, features=3, seed=0):
    return np.random.default_rng(seed).normal(
        size=(batch, steps, features)).astype("float32")


def test_seeded_runs_repeat_and_restore_the_model_stream():
    model = classifier()
    x = inputs()
    generators = mc.seed_generators(model)
    assert generators, "the LSTM cell's dropout seed generator"
    before = [ops.convert_to_numpy(g.state.value) for g in generators]
    first = mc.mc_dropout(model, x, samples=6, seed=3)
    again = mc.mc_dropout(model, x, samples=6, seed=3)
    other = mc.mc_dropout(model, x, samples=6, seed=4)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert np.abs(first.samples - other.samples).max() > 1e-3
    # Samples differ from one another (a new mask per pass).
    assert np.abs(first.samples[0] - first.samples[1]).max() > 1e-3
    after = [ops.convert_to_numpy(g.state.value) for g in generators]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_unseeded_runs_advance_the_stream():
    model = classifier()
    x = inputs()
    first = mc.mc_dropout(model, x, samples=3)
    second = mc.mc_dropout(model, x, samples=3)
    assert np.abs(first.samples - second.samples).max() > 1e-3


def test_no_dropout_gives_zero_spread_and_the_deterministic_prediction():
    model = classifier(dropout=0.0, recurrent_dropout=0.0)
    x = inputs()
    result = mc.mc_dropout(model, x, samples=4, seed=0)
    np.testing.assert_allclose(result.std, 0.0, atol=1e-7)
    np.testing.assert_allclose(result.mutual_information, 0.0, atol=1e-7)
    deterministic = mc.deterministic_probabilities(model, x)
    np.testing.assert_allclose(result.mean, deterministic, atol=1e-6)
    logits = ops.convert_to_numpy(model(x)).astype("float64")
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(deterministic, softmax, atol=1e-6)


def test_statistics_match_numpy_over_the_same_samples():
    model = classifier()
    result = mc.mc_dropout(model, inputs(), samples=7, seed=1)
    p = result.samples                                    # (N, B, C)
    assert p.shape == (7, 5, 4)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-9)
    mean = p.sum(axis=0) / p.shape[0]
    std = np.sqrt(((p - mean) ** 2).sum(axis=0) / p.shape[0])
    predictive = -np.sum(mean * np.log(mean), axis=-1)
    expected = np.mean(-np.sum(p * np.log(p), axis=-1), axis=0)
    np.testing.assert_allclose(result.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(result.std, std, atol=1e-12)
    np.testing.assert_allclose(result.predictive_entropy, predictive,
                               rtol=1e-10)
    np.testing.assert_allclose(result.expected_entropy, expected,
                               rtol=1e-10)
    np.testing.assert_allclose(result.mutual_information,
                               predictive - expected, atol=1e-12)
    assert (result.mutual_information > 0).all()   # dropout is on
    np.testing.assert_array_equal(result.predicted_class,
                                  mean.argmax(-1))


def test_entropy_formula_with_zeros():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25] * 4 + [0.0]][:2])
    np.testing.assert_allclose(mc.entropy(p), [0.0, np.log(2)], atol=1e-12)
    uniform = np.full((1, 4), 0.25)
    np.testing.assert_allclose(mc.entropy(uniform), [np.log(4)])


def test_input_dropout_mask_is_one_per_sequence():
    # h_t = (x_t ⊙ m) W with U = 0, b = 0, a linear activation: for an
    # input constant in time, h_t is constant in t iff m is (variational).
    cell = kerasrnn.SimpleRNNCell(5, activation="linear", dropout=0.5,
                                  use_bias=False,
                                  recurrent_initializer="zeros")
    model = keras.Sequential([keras.Input((7, 4)),
                              kerasrnn.RNN(cell, return_sequences=True)])
    x = np.ones((3, 7, 4), "float32")
    samples = mc.mc_dropout(model, x, samples=5, seed=0,
                            output="values").samples   # (N, B, T, H)
    np.testing.assert_allclose(
        samples, np.broadcast_to(samples[:, :, :1], samples.shape), atol=1e-6)
    deterministic = ops.convert_to_numpy(model(x))
    # Masks differ between rows of one pass and between passes ...
    assert np.abs(samples[0, 0] - samples[0, 1]).max() > 1e-3
    assert np.abs(samples[0, 0] - samples[1, 0]).max() > 1e-3
    # ... and each is inverted dropout: x ⊙ m with m ∈ {0, 2}.
    W = ops.convert_to_numpy(cell.kernel)
    masks = np.linalg.lstsq(W.T, samples[:, :, 0].reshape(-1, 5).T,
                            rcond=None)[0].T
    np.testing.assert_allclose(
        np.minimum(np.abs(masks), np.abs(masks - 2)), 0, atol=1e-4)
    np.testing.assert_allclose(deterministic, x @ W, atol=1e-5)


def test_tagger_gives_per_token_uncertainty():
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(11, 6, mask_zero=True),
        kerasrnn.GRU(5, bidirectional=True, return_sequences=True,
                     dropout=0.2, recurrent_dropout=0.2),
        keras.layers.Dense(3),
    ])
    ids = np.array([[3, 4, 5, 0], [6, 7, 8, 9]], "int32")
    result = mc.mc_dropout(model, ids, samples=4, seed=0)
    assert result.samples.shape == (4, 2, 4, 3)
    assert result.predictive_entropy.shape == (2, 4)
    assert result.mutual_information.shape == (2, 4)


def test_language_model_per_token():
    model = LanguageModel(13, embedding_dim=8, units=8, num_layers=2,
                          embedding_dropout=0.2, inter_layer_dropout=0.2,
                          output_dropout=0.2, seed=5)
    ids = np.array([[1, 2, 3, 4, 5]], "int32")
    result = mc.mc_dropout(model, ids, samples=3, seed=0)
    assert result.samples.shape == (3, 1, 5, 13)
    assert result.predictive_entropy.shape == (1, 5)
    assert result.std.max() > 0


def test_seq2seq_scores():
    model = Seq2Seq(9, 10, bos_id=1, eos_id=2, units=8, embedding_dim=6,
                    dropout=0.3, seed=0)
    source = np.array([[3, 4, 5], [6, 7, 0]], "int32")
    target = np.array([[1, 3, 4, 2, 0], [1, 5, 2, 0, 0]], "int32")
    forward = mc.seq2seq_scores(model, source, target)
    # With dropout off, the score is Σ_t log p(y_{t+1}) over real tokens.
    logits = ops.convert_to_numpy(
        model((source, target[:, :-1]))).astype("float64")
    logs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = [sum(logs[b, t, target[b, t + 1]] for t in range(4)
                    if target[b, t + 1] != 0) for b in range(2)]
    np.testing.assert_allclose(
        ops.convert_to_numpy(forward(None, training=False)), expected,
        rtol=1e-5)
    result = mc.mc_dropout(model, None, samples=4, seed=0, output="values",
                           forward=forward)
    assert result.samples.shape == (4, 2)
    assert (result.std > 0).all() and (result.samples < 0).all()
    with pytest.raises(ValueError, match="output='values'"):
        result.predictive_entropy


def test_reliability_and_ece_by_hand():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    counts, confidence, accuracy = mc.reliability_curve(p, y, bins=2)
    # Bin 1 (0.5, 1]: every example (confidences 0.9, 0.8, 0.7, 0.55).
    np.testing.assert_array_equal(counts, [0, 4])
    np.testing.assert_allclose(confidence[1], (0.9 + 0.8 + 0.7 + 0.55) / 4)
    np.testing.assert_allclose(accuracy[1], 0.75)
    assert np.isnan(accuracy[0])
    expected = abs(0.75 - 0.7375)
    assert mc.expected_calibration_error(p, y, bins=2) == pytest.approx(
        expected)
    # Ten bins: 0.9, 0.8, 0.7, 0.55 each alone.
    gaps = [abs(1 - 0.9), abs(0 - 0.8), abs(1 - 0.7), abs(1 - 0.55)]
    assert mc.expected_calibration_error(p, y) == pytest.approx(
        np.mean(gaps))


def test_auroc_against_pairwise_counts():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)        # with ties
    positives = rng.random(60) < 0.3
    a, b = scores[positives], scores[~positives]
    brute = ((a[:, None] > b[None, :]).sum()
             + 0.5 * (a[:, None] == b[None, :]).sum()) / (a.size * b.size)
    assert mc.auroc(scores, positives) == pytest.approx(brute)
    assert mc.auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert mc.auroc([1, 2, 3, 4], [True, True, False, False]) == 0.0


def test_plot_reliability(tmp_path):
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    path = mc.plot_reliability({"MC": (p, np.array([0, 1, 1]))},
                               tmp_path / "figs" / "rel.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert imread(path).shape[0] > 100
    with pytest.raises(ValueError, match=".png"):
        mc.plot_reliability({"MC": (p, np.array([0, 1, 1]))},
                            tmp_path / "rel.jpg")


@pytest.mark.parametrize("arguments, message", [
    ({"samples": 0}, "`samples` must be an integer ≥ 1"),
    ({"samples": 2.5}, "`samples`"),
    ({"output": "probs"}, "`output` must be one of"),
    ({"seed": -1}, "`seed` must be None or an integer"),
    ({"forward": lambda x, training: (x, x)}, "must return one tensor"),
])
def test_bad_arguments(arguments, message):
    model = classifier()
    with pytest.raises(ValueError, match=message):
        mc.mc_dropout(model, inputs(), **arguments)


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match="both positives and negatives"):
        mc.auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="one entry per example"):
        mc.auroc([0.1, 0.2], [True])
    with pytest.raises(ValueError, match=r"\(examples, classes\)"):
        mc.expected_calibration_error(np.ones((3,)), np.zeros(3))
    with pytest.raises(ValueError, match="`bins`"):
        mc.reliability_curve(np.ones((3, 2)) / 2, np.zeros(3), bins=0)
    with pytest.raises(ValueError, match="same batch"):
        mc.seq2seq_scores(None, np.zeros((2, 3)), np.zeros((3, 3)))


def test_batches_give_every_row_all_samples():
    model = classifier(dropout=0.0, recurrent_dropout=0.0)
    x = inputs(batch=7)
    whole = mc.mc_dropout(model, x, samples=2, seed=0)
    cut = mc.mc_dropout(model, x, samples=2, seed=0, batch_size=3)
    assert cut.samples.shape == (2, 7, 4)
    np.testing.assert_allclose(cut.samples, whole.samples, atol=1e-6)
    with pytest.raises(ValueError, match="same number of rows"):
        mc.mc_dropout(model, (x, x[:2]), samples=2, batch_size=3,
                      forward=lambda b, training: model(b[0]))
