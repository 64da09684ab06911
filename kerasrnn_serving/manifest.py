"""The manifest contract: the JSON file written beside exported graphs.

Both sides use this one module (standard library only): the exporters in
``kerasrnn.export`` write it with ``make``/``write``, and the TensorFlow-free
runtime (``Predictor``, ``Generator``, the server) reads it with ``read``,
which checks the format. It tells a runtime how to feed the model without
reading the graph, and records what was exported. Keys (format
``kerasrnn-onnx``, version 1)::

    model_name, model_file ("model.onnx"), opset, ir_version
    inputs:  [{name, dtype, shape, batch_axis, time_axis,
               padding?, vocabulary_size?}]
    outputs: [{name, dtype, shape, batch_axis}]
    ops: {op_type: count}           recurrent_nodes: [{node, layer, op,
                                                       direction, hidden_size}]
    versions: {kerasrnn, keras, onnx}
    parity?: {max_abs_error, batch_size, steps}     (export-time check)
    quantized?: {file, ...}                         (quantize_onnx)
    precision?: {source_dtype_policies, exported,   (a mixed-precision
                 max_abs_difference_to_source}       model, see precision)

Input names are the ``keras.Input`` names; an input Keras named itself
(``keras_tensor_7``: the counter depends on how many tensors the process
made before) is named ``inputs`` (one input) or ``inputs_{i}``, so that a
model exports with the same names in every process (``input_names``).

``shape`` lists ints, ``"batch"``, a time name (``"time"``) or null
(unknown). ``padding`` describes a right-padded sequence input:
``{"kind": "tokens", "value": 0}`` (Embedding(mask_zero=True): token 0 is
padding), ``{"kind": "steps", "value": v}`` (Masking(v): a step whose
features all equal v is padding) or ``{"kind": "mask"}`` (a boolean mask
input, True at real steps). Real steps must come first in every row.
"""

import json
import pathlib
import re

FORMAT = "kerasrnn-onnx"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
# The names Keras gives an unnamed keras.Input.
_KERAS_GENERATED = re.compile(r"keras_tensor(_\d+)?")


def input_names(inputs):
    """The exported names of a model's input tensors (see the module
    doc)."""
    names = []
    for index, tensor in enumerate(inputs):
        if _KERAS_GENERATED.fullmatch(tensor.name):
            names.append("inputs" if len(inputs) == 1 else f"inputs_{index}")
        else:
            names.append(tensor.name)
    if len(set(names)) != len(names):
        raise ValueError(
            f"The model's inputs must have distinct names. Received: {names}"
        )
    return names


def tensor_entry(name, dtype, shape, **notes):
    """One input or output: name, dtype, ONNX dims, batch and time axes."""
    shape = list(shape)
    batch_axis = shape.index("batch") if "batch" in shape else None
    time_axes = [
        axis for axis, size in enumerate(shape)
        if isinstance(size, str) and (size == "time" or size.endswith(
            "_time"))
    ]
    entry = {
        "name": name,
        "dtype": dtype,
        "shape": shape,
        "batch_axis": batch_axis,
        "time_axis": time_axes[0] if time_axes else None,
    }
    entry.update(notes)
    return entry


def make(*, model_name, model_file, inputs, outputs, opset, ir_version, ops,
         recurrent_nodes, versions):
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_file": model_file,
        "opset": opset,
        "ir_version": ir_version,
        "inputs": inputs,
        "outputs": outputs,
        "ops": ops,
        "recurrent_nodes": recurrent_nodes,
        "versions": versions,
    }


def write(directory, manifest):
    path = pathlib.Path(directory) / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read(directory):
    """The manifest of an export directory, checked for its format."""
    path = pathlib.Path(directory) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"No {MANIFEST_FILE} in {directory}: export the model with "
            "kerasrnn.export.to_onnx(model, directory)."
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get(
        "format_version"
    ) != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a kerasrnn ONNX manifest (format "
            f"{manifest.get('format')!r}, version "
            f"{manifest.get('format_version')!r}; expected "
            f"{FORMAT!r}, {FORMAT_VERSION})."
        )
    return manifest
