"""TensorFlow's GPU route: cuDNN's LSTM and GRU through Keras' own
functions (``kerasrnn/layers/cudnn_kernels.py``).

No GPU TensorFlow runs here (this machine has no GPU; the project's GPU
machines have no TensorFlow), so the cuDNN op itself cannot run. What is
ours is checked: which configurations take the route (the dispatch), and
the wiring around Keras' ``lstm`` / ``gru`` (weights, states,
``go_backwards``, masks, the outputs' masking convention, the fallback for
a mask cuDNN cannot take, gradients, ``fit``). For the wiring, Keras'
functions are replaced by ``cudnn_contract``: the contract of Keras'
``_cudnn_lstm`` / ``_cudnn_gru``, written out from cuDNN's semantics (a
per-row ``sequence_lengths`` run, zeros after a row's end, reversal by
``tf.reverse_sequence`` then in full under ``go_backwards``), and checked
against the CPU loops, which equal Keras' layers elsewhere in the suite.
On a machine with a GPU the first test checks the real route instead.
"""

import keras
import numpy as np
import pytest

if keras.config.backend() != "tensorflow":
    pytest.skip("TensorFlow's cuDNN route", allow_module_level=True)

import tensorflow as tf  # noqa: E402

import kerasrnn  # noqa: E402
from kerasrnn.layers import cudnn_kernels  # noqa: E402

BATCH, STEPS, FEATURES, UNITS = 4, 6, 3, 5
RNG = np.random.default_rng(7)
X = RNG.standard_normal((BATCH, STEPS, FEATURES)).astype("float32")
LENGTHS = np.array([6, 3, 1, 4])
RIGHT_PADDED = np.arange(STEPS)[None, :] < LENGTHS[:, None]
SCATTERED = RNG.random((BATCH, STEPS)) < 0.7
SCATTERED[:, 0] = True


def _lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    i, f, g, o = tf.split(x @ kernel + h @ recurrent_kernel + bias, 4, -1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def _gru_step(x, h, kernel, recurrent_kernel, bias):
    xz, xr, xh = tf.split(x @ kernel + bias[0], 3, -1)
    hz, hr, hh = tf.split(h @ recurrent_kernel + bias[1], 3, -1)
    z, r = tf.sigmoid(xz + hz), tf.sigmoid(xr + hr)
    return z * h + (1 - z) * tf.tanh(xh + r * hh)


def cudnn_contract(kind, calls):
    """A stand-in for Keras' TensorFlow ``lstm`` (``kind="lstm"``) or
    ``gru`` with cuDNN's semantics; appends to ``calls`` when run."""

    def run(inputs, *initial_states, mask, kernel, recurrent_kernel, bias,
            activation, recurrent_activation, return_sequences=False,
            go_backwards=False, reset_after=True):
        assert activation is keras.activations.tanh
        assert recurrent_activation is keras.activations.sigmoid
        assert reset_after
        calls.append(kind)
        steps = inputs.shape[1]
        if mask is None:
            lengths = tf.fill([tf.shape(inputs)[0]], steps)
        else:
            lengths = tf.reduce_sum(tf.cast(mask, "int32"), axis=1)
        if go_backwards:
            inputs = tf.reverse_sequence(inputs, lengths, seq_axis=1,
                                         batch_axis=0)
        states = list(initial_states)
        outputs = []
        for t in range(steps):
            if kind == "lstm":
                new = _lstm_step(inputs[:, t], *states, kernel,
                                 recurrent_kernel, bias)
            else:
                new = [_gru_step(inputs[:, t], *states, kernel,
                                 recurrent_kernel, bias)]
            real = (t < lengths)[:, None]
            states = [tf.where(real, n, s) for n, s in zip(new, states)]
            outputs.append(tf.where(real, new[0], tf.zeros_like(new[0])))
        outputs = tf.stack(outputs, axis=1)
        if go_backwards:
            outputs = tf.reverse(tf.reverse_sequence(
                outputs, lengths, seq_axis=1, batch_axis=0), axis=[1])
        if not return_sequences:
            outputs = states[0][:, None]
        return states[0], outputs, states

    return run


@pytest.fixture
def gpu(monkeypatch):
    """TensorFlow "sees" a GPU, and Keras' cuDNN functions are
    ``cudnn_contract``; yields the list of contract calls."""
    calls = []
    monkeypatch.setattr(cudnn_kernels, "gpu_visible", lambda: True)
    monkeypatch.setattr(
        cudnn_kernels, "keras_kernel",
        lambda cell: cudnn_contract(
            "lstm" if isinstance(cell, kerasrnn.LSTMCell) else "gru", calls),
    )
    return calls


def test_without_a_gpu_the_fused_loop_runs_and_keras_declines():
    """On this machine: no GPU, so the layers keep their fused loops, and
    Keras' own function declines as Keras' layer expects. On a machine with
    a GPU: the route is taken, and cuDNN's result equals the fused loop."""
    layer = kerasrnn.RNN(kerasrnn.LSTMCell(UNITS), return_sequences=True)
    cudnn_layer = kerasrnn.RNN(kerasrnn.LSTMCell(UNITS),
                               return_sequences=True)
    layer(X)
    cudnn_layer(X)
    cudnn_layer.set_weights(layer.get_weights())
    if not cudnn_kernels.gpu_visible():
        assert layer.fast_path(training=True) == "fused"
        assert layer.fast_path() == "forward"
        assert "no GPU" in cudnn_kernels.cudnn_note(layer.cell)
        cell = layer.cell
        with pytest.raises(NotImplementedError):
            cudnn_kernels.keras_kernel(cell)(
                X, tf.zeros((BATCH, UNITS)), tf.zeros((BATCH, UNITS)),
                mask=None, kernel=cell.kernel,
                recurrent_kernel=cell.recurrent_kernel, bias=cell.bias,
                activation=cell.activation,
                recurrent_activation=cell.recurrent_activation)
        return
    assert cudnn_layer.fast_path() == "cudnn"
    fused = kerasrnn.RNN(kerasrnn.LSTMCell(UNITS), return_sequences=True,
                         use_cudnn=False)
    fused(X)
    fused.set_weights(layer.get_weights())
    np.testing.assert_allclose(cudnn_layer(X), fused(X), atol=1e-5)


DISPATCH = [
    ("LSTM", {}, True),
    ("GRU", {}, True),
    ("LSTM", {"use_cudnn": False}, False),
    ("LSTM", {"activation": "relu"}, False),
    ("LSTM", {"use_bias": False}, False),
    ("GRU", {"reset_after": False}, False),
    ("GRU", {"recurrent_activation": "hard_sigmoid"}, False),
    ("SimpleRNN", {}, False),
]


@pytest.mark.parametrize("name, arguments, cudnn", DISPATCH)
def test_the_route_is_taken_where_keras_takes_cudnn(gpu, name, arguments,
                                                    cudnn):
    layer = getattr(kerasrnn, name)(UNITS, **arguments)
    layer(X)
    rnn = layer.recurrent_layers[0]
    for training in (False, True):
        assert (rnn.fast_path(training=training) == "cudnn") == cudnn
    # cuDNN's op has no XLA kernel: jit_compile="auto" must leave XLA off.
    assert rnn.supports_jit == (not cudnn)


def test_recurrent_dropout_keeps_training_off_cudnn(gpu):
    """cuDNN has no recurrent dropout: in training the fused loop runs
    (in inference cuDNN)."""
    layer = kerasrnn.LSTM(UNITS, recurrent_dropout=0.3)
    layer(X)
    rnn = layer.recurrent_layers[0]
    assert rnn.fast_path(training=True) == "fused"
    assert rnn.fast_path(training=False) == "cudnn"


def test_use_cudnn_reaches_every_layer_of_a_stack(gpu):
    layer = kerasrnn.GRU(UNITS, num_layers=2, bidirectional=True,
                         use_cudnn=False)
    layer(X)
    assert [rnn.use_cudnn for rnn in layer._rnn_layers()] == [False] * 4
    assert {rnn.fast_path() for rnn in layer._rnn_layers()} == {"forward"}
    clone = kerasrnn.GRU.from_config(layer.get_config())
    clone(X)
    assert {rnn.fast_path() for rnn in clone._rnn_layers()} == {"forward"}


def _pair(kind, **arguments):
    """The same weights in a layer on the route and one off it."""
    cudnn = getattr(kerasrnn, kind)(UNITS, **arguments)
    fused = getattr(kerasrnn, kind)(UNITS, use_cudnn=False, **arguments)
    cudnn(X)
    fused(X)
    fused.set_weights(cudnn.get_weights())
    return cudnn, fused


CASES = [
    ("LSTM", {}, None),
    ("GRU", {}, None),
    ("LSTM", {"return_state": True}, RIGHT_PADDED),
    ("GRU", {"return_state": True}, RIGHT_PADDED),
    ("LSTM", {"go_backwards": True}, RIGHT_PADDED),
    ("GRU", {"go_backwards": True}, RIGHT_PADDED),
    ("LSTM", {"zero_output_for_mask": True}, RIGHT_PADDED),
    ("LSTM", {"bidirectional": True}, RIGHT_PADDED),
    ("GRU", {"bidirectional": True}, RIGHT_PADDED),
    ("LSTM", {}, SCATTERED),
    ("GRU", {"go_backwards": True}, SCATTERED),
]


@pytest.mark.parametrize("sequences", [True, False],
                         ids=["sequences", "last"])
@pytest.mark.parametrize("kind, arguments, mask", CASES)
def test_the_route_equals_the_fused_loop(gpu, kind, arguments, mask,
                                         sequences):
    """Outputs, final states and every gradient, eagerly and in a graph;
    the contract runs for every right-padded mask and for none that is
    not (eagerly; in a graph both branches are traced)."""
    cudnn, fused = _pair(kind, return_sequences=sequences, **arguments)
    rows = tf.constant(X)
    mask = None if mask is None else tf.constant(mask)

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            result = tf.nest.flatten(layer(rows, mask=mask, training=True))
            loss = sum(tf.reduce_sum(r * (k + 1.0) ** 0.5)
                       for k, r in enumerate(result))
        return result, tape.gradient(loss, [rows] + layer.trainable_weights)

    expected = run(fused)
    calls_before = len(gpu)
    for runner in (run, tf.function(run, reduce_retracing=True)):
        got = runner(cudnn)
        for want, have in zip(tf.nest.flatten(expected), tf.nest.flatten(got)):
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=2e-6)
        if runner is run:
            padded = mask is None or mask is not None and bool(
                np.array_equal(mask.numpy(), RIGHT_PADDED))
            assert (len(gpu) > calls_before) == padded


def test_a_model_trains_on_the_route(gpu):
    """``fit`` with a masked bidirectional stack: the same losses as off
    the route."""
    ids = RNG.integers(1, 20, (16, STEPS))
    ids[:, 4:] = 0
    labels = RNG.integers(0, 2, (16,))

    def model(use_cudnn):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([
            keras.Input((STEPS,), dtype="int32"),
            keras.layers.Embedding(20, 8, mask_zero=True),
            kerasrnn.LSTM(UNITS, bidirectional=True, use_cudnn=use_cudnn),
            keras.layers.Dense(2),
        ])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        return model

    histories = {}
    for use_cudnn in ("auto", False):
        calls_before = len(gpu)
        history = model(use_cudnn).fit(ids, labels, batch_size=8, epochs=2,
                                       verbose=0)
        histories[use_cudnn] = history.history["loss"]
        assert (len(gpu) > calls_before) == (use_cudnn == "auto")
    np.testing.assert_allclose(histories["auto"], histories[False],
                               rtol=1e-5)


def test_the_saved_model_export_traces_off_the_route(gpu, tmp_path):
    """A SavedModel must run on CPU-only servers: while it is traced no
    layer takes the route (outside, the same model does)."""
    from kerasrnn.export import to_saved_model

    model = keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        kerasrnn.GRU(UNITS, bidirectional=True),
        keras.layers.Dense(2),
    ])
    model(X)
    assert gpu
    calls_before = len(gpu)
    info = to_saved_model(model, tmp_path / "model")
    assert len(gpu) == calls_before
    assert info["parity"]
    model(X)
    assert len(gpu) > calls_before
