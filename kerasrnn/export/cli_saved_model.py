"""Export a saved Keras model as a SavedModel (``serving_default``).

    kerasrnn-to-saved-model model.keras models/name/1
        [--output-names logits,state] [--no-verify]

The logic is ``kerasrnn.export.to_saved_model``; also ``python -m
kerasrnn.export.cli_saved_model``.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import kerasrnn  # noqa: F401  (registers the layers for loading)
from kerasrnn.export import to_saved_model


PROG = "kerasrnn-to-saved-model"


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="a .keras file")
    parser.add_argument("directory", help="the SavedModel directory")
    parser.add_argument("--output-names", help="comma-separated")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the reload check against Keras")
    args = parser.parse_args()
    model = keras.saving.load_model(args.model)
    names = args.output_names.split(",") if args.output_names else None
    info = to_saved_model(model, args.directory, output_names=names,
                          verify=not args.no_verify)
    print(f"wrote {args.directory} (signature {info['signature']})")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
