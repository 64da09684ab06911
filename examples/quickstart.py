"""Quickstart: train a kerasrnn classifier, export it to ONNX, serve it
without TensorFlow.

Task (built-in data, no download): each example is a variable-length
sequence of tokens 1..9, right-padded with 0. The label says whether the
first token equals the last real token, so the model must carry information
across the whole (variable) length: Embedding(mask_zero=True) feeds the
padding mask to a bidirectional LSTM, whose backward direction starts at
each sequence's last real token.

Steps: train in Keras -> ``kerasrnn.export.to_onnx`` (one native ONNX LSTM
node, the mask as ``sequence_lens``) -> predict in a fresh process with
``python -m kerasrnn_serving predict`` (numpy + onnxruntime only) ->
compare with Keras -> serve it over HTTP (``python -m kerasrnn_serving
serve``) and ask it, a bad request included -> int8 quantization and its
accuracy change.

    python examples/quickstart.py [--epochs 12] [--out artifacts/quickstart]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np

import kerasrnn
from kerasrnn.export import quantize_onnx
from kerasrnn.export import to_onnx

VOCAB = 10          # token 0 is padding
MAX_LENGTH = 20
ROOT = pathlib.Path(__file__).resolve().parents[1]
# Subprocesses run the kerasrnn_serving/ of this checkout, installed or not.
IN_THIS_CHECKOUT = {"cwd": ROOT,
                    "env": {**os.environ, "PYTHONPATH": str(ROOT)}}


def make_data(count, seed):
    """Padded token sequences and labels (first token == last real token)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, MAX_LENGTH + 1, size=count)
    tokens = np.zeros((count, MAX_LENGTH), dtype="int32")
    labels = rng.integers(0, 2, size=count)
    for row, (length, label) in enumerate(zip(lengths, labels)):
        tokens[row, :length] = rng.integers(1, VOCAB, size=length)
        if label:
            tokens[row, length - 1] = tokens[row, 0]
        elif tokens[row, length - 1] == tokens[row, 0]:
            tokens[row, length - 1] = tokens[row, 0] % (VOCAB - 1) + 1
    return tokens, labels.astype("int32")


def build_model():
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="tokens"),
            keras.layers.Embedding(VOCAB, 16, mask_zero=True),
            kerasrnn.LSTM(32, bidirectional=True),
            keras.layers.Dense(2, name="logits"),
        ],
        name="first_equals_last",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", default="artifacts/quickstart")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Train in Keras.
    x_train, y_train = make_data(3000, seed=1)
    x_test, y_test = make_data(1000, seed=2)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs,
              verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"\ntrained {args.epochs} epochs in {seconds:.1f} s; held-out "
          f"accuracy {accuracy:.3f} (chance 0.5)")
    model.save(out / "model.keras")

    # 2. Export: native ONNX operators, checked against Keras on export.
    export_dir = out / "onnx"
    manifest = to_onnx(model, export_dir)
    print(f"\nexported {export_dir / manifest['model_file']}: ops "
          f"{json.dumps(manifest['ops'])}")
    for node in manifest["recurrent_nodes"]:
        print(f"  native {node['op']} node ({node['direction']}) for "
              f"layer '{node['layer']}'")

    # 3. Predict in a fresh process that has only numpy and onnxruntime.
    np.save(out / "test_tokens.npy", x_test)
    predictions = out / "onnx_predictions.npz"
    print(f"\n$ python -m kerasrnn_serving predict {export_dir} ...")
    result = subprocess.run(
        serving_command("predict", export_dir, "--input",
                        f"tokens={out / 'test_tokens.npy'}",
                        "--output", predictions),
        capture_output=True, text=True, check=True, **IN_THIS_CHECKOUT,
    )
    print(result.stdout.rstrip())
    served = np.load(predictions)["logits"]

    # 4. Parity with Keras on the whole held-out set.
    expected = model.predict(x_test, batch_size=256, verbose=0)
    difference = np.abs(served - expected).max()
    same = np.mean(served.argmax(-1) == expected.argmax(-1))
    served_accuracy = np.mean(served.argmax(-1) == y_test)
    print(f"\nonnxruntime vs Keras on {len(x_test)} sequences: max |logit "
          f"difference| {difference:.1e}, same class {same:.1%}; accuracy "
          f"{served_accuracy:.3f}")
    for tokens, label, logits in zip(x_test[:5], y_test, served):
        sequence = " ".join(str(t) for t in tokens if t)
        print(f"  [{sequence}] first==last: {bool(label)!s:5} "
              f"predicted: {bool(logits.argmax())}")

    # 5. Serve over HTTP in another TensorFlow-free process, and ask it.
    ask_server(export_dir, [[3, 1, 4, 1, 5, 9, 2, 6, 3], [2, 7, 1, 8]])

    # 6. Int8 dynamic quantization, and what it costs in accuracy.
    report = quantize_onnx(export_dir, feeds={"tokens": x_test},
                           labels=y_test)
    int8_ops = [op for op in report["ops"] if "Quantize" in op]
    print(f"\nint8: {report['bytes_float32'] / 1e3:.0f} kB -> "
          f"{report['bytes_int8'] / 1e3:.0f} kB ({', '.join(int8_ops)}); "
          f"accuracy {report['accuracy_float32']:.3f} -> "
          f"{report['accuracy_int8']:.3f}")


def serving_command(*arguments):
    """``python -m kerasrnn_serving ...`` in a fresh process: numpy and
    onnxruntime only."""
    return [sys.executable, "-m", "kerasrnn_serving", *map(str, arguments)]


def ask_server(export_dir, sequences):
    """Starts ``python -m kerasrnn_serving serve`` on a free port, posts
    ragged token sequences and a malformed request, prints the answers,
    stops it."""
    print(f"\n$ python -m kerasrnn_serving serve {export_dir} --port 0")
    server = subprocess.Popen(
        serving_command("serve", export_dir, "--port", "0"),
        stdout=subprocess.PIPE, text=True, **IN_THIS_CHECKOUT,
    )
    try:
        for line in server.stdout:
            print(line.rstrip())
            if line.startswith("serving on "):
                url = line.split()[-1]
                break
        else:
            raise RuntimeError("the server exited before serving")
        for body in ({"inputs": {"tokens": sequences}},
                     {"inputs": {"tokens": [[3, 12, 4]]}}):
            status, answer = post(f"{url}/v1/predict", body)
            print(f"POST /v1/predict {json.dumps(body)}\n  -> {status} "
                  f"{json.dumps(answer)}")
            if status == 200:
                classes = np.argmax(answer["outputs"]["logits"], axis=-1)
                print(f"  first==last predicted: {classes.astype(bool)}")
        with urllib.request.urlopen(f"{url}/health") as response:
            print(f"GET /health -> {response.status} "
                  f"{response.read().decode()}")
    finally:
        server.terminate()
        server.wait()


def post(url, body):
    """``(status, decoded JSON answer)`` of a JSON POST."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


if __name__ == "__main__":
    main()
