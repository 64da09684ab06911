"""Character-level LSTM/GRU language model on Tiny Shakespeare.

    python examples/char_lm.py --data ../shared/data/tinyshakespeare/input.txt

Trains a 2-layer model with truncated BPTT over contiguous streams (state
carried from window to window), reports the validation loss in nats per
character (the last 10% of the text, state carried over the whole stream)
and prints samples at two temperatures. Without --data it trains on a
small built-in text in about a minute.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from kerasrnn.export import to_onnx
from kerasrnn.models.language_model import LanguageModel
from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import read_tokens
from kerasrnn.models.lm_data import tokenize
from kerasrnn.models.lm_training import TBPTTTrainer
from kerasrnn.models.lm_training import zaremba_learning_rate

BUILT_IN = """\
First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?

All:
Resolved. resolved.

First Citizen:
First, you know Caius Marcius is chief enemy to the people.

All:
We know't, we know't.

First Citizen:
Let us kill him, and we'll have corn at our own price.
Is't a verdict?
"""


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="a UTF-8 text file; omitted: a "
                        "built-in snippet")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--decay", type=float, default=0.85)
    parser.add_argument("--constant-epochs", type=int, default=5)
    parser.add_argument("--clipnorm", type=float, default=5.0)
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="between layers and before the softmax")
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--time-limit", type=float,
                        help="stop after the epoch that passes this many "
                        "minutes")
    parser.add_argument("--embeddings-initializer", default=None,
                        help="a Keras initializer name or JSON config "
                        "(default: LanguageModel's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="ROMEO:\n")
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--results", help="write the summary as JSON here")
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="export to ONNX here and sample from the "
                        "export without TensorFlow")
    parser.add_argument("--verbose", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    keras.utils.set_random_seed(args.seed)
    if args.data is None:
        characters = tokenize(BUILT_IN * 30, "char")
        args.units, args.batch_size = min(args.units, 128), min(
            args.batch_size, 8)
        args.num_steps, args.epochs = min(args.num_steps, 50), min(
            args.epochs, 8)
        args.learning_rate, args.prompt = 5e-3, "First Citizen:\n"
    else:
        characters = read_tokens(args.data, "char")
    cut = int(len(characters) * (1 - args.valid_fraction))
    vocabulary = Vocabulary.build(characters[:cut], "char")
    train, _ = vocabulary.encode(characters[:cut])
    valid, unknown = vocabulary.encode(characters[cut:])
    print(f"{vocabulary.size} characters (with <unk>); train {len(train)}, "
          f"valid {len(valid)} ({unknown} unseen -> <unk>)")
    model = LanguageModel(
        vocabulary.size, embedding_dim=args.embedding_dim, units=args.units,
        num_layers=args.layers, cell=args.cell,
        inter_layer_dropout=args.dropout, output_dropout=args.dropout,
        seed=args.seed, vocabulary=vocabulary,
        **initializer_arguments(args),
    )
    model(keras.ops.zeros((1, 1), "int32"))
    print(f"model: {args.layers} x {args.units} {args.cell.upper()}, "
          f"{model.count_params():,} parameters")

    def learning_rate(epoch):
        return zaremba_learning_rate(
            epoch, args.learning_rate, args.decay, args.constant_epochs
        )

    trainer = TBPTTTrainer(
        model, args.batch_size, args.num_steps, learning_rate,
        args.clipnorm, optimizer="adam",
    )
    history, started = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        print(f"epoch {epoch}/{args.epochs}, learning rate "
              f"{learning_rate(epoch):g}")
        train_result = trainer.train_epoch(train, epoch, args.verbose)
        valid_result = trainer.evaluate(valid, batch_size=1,
                                        num_steps=1000)
        history.append({
            "epoch": epoch,
            "train_nats_per_char": train_result["loss"],
            "valid_nats_per_char": valid_result["loss"],
            "tokens_per_second": train_result["tokens_per_second"],
            "elapsed_seconds": time.perf_counter() - started,
        })
        print("  train {train_nats_per_char:.3f} nats/char, valid "
              "{valid_nats_per_char:.3f}, {tokens_per_second:.0f} chars/s, "
              "{elapsed_seconds:.0f} s so far".format(**history[-1]),
              flush=True)
        if args.results:
            _write(args.results, {"args": vars(args), "history": history})
        if args.time_limit and time.perf_counter() - started > (
            60 * args.time_limit
        ):
            print(f"time limit of {args.time_limit} minutes reached")
            break
    samples = {
        str(temperature): model.generate(
            args.prompt, vocabulary, args.sample_length, method="sample",
            temperature=temperature, seed=args.seed,
        )
        for temperature in (0.5, 1.0)
    }
    summary = {
        "valid_nats_per_char": history[-1]["valid_nats_per_char"],
        "best_valid_nats_per_char": min(
            h["valid_nats_per_char"] for h in history),
        "epochs": len(history),
        "wall_seconds": time.perf_counter() - started,
        "samples": samples,
    }
    print(f"\nsummary\n  valid nats/char {summary['valid_nats_per_char']:.3f}"
          f" after {summary['epochs']} epochs, "
          f"{summary['wall_seconds']:.0f} s")
    for temperature, text in samples.items():
        print(f"\n--- sample, temperature {temperature} ---\n"
              f"{args.prompt}{text}")
    if args.export:
        summary["tf_free_sample"] = export_and_sample(model, args)
    if args.results:
        _write(args.results, {"args": vars(args), "history": history,
                              "summary": summary})
    return summary


def export_and_sample(model, args):
    """Exports the model (``prompt.onnx`` + ``step.onnx``) and samples a
    continuation of the prompt in a fresh process that imports no
    TensorFlow (``python -m kerasrnn_serving generate``)."""
    to_onnx(model, args.export)
    command = [sys.executable, "-m", "kerasrnn_serving", "generate",
               args.export, args.prompt, "--method", "sample",
               "--temperature", "0.5", "--seed", str(args.seed),
               "--max-length", str(args.sample_length), "--json"]
    result = subprocess.run(command, capture_output=True, text=True,
                            check=True)
    banner, answer = result.stdout.split("\n", 1)
    sample = json.loads(answer)[0]["text"]
    print(f"\n--- {banner}\n--- TF-free sample, temperature 0.5 ---\n"
          f"{args.prompt}{sample}")
    return sample


def initializer_arguments(args):
    if args.embeddings_initializer is None:
        return {}
    value = args.embeddings_initializer
    if value.lstrip().startswith("{"):
        value = json.loads(value)
    return {"embeddings_initializer": value}


def _write(path, payload):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
