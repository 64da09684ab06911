"""Export a saved Keras model to ONNX (native recurrent operators).

    kerasrnn-to-onnx model.keras artifacts/model [--quantize]
        [--output-names logits,state] [--no-verify]

Writes ``model.onnx`` and ``manifest.json`` (and ``model.int8.onnx`` with
``--quantize``) and prints the op inventory and the parity with Keras. The
logic is ``kerasrnn.export.to_onnx``; also ``python -m
kerasrnn.export.cli_onnx``.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import kerasrnn  # noqa: F401  (registers the layers for loading)
from kerasrnn.export import quantize_onnx
from kerasrnn.export import to_onnx


PROG = "kerasrnn-to-onnx"


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="a .keras file")
    parser.add_argument("directory", help="output directory")
    parser.add_argument("--output-names", help="comma-separated")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the Keras vs onnxruntime check")
    parser.add_argument("--quantize", action="store_true",
                        help="also write an int8 model and report the change")
    args = parser.parse_args()
    model = keras.saving.load_model(args.model)
    names = args.output_names.split(",") if args.output_names else None
    manifest = to_onnx(model, args.directory, output_names=names,
                       verify=not args.no_verify)
    print(f"wrote {args.directory}/{manifest['model_file']} and "
          "manifest.json")
    print("ops:", json.dumps(manifest["ops"]))
    for node in manifest["recurrent_nodes"]:
        print(f"  {node['op']} ({node['direction']}, hidden "
              f"{node['hidden_size']}) for {node['layer']}")
    if "parity" in manifest:
        print(f"max |keras - onnxruntime| = "
              f"{manifest['parity']['max_abs_error']:.2e}")
    if args.quantize:
        report = quantize_onnx(args.directory)
        print(f"int8: {report['bytes_float32']} -> {report['bytes_int8']} "
              f"bytes; output change {json.dumps(report['outputs'])}")


if __name__ == "__main__":
    main()
