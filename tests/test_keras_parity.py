"""kerasrnn layers against Keras' built-in layers with copied weights."""

import itertools
import zlib

import keras
import numpy as np
import parity
import pytest

import kerasrnn
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec

ATOL = 1e-5
BATCH, STEPS, FEATURES, UNITS = 4, 6, 5, 3

# (kerasrnn layer, Keras layer, extra constructor arguments)
LAYERS = [
    (kerasrnn.LSTM, keras.layers.LSTM, {}),
    (kerasrnn.LSTM, keras.layers.LSTM, {"unit_forget_bias": False}),
    (kerasrnn.GRU, keras.layers.GRU, {"reset_after": True}),
    (kerasrnn.GRU, keras.layers.GRU, {"reset_after": False}),
    (kerasrnn.SimpleRNN, keras.layers.SimpleRNN, {}),
    (kerasrnn.SimpleRNN, keras.layers.SimpleRNN, {"activation": "relu"}),
]
LAYER_IDS = ["lstm", "lstm-nofb", "gru-after", "gru-before", "elman",
             "elman-relu"]


def test_every_cell_with_a_keras_twin_is_compared():
    """The registry's Keras twins are exactly the layers compared here."""
    twins = {
        (cell_spec(name).layer_class, getattr(keras.layers,
                                              cell_spec(name).keras_layer))
        for name in cell_names() if cell_spec(name).keras_layer
    }
    assert twins == {(ours, theirs) for ours, theirs, _ in LAYERS}


def make_mask(kind, rng):
    if kind is None:
        return None
    if kind == "right-padded":
        lengths = rng.integers(1, STEPS + 1, size=BATCH)
        lengths[0] = STEPS
        return np.arange(STEPS)[None, :] < lengths[:, None]
    mask = rng.random((BATCH, STEPS)) > 0.3  # holes anywhere
    mask[:, 0] = True
    return mask


def assert_all_close(ours, theirs):
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        parity.record("Keras built-in layers", a, b)
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


def random_weights(layer, rng):
    layer.set_weights(
        [rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()]
    )


@pytest.mark.parametrize("ours_cls,keras_cls,extra", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "right-padded", "holes"])
def test_layer_matches_keras(ours_cls, keras_cls, extra, go_backwards,
                             mask_kind):
    rng = np.random.default_rng(zlib.crc32(repr(
        (keras_cls.__name__, go_backwards, mask_kind, extra)).encode()))
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    mask = make_mask(mask_kind, rng)
    state_count = 2 if keras_cls is keras.layers.LSTM else 1
    for return_sequences, return_state, with_state in itertools.product(
        [False, True], [False, True], [False, True]
    ):
        args = dict(extra, return_sequences=return_sequences,
                    return_state=return_state, go_backwards=go_backwards)
        theirs = keras_cls(UNITS, **args)
        ours = ours_cls(UNITS, **args)
        theirs(x)
        ours(x)
        random_weights(theirs, rng)
        ours.set_weights(theirs.get_weights())
        kwargs = {"mask": mask}
        if with_state:
            kwargs["initial_state"] = [
                rng.normal(size=(BATCH, UNITS)).astype("float32")
                for _ in range(state_count)
            ]
        assert_all_close(ours(x, **kwargs), theirs(x, **kwargs))


@pytest.mark.parametrize("ours_cls,keras_cls,extra", LAYERS[::2],
                         ids=LAYER_IDS[::2])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_matches_keras(ours_cls, keras_cls, extra, merge_mode):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    mask = make_mask("right-padded", rng)
    state_count = 2 if keras_cls is keras.layers.LSTM else 1
    for return_sequences, with_state in itertools.product(
        [False, True], [False, True]
    ):
        args = dict(extra, return_sequences=return_sequences,
                    return_state=True)
        theirs = keras.layers.Bidirectional(
            keras_cls(UNITS, **args), merge_mode=merge_mode
        )
        ours = kerasrnn.Bidirectional(
            ours_cls(UNITS, **args), merge_mode=merge_mode
        )
        theirs(x)
        ours(x)
        random_weights(theirs, rng)
        ours.set_weights(theirs.get_weights())
        kwargs = {"mask": mask}
        if with_state:
            kwargs["initial_state"] = [
                rng.normal(size=(BATCH, UNITS)).astype("float32")
                for _ in range(2 * state_count)
            ]
        assert_all_close(ours(x, **kwargs), theirs(x, **kwargs))


@pytest.mark.parametrize("ours_cls,keras_cls,extra", LAYERS[::2],
                         ids=LAYER_IDS[::2])
def test_bidirectional_option_matches_keras_bidirectional(
    ours_cls, keras_cls, extra
):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    mask = make_mask("right-padded", rng)
    args = dict(extra, return_sequences=True, return_state=True)
    theirs = keras.layers.Bidirectional(keras_cls(UNITS, **args))
    ours = ours_cls(UNITS, bidirectional=True, **args)
    theirs(x)
    ours(x)
    random_weights(theirs, rng)
    ours.set_weights(theirs.get_weights())
    assert_all_close(ours(x, mask=mask), theirs(x, mask=mask))


@pytest.mark.parametrize("ours_cls,keras_cls,extra", LAYERS[::2],
                         ids=LAYER_IDS[::2])
def test_masks_from_embedding_and_masking_layers(ours_cls, keras_cls, extra):
    """Masks produced by Embedding(mask_zero) and Masking reach the layer."""
    rng = np.random.default_rng(11)
    tokens = rng.integers(1, 20, size=(BATCH, STEPS))
    tokens[1, 3:] = 0
    tokens[2, 1:] = 0

    def model(layer_cls):
        return keras.Sequential([
            keras.Input((STEPS,), dtype="int32"),
            keras.layers.Embedding(20, FEATURES, mask_zero=True),
            layer_cls(UNITS, return_sequences=True, **extra),
            keras.layers.Masking(mask_value=0.0),
            layer_cls(UNITS, **extra),
        ])

    theirs, ours = model(keras_cls), model(ours_cls)
    random_weights(theirs, rng)
    ours.set_weights(theirs.get_weights())
    assert_all_close(ours.predict(tokens, verbose=0),
                     theirs.predict(tokens, verbose=0))


def test_rnn_with_keras_cell_layout_trains_like_keras():
    """One fit epoch from equal weights gives equal weights (SGD)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, STEPS, FEATURES)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")

    def model(layer_cls):
        return keras.Sequential([
            keras.Input((STEPS, FEATURES)),
            layer_cls(UNITS),
            keras.layers.Dense(1),
        ])

    theirs, ours = model(keras.layers.LSTM), model(kerasrnn.LSTM)
    ours.set_weights(theirs.get_weights())
    for m in (theirs, ours):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        parity.record("Keras built-in layers, weights after fit", a, b)
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("ours_cls,keras_cls,extra", LAYERS[::2],
                         ids=LAYER_IDS[::2])
def test_keras_only_arguments_carry_over(ours_cls, keras_cls, extra):
    """A keras.layers constructor call works unchanged: use_cudnn (kerasrnn
    always runs its own loop) and activity_regularizer, whose loss is Keras'
    base-layer loss of the output and survives a config round trip.
    (keras.layers.SimpleRNN 3.15 drops its activity_regularizer; the
    reference is a linear Activation layer with the same regularizer.)"""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    args = dict(extra, activity_regularizer="l2", return_sequences=True)
    if keras_cls is not keras.layers.SimpleRNN:
        args["use_cudnn"] = False
    theirs, ours = keras_cls(UNITS, **args), ours_cls(UNITS, **args)
    theirs(x)
    ours(x)
    random_weights(theirs, rng)
    ours.set_weights(theirs.get_weights())
    output = ours(x)
    assert_all_close(output, theirs(x))
    reference = keras.layers.Activation("linear", activity_regularizer="l2")
    reference(theirs(x))
    assert len(ours.losses) == len(reference.losses) == 1
    assert_all_close(ours.losses[0], reference.losses[0])
    if theirs.losses:
        assert_all_close(ours.losses[0], theirs.losses[0])
    clone = ours_cls.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()
    assert clone.activity_regularizer is not None


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_constructor_spells_out_every_keras_argument(name):
    """help() and IDEs list the arguments: every argument of
    keras.layers.<name> is in kerasrnn.<name>'s signature, in Keras'
    order and with Keras' default."""
    import inspect

    theirs = inspect.signature(getattr(keras.layers, name)).parameters
    ours = inspect.signature(getattr(kerasrnn, name)).parameters
    keras_names = [n for n in theirs if n != "kwargs"]
    assert [n for n in ours if n in theirs and n != "kwargs"] == keras_names
    for argument in keras_names:
        assert ours[argument].default == theirs[argument].default, argument


def test_one_initializer_object_gives_every_direction_and_layer_its_own():
    """As Keras' Bidirectional (which rebuilds the layer from its config),
    an unseeded initializer object does not make the two directions or
    the stacked layers start equal."""
    layer = kerasrnn.GRU(3, num_layers=2, bidirectional=True,
                         kernel_initializer=keras.initializers.GlorotUniform(),
                         recurrent_initializer=keras.initializers.Orthogonal())
    layer(np.zeros((1, 2, 6), "float32"))
    for shape in ((6, 9), (3, 9)):   # input kernels, recurrent kernels
        weights = [w for w in layer.get_weights() if w.shape == shape]
        assert len(weights) == 4
        for a, b in itertools.combinations(weights, 2):
            assert not np.allclose(a, b)


# --- any Keras-compatible cell in kerasrnn.RNN ------------------------------

class CountingCell(keras.layers.Layer):
    """A user's cell as Keras documents them: ``state_size``,
    ``output_size`` (here not the state's size) and ``call(inputs,
    states)``; h_t = tanh(x W + h_{t-1} U), output [h_t, 2 h_t]."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = 2 * units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))
        self.recurrent_kernel = self.add_weight(shape=(self.units,
                                                       self.units))

    def call(self, inputs, states):
        h = keras.ops.tanh(inputs @ self.kernel
                           + states[0] @ self.recurrent_kernel)
        return keras.ops.concatenate([h, 2 * h], axis=-1), [h]


def run_both(make_cell, x, mask=None, copy=True, **options):
    """kerasrnn.RNN and keras.layers.RNN on equal cells (weights copied)."""
    ours = kerasrnn.RNN(make_cell(), **options)
    theirs = keras.layers.RNN(make_cell(), **options)
    ours(x[:1]), theirs(x[:1])
    if copy:
        ours.set_weights(theirs.get_weights())
    return ours(x, mask=mask), theirs(x, mask=mask)


@pytest.mark.parametrize("options", [
    {}, {"return_sequences": True}, {"go_backwards": True},
    {"return_sequences": True, "return_state": True},
    {"unroll": True, "return_sequences": True},
])
@pytest.mark.parametrize("make_cell", [
    lambda: keras.layers.LSTMCell(4), lambda: keras.layers.GRUCell(4),
    lambda: CountingCell(3),
    lambda: [keras.layers.LSTMCell(4), keras.layers.SimpleRNNCell(2)],
], ids=["keras-lstm", "keras-gru", "user-cell", "stack"])
def test_any_keras_cell_runs_as_in_keras_rnn(make_cell, options):
    x = np.random.default_rng(0).normal(size=(3, 5, 6)).astype("float32")
    mask = np.array([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4], bool)
    ours, theirs = run_both(make_cell, x, mask=mask, **options)
    flat_ours = keras.tree.flatten(ours)
    flat_theirs = keras.tree.flatten(theirs)
    assert len(flat_ours) == len(flat_theirs)
    if options.get("return_state"):   # states nested as Keras nests them
        assert keras.tree.map_structure(
            lambda t: tuple(t.shape), list(ours)[1:]) == (
            keras.tree.map_structure(
                lambda t: tuple(t.shape), list(theirs)[1:]))
    for a, b in zip(flat_ours, flat_theirs):
        parity.record("Keras built-in layers", np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_a_list_of_kerasrnn_cells_is_a_stack_with_nested_states():
    layer = kerasrnn.RNN([kerasrnn.LSTMCell(4), kerasrnn.GRUCell(3)],
                         return_state=True)
    output, first, second = layer(np.ones((2, 5, 6), "float32"))
    assert tuple(output.shape) == (2, 3)
    assert [tuple(s.shape) for s in first] == [(2, 4), (2, 4)]
    assert [tuple(s.shape) for s in second] == [(2, 3)]
    restored = kerasrnn.RNN.from_config(layer.get_config())
    restored(np.ones((2, 5, 6), "float32"))
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        restored(np.ones((2, 5, 6), "float32"))[0], output, atol=1e-6)


@pytest.mark.parametrize("make_cell", [
    lambda: kerasrnn.LSTMCell(2), lambda: keras.layers.GRUCell(2)])
def test_stateful_batch_size_mismatch_names_the_batch_size(make_cell):
    layer = kerasrnn.RNN(make_cell(), stateful=True)
    layer(np.ones((4, 3, 2), "float32"))
    with pytest.raises(ValueError, match="carries states for a batch size "
                       "of 4; the sequences have a batch size of 1"):
        layer(np.ones((1, 3, 2), "float32"))


# --- the attributes and methods Keras users and Keras' wrappers touch -------

@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_reset_state_and_states_as_keras(name):
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype("float32")
    ours = getattr(kerasrnn, name)(3, stateful=True)
    theirs = getattr(keras.layers, name)(3, stateful=True)
    ours(x), theirs(x)
    ours.set_weights(theirs.get_weights())
    ours.reset_state(), theirs.reset_state()
    first = np.asarray(ours(x))
    np.testing.assert_allclose(first, theirs(x), atol=1e-6)
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-6)  # carried
    assert len(ours.states) == len(theirs.states)
    for a, b in zip(ours.states, theirs.states):
        np.testing.assert_allclose(a, b, atol=1e-6)
    ours.reset_state()
    np.testing.assert_allclose(ours(x), first, atol=1e-6)
    # Keras' own Bidirectional resets what it wraps with reset_state().
    wrapped = keras.layers.Bidirectional(getattr(kerasrnn, name)(
        3, stateful=True))
    wrapped(x)
    wrapped.reset_state()


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_layer_attributes_as_keras(name):
    options = {"dropout": 0.1, "recurrent_dropout": 0.2}
    ours = getattr(kerasrnn, name)(3, **options)
    theirs = getattr(keras.layers, name)(3, **options)
    for attribute in ("units", "dropout", "recurrent_dropout", "use_bias"):
        assert getattr(ours, attribute) == getattr(theirs, attribute)
    assert ours.activation is theirs.activation
    assert ours.cell.units == theirs.cell.units == 3
    assert [tuple(s.shape) for s in ours.get_initial_state(5)] == [
        tuple(s.shape) for s in theirs.get_initial_state(5)]
    # Keras' Bidirectional wraps a kerasrnn layer that returns its states.
    x = np.ones((2, 4, 5), "float32")
    wrapped = keras.layers.Bidirectional(getattr(kerasrnn, name)(
        3, return_state=True))
    outputs = wrapped(x)
    assert tuple(outputs[0].shape) == (2, 6)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_keras_configs_with_implementation_load(name):
    """Keras' legacy `implementation` argument is accepted (Keras 3 takes
    it in the constructor; tf.keras configs carry it), so a Keras layer's
    config builds the kerasrnn layer, with the same outputs."""
    theirs = getattr(keras.layers, name)(4, implementation=1)
    x = np.random.default_rng(2).normal(size=(2, 3, 5)).astype("float32")
    expected = theirs(x)
    config = dict(theirs.get_config(), implementation=2)
    getattr(kerasrnn, name)(4, implementation=1)
    ours = getattr(kerasrnn, name).from_config(config)
    ours(x)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x), expected, atol=1e-6)


def test_bidirectional_copies_the_layer_and_follows_its_dtype():
    layer = kerasrnn.LSTM(3)
    first, second = kerasrnn.Bidirectional(layer), kerasrnn.Bidirectional(
        layer)
    x = np.ones((2, 4, 5), "float32")
    first(x), second(x)
    assert not layer.built                         # left as it was
    assert not np.allclose(first.get_weights()[0], second.get_weights()[0])
    mixed = kerasrnn.Bidirectional(kerasrnn.GRU(3), dtype="mixed_float16")
    assert keras.backend.standardize_dtype(mixed(x).dtype) == "float16"
