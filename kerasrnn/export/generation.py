"""Generation models -> ONNX: an encoder (or prompt) graph and a one-step
decoder graph, decoded by a host-side search.

A ``Seq2Seq`` becomes two graphs::

    encoder.onnx       source int32 (batch, source_time)
                       -> the decoder's first state: per decoder layer l
                          h_l (and c_l for an LSTM) after the bridge; with
                          attention also attentional (zeros), memory,
                          keys (the attention's precomputed memory half;
                          none for luong_dot) and memory_mask (bool)
    decoder_step.onnx  token_ids int32 (batch,) + every state
                       + top_k int64 (1,) + forbid_end bool ()
                       -> log_probs (batch, V), new_<state> for each state
                          a step changes, attention_weights (batch,
                          source_time) with attention, and top_log_probs,
                          top_ids (batch, top_k): each row's best next
                          tokens (ties: lower id first) under log_softmax
                          of the logits without the forbidden ids
                          (padding, BOS) and, with forbid_end, the end
                          token -- what beam search needs, so a host-side
                          search never sorts the whole vocabulary

a ``LanguageModel`` into ``prompt.onnx`` (tokens (batch, time) + lengths
(batch,) + states -> new states after each row's prompt) and
``step.onnx`` (token_ids + states + top_k + forbid_end -> log_probs, new
states, top_log_probs, top_ids; nothing is forbidden but ``<eos>`` with
forbid_end).

Every recurrent layer is a native ``RNN``/``LSTM``/``GRU`` node (the
encoder's masks as ``sequence_lens``; a decoder step is a node over one
step), written from the weights as for classifiers
(``kerasrnn.export.recurrent``). State tensors are batch-first, so the
same graphs serve batched rows, beams (reordered along axis 0) and
Triton's implicit state. ``manifest.json`` says how to drive them:
``kind``, the graphs and their inputs/outputs, ``state`` (name, output,
shape, whether a step changes it), the special token ids, the tokenizers
(configs a TensorFlow-free runtime reads, ``kerasrnn_serving.text``),
the limits and the export-time parity.

    manifest = kerasrnn.export.to_onnx(seq2seq, "artifacts/dates")
    from kerasrnn_serving import Generator
    Generator("artifacts/dates").generate(["3 march 2021"])
"""

import pathlib

import keras
import numpy as np
import onnx

from kerasrnn_serving import manifest as manifest_lib
from kerasrnn.export import recurrent
from kerasrnn.export.graph import Mask
from kerasrnn.export.graph import Value
from kerasrnn.export.graph import GraphBuilder
from kerasrnn.export.graph import OPSET
from kerasrnn.export.graph import IR_VERSION
from kerasrnn.export.graph import PARITY_ATOL
from kerasrnn.export.graph import PARITY_RTOL
from kerasrnn.export.graph import make_model
from kerasrnn.export.graph import op_inventory
from kerasrnn.models.attention import masked_score

FLOAT = onnx.TensorProto.FLOAT


def export_seq2seq(model, directory, verify=True):
    """Writes ``encoder.onnx``, ``decoder_step.onnx`` and the manifest of
    a ``Seq2Seq`` (see the module doc); returns the manifest."""
    tokens = {
        "bos_id": model.bos_id, "eos_id": model.eos_id,
        "pad_id": model.pad_id,
        "unknown_id": None if model.source_tokenizer is None
        else model.source_tokenizer.oov_id,
        # Never generated, as in Seq2Seq.generate.
        "forbidden_ids": sorted({model.pad_id, model.bos_id}),
    }
    encoder, state = _seq2seq_encoder(model)
    step = _seq2seq_step(model, state, tokens["forbidden_ids"])
    attention = model.decoder.attention
    manifest = _manifest(
        model, "seq2seq", {"encoder": encoder, "decoder_step": step}, state,
        tokens,
        vocabularies={
            "source": _codec(model.source_tokenizer, "tokenizer"),
            "target": _codec(model.target_tokenizer, "tokenizer"),
        },
        vocabulary_sizes={"source": model.source_vocabulary_size,
                          "target": model.target_vocabulary_size},
        limits={"max_source_length": model.max_source_length,
                "max_target_length": model.max_target_length},
        architecture={
            "cell": model.cell, "units": model.units,
            "encoder_layers": model.encoder_layers,
            "decoder_layers": model.decoder_layers,
            "bidirectional": model.bidirectional, "bridge": model.bridge,
            "attention": attention,
            "tie_embeddings": model.tie_embeddings,
        },
    )
    return _write(model, directory, manifest,
                  {"encoder": encoder, "decoder_step": step}, verify)


def export_language_model(model, directory, verify=True):
    """Writes ``prompt.onnx``, ``step.onnx`` and the manifest of a
    ``LanguageModel``; returns the manifest."""
    if model.stateful:
        raise ValueError(
            f"Model '{model.name}' is stateful; the exported graphs take "
            "and return the states explicitly. Rebuild it with "
            "stateful=False (the weights carry over) and export that."
        )
    if not model.built:
        model(np.zeros((1, 1), "int32"))
    state = [_state_entry(name, model.units) for name in model.state_names]
    prompt = _lm_prompt(model, state)
    step = _lm_step(model, state)
    vocabulary = model.vocabulary
    tokens = {
        "bos_id": None,
        "eos_id": None if vocabulary is None else vocabulary.eos_id,
        "pad_id": 0, "unknown_id": 0, "forbidden_ids": [],
    }
    manifest = _manifest(
        model, "language_model", {"prompt": prompt, "step": step}, state,
        tokens,
        vocabularies={"tokens": _codec(vocabulary, "vocabulary")},
        vocabulary_sizes={"tokens": model.vocabulary_size},
        limits={},
        architecture={"cell": model.cell, "units": model.units,
                      "num_layers": model.num_layers,
                      "tie_weights": model.tie_weights},
    )
    return _write(model, directory, manifest,
                  {"prompt": prompt, "step": step}, verify)


class _Graph:
    """One graph being written: its builder, inputs and outputs."""

    def __init__(self, name, file):
        self.name, self.file = name, file
        self.builder = GraphBuilder()
        self.inputs, self.outputs = [], []

    def input(self, name, dtype, shape):
        self.builder.reserve(name)
        self.inputs.append((name, dtype, list(shape)))
        return name

    def output(self, name, value, dtype, shape):
        self.builder.reserve(name)
        self.outputs.append((name, value, dtype, list(shape)))

    def finish(self):
        self.proto, nodes = make_model(self.builder, self.name, self.inputs,
                                       self.outputs)
        kept = {node.name for node in nodes}
        self.recurrent_nodes = [
            e for e in self.builder.recurrent_nodes if e["node"] in kept
        ]
        return self

    def describe(self):
        return {
            "file": self.file,
            "inputs": [manifest_lib.tensor_entry(*info)
                       for info in self.inputs],
            "outputs": [manifest_lib.tensor_entry(n, d, s)
                        for n, _, d, s in self.outputs],
            "ops": op_inventory(self.proto),
            "recurrent_nodes": self.recurrent_nodes,
        }


def _state_entry(name, size, constant=False, dtype="float32",
                 shape=None):
    return {
        "name": name,
        "output": None if constant else f"new_{name}",
        "dtype": dtype,
        "shape": shape or ["batch", size],
        "constant": constant,
    }


def _weight(variable):
    return keras.ops.convert_to_numpy(variable).astype("float32")


def _check_float32(model):
    for weight in model.weights:
        if keras.backend.standardize_dtype(weight.dtype) != "float32" and (
            weight.trainable
        ):
            raise ValueError(
                f"Model '{model.name}' holds {weight.dtype} weights "
                f"('{weight.path}'); generation export supports float32 "
                "models."
            )


# --- Seq2Seq -----------------------------------------------------------------


def _seq2seq_encoder(model):
    _check_float32(model)
    graph = _Graph("encoder", "encoder.onnx")
    g = graph.builder
    source = graph.input("source", "int32", ["batch", "source_time"])
    pad = model.pad_id
    embedded = g.op(
        "Gather",
        [g.constant(_weight(model.source_embedding.embeddings),
                    "source_embedding/table"), source],
        "source_embedding", axis=0,
    )
    real = g.op(
        "Not", [g.op("Equal", [source, g.scalar(pad, "int32")],
                     "source/is_padding")],
        "source/memory_mask",
    )
    mask = Mask(real, f"input 'source' (token {pad} is padding)")
    memory, *finals = recurrent.convert_stacked(
        g, model.encoder,
        [Value(embedded, (None, None, model.embedding_dim), "float32")],
        {"mask": mask},
    )
    cell_states = _bridge(g, model, source, [v.name for v in finals])
    units = model.units
    state = []
    names = iter(model.decoder.state_names())
    for states in cell_states:
        for name in states:
            entry = _state_entry(next(names), units)
            state.append(entry)
            graph.output(entry["name"], name, "float32", entry["shape"])
    decoder = model.decoder
    if decoder.feeds_attention:
        memory_size = int(model.units)
        entries = [
            (_state_entry("attentional", units),
             _zeros(g, source, units, "initial/attentional")),
            (_state_entry("memory", memory_size, constant=True,
                          shape=["batch", "source_time", memory_size]),
             memory.name),
        ]
        keys = _attention_keys(g, decoder, memory.name)
        if keys is not None:
            size = keys[1]
            entries.append(
                (_state_entry("keys", size, constant=True,
                              shape=["batch", "source_time", size]),
                 keys[0]))
        entries.append(
            (_state_entry("memory_mask", None, constant=True, dtype="bool",
                          shape=["batch", "source_time"]), real))
        for entry, name in entries:
            state.append(entry)
            graph.output(entry["name"], name, entry["dtype"], entry["shape"])
    return graph.finish(), state


def _zeros(g, source, size, hint):
    """Zeros ``[B, size]``, B the rows of ``source``."""
    shape = g.op(
        "Concat",
        [g.op("Shape", [source], f"{hint}/batch", end=1), g.ints(size)],
        f"{hint}/shape", axis=0,
    )
    return g.op("ConstantOfShape", [shape], hint,
                value=onnx.helper.make_tensor("zero", FLOAT, [1], [0.0]))


def _bridge(g, model, source, finals):
    """``Seq2Seq._bridge`` on the encoder's final state names: per decoder
    layer, the list of its first states."""
    per_cell = model.states_per_cell
    layers = model.decoder_layers
    units = model.units
    if model.bridge == "zero":
        return [[_zeros(g, source, units, f"bridge/zero_{layer}_{kind}")
                 for kind in range(per_cell)] for layer in range(layers)]
    if model.bridge == "dense":
        dense = model.bridge_dense
        joined = g.op("Concat", finals, "bridge/inputs", axis=-1)
        mapped = _affine(g, joined, _weight(dense.kernel),
                         _weight(dense.bias), "bridge")
        pieces = [
            g.op("Slice", [mapped, g.ints(index * units),
                           g.ints((index + 1) * units), g.ints(1)],
                 f"bridge/state_{index}")
            for index in range(layers * per_cell)
        ]
        return [pieces[layer * per_cell:(layer + 1) * per_cell]
                for layer in range(layers)]
    directions = 2 if model.bidirectional else 1
    cell_states = []
    for layer in range(layers):
        start = layer * directions * per_cell
        states = []
        for kind in range(per_cell):
            parts = [finals[start + d * per_cell + kind]
                     for d in range(directions)]
            states.append(parts[0] if directions == 1 else g.op(
                "Concat", parts, f"bridge/copy_{layer}_{kind}", axis=-1))
        cell_states.append(states)
    return cell_states


def _attention_keys(g, decoder, memory):
    """``(name, size)`` of ``attention.precompute(memory)``, or None when
    the keys are the memory itself (Luong dot)."""
    attention = decoder.attention_layer
    if decoder.attention == "bahdanau":
        keys = g.op(
            "Add",
            [g.op("MatMul", [memory, g.constant(
                _weight(attention.memory_kernel), "attention/memory_kernel")],
                "attention/keys_matmul"),
             g.constant(_weight(attention.bias), "attention/bias")],
            "attention/keys",
        )
        return keys, attention.units
    if attention.kernel is None:
        return None
    keys = g.op(
        "MatMul",
        [memory, g.constant(_weight(attention.kernel).T,
                            "attention/kernel_t")],
        "attention/keys",
    )
    return keys, attention.query_dim


def _seq2seq_step(model, state, forbidden_ids):
    decoder = model.decoder
    graph = _Graph("decoder_step", "decoder_step.onnx")
    g = graph.builder
    tokens = graph.input("token_ids", "int32", ["batch"])
    names = {}
    for entry in state:
        names[entry["name"]] = graph.input(entry["name"], entry["dtype"],
                                           entry["shape"])
    table = g.constant(_weight(decoder.embedding.embeddings),
                       "embedding/table")
    x = g.op("Gather", [table, tokens], "embedding", axis=0)
    if decoder.feeds_attention:
        x = g.op("Concat", [x, names["attentional"]], "input_feeding",
                 axis=-1)
    new = {}
    for layer, cell in enumerate(decoder.cells):
        hint = f"decoder/cell_{layer}"
        keys = [f"{kind}_{layer}" for kind in cell.state_names]
        states = recurrent.cell_step(g, cell, x, [names[k] for k in keys],
                                     hint)
        new.update(zip(keys, states))
        x = states[0]
    outputs = x
    weights = None
    if decoder.feeds_attention:
        context, weights = _attend(g, decoder, x, names)
        outputs = g.op(
            "Tanh",
            [g.op("MatMul",
                  [g.op("Concat", [context, x], "attentional/inputs",
                        axis=-1),
                   g.constant(_weight(decoder.attentional_dense.kernel),
                              "attentional/kernel")],
                  "attentional/matmul")],
            "decoder/attentional",
        )
        new["attentional"] = outputs
    logits = _project(g, decoder, outputs, table)
    vocabulary = decoder.vocabulary_size
    graph.output("log_probs", g.op("LogSoftmax", [logits], "graph/log_probs",
                                   axis=-1),
                 "float32", ["batch", vocabulary])
    _candidates_head(graph, logits, vocabulary, forbidden_ids, model.eos_id)
    for entry in state:
        if not entry["constant"]:
            graph.output(entry["output"], new[entry["name"]], "float32",
                         entry["shape"])
    if weights is not None:
        graph.output("attention_weights", weights, "float32",
                     ["batch", "source_time"])
    return graph.finish()


def _attend(g, decoder, query, names):
    """``(context [B, D], weights [B, S])`` of the decoder's attention
    for ``query [B, H]`` (``kerasrnn.models.attention``)."""
    attention = decoder.attention_layer
    keys = names.get("keys", names["memory"])
    if decoder.attention == "bahdanau":
        projected = g.op(
            "MatMul", [query, g.constant(_weight(attention.query_kernel),
                                         "attention/query_kernel")],
            "attention/query",
        )
        hidden = g.op(
            "Tanh",
            [g.op("Add", [keys, g.unsqueeze(projected, [1],
                                            "attention/query")],
                  "attention/sum")],
            "attention/hidden",
        )
        scores = g.op(
            "MatMul",
            [hidden, g.constant(_weight(attention.score_vector)[:, None],
                                "attention/score_vector")],
            "attention/scores",
        )
    else:
        scores = g.op(
            "MatMul", [keys, g.unsqueeze(query, [2], "attention/query")],
            "attention/scores",
        )
    scores = g.squeeze(scores, [2], "attention/scores")
    scores = g.op(
        "Where",
        [names["memory_mask"], scores,
         g.scalar(masked_score("float32"), "float32")],
        "attention/masked",
    )
    weights = g.op("Softmax", [scores], "attention/weights", axis=-1)
    context = g.squeeze(
        g.op("MatMul", [g.unsqueeze(weights, [1], "attention/weights"),
                        names["memory"]], "attention/context"),
        [1], "attention/context",
    )
    return context, weights


def _project(g, decoder, outputs, table):
    """``RecurrentDecoder.project``: the output layer, or the tied
    embedding."""
    if not decoder.tie_embeddings:
        layer = decoder.output_layer
        return _affine(g, outputs, _weight(layer.kernel), _weight(layer.bias),
                       "output")
    if decoder.tied_projection is not None:
        outputs = g.op(
            "MatMul", [outputs, g.constant(
                _weight(decoder.tied_projection.kernel),
                "tied_projection/kernel")],
            "tied_projection",
        )
    return _affine(g, outputs, _weight(decoder.embedding.embeddings).T,
                   _weight(decoder.output_bias), "output")


def _affine(g, x, kernel, bias, hint):
    """``x kernel + bias`` (a Dense layer without activation)."""
    return g.op(
        "Add",
        [g.op("MatMul", [x, g.constant(kernel, f"{hint}/kernel")],
              f"{hint}/matmul"),
         g.constant(bias, f"{hint}/bias")],
        f"{hint}/affine",
    )


def _candidates_head(graph, logits, vocabulary, forbidden_ids, end_id):
    """The ``top_log_probs``/``top_ids`` outputs (see the module doc):
    ``TopK(LogSoftmax(Where(forbidden, -inf, logits)), top_k)``."""
    g = graph.builder
    count = graph.input("top_k", "int64", [1])
    forbid_end = graph.input("forbid_end", "bool", [])
    forbidden = np.zeros(vocabulary, bool)
    forbidden[list(forbidden_ids)] = True
    mask = g.constant(forbidden, "candidates/forbidden")
    if end_id is not None:
        is_end = np.zeros(vocabulary, bool)
        is_end[end_id] = True
        mask = g.op(
            "Or",
            [mask, g.op("And", [g.constant(is_end, "candidates/end"),
                                forbid_end], "candidates/end_now")],
            "candidates/mask",
        )
    masked = g.op("Where", [mask, g.scalar(-np.inf, "float32"), logits],
                  "candidates/masked")
    normalized = g.op("LogSoftmax", [masked], "candidates/log_probs",
                      axis=-1)
    values, indices = g.op(
        "TopK", [normalized, count], "candidates/top_k",
        outputs=["values", "indices"], axis=-1, largest=1, sorted=1,
    )
    graph.output("top_log_probs", values, "float32", ["batch", "top_k"])
    graph.output("top_ids", g.op("Cast", [indices], "candidates/ids",
                                 to=onnx.TensorProto.INT32),
                 "int32", ["batch", "top_k"])


# --- LanguageModel -----------------------------------------------------------


def _lm_prompt(model, state):
    _check_float32(model)
    graph = _Graph("prompt", "prompt.onnx")
    g = graph.builder
    tokens = graph.input("tokens", "int32", ["batch", "time"])
    lengths = graph.input("lengths", "int32", ["batch"])
    initial = [graph.input(e["name"], "float32", e["shape"]) for e in state]
    embedded = _lm_embedding(g, model, tokens)
    steps = g.op(
        "Range",
        [g.scalar(0, "int32"),
         g.op("Squeeze", [g.op("Cast", [g.op("Shape", [tokens], "time",
                                             start=1, end=2)], "time_int",
                               to=onnx.TensorProto.INT32)], "time_scalar"),
         g.scalar(1, "int32")],
        "prompt/steps",
    )
    real = g.op("Less", [g.unsqueeze(steps, [0], "steps"),
                         g.unsqueeze(lengths, [1], "lengths")], "mask")
    mask = Mask(real, "input 'lengths'", lengths=lengths)
    _, *finals = recurrent.convert_stacked(
        g, model.recurrent,
        [Value(embedded, (None, None, model.embedding_dim), "float32")],
        {"mask": mask, "initial_state": [
            Value(name, (None, model.units), "float32") for name in initial
        ]},
    )
    for entry, value in zip(state, finals):
        graph.output(entry["output"], value.name, "float32", entry["shape"])
    return graph.finish()


def _lm_embedding(g, model, tokens):
    return g.op(
        "Gather",
        [g.constant(_weight(model.embedding.embeddings), "embedding/table"),
         tokens],
        "lm/embedding", axis=0,
    )


def _lm_step(model, state):
    graph = _Graph("step", "step.onnx")
    g = graph.builder
    tokens = graph.input("token_ids", "int32", ["batch"])
    initial = [graph.input(e["name"], "float32", e["shape"]) for e in state]
    embedded = g.unsqueeze(_lm_embedding(g, model, tokens), [1], "steps")
    outputs, *finals = recurrent.convert_stacked(
        g, model.recurrent,
        [Value(embedded, (None, 1, model.embedding_dim), "float32")],
        {"initial_state": [
            Value(name, (None, model.units), "float32") for name in initial
        ]},
    )
    hidden = g.squeeze(outputs.name, [1], "hidden")
    if model.output_layer is not None:
        layer = model.output_layer
        logits = _affine(g, hidden, _weight(layer.kernel),
                         _weight(layer.bias), "softmax")
    else:
        logits = _affine(g, hidden, _weight(model.embedding.embeddings).T,
                         _weight(model.output_bias), "softmax")
    graph.output("log_probs", g.op("LogSoftmax", [logits], "graph/log_probs",
                                   axis=-1),
                 "float32", ["batch", model.vocabulary_size])
    eos = None if model.vocabulary is None else model.vocabulary.eos_id
    _candidates_head(graph, logits, model.vocabulary_size, [], eos)
    for entry, value in zip(state, finals):
        graph.output(entry["output"], value.name, "float32", entry["shape"])
    return graph.finish()


# --- manifest, files, parity -------------------------------------------------


def _codec(tokenizer, kind):
    """The tokenizer's config for ``kerasrnn_serving.text``, or None."""
    if tokenizer is None:
        return None
    return {"kind": kind, **tokenizer.get_config()}


def _manifest(model, kind, graphs, state, tokens, vocabularies,
              vocabulary_sizes, limits, architecture):
    from kerasrnn_serving import search

    import kerasrnn

    return {
        "format": manifest_lib.FORMAT,
        "format_version": manifest_lib.FORMAT_VERSION,
        "kind": kind,
        "model_name": model.name,
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "graphs": {name: graph.describe() for name, graph in graphs.items()},
        "state": state,
        "tokens": tokens,
        "vocabularies": vocabularies,
        "vocabulary_sizes": vocabulary_sizes,
        "limits": limits,
        "architecture": architecture,
        "methods": search.OPTIONS,
        "versions": {"kerasrnn": kerasrnn.__version__,
                     "keras": keras.__version__, "onnx": onnx.__version__},
    }


def _write(model, directory, manifest, graphs, verify, parity=None):
    if verify:
        manifest["parity"] = check_generation_parity(
            model, manifest, {name: graph.proto.SerializeToString()
                              for name, graph in graphs.items()},
            parity=parity,
        )
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for graph in graphs.values():
        onnx.save_model(graph.proto, directory / graph.file)
    manifest_lib.write(directory, manifest)
    return manifest


def check_generation_parity(model, manifest, graphs, batch_size=3, steps=6,
                            max_length=12, seed=0, parity=None):
    """Runs Keras and the exported graphs on the same random inputs and
    raises a RuntimeError when they differ.

    Checks: the first state (encoder, or prompt), one decoding step
    (log-probabilities, new states, attention weights) each within
    ``1e-4 + 1e-4 |keras|``, and greedy decoding token-identical to the
    model's own ``generate`` (``kerasrnn_serving.Generator`` on the
    graphs), its scores within 1e-4.

    ``parity(model, generator, rng, batch_size, max_length)`` replaces the
    check for a kind this module does not build (the captioner's, from
    ``export.captioning``).

    Returns:
        ``{"max_abs_error": {"first_state", "step", "greedy_score"},
        "batch_size", "steps", "greedy_tokens_identical": True}``.
    """
    from kerasrnn_serving.generator import Generator

    generator = Generator.from_graphs(manifest, graphs)
    rng = np.random.default_rng(seed)
    if parity is not None:
        figures = parity(model, generator, rng, batch_size, max_length)
    elif manifest["kind"] == "seq2seq":
        figures = _seq2seq_parity(model, generator, rng, batch_size, steps,
                                  max_length)
    else:
        figures = _lm_parity(model, generator, rng, batch_size, steps,
                             max_length)
    return {"max_abs_error": figures, "batch_size": batch_size,
            "steps": steps, "greedy_tokens_identical": True}


def random_sources(model, batch_size, steps, seed):
    """Random int32 sources ``(B, S)``, right-padded with ``pad_id``: row 0
    full, the last row about half as long, the others 1..S steps (ids
    other than ``pad_id``)."""
    rng = np.random.default_rng(seed)
    tokens = np.array([i for i in range(model.source_vocabulary_size)
                       if i != model.pad_id], "int32")
    lengths = rng.integers(1, steps + 1, batch_size)
    lengths[0] = steps
    if batch_size > 1:
        lengths[-1] = max(1, steps // 2)
    source = np.full((batch_size, steps), model.pad_id, "int32")
    for row, length in enumerate(lengths):
        source[row, :length] = rng.choice(tokens, length)
    return source


def keras_state(model, state_entries, state):
    """The decoder state dict of ``Seq2Seq.encode`` as ``{name: array}``
    for the exported state entries (``luong_dot`` exports no ``keys``:
    they are the memory)."""
    flat = model.decoder.flatten_state(state)
    return {entry["name"]: keras.ops.convert_to_numpy(flat[entry["name"]])
            for entry in state_entries}


def _compare(what, ours, theirs):
    """The largest |difference|; a RuntimeError above the tolerance."""
    ours = np.asarray(ours)
    theirs = np.asarray(theirs)
    if ours.shape != theirs.shape:
        raise RuntimeError(
            f"Exported {what} has shape {ours.shape}, Keras {theirs.shape}: "
            "the export is wrong."
        )
    if ours.dtype == bool:
        if not np.array_equal(ours, theirs):
            raise RuntimeError(f"Exported {what} differs from Keras.")
        return 0.0
    error = np.abs(ours.astype("float64") - theirs.astype("float64"))
    if not np.all(error <= PARITY_ATOL + PARITY_RTOL * np.abs(theirs)):
        raise RuntimeError(
            f"Exported {what} differs from Keras by up to "
            f"{error.max():.3g}: the export is wrong. Please report this "
            "with the model's configuration."
        )
    return float(error.max(initial=0.0))


def _seq2seq_parity(model, generator, rng, batch_size, steps, max_length):
    source = random_sources(model, batch_size, steps,
                            int(rng.integers(2**31)))
    return decoder_parity(model, generator, source, rng, max_length)


def decoder_parity(model, generator, source, rng, max_length):
    """The first state, one step and greedy decoding of ``source`` by the
    exported graphs against ``model`` (a ``Seq2Seq`` or a subclass);
    returns the largest errors, raises a RuntimeError on a difference."""
    batch_size = len(source)
    entries = generator.manifest["state"]
    expected = keras_state(model, entries, model.encode(source))
    received = generator.encode(source)
    first = max(_compare(f"state '{name}'", received[name], expected[name])
                for name in expected)
    tokens = rng.integers(0, model.target_vocabulary_size,
                          size=batch_size).astype("int32")
    logits, state, weights = model.decoder.step(
        tokens, model.encode(source)
    )
    log_probs, new_state, attention = generator.step(tokens, expected)
    step = _compare("log_probs", log_probs,
                    keras.ops.convert_to_numpy(
                        keras.ops.log_softmax(logits, axis=-1)))
    theirs = keras_state(model, entries, state)
    for entry in entries:
        if not entry["constant"]:
            step = max(step, _compare(f"state '{entry['output']}'",
                                      new_state[entry["name"]],
                                      theirs[entry["name"]]))
    if weights is not None:
        step = max(step, _compare("attention_weights", attention,
                                  keras.ops.convert_to_numpy(weights)))
    step = max(step, _compare_candidates(
        generator, tokens, expected, keras.ops.convert_to_numpy(logits)))
    result = model.generate(source, max_length=max_length)
    ours = generator.generate_ids(source, max_length=max_length)
    score = _same_tokens(ours, result)
    return {"first_state": first, "step": step, "greedy_score": score}


def _compare_candidates(generator, tokens, state, logits):
    """The step graph's ``TopK`` head against the same selection made on
    Keras' logits (``kerasrnn_serving.search``)."""
    from kerasrnn_serving import search

    count = min(4, logits.shape[-1])
    values, ids, _ = generator.candidates(tokens, state, count, True)
    reference = search.log_softmax(search.forbid(
        logits.astype("float32"), generator.tokens["forbidden_ids"],
        generator.tokens["eos_id"], True))
    expected_values, expected_ids = search.top_k(reference, count)
    if not np.array_equal(ids, expected_ids):
        raise RuntimeError(
            "The step graph's best candidates (top_ids) differ from Keras': "
            f"{ids.tolist()} vs {expected_ids.tolist()}. The export is "
            "wrong."
        )
    return _compare("top_log_probs", values, expected_values)


def _same_tokens(ours, result):
    ids = keras.ops.convert_to_numpy(result.ids)
    if not np.array_equal(ours.ids, ids):
        raise RuntimeError(
            "Greedy decoding with the exported graphs gives other tokens "
            f"than model.generate: {ours.ids[:, 0].tolist()} vs "
            f"{ids[:, 0].tolist()}. The export is wrong."
        )
    return _compare("greedy score", ours.scores,
                    keras.ops.convert_to_numpy(result.scores))


def _lm_parity(model, generator, rng, batch_size, steps, max_length):
    from kerasrnn import decoding

    vocabulary = model.vocabulary_size
    lengths = rng.integers(1, steps + 1, size=batch_size)
    lengths[0] = steps
    prompts = [rng.integers(0, vocabulary, size=n).astype("int32")
               for n in lengths]
    states = []
    for prompt in prompts:
        _, state = model(prompt[None], initial_state=model.initial_state(1),
                         return_state=True)
        states.append([keras.ops.convert_to_numpy(s) for s in state])
    expected = {entry["name"]: np.concatenate([s[i] for s in states])
                for i, entry in enumerate(generator.manifest["state"])}
    received = generator.prompt(prompts)
    first = max(_compare(f"state '{name}'", received[name], value)
                for name, value in expected.items())
    tokens = rng.integers(0, vocabulary, size=batch_size).astype("int32")
    logits, state = model.step(tokens, list(expected.values()))
    log_probs, new_state, _ = generator.step(tokens, expected)
    step = _compare("log_probs", log_probs, keras.ops.convert_to_numpy(
        keras.ops.log_softmax(logits, axis=-1)))
    step = max(step, _compare_candidates(
        generator, tokens, expected, keras.ops.convert_to_numpy(logits)))
    for entry, value in zip(generator.manifest["state"], state):
        step = max(step, _compare(f"state '{entry['output']}'",
                                  new_state[entry["name"]],
                                  keras.ops.convert_to_numpy(value)))
    end_id = generator.manifest["tokens"]["eos_id"]
    result = decoding.greedy_search(
        model.step, tokens, list(expected.values()), end_id, max_length
    )
    ours = generator.search(tokens, expected, max_length=max_length,
                            end_id=end_id)
    score = _same_tokens(ours, result)
    return {"first_state": first, "step": step, "greedy_score": score}
