"""Seq2Seq, its decoder, the searches and the captioner on the backend of
``KERAS_BACKEND`` (CI runs the file on jax and torch; it passes on
tensorflow too), against TensorFlow's results for the same weights and
data, computed once per session in a TensorFlow subprocess:

* the teacher-forced logits of LSTM and GRU models, with and without
  Bahdanau and Luong attention (1e-5, float32), and the captioner's;
* one ``fit`` epoch with SGD: the epoch loss and every updated weight
  (1e-5 relative: the gradients are TensorFlow's);
* greedy and beam ``generate``: the same tokens (and scores within 1e-5);

then scheduled sampling (p = 0 is teacher forcing exactly, p = 1 ignores
the ground truth after BOS, p = 0.5 trains reproducibly from a seed),
seeded sampling (reproducible, valid), the captioner's training step and
generation, and the clear errors of bad input.
"""

import os

import keras
import numpy as np
import parity
import pytest
from keras import ops
from on_backend import run_on_backend

from kerasrnn.models import ImageCaptioner
from kerasrnn.models import ScheduledSampling
from kerasrnn.models import Seq2Seq
from kerasrnn.models import text
from kerasrnn.models.captioning import conv_encoder

BACKEND = keras.config.backend()
PAD, BOS, EOS = 0, 1, 2
VOCAB = 11
# Name -> Seq2Seq arguments: both cells, each attention, the bridges.
CONFIGS = {
    "lstm-plain-copy": {"cell": "lstm"},
    "gru-bahdanau": {"cell": "gru", "attention": "bahdanau"},
    "lstm-luong-general-bi-dense": {
        "cell": "lstm", "attention": "luong_general", "bidirectional": True,
        "bridge": "dense"},
    "gru-luong-dot-deep": {
        "cell": "gru", "attention": "luong_dot", "encoder_layers": 2,
        "decoder_layers": 2},
}
# The configurations trained one epoch and decoded against TensorFlow.
FIT_CONFIGS = ["lstm-plain-copy", "gru-bahdanau"]
BEAM = {"beam_width": 3, "num_return": 2, "length_penalty_weight": 0.6}
TOLERANCE = 1e-5


def data(count=8, seed=0, length=5):
    """Sources of 2..length symbols; targets [BOS, reversed, EOS, pad]."""
    rng = np.random.default_rng(seed)
    source = np.zeros((count, length), "int32")
    target = np.zeros((count, length + 2), "int32")
    for row, size in enumerate(rng.integers(2, length + 1, count)):
        symbols = rng.integers(3, VOCAB, size)
        source[row, :size] = symbols
        target[row, :size + 2] = [BOS, *symbols[::-1], EOS]
    return source, target


def fixed_weights(model, seed=5, scale=0.5):
    """Every trainable weight from N(0, scale²), in the model's (backend
    independent) weight order."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0.0, scale, weight.shape).astype("float32"))
    return model


def build(name, **overrides):
    arguments = {"embedding_dim": 6, "units": 8, "max_target_length": 7,
                 "seed": 3, **CONFIGS[name], **overrides}
    model = Seq2Seq(VOCAB, VOCAB, bos_id=BOS, eos_id=EOS, **arguments)
    return fixed_weights(model)


def captioner():
    keras.utils.set_random_seed(11)
    model = ImageCaptioner(
        conv_encoder((8, 8, 3), filters=(4,), pools=(True,)), VOCAB,
        bos_id=BOS, eos_id=EOS, embedding_dim=6, units=8,
        max_target_length=6, seed=3,
    )
    return fixed_weights(model)


def images(count=4, seed=1):
    return np.random.default_rng(seed).uniform(
        size=(count, 8, 8, 3)).astype("float32")


def sgd():
    return keras.optimizers.SGD(0.5)


def numpy(value):
    return np.asarray(ops.convert_to_numpy(value))


def compute(path):
    """Everything the tests compare, for this backend, saved to ``path``
    (an ``.npz``)."""
    source, target = data()
    results = {}
    for name in CONFIGS:
        model = build(name)
        logits = model((source, target[:, :-1]))
        results[f"{name}/logits"] = numpy(logits)
    for name in FIT_CONFIGS:
        # Decoding: a model trained on TensorFlow (its weights are saved
        # too, so the other backends decode with the very same ones).
        model = build(name)
        model.compile(optimizer=keras.optimizers.Adam(2e-2))
        model.fit(*data(32, seed=7), batch_size=8, epochs=20, shuffle=False,
                  verbose=0)
        for index, weight in enumerate(model.trainable_weights):
            results[f"{name}/trained/weight_{index}"] = numpy(weight)
        for method, options in (("greedy", {}), ("beam", BEAM)):
            result = model.generate(source, method=method, **options)
            results[f"{name}/{method}/ids"] = numpy(result.ids)
            results[f"{name}/{method}/scores"] = numpy(result.scores)
        model = build(name)
        model.compile(optimizer=sgd())
        history = model.fit(source, target, batch_size=4, epochs=1,
                            shuffle=False, verbose=0)
        results[f"{name}/fit/loss"] = np.array(history.history["loss"])
        for index, weight in enumerate(model.trainable_weights):
            results[f"{name}/fit/weight_{index}"] = numpy(weight)
    model = captioner()
    results["captioner/logits"] = numpy(
        model((images(), target[:4, :-1]))
    )
    np.savez(path, **results)


_COMPUTE = """
import sys
sys.path.insert(0, {tests!r})
from test_backends_seq2seq import compute
compute({path!r})
"""


@pytest.fixture(scope="module")
def tensorflow_results(tmp_path_factory):
    """``compute`` on TensorFlow, in a subprocess (in-process when the
    tests already run on TensorFlow)."""
    path = tmp_path_factory.mktemp("tensorflow") / "results.npz"
    if BACKEND == "tensorflow":
        compute(str(path))
    else:
        code = _COMPUTE.format(tests=os.path.dirname(__file__),
                               path=str(path))
        run_on_backend("tensorflow", code, timeout=600)
    with np.load(path) as results:
        return dict(results)


def assert_close(actual, expected, what, rtol=0.0, atol=TOLERANCE):
    parity.record(f"TensorFlow's Seq2Seq ({what})", actual, expected)
    np.testing.assert_allclose(numpy(actual), expected, rtol=rtol,
                               atol=atol, err_msg=what)


@pytest.mark.parametrize("name", CONFIGS)
def test_teacher_forced_logits_equal_tensorflows(name, tensorflow_results):
    source, target = data()
    model = build(name)
    logits = model((source, target[:, :-1]))
    assert_close(logits, tensorflow_results[f"{name}/logits"], "logits")


def test_captioner_logits_equal_tensorflows(tensorflow_results):
    _, target = data()
    logits = captioner()((images(), target[:4, :-1]))
    assert_close(logits, tensorflow_results["captioner/logits"],
                 "captioner logits")


@pytest.mark.parametrize("name", FIT_CONFIGS)
def test_one_fit_epoch_equals_tensorflows(name, tensorflow_results):
    """Two SGD steps (a large rate, so that a wrong gradient shows): the
    epoch loss and every weight after them, within 1e-5 relative."""
    source, target = data()
    model = build(name)
    before = [numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=sgd())
    history = model.fit(source, target, batch_size=4, epochs=1,
                        shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"],
                               tensorflow_results[f"{name}/fit/loss"],
                               rtol=TOLERANCE)
    moved = 0
    for index, weight in enumerate(model.trainable_weights):
        expected = tensorflow_results[f"{name}/fit/weight_{index}"]
        assert_close(weight, expected, "weights after fit",
                     rtol=TOLERANCE, atol=1e-6)
        moved += not np.allclose(expected, before[index])
    assert moved == len(before)


@pytest.mark.parametrize("method", ["greedy", "beam"])
@pytest.mark.parametrize("name", FIT_CONFIGS)
def test_generate_equals_tensorflows(name, method, tensorflow_results):
    """Decoded with the weights of a model trained on TensorFlow."""
    source, _ = data()
    model = build(name)
    for index, weight in enumerate(model.trainable_weights):
        weight.assign(tensorflow_results[f"{name}/trained/weight_{index}"])
    result = model.generate(
        source, method=method, **(BEAM if method == "beam" else {})
    )
    expected = tensorflow_results[f"{name}/{method}/ids"]
    np.testing.assert_array_equal(numpy(result.ids), expected)
    assert_close(result.scores, tensorflow_results[f"{name}/{method}/scores"],
                 f"{method} scores")
    # Something real was decoded: EOS reached in some rows, and several
    # distinct tokens.
    assert (expected == EOS).any() and len(np.unique(expected)) > 3


def test_scheduled_sampling_zero_is_teacher_forcing_one_ignores_truth():
    model = build("gru-bahdanau")
    source, target = data()
    inputs = target[:, :-1]
    forced, _ = model.teacher_forced(source, inputs)
    zero, _ = model.teacher_forced(source, inputs, sampling_probability=0.0)
    np.testing.assert_array_equal(numpy(zero), numpy(forced))
    # p = 1: every step after t = 0 reads the model's own sample, so the
    # ground truth after BOS does not matter (same draws: same seed state).
    state = model.decoder.seed_generator.state
    saved = numpy(state)
    one, _ = model.teacher_forced(source, inputs, sampling_probability=1.0)
    state.assign(saved)
    scrambled = inputs.copy()
    scrambled[:, 1:] = 3
    again, _ = model.teacher_forced(source, scrambled,
                                    sampling_probability=1.0)
    np.testing.assert_allclose(numpy(one), numpy(again), atol=1e-6)
    np.testing.assert_allclose(numpy(one)[:, 0], numpy(forced)[:, 0],
                               atol=1e-6)
    assert not np.allclose(numpy(one), numpy(forced), atol=1e-3)
    # The draws advance the seed: a second call samples differently.
    other, _ = model.teacher_forced(source, inputs, sampling_probability=1.0)
    assert not np.allclose(numpy(other), numpy(one))


def test_scheduled_sampling_callback_sets_p():
    """unit="batch": p = 0 for the first step, 1 for the second (on JAX
    too, where fit's compiled loop holds the variables and Keras reads the
    callback's assignment back), so the epoch differs from the first of
    unit="epoch", which keeps p = 0 for all its steps (then 0.25)."""
    runs = {}
    for unit, c, epochs in (("batch", 1.0, 1), ("epoch", 0.25, 2)):
        model = build("lstm-plain-copy")
        model.compile(optimizer=sgd())
        runs[unit] = model.fit(
            *data(8), batch_size=4, epochs=epochs, verbose=0, shuffle=False,
            callbacks=[ScheduledSampling("linear", k=1.0, c=c, unit=unit)],
        ).history
    np.testing.assert_allclose(runs["batch"]["sampling_probability"], [1.0])
    np.testing.assert_allclose(runs["epoch"]["sampling_probability"],
                               [0.0, 0.25], atol=1e-7)
    assert runs["batch"]["loss"][0] != pytest.approx(
        runs["epoch"]["loss"][0], rel=1e-4)


def _fit_sampled(probability, epochs=2):
    source, target = data(16, seed=4)
    model = build("gru-bahdanau")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.sampling_probability.assign(probability)
    history = model.fit(source, target, batch_size=8, epochs=epochs,
                        shuffle=False, verbose=0)
    return history.history["loss"], [numpy(w) for w in model.weights]


def test_scheduled_sampling_trains_reproducibly():
    """p = 0.5 trains (the loss falls) and the same seed gives the same
    run (the draws, and the seed state they leave, are reproducible)."""
    losses, weights = _fit_sampled(0.5)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    again, weights_again = _fit_sampled(0.5)
    np.testing.assert_allclose(again, losses, rtol=1e-6)
    for ours, theirs in zip(weights, weights_again):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_dropout_trains():
    """With dropout (drawn at every decoder step: on JAX a Python loop,
    which a SeedGenerator can advance) two training passes differ, and
    fit runs."""
    model = build("gru-bahdanau", dropout=0.3)
    source, target = data(8)
    first, _ = model.teacher_forced(source, target[:, :-1], training=True)
    second, _ = model.teacher_forced(source, target[:, :-1], training=True)
    assert np.all(np.isfinite(numpy(first)))
    assert not np.allclose(numpy(first), numpy(second))
    model.compile(optimizer=sgd())
    model.sampling_probability.assign(0.5)
    history = model.fit(source, target, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def check_valid(result, batch, count, max_length):
    ids, lengths = numpy(result.ids), numpy(result.lengths)
    assert ids.shape == (batch, count, max_length)
    assert ids.min() >= 0 and ids.max() < VOCAB
    for row, length in zip(ids.reshape(-1, max_length), lengths.ravel()):
        assert 1 <= length <= max_length
        body = row[:length]
        assert not np.isin(body, (PAD, BOS)).any()
        assert (body[:-1] != EOS).all()
        assert (row[length:] == PAD).all()
        if length < max_length:
            assert body[-1] == EOS
    assert np.all(numpy(result.log_probs) <= 0)


def test_sampling_is_reproducible_and_valid():
    model = build("gru-bahdanau")
    source, _ = data()
    options = {"num_samples": 3, "temperature": 1.5, "top_k": 6,
               "top_p": 0.95, "max_length": 7}
    first = model.generate(source, method="sample", seed=9, **options)
    again = model.generate(source, method="sample", seed=9, **options)
    other = model.generate(source, method="sample", seed=10, **options)
    np.testing.assert_array_equal(numpy(first.ids), numpy(again.ids))
    np.testing.assert_array_equal(numpy(first.log_probs),
                                  numpy(again.log_probs))
    assert not np.array_equal(numpy(first.ids), numpy(other.ids))
    check_valid(first, len(source), 3, 7)
    # The samples of a row differ from each other, and top_k=1 is greedy.
    assert len({tuple(r) for r in numpy(first.ids)[0]}) > 1
    greedy = model.generate(source, method="greedy", max_length=7)
    top1 = model.generate(source, method="sample", seed=1, top_k=1,
                          max_length=7)
    np.testing.assert_array_equal(numpy(top1.ids), numpy(greedy.ids))


def test_predict_is_greedy():
    model = build("lstm-plain-copy")
    source, _ = data()
    greedy = model.generate(source, method="greedy")
    np.testing.assert_array_equal(
        model.predict(source, batch_size=4, verbose=0),
        numpy(greedy.ids)[:, 0],
    )


def test_evaluate_is_teacher_forced_mean_token_loss():
    model = build("gru-luong-dot-deep")
    model.compile()
    source, target = data()
    logs = model.evaluate(source, target, batch_size=4, verbose=0,
                          return_dict=True)
    logits = numpy(model((source, target[:, :-1]))).astype(np.float64)
    labels = target[:, 1:]
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    real = labels != PAD
    assert logs["loss"] == pytest.approx(nll[real].mean(), rel=1e-5)


def test_captioner_trains_and_generates():
    model = captioner()
    model.compile(optimizer=sgd())
    _, target = data(4)
    pictures = images()
    before = [numpy(w) for w in model.trainable_weights]
    history = model.fit(pictures, target, batch_size=4, epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.allclose(numpy(w), b)
               for w, b in zip(model.trainable_weights, before)]
    assert all(changed)
    for method, options in (("greedy", {}), ("beam", {"beam_width": 2}),
                            ("sample", {"seed": 2})):
        result = model.generate(pictures, method=method, **options)
        check_valid(result, 4, 1, 6)
    maps = model.attention_maps(pictures, target)
    assert maps.shape == (4, target.shape[1] - 1, 4, 4)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, atol=1e-5)


def test_tokenizers_and_generate_text():
    """The text side (TensorFlow's string ops, which run under every
    backend) encodes ragged ids, and generate_text turns text into text."""
    tokenizer = text.Tokenizer(level="char")
    tokenizer.adapt(["12+3", "9+9", "45"])
    ids = tokenizer.encode(["12+3", "45"], bos_eos=True)
    vocabulary = tokenizer.vocabulary
    assert [[vocabulary[i] for i in row] for row in ids.to_list()] == [
        ["[BOS]", "1", "2", "+", "3", "[EOS]"], ["[BOS]", "4", "5", "[EOS]"]]
    model = Seq2Seq(
        tokenizer.vocabulary_size, tokenizer.vocabulary_size,
        bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, embedding_dim=4,
        units=4, max_target_length=5, source_tokenizer=tokenizer,
        target_tokenizer=tokenizer,
    )
    texts = model.generate_text(["12+3", "9+9"], method="beam",
                                beam_width=2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    source = numpy(model.check_source(
        tokenizer.encode(["12+3", "9+9"]).to_tensor().numpy()))
    expected = tokenizer.decode(numpy(
        model.generate(source, method="beam", beam_width=2).ids)[:, 0])
    assert texts == expected


def test_bad_input_is_a_clear_error():
    model = build("gru-bahdanau")
    model.compile()
    source, target = data()
    bad_source = source.copy()
    bad_source[2, 1] = VOCAB
    with pytest.raises(ValueError, match="source row 2, step 1"):
        model.fit(bad_source, target, verbose=0)
    no_bos = target.copy()
    no_bos[3, 0] = 5
    with pytest.raises(ValueError, match="target row 3 starts with id 5"):
        model.fit(source, no_bos, verbose=0)
    with pytest.raises(ValueError, match="target row 3 starts"):
        model.evaluate(source, no_bos, verbose=0)
    with pytest.raises(Exception, match="bos_id=1"):
        model._shift(ops.convert_to_tensor(no_bos), None)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        model.generate(bad_source)
    with pytest.raises(ValueError, match="shape"):
        model.generate(source[0])
    with pytest.raises(TypeError, match="integer token ids"):
        model.generate(source.astype("float32"))
    with pytest.raises(ValueError, match="unknown options"):
        model.generate(source, method="greedy", beam_width=2)
    with pytest.raises(ValueError, match="num_return"):
        model.generate(source, method="beam", beam_width=2, num_return=3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(source, method="sample", temperature=0)
    with pytest.raises(ValueError, match="method"):
        model.generate(source, method="nucleus")
    caption_model = captioner()
    with pytest.raises(ValueError, match="shape"):
        caption_model.generate(np.zeros((2, 9, 9, 3), "float32"))
