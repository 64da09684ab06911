"""Command line of the TensorFlow-free runtime.

    python -m kerasrnn_serving info DIR
    python -m kerasrnn_serving predict DIR --input tokens=tokens.npy [--lengths
        tokens=lengths.npy] [--output predictions.npz]
    python -m kerasrnn_serving serve DIR [--host 127.0.0.1] [--port 8000]

``predict`` reads ``.npy`` files (or ``.json`` nested lists), prints a
summary of each output and writes them to an ``.npz`` file.
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from kerasrnn_serving.predictor import InputError
from kerasrnn_serving.predictor import Predictor
from kerasrnn_serving.server import make_server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerasrnn_serving",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("info", "predict", "serve"):
        command = commands.add_parser(name)
        command.add_argument("directory", help="the export directory")
        command.add_argument("--quantized", action="store_true",
                             help="run model.int8.onnx")
        command.add_argument("--batch-size", type=int, default=256)
        if name == "predict":
            command.add_argument("--input", action="append", default=[],
                                 metavar="NAME=FILE", required=True)
            command.add_argument("--lengths", action="append", default=[],
                                 metavar="NAME=FILE")
            command.add_argument("--output", help="write outputs (.npz)")
        if name == "serve":
            command.add_argument("--host", default="127.0.0.1")
            command.add_argument("--port", type=int, default=8000,
                                 help="0 picks a free port")
    args = parser.parse_args(argv)
    predictor = Predictor(args.directory, batch_size=args.batch_size,
                          quantized=args.quantized)
    print(f"model '{predictor.manifest['model_name']}' on "
          f"{predictor.provider}; tensorflow imported: "
          f"{'tensorflow' in sys.modules}", flush=True)
    if args.command == "info":
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
    else:
        server = make_server(predictor, args.host, args.port)
        host, port = server.server_address[:2]
        print(f"serving on http://{host}:{port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
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
