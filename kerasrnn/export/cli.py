"""The export command lines, installed by ``[project.scripts]``::

    kerasrnn-to-onnx model.keras artifacts/model [--quantize]
        [--output-names logits,state] [--no-verify]
    kerasrnn-to-saved-model model.keras models/name/1
        [--output-names logits,state] [--no-verify]

``kerasrnn-to-onnx`` writes ``model.onnx`` and ``manifest.json`` (and
``model.int8.onnx`` with ``--quantize``) and prints the op inventory and
the parity with Keras; ``kerasrnn-to-saved-model`` writes a SavedModel
(``serving_default``) and prints its signature. The logic is
``kerasrnn.export.to_onnx`` / ``to_saved_model``.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import kerasrnn  # noqa: E402,F401  (registers the layers for loading)
from kerasrnn.export import quantize_onnx  # noqa: E402
from kerasrnn.export import to_onnx  # noqa: E402
from kerasrnn.export import to_saved_model  # noqa: E402


def _arguments(prog, description, directory_help, argv, extra=()):
    """The arguments both commands share (and ``extra`` flags), parsed;
    returns ``(args, the loaded model, output names or None)``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("model", help="a .keras file")
    parser.add_argument("directory", help=directory_help)
    parser.add_argument("--output-names", help="comma-separated")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the check against Keras")
    for flag, help_text in extra:
        parser.add_argument(flag, action="store_true", help=help_text)
    args = parser.parse_args(argv)
    model = keras.saving.load_model(args.model)
    names = args.output_names.split(",") if args.output_names else None
    return args, model, names


def onnx_main(argv=None):
    """``kerasrnn-to-onnx``."""
    args, model, names = _arguments(
        "kerasrnn-to-onnx",
        "Export a saved Keras model to ONNX (native recurrent operators).",
        "output directory", argv,
        extra=[("--quantize",
                "also write an int8 model and report the change")],
    )
    manifest = to_onnx(model, args.directory, output_names=names,
                       verify=not args.no_verify)
    graphs = manifest.get("graphs") or {"model": {
        "file": manifest["model_file"], "ops": manifest["ops"],
        "recurrent_nodes": manifest["recurrent_nodes"]}}
    for graph in graphs.values():
        print(f"wrote {args.directory}/{graph['file']}: ops "
              f"{json.dumps(graph['ops'])}")
        for node in graph["recurrent_nodes"]:
            print(f"  {node['op']} ({node['direction']}, hidden "
                  f"{node['hidden_size']}) for {node['layer']}")
    print(f"wrote {args.directory}/manifest.json")
    if "parity" in manifest:
        print(f"parity with Keras: {json.dumps(manifest['parity'])}")
    if args.quantize:
        report = quantize_onnx(args.directory)
        print(f"int8: {report['bytes_float32']} -> {report['bytes_int8']} "
              f"bytes; output change {json.dumps(report['outputs'])}")


def saved_model_main(argv=None):
    """``kerasrnn-to-saved-model``."""
    args, model, names = _arguments(
        "kerasrnn-to-saved-model",
        "Export a saved Keras model as a SavedModel (serving_default).",
        "the SavedModel directory", argv,
    )
    info = to_saved_model(model, args.directory, output_names=names,
                          verify=not args.no_verify)
    print(f"wrote {args.directory} (signature {info['signature']})")
    print(json.dumps(info, indent=2))
