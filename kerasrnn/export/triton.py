"""Exported models -> a Triton Inference Server model repository.

    kerasrnn.export.to_triton(classifier, "models", name="sentiment")
    kerasrnn.export.to_triton(seq2seq, "models", name="dates")
    # tritonserver --model-repository=models

What is written (``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/1/``
for each model; every ``1/`` also holds the export's ``manifest.json``):

* a classifier or tagger (a Functional or Sequential model): ``<name>``,
  its ``model.onnx`` from ``to_onnx`` (checked against Keras as
  ``to_onnx`` checks), served by the ``onnxruntime`` backend with dynamic
  batching. With ``stateful``, state inputs paired with state outputs
  become Triton's implicit state (``sequence_batching`` with ``state``
  entries and a ``START`` control input that zeroes the state: the graph
  gets that input), for streaming one chunk per request.
* a ``Seq2Seq``: ``<name>_encoder`` and ``<name>_decoder_step`` (the two
  graphs of ``kerasrnn.export.generation``, dynamic batching), and the
  Python-backend models ``<name>`` (text or ids in, generated text out)
  and ``<name>_stream`` (decoupled: one response per token). Their
  ``model.py`` runs ``kerasrnn_serving.Generator`` -- the greedy,
  sampling and beam searches of ``kerasrnn_serving.search`` -- whose
  every graph call is a BLS request (``pb_utils.InferenceRequest``) to
  the onnxruntime models, so concurrent generations share their batches.
* a ``LanguageModel``: ``<name>_prompt``, ``<name>_step``, ``<name>`` and
  ``<name>_stream`` likewise.

The step graph Triton serves differs from ``to_onnx``'s in two inputs
only, so that every input has the batch axis first (as a batching model
needs): ``top_k`` is ``(batch, 1)`` (the graph takes the largest, so the
rows of a merged batch get that many candidates, best first: take the
first ``top_k``) and ``forbid_end`` is ``(batch,)``, per row; the export
checks it against the original graph. Triton merges into one batch only
requests whose non-batch dims agree: the encoder batches sources of one
length, a step with attention requests of one source length.

``backend="python"`` serves each ONNX graph with a small Python-backend
``model.py`` that runs onnxruntime itself (same configs, batching the
requests of one execution that agree in shape), for Triton builds
without the onnxruntime backend, such as the server inside
``nvidia-pytriton``. The Python-backend models need ``kerasrnn_serving``
(numpy and onnxruntime; no TensorFlow, no Keras) in Triton's Python
environment: ``pip install --no-deps kerasrnn`` plus ``pip install numpy
onnxruntime``, or kerasrnn's source directory on ``PYTHONPATH``. The
Python backend of Triton 24.x (and of ``nvidia-pytriton`` 0.7) needs
numpy < 2 there: with numpy 2 every response fails with "output tensor
shape does not match size of output". ``model.py`` uses ``async def
execute``: Triton >= 24.04.
"""

import pathlib
import re
import shutil
import tempfile

import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper

from kerasrnn_serving import manifest as manifest_lib

VERSION = "1"
CONFIG_FILE = "config.pbtxt"
README_FILE = "README.md"
MODEL_FILE = "model.onnx"
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
BACKENDS = ("onnxruntime", "python")
DATA_TYPES = {"float32": "TYPE_FP32", "int32": "TYPE_INT32",
              "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
# A Triton model name: one path component.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# The sequence batcher forgets a sequence idle this long.
SEQUENCE_IDLE_MICROSECONDS = 5_000_000
START = "START"
STEP_GRAPHS = ("decoder_step", "step")
# The inputs of a step graph that become per-row for Triton.
TOP_K, FORBID_END = "top_k", "forbid_end"

__all__ = ["config_text", "to_triton"]


def to_triton(model, repository, *, name=None, max_batch_size=64,
              max_queue_delay_microseconds=500, instance_count=1,
              kind="cpu", backend="onnxruntime", stateful=False,
              output_names=None, python_path=None, verify=True):
    """Writes ``model`` into the Triton model repository ``repository``.

    Args:
        model: a Functional or Sequential classifier or tagger, a
            ``kerasrnn.models.Seq2Seq`` or a ``LanguageModel``.
        repository: the repository directory (created if needed); the
            models written replace same-named ones, others are kept.
        name: the (main) Triton model's name (default: the model's name);
            a generation model's graphs get ``_encoder``,
            ``_decoder_step``, ``_prompt``, ``_step`` after it and its
            streaming model ``_stream``.
        max_batch_size: the most rows one execution of an ONNX graph
            takes (Triton's ``max_batch_size``; the generation models
            split larger calls). 0: no batching (dims with the batch axis,
            no dynamic batcher).
        max_queue_delay_microseconds: how long the dynamic (or sequence)
            batcher waits to fill a batch.
        instance_count: instances of each model (``instance_group``).
        kind: ``"cpu"`` or ``"gpu"``, the ONNX graphs' instance kind
            (the generation loop runs on the host: ``KIND_CPU``).
        backend: ``"onnxruntime"`` or ``"python"`` for the ONNX graphs
            (see the module doc).
        stateful: a one-graph model only: True to pair each state input
            ``s`` with the output ``new_s``, ``s_out`` (or ``x_out`` for
            ``x_in``), or ``{input: output}``; served with implicit state
            by the onnxruntime backend.
        output_names: as ``to_onnx`` (a one-graph model).
        python_path: a directory the generation models put first on
            ``sys.path`` before importing ``kerasrnn_serving`` (the config
            parameter ``python_path``; default: none, it is installed).
        verify: check the exports against Keras (``to_onnx``) and the
            graphs Triton serves against the exported ones.

    Returns:
        ``{"repository", "models": {name: {"role", "backend", "config"}},
        "manifest", "readme"}``; the readme (how to serve and query the
        models) is also written as ``<repository>/<name>/README.md``.

    Raises:
        ValueError: for a bad argument or a model it cannot export.
    """
    from kerasrnn.export.onnx import to_onnx
    from kerasrnn.models import LanguageModel
    from kerasrnn.models import Seq2Seq
    from kerasrnn.models.captioning import ImageCaptioner

    if isinstance(model, ImageCaptioner):
        raise ValueError(
            "to_triton does not export an ImageCaptioner yet: use "
            "kerasrnn.export.to_onnx and serve it with kerasrnn_serving."
        )

    options = _check_options(max_batch_size, max_queue_delay_microseconds,
                             instance_count, kind, backend)
    options["python_path"] = "" if python_path is None else str(python_path)
    name = _model_name(model, name)
    generation = isinstance(model, (Seq2Seq, LanguageModel))
    if generation and stateful:
        raise ValueError(
            "`stateful` applies to one-graph models; a generation model's "
            "state travels with each request (beam search reorders it)."
        )
    if stateful and backend != "onnxruntime":
        raise ValueError(
            "Implicit state (`stateful`) needs the onnxruntime backend: "
            "Triton's Python backend has no implicit state."
        )
    if stateful and max_batch_size == 0:
        raise ValueError(
            "`stateful` needs max_batch_size >= 1: the sequence batcher "
            "keeps each sequence's state as one row of a batch."
        )
    repository = pathlib.Path(repository)
    with tempfile.TemporaryDirectory() as scratch:
        if generation:
            manifest = to_onnx(model, scratch, verify=verify)
            graphs = {graph: onnx.load(str(pathlib.Path(scratch) /
                                           entry["file"]))
                      for graph, entry in manifest["graphs"].items()}
        else:
            manifest = to_onnx(model, scratch, output_names=output_names,
                               verify=verify)
            graphs = {None: onnx.load(str(pathlib.Path(scratch) /
                                          MODEL_FILE))}
    if generation:
        models = _generation_models(name, manifest, graphs, options,
                                    verify)
    else:
        models = _one_graph_models(name, manifest, graphs[None], options,
                                   stateful, verify)
    readme = _readme(name, manifest, models, options)
    manifest["triton"] = _changes(manifest, stateful)
    repository.mkdir(parents=True, exist_ok=True)
    written = {}
    for model_name, spec in models.items():
        directory = repository / model_name
        if directory.exists():
            shutil.rmtree(directory)
        version = directory / VERSION
        version.mkdir(parents=True)
        (directory / CONFIG_FILE).write_text(spec["config"])
        for file_name, content in spec["files"].items():
            if isinstance(content, onnx.ModelProto):
                onnx.save_model(content, str(version / file_name))
            else:
                (version / file_name).write_text(content)
        manifest_lib.write(version, manifest)
        written[model_name] = {"role": spec["role"],
                               "backend": spec["backend"],
                               "config": str(directory / CONFIG_FILE)}
    (repository / name / README_FILE).write_text(readme)
    return {"repository": str(repository), "models": written,
            "manifest": manifest, "readme": readme}


def _changes(manifest, stateful):
    """What the graphs Triton serves change from the export's (recorded
    in the manifest copies)."""
    if "graphs" in manifest:
        step = next(g for g in manifest["graphs"] if g in STEP_GRAPHS)
        return {"changed_inputs": {step: {TOP_K: ["batch", 1],
                                          FORBID_END: ["batch"]}}}
    if stateful:
        return {"added_inputs": {START: ["batch", 1]}}
    return {}


def _check_options(max_batch_size, delay, count, kind, backend):
    for label, value, low in (("max_batch_size", max_batch_size, 0),
                              ("max_queue_delay_microseconds", delay, 0),
                              ("instance_count", count, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or (
            value < low
        ):
            raise ValueError(
                f"`{label}` must be an integer >= {low}. Received: "
                f"{label}={value!r}"
            )
    if kind not in KINDS:
        raise ValueError(
            f"`kind` must be one of {sorted(KINDS)}. Received: kind={kind!r}"
        )
    if backend not in BACKENDS:
        raise ValueError(
            f"`backend` must be one of {list(BACKENDS)}. Received: "
            f"backend={backend!r}"
        )
    return {"max_batch_size": max_batch_size, "delay": delay,
            "count": count, "kind": kind, "backend": backend}


def _model_name(model, name):
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name).lstrip(".")
        return name or "model"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "`name` must be a Triton model name: letters, digits, '_', '.' "
            f"and '-', not starting with '.' or '-'. Received: name={name!r}"
        )
    return name


# --- config text -------------------------------------------------------------


class Enum(str):
    """An enum value in a config: written unquoted (``TYPE_FP32``)."""


def config_text(config, comments=()):
    """``config`` (a dict of ``ModelConfig`` fields: dicts for messages,
    lists for repeated fields, ``Enum`` for enum values) in protobuf text
    format, after ``comments`` (lines written as ``# ...``)."""
    lines = [f"# {line}".rstrip() for line in comments]
    return "\n".join(lines + _fields(config, 0)) + "\n"


def _fields(message, depth, width=79):
    """The lines of ``message``'s fields; a message or list item that
    fits on its line is written on it."""
    pad = "  " * depth
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            inline = f"{pad}{key} {_inline(value)}"
            if len(inline) <= width:
                lines.append(inline)
            else:
                lines += [f"{pad}{key} {{", *_fields(value, depth + 1),
                          f"{pad}}}"]
        elif isinstance(value, list) and value and all(
            isinstance(item, dict) for item in value
        ):
            lines.append(f"{pad}{key} [")
            for index, item in enumerate(value):
                comma = "," if index < len(value) - 1 else ""
                inline = f"{pad}  {_inline(item)}{comma}"
                if len(inline) <= width:
                    lines.append(inline)
                else:
                    lines += [f"{pad}  {{", *_fields(item, depth + 2),
                              f"{pad}  }}{comma}"]
            lines.append(f"{pad}]")
        else:
            lines.append(f"{pad}{key}{_value(value)}")
    return lines


def _inline(message):
    """``message`` on one line: ``{ name: "x" dims: [ 8 ] }``."""
    parts = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            parts.append(f"{key} {_inline(value)}")
        elif isinstance(value, list) and value and all(
            isinstance(item, dict) for item in value
        ):
            items = ", ".join(_inline(item) for item in value)
            parts.append(f"{key} [ {items} ]")
        else:
            parts.append(f"{key}{_value(value)}")
    return "{ " + " ".join(parts) + " }" if parts else "{ }"


def _value(value):
    """``: value`` of a scalar or scalar-list field."""
    if isinstance(value, list):
        items = ", ".join(_scalar(item) for item in value)
        return f": [ {items} ]" if items else ": []"
    return f": {_scalar(value)}"


def _scalar(value):
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if not value.isprintable():
            raise ValueError(f"Cannot write {value!r} in a config.")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"Cannot write {type(value).__name__} in a config.")


def _parameters(values):
    """A ``parameters`` map: ``{key: string}``."""
    return [{"key": key, "value": {"string_value": str(value)}}
            for key, value in values.items()]


def _tensor(entry, batched):
    """A config ``input``/``output`` entry for a manifest tensor entry:
    dims without the batch axis when ``batched`` (-1 for a variable
    axis); a per-row scalar is ``dims: [1]`` reshaped to ``[]``."""
    shape = list(entry["shape"])
    if batched:
        if entry.get("batch_axis") != 0:
            raise ValueError(
                f"Tensor '{entry['name']}' has shape {shape}: Triton "
                "batches along the first axis, which must be the batch "
                "axis (export with max_batch_size=0 to serve it "
                "unbatched)."
            )
        shape = shape[1:]
    dims = [size if isinstance(size, int) else -1 for size in shape]
    tensor = {"name": entry["name"],
              "data_type": Enum(_data_type(entry)), "dims": dims}
    if batched and not dims:
        tensor["dims"] = [1]
        tensor["reshape"] = {"shape": []}
    return tensor


def _data_type(entry):
    try:
        return DATA_TYPES[entry["dtype"]]
    except KeyError:
        raise ValueError(
            f"Tensor '{entry['name']}' has dtype {entry['dtype']}; Triton "
            f"export supports {sorted(DATA_TYPES)}."
        ) from None


def _variable_axes(entries):
    return sorted({f"'{size or 'unnamed'}'" for entry in entries
                   for size in entry["shape"][1:]
                   if isinstance(size, str) or size is None})


def _onnx_config(model_name, role, inputs, outputs, options, comments,
                 scheduling=None):
    """The config of one ONNX graph (``inputs``/``outputs``: manifest
    entries)."""
    batched = options["max_batch_size"] > 0
    python = options["backend"] == "python"
    variable = _variable_axes(inputs)
    lines = [f"{role} (written by kerasrnn.export.to_triton)."]
    lines += comments
    if batched:
        lines.append(
            ("Dynamic" if scheduling is None else "Sequence")
            + " batching merges only requests whose non-batch dims "
            "agree"
            + (f": {'the axes' if len(variable) > 1 else 'the axis'} "
               f"{', '.join(variable)} (-1 in dims) must be equal across "
               "a batch (pad or bucket sequences client-side)."
               if variable else "."))
    if python:
        lines.append("Python backend: model.py runs model.onnx with "
                     "onnxruntime (for a Triton without the onnxruntime "
                     "backend).")
    config = {
        "name": model_name,
        "backend": options["backend"],
        "max_batch_size": options["max_batch_size"],
        "input": [_tensor(e, batched) for e in inputs],
        "output": [_tensor(e, batched) for e in outputs],
    }
    if scheduling is not None:
        config["sequence_batching"] = scheduling
    elif batched:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": options["delay"]}
    config["instance_group"] = [{"count": options["count"],
                                 "kind": Enum(KINDS[options["kind"]])}]
    if python:
        config["parameters"] = _parameters({"onnx_file": MODEL_FILE})
    return config_text(config, _wrap(lines))


def _wrap(lines, width=76):
    wrapped = []
    for line in lines:
        words, current = line.split(), ""
        for word in words:
            if current and len(current) + 1 + len(word) > width:
                wrapped.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        wrapped.append(current)
    return wrapped


def _graph_files(proto, options):
    files = {MODEL_FILE: proto}
    if options["backend"] == "python":
        files["model.py"] = ONNX_RUNNER
    return files


# --- one-graph models --------------------------------------------------------


def _one_graph_models(name, manifest, proto, options, stateful, verify):
    inputs, outputs = manifest["inputs"], manifest["outputs"]
    scheduling = None
    comments = []
    if stateful:
        pairs = _state_pairs(manifest, stateful)
        resettable = _resettable(proto, pairs, manifest)
        if verify:
            _check_resettable(proto, resettable, pairs, manifest)
        proto = resettable
        scheduling = _sequence_batching(pairs, manifest, options)
        inputs = [e for e in inputs if e["name"] not in pairs]
        outputs = [e for e in outputs if e["name"] not in pairs.values()]
        comments.append(
            "Implicit state: each request of a sequence continues the "
            "state the previous one left (Triton keeps it); START (set by "
            "Triton at a sequence's first request) zeroes it. Send "
            "sequence_id, sequence_start and sequence_end with each "
            "request.")
    role = "Classifier" if not stateful else "Streaming model"
    config = _onnx_config(name, f"{role} '{manifest['model_name']}'",
                          inputs, outputs, options, comments, scheduling)
    return {name: {"role": "model", "backend": options["backend"],
                   "config": config,
                   "files": _graph_files(proto, options)}}


def _state_pairs(manifest, stateful):
    """``{state input: state output}``, checked."""
    inputs = {e["name"]: e for e in manifest["inputs"]}
    outputs = {e["name"]: e for e in manifest["outputs"]}
    if isinstance(stateful, dict):
        pairs = dict(stateful)
    elif stateful is True:
        pairs = {}
        for state in inputs:
            candidates = [f"new_{state}", f"{state}_out"]
            if state.endswith("_in"):
                candidates.append(f"{state[:-3]}_out")
            found = [c for c in candidates if c in outputs]
            if found:
                pairs[state] = found[0]
        if not pairs:
            raise ValueError(
                "stateful=True pairs each state input `s` with an output "
                "named `new_s` or `s_out` (`x_out` for `x_in`); model "
                f"inputs {sorted(inputs)}, outputs {sorted(outputs)} have "
                "none. Pass stateful={input: output}."
            )
    else:
        raise ValueError(
            "`stateful` must be False, True or {state input: state "
            f"output}}. Received: stateful={stateful!r}"
        )
    for state, output in pairs.items():
        if state not in inputs or output not in outputs:
            raise ValueError(
                f"stateful: '{state}' -> '{output}' must name an input and "
                f"an output. Inputs: {sorted(inputs)}; outputs: "
                f"{sorted(outputs)}."
            )
        shape_in, shape_out = inputs[state]["shape"], outputs[output][
            "shape"]
        if inputs[state]["dtype"] != "float32" or shape_in[0] != "batch" or (
            not all(isinstance(size, int) for size in shape_in[1:])
        ) or [size for size in shape_out[1:]] != shape_in[1:]:
            raise ValueError(
                f"State '{state}' {shape_in} -> '{output}' {shape_out}: "
                "implicit state needs float32 states of one fixed shape, "
                "batch axis first (as state_layout='keras')."
            )
    if len(pairs) == len(inputs):
        raise ValueError(
            "stateful: every input is a state; the model needs an input "
            "that is not."
        )
    return pairs


def _resettable(proto, pairs, manifest):
    """The graph with a ``START`` input ``(batch, 1)`` int32: where it is
    1 the state inputs read as zeros."""
    inputs = {e["name"]: e for e in manifest["inputs"]}
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    renames = {state: f"triton/{state}" for state in pairs}
    for node in graph.node:
        for index, value in enumerate(node.input):
            if value in renames:
                node.input[index] = renames[value]
    nodes = [helper.make_node("Cast", [START], ["triton/start"],
                              name="triton/start", to=onnx.TensorProto.BOOL)]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32),
                                            "triton/zero")]
    for state, renamed in renames.items():
        rank = len(inputs[state]["shape"])
        condition = "triton/start"
        if rank > 2:
            axes = f"triton/{state}/axes"
            initializers.append(numpy_helper.from_array(
                np.arange(2, rank, dtype=np.int64), axes))
            condition = f"triton/{state}/start"
            nodes.append(helper.make_node("Unsqueeze", ["triton/start", axes],
                                          [condition], name=condition))
        nodes.append(helper.make_node("Where",
                                      [condition, "triton/zero", state],
                                      [renamed], name=renamed))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    graph.initializer.extend(initializers)
    graph.input.append(helper.make_tensor_value_info(
        START, onnx.TensorProto.INT32, ["batch", 1]))
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_resettable(original, resettable, pairs, manifest, batch=3):
    """START=0 gives the original graph's outputs; START=1 those from zero
    states."""
    from kerasrnn.export.onnx import sample_inputs

    feeds = sample_inputs(manifest, batch, 5)
    zeroed = {**feeds, **{s: np.zeros_like(feeds[s]) for s in pairs}}
    start = np.array([[0], [1], [0]][:batch], np.int32)
    expected = [np.where(start.reshape((-1,) + (1,) * (a.ndim - 1)) == 1,
                         b, a)
                for a, b in zip(_run(original, feeds), _run(original,
                                                            zeroed))]
    received = _run(resettable, {**feeds, START: start})
    _same("the stateful graph", received, expected)


def _sequence_batching(pairs, manifest, options):
    inputs = {e["name"]: e for e in manifest["inputs"]}
    states = []
    for state, output in pairs.items():
        dims = list(inputs[state]["shape"][1:])
        states.append({
            "input_name": state, "output_name": output,
            "data_type": Enum("TYPE_FP32"), "dims": dims,
            "initial_state": [{"data_type": Enum("TYPE_FP32"),
                               "dims": dims, "zero_data": True,
                               "name": f"{state}_zeros"}],
        })
    return {
        "max_sequence_idle_microseconds": SEQUENCE_IDLE_MICROSECONDS,
        "control_input": [{"name": START, "control": [{
            "kind": Enum("CONTROL_SEQUENCE_START"),
            "int32_false_true": [0, 1]}]}],
        "state": states,
        "oldest": {
            "max_candidate_sequences": max(options["max_batch_size"], 1),
            "max_queue_delay_microseconds": options["delay"],
        },
    }


# --- generation models -------------------------------------------------------


def _generation_models(name, manifest, graphs, options, verify):
    kind = manifest["kind"]
    models = {}
    names = {}
    for graph, proto in graphs.items():
        entry = manifest["graphs"][graph]
        inputs = entry["inputs"]
        comments = []
        if graph in STEP_GRAPHS:
            batchable = batchable_step(proto)
            if verify:
                check_batchable_step(proto, batchable, manifest, graph)
            proto = batchable
            inputs = _batchable_entries(inputs)
            comments.append(
                "top_k is per row here (the graph takes the largest of a "
                "batch: read the first top_k of top_log_probs/top_ids), "
                "forbid_end per row.")
        model_name = f"{name}_{graph}"
        names[graph] = model_name
        role = f"Graph '{graph}' of {kind} '{manifest['model_name']}'"
        models[model_name] = {
            "role": graph, "backend": options["backend"],
            "config": _onnx_config(model_name, role, inputs,
                                   entry["outputs"], options, comments),
            "files": _graph_files(proto, options),
        }
    for decoupled in (False, True):
        model_name = f"{name}_stream" if decoupled else name
        models[model_name] = {
            "role": "stream" if decoupled else "generate",
            "backend": "python",
            "config": _generate_config(model_name, manifest, names, options,
                                       decoupled),
            "files": {"model.py": GENERATE_MODEL},
        }
    return models


def _batchable_entries(entries):
    shapes = {TOP_K: ["batch", 1], FORBID_END: ["batch"]}
    return [manifest_lib.tensor_entry(e["name"], e["dtype"],
                                      shapes[e["name"]])
            if e["name"] in shapes else e for e in entries]


def batchable_step(proto):
    """A step graph whose ``top_k`` is ``(batch, 1)`` int64 (the graph
    uses the largest) and ``forbid_end`` ``(batch,)`` bool (per row):
    every input batch-first, as Triton's batching needs."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    renames = {TOP_K: "triton/top_k", FORBID_END: "triton/forbid_end"}
    for node in graph.node:
        for index, value in enumerate(node.input):
            if value in renames:
                node.input[index] = renames[value]
    nodes = [
        helper.make_node("ReduceMax", [TOP_K], [renames[TOP_K]],
                         name=renames[TOP_K], axes=[0], keepdims=0),
        helper.make_node("Unsqueeze", [FORBID_END, "triton/axis_1"],
                         [renames[FORBID_END]], name=renames[FORBID_END]),
    ]
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    graph.initializer.append(numpy_helper.from_array(
        np.array([1], np.int64), "triton/axis_1"))
    shapes = {TOP_K: (onnx.TensorProto.INT64, ["batch", 1]),
              FORBID_END: (onnx.TensorProto.BOOL, ["batch"])}
    for index, value in enumerate(graph.input):
        if value.name in shapes:
            graph.input[index].CopyFrom(helper.make_tensor_value_info(
                value.name, *shapes[value.name]))
    onnx.checker.check_model(model, full_check=True)
    return model


def check_batchable_step(original, batchable, manifest, graph, batch=4,
                         seed=0):
    """Runs both step graphs on random states: with one ``top_k`` and
    ``forbid_end`` for all rows they agree exactly; with ``forbid_end``
    per row each row equals the original run with its own flag."""
    rng = np.random.default_rng(seed)
    entry = manifest["graphs"][graph]
    sizes = manifest["vocabulary_sizes"]
    vocabulary = sizes.get("target", sizes.get("tokens"))
    feeds = {}
    for tensor in entry["inputs"]:
        if tensor["name"] in (TOP_K, FORBID_END):
            continue
        shape = [batch if size == "batch" else size if isinstance(size, int)
                 else 5 for size in tensor["shape"]]
        if tensor["dtype"] == "bool":
            value = rng.random(shape) < 0.7
            value[..., 0] = True
        elif tensor["dtype"].startswith("int"):
            value = rng.integers(0, vocabulary, shape).astype(
                tensor["dtype"])
        else:
            value = rng.normal(size=shape).astype(tensor["dtype"])
        feeds[tensor["name"]] = value
    count = min(3, vocabulary)
    flags = np.array([True, False] * (batch // 2) + [True] * (batch % 2))
    runs = {flag: _run(original, {**feeds, TOP_K: np.array([count]),
                                  FORBID_END: np.array(flag)})
            for flag in (False, True)}
    rows = {TOP_K: np.full((batch, 1), count, np.int64)}
    for flag in (False, True):
        received = _run(batchable, {**feeds, **rows,
                                    FORBID_END: np.full(batch, flag)})
        _same("the Triton step graph", received, runs[flag])
    received = _run(batchable, {**feeds, **rows, FORBID_END: flags})
    expected = [np.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
                for a, b in zip(runs[True], runs[False])]
    _same("the Triton step graph (forbid_end per row)", received, expected)


def _run(proto, feeds):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {value.name for value in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def _same(what, received, expected):
    for ours, theirs in zip(received, expected):
        if ours.shape != theirs.shape or not np.array_equal(
            ours, theirs, equal_nan=ours.dtype.kind == "f"
        ):
            raise RuntimeError(
                f"{what} differs from the exported graph: the Triton "
                "export is wrong. Please report this with the model's "
                "configuration."
            )


def _generate_config(model_name, manifest, graph_models, options,
                     decoupled):
    seq2seq = manifest["kind"] == "seq2seq"
    ids = "SOURCE_IDS" if seq2seq else "PROMPT_IDS"
    lengths = "SOURCE_LENGTHS" if seq2seq else "PROMPT_LENGTHS"
    text = {"name": "TEXT", "data_type": Enum("TYPE_STRING"),
            "dims": [1]}
    options_input = {"name": "OPTIONS", "data_type": Enum("TYPE_STRING"),
                     "dims": [1], "optional": True}
    if decoupled:
        inputs = [text, options_input]
        outputs = [("OUTPUT_TEXT", "TYPE_STRING", [1]),
                   ("OUTPUT_IDS", "TYPE_INT32", [1]),
                   ("RESULTS", "TYPE_STRING", [1])]
    else:
        inputs = [
            {**text, "optional": True},
            {"name": ids, "data_type": Enum("TYPE_INT32"),
             "dims": [-1], "optional": True, "allow_ragged_batch": True},
            {"name": lengths, "data_type": Enum("TYPE_INT32"),
             "dims": [1], "optional": True},
            options_input,
        ]
        outputs = [("OUTPUT_TEXT", "TYPE_STRING", [1]),
                   ("OUTPUT_IDS", "TYPE_INT32", [-1, -1]),
                   ("OUTPUT_LENGTHS", "TYPE_INT32", [-1]),
                   ("SCORES", "TYPE_FP32", [-1]),
                   ("RESULTS", "TYPE_STRING", [1])]
    parameters = {f"{graph}_model": model
                  for graph, model in graph_models.items()}
    parameters["graph_max_batch_size"] = options["max_batch_size"]
    parameters["concurrency"] = 8
    parameters["python_path"] = options["python_path"]
    config = {
        "name": model_name,
        "backend": "python",
        "max_batch_size": 0 if decoupled else max(options["max_batch_size"],
                                                  1),
        "input": inputs,
        "output": [{"name": n, "data_type": Enum(t), "dims": d}
                   for n, t, d in outputs],
    }
    if decoupled:
        config["model_transaction_policy"] = {"decoupled": True}
    else:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": options["delay"]}
    config["instance_group"] = [{"count": options["count"],
                                 "kind": Enum("KIND_CPU")}]
    config["parameters"] = _parameters(parameters)
    graphs = ", ".join(graph_models.values())
    what = "source" if seq2seq else "prompt"
    if decoupled:
        lines = [
            f"Streaming generation for {manifest['kind']} "
            f"'{manifest['model_name']}' (written by "
            "kerasrnn.export.to_triton): decoupled, one TEXT per request; "
            "a response per decoded token (OUTPUT_TEXT: the piece, "
            "OUTPUT_IDS: the id), then one with RESULTS (the JSON answer) "
            "and the final flag. Beam search sends only the answer. Use "
            "gRPC streaming or the HTTP generate_stream endpoint.",
        ]
    else:
        lines = [
            f"Generation for {manifest['kind']} '{manifest['model_name']}' "
            "(written by kerasrnn.export.to_triton). Per row: TEXT or "
            f"{ids} (int32, padded; {lengths} optional) in; OUTPUT_TEXT "
            "(the best), OUTPUT_IDS [hypotheses, length], OUTPUT_LENGTHS, "
            "SCORES and RESULTS (JSON: every hypothesis) out.",
            "The dynamic batcher gathers requests (of any lengths: the "
            "ids are ragged); rows with the same options are decoded "
            "together, so each graph call holds all of them.",
        ]
    lines += [
        "Options (method, max_length, beam_width, length_penalty_weight, "
        "num_return, min_length, temperature, top_k, top_p, seed, "
        "num_samples, unknown, stop_at_eos, attention) as request "
        "parameters or a JSON object per row in OPTIONS, as "
        "kerasrnn_serving's /v1/generate takes them.",
        f"The decoding loop (kerasrnn_serving.search) calls {graphs} by "
        "BLS" + (f"; concurrent streams (up to 'concurrency' per instance) "
                 f"share those models' batches when their {what} lengths "
                 "agree." if decoupled else ".")
        + " Needs kerasrnn_serving, numpy and onnxruntime in Triton's "
        "Python environment (or python_path: kerasrnn's source).",
    ]
    return config_text(config, _wrap(lines))


# --- readme -------------------------------------------------------------------


def _readme(name, manifest, models, options):
    kind = manifest.get("kind", "classifier")
    rows = "\n".join(f"| `{model_name}` | {spec['role']} | "
                     f"{spec['backend']} |"
                     for model_name, spec in models.items())
    lines = [
        f"# Triton models for `{manifest['model_name']}` ({kind})",
        "",
        "Written by `kerasrnn.export.to_triton`.",
        "",
        "| model | role | backend |",
        "|---|---|---|",
        rows,
        "",
        "Serve the repository:",
        "",
        "    tritonserver --model-repository=<repository>",
        "",
        "Batching: Triton's dynamic batcher merges into one execution only",
        "requests whose non-batch dims agree (a variable axis, -1 in",
        "`dims`, must be equal across the batch): pad or bucket sequence",
        "lengths client-side to batch more.",
        "",
    ]
    if kind == "classifier":
        entry = manifest["inputs"][0]
        lines += [
            "Query it (KServe v2 HTTP):",
            "",
            f"    curl -X POST localhost:8000/v2/models/{name}/infer -d \\",
            f"      '{{\"inputs\": [{{\"name\": \"{entry['name']}\", "
            f"\"datatype\": \"{_data_type(entry)[5:]}\", ...}}]}}'",
            "",
        ]
    else:
        ids = "SOURCE_IDS" if kind == "seq2seq" else "PROMPT_IDS"
        lines += [
            f"`{name}` (text or `{ids}` in, text out) and `{name}_stream`",
            "(decoupled, one response per token) run kerasrnn_serving's",
            "decoding loop in Triton's Python backend and call the graph",
            "models by BLS. Their Python environment needs",
            "`kerasrnn_serving` with numpy and onnxruntime",
            "(`pip install --no-deps kerasrnn` and",
            "`pip install \"numpy<2\" onnxruntime`; numpy < 2 for the",
            "Python backend of Triton 24.x), Triton >= 24.04.",
            "",
            "    curl -X POST localhost:8000/v2/models/"
            f"{name}/infer -d \\",
            "      '{\"inputs\": [{\"name\": \"TEXT\", \"datatype\": "
            "\"BYTES\", \"shape\": [1, 1],",
            "                   \"data\": [\"...\"]}],",
            "        \"parameters\": {\"method\": \"beam\", "
            "\"beam_width\": 4}}'",
            "",
            f"    curl -N -X POST localhost:8000/v2/models/{name}_stream/"
            "generate_stream \\",
            "      -d '{\"TEXT\": \"...\", \"parameters\": "
            "{\"max_length\": 20}}'",
            "",
            "The step model's `top_k` input is per row (`[batch, 1]`): the",
            "graph returns the largest `top_k` of its batch; read the",
            "first `top_k` columns of `top_log_probs`/`top_ids`.",
            "",
        ]
    if options["backend"] == "python":
        lines += [
            "The ONNX graphs run in Python-backend models (onnxruntime in",
            "`model.py`), for a Triton without the onnxruntime backend.",
            "",
        ]
    return "\n".join(lines)


# --- model.py templates -------------------------------------------------------


ONNX_RUNNER = '''\
"""Triton Python-backend model: runs model.onnx with onnxruntime.

Written by kerasrnn.export.to_triton (backend="python") for a Triton
without the onnxruntime backend. The requests of one execution that agree
in every non-batch dim run as one batch, as the onnxruntime backend
batches them.
"""

import json
import pathlib

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in
                      config.get("parameters", {}).items()}
        directory = pathlib.Path(args["model_repository"]) / args[
            "model_version"]
        options = onnxruntime.SessionOptions()
        threads = parameters.get("intra_op_thread_count")
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = [CPU]
        if args.get("model_instance_kind") == "GPU" and (
            CUDA in onnxruntime.get_available_providers()
        ):
            device = int(args.get("model_instance_device_id", 0))
            providers = [(CUDA, {"device_id": device}), CPU]
        self.session = onnxruntime.InferenceSession(
            str(directory / parameters.get("onnx_file", "model.onnx")),
            options, providers=providers)
        self.inputs = [value.name for value in self.session.get_inputs()]
        self.outputs = [value.name for value in self.session.get_outputs()]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests):
        responses = [None] * len(requests)
        feeds, groups = {}, {}
        for index, request in enumerate(requests):
            try:
                feed = self._feeds(request)
            except ValueError as error:
                responses[index] = _error(error)
                continue
            feeds[index] = feed
            key = tuple((name, feed[name].shape[self.batched:],
                         feed[name].dtype.str) for name in self.inputs)
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            try:
                results = self._run([feeds[index] for index in indices])
            except Exception as error:  # onnxruntime refused the inputs
                for index in indices:
                    responses[index] = _error(error)
                continue
            for index, values in zip(indices, results):
                responses[index] = pb_utils.InferenceResponse([
                    pb_utils.Tensor(name, np.ascontiguousarray(value))
                    for name, value in zip(self.outputs, values)])
        return responses

    def _feeds(self, request):
        feed = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"The request lacks the input '{name}'.")
            feed[name] = tensor.as_numpy()
        return feed

    def _run(self, feeds):
        if not self.batched or len(feeds) == 1:
            return [self.session.run(self.outputs, feed) for feed in feeds]
        rows = [len(feed[self.inputs[0]]) for feed in feeds]
        merged = {name: np.concatenate([feed[name] for feed in feeds])
                  for name in self.inputs}
        values = self.session.run(self.outputs, merged)
        bounds = np.cumsum(rows)[:-1]
        return list(zip(*(np.split(value, bounds) for value in values)))


def _error(error):
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(f"{type(error).__name__}: {error}"))
'''


GENERATE_MODEL = '''\
"""Triton Python-backend model: generation for a kerasrnn Seq2Seq or
LanguageModel, written by kerasrnn.export.to_triton.

The decoding loop is kerasrnn_serving's: Generator and the searches of
kerasrnn_serving.search (greedy, sampling, beam search), with the
options of its /v1/generate endpoint. Each graph call
is a BLS request to the onnxruntime models this model's config names
(parameters "<graph>_model"), so the generations running at once share
those models' dynamic batches. In a decoupled config (the "_stream"
model) each decoded token is sent as it comes.

Needs kerasrnn_serving with numpy and onnxruntime in Triton's Python
environment (pip install --no-deps kerasrnn; pip install "numpy<2"
onnxruntime -- the Python backend of Triton 24.x needs numpy < 2 -- or
kerasrnn's source directory on PYTHONPATH), and Triton >= 24.04 (async
execute).
"""

import asyncio
import concurrent.futures
import json
import pathlib
import sys
import types
from unittest import mock

import numpy as np
import triton_python_backend_utils as pb_utils



class InputError(ValueError):
    """A request this model cannot take (kerasrnn_serving's InputError is
    a ValueError too): the message goes back to the client."""


def serving(python_path=None):
    """``kerasrnn_serving.generator``, imported after putting
    ``python_path`` (the config parameter: e.g. kerasrnn's source
    directory) first on ``sys.path``."""
    if python_path and python_path not in sys.path:
        sys.path.insert(0, python_path)
    try:
        from kerasrnn_serving import generator
    except ImportError as error:
        raise ImportError(
            "This Triton model runs kerasrnn_serving: install it in "
            "Triton's Python environment (pip install --no-deps kerasrnn; "
            "pip install 'numpy<2' onnxruntime) or set the config "
            f"parameter python_path to kerasrnn's source directory. "
            f"({error})"
        ) from error
    return generator


PER_ROW = ("top_k", "forbid_end")
# Request parameters Triton or its clients use themselves.
RESERVED = {"binary_data_output", "sequence_id", "sequence_start",
            "sequence_end", "priority", "timeout", "headers",
            "triton_enable_empty_final_response"}
CANDIDATES = ("top_log_probs", "top_ids")


class BLSSession:
    """What Generator asks of an onnxruntime session (run, get_outputs,
    get_providers), answered by BLS requests to a Triton model."""

    def __init__(self, model_name, graph, max_batch_size):
        self.model_name = model_name
        self.output_names = [entry["name"] for entry in graph["outputs"]]
        self.max_batch_size = max_batch_size

    def get_outputs(self):
        return [types.SimpleNamespace(name=name)
                for name in self.output_names]

    def get_providers(self):
        return [f"triton:{self.model_name}"]

    def run(self, output_names, feeds):
        names = list(output_names or self.output_names)
        rows = next(len(value) for key, value in feeds.items()
                    if key not in PER_ROW)
        count = None
        if "top_k" in feeds:
            count = int(np.asarray(feeds["top_k"]).reshape(-1)[0])
        feeds = {key: _per_row(key, np.asarray(value), rows)
                 for key, value in feeds.items()}
        size = self.max_batch_size or rows
        parts = []
        for start in range(0, rows, size):
            inputs = [pb_utils.Tensor(key, np.ascontiguousarray(
                value[start:start + size])) for key, value in feeds.items()]
            response = pb_utils.InferenceRequest(
                model_name=self.model_name, inputs=inputs,
                requested_output_names=names).exec()
            if response.has_error():
                raise RuntimeError(
                    f"Triton model '{self.model_name}': "
                    f"{response.error().message()}")
            parts.append([np.array(pb_utils.get_output_tensor_by_name(
                response, name).as_numpy()) for name in names])
        values = [np.concatenate(column) if len(column) > 1 else column[0]
                  for column in zip(*parts)]
        if count is not None:
            # A merged batch has the largest top_k of its requests.
            values = [value[:, :count] if name in CANDIDATES else value
                      for name, value in zip(names, values)]
        return values


def _per_row(key, value, rows):
    """A feed as the Triton graph takes it: top_k and forbid_end per row,
    and a per-row scalar (token_ids, lengths) as [rows, 1]."""
    if key == "top_k":
        return np.full((rows, 1), int(value.reshape(-1)[0]), np.int64)
    if key == "forbid_end":
        return np.full((rows, 1), bool(value.reshape(-1)[0]))
    if value.ndim == 1:
        return value.reshape(rows, 1)
    return value


def build_generator(manifest, models, max_batch_size, limits=None,
                    python_path=None):
    """A kerasrnn_serving Generator whose sessions are BLS requests to
    ``models`` ({graph: Triton model name})."""
    generator_lib = serving(python_path)
    sessions = {graph: BLSSession(models[graph], entry, max_batch_size)
                for graph, entry in manifest["graphs"].items()}
    runtime = types.SimpleNamespace(
        SessionOptions=types.SimpleNamespace,
        InferenceSession=lambda graph, *args, **kwargs: sessions[graph],
        get_available_providers=lambda: [],
    )
    with mock.patch.object(generator_lib, "onnxruntime", runtime):
        return generator_lib.Generator.from_graphs(
            manifest, {graph: graph for graph in sessions},
            providers=["TritonBLS"], threads=None, limits=limits)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in
                      config.get("parameters", {}).items()}
        directory = pathlib.Path(args["model_repository"]) / args[
            "model_version"]
        manifest = json.loads((directory / "manifest.json").read_text())
        models = {graph: parameters[f"{graph}_model"]
                  for graph in manifest["graphs"]}
        limits = json.loads(parameters.get("limits") or "{}") or None
        self.generator = build_generator(
            manifest, models, int(parameters.get("graph_max_batch_size", 0)),
            limits, parameters.get("python_path"))
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(
            config)
        seq2seq = self.generator.kind == "seq2seq"
        self.ids = "SOURCE_IDS" if seq2seq else "PROMPT_IDS"
        self.lengths = "SOURCE_LENGTHS" if seq2seq else "PROMPT_LENGTHS"
        self.pad_id = self.generator.tokens["pad_id"] or 0
        side = "target" if seq2seq else "tokens"
        self.has_text = manifest["vocabularies"].get(side) is not None
        self.default_method = serving().DEFAULT_METHOD[
            self.generator.kind]
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max(1, int(parameters.get("concurrency", 8))))

    async def execute(self, requests):
        loop = asyncio.get_running_loop()
        if self.decoupled:
            # Decoupled: Triton runs this in the background and sends the
            # next requests meanwhile; each generation has a thread.
            await asyncio.gather(*(
                loop.run_in_executor(self.pool, self._stream, request)
                for request in requests))
            return None
        return await loop.run_in_executor(self.pool, self._answer,
                                          requests)

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- requests ------------------------------------------------------

    def _rows(self, request):
        """The request's rows: ``(texts, item, options)`` each, ``texts``
        telling whether ``item`` is a text or a list of ids."""
        base = {}
        given = request.parameters()
        if given:
            base.update({key: value for key, value in
                         json.loads(given).items() if key not in RESERVED})
        texts = pb_utils.get_input_tensor_by_name(request, "TEXT")
        ids = pb_utils.get_input_tensor_by_name(request, self.ids)
        if (texts is None) == (ids is None):
            raise InputError(f"Send exactly one of TEXT and {self.ids}.")
        if texts is not None:
            items = _strings(texts)
        else:
            array = ids.as_numpy()
            array = array.reshape(1, -1) if array.ndim == 1 else array
            lengths = pb_utils.get_input_tensor_by_name(request,
                                                        self.lengths)
            if lengths is None:
                items = [row.tolist() for row in array]
            else:
                lengths = lengths.as_numpy().reshape(-1)
                if len(lengths) != len(array):
                    raise InputError(f"{self.lengths} must give one length "
                                     f"per row of {self.ids}.")
                items = [row[:max(int(n), 0)].tolist()
                         for row, n in zip(array, lengths)]
        if not items:
            raise InputError("The request holds no rows.")
        options = [base] * len(items)
        tensor = pb_utils.get_input_tensor_by_name(request, "OPTIONS")
        if tensor is not None:
            values = _strings(tensor)
            if len(values) != len(items):
                raise InputError("OPTIONS needs one JSON object per row "
                                 "(or send the options as request "
                                 "parameters).")
            options = [{**base, **_object(value)} for value in values]
        for row in options:
            for key in ("texts", "ids", "stream"):
                if key in row:
                    raise InputError(
                        f"'{key}' is not an option: send TEXT or "
                        f"{self.ids} (and use the decoupled '_stream' "
                        "model to stream).")
        return [(texts is not None, item, row)
                for item, row in zip(items, options)]

    def _options(self, options, texts):
        """``(method, max_length, unknown, stop_at_eos, attention,
        search options)``, checked as /v1/generate checks them."""
        options = dict(options)
        method = options.pop("method", None)
        if method is not None and not isinstance(method, str):
            raise InputError(f"'method' must be a string. Received: "
                             f"{method!r}")
        max_length = options.pop("max_length", None)
        if not texts and "unknown" in options:
            raise InputError("'unknown' applies to TEXT.")
        unknown = options.pop("unknown", "map")
        stop_at_eos = None
        if "stop_at_eos" in options:
            if self.generator.kind == "seq2seq":
                raise InputError("'stop_at_eos' applies to language "
                                 "models.")
            stop_at_eos = _flag(options.pop("stop_at_eos"), "stop_at_eos")
        attention = _flag(options.pop("attention", False), "attention")
        if attention and not self.generator.manifest["architecture"].get(
            "attention"
        ):
            raise InputError("'attention': this model has no attention.")
        return method, max_length, unknown, stop_at_eos, attention, options

    def _answer(self, requests):
        """The responses to a dynamic batch of requests: their rows with
        the same options are generated together (one search, so every
        graph call holds all of them); sampling keeps each request's rows
        apart (its seed draws as without the others)."""
        rows, failed = {}, {}
        for index, request in enumerate(requests):
            try:
                rows[index] = self._rows(request)
            except Exception as error:
                failed[index] = error
        groups = {}
        for index, request_rows in rows.items():
            for position, (texts, _, options) in enumerate(request_rows):
                method = options.get("method") or self.default_method
                apart = method == "sample"
                key = (texts, json.dumps(options, sort_keys=True),
                       index if apart else None)
                groups.setdefault(key, []).append((index, position))
        answers = {index: [None] * len(r) for index, r in rows.items()}
        for members in groups.values():
            try:
                self._fill(answers, rows, members)
            except Exception as error:
                owners = sorted({index for index, _ in members})
                if len(owners) == 1:
                    failed.setdefault(owners[0], error)
                    continue
                # One request's rows may have failed the others': alone,
                # each gets its own answer or error.
                for owner in owners:
                    try:
                        self._fill(answers, rows, [
                            (i, p) for i, p in members if i == owner])
                    except Exception as error:
                        failed.setdefault(owner, error)
        responses = []
        for index in range(len(requests)):
            if index in failed:
                responses.append(_error(failed[index]))
            else:
                responses.append(pb_utils.InferenceResponse(
                    self._tensors(answers[index])))
        return responses

    def _fill(self, answers, rows, members):
        """Generates the rows ``members`` ((request, position) pairs)
        together into ``answers``."""
        results = self._generate([rows[i][p] for i, p in members])
        for (index, position), answer in zip(members, results):
            answers[index][position] = answer

    def _generate(self, rows):
        """Generate's answers for rows with the same options."""
        texts, _, options = rows[0]
        inputs = [item for _, item, _ in rows]
        method, max_length, unknown, stop_at_eos, attention, rest = (
            self._options(options, texts))
        generator = self.generator
        if texts:
            results = generator.generate(inputs, method, max_length,
                                         unknown, stop_at_eos, **rest)
            sources = (generator.encode_texts(inputs, unknown)
                       if attention else None)
        else:
            result = generator.generate_ids(inputs, method, max_length,
                                            stop_at_eos, **rest)
            results = generator.describe(result, text=self.has_text)
            sources = inputs
        if attention:
            for source, answer in zip(sources, results):
                for hypothesis in answer["hypotheses"]:
                    weights = generator.alignments(source,
                                                   hypothesis["ids"])
                    hypothesis["attention"] = np.round(weights,
                                                       5).tolist()
        return results

    def _tensors(self, results):
        hypotheses = [answer["hypotheses"] for answer in results]
        width = max(len(row) for row in hypotheses)
        longest = max(len(h["ids"]) for row in hypotheses for h in row)
        ids = np.full((len(results), width, longest), self.pad_id,
                      np.int32)
        lengths = np.zeros((len(results), width), np.int32)
        scores = np.full((len(results), width), -np.inf, np.float32)
        for b, row in enumerate(hypotheses):
            for k, hypothesis in enumerate(row):
                ids[b, k, :len(hypothesis["ids"])] = hypothesis["ids"]
                lengths[b, k] = len(hypothesis["ids"])
                scores[b, k] = hypothesis["score"]
        texts = [answer.get("text", "") for answer in results]
        return [
            _string_tensor("OUTPUT_TEXT", texts, rows=True),
            pb_utils.Tensor("OUTPUT_IDS", ids),
            pb_utils.Tensor("OUTPUT_LENGTHS", lengths),
            pb_utils.Tensor("SCORES", scores),
            _string_tensor("RESULTS", [json.dumps(a) for a in results],
                           rows=True),
        ]

    def _stream(self, request):
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            rows = self._rows(request)
            if len(rows) != 1 or not rows[0][0]:
                raise InputError("The stream model takes one TEXT.")
            _, text, options = rows[0]
            method, max_length, unknown, stop_at_eos, attention, rest = (
                self._options(options, True))
            if attention:
                raise InputError("'attention' is not streamed; ask the "
                                 "non-streaming model.")
            events = self.generator.stream(text, method, max_length,
                                           unknown, stop_at_eos, **rest)
            try:
                for event in events:
                    if _cancelled(request, sender):
                        break
                    if event.get("done"):
                        answer = {key: value for key, value in
                                  event.items() if key != "done"}
                        sender.send(pb_utils.InferenceResponse([
                            _string_tensor("RESULTS",
                                           [json.dumps(answer)])]),
                            flags=final)
                        return
                    sender.send(pb_utils.InferenceResponse([
                        _string_tensor("OUTPUT_TEXT", [event["text"]]),
                        pb_utils.Tensor("OUTPUT_IDS",
                                        np.array([event["id"]], np.int32)),
                    ]))
            finally:
                events.close()
            sender.send(flags=final)
        except Exception as error:
            sender.send(_error(error), flags=final)


def _object(text):
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InputError("Each OPTIONS row must hold a JSON object.")
    return value


def _flag(value, name):
    if not isinstance(value, bool):
        raise InputError(f"'{name}' must be true or false. Received: "
                         f"{value!r}")
    return value


def _cancelled(request, sender):
    for owner in (sender, request):
        check = getattr(owner, "is_cancelled", None)
        if check is not None and check():
            return True
    return False


def _strings(tensor):
    try:
        return [value.decode("utf-8") if isinstance(value, bytes)
                else str(value) for value in tensor.as_numpy().reshape(-1)]
    except UnicodeDecodeError:
        raise InputError("Text inputs must be UTF-8.") from None


def _string_tensor(name, values, rows=False):
    """A BYTES tensor: ``[n]``, or ``[n, 1]`` (one per row) with
    ``rows``."""
    array = np.array([value.encode("utf-8") for value in values],
                     dtype=np.object_)
    return pb_utils.Tensor(name, array.reshape(-1, 1) if rows else array)


def _error(error):
    message = str(error) if isinstance(error, ValueError) else (
        f"{type(error).__name__}: {error}")
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
'''
