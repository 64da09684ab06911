"""Keras models with kerasrnn layers -> ONNX with native recurrent operators.

The graph is written from the model's layers and weights (``onnx.helper``),
never traced: nothing runs TensorFlow, so no cuDNN kernel can leak in, and
every kerasrnn recurrent layer becomes native ONNX ``RNN``/``LSTM``/``GRU``
nodes (one per layer and direction group, masks as ``sequence_lens``,
initial states as node inputs), never a ``Loop`` or ``Scan``.

    manifest = kerasrnn.export.to_onnx(model, "artifacts/model")
    # artifacts/model/model.onnx, artifacts/model/manifest.json

Supported models: Functional and Sequential models (nested ones included)
whose layers are in ``supported_layers()``; inputs float32, int32, int64 or
bool; dynamic batch and time axes. Opset 17, IR version 8 (onnxruntime
≥ 1.14 loads it).
"""

import pathlib

import keras
import numpy as np

try:
    import onnx
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "kerasrnn.export needs the `onnx` package: pip install "
        "'kerasrnn[export]'"
    ) from error

from kerasrnn_serving import manifest as manifest_lib
from kerasrnn.export import precision
from kerasrnn.export.graph import IR_VERSION
from kerasrnn.export.graph import OPSET
from kerasrnn.export.graph import PARITY_ATOL
from kerasrnn.export.graph import PARITY_RTOL
from kerasrnn.export.graph import GraphBuilder
from kerasrnn.export.graph import Value
from kerasrnn.export.graph import make_model
from kerasrnn.export.graph import op_inventory
from kerasrnn.export.graph import version as _version
from kerasrnn.export.functional import model_tensors
from kerasrnn.export.functional import run_functional
from kerasrnn.export.layers import supported_layers

MODEL_FILE = "model.onnx"
RECURRENT_OPS = ("RNN", "LSTM", "GRU")
INPUT_DTYPES = ("float32", "int32", "int64", "bool")

__all__ = [
    "build_onnx",
    "check_parity",
    "op_inventory",
    "supported_layers",
    "to_onnx",
]


def to_onnx(model, directory, *, output_names=None, verify=True):
    """Exports ``model`` to ``directory/model.onnx`` with a manifest.

    A ``kerasrnn.models.Seq2Seq`` or ``LanguageModel`` is exported as an
    encoder (prompt) graph and a one-step decoder graph instead
    (``kerasrnn.export.generation``); an ``ImageCaptioner`` as an image
    encoder graph and that decoder step (``kerasrnn.export.captioning``).

    Args:
        model: a built Functional or Sequential Keras model. A mixed- or
            reduced-precision model (``mixed_float16``...) is exported in
            float32 from its float32 twin (``precision.float32_twin``);
            the manifest's ``precision`` says so.
        directory: created if needed; receives ``model.onnx`` and
            ``manifest.json``.
        output_names: optional names for the flattened outputs (default:
            the keys of a dict output, else the output layers' names).
        verify: run Keras and onnxruntime on random inputs (right-padded
            where the model masks) and raise a RuntimeError when they differ
            by more than ``1e-4 + 1e-4 |keras|``; the error measured goes
            into the manifest's ``parity``.

    Returns:
        the manifest (a dict, also written as JSON).

    Raises:
        ValueError: for an unsupported layer (naming it and listing the
            supported ones), a stateful layer, or an unsupported input
            dtype.
    """
    from kerasrnn.export import generation
    from kerasrnn.models import LanguageModel
    from kerasrnn.models import Seq2Seq
    from kerasrnn.models.captioning import ImageCaptioner

    if isinstance(model, (Seq2Seq, LanguageModel)):
        if output_names is not None:
            raise ValueError(
                "`output_names` applies to Functional and Sequential "
                "models; a generation export names its graphs' tensors "
                "itself (see kerasrnn.export.generation)."
            )
        if isinstance(model, ImageCaptioner):
            from kerasrnn.export.captioning import export_captioner

            return export_captioner(model, directory, verify=verify)
        if isinstance(model, Seq2Seq):
            return generation.export_seq2seq(model, directory, verify=verify)
        return generation.export_language_model(model, directory,
                                                verify=verify)
    policies = precision.source_policies(model)
    twin = precision.float32_twin(model)
    model_proto, manifest = build_onnx(twin, output_names=output_names)
    if policies:
        manifest["precision"] = {
            "source_dtype_policies": policies, "exported": "float32",
        }
    if verify:
        manifest["parity"] = check_parity(twin, model_proto, manifest)
        if policies:
            manifest["precision"]["max_abs_difference_to_source"] = (
                check_parity(model, model_proto, manifest, strict=False)[
                    "max_abs_error"]
            )
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model_proto, directory / MODEL_FILE)
    manifest_lib.write(directory, manifest)
    return manifest


def build_onnx(model, output_names=None):
    """The ONNX model of ``model`` and its manifest, in memory.

    Returns:
        ``(onnx.ModelProto, manifest dict)``; the model passes
        ``onnx.checker.check_model(full_check=True)``.
    """
    inputs, outputs = model_tensors(model)
    graph = GraphBuilder()
    input_values = []
    sequence_inputs = 0
    input_infos = []
    for tensor, name in zip(inputs, manifest_lib.input_names(inputs)):
        dtype = _dtype(tensor)
        graph.reserve(name)
        shape, time_named = _dims(tensor.shape, dtype, sequence_inputs, name)
        sequence_inputs += time_named
        input_infos.append((name, dtype, shape))
        input_values.append(
            Value(name, tuple(tensor.shape), dtype, input_name=name)
        )
    names = resolve_output_names(model, outputs, output_names)
    for name in names:
        graph.reserve(name)
    results = run_functional(graph, model, inputs, input_values)
    output_infos = []
    for name, tensor, value in zip(names, outputs, results):
        shape, _ = _dims(tensor.shape, "float32", None, name)
        output_infos.append((name, value.name, _dtype(tensor), shape))
    model_proto, nodes = make_model(graph, model.name, input_infos,
                                    output_infos)
    output_infos = [(name, dtype, shape)
                    for name, _, dtype, shape in output_infos]
    kept = {node.name for node in nodes}
    recurrent = [e for e in graph.recurrent_nodes if e["node"] in kept]
    manifest = manifest_lib.make(
        model_name=model.name,
        model_file=MODEL_FILE,
        inputs=[
            manifest_lib.tensor_entry(name, dtype, shape,
                                      **graph.input_notes.get(name, {}))
            for name, dtype, shape in input_infos
        ],
        outputs=[manifest_lib.tensor_entry(*info) for info in output_infos],
        opset=OPSET,
        ir_version=IR_VERSION,
        ops=op_inventory(model_proto),
        recurrent_nodes=recurrent,
        versions={"kerasrnn": _version(), "keras": keras.__version__,
                  "onnx": onnx.__version__},
    )
    return model_proto, manifest


def check_parity(model, model_proto, manifest, batch_size=3, steps=7,
                 seed=0, strict=True):
    """Runs Keras and onnxruntime on the same random inputs.

    Inputs follow the manifest: token ids in ``[1, vocabulary_size)``,
    floats from N(0, 1), right-padding with the padding value (and masks)
    over random lengths in ``[1, steps]``, the first row full length.

    Returns:
        dict with ``max_abs_error``, the batch size and steps used.

    Raises:
        RuntimeError: when an output differs by more than
            ``1e-4 + 1e-4 |keras|`` (with ``strict``; without it only the
            largest difference is measured, as against a float16 model).
    """
    import onnxruntime

    feeds = sample_inputs(manifest, batch_size, steps, seed)
    expected = call_model(
        model, [feeds[entry["name"]] for entry in manifest["inputs"]]
    )
    session = onnxruntime.InferenceSession(
        model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    received = session.run(None, feeds)
    worst = 0.0
    for entry, ours, theirs in zip(manifest["outputs"], received, expected):
        theirs = keras.ops.convert_to_numpy(theirs)
        if ours.shape != theirs.shape:
            raise RuntimeError(
                f"ONNX output '{entry['name']}' has shape {ours.shape}, "
                f"Keras {theirs.shape}: the export is wrong."
            )
        theirs = theirs.astype("float64")
        error = np.abs(ours.astype("float64") - theirs)
        worst = max(worst, float(error.max(initial=0.0)))
        if strict and not np.all(
            error <= PARITY_ATOL + PARITY_RTOL * np.abs(theirs)
        ):
            raise RuntimeError(
                f"ONNX output '{entry['name']}' differs from Keras by up to "
                f"{error.max():.3g} on random inputs: the export is wrong. "
                "Please report this with the model's configuration."
            )
    return {"max_abs_error": worst, "batch_size": batch_size,
            "steps": steps}


def sample_inputs(manifest, batch_size, steps, seed=0):
    """Random feeds for the manifest's inputs (see ``check_parity``)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, steps + 1, size=batch_size)
    lengths[0] = steps
    feeds = {}
    for entry in manifest["inputs"]:
        shape = []
        for axis, size in enumerate(entry["shape"]):
            if isinstance(size, int):
                shape.append(size)
            elif axis == entry["batch_axis"]:
                shape.append(batch_size)
            else:
                shape.append(steps)
        dtype = entry["dtype"]
        if dtype == "bool":
            value = np.ones(shape, dtype=bool)
        elif dtype.startswith("int"):
            high = entry.get("vocabulary_size", 100)
            value = rng.integers(1, max(high, 2), size=shape).astype(dtype)
        else:
            value = rng.normal(size=shape).astype(dtype)
        padding = entry.get("padding")
        if padding is not None and len(shape) >= 2:
            steps_here = shape[1]
            real = np.arange(steps_here)[None, :] < np.minimum(
                lengths, steps_here
            )[:, None]
            if padding["kind"] == "mask":
                value = real
            else:
                real = real.reshape(real.shape + (1,) * (len(shape) - 2))
                value = np.where(real, value, padding["value"]).astype(dtype)
        feeds[entry["name"]] = value
    return feeds


def call_model(model, arrays):
    """``model`` on its inputs (in ``model.inputs`` order, packed as the
    model declares them), at inference; flat outputs."""
    if isinstance(model, keras.Sequential):
        inputs = arrays[0]
    else:
        inputs = keras.tree.pack_sequence_as(model.input, list(arrays))
    return keras.tree.flatten(model(inputs, training=False))


def _dtype(tensor):
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if dtype not in INPUT_DTYPES:
        raise ValueError(
            f"Tensor '{tensor.name}' has dtype {dtype}; ONNX export supports "
            f"{INPUT_DTYPES} (declare keras.Input(dtype='float32') for "
            "features, 'int32' for token ids)."
        )
    return dtype


def _dims(shape, dtype, sequence_index, name):
    """ONNX dims for a Keras shape: the first unknown axis is ``batch``;
    for an input (``sequence_index`` not None) the time axis of a sequence
    is ``time`` (``<name>_time`` after the first sequence input); other
    unknown axes stay unnamed."""
    dims, unknown, time_named = [], 0, 0
    sequence = sequence_index is not None and (
        len(shape) == 3 or (len(shape) == 2 and dtype != "float32")
    )
    for size in shape:
        if size is not None:
            dims.append(int(size))
            continue
        unknown += 1
        if unknown == 1:
            dims.append("batch")
        elif unknown == 2 and sequence:
            dims.append("time" if sequence_index == 0 else f"{name}_time")
            time_named = 1
        else:
            dims.append(None)
    return dims, time_named


def resolve_output_names(model, outputs, names):
    if names is not None:
        names = list(names)
        if len(names) != len(outputs) or len(set(names)) != len(names):
            raise ValueError(
                f"`output_names` must list {len(outputs)} distinct names. "
                f"Received: output_names={names}"
            )
        return names
    structure = (
        model.outputs[0] if isinstance(model, keras.Sequential)
        else model.output
    )
    paths = [path for path, _ in keras.tree.flatten_with_path(structure)]
    if isinstance(structure, dict) and all(len(p) == 1 for p in paths):
        return [str(path[0]) for path in paths]
    names = []
    for tensor in outputs:
        operation, _, index = tensor._keras_history
        name = operation.name if index == 0 else f"{operation.name}_{index}"
        while name in names:
            name += "_"
        names.append(name)
    return names
