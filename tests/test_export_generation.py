"""Exported generation against Keras: a matrix of 24 ``Seq2Seq``
configurations, two more for every other registered cell, and 4 language
models.

For each: the exported first state and step equal ``encode`` /
``decode_step`` to 1e-5; greedy and beam search (widths 1, 3, 5, with and
without length penalty, n-best) over the exported graphs are
token-identical to ``model.generate``, scores within 1e-4; the sampling
distributions (temperature, top-k, top-p) of every step equal Keras' to
1e-5 and seeded sampling is reproducible. Weights are random but not
small (N(0, 0.4)), so distributions are peaked and rankings are not
decided by rounding.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import parity
from kerasrnn import decoding
from kerasrnn.cells import cell_names
from kerasrnn.export import generation
from kerasrnn.export import to_onnx
from kerasrnn.models import LanguageModel
from kerasrnn.models import Seq2Seq
from kerasrnn_serving import Generator
from kerasrnn_serving import search

SOURCE_VOCABULARY, TARGET_VOCABULARY = 17, 15
CELLS = ("lstm", "gru", "simple_rnn")
ATTENTIONS = (None, "bahdanau", "luong_dot", "luong_general")
# Two shapes of model per cell and attention: a plain one and a deep one.
SHAPES = (
    {},
    {"bidirectional": True, "encoder_layers": 2, "decoder_layers": 2},
)
BRIDGES = ("copy", "dense", "zero")
CONFIGS = [
    {"cell": cell, "attention": attention, **shape,
     "bridge": BRIDGES[index % 3], "tie_embeddings": index % 4 == 1}
    for index, (cell, attention, shape) in enumerate(
        itertools.product(CELLS, ATTENTIONS, SHAPES))
]
# Every other registered cell (the peephole LSTM, the IndRNN...): a plain
# model and a deep bidirectional one with attention.
CONFIGS += [
    config
    for cell in cell_names() if cell not in CELLS
    for config in (
        {"cell": cell, "attention": None, "bridge": "copy"},
        {"cell": cell, "attention": "bahdanau", "bidirectional": True,
         "encoder_layers": 2, "decoder_layers": 2, "bridge": "dense"},
    )
]
for config in CONFIGS:
    if config["bridge"] == "copy" and config.get("encoder_layers", 1) != (
        config.get("decoder_layers", 1)
    ):
        config["bridge"] = "dense"


def spread_weights(model, seed):
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0, 0.4, weight.shape).astype("float32"))


def sources(batch, seed):
    return generation.random_sources(_Sizes, batch, 7, seed)


class _Sizes:
    source_vocabulary_size, pad_id = SOURCE_VOCABULARY, 0


def name(config):
    return "-".join(f"{k}={v}" for k, v in config.items())


@pytest.fixture(scope="module", params=range(len(CONFIGS)),
                ids=[name(c) for c in CONFIGS])
def exported(request, tmp_path_factory):
    index = request.param
    config = CONFIGS[index]
    keras.utils.set_random_seed(index)
    model = Seq2Seq(SOURCE_VOCABULARY, TARGET_VOCABULARY, bos_id=1,
                    eos_id=2, units=12, embedding_dim=12,
                    max_target_length=10, **config)
    spread_weights(model, index)
    directory = tmp_path_factory.mktemp(f"seq2seq_{index}")
    to_onnx(model, directory)
    return index, model, Generator(directory)


@pytest.mark.parametrize("batch", [1, 3])
def test_first_state_and_step_equal_keras(exported, batch):
    index, model, generator = exported
    source = sources(batch, index)
    keras_state = model.encode(source)
    expected = generation.keras_state(model, generator.state_entries,
                                      keras_state)
    received = generator.encode(source)
    for state_name, value in expected.items():
        if value.dtype == bool:
            np.testing.assert_array_equal(received[state_name], value)
            continue
        np.testing.assert_allclose(received[state_name], value, atol=1e-5)
        parity.record("exported generation graphs in onnxruntime",
                      received[state_name], value)
    tokens = np.random.default_rng(index).integers(
        0, TARGET_VOCABULARY, batch).astype("int32")
    logits, state = model.decode_step(tokens, keras_state)
    log_probs, new_state, weights = generator.step(tokens, expected)
    reference = tf.nn.log_softmax(logits).numpy()
    np.testing.assert_allclose(log_probs, reference, atol=1e-5)
    parity.record("exported generation graphs in onnxruntime", log_probs,
                  reference)
    theirs = generation.keras_state(model, generator.state_entries, state)
    for entry in generator.state_entries:
        if not entry["constant"]:
            np.testing.assert_allclose(new_state[entry["name"]],
                                       theirs[entry["name"]], atol=1e-5)
    assert (weights is None) == (model.attention is None)


@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_is_token_identical(exported, batch):
    index, model, generator = exported
    source = sources(batch, index + 100)
    expected = model.generate(source, max_length=10)
    received = generator.generate_ids(source, max_length=10)
    np.testing.assert_array_equal(received.ids, expected.ids.numpy())
    np.testing.assert_allclose(received.scores, expected.scores.numpy(),
                               atol=1e-4)
    parity.record("exported greedy/beam scores vs model.generate",
                  received.scores, expected.scores.numpy())


def test_beam_search_is_token_identical(exported):
    index, model, generator = exported
    width = (1, 3, 5)[index % 3]
    source = sources(3, index + 200)
    for alpha in (0.0, 0.6):
        options = dict(method="beam", max_length=10, beam_width=width,
                       num_return=width, length_penalty_weight=alpha)
        expected = model.generate(source, **options)
        received = generator.generate_ids(source, **options)
        np.testing.assert_array_equal(received.ids, expected.ids.numpy())
        np.testing.assert_array_equal(received.lengths,
                                      expected.lengths.numpy())
        np.testing.assert_allclose(received.scores,
                                   expected.scores.numpy(), atol=1e-4)
        parity.record("exported greedy/beam scores vs model.generate",
                      received.scores, expected.scores.numpy())


def test_sampling_distributions_equal_keras(exported):
    index, model, generator = exported
    source = sources(2, index + 300)
    keras_state = model.encode(source)
    state = generator.encode(source)
    tokens = np.full(2, model.bos_id, "int32")
    for step in range(4):
        logits, keras_state = model.decode_step(tokens, keras_state)
        log_probs, state, _ = generator.step(tokens, state)
        for temperature, top_k, top_p in ((0.7, 5, None), (1.3, None, 0.8),
                                          (1.0, 4, 0.6)):
            ours = search.filtered_distribution(log_probs, temperature,
                                                top_k, top_p)
            filtered = decoding.logits.apply_temperature(
                tf.cast(logits, "float32"), temperature)
            if top_k is not None:
                filtered = decoding.top_k_filter(filtered, top_k)
            if top_p is not None:
                filtered = decoding.top_p_filter(filtered, top_p)
            theirs = tf.nn.softmax(filtered).numpy()
            np.testing.assert_allclose(ours, theirs, atol=1e-5)
            parity.record("exported sampling distributions", ours, theirs)
        tokens = np.argmax(log_probs, axis=-1).astype("int32")
    options = dict(method="sample", max_length=8, seed=7, top_k=6,
                   temperature=0.9, num_samples=3)
    first = generator.generate_ids(source, **options)
    again = generator.generate_ids(source, **options)
    np.testing.assert_array_equal(first.ids, again.ids)
    assert first.ids.shape == (2, 3, 8)


LM_CONFIGS = [
    {"cell": "lstm", "num_layers": 2},
    {"cell": "gru", "num_layers": 1},
    {"cell": "lstm", "num_layers": 1, "tie_weights": True},
    {"cell": "gru", "num_layers": 2, "tie_weights": True},
]


@pytest.mark.parametrize("config", LM_CONFIGS, ids=name)
def test_language_model_prompt_step_and_searches(config, tmp_path):
    keras.utils.set_random_seed(3)
    model = LanguageModel(19, embedding_dim=10, units=10, **config)
    model(np.zeros((1, 1), "int32"))
    spread_weights(model, 3)
    to_onnx(model, tmp_path)
    generator = Generator(tmp_path)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 19, n).astype("int32") for n in (5, 1, 3)]
    received = generator.prompt(prompts)
    for row, prompt in enumerate(prompts):
        _, states = model(prompt[None], initial_state=model.initial_state(1),
                          return_state=True)
        for entry, value in zip(generator.state_entries, states):
            np.testing.assert_allclose(received[entry["name"]][row:row + 1],
                                       value.numpy(), atol=1e-5)
            parity.record("exported generation graphs in onnxruntime",
                          received[entry["name"]][row:row + 1], value)
    start = np.array([p[-1] for p in prompts], "int32")
    keras_state = [tf.constant(received[e["name"]])
                   for e in generator.state_entries]
    for method, options in (("greedy", {}),
                            ("beam", {"beam_width": 3, "num_return": 2,
                                      "length_penalty_weight": 0.6})):
        expected = decoding.decode(model.step, start, keras_state, None, 9,
                                   method=method, **options)
        ours = generator.search(start, received, method, 9, end_id=None,
                                **options)
        np.testing.assert_array_equal(ours.ids, expected.ids.numpy())
        np.testing.assert_allclose(ours.scores, expected.scores.numpy(),
                                   atol=1e-4)


def test_generation_export_refuses_what_it_cannot_write(tmp_path):
    stateful = LanguageModel(11, embedding_dim=4, units=4, stateful=True,
                             batch_size=2)
    with pytest.raises(ValueError, match="stateful"):
        to_onnx(stateful, tmp_path)
