"""Weight layouts (Keras / PyTorch / ONNX) and layer-level weight transfer.

The gate orders are restated here as literal strings so that a wrong
constant in ``kerasrnn.cells.layouts`` cannot also pass its own test, and
one step of each cell is written three times from each framework's
documented equations.
"""

import keras
import numpy as np
import pytest

import kerasrnn
from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells import layouts
from kerasrnn.weights import transfer

ATOL = 1e-5
SEEDS = range(6)
CELL_TYPES = ("simple_rnn", "lstm", "gru")
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# Each framework's gate order, with PyTorch's g / n renamed to Keras' c / h.
ORDERS = {
    "keras": {"simple_rnn": "h", "lstm": "ifco", "gru": "zrh"},
    "torch": {"simple_rnn": "h", "lstm": "ifco", "gru": "rzh"},
    "onnx": {"simple_rnn": "h", "lstm": "iofc", "gru": "zrh"},
}
LAYERS = {
    "simple_rnn": kerasrnn.SimpleRNN,
    "lstm": kerasrnn.LSTM,
    "gru": kerasrnn.GRU,
}
KERAS_LAYERS = {
    "simple_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}


def random_cell(seed, cell_type, use_bias=True, reset_after=True):
    """Random Keras-layout weights of one cell, with random sizes."""
    rng = np.random.default_rng(seed)
    features, units = rng.integers(1, 7, size=2)
    width = GATES[cell_type] * units
    bias = None
    if use_bias:
        shape = (2, width) if cell_type == "gru" and reset_after else width
        bias = rng.normal(size=shape).astype("float32")
    return dict(
        kernel=rng.normal(size=(features, width)).astype("float32"),
        recurrent_kernel=rng.normal(size=(units, width)).astype("float32"),
        bias=bias,
    )


def block(array, order, gate, axis):
    """The block of ``gate`` along ``axis`` of an array packed in ``order``."""
    return np.split(array, len(order), axis=axis)[order.index(gate)]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# One step of each cell, each written from its framework's documentation.


def keras_step(cell_type, weights, x, h, c, reset_after):
    W, U = weights["kernel"], weights["recurrent_kernel"]
    b = weights.get("bias")
    if b is None:
        two_rows = cell_type == "gru" and reset_after
        b = np.zeros((2, W.shape[1]) if two_rows else W.shape[1])
    if cell_type == "simple_rnn":
        return np.tanh(x @ W + h @ U + b), None
    if cell_type == "lstm":
        z_i, z_f, z_c, z_o = np.split(x @ W + h @ U + b, 4, axis=-1)
        c = sigmoid(z_f) * c + sigmoid(z_i) * np.tanh(z_c)
        return sigmoid(z_o) * np.tanh(c), c
    x_z, x_r, x_h = np.split(x @ W + (b[0] if reset_after else b), 3, -1)
    if reset_after:
        h_z, h_r, h_h = np.split(h @ U + b[1], 3, axis=-1)
        z, r = sigmoid(x_z + h_z), sigmoid(x_r + h_r)
        n = np.tanh(x_h + r * h_h)
    else:
        U_z, U_r, U_h = np.split(U, 3, axis=-1)
        z, r = sigmoid(x_z + h @ U_z), sigmoid(x_r + h @ U_r)
        n = np.tanh(x_h + (r * h) @ U_h)
    return z * h + (1 - z) * n, None


def torch_step(cell_type, params, x, h, c):
    W, U = params["weight_ih"], params["weight_hh"]
    b_i = params.get("bias_ih", np.zeros(W.shape[0]))
    b_h = params.get("bias_hh", np.zeros(W.shape[0]))
    gi, gh = x @ W.T + b_i, h @ U.T + b_h
    if cell_type == "simple_rnn":
        return np.tanh(gi + gh), None
    if cell_type == "lstm":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    i_r, i_z, i_n = np.split(gi, 3, axis=-1)
    h_r, h_z, h_n = np.split(gh, 3, axis=-1)
    r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, None


def onnx_step(cell_type, W, R, B, x, h, c, linear_before_reset):
    Wb, Rb = np.split(B, 2)
    if cell_type == "simple_rnn":
        return np.tanh(x @ W.T + h @ R.T + Wb + Rb), None
    if cell_type == "lstm":
        gates = x @ W.T + h @ R.T + Wb + Rb
        i, o, f, g = np.split(gates, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    W_z, W_r, W_h = np.split(W, 3)
    R_z, R_r, R_h = np.split(R, 3)
    Wb_z, Wb_r, Wb_h = np.split(Wb, 3)
    Rb_z, Rb_r, Rb_h = np.split(Rb, 3)
    z = sigmoid(x @ W_z.T + h @ R_z.T + Wb_z + Rb_z)
    r = sigmoid(x @ W_r.T + h @ R_r.T + Wb_r + Rb_r)
    if linear_before_reset:
        n = np.tanh(x @ W_h.T + r * (h @ R_h.T + Rb_h) + Wb_h)
    else:
        n = np.tanh(x @ W_h.T + (r * h) @ R_h.T + Rb_h + Wb_h)
    return (1 - z) * n + z * h, None


# Gate orders and single-cell conversions.


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_permutations_match_gate_orders(cell_type):
    keras_order = ORDERS["keras"][cell_type]
    spec = cell_spec(cell_type)
    for target in ("torch", "onnx"):
        permuted = "".join(keras_order[p] for p in spec.permutation(target))
        assert permuted == ORDERS[target][cell_type]
    for framework in ("keras", "torch", "onnx"):
        names = "".join(spec.gate_orders[framework])
        assert names == ORDERS[framework][cell_type]


def cell_configs():
    for cell_type in CELL_TYPES:
        for seed in SEEDS:
            use_bias = seed != 0
            yield pytest.param(
                cell_type, seed, use_bias, id=f"{cell_type}-{seed}"
            )


@pytest.mark.parametrize("cell_type, seed, use_bias", cell_configs())
def test_keras_torch_keras_is_exact(cell_type, seed, use_bias):
    weights = random_cell(seed, cell_type, use_bias)
    params = layouts.keras_to_torch(cell_type, **weights)
    keras_order = ORDERS["keras"][cell_type]
    torch_order = ORDERS["torch"][cell_type]
    for gate in keras_order:
        np.testing.assert_array_equal(
            block(params["weight_ih"], torch_order, gate, 0),
            block(weights["kernel"], keras_order, gate, 1).T,
        )
        np.testing.assert_array_equal(
            block(params["weight_hh"], torch_order, gate, 0),
            block(weights["recurrent_kernel"], keras_order, gate, 1).T,
        )
    if not use_bias:
        assert set(params) == {"weight_ih", "weight_hh"}
    elif cell_type == "gru":
        for gate in keras_order:
            for row, name in enumerate(("bias_ih", "bias_hh")):
                np.testing.assert_array_equal(
                    block(params[name], torch_order, gate, 0),
                    block(weights["bias"][row], keras_order, gate, 0),
                )
    else:
        assert not params["bias_hh"].any()
    back = layouts.torch_to_keras(cell_type, **params)
    assert set(back) == {k for k, v in weights.items() if v is not None}
    for name, value in back.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, weights[name])


@pytest.mark.parametrize("cell_type, seed, use_bias", cell_configs())
def test_torch_keras_torch_sums_biases(cell_type, seed, use_bias):
    weights = random_cell(seed, cell_type, use_bias)
    params = layouts.keras_to_torch(cell_type, **weights)
    if use_bias:
        # A nonzero recurrent bias, as a trained PyTorch module has.
        params["bias_hh"] = params["bias_ih"][::-1] * 0.5
    back = layouts.keras_to_torch(
        cell_type, **layouts.torch_to_keras(cell_type, **params)
    )
    np.testing.assert_array_equal(back["weight_ih"], params["weight_ih"])
    np.testing.assert_array_equal(back["weight_hh"], params["weight_hh"])
    if use_bias and cell_type == "gru":
        np.testing.assert_array_equal(back["bias_hh"], params["bias_hh"])
    elif use_bias:
        np.testing.assert_allclose(
            back["bias_ih"], params["bias_ih"] + params["bias_hh"], atol=ATOL
        )
        assert not back["bias_hh"].any()


def onnx_configs():
    for cell_type in CELL_TYPES:
        for reset_after in (True, False) if cell_type == "gru" else (True,):
            for seed in SEEDS:
                yield pytest.param(
                    cell_type, seed, seed != 1, reset_after,
                    id=f"{cell_type}-{seed}-reset_after={reset_after}",
                )


@pytest.mark.parametrize("cell_type, seed, use_bias, reset_after",
                         onnx_configs())
def test_keras_to_onnx_is_exact(cell_type, seed, use_bias, reset_after):
    weights = random_cell(seed, cell_type, use_bias, reset_after)
    W, R, B = layouts.keras_to_onnx(
        cell_type, **weights, reset_after=reset_after
    )
    keras_order = ORDERS["keras"][cell_type]
    onnx_order = ORDERS["onnx"][cell_type]
    Wb, Rb = np.split(B, 2)
    for gate in keras_order:
        np.testing.assert_array_equal(
            block(W, onnx_order, gate, 0),
            block(weights["kernel"], keras_order, gate, 1).T,
        )
        np.testing.assert_array_equal(
            block(R, onnx_order, gate, 0),
            block(weights["recurrent_kernel"], keras_order, gate, 1).T,
        )
        bias = weights["bias"]
        if bias is None:
            input_bias = recurrent_bias = np.zeros(Wb.size // len(onnx_order))
        elif bias.ndim == 2:
            input_bias = block(bias[0], keras_order, gate, 0)
            recurrent_bias = block(bias[1], keras_order, gate, 0)
        else:
            input_bias = block(bias, keras_order, gate, 0)
            recurrent_bias = np.zeros_like(input_bias)
        np.testing.assert_array_equal(block(Wb, onnx_order, gate, 0),
                                      input_bias)
        np.testing.assert_array_equal(block(Rb, onnx_order, gate, 0),
                                      recurrent_bias)
    back = layouts.onnx_to_keras(
        cell_type, W, R, B, linear_before_reset=int(reset_after)
    )
    np.testing.assert_array_equal(back["kernel"], weights["kernel"])
    np.testing.assert_array_equal(
        back["recurrent_kernel"], weights["recurrent_kernel"]
    )
    expected_bias = weights["bias"]
    if expected_bias is None:
        expected_bias = np.zeros(
            layouts.keras_bias_shape(cell_type, R.shape[1], reset_after)
        )
    np.testing.assert_array_equal(back["bias"], expected_bias)


@pytest.mark.parametrize("cell_type, seed, use_bias, reset_after",
                         onnx_configs())
def test_one_step_agrees_across_layouts(cell_type, seed, use_bias,
                                         reset_after):
    weights = random_cell(seed, cell_type, use_bias, reset_after)
    rng = np.random.default_rng(seed + 100)
    units = weights["recurrent_kernel"].shape[0]
    x = rng.normal(size=(3, weights["kernel"].shape[0]))
    h, c = rng.normal(size=(2, 3, units))
    expected = keras_step(cell_type, weights, x, h, c, reset_after)
    results = [
        onnx_step(
            cell_type,
            *layouts.keras_to_onnx(cell_type, **weights,
                                   reset_after=reset_after),
            x, h, c, reset_after,
        )
    ]
    if reset_after:
        results.append(
            torch_step(
                cell_type, layouts.keras_to_torch(cell_type, **weights),
                x, h, c,
            )
        )
    for result in results:
        for ours, theirs in zip(result, expected):
            if theirs is not None:
                np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0)


# Errors of the single-cell conversions.


def test_unknown_cell_type():
    weights = random_cell(0, "lstm")
    for function in (layouts.keras_to_torch, layouts.keras_to_onnx):
        with pytest.raises(ValueError, match=r"cell_type.*'rnn'"):
            function("rnn", **weights)
    with pytest.raises(ValueError, match="must be one of"):
        layouts.torch_to_keras("LSTM", np.zeros((8, 3)), np.zeros((8, 2)))


def test_gru_reset_after_false_has_no_torch_form():
    weights = random_cell(0, "gru", reset_after=False)
    with pytest.raises(ValueError, match="reset_after=False has no PyTorch"):
        layouts.keras_to_torch("gru", **weights, reset_after=False)
    params = layouts.keras_to_torch("gru", **random_cell(0, "gru"))
    with pytest.raises(ValueError, match="reset_after=False"):
        layouts.torch_to_keras("gru", **params, reset_after=False)


@pytest.mark.parametrize(
    "cell_type, name, shape, message",
    [
        ("lstm", "kernel", (3, 12), r"`kernel` must have shape \(F, 16\)"
         r".*kernel.shape=\(3, 12\)"),
        ("lstm", "kernel", (16,), r"kernel.shape=\(16,\)"),
        ("lstm", "recurrent_kernel", (4, 12),
         r"\(H, G\*H\) with G=4.*recurrent_kernel.shape=\(4, 12\)"),
        ("lstm", "bias", (4, 4), r"`bias` must have shape \(16,\)"),
        ("gru", "bias", (12,),
         r"`bias` must have shape \(2, 12\) \(reset_after=True\)"),
        ("simple_rnn", "recurrent_kernel", (4,), r"shape=\(4,\)"),
    ],
)
def test_bad_keras_shapes(cell_type, name, shape, message):
    units = 4
    weights = {
        "kernel": np.zeros((3, GATES[cell_type] * units)),
        "recurrent_kernel": np.zeros((units, GATES[cell_type] * units)),
        "bias": np.zeros(
            layouts.keras_bias_shape(cell_type, units, reset_after=True)
        ),
    }
    weights[name] = np.zeros(shape)
    for function in (layouts.keras_to_torch, layouts.keras_to_onnx):
        with pytest.raises(ValueError, match=message):
            function(cell_type, **weights)


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("weight_ih", (12, 3), r"`weight_ih` must have shape \(16, F\)"),
        ("weight_hh", (16, 3), r"\(G\*H, H\).*weight_hh.shape=\(16, 3\)"),
        ("bias_ih", (12,), r"`bias_ih` must have shape \(16,\)"),
        ("bias_hh", (16, 1), r"bias_hh.shape=\(16, 1\)"),
    ],
)
def test_bad_torch_shapes(name, shape, message):
    params = {
        "weight_ih": np.zeros((16, 3)),
        "weight_hh": np.zeros((16, 4)),
        "bias_ih": np.zeros(16),
        "bias_hh": np.zeros(16),
    }
    params[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=message):
        layouts.torch_to_keras("lstm", **params)


def test_torch_needs_both_biases_or_none():
    with pytest.raises(ValueError, match=r"both `bias_ih` and `bias_hh`.*"
                       r"bias_hh=None"):
        layouts.torch_to_keras(
            "simple_rnn", np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2)
        )


def test_bad_onnx_shapes():
    with pytest.raises(ValueError, match=r"`B` must have shape \(18,\)"):
        layouts.onnx_to_keras("gru", np.zeros((9, 2)), np.zeros((9, 3)),
                              np.zeros(9))
    with pytest.raises(ValueError, match=r"`W` must have shape \(9, F\)"):
        layouts.onnx_to_keras("gru", np.zeros((3, 2)), np.zeros((9, 3)))


# Whole layers: PyTorch state dicts.


def layer_configs():
    for index, cell_type in enumerate(CELL_TYPES * 2):
        rng = np.random.default_rng(index)
        yield pytest.param(
            cell_type,
            int(rng.integers(1, 4)),
            bool(index % 2),
            index != 2,
            index,
            id=f"{cell_type}-{index}",
        )


def random_layer(cell_type, num_layers, bidirectional, use_bias, seed,
                 **kwargs):
    """A built kerasrnn layer with random (non-default) weights."""
    rng = np.random.default_rng(seed)
    layer = LAYERS[cell_type](
        int(rng.integers(1, 5)),
        num_layers=num_layers,
        bidirectional=bidirectional,
        use_bias=use_bias,
        **kwargs,
    )
    layer.build((None, None, int(rng.integers(1, 5))))
    layer.set_weights(
        [rng.normal(size=w.shape).astype("float32")
         for w in layer.get_weights()]
    )
    return layer


def fresh_copy(layer):
    return type(layer).from_config(layer.get_config())


@pytest.mark.parametrize(
    "cell_type, num_layers, bidirectional, use_bias, seed", layer_configs()
)
def test_state_dict_round_trip(cell_type, num_layers, bidirectional,
                               use_bias, seed):
    layer = random_layer(cell_type, num_layers, bidirectional, use_bias, seed)
    state_dict = transfer.to_torch_state_dict(layer)
    names = ["weight_ih", "weight_hh"] + (
        ["bias_ih", "bias_hh"] if use_bias else []
    )
    suffixes = ["", "_reverse"] if bidirectional else [""]
    assert list(state_dict) == [
        f"{name}_l{k}{suffix}"
        for k in range(num_layers)
        for suffix in suffixes
        for name in names
    ]
    copy = fresh_copy(layer)
    assert not copy.built
    transfer.load_torch_state_dict(copy, state_dict)
    assert copy.built
    for ours, theirs in zip(copy.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_state_dict_missing_and_unexpected_keys():
    layer = random_layer("lstm", 2, True, True, 0)
    state_dict = transfer.to_torch_state_dict(layer)
    del state_dict["bias_hh_l1_reverse"]
    state_dict["weight_hr_l0"] = np.zeros((2, 2))
    with pytest.raises(ValueError) as error:
        transfer.load_torch_state_dict(fresh_copy(layer), state_dict)
    message = str(error.value)
    assert "Missing keys: ['bias_hh_l1_reverse']" in message
    assert "Unexpected keys: ['weight_hr_l0']" in message
    assert "proj_size" in message


def test_state_dict_from_another_structure():
    deep = transfer.to_torch_state_dict(random_layer("gru", 3, False, True, 0))
    with pytest.raises(ValueError) as error:
        transfer.load_torch_state_dict(
            LAYERS["gru"](4, num_layers=2, bidirectional=True), deep
        )
    message = str(error.value)
    assert "Missing keys: ['weight_ih_l0_reverse'" in message
    assert "'weight_ih_l2'" in message
    assert "holds 3 layer(s); the layer has num_layers=2" in message
    assert "not bidirectional; the layer has bidirectional=True" in message
    no_bias = LAYERS["gru"](4, num_layers=3, use_bias=False)
    with pytest.raises(ValueError, match=r"use_bias=False\)\.\nUnexpected "
                       r"keys: \['bias_hh_l0'"):
        transfer.load_torch_state_dict(no_bias, deep)


def test_state_dict_wrong_shapes_leave_the_layer_unchanged():
    layer = random_layer("lstm", 2, False, True, 3)
    before = layer.get_weights()
    state_dict = transfer.to_torch_state_dict(layer)
    state_dict["weight_ih_l1"] = np.zeros((5, 5), "float32")
    state_dict["bias_ih_l0"] = np.ones(3, "float32")
    state_dict["weight_hh_l0"] *= 0
    with pytest.raises(ValueError) as error:
        transfer.load_torch_state_dict(layer, state_dict)
    message = str(error.value)
    units = layer.units
    assert f"weight_ih_l1: expected ({4 * units}, {units}), received (5, 5)" \
        in message
    assert f"bias_ih_l0: expected ({4 * units},), received (3,)" in message
    assert "weight_hh_l0" not in message
    for ours, theirs in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(ours, theirs)


def test_state_dict_wrong_shapes_leave_an_unbuilt_layer_unbuilt():
    layer = random_layer("gru", 2, True, True, 4)
    state_dict = transfer.to_torch_state_dict(layer)
    state_dict["weight_ih_l0"] = state_dict["weight_ih_l0"][0]
    copy = fresh_copy(layer)
    expected = (
        rf"weight_ih_l0: expected \({3 * layer.units}, input_size\), "
        rf"received \({state_dict['weight_ih_l0'].size},\)"
    )
    with pytest.raises(ValueError, match=expected):
        transfer.load_torch_state_dict(copy, state_dict)
    assert not copy.built


def test_state_dict_refuses_torch_incompatible_layers():
    with pytest.raises(ValueError, match="reset_after=False has no PyTorch"):
        transfer.to_torch_state_dict(
            random_layer("gru", 1, False, True, 0, reset_after=False)
        )
    with pytest.raises(ValueError, match="merge_mode='sum'"):
        transfer.load_torch_state_dict(
            LAYERS["lstm"](3, num_layers=2, bidirectional=True,
                           merge_mode="sum"),
            {},
        )
    with pytest.raises(TypeError, match="kerasrnn SimpleRNN, LSTM or GRU"):
        transfer.to_torch_state_dict(keras.layers.LSTM(3))
    with pytest.raises(ValueError, match="no weights yet"):
        transfer.to_torch_state_dict(LAYERS["lstm"](3))


# Whole layers: Keras built-in layers.


def keras_configs():
    for index, cell_type in enumerate(CELL_TYPES * 2):
        yield pytest.param(cell_type, index >= 3, index, id=f"{cell_type}-"
                           f"{'bi' if index >= 3 else 'uni'}")


@pytest.mark.parametrize("cell_type, bidirectional, seed", keras_configs())
def test_load_keras_weights_matches_keras(cell_type, bidirectional, seed):
    rng = np.random.default_rng(seed)
    units, features = (int(n) for n in rng.integers(1, 6, size=2))
    kwargs = {"use_bias": seed != 1}
    if cell_type == "gru":
        kwargs["reset_after"] = bool(seed % 2)
    reference = KERAS_LAYERS[cell_type](
        units, return_sequences=True, return_state=True, **kwargs
    )
    if bidirectional:
        reference = keras.layers.Bidirectional(reference)
    x = rng.normal(size=(3, 5, features)).astype("float32")
    reference(x)
    reference.set_weights(
        [rng.normal(size=w.shape).astype("float32")
         for w in reference.get_weights()]
    )
    layer = LAYERS[cell_type](
        units, return_sequences=True, return_state=True,
        bidirectional=bidirectional, **kwargs,
    )
    transfer.load_keras_weights(layer, reference)
    for ours, theirs in zip(layer(x), reference(x)):
        np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0)


def test_load_keras_weights_errors():
    x = np.zeros((2, 3, 4), "float32")
    keras_lstm = keras.layers.LSTM(5)
    keras_lstm(x)
    with pytest.raises(TypeError, match=r"kerasrnn GRU; it loads "
                       r"keras.layers.GRU.*Received: LSTM"):
        transfer.load_keras_weights(LAYERS["gru"](5), keras_lstm)
    unbuilt = LAYERS["lstm"](6)
    with pytest.raises(ValueError, match=r"units: 5 in Keras, 6 here"):
        transfer.load_keras_weights(unbuilt, keras_lstm)
    assert not unbuilt.built
    with pytest.raises(ValueError, match=r"needs num_layers=1, "
                       r"bidirectional=False"):
        transfer.load_keras_weights(
            LAYERS["lstm"](5, bidirectional=True), keras_lstm
        )
    with pytest.raises(ValueError, match=r"needs num_layers=1"):
        transfer.load_keras_weights(LAYERS["lstm"](5, num_layers=2),
                                    keras_lstm)
    with pytest.raises(ValueError, match="has no weights yet"):
        transfer.load_keras_weights(LAYERS["lstm"](5), keras.layers.LSTM(5))
    keras_gru = keras.layers.Bidirectional(
        keras.layers.GRU(5, reset_after=False)
    )
    keras_gru(x)
    with pytest.raises(ValueError, match=r"reset_after: False in Keras, "
                       r"True here") as error:
        transfer.load_keras_weights(
            LAYERS["gru"](5, bidirectional=True, activation="relu"), keras_gru
        )
    assert "activation: 'tanh' in Keras, 'relu' here" in str(error.value)
    built = LAYERS["lstm"](5)
    built.build((None, None, 3))
    with pytest.raises(ValueError, match=r"kernel shape: \(4, 20\) in "
                       r"Keras, \(3, 20\) here"):
        transfer.load_keras_weights(built, keras_lstm)


# Whole layers: ONNX weights.


@pytest.mark.parametrize(
    "cell_type, num_layers, bidirectional, use_bias, seed", layer_configs()
)
def test_to_onnx_weights_stacks_directions(cell_type, num_layers,
                                           bidirectional, use_bias, seed):
    layer = random_layer(cell_type, num_layers, bidirectional, use_bias, seed)
    per_layer = transfer.to_onnx_weights(layer)
    directions = 2 if bidirectional else 1
    assert len(per_layer) == num_layers
    weights = layer.get_weights()
    per_cell = 3 if use_bias else 2
    for k, (W, R, B) in enumerate(per_layer):
        gates = GATES[cell_type] * layer.units
        assert W.shape[:2] == R.shape[:2] == (directions, gates)
        assert B.shape == (directions, 2 * gates)
        for d in range(directions):
            start = (k * directions + d) * per_cell
            cell = weights[start:start + per_cell]
            expected = layouts.keras_to_onnx(
                cell_type, *cell, *([None] if not use_bias else [])
            )
            for ours, theirs in zip((W[d], R[d], B[d]), expected):
                np.testing.assert_array_equal(ours, theirs)
