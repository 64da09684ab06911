"""Configs round-trip and `.keras` files reload to identical outputs."""

import keras
import numpy as np
import pytest

import kerasrnn

BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 3


def layer_factories():
    return {
        "rnn-lstm": lambda **kw: kerasrnn.RNN(
            kerasrnn.LSTMCell(UNITS, unit_forget_bias=False), **kw),
        "rnn-gru-before": lambda **kw: kerasrnn.RNN(
            kerasrnn.GRUCell(UNITS, reset_after=False,
                             recurrent_activation="hard_sigmoid"), **kw),
        "simple-rnn-relu": lambda **kw: kerasrnn.SimpleRNN(
            UNITS, activation="relu", kernel_regularizer="l2", **kw),
        "lstm-deep-bi": lambda **kw: kerasrnn.LSTM(
            UNITS, num_layers=2, bidirectional=True, merge_mode="sum",
            residual=True, inter_layer_dropout=0.2, dropout=0.1,
            recurrent_dropout=0.1, seed=3, **kw),
        "gru-pytorch-states": lambda **kw: kerasrnn.GRU(
            UNITS, num_layers=2, state_layout="pytorch", **kw),
        "bidirectional-wrapper": lambda **kw: kerasrnn.Bidirectional(
            kerasrnn.GRU(UNITS, **kw), merge_mode="ave"),
    }


@pytest.mark.parametrize("name", list(layer_factories()))
def test_config_round_trip(name):
    layer = layer_factories()[name](return_sequences=True)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Also through Keras' generic (de)serialisation, by registered name.
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer)
    assert restored.get_config() == config


@pytest.mark.parametrize("name", list(layer_factories()))
def test_keras_file_round_trip_functional(name, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    inputs = keras.Input((None, FEATURES))
    hidden = layer_factories()[name](return_sequences=True)(inputs)
    outputs = kerasrnn.SequencePooling("mean")(hidden)
    model = keras.Model(inputs, outputs)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), expected)


def test_keras_file_round_trip_sequential_with_masking(tmp_path):
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 12, size=(BATCH, STEPS))
    model = keras.Sequential([
        keras.Input((STEPS,), dtype="int32"),
        keras.layers.Embedding(12, FEATURES, mask_zero=True),
        kerasrnn.Bidirectional(kerasrnn.LSTM(UNITS, return_sequences=True)),
        kerasrnn.SequencePooling("max"),
        keras.layers.Dense(2),
    ])
    expected = model.predict(tokens, verbose=0)
    path = tmp_path / "sequential.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(tokens, verbose=0),
                                  expected)


def test_trained_model_reloads_with_same_outputs(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, STEPS, FEATURES)).astype("float32")
    y = rng.integers(0, 2, size=(16,))
    model = keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        kerasrnn.GRU(UNITS, num_layers=2, bidirectional=True),
        keras.layers.Dense(2),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "trained.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))
