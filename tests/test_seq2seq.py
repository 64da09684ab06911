"""Seq2Seq: teacher forcing equals stepping, scheduled sampling, masks,
attention and metrics against NumPy, training, save/load, bad input."""

import itertools
import traceback
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasrnn.models import BahdanauAttention
from kerasrnn.models import LuongAttention
from kerasrnn.models import MaskedTokenAccuracy
from kerasrnn.models import Perplexity
from kerasrnn.models import ScheduledSampling
from kerasrnn.models import Seq2Seq
from kerasrnn.models import SequenceExactMatch
from kerasrnn.models import text
from kerasrnn.models import translation
from kerasrnn.models.seq2seq import GENERATE_CACHE_SIZE

PAD, BOS, EOS = 0, 1, 2
VOCAB = 12  # 3..11 are symbols


def reverse_data(count, seed, max_length=6):
    """Sources of 2..max_length symbols; targets [BOS, reversed, EOS]."""
    rng = np.random.default_rng(seed)
    source = np.zeros((count, max_length), "int32")
    target = np.zeros((count, max_length + 2), "int32")
    for row, length in enumerate(rng.integers(2, max_length + 1, count)):
        symbols = rng.integers(3, VOCAB, length)
        source[row, :length] = symbols
        target[row, : length + 2] = [BOS, *symbols[::-1], EOS]
    return source, target


def small_model(**overrides):
    config = {
        "source_vocabulary_size": VOCAB, "target_vocabulary_size": VOCAB,
        "bos_id": BOS, "eos_id": EOS, "embedding_dim": 8, "units": 16,
        "max_target_length": 10,
    }
    config.update(overrides)
    return Seq2Seq(**config)


CONFIGS = {
    "lstm-bahdanau-bi-deep-copy": {
        "cell": "lstm", "attention": "bahdanau", "bidirectional": True,
        "encoder_layers": 2, "decoder_layers": 2, "bridge": "copy"},
    "gru-luong-general-dense": {
        "cell": "gru", "attention": "luong_general", "encoder_layers": 2,
        "bridge": "dense"},
    "elman-luong-dot-zero-tied": {
        "cell": "simple_rnn", "attention": "luong_dot", "bridge": "zero",
        "tie_embeddings": True},
    "lstm-no-attention-tied-projection": {
        "cell": "lstm", "embedding_dim": 6, "tie_embeddings": True},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_teacher_forced_call_equals_step_by_step(name):
    model = small_model(**CONFIGS[name])
    source, target = reverse_data(4, seed=1)
    decoder_inputs = target[:, :-1]
    logits, alignments = model.teacher_forced(source, decoder_inputs)
    assert tuple(logits.shape) == (4, 7, VOCAB)
    state = model.encode(source)
    for t in range(decoder_inputs.shape[1]):
        step_logits, state, step_alignments = model.decoder.step(
            decoder_inputs[:, t], state
        )
        np.testing.assert_allclose(logits[:, t], step_logits, atol=1e-5)
        if alignments is not None:
            np.testing.assert_allclose(
                alignments[:, t], step_alignments, atol=1e-6
            )
    # call() is the same forward pass.
    np.testing.assert_allclose(
        model((source, decoder_inputs)), logits, atol=1e-6
    )


def test_padding_is_masked_in_encoder_and_attention():
    model = small_model(attention="bahdanau", bidirectional=True)
    source = np.array([[3, 4, 5, 0, 0, 0]], "int32")
    target = np.array([[BOS, 5, 4, 3]], "int32")
    padded_logits, alignments = model.teacher_forced(source, target)
    short_logits, _ = model.teacher_forced(source[:, :3], target)
    np.testing.assert_allclose(padded_logits, short_logits, atol=1e-5)
    np.testing.assert_allclose(alignments[0, :, 3:], 0.0, atol=1e-7)
    np.testing.assert_allclose(
        np.sum(alignments, axis=-1), 1.0, atol=1e-5
    )


def numpy_softmax(x, mask):
    x = np.where(mask, x, -1e9)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_attention_layers_match_numpy():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 4)).astype("float32")
    memory = rng.normal(size=(2, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    bahdanau = BahdanauAttention(3)
    bahdanau.build(query.shape, memory.shape)
    w_q, w_m, b, v = [w.numpy() for w in bahdanau.weights]
    scores = np.tanh(
        (query @ w_q)[:, None] + memory @ w_m + b
    ) @ v
    luong = LuongAttention("general")
    luong.build(query.shape, memory.shape)
    w_a = luong.weights[0].numpy()
    dot = LuongAttention("dot")
    dot.build(query.shape, memory.shape)
    cases = [
        (bahdanau, scores),
        (luong, np.einsum("bq,qd,bsd->bs", query, w_a, memory)),
        (dot, np.einsum("bq,bsq->bs", query, memory)),
    ]
    for layer, expected_scores in cases:
        context, weights = layer(
            query, layer.precompute(memory), memory, mask
        )
        expected = numpy_softmax(expected_scores, mask)
        np.testing.assert_allclose(weights, expected, atol=1e-6)
        np.testing.assert_allclose(
            context, np.einsum("bs,bsd->bd", expected, memory), atol=1e-5
        )


def test_scheduled_sampling():
    model = small_model(attention="luong_general", seed=3)
    source, target = reverse_data(8, seed=2)
    decoder_inputs = target[:, :-1]
    forced, _ = model.teacher_forced(source, decoder_inputs)
    # p = 0: exactly teacher forcing.
    zero, _ = model.teacher_forced(
        source, decoder_inputs, sampling_probability=0.0
    )
    np.testing.assert_array_equal(zero, forced)
    # p = 1: every step after the first reads the model's own sample, so
    # the ground truth after BOS no longer matters (same random draws).
    generator = model.decoder.seed_generator.state
    saved = generator.numpy()
    one, _ = model.teacher_forced(
        source, decoder_inputs, sampling_probability=1.0
    )
    generator.assign(saved)
    scrambled = decoder_inputs.copy()
    scrambled[:, 1:] = 3
    one_scrambled, _ = model.teacher_forced(
        source, scrambled, sampling_probability=1.0
    )
    np.testing.assert_allclose(one, one_scrambled, atol=1e-6)
    np.testing.assert_allclose(one[:, 0], forced[:, 0], atol=1e-6)
    assert not np.allclose(one, forced, atol=1e-3)


@pytest.mark.parametrize("schedule,k,c,i,expected", [
    ("linear", 1.0, 0.01, 30, 0.3),
    ("linear", 1.0, 0.01, 500, 0.9),           # floor epsilon = 0.1
    ("exponential", 0.99, 0.0, 100, 1 - 0.99**100),
    ("inverse_sigmoid", 10.0, 0.0, 20, 1 - 10 / (10 + np.exp(2.0))),
])
def test_schedules_follow_bengio_et_al(schedule, k, c, i, expected):
    callback = ScheduledSampling(schedule, k=k, c=c, epsilon=0.1)
    assert callback.probability(i) == pytest.approx(expected)


def test_metrics_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 5)).astype("float32")
    labels = np.array([[1, 2, 3, 0], [4, 4, 0, 0], [2, 0, 0, 0]])
    predicted = logits.argmax(-1)
    labels[0, :3] = predicted[0, :3]          # row 0 all right
    labels[1, 0] = predicted[1, 0]
    labels[1, 1] = (predicted[1, 1] + 1) % 5 or 1   # row 1 one wrong
    mask = labels != 0
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    accuracy = MaskedTokenAccuracy()
    accuracy.update_state(labels, logits)
    assert float(accuracy.result()) == pytest.approx(
        (predicted == labels)[mask].mean())
    perplexity = Perplexity()
    perplexity.update_state(labels, logits)
    assert float(perplexity.result()) == pytest.approx(
        np.exp(nll[mask].mean()), rel=1e-5)
    exact = SequenceExactMatch()
    exact.update_state(labels, logits)
    rows = [np.all((predicted == labels)[r][mask[r]]) for r in range(3)]
    assert float(exact.result()) == pytest.approx(np.mean(rows))


def test_evaluate_loss_is_the_mean_over_real_tokens():
    model = small_model(attention="bahdanau")
    model.compile()
    source, target = reverse_data(16, seed=4)
    results = model.evaluate(source, target, batch_size=16, verbose=0,
                             return_dict=True)
    logits, _ = model.teacher_forced(source, target[:, :-1])
    labels = target[:, 1:]
    log_p = tf.nn.log_softmax(logits).numpy()
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    expected = nll[labels != PAD].mean()
    assert results["loss"] == pytest.approx(expected, rel=1e-5)
    assert results["perplexity"] == pytest.approx(np.exp(expected), rel=1e-5)


@pytest.fixture(scope="module")
def trained():
    """A small attention model trained to reverse short sequences."""
    keras.utils.set_random_seed(0)
    source, target = reverse_data(2048, seed=0, max_length=5)
    model = small_model(
        attention="luong_general", units=48, embedding_dim=16,
        bidirectional=True, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02, clipnorm=1.0))
    dataset = text.bucketed_dataset(
        [list(r[r != 0]) for r in source],
        [list(r[r != 0]) for r in target],
        batch_size=64, boundaries=[5], seed=0,
    )
    history = model.fit(
        dataset, epochs=6, verbose=0, shuffle=False,
        callbacks=[ScheduledSampling("linear", k=1.0, c=0.002, epsilon=0.9)],
    )
    return model, history


def test_learns_to_reverse_in_seconds(trained):
    model, history = trained
    # The linear schedule: p rose from 0 and stopped at 1 - epsilon.
    assert history.history["sampling_probability"][-1] == pytest.approx(0.1)
    source, target = reverse_data(200, seed=9, max_length=5)
    ids = model.predict(source, verbose=0, batch_size=200)
    lengths = (target != PAD).sum(1) - 1
    hits = [
        np.array_equal(ids[r, : lengths[r]], target[r, 1: lengths[r] + 1])
        for r in range(200)
    ]
    assert np.mean(hits) >= 0.9


def test_generate_methods_on_a_trained_model(trained):
    model, _ = trained
    source, _ = reverse_data(6, seed=11, max_length=5)
    greedy = model.generate(source)
    beam_one = model.generate(source, method="beam", beam_width=1)
    np.testing.assert_array_equal(beam_one.ids, greedy.ids)
    np.testing.assert_allclose(beam_one.log_probs, greedy.log_probs,
                               rtol=1e-4)
    beam = model.generate(source, method="beam", beam_width=4, num_return=3)
    assert tuple(beam.ids.shape) == (6, 3, 10)
    assert np.all(np.diff(beam.scores.numpy(), axis=1) <= 0)
    sample = model.generate(source, method="sample", seed=1, top_k=3)
    again = model.generate(source, method="sample", seed=1, top_k=3)
    np.testing.assert_array_equal(sample.ids, again.ids)
    # Alignments of the generated output, as used for heat maps.
    generated = np.concatenate(
        [np.full((6, 1), BOS), greedy.ids.numpy()[:, 0]], axis=1
    )
    alignments = model.alignments(source, generated)
    assert tuple(alignments.shape) == (6, 10, 5)


def test_save_and_load_keep_generate_identical(trained, tmp_path):
    model, _ = trained
    path = str(tmp_path / "reverse.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, Seq2Seq)
    assert restored.get_config() == model.get_config()
    source, _ = reverse_data(16, seed=12, max_length=5)
    for options in ({}, {"method": "beam", "beam_width": 3,
                         "length_penalty_weight": 0.6}):
        expected = model.generate(source, **options)
        got = restored.generate(source, **options)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
    # Compiled as saved: same loss, metrics and optimizer state.
    assert restored.compiled
    assert restored.optimizer.iterations.numpy() == (
        model.optimizer.iterations.numpy())
    for ours, theirs in zip(restored.optimizer.variables,
                            model.optimizer.variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    source, target = reverse_data(64, seed=13, max_length=5)
    expected = model.evaluate(source, target, verbose=0, return_dict=True)
    got = restored.evaluate(source, target, verbose=0, return_dict=True)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-5)


def test_config_round_trip():
    model = small_model(**CONFIGS["gru-luong-general-dense"], dropout=0.1)
    clone = Seq2Seq.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert len(clone.weights) == len(model.weights)


def test_tied_embeddings_share_the_weight():
    tied = small_model(tie_embeddings=True, embedding_dim=16)
    untied = small_model(embedding_dim=16)

    def count(model):
        return sum(int(np.prod(w.shape)) for w in model.trainable_weights)

    # The tied model has no (H, V) output kernel, only its bias.
    assert count(untied) - count(tied) == 16 * VOCAB
    state = tied.encode(np.array([[3, 4]]))
    logits, state, _ = tied.decoder.step(tf.constant([BOS]), state)
    h = state["cells"][0][0]
    expected = h @ tf.transpose(tied.decoder.embedding.embeddings) + (
        tied.decoder.output_bias
    )
    np.testing.assert_allclose(logits, expected, atol=1e-6)


def test_fit_under_mirrored_strategy_on_one_cpu():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = small_model(attention="bahdanau")
        model.compile(optimizer=keras.optimizers.Adam(clipnorm=1.0))
    source, target = reverse_data(64, seed=5)
    history = model.fit(source, target, batch_size=32, epochs=1, verbose=0,
                        callbacks=[ScheduledSampling("exponential", k=0.9)])
    assert np.isfinite(history.history["loss"][0])
    assert history.history["sampling_probability"][0] == pytest.approx(
        1 - 0.9
    )
    result = model.evaluate(source, target, verbose=0, return_dict=True)
    assert 0 <= result["token_accuracy"] <= 1


# --- text utilities ---------------------------------------------------------

def test_tokenizer_char_and_word_levels():
    chars = text.Tokenizer("char")
    chars.adapt(["3 May 1979", "12 June 2001"])
    assert chars.vocabulary[:4] == ["", "[UNK]", "[BOS]", "[EOS]"]
    ids = chars.encode(["1979-05-03"], bos_eos=True)
    row = ids.to_list()[0]
    assert row[0] == chars.bos_id and row[-1] == chars.eos_id
    assert chars.oov_id in row           # "-" was never seen
    # "-" and "5" were never seen: each maps to [UNK], nothing fails.
    assert chars.decode(ids) == ["1979[UNK]0[UNK][UNK]03"]
    words = text.Tokenizer("word")
    words.adapt(["Va !", "Cours !", "Il fait beau."])
    ids = words.encode(["Va, il fait très beau !"])
    assert words.decode(ids) == ["va [UNK] il fait [UNK] beau !"]
    restored = text.Tokenizer("word", vocabulary=words.vocabulary)
    np.testing.assert_array_equal(
        restored.encode(["il fait beau"]).to_list(),
        words.encode(["il fait beau"]).to_list(),
    )


def test_bucketed_dataset_pads_per_bucket():
    sources = [[3, 4], [3, 4, 5, 6, 7, 8], [5], [6, 7, 8, 9, 10, 11]]
    targets = [[BOS, 4, 3, EOS]] * 2 + [[BOS, 5, EOS]] * 2
    dataset = text.bucketed_dataset(
        sources, targets, batch_size=2, boundaries=[5], shuffle=False
    )
    shapes = sorted(tuple(s.shape) for s, _ in dataset)
    assert shapes == [(2, 2), (2, 6)]


@pytest.mark.parametrize("boundaries", [[3], [4, 7], [2, 5, 9]])
def test_bucketed_dataset_knows_its_batch_count(boundaries):
    """The declared cardinality is the count every shuffled epoch yields
    (tf.data raises if an epoch disagrees), including partial batches and
    lengths on a boundary."""
    rng = np.random.default_rng(len(boundaries))
    lengths = rng.integers(1, 11, size=53)
    sources = [list(rng.integers(3, 12, size=n)) for n in lengths]
    targets = [[BOS, 4, EOS]] * len(sources)
    dataset = text.bucketed_dataset(sources, targets, batch_size=4,
                                    boundaries=boundaries, seed=0)
    declared = int(dataset.cardinality())
    for _ in range(3):
        batches = list(dataset)
        assert len(batches) == declared
        assert sum(len(s) for s, _ in batches) == len(sources)


def test_bad_input_is_a_clear_error():
    model = small_model(max_source_length=6)
    with pytest.raises(ValueError, match=r"`source` is empty"):
        model.generate(np.zeros((2, 0), "int32"))
    with pytest.raises(ValueError, match=r"7 steps, more than "
                       r"max_source_length=6"):
        model.generate(np.full((1, 7), 3, "int32"))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "
                       r"source_vocabulary_size=12\). Received: ids in "
                       r"\[3, 12\]"):
        model.generate(np.array([[3, 12]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model.generate(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="beam_width=0"):
        model.generate(np.array([[3]]), method="beam", beam_width=0)
    with pytest.raises(ValueError, match="temperature=0"):
        model.generate(np.array([[3]]), method="sample", temperature=0)
    with pytest.raises(ValueError, match="top_p=1.5"):
        model.generate(np.array([[3]]), method="sample", top_p=1.5)
    with pytest.raises(ValueError, match="method='nucleus'"):
        model.generate(np.array([[3]]), method="nucleus")
    with pytest.raises(ValueError, match=r"\(source, decoder_inputs\)"):
        model(np.array([[3]]))
    model.compile()
    source, target = reverse_data(4, seed=0)
    with pytest.raises(ValueError, match=r"target row 0 starts with id \d+; "
                       "every target must be \\[bos_id=1"):
        model.fit(source, target[:, 1:], verbose=0)
    with pytest.raises(ValueError, match="missing"):
        text.Tokenizer("word", vocabulary=["", "[UNK]", "a", "b"])
    with pytest.raises(ValueError, match=r"longer than max_length=3"):
        text.bucketed_dataset([[3, 4, 5, 6]], [[1, 2]], 2, [2],
                              max_length=3)
    with pytest.raises(ValueError, match="empty sequences"):
        text.bucketed_dataset([[]], [[1, 2]], 2, [2])


@pytest.mark.parametrize("overrides,message", [
    ({"bos_id": 2}, "three different tokens"),
    ({"eos_id": 12}, (r"`eos_id` must be a token id in \[0, "
     r"target_vocabulary_size=12\). Received: eos_id=12")),
    ({"bridge": "copy", "encoder_layers": 2}, "as many layers"),
    ({"bidirectional": True, "units": 15}, "units=15"),
    ({"cell": "transformer"}, "`cell` must be one of"),
    ({"attention": "dot"}, "`attention` must be one of"),
    ({"bridge": "mlp"}, "`bridge` must be one of"),
    ({"dropout": 1.0}, r"`dropout` must be a float in \[0, 1\)"),
])
def test_bad_configuration_is_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_model(**overrides)


# --- defects a new user hit -------------------------------------------------

def pad_and_bos_favoured():
    """A model whose output layer prefers PAD, then BOS, to every token."""
    model = small_model(attention="bahdanau")
    bias = model.decoder.output_layer.bias
    bias.assign(np.eye(VOCAB, dtype="float32")[PAD] * 50
                + np.eye(VOCAB, dtype="float32")[BOS] * 40)
    return model


@pytest.mark.parametrize("method,options", [
    ("greedy", {}), ("sample", {"seed": 0}),
    ("beam", {"beam_width": 3, "num_return": 3}),
])
def test_generate_never_emits_padding_or_bos(method, options):
    model = pad_and_bos_favoured()
    source, _ = reverse_data(4, seed=1)
    result = model.generate(source, method=method, max_length=6, **options)
    ids, lengths = result.ids.numpy(), result.lengths.numpy()
    for row in range(4):
        for k in range(ids.shape[1]):
            generated = ids[row, k, :lengths[row, k]]
            assert PAD not in generated and BOS not in generated
    # The favoured tokens were what the unmasked search picked.
    logits, _ = model.decode_step(tf.fill([1], BOS),
                                  model.encode(source[:1]))
    assert int(tf.argmax(logits[0])) == PAD


def test_generate_traces_once_for_every_seed_and_bounds_its_cache():
    model = small_model()
    source, _ = reverse_data(3, seed=2)
    samples = [model.generate(source, method="sample", seed=seed,
                              temperature=0.5 + seed / 10, top_k=5).ids
               for seed in range(6)]
    assert len(model._generate_functions) == 1
    function = next(iter(model._generate_functions.values()))
    assert function.experimental_get_tracing_count() == 1
    assert any(not np.array_equal(samples[0], s) for s in samples[1:])
    np.testing.assert_array_equal(
        model.generate(source, method="sample", seed=3, temperature=0.8,
                       top_k=5).ids, samples[3])
    for max_length in (2, 5, 9):          # per call, no new trace
        assert model.generate(source, max_length=max_length).ids.shape[
            -1] == max_length
    assert len(model._generate_functions) == 2
    for width in range(1, GENERATE_CACHE_SIZE + 4):
        model.generate(source, method="beam", beam_width=width,
                       max_length=3)
    assert len(model._generate_functions) == GENERATE_CACHE_SIZE


@pytest.mark.parametrize("options,message", [
    ({"max_length": 0}, r"`max_length` must be an integer >= 1. "
     r"Received: max_length=0"),
    ({"method": "beam", "beam_width": 0}, "beam_width=0"),
    ({"method": "beam", "beam_width": 2, "num_return": 3},
     "must not exceed `beam_width`"),
    ({"method": "sample", "temperature": 0}, "temperature=0"),
    ({"method": "sample", "top_p": 2}, "top_p=2"),
    ({"beam_width": 3}, r"method='greedy' takes the options "
     r"\['min_length'\]. Received unknown options: \['beam_width'\]"),
    ({"method": "beam", "top_k": 3}, r"method='beam' takes the options"),
])
def test_generate_options_are_checked_before_tracing(options, message):
    model = small_model()
    with pytest.raises(ValueError, match=message) as error:
        model.generate(np.array([[3, 4]]), **options)
    frames = "".join(traceback.format_tb(error.value.__traceback__))
    assert "tf__" not in frames and "autograph" not in frames
    assert not model._generate_functions


def test_fit_checks_the_data_and_names_the_row():
    model = small_model()
    model.compile()
    source, target = reverse_data(8, seed=3)
    bad_ids = target.copy()
    bad_ids[5, 2] = 54
    with pytest.raises(ValueError, match=r"target row 5, step 2 holds id 54,"
                       r" outside \[0, target_vocabulary_size=12\)"):
        model.fit(source, bad_ids, verbose=0)
    bad_source = source.copy()
    bad_source[1, 0] = -1
    with pytest.raises(ValueError, match="source row 1, step 0 holds id -1"):
        model.fit(bad_source, target, verbose=0)
    bos_only = target.copy()
    bos_only[3] = [BOS] + [PAD] * (target.shape[1] - 1)
    with pytest.raises(ValueError, match="target row 3 has no token after "
                       "BOS"):
        model.fit(source, bos_only, verbose=0)
    eos_only = target.copy()
    eos_only[2] = [EOS] + [PAD] * (target.shape[1] - 1)
    with pytest.raises(ValueError, match="target row 2 starts with id 2"):
        model.fit(tf.data.Dataset.from_tensor_slices(
            (source, eos_only)).batch(4), verbose=0)
    with pytest.raises(ValueError, match="validation_data: target row 3"):
        model.fit(source, target, validation_data=(source, bos_only),
                  verbose=0)


def test_tokenizers_are_saved_with_the_model(tmp_path):
    sources = text.Tokenizer("char")
    sources.adapt(["12+3", "45+6"])
    targets = text.Tokenizer("char")
    targets.adapt(["15", "51"])
    model = Seq2Seq(sources.vocabulary_size, targets.vocabulary_size,
                    bos_id=targets.bos_id, eos_id=targets.eos_id, units=16,
                    source_tokenizer=sources, target_tokenizer=targets,
                    max_target_length=5)
    expected = model.generate_text(["12+3", "9+9"])
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.source_tokenizer.vocabulary == sources.vocabulary
    assert restored.target_tokenizer.vocabulary == targets.vocabulary
    assert restored.generate_text(["12+3", "9+9"]) == expected
    sources.save(tmp_path / "tokens.json")
    assert text.Tokenizer.load(tmp_path / "tokens.json").vocabulary == (
        sources.vocabulary)
    with pytest.raises(ValueError, match="has 8 tokens but the model's "
                       "vocabulary has 12"):
        small_model(source_tokenizer=text.Tokenizer(
            "char", vocabulary=["", "[UNK]", "[BOS]", "[EOS]", *"abcd"]))
    with pytest.raises(ValueError, match="needs the tokenizers"):
        small_model().generate_text("abc")


def test_metrics_declare_their_direction_for_callbacks(tmp_path):
    model = small_model()
    model.compile()
    source, target = reverse_data(32, seed=4)
    callbacks = [keras.callbacks.ModelCheckpoint(
        str(tmp_path / f"{name}.keras"), monitor=f"val_{name}",
        save_best_only=True) for name in
        ("exact_match", "token_accuracy", "perplexity")]
    model.fit(source, target, validation_data=(source, target), epochs=1,
              verbose=0, callbacks=callbacks)
    ops = {c.monitor: c.monitor_op for c in callbacks}
    assert ops["val_exact_match"] is keras.ops.greater
    assert ops["val_token_accuracy"] is keras.ops.greater
    assert ops["val_perplexity"] is keras.ops.less


def test_initializers_are_arguments_and_round_trip():
    model = small_model(attention="bahdanau", units=32, embedding_dim=32)
    # The default embedding is N(0, 1), PyTorch's, not Keras' U(-0.05, 0.05).
    for embedding in (model.source_embedding, model.decoder.embedding):
        assert np.std(embedding.embeddings.numpy()) == pytest.approx(
            1.0, abs=0.1)
    constant = {"class_name": "Constant", "config": {"value": 0.25}}
    custom = small_model(   # a GRU: an LSTM's forget bias starts at 1
        cell="gru", attention="bahdanau", bridge="dense",
        embeddings_initializer=constant, kernel_initializer=constant,
        recurrent_initializer=constant, bias_initializer=constant,
        attention_initializer=constant, output_initializer=constant,
    )
    for variable in custom.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(), 0.25,
                                      err_msg=variable.path)
    clone = Seq2Seq.from_config(custom.get_config())
    assert clone.get_config() == custom.get_config()
    with pytest.raises(ValueError, match="`kernel_initializer` must be a "
                       "Keras initializer"):
        small_model(kernel_initializer="no_such_initializer")


def test_bahdanau_under_mixed_precision_masks_without_overflow():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        attention = BahdanauAttention(4)
        query = np.ones((2, 3), "float16")
        memory = np.random.default_rng(0).normal(size=(2, 5, 3))
        memory = memory.astype("float16")
        mask = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool)
        attention.build(query.shape, memory.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, alignments = attention(
                query, attention.precompute(memory), memory, mask)
    finally:
        keras.config.set_dtype_policy("float32")
    alignments = np.asarray(alignments, "float32")
    np.testing.assert_array_equal(alignments[~mask], 0.0)
    np.testing.assert_allclose(alignments.sum(-1), 1.0, atol=1e-3)


def test_translation_pairs_split_and_bleu(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("Go.\tVa !\nGo.\tMarche.\nHi.\tSalut !\nRun!\tCours !\n"
                    "A b c d e f.\tx\n", encoding="utf-8")
    pairs = translation.read_pairs(path, max_words=3)
    assert pairs == [("Go.", "Va !"), ("Go.", "Marche."), ("Hi.", "Salut !"),
                     ("Run!", "Cours !")]
    train, test = translation.split_by_source(
        pairs, 0.5, np.random.default_rng(0))
    held_out = {source for source, _ in test}
    assert len(held_out) == 1 and not held_out & {s for s, _ in train}
    if "Go." in held_out:     # all references of a held-out source
        assert dict(test)["Go."] == ["Va !", "Marche."]
    # Scored against every reference: the second one matches exactly.
    score = translation.corpus_bleu(
        ["le chat est sur le tapis ."],
        [["un chien dort .", "le chat est sur le tapis ."]])
    assert score.score == pytest.approx(100.0)
    path.write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.txt:1: expected "
                       r"'source<TAB>target'"):
        translation.read_pairs(path, 10)


def test_bleu_without_sacrebleu_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install -e '
                       r'"\.\[examples\]"'):
        translation.corpus_bleu(["a"], [["a"]])


def test_compile_defaults_to_adam_with_global_clipping():
    model = small_model()
    model.compile()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert optimizer.global_clipnorm == 1.0 and optimizer.clipnorm is None
    assert optimizer.epsilon == 1e-8
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)


def test_no_two_weights_share_an_initial_value():
    """One unseeded initializer object draws its seed once; every weight
    gets its own copy, so no two weights start equal."""
    model = small_model(attention="bahdanau", bidirectional=True,
                        cell="gru", units=16, embedding_dim=8)
    values = [v.numpy().ravel() for v in model.trainable_variables
              if np.ptp(v.numpy()) > 0]
    for a, b in itertools.combinations(values, 2):
        size = min(a.size, b.size)
        assert not np.allclose(a[:size], b[:size])


def test_get_config_hands_out_copies_of_the_initializer_configs():
    """Keras' saving may annotate the config dicts it is given
    (``shared_object_id``); that must not reach the model's own config
    (a CI run once saw a saved model's config differ from its reload)."""
    model = small_model(attention="bahdanau")
    config = model.get_config()
    config["embeddings_initializer"]["shared_object_id"] = 1
    assert "shared_object_id" not in model.get_config()[
        "embeddings_initializer"]
    decoder_config = model.decoder.get_config()
    decoder_config["output_initializer"]["shared_object_id"] = 2
    assert "shared_object_id" not in model.decoder.get_config()[
        "output_initializer"]


def test_model_built_while_loading_keeps_a_clean_config():
    """load_model builds the model inside Keras' object-sharing scope,
    where serialising an object twice marks it ``shared_object_id``; the
    constructor must not serialise (one object given to two arguments
    once leaked the mark into the model's config)."""
    import json

    from keras.src.saving.serialization_lib import ObjectSharingScope

    shared = keras.initializers.GlorotUniform()
    with ObjectSharingScope():
        model = small_model(kernel_initializer=shared,
                            attention_initializer=shared,
                            attention="bahdanau")
    assert "shared_object_id" not in json.dumps(model.get_config())
