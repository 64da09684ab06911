"""The export command lines on a saved ``.keras`` model: the console
scripts ``[project.scripts]`` installs next to the interpreter."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

import kerasrnn
import kerasrnn_serving as serving

BIN = pathlib.Path(sys.executable).parent


def run(command, *args):
    return subprocess.run(
        [str(BIN / command), *map(str, args)],
        capture_output=True, text=True, check=True, env=dict(os.environ),
    )


def test_to_onnx_and_to_saved_model(tmp_path):
    ids = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(11, 4, mask_zero=True)(ids)
    x = kerasrnn.LSTM(5, num_layers=2, return_sequences=True)(x)
    x = kerasrnn.SequencePooling("last")(x)
    model = keras.Model(ids, keras.layers.Dense(2)(x))
    model.save(tmp_path / "model.keras")
    tokens = np.array([[1, 2, 3, 0], [4, 0, 0, 0]], "int32")
    expected = np.asarray(model(tokens))

    result = run("kerasrnn-to-onnx", tmp_path / "model.keras",
                 tmp_path / "onnx", "--output-names", "logits", "--quantize")
    assert '"LSTM": 2' in result.stdout
    assert "parity with Keras: " in result.stdout
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["outputs"][0]["name"] == "logits"
    assert "DynamicQuantizeLSTM" in manifest["quantized"]["ops"]
    outputs = serving.Predictor(tmp_path / "onnx").predict(tokens)
    np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)

    run("kerasrnn-to-saved-model", tmp_path / "model.keras",
        tmp_path / "sm" / "1", "--output-names", "logits")
    function = tf.saved_model.load(str(tmp_path / "sm" / "1")).signatures[
        "serving_default"]
    np.testing.assert_allclose(
        function(tokens=tf.constant(tokens))["logits"].numpy(), expected,
        atol=1e-5)


def test_to_onnx_of_a_saved_seq2seq(tmp_path):
    from kerasrnn.models import Seq2Seq
    from kerasrnn.models import text

    tokens = text.Tokenizer("char")
    tokens.adapt(["0123456789+"])
    model = Seq2Seq(tokens.vocabulary_size, tokens.vocabulary_size,
                    bos_id=tokens.bos_id, eos_id=tokens.eos_id, units=8,
                    attention="luong_dot", source_tokenizer=tokens,
                    target_tokenizer=tokens, max_target_length=6)
    model.save(tmp_path / "adder.keras")
    result = run("kerasrnn-to-onnx", tmp_path / "adder.keras",
                 tmp_path / "onnx")
    assert "encoder.onnx: ops" in result.stdout
    assert "LSTM (forward, hidden 8) for decoder/cell_0" in result.stdout
    assert '"greedy_tokens_identical": true' in result.stdout
    generator = serving.Generator(tmp_path / "onnx")
    expected = model.generate_text(["12+3"])
    assert generator.generate(["12+3"])[0]["text"] == expected[0]
