"""DropConnect on the recurrent weights (``recurrent_weight_dropout``).

One mask on ``U`` for the whole batch (Merity et al. 2018's weight-dropped
LSTM): in training the layer's output is the float64 NumPy reference's with
``U ⊙ M / (1 - p)`` for exactly one 0/1 pattern ``M`` (found by trying them
all on tiny cells), the same for every row and step; the fused training
loop equals the generic loop with that mask, values and gradients; at
inference the weights are whole.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from reference import numpy_rnn as ref

import kerasrnn
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec

RATE = 0.5
# kind, cell arguments, units: tiny, so that every mask can be tried.
CASES = [
    ("simple_rnn", {}, 2),
    ("lstm", {}, 1),
    ("gru", {"reset_after": True}, 1),
    ("gru", {"reset_after": False}, 2),
    ("peephole_lstm", {}, 1),
    ("indrnn", {"activation": "tanh"}, 3),
]


def test_every_registered_cell_is_checked():
    assert {cell_spec(kind).name for kind, _, _ in CASES} == set(cell_names())


def make_layer(kind, arguments, units, fused=True, rate=RATE, seed=4):
    cell = cell_spec(kind).cell_class(
        units, recurrent_weight_dropout=rate, seed=seed, **arguments
    )
    return kerasrnn.RNN(cell, return_sequences=True, fused=fused)


def random_weights(layer, rng):
    layer.set_weights([rng.normal(0, 0.8, w.shape).astype("float32")
                       for w in layer.get_weights()])


def reference(cell, arguments, kind, recurrent_kernel):
    return ref.Cell(
        kind, cell.kernel.numpy(), recurrent_kernel,
        None if cell.bias is None else cell.bias.numpy(),
        activation=arguments.get("activation", "tanh"),
        reset_after=arguments.get("reset_after", True),
        P=(cell.peephole_kernel.numpy()
           if hasattr(cell, "peephole_kernel") else None),
    )


@pytest.mark.parametrize("kind, arguments, units", CASES,
                         ids=[f"{k}-{a}" for k, a, _ in CASES])
def test_one_mask_on_u_per_batch_equals_the_numpy_equations(
        kind, arguments, units):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    layer = make_layer(kind, arguments, units)
    layer.build(x.shape)
    random_weights(layer, rng)
    cell = layer.cell
    U = cell.recurrent_kernel.numpy().astype("float64")
    output = np.asarray(layer(x, training=True), np.float64)
    fits = []
    for bits in itertools.product([0.0, 1.0], repeat=U.size):
        masked = U * np.reshape(bits, U.shape) / (1 - RATE)
        expected, _, _ = ref.run(reference(cell, arguments, kind, masked), x)
        if np.abs(expected - output).max() < 1e-5:
            fits.append(bits)
    # Exactly one mask, shared by every row and step of the batch.
    assert len(fits) == 1, f"{len(fits)} masks fit"
    assert 0 < sum(fits[0]) < U.size or U.size < 3
    # Inference: the whole weights.
    expected, _, _ = ref.run(reference(cell, arguments, kind, U), x)
    np.testing.assert_allclose(layer(x, training=False), expected,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind, arguments, units", CASES,
                         ids=[f"{k}-{a}" for k, a, _ in CASES])
def test_fused_training_loop_equals_generic_loop(kind, arguments, units):
    """Same seed, same masks: the hand-written backward with the masked U
    gives the generic loop's gradients (float64)."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(4, 6, 3)))
    mask = np.ones((4, 6), bool)
    mask[1, 4:] = False
    results = []
    for fused in (True, False):
        cell = cell_spec(kind).cell_class(
            units + 2, recurrent_weight_dropout=0.3, recurrent_dropout=0.2,
            seed=7, dtype="float64", **arguments,
        )
        layer = kerasrnn.RNN(cell, return_sequences=True, fused=fused,
                             dtype="float64")
        layer.build(x.shape)
        layer.set_weights([np.random.default_rng(2).normal(0, 0.6, w.shape)
                           for w in layer.get_weights()])
        assert cell.supports_fused
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = layer(x, mask=mask, training=True)
            loss = tf.reduce_sum(output * tf.cos(output))
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append([output, *grads])
    for fused, generic in zip(*results):
        np.testing.assert_allclose(fused, generic, rtol=1e-9, atol=1e-11)


def test_bad_rates_and_cells_without_step_are_refused():
    with pytest.raises(ValueError, match=r"`recurrent_weight_dropout` must "
                                         r"be a float in \[0, 1\)"):
        kerasrnn.LSTM(3, recurrent_weight_dropout=1.0)

    class OnlyRecurrentStep(kerasrnn.RecurrentCell):
        def recurrent_step(self, projected, states, recurrent_mask=None):
            h = tf.tanh(projected + states[0] @ self.recurrent_kernel)
            return h, [h]

    layer = kerasrnn.RNN(OnlyRecurrentStep(2, recurrent_weight_dropout=0.5))
    x = np.zeros((1, 3, 2), "float32")
    layer(x)      # inference: no mask, fine
    with pytest.raises(ValueError, match="needs its equations as `step`"):
        layer(x, training=True)


def test_the_rate_is_a_layer_argument_and_round_trips():
    layer = kerasrnn.GRU(4, recurrent_weight_dropout=0.25, num_layers=2)
    assert layer.recurrent_weight_dropout == 0.25
    config = layer.get_config()
    assert config["recurrent_weight_dropout"] == 0.25
    clone = kerasrnn.GRU.from_config(config)
    assert all(rnn.cell.recurrent_weight_dropout == 0.25
               for rnn in clone.recurrent_layers)
