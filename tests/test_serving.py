"""The TensorFlow-free ``kerasrnn_serving.Predictor``: results, batching,
providers, input checks, the command line, and that it never imports
TensorFlow."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import onnxruntime
import pytest

import kerasrnn
import kerasrnn_serving as serving
from kerasrnn.export import quantize_onnx
from kerasrnn.export import to_onnx
from kerasrnn.export.onnx import call_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
VOCABULARY = 30


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """Tokens (mask_zero) -> BiGRU -> per-step scores and pooled logits."""
    keras.utils.set_random_seed(3)
    ids = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCABULARY, 8, mask_zero=True)(ids)
    x = kerasrnn.GRU(8, bidirectional=True, return_sequences=True)(x)
    model = keras.Model(ids, {
        "scores": keras.layers.Dense(3)(x),
        "logits": keras.layers.Dense(2)(kerasrnn.SequencePooling("mean")(x)),
    })
    directory = tmp_path_factory.mktemp("tagger")
    to_onnx(model, directory)
    return model, directory


@pytest.fixture(scope="module")
def stateful_step(tmp_path_factory):
    """Features + explicit mask + initial state (a decoder-like model)."""
    keras.utils.set_random_seed(4)
    x = keras.Input((None, 3), name="x")
    mask = keras.Input((None,), dtype="bool", name="mask")
    h = keras.Input((5,), name="h")
    out, state = kerasrnn.GRU(5, return_sequences=True, return_state=True)(
        x, initial_state=[h], mask=mask)
    model = keras.Model([x, mask, h], {"y": out, "h_out": state})
    directory = tmp_path_factory.mktemp("step")
    to_onnx(model, directory)
    return model, directory


def padded_tokens(lengths, steps, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCABULARY, size=(len(lengths), steps))
    return np.where(np.arange(steps) < np.asarray(lengths)[:, None], ids,
                    0).astype("int32")


def keras_outputs(model, feeds):
    names = sorted(model.output)
    arrays = [feeds[t.name] for t in model.inputs]
    return dict(zip(names, (np.asarray(v) for v in call_model(model,
                                                             arrays))))


def test_import_and_predict_never_load_tensorflow(tagger):
    _, directory = tagger
    code = (
        "import sys, numpy as np, kerasrnn_serving\n"
        f"p = kerasrnn_serving.Predictor({str(directory)!r})\n"
        "out = p.predict(np.array([[1, 2, 3, 0]], 'int32'))\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'kerasrnn')\n"
        "          if m in sys.modules]\n"
        "print(p.provider, sorted(out), loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
    )
    assert result.stdout.split("\n")[0].endswith("['logits', 'scores'] []")


def test_predictions_equal_keras(tagger):
    model, directory = tagger
    predictor = serving.Predictor(directory)
    ids = padded_tokens([9, 1, 4, 0, 7], 9)
    outputs = predictor.predict({"tokens": ids})
    expected = keras_outputs(model, {"tokens": ids})
    assert sorted(outputs) == ["logits", "scores"]
    for name in outputs:
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-5,
                                   rtol=0)


def test_provider_is_cuda_when_available_else_cpu(tagger):
    predictor = serving.Predictor(tagger[1])
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        assert predictor.provider in ("CUDAExecutionProvider",
                                      "CPUExecutionProvider")
    else:
        assert predictor.provider == "CPUExecutionProvider"
    assert predictor.provider in repr(predictor)
    forced = serving.Predictor(tagger[1],
                               providers=["CPUExecutionProvider"])
    assert forced.provider == "CPUExecutionProvider"


def test_large_requests_run_in_chunks(tagger):
    _, directory = tagger
    rng = np.random.default_rng(1)
    ids = padded_tokens(rng.integers(0, 12, size=23), 12, seed=1)
    whole = serving.Predictor(directory, batch_size=64).predict(ids)
    chunked = serving.Predictor(directory, batch_size=5).predict(ids)
    for name in whole:
        assert chunked[name].shape == whole[name].shape
        np.testing.assert_allclose(chunked[name], whole[name], atol=1e-6)


def test_ragged_sequences_and_lengths(tagger):
    _, directory = tagger
    predictor = serving.Predictor(directory)
    ids = padded_tokens([5, 2, 3], 5)
    reference = predictor.predict(ids)
    ragged = predictor.predict([list(row[row > 0]) for row in ids])
    garbage = np.where(ids > 0, ids, 7).astype("int32")
    with_lengths = predictor.predict(garbage, lengths=[5, 2, 3])
    for name in reference:
        np.testing.assert_allclose(ragged[name], reference[name], atol=1e-6)
        np.testing.assert_allclose(with_lengths[name], reference[name],
                                   atol=1e-6)


def test_mask_input_from_lengths_and_states(stateful_step):
    model, directory = stateful_step
    predictor = serving.Predictor(directory)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 3)).astype("float32")
    h = rng.normal(size=(3, 5)).astype("float32")
    lengths = np.array([6, 0, 3])
    mask = np.arange(6) < lengths[:, None]
    expected = keras_outputs(model, {"x": x, "mask": mask, "h": h})
    for outputs in (
        predictor.predict({"x": x, "mask": mask, "h": h}),
        predictor.predict({"x": x, "h": h}, lengths={"mask": lengths}),
    ):
        for name in expected:
            np.testing.assert_allclose(outputs[name], expected[name],
                                       atol=1e-5, rtol=0)


@pytest.mark.parametrize("inputs, lengths, match", [
    ({"tokens": [[1, 0, 2]]}, None,
     r"Input 'tokens', row 0: padding \(token 0\) at step 1 is followed"),
    ({"tokens": np.array([[1.0, 2.0]])}, None,
     r"Input 'tokens' takes integer ids"),
    ({"tokens": [[1, VOCABULARY]]}, None,
     r"Input 'tokens' holds token id 30 .* ids 0..29"),
    ({"tokens": [[-1, 2]]}, None, r"Input 'tokens' holds token id -1"),
    ({"tokens": [1, 2, 3]}, None, r"Input 'tokens' must have rank 2"),
    ({"tokens": np.zeros((0, 3), "int32")}, None,
     r"Input 'tokens' is empty"),
    ({"tokens": [[1, 2, 3]]}, {"tokens": [4]},
     r"`lengths` of input 'tokens': row 0 has length 4, outside 0..3"),
    ({"tokens": [[1, 2, 3]]}, {"tokens": [1, 2]},
     r"`lengths` of input 'tokens' must be 1 integers"),
    ({"tokens": [[1, 0, 3]]}, {"tokens": [3]},
     r"Input 'tokens', row 0: .*With `lengths`"),
    ({"words": [[1]]}, None, r"Unknown input\(s\) \['words'\]"),
])
def test_bad_token_inputs_are_named(tagger, inputs, lengths, match):
    predictor = serving.Predictor(tagger[1])
    with pytest.raises(serving.InputError, match=match):
        predictor.predict(inputs, lengths)


def test_bad_feature_inputs_are_named(stateful_step):
    predictor = serving.Predictor(stateful_step[1])
    x = np.zeros((2, 4, 3), "float32")
    h = np.zeros((2, 5), "float32")
    mask = np.ones((2, 4), bool)
    cases = [
        ({"x": np.full_like(x, np.nan), "mask": mask, "h": h},
         "Input 'x' is all NaN"),
        ({"x": np.where(np.eye(4, 3) > 0, np.inf, x), "mask": mask, "h": h},
         (r"Input 'x' holds 6 NaN or infinite value\(s\), the first at "
          r"index \(0, 0, 0\)")),
        ({"x": x.astype("int64"), "mask": mask, "h": h},
         r"Input 'x' takes floating-point features"),
        ({"x": np.zeros((2, 4, 2), "float32"), "mask": mask, "h": h},
         r"Input 'x' must have size 3 on axis 2"),
        ({"x": x, "mask": mask, "h": np.zeros((3, 5), "float32")},
         r"Input 'h' has batch size 3 but input 'x' has 2"),
        ({"x": x, "mask": mask.astype("float32"), "h": h},
         r"Input 'mask' is a mask"),
        ({"x": x, "mask": np.array([[1, 0, 1, 1], [1] * 4], bool), "h": h},
         r"Input 'mask', row 0: padding \(a False mask entry\) at step 1"),
        ({"x": x, "mask": mask},
         r"Missing input 'h' \(float32 of shape \(batch, 5\)\)"),
    ]
    for inputs, match in cases:
        with pytest.raises(serving.InputError, match=match):
            predictor.predict(inputs)
    with pytest.raises(serving.InputError, match="pass `inputs` as a dict"):
        predictor.predict(x)
    with pytest.raises(serving.InputError, match="not a padded sequence "
                                                 "input"):
        predictor.predict({"x": x, "mask": mask, "h": h},
                          lengths={"x": [1, 2]})


def test_ragged_input_of_an_unmasked_model_is_refused(tmp_path):
    x = keras.Input((None, 2), name="x")
    to_onnx(keras.Model(x, kerasrnn.SimpleRNN(2)(x)), tmp_path)
    predictor = serving.Predictor(tmp_path)
    with pytest.raises(serving.InputError, match="Input 'x' holds "
                                                 "sequences of different"):
        predictor.predict([np.zeros((3, 2)), np.zeros((1, 2))])


def test_quantized_model_and_missing_files(tagger, tmp_path):
    _, directory = tagger
    with pytest.raises(FileNotFoundError, match="No manifest.json"):
        serving.Predictor(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="not a kerasrnn ONNX manifest"):
        serving.Predictor(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        serving.Predictor(directory, batch_size=0)
    ids = padded_tokens([4, 2], 4)
    float_outputs = serving.Predictor(directory).predict(ids)
    quantize_onnx(directory)
    int8_outputs = serving.Predictor(directory, quantized=True).predict(ids)
    for name in float_outputs:
        np.testing.assert_allclose(int8_outputs[name], float_outputs[name],
                                   atol=0.05)


def test_command_line_predict(tagger, tmp_path):
    _, directory = tagger
    ids = padded_tokens([6, 3], 6)
    np.save(tmp_path / "tokens.npy", ids)
    result = subprocess.run(
        [sys.executable, "-m", "kerasrnn_serving", "predict", str(directory),
         "--input", f"tokens={tmp_path / 'tokens.npy'}",
         "--output", str(tmp_path / "out.npz")],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
    )
    assert "tensorflow imported: False" in result.stdout
    saved = np.load(tmp_path / "out.npz")
    expected = serving.Predictor(directory).predict(ids)
    np.testing.assert_allclose(saved["scores"], expected["scores"])
    np.save(tmp_path / "floats.npy", ids.astype("float32"))
    bad = subprocess.run(
        [sys.executable, "-m", "kerasrnn_serving", "predict", str(directory),
         "--input", f"tokens={tmp_path / 'floats.npy'}"],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )
    assert bad.returncode == 2
    assert "Input 'tokens' takes integer ids" in bad.stderr
