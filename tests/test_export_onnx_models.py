"""ONNX export of whole models: the layers around the recurrent ones, the
mask paths Keras takes, names and axes, the manifest, and bad input.

Every model is compared with Keras on data whose padding holds large
values, at 1e-5 (1e-4 where a softmax or normalisation is in the path).
"""

import json

import keras
import numpy as np
import onnx
import onnxruntime
import pytest

import parity

import kerasrnn
from kerasrnn.export import build_onnx
from kerasrnn.export import to_onnx
from kerasrnn.export.onnx import call_model
from kerasrnn.export.onnx import check_parity

ATOL = 1e-5
RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_rng():
    """The same data for a test whatever ran before it on its worker."""
    global RNG
    RNG = np.random.default_rng(0)


def session(model_proto):
    return onnxruntime.InferenceSession(
        model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def assert_parity(model, feeds, atol=ATOL, rtol=0):
    """Converts ``model``, checks there is no loop, compares every output;
    returns the ONNX model and manifest."""
    model_proto, manifest = build_onnx(model)
    assert not {"Loop", "Scan", "If"} & set(manifest["ops"])
    expected = call_model(model, [feeds[t.name] for t in model.inputs])
    received = session(model_proto).run(None, feeds)
    assert len(received) == len(expected)
    for entry, ours, theirs in zip(manifest["outputs"], received, expected):
        theirs = np.asarray(theirs)
        assert ours.shape == theirs.shape, entry["name"]
        np.testing.assert_allclose(ours, theirs, atol=atol, rtol=rtol,
                                   err_msg=entry["name"])
    return model_proto, manifest


def tokens(batch=4, steps=7, vocabulary=20, lengths=None):
    """Right-padded token ids; row lengths ``lengths`` (default: full, 1,
    then random)."""
    if lengths is None:
        lengths = RNG.integers(1, steps + 1, size=batch)
        lengths[0], lengths[1] = steps, 1
    ids = RNG.integers(1, vocabulary, size=(batch, steps))
    return np.where(np.arange(steps) < np.asarray(lengths)[:, None], ids,
                    0).astype("int32")


def padded_features(batch=4, steps=7, features=3):
    x = RNG.normal(size=(batch, steps, features)).astype("float32")
    lengths = [steps, 1] + list(RNG.integers(1, steps + 1, size=batch - 2))
    for row, length in enumerate(lengths):
        x[row, length:] = 0.0
    return x


def randomize(model, scale=0.5, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([scale * rng.normal(size=w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_embedding_bidirectional_pooling_classifier(mode):
    ids = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 8, mask_zero=True, name="embed")(ids)
    x = keras.layers.Dropout(0.3)(x)
    x = kerasrnn.LSTM(6, bidirectional=True, return_sequences=True)(x)
    x = kerasrnn.SequencePooling(mode)(x)
    x = keras.layers.Dense(3, activation="softmax")(x)
    model = randomize(keras.Model(ids, x))
    feed = tokens()
    feed[2] = 0   # a row of padding only
    _, manifest = assert_parity(model, {"tokens": feed}, atol=1e-4)
    assert manifest["inputs"][0]["padding"] == {
        "kind": "tokens", "value": 0, "layer": "embed"}
    assert manifest["inputs"][0]["vocabulary_size"] == 20
    assert [n["op"] for n in manifest["recurrent_nodes"]] == ["LSTM"]


@pytest.mark.parametrize("cell", [kerasrnn.SimpleRNN, kerasrnn.GRU])
def test_masking_residual_stack_last_output(cell):
    # residual + return_sequences=False: the last *valid* step is picked.
    x = keras.Input((None, 5), name="features")
    y = keras.layers.Masking(0.0)(x)
    y = keras.layers.Dense(6)(y)
    y = cell(6, num_layers=3, residual=True, inter_layer_dropout=0.2)(y)
    model = randomize(keras.Model(x, y))
    _, manifest = assert_parity(model, {"features": padded_features(
        features=5)})
    assert manifest["inputs"][0]["padding"]["kind"] == "steps"
    assert len(manifest["recurrent_nodes"]) == 3


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_rnn_and_bidirectional_merge_modes(merge_mode, return_sequences):
    x = keras.Input((None, 3), name="x")
    y = keras.layers.Masking(0.0)(x)
    layer = kerasrnn.Bidirectional(
        kerasrnn.RNN(kerasrnn.GRUCell(5, reset_after=False),
                     return_sequences=return_sequences, return_state=True),
        merge_mode=merge_mode,
    )
    model = randomize(keras.Model(x, layer(y)))
    model_proto, _ = assert_parity(model, {"x": padded_features()})
    assert [n.op_type for n in model_proto.graph.node].count("GRU") == 1


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_of_a_go_backwards_layer(merge_mode):
    # The wrapped layer runs backwards: its copy runs forwards, and ONNX
    # still holds the forward-processing direction first.
    x = keras.Input((None, 3), name="x")
    y = keras.layers.Masking(0.0)(x)
    layer = kerasrnn.Bidirectional(
        kerasrnn.RNN(kerasrnn.LSTMCell(4), go_backwards=True,
                     return_sequences=True, return_state=True),
        merge_mode=merge_mode,
    )
    model = randomize(keras.Model(x, layer(y)))
    model_proto, _ = assert_parity(model, {"x": padded_features()})
    assert [n.op_type for n in model_proto.graph.node].count("LSTM") == 1


def test_go_backwards_rnn_keeps_keras_output_order():
    x = keras.Input((None, 3), name="x")
    y = keras.layers.Masking(0.0)(x)
    out = kerasrnn.RNN(kerasrnn.LSTMCell(4), go_backwards=True,
                       return_sequences=True)(y)
    out = kerasrnn.RNN(kerasrnn.SimpleRNNCell(4), return_sequences=True)(out)
    model = randomize(keras.Model(x, out))
    model_proto, _ = assert_parity(model, {"x": padded_features()})
    directions = [a.s for n in model_proto.graph.node
                  for a in n.attribute if a.name == "direction"]
    assert directions == [b"reverse", b"forward"]


def test_bidirectional_of_stack_with_pytorch_states():
    x = keras.Input((None, 3), name="x")
    h = keras.Input(batch_shape=(1, None, 4), name="h")
    c = keras.Input(batch_shape=(1, None, 4), name="c")
    layer = kerasrnn.Bidirectional(kerasrnn.LSTM(
        4, return_sequences=True, return_state=True,
        state_layout="pytorch"))
    model = randomize(keras.Model([x, h, c],
                                  layer(x, initial_state=[h, c, h, c])))
    feeds = {"x": RNG.normal(size=(3, 5, 3)).astype("float32"),
             "h": RNG.normal(size=(1, 3, 4)).astype("float32"),
             "c": RNG.normal(size=(1, 3, 4)).astype("float32")}
    _, manifest = assert_parity(model, feeds)
    assert manifest["inputs"][1]["shape"] == [1, "batch", 4]
    assert manifest["inputs"][1]["batch_axis"] == 1


def test_stack_with_pytorch_state_layout_and_explicit_mask():
    x = keras.Input((None, 3), name="x")
    mask = keras.Input((None,), dtype="bool", name="mask")
    h = keras.Input(batch_shape=(4, None, 5), name="h0")
    layer = kerasrnn.GRU(5, num_layers=2, bidirectional=True,
                         merge_mode="ave", return_sequences=True,
                         return_state=True, state_layout="pytorch")
    model = randomize(keras.Model([x, mask, h],
                                  layer(x, initial_state=[h], mask=mask)))
    lengths = np.array([6, 0, 2, 4])
    feeds = {"x": RNG.normal(size=(3, 6, 3)).astype("float32"),
             "mask": np.arange(6)[None, :] < lengths[:3, None],
             "h0": RNG.normal(size=(4, 3, 5)).astype("float32")}
    _, manifest = assert_parity(model, feeds)
    assert manifest["inputs"][1]["padding"] == {"kind": "mask"}


@pytest.mark.parametrize("cell, arguments", [
    (kerasrnn.SimpleRNN, {"activation": "relu"}),
    (kerasrnn.SimpleRNN, {"activation": "softsign"}),
    (kerasrnn.LSTM, {"recurrent_activation": "hard_sigmoid"}),
    (kerasrnn.LSTM, {"activation": "relu", "use_bias": False}),
    (kerasrnn.GRU, {"activation": "softplus", "recurrent_activation":
                    "hard_sigmoid"}),
    (kerasrnn.GRU, {"activation": "elu", "reset_after": False}),
    (kerasrnn.SimpleRNN, {"activation": "linear"}),
])
def test_recurrent_activations(cell, arguments):
    x = keras.Input((None, 3), name="x")
    y = cell(4, bidirectional=True, return_sequences=True, **arguments)(x)
    model = randomize(keras.Model(x, y), scale=0.3)
    assert_parity(model, {"x": RNG.normal(size=(3, 6, 3)).astype(
        "float32")})


@pytest.mark.parametrize("activation", [
    "linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "elu",
    "selu", "softplus", "softsign", "exponential", "hard_sigmoid",
    "leaky_relu", "relu6", "silu", "hard_silu", "mish", "gelu",
])
def test_dense_activations(activation):
    x = keras.Input((None, 4), name="x")
    y = keras.layers.Dense(5, activation=activation)(x)
    model = randomize(keras.Model(x, y), scale=1.0)
    # rtol: exponential reaches ~1e2 here, where float32 steps are ~1e-5.
    assert_parity(model, {"x": RNG.normal(size=(2, 3, 4)).astype(
        "float32")}, atol=1e-5, rtol=1e-6)


def test_glue_layers_and_merged_masks():
    ids = keras.Input((None,), dtype="int32", name="tokens")
    features = keras.Input((None, 4), name="features")
    embedded = keras.layers.Embedding(30, 4, mask_zero=True)(ids)
    # Concatenate with an unmasked input: Keras ORs in an all-True mask.
    joined = keras.layers.Concatenate()([embedded, features])
    normed = keras.layers.LayerNormalization()(joined)
    batch_norm = keras.layers.BatchNormalization()
    batched = batch_norm(normed)
    encoded = kerasrnn.GRU(6, return_sequences=True)(batched)
    projected = keras.layers.Dense(6)(embedded)
    merged = [layer()([encoded, projected]) for layer in (
        keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
        keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum)]
    activated = [
        keras.layers.ReLU(max_value=0.5, negative_slope=0.1)(merged[0]),
        keras.layers.LeakyReLU(0.3)(merged[1]),
        keras.layers.Activation("tanh")(merged[2]),
        keras.layers.GaussianNoise(1.0)(merged[3]),
        keras.layers.SpatialDropout1D(0.5)(merged[4]),
        keras.layers.Identity()(merged[5]),
    ]
    pooled = [keras.layers.GlobalAveragePooling1D()(a) for a in activated]
    pooled.append(keras.layers.GlobalMaxPooling1D()(activated[0]))
    pooled.append(kerasrnn.SequencePooling("max")(activated[1]))
    logits = keras.layers.Dense(3)(keras.layers.Concatenate()(pooled))
    probabilities = keras.layers.Softmax()(logits)
    model = randomize(keras.Model([ids, features],
                                  {"probabilities": probabilities,
                                   "logits": logits}), scale=0.3)
    variance = batch_norm.moving_variance
    variance.assign(np.abs(np.asarray(variance)) + 0.5)
    feeds = {"tokens": tokens(steps=6, vocabulary=30),
             "features": RNG.normal(size=(4, 6, 4)).astype("float32")}
    _, manifest = assert_parity(model, feeds, atol=1e-4)
    assert [o["name"] for o in manifest["outputs"]] == ["logits",
                                                        "probabilities"]


def test_nested_sequential_encoder():
    encoder = keras.Sequential([
        keras.Input((None, 3)),
        keras.layers.Masking(0.0),
        kerasrnn.LSTM(5, return_sequences=True),
        kerasrnn.SimpleRNN(5),
    ], name="encoder")
    x = keras.Input((None, 3), name="x")
    model = randomize(keras.Model(x, keras.layers.Dense(2)(encoder(x))))
    assert_parity(model, {"x": padded_features()})


def test_sequential_model_names_and_axes():
    model = randomize(keras.Sequential([
        keras.Input((None,), dtype="int32", name="ids"),
        keras.layers.Embedding(12, 4, mask_zero=True),
        kerasrnn.GRU(4, return_sequences=True),
        keras.layers.Dense(2, name="scores"),
    ], name="tagger"))
    model_proto, manifest = assert_parity(model, {"ids": tokens(
        vocabulary=12)})
    assert model_proto.opset_import[0].version == 17
    assert model_proto.ir_version == 8
    graph = model_proto.graph
    assert graph.name == "tagger"
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (graph.input[0], graph.output[0])]
    assert dims == [["batch", "time"], ["batch", 0, 2]]   # 0: unknown
    assert manifest["outputs"][0]["name"] == "scores"
    assert manifest["inputs"][0]["time_axis"] == 1


def test_initial_state_from_a_dense_bridge_and_output_names():
    context = keras.Input((7,), name="context")
    x = keras.Input((None, 3), name="x")
    h = keras.layers.Dense(4, activation="tanh")(context)
    c = keras.layers.Dense(4)(context)
    out, h_n, c_n = kerasrnn.LSTM(4, return_state=True)(
        x, initial_state=[h, c])
    model = randomize(keras.Model([x, context], [out, h_n, c_n]))
    model_proto, _ = build_onnx(
        model, output_names=["output", "h_n", "c_n"])
    assert [o.name for o in model_proto.graph.output] == ["output", "h_n",
                                                          "c_n"]
    feeds = {"x": RNG.normal(size=(2, 5, 3)).astype("float32"),
             "context": RNG.normal(size=(2, 7)).astype("float32")}
    expected = call_model(model, [feeds["x"], feeds["context"]])
    for ours, theirs in zip(session(model_proto).run(None, feeds), expected):
        np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0)


def test_initial_state_call_runs_unmasked_as_keras():
    # Keras 3 passes no implicit mask along with initial_state; the export
    # follows (the outputs still carry the mask downstream).
    x = keras.Input((None, 3), name="x")
    h = keras.Input((4,), name="h")
    y = keras.layers.Masking(0.0)(x)
    out = kerasrnn.GRU(4, return_sequences=True)(y, initial_state=[h])
    out = kerasrnn.SequencePooling("mean")(out)
    model = randomize(keras.Model([x, h], out))
    assert_parity(model, {"x": padded_features(),
                          "h": RNG.normal(size=(4, 4)).astype("float32")})


def test_mask_not_right_padded_fails_in_onnxruntime():
    ids = keras.Input((None,), dtype="int32", name="tokens")
    y = kerasrnn.LSTM(3)(keras.layers.Embedding(9, 3, mask_zero=True)(ids))
    model_proto, _ = build_onnx(keras.Model(ids, y))
    run = session(model_proto).run
    for fine in ([[1, 2, 0, 0], [0, 0, 0, 0]], [[5]], [[0]], [[3], [0]]):
        run(None, {"tokens": np.array(fine, "int32")})
    for wrong in ([[1, 0, 2, 0]], [[1, 2, 3], [0, 0, 4]], [[0, 1]]):
        with pytest.raises(Exception, match="not right-padded"):
            run(None, {"tokens": np.array(wrong, "int32")})


def test_to_onnx_writes_model_and_manifest(tmp_path):
    ids = keras.Input((None,), dtype="int32", name="tokens")
    y = kerasrnn.GRU(4, bidirectional=True)(
        keras.layers.Embedding(9, 3, mask_zero=True)(ids))
    model = keras.Model(ids, keras.layers.Dense(2, name="logits")(y))
    manifest = to_onnx(model, tmp_path / "export")
    onnx.checker.check_model(str(tmp_path / "export" / "model.onnx"))
    written = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert written == manifest
    assert manifest["format"] == "kerasrnn-onnx"
    assert manifest["parity"]["max_abs_error"] <= ATOL
    assert manifest["ops"]["GRU"] == 1
    assert manifest["recurrent_nodes"][0]["direction"] == "bidirectional"
    assert manifest["inputs"][0]["shape"] == ["batch", "time"]
    assert manifest["outputs"][0] == {
        "name": "logits", "dtype": "float32", "shape": ["batch", 2],
        "batch_axis": 0, "time_axis": None}


def test_parity_check_catches_a_wrong_export():
    x = keras.Input((None, 3), name="x")
    model = randomize(keras.Model(x, kerasrnn.LSTM(4)(x)))
    model_proto, manifest = build_onnx(model)
    check_parity(model, model_proto, manifest)
    # Swap two gate blocks of W, as a wrong layout would.
    weights = next(i for i in model_proto.graph.initializer
                   if i.name.endswith("/W"))
    array = onnx.numpy_helper.to_array(weights).copy()
    array[:, :4], array[:, 4:8] = array[:, 4:8].copy(), array[:, :4].copy()
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    with pytest.raises(RuntimeError, match="differs from Keras"):
        check_parity(model, model_proto, manifest)


def test_unsupported_layer_is_named_with_the_supported_ones():
    x = keras.Input((None, 3), name="x")
    y = keras.layers.Conv1D(4, 2, name="my_conv")(x)
    model = keras.Model(x, kerasrnn.GRU(3)(y))
    with pytest.raises(ValueError, match="'my_conv' \\(Conv1D\\)") as error:
        build_onnx(model)
    assert "kerasrnn.LSTM" in str(error.value)
    assert "keras.Embedding" in str(error.value)


def test_keras_builtin_lstm_is_refused_by_name():
    x = keras.Input((None, 3), name="x")
    model = keras.Model(x, keras.layers.LSTM(3, name="builtin")(x))
    with pytest.raises(ValueError, match="'builtin' \\(LSTM\\)"):
        build_onnx(model)


def test_stateful_layer_is_refused():
    x = keras.Input(batch_shape=(2, None, 3), name="x")
    model = keras.Model(x, kerasrnn.LSTM(3, stateful=True, name="s")(x))
    with pytest.raises(ValueError, match="'s' is stateful"):
        build_onnx(model)


def test_cell_subclass_is_refused():
    class Custom(kerasrnn.LSTMCell):
        pass

    x = keras.Input((None, 3), name="x")
    model = keras.Model(x, kerasrnn.RNN(Custom(3), name="custom")(x))
    with pytest.raises(TypeError, match="runs a Custom"):
        build_onnx(model)


def test_unsupported_activation_is_named():
    x = keras.Input((None, 3), name="x")
    layer = kerasrnn.SimpleRNN(3, activation="gelu", name="odd")
    with pytest.raises(ValueError, match="'odd'.*'gelu'"):
        build_onnx(keras.Model(x, layer(x)))


def test_float64_input_is_refused():
    x = keras.Input((None, 3), dtype="float64", name="x")
    with pytest.raises(ValueError, match="float64"):
        build_onnx(keras.Model(x, kerasrnn.GRU(2)(x)))


def test_subclassed_model_is_refused():
    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.rnn = kerasrnn.GRU(2)

        def call(self, x):
            return self.rnn(x)

    model = Model()
    model(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match="no symbolic graph"):
        build_onnx(model)


def test_model_loaded_from_a_keras_file(tmp_path):
    # A loaded model computes its masks with explicit keras.ops nodes.
    ids = keras.Input((None,), dtype="int32", name="tokens")
    features = keras.Input((None, 3), name="features")
    embedded = keras.layers.Embedding(11, 4, mask_zero=True)(ids)
    masked = keras.layers.Masking(0.0)(features)
    x = keras.layers.Concatenate()([embedded, masked])
    x = kerasrnn.LSTM(5, return_sequences=True, bidirectional=True,
                      merge_mode="sum")(x)
    x = keras.layers.Multiply()([x, keras.layers.Dense(5)(embedded)])
    model = randomize(keras.Model(
        [ids, features], kerasrnn.SequencePooling("last")(x)))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    feeds = {"tokens": tokens(steps=6, vocabulary=11),
             "features": padded_features(steps=6)}
    _, manifest = assert_parity(loaded, feeds)
    assert {"NotEqual", "Any"} & {o.__class__.__name__
                                  for o in loaded.operations}
    assert manifest["inputs"][0]["padding"]["kind"] == "tokens"
    np.testing.assert_allclose(
        session(build_onnx(model)[0]).run(None, feeds)[0],
        np.asarray(call_model(model, [feeds["tokens"],
                                      feeds["features"]])[0]),
        atol=ATOL)


def test_explicit_mask_from_keras_ops():
    ids = keras.Input((None,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(11, 4)(ids)   # no mask_zero
    mask = keras.ops.logical_not(keras.ops.equal(ids, 0))
    x = kerasrnn.GRU(4)(embedded, mask=mask)
    model = randomize(keras.Model(ids, x))
    assert_parity(model, {"tokens": tokens(vocabulary=11)})
    bad = keras.ops.greater(ids, 3)
    with pytest.raises(ValueError, match=r"op '.*' \(Greater\)"):
        build_onnx(keras.Model(ids, kerasrnn.GRU(4)(embedded, mask=bad)))


def test_mixed_precision_model_exports_as_float32(tmp_path):
    """A mixed_float16 model keeps float32 variables: the graph is written
    in float32 from them and equals the model's float32 twin to 1e-5."""
    import onnxruntime

    from kerasrnn.export import precision

    keras.config.set_dtype_policy("mixed_float16")
    try:
        ids = keras.Input((None,), dtype="int32", name="tokens")
        x = keras.layers.Embedding(11, 8, mask_zero=True)(ids)
        x = kerasrnn.GRU(6, bidirectional=True, return_sequences=True)(x)
        x = kerasrnn.LSTM(5)(x)
        model = keras.Model(ids, keras.layers.Dense(3)(x))
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.layers[1].compute_dtype == "float16"
    manifest = to_onnx(model, tmp_path)
    assert manifest["precision"]["source_dtype_policies"] == [
        "mixed_float16"]
    assert manifest["precision"]["max_abs_difference_to_source"] < 1e-2
    tokens = np.array([[3, 4, 5, 6], [7, 8, 0, 0]], "int32")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    (got,) = session.run(None, {"tokens": tokens})
    assert got.dtype == np.float32
    twin = precision.float32_twin(model)
    assert {layer.compute_dtype for layer in twin.layers[1:]} == {"float32"}
    expected = np.asarray(twin(tokens))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    parity.record("exported models in onnxruntime", got, expected)
    np.testing.assert_allclose(got, np.asarray(model(tokens), "float32"),
                               atol=1e-2)


def test_unnamed_inputs_get_stable_names(tmp_path):
    """An input Keras named itself (keras_tensor_N, N depending on the
    process) is exported as 'inputs'."""
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(9, 4, mask_zero=True),
        kerasrnn.LSTM(3),
    ])
    assert model.inputs[0].name.startswith("keras_tensor")
    manifest = to_onnx(model, tmp_path)
    assert [entry["name"] for entry in manifest["inputs"]] == ["inputs"]
