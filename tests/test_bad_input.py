"""Bad input raises a clear error naming the argument, value and expectation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrnn

X = np.zeros((2, 5, 3), "float32")


def built(layer):
    layer(X)
    return layer


@pytest.mark.parametrize("make", [
    lambda: kerasrnn.LSTM(4),
    lambda: kerasrnn.RNN(kerasrnn.GRUCell(4)),
    lambda: kerasrnn.Bidirectional(kerasrnn.SimpleRNN(4)),
])
def test_wrong_rank(make):
    with pytest.raises(ValueError, match=r"rank 3.*Received: shape=\(2, 3\)"):
        make()(np.zeros((2, 3), "float32"))


@pytest.mark.parametrize("make", [
    lambda: kerasrnn.GRU(4, num_layers=2),
    lambda: kerasrnn.RNN(kerasrnn.LSTMCell(4)),
])
def test_wrong_feature_size_for_built_weights(make):
    layer = built(make())
    with pytest.raises(ValueError, match=r"built for 3 input features.*has 7"):
        layer(np.zeros((2, 5, 7), "float32"))


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_input_is_cast_as_keras_does(dtype):
    values = np.random.default_rng(0).integers(0, 2, (2, 5, 3))
    for make in (lambda: kerasrnn.LSTM(4), lambda: kerasrnn.Bidirectional(
            kerasrnn.GRU(3)), lambda: kerasrnn.RNN(kerasrnn.GRUCell(3))):
        layer = make()
        expected = layer(values.astype("float32"))
        np.testing.assert_array_equal(layer(values.astype(dtype)), expected)


def test_non_numeric_input():
    with pytest.raises(TypeError, match="numeric `sequences`.*dtype=string"):
        kerasrnn.LSTM(4)(tf.constant([[["a"]]]))


def test_empty_sequence():
    with pytest.raises(ValueError, match="empty sequences"):
        kerasrnn.GRU(4)(np.zeros((2, 0, 3), "float32"))


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True, None])
@pytest.mark.parametrize("make", [
    kerasrnn.LSTMCell, kerasrnn.GRUCell, kerasrnn.SimpleRNNCell,
    kerasrnn.LSTM, kerasrnn.GRU, kerasrnn.SimpleRNN,
])
def test_bad_units(make, units):
    with pytest.raises(ValueError, match=r"`units`.*Received: units="):
        make(units)


@pytest.mark.parametrize("argument", ["activation", "recurrent_activation"])
def test_unknown_activation(argument):
    with pytest.raises(ValueError, match=f"Unknown `{argument}`: 'tanhh'"):
        kerasrnn.LSTM(4, **{argument: "tanhh"})


def test_merge_mode_typo():
    with pytest.raises(ValueError, match="merge_mode='concatt'"):
        kerasrnn.Bidirectional(kerasrnn.LSTM(3), merge_mode="concatt")
    with pytest.raises(ValueError, match="merge_mode='avg'"):
        kerasrnn.GRU(3, bidirectional=True, merge_mode="avg")


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.2"])
@pytest.mark.parametrize("argument", ["dropout", "recurrent_dropout",
                                      "inter_layer_dropout"])
def test_bad_dropout_rate(argument, rate):
    with pytest.raises(ValueError, match=f"`{argument}` must be a float"):
        kerasrnn.LSTM(3, **{argument: rate})


def test_bad_configs():
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['foo'\]"):
        kerasrnn.LSTM(4, foo=1)
    with pytest.raises(TypeError, match="must be a kerasrnn cell, a "
                       "Keras-compatible RNN cell"):
        kerasrnn.RNN(keras.layers.Dense(3))     # no state_size
    with pytest.raises(ValueError, match="state_layout='torch'"):
        kerasrnn.LSTM(3, state_layout="torch")
    with pytest.raises(ValueError, match="num_layers=0"):
        kerasrnn.LSTM(3, num_layers=0)
    with pytest.raises(ValueError, match="go_backwards=True"):
        kerasrnn.LSTM(3, num_layers=2, go_backwards=True)
    with pytest.raises(ValueError, match="residual=True"):
        kerasrnn.GRU(3, num_layers=2, bidirectional=True, residual=True)
    with pytest.raises(ValueError, match="mode='median'"):
        kerasrnn.SequencePooling("median")
    with pytest.raises(ValueError, match="bidirectional=True"):
        kerasrnn.Bidirectional(kerasrnn.LSTM(3, num_layers=2))
    with pytest.raises(ValueError,
                       match="cannot promise cuDNN.*use_cudnn=True"):
        kerasrnn.GRU(3, use_cudnn=True)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) "
                                        r"\['use_cudnn'\]"):
        kerasrnn.SimpleRNN(3, use_cudnn=False)  # as keras.layers.SimpleRNN


def test_initial_state_wrong_length_or_shape():
    lstm = built(kerasrnn.LSTM(4))
    with pytest.raises(ValueError, match="list 2 tensors.*Received 1"):
        lstm(X, initial_state=[np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match=r"must have shape \(2, 4\).*"
                                         r"Received: shape=\(2, 5\)"):
        lstm(X, initial_state=[np.zeros((2, 5), "float32")] * 2)
    # No silent broadcasting of a batch-1 state over the batch.
    with pytest.raises(ValueError, match=r"Received: shape=\(1, 4\)"):
        lstm(X, initial_state=[np.zeros((1, 4), "float32")] * 2)
    bidirectional = built(kerasrnn.Bidirectional(kerasrnn.GRU(4)))
    with pytest.raises(ValueError, match="list 2 tensors.*Received 3"):
        bidirectional(X, initial_state=[np.zeros((2, 4), "float32")] * 3)
    deep = built(kerasrnn.LSTM(4, num_layers=2, bidirectional=True,
                               state_layout="pytorch"))
    with pytest.raises(ValueError, match=r"must have shape \(4, 2, 4\)"):
        deep(X, initial_state=[np.zeros((2, 2, 4), "float32")] * 2)


def test_mask_wrong_shape():
    with pytest.raises(ValueError, match=r"`mask` of shape \(batch, time\)"):
        built(kerasrnn.LSTM(4))(X, mask=np.ones((2, 4), bool))


def test_stateful_needs_static_batch_and_reset_needs_stateful():
    with pytest.raises(ValueError, match="static batch size"):
        keras.Sequential([keras.Input((5, 3)),
                          kerasrnn.LSTM(4, stateful=True)])
    with pytest.raises(AttributeError, match="not stateful"):
        built(kerasrnn.LSTM(4)).reset_states()
