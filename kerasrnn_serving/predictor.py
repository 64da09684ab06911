"""``Predictor``: runs an exported kerasrnn ONNX model with onnxruntime.

Only numpy and onnxruntime are imported (never TensorFlow or Keras), so a
serving host needs neither. The model directory holds ``model.onnx`` and
``manifest.json`` (written by ``kerasrnn.export.to_onnx``); the manifest
says how to feed the model.

    predictor = Predictor("artifacts/model")     # CUDA if available, else CPU
    print(predictor.provider)                    # which one runs the model
    outputs = predictor.predict({"tokens": tokens})   # {name: np.ndarray}

Inputs are checked before anything runs, and every error names the input:
unknown or missing names, rank, fixed sizes, batch and time sizes that
disagree between inputs, dtype (integers for token ids, floats for
features, bools for masks), token ids outside the vocabulary, NaN or
infinite features, lengths outside ``[0, padded length]``, and padding that
is not at the end of each row (the native recurrent operators need
right-padded sequences). Ragged inputs (lists of sequences of different
lengths) are padded for masked inputs. Large batches run in chunks of
``batch_size`` rows.
"""

import pathlib

import numpy as np
import onnxruntime

from kerasrnn_serving.manifest import MANIFEST_FILE
from kerasrnn_serving.manifest import read as read_manifest

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class InputError(ValueError):
    """An input the model cannot take; the message names the input."""


class Predictor:
    """An exported model, its manifest and an onnxruntime session.

    Args:
        directory: the export directory (``model.onnx``, ``manifest.json``).
        providers: onnxruntime execution providers, in order of preference.
            Default: CUDA when onnxruntime offers it, then CPU.
        batch_size: the most rows one ``session.run`` gets; larger
            requests are split and the results concatenated.
        quantized: run the int8 model written by ``quantize_onnx``.
        threads: onnxruntime intra-op threads (default: its own choice).

    Attributes:
        provider: the execution provider the session actually uses.
        manifest: the manifest (a dict).
    """

    def __init__(self, directory, providers=None, batch_size=256,
                 quantized=False, threads=None):
        self.directory = pathlib.Path(directory)
        self.manifest = read_manifest(self.directory)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                "`batch_size` must be a positive integer. Received: "
                f"batch_size={batch_size!r}"
            )
        self.batch_size = batch_size
        kind = self.manifest.get("kind", "classifier")
        if kind != "classifier":
            raise ValueError(
                f"{self.directory} holds a {kind} export: run it with "
                "kerasrnn_serving.Generator (Predictor runs one-graph "
                "models such as classifiers and taggers)."
            )
        model_file = self.manifest["model_file"]
        if quantized:
            if "quantized" not in self.manifest:
                raise ValueError(
                    f"{self.directory} holds no quantized model: run "
                    "kerasrnn.export.quantize_onnx on it first."
                )
            model_file = self.manifest["quantized"]["file"]
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [CUDA, CPU] if CUDA in available else [CPU]
        self.session = onnxruntime.InferenceSession(
            str(self.directory / model_file), session_options(threads),
            providers=providers
        )
        # onnxruntime falls back to CPU when CUDA cannot start: ask it.
        self.provider = self.session.get_providers()[0]
        check_graph(self.directory / MANIFEST_FILE, model_file, self.session,
                    self.manifest["inputs"], self.manifest["outputs"])
        check_vocabulary(self.directory / MANIFEST_FILE,
                         self.directory / model_file, self.manifest["inputs"])
        self.inputs = {e["name"]: e for e in self.manifest["inputs"]}
        self.outputs = [e["name"] for e in self.manifest["outputs"]]

    def __repr__(self):
        return (
            f"Predictor('{self.manifest['model_name']}' from "
            f"{self.directory}, provider={self.provider})"
        )

    def predict(self, inputs, lengths=None):
        """Runs the model.

        Args:
            inputs: ``{input name: array-like}``, or the array itself when
                the model has one input. A masked sequence input may be a
                list of unpadded sequences of different lengths.
            lengths: optional real lengths of a masked sequence input
                (``{name: ints}``, or the ints for a one-input model); the
                steps after each length are padding whatever they hold.

        Returns:
            ``{output name: np.ndarray}``.

        Raises:
            InputError: for any input the model cannot take.
        """
        feeds = self.prepare(inputs, lengths)
        batch = _batch_size(feeds, self.inputs)
        if batch <= self.batch_size:
            results = self.session.run(self.outputs, feeds)
            return dict(zip(self.outputs, results))
        chunks = []
        for start in range(0, batch, self.batch_size):
            rows = slice(start, start + self.batch_size)
            chunk = {
                name: _take(value, self.inputs[name]["batch_axis"], rows)
                for name, value in feeds.items()
            }
            chunks.append(self.session.run(self.outputs, chunk))
        return {
            entry["name"]: np.concatenate(
                [chunk[index] for chunk in chunks], axis=entry["batch_axis"]
            )
            for index, entry in enumerate(self.manifest["outputs"])
        }

    def prepare(self, inputs, lengths=None):
        """The checked feeds ``predict`` passes to onnxruntime."""
        inputs = self._by_name(inputs, "inputs")
        lengths = {} if lengths is None else self._by_name(
            lengths, "lengths"
        )
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise InputError(
                f"Unknown input(s) {unknown}. The model takes "
                f"{sorted(self.inputs)}."
            )
        for name in lengths:
            if name not in self.inputs or "padding" not in self.inputs[name]:
                padded = sorted(n for n, e in self.inputs.items()
                                if "padding" in e)
                raise InputError(
                    f"`lengths` given for '{name}', which is not a padded "
                    f"sequence input of this model (padded inputs: "
                    f"{padded})."
                )
        feeds = {
            name: _check_input(self.inputs[name], value, lengths.get(name))
            for name, value in inputs.items()
        }
        for name, entry in self.inputs.items():
            if name in feeds:
                continue
            if name in lengths and entry["padding"]["kind"] == "mask":
                # A mask input may be given as its lengths alone.
                feeds[name] = _mask_from_lengths(entry, lengths[name], feeds)
                continue
            raise InputError(
                f"Missing input '{name}' ({_describe(entry)}). The model "
                f"takes {sorted(self.inputs)}."
            )
        _check_sizes(feeds, self.inputs)
        return feeds

    def _by_name(self, values, argument):
        if isinstance(values, dict):
            return dict(values)
        sequences = [n for n, e in self.inputs.items() if e["time_axis"]
                     is not None]
        if len(self.inputs) == 1:
            return {next(iter(self.inputs)): values}
        if argument == "lengths" and len(sequences) == 1:
            return {sequences[0]: values}
        raise InputError(
            f"The model takes {sorted(self.inputs)}: pass `{argument}` as a "
            "dict {name: array}."
        )


def session_options(threads=None):
    """The ``onnxruntime.SessionOptions`` of every session this runtime
    opens: ``threads`` intra-op threads (None: onnxruntime's pool, one per
    core), which sleep between runs instead of spin-waiting, and no
    memory pattern.

    Spin-waiting makes back-to-back runs in a loop a little faster, but
    in a server it burns the cores the event loop and the clients need:
    measured with ``benchmarks/serving_load.py`` on 2 cores, the pool's
    spinning took 0.8 of a core and cut the answers per second by about
    a fifth. The memory pattern plans one block per input shape on a
    shape's second run and keeps it; with request shapes that vary it
    only holds memory (about 66 MB for one largest request here).
    """
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = False
    return options


class ManifestError(ValueError):
    """A manifest that contradicts its graph (or is not a manifest)."""


# onnxruntime's type strings -> the manifest's dtypes.
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32",
               "tensor(int64)": "int64", "tensor(bool)": "bool"}


def check_graph(manifest_path, graph_file, session, inputs, outputs):
    """Refuses a manifest whose inputs or outputs (names, dtypes, ranks,
    fixed sizes) are not the graph's: one line naming the file and the
    mismatch, at start-up rather than a 500 on every request."""
    where = f"{manifest_path} (for {graph_file})"
    for kind, entries, tensors in (
        ("input", inputs, session.get_inputs()),
        ("output", outputs, session.get_outputs()),
    ):
        graph = {tensor.name: tensor for tensor in tensors}
        named = [entry["name"] for entry in entries]
        if sorted(named) != sorted(graph):
            raise ManifestError(
                f"{where}: the manifest lists {kind}s {sorted(named)}, the "
                f"graph has {sorted(graph)}."
            )
        for entry in entries:
            tensor = graph[entry["name"]]
            dtype = _ORT_DTYPES.get(tensor.type, tensor.type)
            if dtype != entry["dtype"]:
                raise ManifestError(
                    f"{where}: {kind} '{entry['name']}' is {entry['dtype']} "
                    f"in the manifest, {dtype} in the graph."
                )
            shape = list(tensor.shape)
            if len(shape) != len(entry["shape"]) or any(
                isinstance(ours, int) and isinstance(theirs, int)
                and ours != theirs
                for ours, theirs in zip(entry["shape"], shape)
            ):
                raise ManifestError(
                    f"{where}: {kind} '{entry['name']}' has shape "
                    f"{entry['shape']} in the manifest, {shape} in the graph."
                )


def check_vocabulary(manifest_path, graph_path, inputs):
    """Refuses a manifest whose ``vocabulary_size`` for a token input is
    not the number of rows of the embedding table the input indexes (read
    with the ``onnx`` package when it is installed; without it this check
    is skipped)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return
    sized = {e["name"]: e["vocabulary_size"] for e in inputs
             if "vocabulary_size" in e}
    if not sized:
        return
    model = onnx.load(str(graph_path), load_external_data=False)
    tables = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Gather" or len(node.input) != 2:
            continue
        table, indices = node.input
        if indices in sized and table in tables:
            rows = numpy_helper.to_array(tables[table]).shape[0]
            if rows != sized[indices]:
                raise ManifestError(
                    f"{manifest_path}: input '{indices}' has "
                    f"vocabulary_size {sized[indices]} in the manifest, but "
                    f"its embedding table in {graph_path.name} has {rows} "
                    "rows."
                )


def _describe(entry):
    shape = ", ".join(str(size) for size in entry["shape"])
    return f"{entry['dtype']} of shape ({shape})"


def _check_input(entry, value, lengths):
    """One input as the array onnxruntime gets, or an InputError."""
    name = entry["name"]
    value = _as_array(entry, value)
    expected = entry["shape"]
    if value.ndim != len(expected):
        raise InputError(
            f"Input '{name}' must have rank {len(expected)} "
            f"({_describe(entry)}). Received: shape={value.shape}"
        )
    for axis, (size, want) in enumerate(zip(value.shape, expected)):
        if isinstance(want, int) and size != want:
            raise InputError(
                f"Input '{name}' must have size {want} on axis {axis} "
                f"({_describe(entry)}). Received: shape={value.shape}"
            )
        if size == 0:
            raise InputError(
                f"Input '{name}' is empty (size 0 on axis {axis}). "
                f"Received: shape={value.shape}"
            )
    value = _check_dtype(entry, value)
    if lengths is not None:
        value = _apply_lengths(entry, value, lengths)
    if value.dtype == np.float32:
        _check_finite(name, value)
    if "vocabulary_size" in entry:
        _check_tokens(entry, value)
    if "padding" in entry:
        _check_right_padded(entry, value, lengths is not None)
    return value


def _as_array(entry, value):
    """``np.asarray``, padding ragged sequences of a masked input."""
    try:
        return np.asarray(value)
    except ValueError:
        pass
    padding = entry.get("padding")
    name = entry["name"]
    if padding is None or padding["kind"] == "mask":
        raise InputError(
            f"Input '{name}' holds sequences of different lengths, and the "
            "model does not mask this input: pad them to one length "
            "yourself."
        )
    try:
        rows = [np.asarray(row) for row in value]
        steps = max(len(row) for row in rows)
        padded = np.full(
            (len(rows), steps) + rows[0].shape[1:], padding["value"],
            dtype=np.result_type(*rows),
        )
        for index, row in enumerate(rows):
            padded[index, :len(row)] = row
    except (TypeError, ValueError) as error:
        raise InputError(
            f"Input '{name}' is not a list of sequences with one feature "
            f"shape ({error})."
        ) from None
    return padded


def _check_dtype(entry, value):
    name, dtype = entry["name"], entry["dtype"]
    kind = value.dtype.kind
    if dtype == "float32":
        if kind != "f":
            raise InputError(
                f"Input '{name}' takes floating-point features (float32). "
                f"Received: dtype={value.dtype}"
            )
        return value.astype(np.float32, copy=False)
    if dtype == "bool":
        if kind == "b":
            return value
        if kind in "iu" and np.isin(value, (0, 1)).all():
            return value.astype(bool)
        raise InputError(
            f"Input '{name}' is a mask: booleans (or 0/1). Received: "
            f"dtype={value.dtype}"
        )
    if kind not in "iu":
        raise InputError(
            f"Input '{name}' takes integer ids ({dtype}). Received: "
            f"dtype={value.dtype}"
        )
    limits = np.iinfo(dtype)
    if value.size and (value.min() < limits.min or value.max() > limits.max):
        raise InputError(
            f"Input '{name}' has values outside the {dtype} range."
        )
    return value.astype(dtype, copy=False)


def _check_finite(name, value):
    finite = np.isfinite(value)
    if finite.all():
        return
    if np.isnan(value).all():
        raise InputError(f"Input '{name}' is all NaN.")
    position = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise InputError(
        f"Input '{name}' holds {int((~finite).sum())} NaN or infinite "
        f"value(s), the first at index {position}."
    )


def _check_tokens(entry, value):
    size = entry["vocabulary_size"]
    bad = (value < 0) | (value >= size)
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"Input '{entry['name']}' holds token id {value[position]} at "
            f"index {position}; the vocabulary has ids 0..{size - 1}."
        )


def _real_steps(entry, value):
    """Bool ``(batch, time)``: True at real (not padding) steps."""
    padding = entry["padding"]
    if padding["kind"] == "mask":
        return value
    if padding["kind"] == "tokens":
        return value != padding["value"]
    return (value != padding["value"]).reshape(
        value.shape[:2] + (-1,)
    ).any(axis=-1)


def _apply_lengths(entry, value, lengths):
    """Sets the steps after each row's length to the padding value."""
    steps = value.shape[1]
    lengths = _check_lengths(entry["name"], lengths, value.shape[0], steps)
    outside = np.arange(steps)[None, :] >= lengths[:, None]
    padding = entry["padding"]
    if padding["kind"] == "mask":
        return ~outside
    outside = outside.reshape(outside.shape + (1,) * (value.ndim - 2))
    return np.where(outside, np.asarray(padding["value"], value.dtype),
                    value)


def _check_right_padded(entry, value, from_lengths):
    """Every row: real steps first, then padding only."""
    real = _real_steps(entry, value)
    steps = value.shape[1]
    counts = real.sum(axis=1)
    expected = np.arange(steps)[None, :] < counts[:, None]
    wrong = np.flatnonzero((real != expected).any(axis=1))
    if not wrong.size:
        return
    row = int(wrong[0])
    gap = int(np.flatnonzero(~real[row])[0])
    later = int(np.flatnonzero(real[row, gap:])[0]) + gap
    what = {
        "tokens": "token 0",
        "steps": f"a step equal to {entry['padding'].get('value')}",
        "mask": "a False mask entry",
    }[entry["padding"]["kind"]]
    raise InputError(
        f"Input '{entry['name']}', row {row}: padding ({what}) at step "
        f"{gap} is followed by a real step at {later}. The model needs "
        "right-padded sequences: real steps first, padding only at the end."
        + (" (With `lengths`: a step inside a length equals the padding "
           "value.)" if from_lengths else "")
    )


def _check_lengths(name, lengths, batch, steps):
    lengths = np.asarray(lengths)
    if lengths.shape != (batch,) or lengths.dtype.kind not in "iu":
        raise InputError(
            f"`lengths` of input '{name}' must be {batch} integers (one per "
            f"row). Received: shape={lengths.shape}, dtype={lengths.dtype}"
        )
    if (lengths < 0).any() or (lengths > steps).any():
        row = int(np.flatnonzero((lengths < 0) | (lengths > steps))[0])
        raise InputError(
            f"`lengths` of input '{name}': row {row} has length "
            f"{lengths[row]}, outside 0..{steps} (the padded length)."
        )
    return lengths


def _mask_from_lengths(entry, lengths, feeds):
    """A mask input built from its lengths and the other inputs' time."""
    times = [value.shape[1] for value in feeds.values() if value.ndim >= 2]
    if not times:
        raise InputError(
            f"Input '{entry['name']}' is given by its lengths only, but no "
            "sequence input tells the padded length."
        )
    lengths = np.asarray(lengths)
    lengths = _check_lengths(entry["name"], lengths, len(lengths), times[0])
    return np.arange(times[0])[None, :] < lengths[:, None]


def _batch_size(feeds, entries):
    for name, value in feeds.items():
        axis = entries[name]["batch_axis"]
        if axis is not None:
            return value.shape[axis]
    return 1


def _check_sizes(feeds, entries):
    """Every input agrees on the batch size and on shared time axes."""
    seen = {}
    for name, value in feeds.items():
        entry = entries[name]
        for axis, dim in enumerate(entry["shape"]):
            if not isinstance(dim, str):
                continue
            size = value.shape[axis]
            if dim in seen and seen[dim][1] != size:
                other, other_size = seen[dim]
                raise InputError(
                    f"Input '{name}' has {dim} size {size} but input "
                    f"'{other}' has {other_size}; they must agree."
                )
            seen.setdefault(dim, (name, size))


def _take(value, axis, rows):
    if axis is None:
        return value
    index = [slice(None)] * value.ndim
    index[axis] = rows
    return value[tuple(index)]
