"""The JSON-over-HTTP server: a real process on a free port, real requests,
bad ones answered 400 without stopping it."""

import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

import kerasrnn
import kerasrnn_serving as serving
from kerasrnn.export import to_onnx

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    keras.utils.set_random_seed(5)
    ids = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(12, 4, mask_zero=True)(ids)
    x = kerasrnn.LSTM(6)(x)
    directory = tmp_path_factory.mktemp("served")
    to_onnx(keras.Model(ids, keras.layers.Dense(2, name="logits")(x)),
            directory)
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasrnn_serving", "serve", str(directory),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        banner = process.stdout.readline()
        address = process.stdout.readline().strip()
        assert "tensorflow imported: False" in banner, banner
        assert address.startswith("serving on http://"), (
            address + process.stderr.read())
        yield address.split()[-1], directory
    finally:
        process.terminate()
        process.wait(timeout=10)


def request(url, payload=None, raw=None):
    data = raw if raw is not None else (
        None if payload is None else json.dumps(payload).encode())
    try:
        with urllib.request.urlopen(urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        ), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_and_metadata(server):
    url, _ = server
    status, body = request(url + "/health")
    assert status == 200 and body["status"] == "ok"
    assert body["provider"] == "CPUExecutionProvider" or "CUDA" in (
        body["provider"])
    status, body = request(url + "/v1/metadata")
    assert status == 200
    assert [entry["name"] for entry in body["inputs"]] == ["tokens"]
    assert [entry["name"] for entry in body["outputs"]] == ["logits"]


def test_predict_equals_predictor_and_survives_bad_requests(server):
    url, directory = server
    tokens = [[3, 4, 5, 0], [7, 0, 0, 0]]
    expected = serving.Predictor(directory).predict(
        np.array(tokens, "int32"))["logits"]
    status, body = request(url + "/v1/predict", {"inputs": {"tokens":
                                                            tokens}})
    assert status == 200
    np.testing.assert_allclose(body["outputs"]["logits"], expected,
                               atol=1e-6)
    bad_requests = [
        (None, b"{not json", "not JSON"),
        ({"tokens": tokens}, None, '"inputs"'),
        ({"inputs": {"tokens": [[1, 0, 2]]}}, None, "right-padded"),
        ({"inputs": {"tokens": [[1.5, 2]]}}, None, "integer ids"),
        ({"inputs": {"tokens": [[1, 99]]}}, None, "token id 99"),
        ({"inputs": {"tokens": [["a"]]}}, None, "must hold numbers"),
        ({"inputs": {"tokens": [[1, 2]]}, "lengths": {"tokens": [5]}},
         None, "outside 0..2"),
    ]
    for payload, raw, message in bad_requests:
        status, body = request(url + "/v1/predict", payload, raw)
        assert status == 400, body
        assert message in body["error"]
    status, body = request(url + "/v1/nothing", {"inputs": {}})
    assert status == 404
    # Ragged rows and a bare list for a one-input model; still serving.
    status, body = request(url + "/v1/predict",
                           {"inputs": [[3, 4, 5], [7]]})
    assert status == 200
    np.testing.assert_allclose(body["outputs"]["logits"], expected,
                               atol=1e-6)
