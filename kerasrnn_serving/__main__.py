"""Command line of the TensorFlow-free runtime.

    python -m kerasrnn_serving info DIR
    python -m kerasrnn_serving predict DIR --input tokens=tokens.npy [--lengths
        tokens=lengths.npy] [--output predictions.npz]
    python -m kerasrnn_serving generate DIR "some text" [--method beam
        --beam-width 5 --length-penalty 0.6 --num-return 3 --max-length 40
        --temperature 0.8 --top-k 20 --top-p 0.9 --seed 1 --stream]
    python -m kerasrnn_serving serve DIR [--host 127.0.0.1] [--port 8000]

``predict`` (classifiers) reads ``.npy`` files (or ``.json`` nested
lists), prints a summary of each output and writes them to an ``.npz``
file. ``generate`` (seq2seq and language models) prints each text's
hypotheses with their scores (``--json``: the answer as JSON).
``serve`` serves either kind (``kerasrnn_serving.server``).
"""

import argparse
import dataclasses
import functools
import json
import logging
import os
import pathlib
import sys

import numpy as np

from kerasrnn_serving.app import Limits
from kerasrnn_serving.predictor import InputError
from kerasrnn_serving.manifest import read as read_manifest
from kerasrnn_serving.server import open_export
from kerasrnn_serving.server import serve
from kerasrnn_serving.workers import serve_workers

# --flag -> search option.
SEARCH_FLAGS = {
    "beam_width": int, "length_penalty_weight": float, "num_return": int,
    "min_length": int, "temperature": float, "top_k": int, "top_p": float,
    "seed": int, "num_samples": int,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerasrnn_serving",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("info", "predict", "generate", "serve"):
        command = commands.add_parser(name)
        command.add_argument("directory", help="the export directory")
        command.add_argument("--quantized", action="store_true",
                             help="run model.int8.onnx (classifiers)")
        command.add_argument("--batch-size", type=int, default=256)
        command.add_argument(
            "--threads", type=int, default=None,
            help="onnxruntime intra-op threads (default: 1 for generation, "
            "onnxruntime's own choice for a classifier)")
        if name == "generate":
            command.add_argument("texts", nargs="+", help="the inputs")
            command.add_argument("--method", default=None,
                                 choices=["greedy", "sample", "beam"])
            command.add_argument("--max-length", type=int, default=None)
            for option, kind in SEARCH_FLAGS.items():
                flag = option.replace("_", "-").replace(
                    "-weight", "")
                command.add_argument(f"--{flag}", dest=option, type=kind,
                                     default=None)
            command.add_argument("--stream", action="store_true",
                                 help="print tokens as they are decoded")
            command.add_argument("--json", action="store_true")
        if name == "predict":
            command.add_argument("--input", action="append", default=[],
                                 metavar="NAME=FILE", required=True)
            command.add_argument("--lengths", action="append", default=[],
                                 metavar="NAME=FILE")
            command.add_argument("--output", help="write outputs (.npz)")
        if name == "serve":
            _serve_arguments(command)
    args = parser.parse_args(argv)
    try:
        kind = read_manifest(args.directory).get("kind", "classifier")
        if args.command == "serve" and args.workers < 1:
            raise ValueError("--workers must be 1 or more. Received: "
                             f"{args.workers}")
        open_model = functools.partial(
            open_export, args.directory, kind, args.batch_size,
            args.quantized, args.threads)
        predictor = open_model()
    except (OSError, ValueError) as error:
        # One line: which file, and what is wrong with it.
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{kind} '{predictor.manifest['model_name']}' on "
          f"{predictor.provider}; tensorflow imported: "
          f"{'tensorflow' in sys.modules}", flush=True)
    if args.command == "generate":
        if kind == "classifier":
            print("error: generate needs a seq2seq or language-model "
                  "export; use predict for a classifier.", file=sys.stderr)
            return 2
        return _generate(predictor, args)
    if args.command == "info" and kind != "classifier":
        print(json.dumps(predictor.metadata(), indent=2))
    elif args.command == "predict" and kind != "classifier":
        print("error: predict runs classifiers; use generate for a "
              f"{kind} export.", file=sys.stderr)
        return 2
    elif args.command == "info":
        print(json.dumps({key: predictor.manifest[key] for key in
                          ("inputs", "outputs", "ops", "recurrent_nodes")},
                         indent=2))
    elif args.command == "predict":
        try:
            outputs = predictor.predict(_load(args.input),
                                        _load(args.lengths) or None)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for name, value in outputs.items():
            print(f"  {name}: shape {value.shape}, {value.dtype}")
        if args.output:
            np.savez(args.output, **outputs)
            print(f"wrote {args.output}")
    elif args.workers > 1:
        del predictor   # the start-up checks passed; each worker opens its own
        return _serve(args, workers=open_model)
    else:
        return _serve(args, model=predictor)
    return 0


def _serve_arguments(command):
    defaults = Limits()
    command.add_argument("--host", default="127.0.0.1",
                         help="default: loopback only")
    command.add_argument("--port", type=int, default=8000,
                         help="0 picks a free port")
    command.add_argument("--api-key", default=os.environ.get(
        "KERASRNN_API_KEY"), help="required on every route but health "
        "(default: $KERASRNN_API_KEY; none)")
    for field in dataclasses.fields(Limits):
        command.add_argument(
            f"--{field.name.replace('_', '-')}", type=type(field.default),
            default=getattr(defaults, field.name))
    command.add_argument("--max-connections", type=int, default=1024)
    command.add_argument("--keep-alive", type=int, default=5,
                         help="seconds an idle connection stays open")
    command.add_argument("--header-timeout", type=float, default=10.0,
                         help="seconds to send a request head")
    command.add_argument("--max-batch-rows", type=int, default=64)
    command.add_argument("--max-delay-ms", type=float, default=2.0,
                         help="how long a request waits for others to "
                         "batch with")
    command.add_argument("--access-log", action="store_true",
                         help="one JSON line per request on stderr")
    command.add_argument("--workers", type=int, default=1,
                         help="server processes on the port, each with its "
                         "own sessions and event loop (about a core each)")


def _serve(args, model=None, workers=None):
    """Serves ``model`` in this process, or ``workers()`` (the function
    that opens it) in ``--workers`` processes on the port."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(message)s")
    limits = Limits(**{field.name: getattr(args, field.name)
                       for field in dataclasses.fields(Limits)})
    options = dict(
        limits=limits, api_key=args.api_key,
        max_connections=args.max_connections, keep_alive=args.keep_alive,
        header_timeout=args.header_timeout,
        max_batch_rows=args.max_batch_rows,
        max_delay=args.max_delay_ms / 1e3, access_log=args.access_log,
    )
    if workers is not None:
        return serve_workers(workers, args.workers, args.host, args.port,
                             **options)
    return serve(model, args.host, args.port, **options)


def _generate(generator, args):
    options = {name: getattr(args, name) for name in SEARCH_FLAGS
               if getattr(args, name) is not None}
    try:
        if args.stream:
            for text in args.texts:
                for event in generator.stream(text, args.method,
                                              args.max_length, **options):
                    if event.get("done"):
                        score = event["hypotheses"][0]["score"]
                        print(f"   (score {score:.4f})")
                    else:
                        print(event["text"], end="", flush=True)
            return 0
        answers = generator.generate(args.texts, args.method,
                                     args.max_length, **options)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answers, ensure_ascii=False))
        return 0
    for text, answer in zip(args.texts, answers):
        print(f"{text!r} ->")
        for hypothesis in answer["hypotheses"]:
            print(f"  {hypothesis['text']!r}  score {hypothesis['score']:.4f}")
    return 0


def _load(pairs):
    arrays = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=FILE, received {pair!r}")
        path = pathlib.Path(path)
        if path.suffix == ".json":
            arrays[name] = json.loads(path.read_text())
        else:
            arrays[name] = np.load(path)
    return arrays


if __name__ == "__main__":
    sys.exit(main())
