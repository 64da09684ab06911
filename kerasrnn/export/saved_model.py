"""Keras models -> TensorFlow SavedModel with a named ``serving_default``.

    info = kerasrnn.export.to_saved_model(model, "artifacts/model/1")

The signature takes the model's inputs by their ``keras.Input`` names and
returns a dict of named outputs (the same names as the ONNX export), as TF
Serving's REST API and ``tf.saved_model.load(...).signatures`` expect.
kerasrnn layers run their own time loop, never cuDNN kernels; the export
still checks the saved graph for cuDNN ops (a Keras built-in LSTM/GRU traced
with a GPU visible) and refuses it, because CPU-only servers cannot run it.
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from kerasrnn.export import manifest as manifest_lib
from kerasrnn.export.manifest import tensor_entry
from kerasrnn.export.onnx import PARITY_ATOL
from kerasrnn.export.onnx import PARITY_RTOL
from kerasrnn.export.onnx import build_onnx
from kerasrnn.export.onnx import call_model
from kerasrnn.export.onnx import model_tensors
from kerasrnn.export.onnx import resolve_output_names
from kerasrnn.export.onnx import sample_inputs

SIGNATURE = "serving_default"


def to_saved_model(model, directory, *, output_names=None, verify=True):
    """Writes ``model`` as a SavedModel in ``directory``.

    Args:
        model: a built Functional or Sequential Keras model.
        directory: the SavedModel directory (for TF Serving, a numbered
            version directory such as ``models/name/1``).
        output_names: names of the flattened outputs (default as
            ``to_onnx``).
        verify: reload the SavedModel and compare its ``serving_default``
            with Keras on random inputs (raises a RuntimeError above
            ``1e-4 + 1e-4 |keras|``).

    Returns:
        dict with ``signature``, ``inputs`` and ``outputs`` (name, dtype,
        shape) and, with ``verify``, ``parity``.
    """
    inputs, outputs, names = _signature(model, output_names)
    input_names = manifest_lib.input_names(inputs)
    specs = {
        name: tf.TensorSpec(
            tensor.shape, keras.backend.standardize_dtype(tensor.dtype),
            name=name,
        )
        for tensor, name in zip(inputs, input_names)
    }

    def serve(features):
        results = call_model(model, [features[n] for n in input_names])
        return dict(zip(names, results))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[specs])
    directory = pathlib.Path(directory)
    archive.write_out(str(directory), verbose=False)
    cudnn = sorted(op for op in saved_ops(directory) if "Cudnn" in op)
    if cudnn:
        raise RuntimeError(
            f"The SavedModel in {directory} contains cuDNN ops {cudnn}, which "
            "CPU-only servers cannot run: a Keras built-in recurrent layer "
            "was traced with a GPU visible. Build it with use_cudnn=False "
            "(or use kerasrnn's layers) and export again."
        )
    info = {
        "signature": SIGNATURE,
        "inputs": [
            {"name": name, "dtype": spec.dtype.name,
             "shape": list(spec.shape)}
            for name, spec in specs.items()
        ],
        "outputs": [
            {"name": name, "dtype": keras.backend.standardize_dtype(t.dtype),
             "shape": list(t.shape)}
            for name, t in zip(names, outputs)
        ],
    }
    if verify:
        info["parity"] = check_saved_model(model, directory, names)
    return info


def check_saved_model(model, directory, output_names, batch_size=3, steps=7,
                      seed=0):
    """Reloads the SavedModel and compares ``serving_default`` with Keras
    on random inputs (right-padded where the model masks)."""
    entries = _input_entries(model)
    feeds = sample_inputs({"inputs": entries}, batch_size, steps, seed)
    expected = call_model(model, [feeds[entry["name"]] for entry in entries])
    function = tf.saved_model.load(str(directory)).signatures[SIGNATURE]
    received = function(**{name: tf.constant(value)
                           for name, value in feeds.items()})
    worst = 0.0
    for name, theirs in zip(output_names, expected):
        ours = received[name].numpy()
        theirs = keras.ops.convert_to_numpy(theirs)
        error = np.abs(ours.astype("float64") - theirs)
        worst = max(worst, float(error.max(initial=0.0)))
        if ours.shape != theirs.shape or not np.all(
            error <= PARITY_ATOL + PARITY_RTOL * np.abs(theirs)
        ):
            raise RuntimeError(
                f"SavedModel output '{name}' differs from Keras (shape "
                f"{ours.shape} vs {theirs.shape}, max error "
                f"{error.max(initial=0.0):.3g})."
            )
    return {"max_abs_error": worst, "batch_size": batch_size,
            "steps": steps}


def saved_ops(directory):
    """The op types in a SavedModel's graphs and functions."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(
        (pathlib.Path(directory) / "saved_model.pb").read_bytes()
    )
    ops = set()
    for graph in saved.meta_graphs:
        ops.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def _signature(model, output_names):
    inputs, outputs = model_tensors(model)
    return inputs, outputs, resolve_output_names(model, outputs, output_names)


def _input_entries(model):
    """Manifest-style input entries for ``sample_inputs``: the ONNX
    manifest's when the model exports to ONNX, else plain ones (token ids
    below the smallest Embedding's vocabulary)."""
    try:
        return build_onnx(model)[1]["inputs"]
    except (ValueError, TypeError):
        pass
    vocabulary = min(
        (layer.input_dim for layer in _all_layers(model)
         if isinstance(layer, keras.layers.Embedding)),
        default=2,
    )
    entries = []
    for tensor, name in zip(model.inputs,
                            manifest_lib.input_names(model.inputs)):
        shape = ["batch" if size is None and axis == 0 else size
                 for axis, size in enumerate(tensor.shape)]
        entries.append(tensor_entry(
            name, keras.backend.standardize_dtype(tensor.dtype),
            shape, vocabulary_size=vocabulary,
        ))
    return entries


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
