"""One semantics for both decoders: ``kerasrnn.decoding`` (TensorFlow) and
``kerasrnn_serving.search`` (NumPy, TensorFlow-free) run the same step
functions and must return the same tokens, lengths and scores."""

import numpy as np
import pytest
import tensorflow as tf

from kerasrnn import decoding
from kerasrnn.decoding.options import OPTIONS as TF_OPTIONS
from kerasrnn_serving import search

VOCABULARY, HIDDEN = 13, 6


def make_model(seed, scale=3.0):
    """A small recurrent step in NumPy and TensorFlow with the same
    float32 weights: ``h' = tanh(h A + E[y])``, ``logits = scale *
    tanh(h' U)``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(HIDDEN, HIDDEN)).astype("float32") * 0.8
    E = rng.normal(size=(VOCABULARY, HIDDEN)).astype("float32")
    U = rng.normal(size=(HIDDEN, VOCABULARY)).astype("float32")

    def numpy_step(tokens, state):
        h = np.tanh(state["h"] @ A + E[tokens])
        return scale * np.tanh(h @ U), {**state, "h": h.astype("float32")}

    def tf_step(tokens, state):
        h = tf.tanh(tf.matmul(state["h"], A) + tf.gather(E, tokens))
        return scale * tf.tanh(tf.matmul(h, U)), {**state, "h": h}

    def initial(batch):
        h = rng.normal(size=(batch, HIDDEN)).astype("float32")
        return {"h": h, "memory": np.repeat(h[:, None], 3, axis=1)}

    return numpy_step, tf_step, initial


def assert_same(ours, theirs):
    np.testing.assert_array_equal(ours.ids, theirs.ids.numpy())
    np.testing.assert_array_equal(ours.lengths, theirs.lengths.numpy())
    for field in ("scores", "log_probs"):
        np.testing.assert_allclose(
            getattr(ours, field), getattr(theirs, field).numpy(),
            atol=1e-5, rtol=1e-5,
        )


def test_both_decoders_take_the_same_options():
    assert search.OPTIONS == TF_OPTIONS


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_length,end_id,forbidden", [
    (0, 3, None), (4, 3, (0, 1)), (0, None, (2,)),
])
def test_greedy_is_the_same(seed, min_length, end_id, forbidden):
    numpy_step, tf_step, initial = make_model(seed)
    state = initial(4)
    start = np.array([1, 2, 4, 5], "int32")
    arguments = dict(end_id=end_id, max_length=9, min_length=min_length,
                     pad_id=0, forbidden_ids=forbidden)
    assert_same(
        search.greedy_search(numpy_step, start, state, **arguments),
        decoding.greedy_search(tf_step, start, state, **arguments),
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("width,alpha,num_return,min_length,end_id", [
    (1, 0.0, 1, 0, 3),
    (3, 0.0, 2, 0, 3),
    (3, 0.6, 3, 2, 3),
    (5, 1.0, 5, 0, 3),
    (5, 0.6, 2, 0, None),
    (8, 0.0, 4, 1, 3),        # 2K > V: fewer candidates than 2K
])
def test_beam_search_is_the_same(seed, width, alpha, num_return,
                                 min_length, end_id):
    numpy_step, tf_step, initial = make_model(seed, scale=2.0)
    state = initial(3)
    start = np.array([1, 2, 4], "int32")
    arguments = dict(end_id=end_id, max_length=8, beam_width=width,
                     length_penalty_weight=alpha, num_return=num_return,
                     min_length=min_length, pad_id=0, forbidden_ids=(0, 1))
    ours = search.beam_search(numpy_step, start, state, **arguments)
    # Reordering a constant entry or not gives the same result.
    constant = search.beam_search(numpy_step, start, state,
                                  constant=("memory",), **arguments)
    # So does a model that hands out each row's best candidates itself.
    candidates = search.beam_search(
        numpy_step, start, state,
        candidates_fn=candidates_of(numpy_step, (0, 1), end_id), **arguments)
    theirs = decoding.beam_search(tf_step, start, state, **arguments)
    assert_same(ours, theirs)
    assert_same(constant, theirs)
    assert_same(candidates, theirs)


def candidates_of(step_fn, forbidden_ids, end_id):
    """A ``candidates_fn`` for ``step_fn``: what an exported step graph's
    ``TopK`` head computes."""
    def candidates_fn(tokens, state, count, forbid_end):
        logits, state = step_fn(tokens, state)
        logits = search.forbid(logits, forbidden_ids, end_id, forbid_end)
        count = min(count, logits.shape[-1])
        values, ids = search.top_k(search.log_softmax(logits), count)
        return values, ids, state

    return candidates_fn


def test_beam_width_one_without_penalty_is_greedy():
    numpy_step, _, initial = make_model(7)
    state = initial(5)
    start = np.arange(1, 6, dtype="int32")
    greedy = search.greedy_search(numpy_step, start, state, 3, 10)
    beam = search.beam_search(numpy_step, start, state, 3, 10, beam_width=1)
    np.testing.assert_array_equal(greedy.ids, beam.ids)
    np.testing.assert_allclose(greedy.scores, beam.scores, atol=1e-6)


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (1.0, None, None), (0.7, 5, None), (1.3, None, 0.8), (0.9, 4, 0.6),
    (1.0, 1, None), (2.0, 50, 1.0),
])
def test_sampling_distributions_are_the_same(temperature, top_k, top_p):
    logits = np.random.default_rng(3).normal(size=(6, 40)).astype(
        "float32") * 3
    logits[:, 7] = logits[:, 8]     # a tie at some rank
    ours = search.filtered_distribution(logits, temperature, top_k, top_p)
    filtered = decoding.logits.apply_temperature(
        tf.constant(logits), temperature)
    if top_k is not None:
        filtered = decoding.top_k_filter(filtered, top_k)
    if top_p is not None:
        filtered = decoding.top_p_filter(filtered, top_p)
    theirs = tf.nn.softmax(filtered).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_seeded_sampling_is_reproducible_and_scored_by_the_model():
    numpy_step, _, initial = make_model(11, scale=1.0)
    state = initial(3)
    start = np.array([1, 2, 4], "int32")
    arguments = dict(end_id=3, max_length=12, temperature=0.8, top_k=8,
                     top_p=0.95, num_samples=4, seed=42,
                     forbidden_ids=(0,))
    first = search.sample(numpy_step, start, state, **arguments)
    second = search.sample(numpy_step, start, state, **arguments)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = search.sample(numpy_step, start, state,
                          **{**arguments, "seed": 43})
    assert not np.array_equal(first.ids, other.ids)
    assert first.ids.shape == (3, 4, 12)
    # log_probs: the model's own log-probability of each sample.
    for row in range(3):
        for k in range(4):
            tokens = first.ids[row, k, :first.lengths[row, k]]
            h = {key: value[row:row + 1] for key, value in state.items()}
            previous, total = start[row:row + 1], 0.0
            for token in tokens:
                logits, h = numpy_step(previous, h)
                logits[:, 0] = -np.inf
                total += search.log_softmax(logits)[0, token]
                previous = np.array([token])
            np.testing.assert_allclose(first.log_probs[row, k], total,
                                       atol=1e-5)


def test_top_k_breaks_ties_as_tensorflow():
    values = np.array([[1.0, 3.0, 3.0, -np.inf, 3.0, 2.0, -np.inf]],
                      "float32")
    for k in range(1, 8):
        ours = search.top_k(values, k)
        theirs = tf.math.top_k(values, k)
        np.testing.assert_array_equal(ours[1], theirs.indices.numpy())
        np.testing.assert_array_equal(ours[0], theirs.values.numpy())


@pytest.mark.parametrize("method,options,name", [
    ("beam", {"beam_width": 0}, "beam_width"),
    ("beam", {"beam_width": 99}, "beam_width"),
    ("beam", {"beam_width": 2, "num_return": 3}, "num_return"),
    ("sample", {"temperature": 0}, "temperature"),
    ("sample", {"temperature": "hot"}, "temperature"),
    ("sample", {"top_p": 1.5}, "top_p"),
    ("sample", {"top_p": 0.0}, "top_p"),
    ("sample", {"top_k": -1}, "top_k"),
    ("sample", {"num_samples": 1000}, "num_samples"),
    ("greedy", {"min_length": 50}, "min_length"),
    ("greedy", {"beam_width": 3}, "unknown options"),
    ("viterbi", {}, "method"),
])
def test_bad_options_name_the_parameter(method, options, name):
    with pytest.raises(search.OptionError, match=name):
        search.check_options(method, 10, options)
    with pytest.raises(search.OptionError, match="max_length"):
        search.check_options("greedy", 0, {})
    with pytest.raises(search.OptionError, match="max_length"):
        search.check_options("greedy", 10**6, {})
