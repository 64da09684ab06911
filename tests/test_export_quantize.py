"""Int8 dynamic quantization: which nodes become int8, and the reported
change in outputs and accuracy."""

import json

import keras
import numpy as np
import onnxruntime
import pytest

import kerasrnn
from kerasrnn.export import quantize_onnx
from kerasrnn.export import to_onnx


def classifier(cell, units=32):
    ids = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 16, mask_zero=True)(ids)
    x = cell(units, bidirectional=True)(x)
    return keras.Model(ids, keras.layers.Dense(4, name="logits")(x))


def test_lstm_becomes_dynamic_quantize_lstm(tmp_path):
    keras.utils.set_random_seed(0)
    model = classifier(kerasrnn.LSTM)
    to_onnx(model, tmp_path)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, size=(40, 12)).astype("int32")
    ids[:, 8:] = 0
    labels = np.asarray(model(ids)).argmax(-1)
    report = quantize_onnx(tmp_path, feeds={"tokens": ids}, labels=labels)
    assert report["ops"].get("DynamicQuantizeLSTM") == 1
    assert "LSTM" not in report["ops"]
    assert report["ops"].get("MatMulInteger") == 1
    assert report["bytes_int8"] < 0.5 * report["bytes_float32"]
    change = report["outputs"]["logits"]
    assert 0 < change["max_abs_change"] < 0.05
    # Labels are the float model's own predictions: its accuracy is 1.
    assert report["accuracy_float32"] == 1.0
    assert report["accuracy_int8"] >= 0.9
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["quantized"] == report
    # The quantized model runs on its own and stays close to the float one.
    session = onnxruntime.InferenceSession(
        str(tmp_path / "model.int8.onnx"), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(None, {"tokens": ids})
    np.testing.assert_allclose(logits, np.asarray(model(ids)), atol=0.05)


@pytest.mark.parametrize("cell, op", [(kerasrnn.GRU, "GRU"),
                                      (kerasrnn.SimpleRNN, "RNN")])
def test_gru_and_rnn_stay_float(tmp_path, cell, op):
    # onnxruntime has no int8 GRU/RNN kernel: only the Dense is quantized.
    to_onnx(classifier(cell, units=8), tmp_path)
    report = quantize_onnx(tmp_path)
    assert report["ops"][op] == 1
    assert report["ops"].get("MatMulInteger") == 1
    assert report["outputs"]["logits"]["max_abs_change"] < 0.05
