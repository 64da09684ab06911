"""SavedModel export: ``serving_default`` with named inputs and outputs,
reload parity with Keras, no cuDNN ops.

Parity runs on the matrix models of ``test_export_onnx_parity`` at the same
four shapes. A SavedModel export costs about two seconds, so the default run
takes a covering subset of 12 models: every cell × every direction, with
layers, masking and initial states cycling so that each of their eight
combinations occurs. ``KERASRNN_FULL_EXPORT_MATRIX=1`` runs all 96.
"""

import itertools
import json
import os

import keras
import numpy as np
import parity
import pytest
import tensorflow as tf
from test_export_onnx_parity import ATOL
from test_export_onnx_parity import CELLS
from test_export_onnx_parity import CONFIGS
from test_export_onnx_parity import DIRECTIONS
from test_export_onnx_parity import SHAPES
from test_export_onnx_parity import Case
from test_export_onnx_parity import config_id

import kerasrnn
from kerasrnn.export import to_saved_model
from kerasrnn.export.saved_model import saved_ops


def covering_subset():
    configs = []
    for index, (cell, direction) in enumerate(
        itertools.product(CELLS, DIRECTIONS)
    ):
        layers = 1 + index % 2
        masked, initial = bool(index // 2 % 2), bool(index // 4 % 2)
        configs.append((cell, direction, layers, masked, initial))
    return configs


SUBSET = (
    CONFIGS if os.environ.get("KERASRNN_FULL_EXPORT_MATRIX") == "1"
    else covering_subset()
)


def test_subset_covers_every_level_pair():
    assert {(c[0], c[1]) for c in SUBSET} == set(
        itertools.product(CELLS, DIRECTIONS))
    assert {c[2:] for c in SUBSET} == set(
        itertools.product((1, 2), (False, True), (False, True)))


@pytest.mark.parametrize("config", SUBSET, ids=map(config_id, SUBSET))
def test_reload_parity(config, tmp_path):
    case = Case(*config)
    info = to_saved_model(case.model, tmp_path / "1", verify=False)
    assert info["signature"] == "serving_default"
    assert [entry["name"] for entry in info["inputs"]] == [
        tensor.name for tensor in case.model.inputs
    ]
    function = tf.saved_model.load(str(tmp_path / "1")).signatures[
        "serving_default"
    ]
    names = [entry["name"] for entry in info["outputs"]]
    assert sorted(function.structured_outputs) == sorted(names)
    for index, (batch, steps) in enumerate(SHAPES):
        feeds = case.feeds(batch, steps, seed=index)
        expected = case.keras_outputs(feeds)
        received = function(**{k: tf.constant(v) for k, v in feeds.items()})
        for name, theirs in zip(names, expected):
            parity.record("exported SavedModel, reloaded",
                          received[name].numpy(), theirs)
            np.testing.assert_allclose(
                received[name].numpy(), theirs, atol=ATOL, rtol=0
            )


def test_named_signature_and_verification(tmp_path):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    sequence, state = kerasrnn.GRU(
        8, return_sequences=True, return_state=True)(embedded)
    model = keras.Model(
        tokens,
        {"logits": keras.layers.Dense(3)(
            kerasrnn.SequencePooling("last")(sequence)),
         "state": state},
    )
    info = to_saved_model(model, tmp_path / "model")
    assert info["parity"]["max_abs_error"] <= ATOL
    assert info["inputs"] == [
        {"name": "tokens", "dtype": "int32", "shape": [None, None]}
    ]
    assert [o["name"] for o in info["outputs"]] == ["logits", "state"]
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert "serving_default" in loaded.signatures
    function = loaded.signatures["serving_default"]
    assert list(function.structured_input_signature[1]) == ["tokens"]
    # Keras' masked semantics survive: padding does not change the result.
    short = function(tokens=tf.constant([[3, 4, 5]], tf.int32))
    padded = function(tokens=tf.constant([[3, 4, 5, 0, 0]], tf.int32))
    np.testing.assert_allclose(short["logits"].numpy(),
                               padded["logits"].numpy(), atol=1e-6)
    ops = saved_ops(tmp_path / "model")
    assert "MatMul" in ops and not any("Cudnn" in op for op in ops)


# --- Seq2Seq and LanguageModel: several named signatures ------------------

from kerasrnn.export.saved_model import STEP_ATOL  # noqa: E402
from kerasrnn.export.saved_model import check_seq2seq_saved_model  # noqa: E402
from kerasrnn.models import LanguageModel  # noqa: E402
from kerasrnn.models import Seq2Seq  # noqa: E402
from kerasrnn.models.lm_data import Vocabulary  # noqa: E402
from kerasrnn.models.text import Tokenizer  # noqa: E402

SOURCE_TOKENS = ["", "[UNK]", "[BOS]", "[EOS]", *"0123456789"]   # 14
TARGET_TOKENS = ["", "[UNK]", "[BOS]", "[EOS]", *"abcdefghijkl"]  # 16
# Tiny models over the configurations the export handles differently: the
# cell (one or two states), the attention (none, additive, multiplicative:
# keys of another size, or the memory's), the encoder and the bridge.
SEQ2SEQ_CONFIGS = {
    "lstm-no_attention-copy": dict(cell="lstm"),
    "gru-bahdanau-bidirectional": dict(
        cell="gru", attention="bahdanau", attention_units=6,
        bidirectional=True),
    "lstm-luong_general-2layer-dense-tokenizers": dict(
        cell="lstm", attention="luong_general", decoder_layers=2,
        bridge="dense", tokenizers=True),
    "gru-no_attention-bidirectional-2layer-dense": dict(
        cell="gru", bidirectional=True, decoder_layers=2,
        bridge="dense"),
}
BEAM_WIDTH, NUM_RETURN = 3, 2


def seq2seq_model(cell, tokenizers=False, seed=0, **config):
    """A Seq2Seq of random, nonzero weights (biases included), its EOS
    logit raised so that some hypotheses end before ``max_length``."""
    keras.utils.set_random_seed(seed)
    extra = {}
    if tokenizers:
        extra = dict(
            source_tokenizer=Tokenizer("char", vocabulary=SOURCE_TOKENS),
            target_tokenizer=Tokenizer("char", vocabulary=TARGET_TOKENS),
        )
    model = Seq2Seq(
        len(SOURCE_TOKENS), len(TARGET_TOKENS), bos_id=2, eos_id=3,
        embedding_dim=8, units=12, cell=cell, max_target_length=8,
        **config, **extra,
    )
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        noise = rng.normal(0.0, 0.2, variable.shape).astype("float32")
        variable.assign(variable.numpy() + noise)
    bias = model.decoder.output_layer.bias
    bias.assign(bias.numpy() + 1.5 * np.eye(len(TARGET_TOKENS))[3])
    return model


class Exports:
    """Each configuration built and exported (verified) once per module."""

    def __init__(self, directory):
        self.directory = directory
        self.cache = {}

    def __getitem__(self, name):
        if name not in self.cache:
            model = seq2seq_model(**SEQ2SEQ_CONFIGS[name])
            path = self.directory / name
            info = to_saved_model(model, path, beam_width=BEAM_WIDTH,
                                  num_return=NUM_RETURN)
            self.cache[name] = model, path, info
        return self.cache[name]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("seq2seq"))


def padded_sources(model, batch, steps, seed):
    """Random ids right-padded with 0 (``pad_id``): row 0 full, the last
    row two steps long."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0], lengths[-1] = steps, 2
    source = np.zeros((batch, steps), "int32")
    for row, length in enumerate(lengths):
        source[row, :length] = rng.integers(
            1, model.source_vocabulary_size, length)
    return source


def flat_state(model, state):
    names = [f"{k}_{layer}" for layer in range(model.decoder_layers)
             for k in ("h", "c")[:len(state["cells"][0])]]
    flat = dict(zip(names, [t for cells in state["cells"] for t in cells]))
    if model.decoder.feeds_attention:
        flat.update({k: state[k] for k in
                     ("attentional", "memory", "keys", "memory_mask")})
    return {k: keras.ops.convert_to_numpy(v) for k, v in flat.items()}


@pytest.mark.parametrize("name", list(SEQ2SEQ_CONFIGS))
def test_seq2seq_reload_parity(name, exports):
    model, path, info = exports[name]
    # The export's own verification passed, with its figures reported.
    parity_info = info["parity"]
    assert parity_info["encode"]["max_abs_error"] <= STEP_ATOL
    assert parity_info["decode_step"]["max_abs_error"] <= STEP_ATOL
    for search in ("generate_greedy", "generate_beam"):
        assert parity_info[search]["ids_identical"]
        assert parity_info[search]["max_score_error"] <= 1e-4
    assert parity_info["generate_beam"]["ended"] > 0   # EOS was exercised

    # And independently here, on other sources and lengths.
    signatures = tf.saved_model.load(str(path)).signatures
    source = padded_sources(model, batch=4, steps=5, seed=7)
    state = model.encode(source)
    received = signatures["encode"](source=tf.constant(source))
    expected = flat_state(model, state)
    assert sorted(received) == sorted(expected)
    for key, value in expected.items():
        parity.record("Seq2Seq SavedModel encode", received[key], value)
        np.testing.assert_allclose(received[key].numpy(), value, atol=1e-5)
    saved_state = {key: received[key] for key in expected}
    tokens = np.full(4, model.bos_id, "int32")
    for step in range(3):
        logits, new_state = model.decode_step(tokens, state)
        outputs = signatures["decode_step"](token_ids=tf.constant(tokens),
                                            **saved_state)
        parity.record("Seq2Seq SavedModel decode_step",
                      outputs["log_probs"],
                      tf.nn.log_softmax(logits).numpy())
        np.testing.assert_allclose(outputs["log_probs"].numpy(),
                                   tf.nn.log_softmax(logits).numpy(),
                                   atol=1e-5)
        for key, value in flat_state(model, new_state).items():
            np.testing.assert_allclose(outputs["new_" + key].numpy(), value,
                                       atol=1e-5)
        if model.decoder.feeds_attention:
            weights = model.decoder.step(tokens, state)[2].numpy()
            np.testing.assert_allclose(outputs["attention_weights"].numpy(),
                                       weights, atol=1e-5)
            np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
            assert np.all(weights[source == 0] == 0)   # padding unattended
        else:
            assert "attention_weights" not in outputs
        state = new_state
        saved_state = {key: outputs["new_" + key] for key in expected}
        tokens = np.argmax(logits, -1).astype("int32")

    for max_length in (1, 7):
        greedy = model.generate(source, max_length=max_length)
        ours = signatures["generate_greedy"](
            source=tf.constant(source), max_length=tf.constant(max_length))
        np.testing.assert_array_equal(ours["ids"], greedy.ids[:, 0])
        assert ours["ids"].shape == (4, max_length)
        np.testing.assert_array_equal(ours["lengths"], greedy.lengths[:, 0])
        np.testing.assert_allclose(ours["scores"], greedy.scores[:, 0],
                                   atol=1e-4)
        default = signatures["serving_default"](
            source=tf.constant(source), max_length=tf.constant(max_length))
        np.testing.assert_array_equal(default["ids"], ours["ids"])
    for alpha in (0.0, 1.0):
        beam = model.generate(source, method="beam", max_length=7,
                              beam_width=BEAM_WIDTH, num_return=NUM_RETURN,
                              length_penalty_weight=alpha)
        ours = signatures["generate_beam"](
            source=tf.constant(source), max_length=tf.constant(7),
            length_penalty_weight=tf.constant(alpha))
        assert ours["ids"].shape == (4, NUM_RETURN, 7)
        np.testing.assert_array_equal(ours["ids"], beam.ids)
        np.testing.assert_array_equal(ours["lengths"], beam.lengths)
        parity.record("Seq2Seq SavedModel beam scores", ours["scores"],
                      beam.scores)
        np.testing.assert_allclose(ours["scores"], beam.scores, atol=1e-4)
        # Padding and BOS are never generated.
        assert not np.isin(ours["ids"].numpy()[..., 0], [0, 2]).any()
    ops = saved_ops(path)
    assert "While" in ops or "StatelessWhile" in ops
    assert not any("Cudnn" in op for op in ops)


def test_seq2seq_signatures_are_as_documented(exports):
    name = "lstm-luong_general-2layer-dense-tokenizers"
    model, path, info = exports[name]
    states = ["h_0", "c_0", "h_1", "c_1",
              "attentional", "memory", "keys", "memory_mask"]
    units, vocabulary = 12, len(TARGET_TOKENS)
    shapes = {"h_0": [None, units], "c_0": [None, units],
              "h_1": [None, units], "c_1": [None, units],
              "attentional": [None, units], "memory": [None, None, units],
              "keys": [None, None, units], "memory_mask": [None, None]}
    dtypes = {key: "bool" if key == "memory_mask" else "float32"
              for key in states}

    def entries(names, shape_of, dtype_of, prefix=""):
        return [{"name": prefix + key, "dtype": dtype_of[key],
                 "shape": shape_of[key]} for key in names]

    source = {"name": "source", "dtype": "int32", "shape": [None, None]}
    length = {"name": "max_length", "dtype": "int32", "shape": []}
    expected = {
        "generate_greedy": {
            "inputs": [source, length],
            "outputs": [
                {"name": "ids", "dtype": "int32", "shape": [None, None]},
                {"name": "lengths", "dtype": "int32", "shape": [None]},
                {"name": "scores", "dtype": "float32", "shape": [None]},
            ],
        },
        "encode": {"inputs": [source],
                   "outputs": entries(states, shapes, dtypes)},
        "decode_step": {
            "inputs": [{"name": "token_ids", "dtype": "int32",
                        "shape": [None]}] + entries(states, shapes, dtypes),
            "outputs": [{"name": "log_probs", "dtype": "float32",
                         "shape": [None, vocabulary]}]
            + entries(states, shapes, dtypes, prefix="new_")
            + [{"name": "attention_weights", "dtype": "float32",
                "shape": [None, None]}],
        },
        "generate_beam": {
            "inputs": [source, length,
                       {"name": "length_penalty_weight", "dtype": "float32",
                        "shape": []}],
            "outputs": [
                {"name": "ids", "dtype": "int32",
                 "shape": [None, NUM_RETURN, None]},
                {"name": "lengths", "dtype": "int32",
                 "shape": [None, NUM_RETURN]},
                {"name": "scores", "dtype": "float32",
                 "shape": [None, NUM_RETURN]},
            ],
        },
    }
    assert info["signatures"] == expected
    assert info["signature"] == "serving_default"
    assert info["serving_default"] == "generate_greedy"
    assert info["state_names"] == states
    assert (info["beam_width"], info["num_return"]) == (BEAM_WIDTH,
                                                        NUM_RETURN)
    assert info["forbidden_ids"] == [0, 2]
    json.dumps(info)   # the CLI prints it

    # What a server sees: the reloaded signatures, by name, dtype, shape.
    signatures = tf.saved_model.load(str(path)).signatures
    assert set(signatures) == {"serving_default", *expected}
    expected["serving_default"] = expected["generate_greedy"]
    for signature, spec in expected.items():
        function = signatures[signature]
        inputs = function.structured_input_signature[1]
        assert sorted(inputs) == sorted(e["name"] for e in spec["inputs"])
        for entry in spec["inputs"]:
            assert inputs[entry["name"]].dtype.name == entry["dtype"]
            assert inputs[entry["name"]].shape.as_list() == entry["shape"]
        outputs = function.structured_outputs
        assert sorted(outputs) == sorted(e["name"] for e in spec["outputs"])
        for entry in spec["outputs"]:
            assert outputs[entry["name"]].dtype.name == entry["dtype"]
            assert outputs[entry["name"]].shape.as_list() == entry["shape"]

    # The tokenizers travel as assets.
    assert info["assets"] == {
        "source_tokenizer": "assets/source_tokenizer.json",
        "target_tokenizer": "assets/target_tokenizer.json",
    }
    for key, tokens in (("source_tokenizer", SOURCE_TOKENS),
                        ("target_tokenizer", TARGET_TOKENS)):
        tokenizer = Tokenizer.load(path / info["assets"][key])
        assert tokenizer.vocabulary == tokens
    assert exports["lstm-no_attention-copy"][2]["assets"] == {}
    ids = Tokenizer.load(path / "assets" / "source_tokenizer.json").encode(
        ["0123"]).to_tensor()
    result = signatures["serving_default"](source=tf.cast(ids, tf.int32),
                                           max_length=tf.constant(5))
    assert result["ids"].shape == (1, 5)


def test_seq2seq_serving_rejects_bad_requests(exports):
    model, path, _ = exports["gru-bahdanau-bidirectional"]
    signatures = tf.saved_model.load(str(path)).signatures
    source = tf.constant([[4, 5, 0]], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`source` ids"):
        signatures["generate_greedy"](source=tf.constant([[4, 99]]),
                                      max_length=tf.constant(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`max_length`"):
        signatures["generate_greedy"](source=source,
                                      max_length=tf.constant(0))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="length_penalty_weight"):
        signatures["generate_beam"](
            source=source, max_length=tf.constant(3),
            length_penalty_weight=tf.constant(-1.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty"):
        signatures["encode"](source=tf.zeros([2, 0], tf.int32))
    state = signatures["encode"](source=source)
    with pytest.raises(tf.errors.InvalidArgumentError, match="as many rows"):
        signatures["decode_step"](token_ids=tf.constant([2, 2]), **state)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`token_ids`"):
        signatures["decode_step"](token_ids=tf.constant([16]), **state)


def test_seq2seq_verification_names_what_differs(exports):
    model, path, _ = exports["lstm-no_attention-copy"]
    kernel = model.decoder.output_layer.kernel
    original = kernel.numpy()
    try:
        # Not a constant shift: log_softmax would not see it.
        kernel.assign(original + np.linspace(0, 0.01, original.size).reshape(
            original.shape).astype("float32"))   # the encoder still agrees
        with pytest.raises(RuntimeError,
                           match="'decode_step' output 'log_probs'"):
            check_seq2seq_saved_model(model, path, BEAM_WIDTH, NUM_RETURN)
    finally:
        kernel.assign(original)


def test_seq2seq_bad_export_arguments(tmp_path):
    model = Seq2Seq(12, 12, bos_id=1, eos_id=2, embedding_dim=8, units=8)
    with pytest.raises(ValueError, match="num_return"):
        to_saved_model(model, tmp_path / "a", beam_width=2, num_return=3)
    with pytest.raises(ValueError, match="beam_width"):
        to_saved_model(model, tmp_path / "b", beam_width=0)
    with pytest.raises(ValueError, match="output_names"):
        to_saved_model(model, tmp_path / "c", output_names=["ids"])
    assert not any(tmp_path.iterdir())


def test_unsupported_models_are_refused(tmp_path):
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed Subclassed") as error:
        to_saved_model(model, tmp_path / "m")
    assert "Seq2Seq" in str(error.value)
    assert "LanguageModel" in str(error.value)
    with pytest.raises(TypeError, match="Received: Dense"):
        to_saved_model(keras.layers.Dense(2), tmp_path / "l")
    with pytest.raises(ValueError, match="not built"):
        to_saved_model(LanguageModel(12, embedding_dim=8, units=8),
                       tmp_path / "lm")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_prompt_and_decode_step(cell, tmp_path):
    tokens = ["<unk>", "<eos>", *"abcdefghijklm"]
    model = LanguageModel(len(tokens), embedding_dim=8, units=8,
                          num_layers=2, cell=cell, tie_weights=cell == "gru",
                          vocabulary=Vocabulary(tokens, "word"))
    model(np.zeros((1, 2), "int32"))
    info = to_saved_model(model, tmp_path / "1")
    per_layer = ("h", "c") if cell == "lstm" else ("h",)
    states = [f"{k}_{layer}" for layer in range(2) for k in per_layer]
    assert info["state_names"] == states
    assert info["serving_default"] == "decode_step"
    assert [e["name"] for e in info["signatures"]["prompt"]["inputs"]] == [
        "token_ids", *states]
    assert [e["name"] for e in info["signatures"]["decode_step"]["outputs"]
            ] == ["log_probs", *("new_" + s for s in states)]
    assert info["parity"]["prompt"]["max_abs_error"] <= STEP_ATOL
    assert info["parity"]["decode_step"]["max_abs_error"] <= STEP_ATOL
    saved = Vocabulary.from_config(json.loads(
        (tmp_path / "1" / info["assets"]["vocabulary"]).read_text()))
    assert saved.tokens == tokens

    signatures = tf.saved_model.load(str(tmp_path / "1")).signatures
    assert set(signatures) == {"serving_default", "decode_step", "prompt"}
    prompt = np.array([[3, 4, 5, 6], [7, 8, 9, 10]], "int32")
    zeros = model.initial_state(2)
    _, expected = model(prompt[:, :-1], initial_state=zeros,
                        return_state=True)
    received = signatures["prompt"](
        token_ids=tf.constant(prompt[:, :-1]),
        **{s: tf.zeros([2, 8]) for s in states})
    for key, value in zip(states, expected):
        np.testing.assert_allclose(received["new_" + key], value, atol=1e-5)
    logits, _ = model.step(prompt[:, -1], expected)
    step = signatures["serving_default"](
        token_ids=tf.constant(prompt[:, -1]),
        **{key: received["new_" + key] for key in states})
    np.testing.assert_allclose(step["log_probs"],
                               tf.nn.log_softmax(logits), atol=1e-5)
