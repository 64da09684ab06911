"""Keras models -> TensorFlow SavedModel with named signatures.

    info = kerasrnn.export.to_saved_model(model, "artifacts/model/1")

Functional and Sequential models: one ``serving_default`` signature that
takes the model's inputs by their ``keras.Input`` names and returns a dict
of named outputs (the same names as the ONNX export), as TF Serving's REST
API and ``tf.saved_model.load(...).signatures`` expect.

``kerasrnn.models.Seq2Seq``: the encoder, one decoder step and two in-graph
searches, each a signature of flat named tensors (signatures take no
nests). B is the batch, S the source length, H the decoder's ``units``,
D the memory size (H), A the attention keys' size, V the target
vocabulary, T ``max_length``, K ``num_return``::

    encode           source int32 (B, S)            -> the state below
    decode_step      token_ids int32 (B,) + state   -> log_probs (B, V),
                                                       new_<state name>,
                                                       attention_weights
                                                       (B, S) (attention)
    generate_greedy  source, max_length int32 ()    -> ids (B, T),
                                                       lengths (B,),
                                                       scores (B,)
    generate_beam    source, max_length,
                     length_penalty_weight float () -> ids (B, K, T),
                                                       lengths (B, K),
                                                       scores (B, K)
    serving_default  = generate_greedy

The state is the decoder's (``RecurrentDecoder``), by name: per decoder
layer l, ``h_{l}`` (B, H) and for LSTM also ``c_{l}`` (B, H); with
attention ``attentional`` (B, H), ``memory`` (B, S, D), ``keys`` (B, S, A)
and ``memory_mask`` bool (B, S). A client decodes by hand with ``encode``
then ``decode_step`` fed back its own ``new_*`` outputs under the plain
names, starting from ``bos_id``; ``decode_step`` returns the model's full
distribution (``log_softmax`` of ``Seq2Seq.decode_step``'s logits), while
the two searches are ``Seq2Seq.generate``'s own (``kerasrnn.decoding``, one
``tf.while_loop``), which never generate ``pad_id`` nor ``bos_id``. Source
rows are right-padded with ``pad_id``. The tokenizers of a model that has
them are written as ``assets/source_tokenizer.json`` and
``assets/target_tokenizer.json`` (``kerasrnn.models.text.Tokenizer.load``
reads them).

``kerasrnn.models.LanguageModel``: ``prompt`` (token_ids int32 (B, T) +
state -> new_<state name>), ``decode_step`` (token_ids int32 (B,) + state
-> log_probs (B, V) + new_<state name>), ``serving_default`` =
``decode_step``; the state is ``h_{l}`` (and ``c_{l}`` for LSTM) per layer,
(B, H), zeros to start. Its vocabulary, if any, goes to
``assets/vocabulary.json`` (``lm_data.Vocabulary.from_config`` of the JSON).

Other subclassed models are refused: they have no symbolic inputs to name.
kerasrnn layers run their own time loop, never cuDNN kernels; the export
still checks the saved graph for cuDNN ops (a Keras built-in LSTM/GRU traced
with a GPU visible) and refuses it, because CPU-only servers cannot run it.
"""

import json
import pathlib

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from kerasrnn.decoding.options import split_options
from kerasrnn_serving import manifest as manifest_lib
from kerasrnn_serving.manifest import tensor_entry
from kerasrnn.export.onnx import PARITY_ATOL
from kerasrnn.export.onnx import PARITY_RTOL
from kerasrnn.export.onnx import build_onnx
from kerasrnn.export.onnx import call_model
from kerasrnn.export.functional import model_tensors
from kerasrnn.layers import cudnn_kernels
from kerasrnn.export.onnx import resolve_output_names
from kerasrnn.export.generation import random_sources
from kerasrnn.export.onnx import sample_inputs
from kerasrnn.models.language_model import LanguageModel
from kerasrnn.models.seq2seq import Seq2Seq
from kerasrnn.requirements import require_tensorflow

SIGNATURE = "serving_default"
# Reloaded encode/decode_step against Keras, and the searches' scores.
STEP_ATOL = 1e-5
SCORE_ATOL = 1e-4
SUPPORTED = (
    "a Functional or Sequential keras.Model, a kerasrnn.models.Seq2Seq or "
    "a kerasrnn.models.LanguageModel"
)


def to_saved_model(model, directory, *, output_names=None, verify=True,
                   beam_width=4, num_return=1):
    """Writes ``model`` as a SavedModel in ``directory``.

    Args:
        model: a built Functional or Sequential Keras model, a
            ``kerasrnn.models.Seq2Seq`` or a built
            ``kerasrnn.models.LanguageModel`` (signatures in the module
            doc).
        directory: the SavedModel directory (for TF Serving, a numbered
            version directory such as ``models/name/1``).
        output_names: names of the flattened outputs (default as
            ``to_onnx``); Functional and Sequential models only.
        verify: reload the SavedModel and compare it with Keras on random
            inputs: a Functional model's ``serving_default`` (raises a
            RuntimeError above ``1e-4 + 1e-4 |keras|``); a Seq2Seq's
            ``encode``/``decode_step`` (within ``STEP_ATOL`` = 1e-5) and
            its searches (the same token ids and lengths as
            ``model.generate``, scores within ``SCORE_ATOL`` = 1e-4), see
            ``check_seq2seq_saved_model``; a LanguageModel's ``prompt`` and
            ``decode_step`` (within 1e-5).
        beam_width: Seq2Seq only: the fixed beam width of
            ``generate_beam`` (the number of live hypotheses per row; a
            signature's shapes cannot depend on a runtime value).
        num_return: Seq2Seq only: the hypotheses ``generate_beam`` returns
            per row, best first, 1..``beam_width``.

    Returns:
        For a Functional model, a dict with ``signature``, ``inputs`` and
        ``outputs`` (name, dtype, shape) and, with ``verify``, ``parity``.
        For a Seq2Seq or LanguageModel: ``model``, ``signature``
        (``"serving_default"``), ``serving_default`` (the signature it
        aliases), ``signatures`` (per signature its ``inputs`` and
        ``outputs``, each name, dtype and shape, None for a size known only
        at run time), ``state_names``, ``assets`` (name -> path inside
        ``directory``), the model's special ids and, with ``verify``,
        ``parity`` (the largest differences measured).
    """
    require_tensorflow("SavedModel export")
    # CPU servers must be able to run it: no cuDNN ops in kerasrnn's
    # layers while tracing (Keras' own layers are checked afterwards).
    with cudnn_kernels.portable_graphs():
        return _to_saved_model(model, directory, output_names, verify,
                               beam_width, num_return)


def _to_saved_model(model, directory, output_names, verify, beam_width,
                    num_return):
    from kerasrnn.models.captioning import ImageCaptioner

    if isinstance(model, ImageCaptioner):
        raise ValueError(
            "to_saved_model does not export an ImageCaptioner yet: use "
            "kerasrnn.export.to_onnx and serve it with kerasrnn_serving."
        )
    if isinstance(model, Seq2Seq):
        _no_output_names(model, output_names)
        static, _ = split_options(
            "beam", 1, {"beam_width": beam_width, "num_return": num_return}
        )
        return _seq2seq_saved_model(
            model, pathlib.Path(directory), static["beam_width"],
            static["num_return"], verify,
        )
    if isinstance(model, LanguageModel):
        _no_output_names(model, output_names)
        return _language_model_saved_model(
            model, pathlib.Path(directory), verify
        )
    _check_functional(model)
    return _functional_saved_model(model, directory, output_names, verify)


def _check_functional(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"to_saved_model exports {SUPPORTED}. Received: "
            f"{type(model).__name__}"
        )
    if isinstance(model, keras.Sequential):
        return   # an unbuilt one: the Functional path says so
    try:
        model.inputs, model.outputs
    except AttributeError:
        raise ValueError(
            f"to_saved_model exports {SUPPORTED}. Model '{model.name}' is a "
            f"subclassed {type(model).__name__} with no symbolic inputs or "
            "outputs to name its signature by: rebuild it as a Functional "
            "model on keras.Input, or export the tf.function you serve with "
            "keras.export.ExportArchive yourself."
        ) from None


def _no_output_names(model, output_names):
    if output_names is not None:
        raise ValueError(
            f"`output_names` applies to Functional and Sequential models; a "
            f"{type(model).__name__}'s signatures have fixed output names "
            f"(see kerasrnn.export.saved_model). Received: "
            f"output_names={output_names!r}"
        )


def _functional_saved_model(model, directory, output_names, verify):
    """``to_saved_model`` of a Functional or Sequential model: one
    ``serving_default`` signature."""
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
    _refuse_cudnn(directory)
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


def _refuse_cudnn(directory):
    cudnn = sorted(op for op in saved_ops(directory) if "Cudnn" in op)
    if cudnn:
        raise RuntimeError(
            f"The SavedModel in {directory} contains cuDNN ops {cudnn}, which "
            "CPU-only servers cannot run: a Keras built-in recurrent layer "
            "was traced with a GPU visible. Build it with use_cudnn=False "
            "(or use kerasrnn's layers, which export without cuDNN) and "
            "export again."
        )


# --- shared by the Seq2Seq and LanguageModel exports ----------------------


def _write_endpoints(model, directory, endpoints):
    """Writes ``endpoints`` (``(name, fn, specs)``, the first one also
    ``serving_default``; ``specs`` a dict of named ``TensorSpec`` s, or a
    callable of the functions added so far returning one) as a SavedModel;
    returns ``{name: tf.function}``."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    functions = {}
    for name, fn, specs in endpoints:
        if callable(specs):
            specs = specs(functions)
        functions[name] = archive.add_endpoint(
            name, fn, input_signature=[specs]
        )
    archive.write_out(str(directory), verbose=False)
    _refuse_cudnn(directory)
    return functions


def _outputs(function):
    """The structured outputs (symbolic, with static shapes) of an
    endpoint."""
    return function.get_concrete_function().structured_outputs


def _entry(name, tensor):
    return {
        "name": name,
        "dtype": tf.as_dtype(tensor.dtype).name,
        "shape": tensor.shape.as_list(),
    }


def _describe(function):
    """A signature's ``inputs`` and ``outputs``, each name, dtype, shape."""
    specs = function.input_signature[0]
    return {
        "inputs": [_entry(name, spec) for name, spec in specs.items()],
        "outputs": [_entry(name, tensor)
                    for name, tensor in _outputs(function).items()],
    }


def _specs_like(tensors):
    """Named ``TensorSpec`` s with the dtype and static shape of each
    tensor of the dict ``tensors``."""
    return {
        name: tf.TensorSpec(tensor.shape, tensor.dtype, name=name)
        for name, tensor in tensors.items()
    }


def _checked(value, checks):
    """``value``, computed after the ``tf.debugging`` assertions
    ``checks`` (so a bad request fails with their message)."""
    with tf.control_dependencies(checks):
        return tf.identity(value)


def _checked_ids(name, ids, vocabulary_size, rank):
    """Token ids, checked at run time to lie in the vocabulary and, for
    ``rank`` 2, to have at least one step."""
    checks = [
        tf.debugging.assert_non_negative(
            ids, message=f"`{name}` ids must be >= 0"
        ),
        tf.debugging.assert_less(
            ids, tf.constant(vocabulary_size, ids.dtype),
            message=f"`{name}` ids must be below the vocabulary size "
            f"{vocabulary_size}",
        ),
    ]
    if rank == 2:
        checks.append(tf.debugging.assert_positive(
            tf.shape(ids)[1],
            message=f"`{name}` is empty (time axis of length 0)",
        ))
    return _checked(ids, checks)


def _checked_state(state, batch, names):
    """The flat state dict, every tensor checked at run time to have
    ``batch`` rows."""
    return {
        name: _checked(state[name], [tf.debugging.assert_equal(
            tf.shape(state[name])[0], batch,
            message=f"state `{name}` must have as many rows as `token_ids`",
        )])
        for name in names
    }


def _write_json(path, config):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, ensure_ascii=False)


def _difference(ours, theirs):
    """The largest |ours - theirs|, equal values (infinities included)
    counting 0, a shape mismatch or NaN infinity."""
    ours = np.asarray(ours)
    theirs = np.asarray(theirs)
    if ours.shape != theirs.shape:
        return float("inf")
    ours = ours.astype("float64")
    theirs = theirs.astype("float64")
    with np.errstate(invalid="ignore"):
        error = np.where(ours == theirs, 0.0, np.abs(ours - theirs))
    return float(np.nan_to_num(error, nan=np.inf).max(initial=0.0))


def _compare(signature, name, ours, theirs, reference, tolerance):
    """The largest difference of a signature's output from Keras'; above
    ``tolerance`` a RuntimeError naming both."""
    error = _difference(ours, theirs)
    if not error <= tolerance:
        raise RuntimeError(
            f"SavedModel signature '{signature}' output '{name}' differs "
            f"from Keras' {reference}: max |difference| {error:.3g} > "
            f"{tolerance:g} (shapes {np.shape(ours)} vs {np.shape(theirs)})."
        )
    return error


def _compare_ids(signature, name, ours, theirs, reference):
    """Token ids (or lengths) must be identical; else a RuntimeError
    naming the first that differs."""
    ours = np.asarray(ours)
    theirs = np.asarray(theirs)
    if ours.shape != theirs.shape:
        raise RuntimeError(
            f"SavedModel signature '{signature}' output '{name}' has shape "
            f"{ours.shape}, Keras' {reference} {theirs.shape}."
        )
    wrong = np.argwhere(ours != theirs)
    if wrong.size:
        first = tuple(int(i) for i in wrong[0])
        raise RuntimeError(
            f"SavedModel signature '{signature}' output '{name}' differs "
            f"from Keras' {reference}: {len(wrong)} of {ours.size} values "
            f"differ, the first at index {first} ({ours[first]} vs "
            f"{theirs[first]})."
        )


# --- Seq2Seq ------------------------------------------------------------------


def _seq2seq_endpoints(model, beam_width, num_return):
    names = model.decoder.state_names()
    source_spec = tf.TensorSpec([None, None], tf.int32, name="source")
    length_spec = tf.TensorSpec([], tf.int32, name="max_length")
    alpha_spec = tf.TensorSpec([], tf.float32, name="length_penalty_weight")

    def source_of(inputs):
        source = _checked_ids("source", inputs["source"],
                              model.source_vocabulary_size, rank=2)
        if model.max_source_length is None:
            return source
        return _checked(source, [tf.debugging.assert_less_equal(
            tf.shape(source)[1], model.max_source_length,
            message="`source` has more steps than max_source_length="
            f"{model.max_source_length}",
        )])

    def max_length_of(inputs):
        length = inputs["max_length"]
        return _checked(length, [tf.debugging.assert_positive(
            length, message="`max_length` must be >= 1"
        )])

    def encode(inputs):
        return model.decoder.flatten_state(model.encode(source_of(inputs)))

    def decode_step(inputs):
        token_ids = _checked_ids("token_ids", inputs["token_ids"],
                                 model.target_vocabulary_size, rank=1)
        flat = _checked_state(inputs, tf.shape(token_ids)[0], names)
        logits, state, alignments = model.decoder.step(
            token_ids, model.decoder.nest_state(flat)
        )
        outputs = {"log_probs": tf.nn.log_softmax(tf.cast(logits, "float32"))}
        outputs.update(
            ("new_" + name, tensor)
            for name, tensor in model.decoder.flatten_state(state).items()
        )
        if alignments is not None:
            outputs["attention_weights"] = alignments
        return outputs

    def generate_greedy(inputs):
        result = model._search(source_of(inputs), "greedy",
                               max_length_of(inputs))
        return {"ids": result.ids[:, 0], "lengths": result.lengths[:, 0],
                "scores": result.scores[:, 0]}

    def generate_beam(inputs):
        alpha = _checked(inputs["length_penalty_weight"], [
            tf.debugging.assert_non_negative(
                inputs["length_penalty_weight"],
                message="`length_penalty_weight` must be >= 0",
            )
        ])
        result = model._search(
            source_of(inputs), "beam", max_length_of(inputs),
            beam_width=beam_width, num_return=num_return,
            length_penalty_weight=alpha,
        )
        return {"ids": result.ids, "lengths": result.lengths,
                "scores": result.scores}

    def step_specs(functions):
        state = _outputs(functions["encode"])
        return {
            "token_ids": tf.TensorSpec([None], tf.int32, name="token_ids"),
            **_specs_like({name: state[name] for name in names}),
        }

    search = {"source": source_spec, "max_length": length_spec}
    return [
        ("generate_greedy", generate_greedy, search),
        ("encode", encode, {"source": source_spec}),
        ("decode_step", decode_step, step_specs),
        ("generate_beam", generate_beam,
         {**search, "length_penalty_weight": alpha_spec}),
    ]


def _seq2seq_saved_model(model, directory, beam_width, num_return, verify):
    functions = _write_endpoints(
        model, directory, _seq2seq_endpoints(model, beam_width, num_return)
    )
    assets = {}
    for name in ("source_tokenizer", "target_tokenizer"):
        tokenizer = getattr(model, name, None)
        if tokenizer is not None:
            (directory / "assets").mkdir(exist_ok=True)
            tokenizer.save(directory / "assets" / f"{name}.json")
            assets[name] = f"assets/{name}.json"
    info = {
        "model": "Seq2Seq",
        "signature": SIGNATURE,
        "serving_default": "generate_greedy",
        "signatures": {
            name: _describe(function) for name, function in functions.items()
        },
        "state_names": model.decoder.state_names(),
        "beam_width": beam_width,
        "num_return": num_return,
        "bos_id": model.bos_id,
        "eos_id": model.eos_id,
        "pad_id": model.pad_id,
        "forbidden_ids": sorted({model.pad_id, model.bos_id}),
        "assets": assets,
    }
    if verify:
        info["parity"] = check_seq2seq_saved_model(
            model, directory, beam_width=beam_width, num_return=num_return
        )
    return info


def check_seq2seq_saved_model(model, directory, beam_width=4, num_return=1,
                              batch_size=3, source_steps=6, decode_steps=3,
                              max_length=None,
                              length_penalty_weights=(0.0, 0.6), seed=0):
    """Reloads a Seq2Seq SavedModel and compares it with Keras on random
    padded sources (``random_sources``).

    * ``encode`` against ``model.encode`` and ``decode_step``, chained
      ``decode_steps`` times from BOS then random tokens, against
      ``model.decode_step`` (log_softmax of its logits, the states) and the
      decoder's alignments: within ``STEP_ATOL``;
    * ``generate_greedy`` (and ``serving_default``) against
      ``model.generate(method="greedy")`` and ``generate_beam``, for each
      of ``length_penalty_weights``, against ``model.generate(method=
      "beam")`` of the same width: identical ids and lengths, scores within
      ``SCORE_ATOL`` (-inf, an empty hypothesis, equal to -inf).

    ``max_length`` defaults to ``min(model.max_target_length, 16)``.
    Raises a RuntimeError naming the signature and output that differ;
    returns the largest differences."""
    if max_length is None:
        max_length = min(model.max_target_length, 16)
    signatures = tf.saved_model.load(str(directory)).signatures
    source = random_sources(model, batch_size, source_steps, seed)
    names = model.decoder.state_names()

    expected = model.decoder.flatten_state(model.encode(source))
    received = signatures["encode"](source=tf.constant(source))
    encode_error = max(
        _compare("encode", name, received[name],
                 keras.ops.convert_to_numpy(expected[name]),
                 "Seq2Seq.encode", STEP_ATOL)
        for name in names
    )

    rng = np.random.default_rng(seed + 1)
    tokens = np.full((batch_size,), model.bos_id, "int32")
    choices = [i for i in range(model.target_vocabulary_size)
               if i not in (model.pad_id, model.bos_id)]
    keras_state = model.encode(source)
    saved_state = {name: received[name] for name in names}
    step_error = 0.0
    for _ in range(decode_steps):
        logits, new_state = model.decode_step(tokens, keras_state)
        theirs = {
            "log_probs": tf.nn.log_softmax(tf.cast(logits, "float32")),
            **{"new_" + name: tensor for name, tensor in
               model.decoder.flatten_state(new_state).items()},
        }
        if model.decoder.feeds_attention:
            theirs["attention_weights"] = model.decoder.step(
                tokens, keras_state
            )[2]
        ours = signatures["decode_step"](
            token_ids=tf.constant(tokens), **saved_state
        )
        if sorted(ours) != sorted(theirs):
            raise RuntimeError(
                "SavedModel signature 'decode_step' returns "
                f"{sorted(ours)}; expected {sorted(theirs)}."
            )
        for name, value in theirs.items():
            step_error = max(step_error, _compare(
                "decode_step", name, ours[name],
                keras.ops.convert_to_numpy(value), "Seq2Seq.decode_step",
                STEP_ATOL,
            ))
        keras_state = new_state
        saved_state = {name: ours["new_" + name] for name in names}
        tokens = rng.choice(choices, batch_size).astype("int32")

    length = tf.constant(max_length, tf.int32)
    searches = {}
    reference = model.generate(source, method="greedy", max_length=max_length)
    runs = [("generate_greedy", {}, reference, "generate(method='greedy')"),
            (SIGNATURE, {}, reference, "generate(method='greedy')")]
    for alpha in length_penalty_weights:
        reference = model.generate(
            source, method="beam", max_length=max_length,
            beam_width=beam_width, num_return=num_return,
            length_penalty_weight=alpha,
        )
        runs.append((
            "generate_beam",
            {"length_penalty_weight": tf.constant(alpha, tf.float32)},
            reference,
            f"generate(method='beam', beam_width={beam_width}, num_return="
            f"{num_return}, length_penalty_weight={alpha})",
        ))
    for signature, extra, reference, call in runs:
        ours = signatures[signature](
            source=tf.constant(source), max_length=length, **extra
        )
        theirs = {field: getattr(reference, field).numpy()
                  for field in ("ids", "lengths", "scores")}
        if signature != "generate_beam":
            theirs = {field: value[:, 0] for field, value in theirs.items()}
        call = "Seq2Seq." + call
        _compare_ids(signature, "ids", ours["ids"], theirs["ids"], call)
        _compare_ids(signature, "lengths", ours["lengths"],
                     theirs["lengths"], call)
        error = _compare(signature, "scores", ours["scores"],
                         theirs["scores"], call, SCORE_ATOL)
        figures = searches.setdefault(
            "generate_beam" if signature == "generate_beam"
            else "generate_greedy",
            {"ids_identical": True, "lengths_identical": True,
             "max_score_error": 0.0, "hypotheses": 0, "ended": 0},
        )
        figures["max_score_error"] = max(figures["max_score_error"], error)
        if signature != SIGNATURE:
            lengths = theirs["lengths"]
            figures["hypotheses"] += int(lengths.size)
            figures["ended"] += int(np.sum(
                np.take_along_axis(
                    theirs["ids"], np.maximum(lengths - 1, 0)[..., None],
                    axis=-1,
                )[..., 0] == model.eos_id
            ))
    if "generate_beam" in searches:
        searches["generate_beam"]["length_penalty_weights"] = list(
            length_penalty_weights
        )
    return {
        "encode": {"max_abs_error": encode_error},
        "decode_step": {"max_abs_error": step_error, "steps": decode_steps},
        **searches,
        "batch_size": batch_size,
        "source_steps": source_steps,
        "max_length": max_length,
        "tolerances": {"encode/decode_step": STEP_ATOL,
                       "scores": SCORE_ATOL},
    }


# --- LanguageModel ------------------------------------------------------------


def _language_model_endpoints(model):
    names = model.state_names
    dtype = keras.backend.standardize_dtype(model.compute_dtype)
    state_specs = {
        name: tf.TensorSpec([None, size], dtype, name=name)
        for name, size in zip(names, model.state_size)
    }

    def run(token_ids, inputs):
        flat = _checked_state(inputs, tf.shape(token_ids)[0], names)
        return [flat[name] for name in names]

    def prompt(inputs):
        token_ids = _checked_ids("token_ids", inputs["token_ids"],
                                 model.vocabulary_size, rank=2)
        _, states = model(token_ids, initial_state=run(token_ids, inputs),
                          return_state=True)
        return {"new_" + name: s for name, s in zip(names, states)}

    def decode_step(inputs):
        token_ids = _checked_ids("token_ids", inputs["token_ids"],
                                 model.vocabulary_size, rank=1)
        logits, states = model.step(token_ids, run(token_ids, inputs))
        outputs = {"log_probs": tf.nn.log_softmax(tf.cast(logits, "float32"))}
        outputs.update(("new_" + name, s) for name, s in zip(names, states))
        return outputs

    return [
        ("decode_step", decode_step, {
            "token_ids": tf.TensorSpec([None], tf.int32, name="token_ids"),
            **state_specs,
        }),
        ("prompt", prompt, {
            "token_ids": tf.TensorSpec([None, None], tf.int32,
                                       name="token_ids"),
            **state_specs,
        }),
    ]


def _language_model_saved_model(model, directory, verify):
    if not model.built:
        raise ValueError(
            f"LanguageModel '{model.name}' is not built, so it has no "
            "weights to export: train it, or call it once on token ids (or "
            "build((None, None))), first."
        )
    functions = _write_endpoints(
        model, directory, _language_model_endpoints(model)
    )
    assets = {}
    if model.vocabulary is not None:
        (directory / "assets").mkdir(exist_ok=True)
        _write_json(directory / "assets" / "vocabulary.json",
                    model.vocabulary.get_config())
        assets["vocabulary"] = "assets/vocabulary.json"
    info = {
        "model": "LanguageModel",
        "signature": SIGNATURE,
        "serving_default": "decode_step",
        "signatures": {
            name: _describe(function) for name, function in functions.items()
        },
        "state_names": model.state_names,
        "assets": assets,
    }
    if verify:
        info["parity"] = check_language_model_saved_model(model, directory)
    return info


def check_language_model_saved_model(model, directory, batch_size=3,
                                     steps=5, decode_steps=3, seed=0):
    """Reloads a LanguageModel SavedModel and compares ``prompt`` (random
    tokens from random states) with ``model(..., return_state=True)`` and
    ``decode_step``, chained ``decode_steps`` times, with ``model.step``:
    within ``STEP_ATOL``, else a RuntimeError naming the output."""
    signatures = tf.saved_model.load(str(directory)).signatures
    names = model.state_names
    rng = np.random.default_rng(seed)
    dtype = keras.backend.standardize_dtype(model.compute_dtype)
    tokens = rng.integers(0, model.vocabulary_size,
                          (batch_size, steps)).astype("int32")
    states = [(0.5 * rng.standard_normal((batch_size, size))).astype(dtype)
              for size in model.state_size]
    _, expected = model(tokens, initial_state=states, return_state=True)
    received = signatures["prompt"](
        token_ids=tf.constant(tokens),
        **{name: tf.constant(s) for name, s in zip(names, states)},
    )
    prompt_error = max(
        _compare("prompt", "new_" + name, received["new_" + name],
                 keras.ops.convert_to_numpy(value), "LanguageModel.call",
                 STEP_ATOL)
        for name, value in zip(names, expected)
    )
    keras_states = list(expected)
    saved_states = {name: received["new_" + name] for name in names}
    step_error = 0.0
    for _ in range(decode_steps):
        tokens = rng.integers(0, model.vocabulary_size,
                              batch_size).astype("int32")
        logits, keras_states = model.step(tokens, keras_states)
        ours = signatures["decode_step"](token_ids=tf.constant(tokens),
                                         **saved_states)
        theirs = {
            "log_probs": tf.nn.log_softmax(tf.cast(logits, "float32")),
            **{"new_" + name: s for name, s in zip(names, keras_states)},
        }
        for name, value in theirs.items():
            step_error = max(step_error, _compare(
                "decode_step", name, ours[name],
                keras.ops.convert_to_numpy(value), "LanguageModel.step",
                STEP_ATOL,
            ))
        saved_states = {name: ours["new_" + name] for name in names}
    return {
        "prompt": {"max_abs_error": prompt_error},
        "decode_step": {"max_abs_error": step_error, "steps": decode_steps},
        "batch_size": batch_size,
        "steps": steps,
        "tolerance": STEP_ATOL,
    }


# --- Functional -----------------------------------------------------------


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
