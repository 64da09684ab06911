"""The fast paths (fused loop with hand-written BPTT in training, the
forward-only loop otherwise) equal the generic path.

The generic path runs the cell's ``recurrent_step`` in a ``tf.while_loop``
and lets TensorFlow differentiate it; the fused path back-propagates with
each cell's ``fused_step_backward``. Values and gradients (w.r.t. inputs,
initial states and every weight) must agree: exactly up to rounding in
float64, and to float32 rounding in float32.
"""

import itertools

import keras
import numpy as np
import parity
import pytest
import tensorflow as tf

import kerasrnn
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec

BATCH, STEPS, FEATURES, UNITS = 3, 6, 4, 5

CELLS = {
    "lstm": lambda **kw: kerasrnn.LSTMCell(UNITS, **kw),
    "lstm-relu": lambda **kw: kerasrnn.LSTMCell(UNITS, activation="relu",
                                                **kw),
    "gru-after": lambda **kw: kerasrnn.GRUCell(UNITS, **kw),
    "gru-before": lambda **kw: kerasrnn.GRUCell(UNITS, reset_after=False,
                                                **kw),
    "gru-nobias": lambda **kw: kerasrnn.GRUCell(UNITS, use_bias=False, **kw),
    "elman-tanh": lambda **kw: kerasrnn.SimpleRNNCell(UNITS, **kw),
    "elman-relu": lambda **kw: kerasrnn.SimpleRNNCell(UNITS,
                                                      activation="relu",
                                                      **kw),
    "elman-linear": lambda **kw: kerasrnn.SimpleRNNCell(
        UNITS, activation="linear", **kw),
    "peephole_lstm": lambda **kw: kerasrnn.PeepholeLSTMCell(UNITS, **kw),
    "peephole_lstm-nobias": lambda **kw: kerasrnn.PeepholeLSTMCell(
        UNITS, use_bias=False, **kw),
    "indrnn": lambda **kw: kerasrnn.IndRNNCell(UNITS, **kw),
    "indrnn-tanh": lambda **kw: kerasrnn.IndRNNCell(
        UNITS, activation="tanh", **kw),
}


def test_every_registered_cell_has_a_fused_path_that_is_checked():
    """Each registered cell defines a backward for its ``step``, and the
    sweeps below compare it with the generic loop."""
    checked = {type(make()) for make in CELLS.values()}
    for name in cell_names():
        cell_class = cell_spec(name).cell_class
        assert cell_class in checked, name
        assert cell_class(UNITS).supports_fused, name


def right_padded_with_holes(rng):
    mask = np.ones((BATCH, STEPS), bool)
    mask[1, 4:] = False          # right padding
    mask[2, 1:] = False          # a length-1 sequence
    mask[0, :2] = False          # leading masked steps
    mask[0, 3] = False           # a hole
    return mask


def run_pair(make_cell, dtype, masked, go_backwards, recurrent_dropout,
             return_sequences, seed, training=True,
             zero_output_for_mask=False, empty_row=False):
    """Outputs and gradients of the fused and the generic layer.

    ``training=True`` runs the fused loop (hand-written backward),
    ``training=False`` the forward-only loop (autodiff backward)."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(BATCH, STEPS, FEATURES)), dtype)
    mask = right_padded_with_holes(rng) if masked else None
    if empty_row:
        mask[1] = False
    layers = [
        kerasrnn.RNN(
            make_cell(recurrent_dropout=recurrent_dropout, seed=seed,
                      dtype=dtype),
            return_sequences=return_sequences, return_state=True,
            go_backwards=go_backwards, fused=fused, dtype=dtype,
            zero_output_for_mask=zero_output_for_mask,
        )
        for fused in (True, False)
    ]
    for layer in layers:
        layer(x)
    layers[0].set_weights(
        [rng.normal(scale=0.6, size=w.shape) for w in layers[0].get_weights()]
    )
    layers[1].set_weights(layers[0].get_weights())
    assert layers[0].cell.supports_fused
    states = [tf.constant(rng.normal(size=(BATCH, UNITS)), dtype)
              for _ in layers[0].state_size]
    weights = tf.constant(rng.normal(size=(UNITS,)), dtype)
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch([x, *states])
            output, *final = layer(x, initial_state=states, mask=mask,
                                   training=training)
            loss = tf.reduce_sum(output * weights) + sum(
                tf.reduce_sum(s * s) for s in final
            )
        gradients = tape.gradient(
            loss, [x, *states, *layer.trainable_variables]
        )
        results.append([output, *final, *gradients])
    return results


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_fused_equals_generic_float64(cell, masked, go_backwards):
    for recurrent_dropout, return_sequences in itertools.product(
        [0.0, 0.4], [False, True]
    ):
        fused, generic = run_pair(
            CELLS[cell], "float64", masked, go_backwards, recurrent_dropout,
            return_sequences, seed=len(cell),
        )
        for a, b in zip(fused, generic):
            parity.record("fused training loop = generic loop (float64)",
                          a, b)
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_inference_loop_equals_generic_float64(cell, go_backwards):
    """training=False: the forward-only loop, every masking case, and the
    autodiff gradients through it."""
    for masked, zero_output, return_sequences in itertools.product(
        [False, True], [False, True], [False, True]
    ):
        fast, generic = run_pair(
            CELLS[cell], "float64", masked, go_backwards, 0.0,
            return_sequences, seed=len(cell), training=False,
            zero_output_for_mask=zero_output, empty_row=masked,
        )
        for a, b in zip(fast, generic):
            parity.record("inference loop = generic loop (float64)", a, b)
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru-after", "gru-before",
                                  "elman-tanh"])
def test_fused_equals_generic_float32(cell):
    fused, generic = run_pair(CELLS[cell], "float32", True, False, 0.3, True,
                              seed=5)
    for a, b in zip(fused, generic):
        a, b = np.asarray(a), np.asarray(b)
        # Sums in another order: rounding relative to the magnitude.
        np.testing.assert_allclose(a, b, rtol=0,
                                   atol=1e-5 * max(1.0, np.abs(b).max()))


def test_unsupported_activation_falls_back_to_generic_loop():
    cell = kerasrnn.LSTMCell(UNITS, recurrent_activation="hard_sigmoid")
    assert not cell.supports_fused
    x = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES))
    fast = kerasrnn.RNN(cell, return_sequences=True)
    slow = kerasrnn.RNN(
        kerasrnn.LSTMCell(UNITS, recurrent_activation="hard_sigmoid"),
        return_sequences=True, fused=False,
    )
    fast(x)
    slow(x)
    slow.set_weights(fast.get_weights())
    np.testing.assert_allclose(fast(x), slow(x), atol=1e-6)


@pytest.mark.parametrize("layer_class", [kerasrnn.LSTM, kerasrnn.GRU,
                                         kerasrnn.SimpleRNN])
def test_fit_with_xla_matches_fit_without(layer_class):
    """jit_compile=True compiles the whole train step, fused loop included."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, STEPS, FEATURES)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    models = [
        keras.Sequential([
            keras.Input((STEPS, FEATURES)),
            layer_class(UNITS, bidirectional=True),
            keras.layers.Dense(2),
        ])
        for _ in range(2)
    ]
    models[1].set_weights(models[0].get_weights())
    for model, jit_compile in zip(models, (False, True)):
        model.compile(keras.optimizers.SGD(0.1), "mse",
                      jit_compile=jit_compile)
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_cell_with_only_recurrent_step_trains_on_the_generic_loop():
    """RecurrentCell's documented contract (gate_count, recurrent_step) is
    enough: without fused_step the cell trains on the generic loop."""
    from kerasrnn.cells.base import RecurrentCell

    class LeakyCell(RecurrentCell):
        """h_t = 0.5 h_{t-1} + 0.5 tanh(x_t W + b + h_{t-1} U)."""

        gate_count = 1

        def recurrent_step(self, projected, states, recurrent_mask=None):
            h = states[0]
            new = 0.5 * h + 0.5 * keras.ops.tanh(
                projected + keras.ops.matmul(h, self.recurrent_kernel))
            return new, [new]

    layer = kerasrnn.RNN(LeakyCell(3))
    assert not layer.cell.supports_fused
    model = keras.Sequential([keras.Input((4, 2)), layer,
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4, 2)).astype("float32")
    history = model.fit(x, np.ones((8, 1)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert kerasrnn.RNN(kerasrnn.GRUCell(3)).cell.supports_fused
