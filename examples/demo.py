"""The demo: train a seq2seq model, export it, generate and serve it without
TensorFlow.

Task (built-in data, no download): date normalisation, "the 3rd of May,
1979" -> "1979-05-03", 16 human formats (``seq2seq_dates.py``); held-out
dates never appear in training.

Steps: train a character-level ``Seq2Seq`` (bidirectional GRU encoder,
Bahdanau attention, GRU decoder) with its teacher-forcing ``train_step``
and ``model.fit`` -> ``kerasrnn.export.to_onnx`` (``encoder.onnx`` +
``decoder_step.onnx``, native GRU nodes, checked against Keras) ->
generate in a fresh process that imports no TensorFlow (``python -m
kerasrnn_serving generate``) -> serve it over HTTP (``python -m
kerasrnn_serving serve``) and ask it: the held-out set in one request
(compared token by token with Keras), a beam-search request, a streaming
request (server-sent events) and a bad one.

    python examples/demo.py [--epochs 3] [--out artifacts/demo]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np

from kerasrnn.export import to_onnx
from kerasrnn.models import Seq2Seq
from kerasrnn.models import default_optimizer
from kerasrnn.models import text

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from quickstart import IN_THIS_CHECKOUT  # noqa: E402
from quickstart import post  # noqa: E402
from quickstart import serving_command  # noqa: E402
from seq2seq_dates import DAYS  # noqa: E402
from seq2seq_dates import make_examples  # noqa: E402
ASKED = ["the 21st of June, 2024", "Thursday, 3 May 1979", "03.05.1979"]


def train(args):
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(DAYS)
    test_days, train_days = order[:args.test], order[args.test:]
    test_x, test_y = make_examples(test_days, rng)
    train_x, train_y = make_examples(rng.choice(train_days, args.train), rng)
    sources, targets = text.Tokenizer("char"), text.Tokenizer("char")
    sources.adapt(train_x)
    targets.adapt(train_y)
    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id, embedding_dim=32,
        units=args.units, cell="gru", bidirectional=True,
        attention="bahdanau", max_source_length=64, max_target_length=12,
        seed=args.seed, source_tokenizer=sources, target_tokenizer=targets,
    )
    model.compile(optimizer=default_optimizer(3e-3))
    dataset = text.bucketed_dataset(
        sources.encode(train_x), targets.encode(train_y, bos_eos=True),
        batch_size=128, boundaries=[16, 24, 32], seed=args.seed,
    )
    start = time.perf_counter()
    model.fit(dataset, epochs=args.epochs, verbose=2)
    print(f"trained {args.epochs} epochs on {len(train_x)} pairs in "
          f"{time.perf_counter() - start:.1f} s")
    return model, test_x, test_y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=16_000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="artifacts/demo")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Train in Keras: model.fit runs Seq2Seq's teacher-forcing train_step.
    model, test_x, test_y = train(args)
    keras_answers = model.generate_text(test_x)
    exact = np.mean([a == y for a, y in zip(keras_answers, test_y)])
    print(f"Keras greedy exact match on {len(test_x)} held-out dates: "
          f"{exact:.1%}")
    model.save(out / "dates.keras")

    # 2. Export: encoder + one-step decoder, checked against Keras.
    export_dir = out / "onnx"
    manifest = to_onnx(model, export_dir)
    for name, graph in manifest["graphs"].items():
        nodes = ", ".join(f"{n['op']} ({n['direction']})"
                          for n in graph["recurrent_nodes"])
        print(f"exported {graph['file']}: native {nodes}")
    print(f"export parity: {json.dumps(manifest['parity'])}")

    # 3. Generate in a fresh process with numpy and onnxruntime only.
    command = serving_command("generate", export_dir, *ASKED, "--method",
                              "beam", "--beam-width", "3", "--num-return",
                              "2")
    print(f"\n$ python -m kerasrnn_serving generate {export_dir} ...")
    result = subprocess.run(command, capture_output=True, text=True,
                            check=True, **IN_THIS_CHECKOUT)
    print(result.stdout.rstrip())

    # 4. Serve it and ask it.
    ask_server(export_dir, test_x, keras_answers)


def ask_server(export_dir, test_x, keras_answers):
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
        status, answer = post(f"{url}/v1/generate", {"texts": test_x})
        served = [result["text"] for result in answer["results"]]
        same = sum(a == b for a, b in zip(served, keras_answers))
        print(f"POST /v1/generate {len(test_x)} held-out dates -> {status}; "
              f"the same answer as Keras for {same}/{len(test_x)}")
        for body in (
            {"texts": ASKED[:1], "method": "beam", "beam_width": 3,
             "num_return": 2},
            {"texts": ["3 May 1979"], "method": "beam", "beam_width": 0},
        ):
            status, answer = post(f"{url}/v1/generate", body)
            print(f"POST /v1/generate {json.dumps(body)}\n  -> {status} "
                  f"{json.dumps(answer, ensure_ascii=False)}")
        body = {"texts": ["May 3rd, 1979"], "stream": True}
        print(f"POST /v1/generate {json.dumps(body)} (server-sent events)")
        for event in stream(f"{url}/v1/generate", body):
            print(f"  {event}")
        with urllib.request.urlopen(f"{url}/health") as response:
            print(f"GET /health -> {response.status} "
                  f"{response.read().decode()}")
    finally:
        server.terminate()
        server.wait()


def stream(url, body):
    """The lines of a server-sent-events answer, as they arrive."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        for line in response:
            line = line.decode().rstrip("\n")
            if line:
                yield line


if __name__ == "__main__":
    main()
