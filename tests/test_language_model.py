"""Language models: stream batching, state carrying, weight tying,
perplexity, generation, truncated-BPTT training and bad input."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasrnn import decoding
from kerasrnn.models.language_model import LanguageModel
from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import read_tokens
from kerasrnn.models.lm_data import stream_dataset
from kerasrnn.models.lm_data import stream_windows
from kerasrnn.models.lm_data import tokenize
from kerasrnn.models.lm_training import ResetStates
from kerasrnn.models.lm_training import TBPTTTrainer
from kerasrnn.models.lm_training import evaluate_stream
from kerasrnn.models.lm_training import zaremba_learning_rate
from kerasrnn.models.metrics import Perplexity

PTB_LIKE = " the cat sat <unk> N\n a dog sat\n the dog ran\n"


def small_model(**kwargs):
    options = {"vocabulary_size": 11, "embedding_dim": 8, "units": 8,
               "num_layers": 2, **kwargs}
    model = LanguageModel(**options)
    model(np.zeros((options.get("batch_size") or 1, 1), "int32"))
    if model.stateful:
        model.reset_states()
    return model


# --- data -----------------------------------------------------------------


def test_stream_windows_match_the_zaremba_reader():
    ids = np.arange(100) * 3
    inputs, labels = stream_windows(ids, batch_size=4, num_steps=6)
    # 25 tokens per stream, (25 - 1) // 6 = 4 windows.
    assert inputs.shape == labels.shape == (4, 4, 6)
    for w in range(4):
        for b in range(4):
            for t in range(6):
                position = b * 25 + w * 6 + t   # stream b, offset w*T + t
                assert inputs[w, b, t] == ids[position]
                assert labels[w, b, t] == ids[position + 1]
    # Row b of window w + 1 continues row b of window w.
    np.testing.assert_array_equal(inputs[1:, :, 0], labels[:-1, :, -1])
    dataset_inputs = np.stack([x for x, _ in stream_dataset(ids, 4, 6)])
    np.testing.assert_array_equal(dataset_inputs, inputs)


def test_vocabulary_follows_ptb_files_and_counts_unknown_words():
    tokens = tokenize(PTB_LIKE, "word")
    assert tokens[:6] == ["the", "cat", "sat", "<unk>", "N", "<eos>"]
    vocabulary = Vocabulary.build(tokens, "word")
    # <unk>, <eos>, then by count (ties sorted): the, dog and sat twice.
    assert vocabulary.tokens[:5] == ["<unk>", "<eos>", "dog", "sat", "the"]
    ids, unknown = vocabulary.encode(["the", "zebra", "<unk>", "<eos>"])
    assert ids.tolist() == [4, 0, 0, 1]
    assert unknown == 1     # "zebra"; the literal <unk> is not counted
    assert vocabulary.decode(vocabulary.encode(tokens)[0]) == (
        "the cat sat <unk> N\na dog sat\nthe dog ran\n"
    )
    chars = Vocabulary.build(tokenize("abca\n", "char"), "char")
    assert chars.tokens == ["<unk>", "a", "\n", "b", "c"]
    assert chars.decode(chars.encode_text("cab\n")) == "cab\n"


# --- model ----------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_carried_across_windows_equals_one_pass(cell):
    model = small_model(cell=cell)
    ids = np.random.default_rng(0).integers(0, 11, size=3 * 41)
    inputs, _ = stream_windows(ids, batch_size=3, num_steps=8)
    # Reference: each stream's 40 first tokens in one call.
    streams = ids.reshape(3, 41)[:, :40]
    reference = model(streams).numpy()
    states = model.initial_state(3)
    windows = []
    for x in inputs:
        logits, states = model(x, initial_state=states, return_state=True)
        windows.append(logits.numpy())
    np.testing.assert_allclose(
        np.concatenate(windows, axis=1), reference, atol=1e-5
    )
    # A stateful model does the same carrying by itself, and resets.
    stateful = small_model(cell=cell, stateful=True, batch_size=3)
    stateful.set_weights(model.get_weights())
    carried = np.concatenate([stateful(x).numpy() for x in inputs], axis=1)
    np.testing.assert_allclose(carried, reference, atol=1e-5)
    stateful.reset_states()
    np.testing.assert_allclose(
        stateful(inputs[0]).numpy(), reference[:, :8], atol=1e-5
    )
    # Stream evaluation: window length changes nothing.
    one = evaluate_stream(model, ids, batch_size=3, num_steps=40)
    many = evaluate_stream(model, ids, batch_size=3, num_steps=7)
    assert one["tokens"] == many["tokens"] == 3 * 40
    assert math.isclose(one["loss"], many["loss"], rel_tol=1e-5)
    full = ids.reshape(3, 41)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        full[:, 1:], model(full[:, :-1])
    )
    assert math.isclose(one["loss"], float(tf.reduce_mean(cross_entropy)),
                        rel_tol=1e-5)


def test_weight_tying_shares_one_variable():
    tied = small_model(tie_weights=True)
    untied = small_model(tie_weights=False)
    matrices = [v for v in tied.trainable_variables if v.shape == (11, 8)]
    assert len(matrices) == 1 and matrices[0] is tied.embedding.embeddings
    assert tied.output_layer is None
    assert untied.count_params() - tied.count_params() == 8 * 11
    # The shared matrix gets gradient from both uses: token 10 never occurs
    # in the input, so its row's gradient comes from the softmax alone.
    x = np.array([[1, 2, 3]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                np.array([[2, 3, 4]]), tied(x)
            )
        )
    gradient = tf.convert_to_tensor(
        tape.gradient(loss, tied.embedding.embeddings)
    )
    assert float(tf.reduce_sum(tf.abs(gradient[10]))) > 0
    # Tying survives saving.
    restored = LanguageModel.from_config(tied.get_config())
    restored(x)
    restored.set_weights(tied.get_weights())
    np.testing.assert_allclose(restored(x), tied(x), atol=1e-6)
    assert restored.output_layer is None


def test_uniform_model_perplexity_equals_vocabulary_size():
    model = small_model(tie_weights=False)
    kernel, bias = model.output_layer.kernel, model.output_layer.bias
    kernel.assign(tf.zeros_like(kernel))
    bias.assign(tf.zeros_like(bias))
    ids = np.random.default_rng(1).integers(0, 11, size=200)
    result = evaluate_stream(model, ids, batch_size=2, num_steps=13)
    assert math.isclose(result["perplexity"], 11.0, rel_tol=1e-5)
    metric = Perplexity(pad_id=-1)      # LM streams have no padding
    inputs, labels = stream_windows(ids, 2, 13)
    metric.update_state(labels[0], model(inputs[0]))
    assert math.isclose(float(metric.result()), 11.0, rel_tol=1e-5)


def test_save_and_load_keras_file(tmp_path):
    model = small_model(cell="gru", init_scale=0.3, output_dropout=0.1)
    x = np.array([[1, 5, 7, 2]])
    path = str(tmp_path / "lm.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored(x), model(x), atol=1e-6)


# --- generation -----------------------------------------------------------


def test_generation_with_temperature_to_zero_equals_greedy():
    vocabulary = Vocabulary.build(tokenize("abcdefghij", "char"), "char")
    model = small_model(init_scale=1.0)
    greedy = model.generate("abc", vocabulary, 20, method="greedy")
    cold = model.generate("abc", vocabulary, 20, method="sample",
                          temperature=1e-4, seed=3)
    assert greedy == cold and len(greedy) >= 20
    # The same through kerasrnn.decoding with the model's step function.
    state = model.initial_state(2)
    result = decoding.greedy_search(model.step, [1, 2], state, None, 9)
    sampled = decoding.sample(model.step, [1, 2], state, None, 9,
                              temperature=1e-4, seed=0)
    np.testing.assert_array_equal(result.ids, sampled.ids)


def test_word_generation_starts_a_sentence_and_stops_at_eos():
    vocabulary = Vocabulary.build(tokenize(PTB_LIKE, "word"), "word")
    model = small_model(vocabulary_size=vocabulary.size, init_scale=1.0)
    text = model.generate("", vocabulary, 50, method="beam", beam_width=3,
                          stop_at_eos=True)
    assert isinstance(text, str)
    assert text.count("\n") <= 1 and "<eos>" not in text


# --- training -------------------------------------------------------------


def test_learning_rate_schedule_of_the_small_config():
    rates = [zaremba_learning_rate(epoch) for epoch in range(1, 14)]
    assert rates[:4] == [1.0] * 4
    assert rates[4:7] == [0.5, 0.25, 0.125]
    assert rates[-1] == 0.5 ** 9


def test_training_step_sums_over_time_and_clips_the_global_norm():
    model = small_model(init_scale=0.5)
    ids = np.random.default_rng(2).integers(0, 11, size=2 * 7)
    inputs, labels = stream_windows(ids, batch_size=2, num_steps=6)
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        logits = model(inputs[0])
        loss = tf.reduce_sum(tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels[0],
                                                           logits),
            axis=0,
        ))
    gradients = tape.gradient(loss, model.trainable_variables)
    gradients = [tf.convert_to_tensor(g) for g in gradients]
    norm = float(tf.linalg.global_norm(gradients))
    clip = norm / 4     # the clipping must act
    trainer = TBPTTTrainer(model, 2, 6, learning_rate=0.5, clipnorm=clip)
    trainer.train_epoch(ids, verbose=0)
    for old, new, gradient in zip(before, model.trainable_variables,
                                  gradients):
        expected = old - 0.5 * gradient.numpy() * clip / norm
        np.testing.assert_allclose(new.numpy(), expected, atol=1e-5)


def test_tiny_model_overfits_a_short_text():
    text = "hello world, hello kerasrnn. "
    vocabulary = Vocabulary.build(tokenize(text, "char"), "char")
    ids, _ = vocabulary.encode(tokenize(text * 20, "char"))
    model = small_model(vocabulary_size=vocabulary.size, embedding_dim=16,
                        units=32, num_layers=1)
    trainer = TBPTTTrainer(model, batch_size=4, num_steps=20,
                           learning_rate=0.02, optimizer="adam")
    first = trainer.train_epoch(ids, verbose=0)
    for epoch in range(2, 31):
        last = trainer.train_epoch(ids, epoch, verbose=0)
    assert first["loss"] > 2.0
    assert trainer.evaluate(ids, batch_size=1, num_steps=100)["loss"] < 0.1
    assert last["loss"] < 0.1
    assert model.generate("hello", vocabulary, 7, method="greedy") == (
        " world,"
    )


def test_stateful_model_trains_with_fit_and_reports_perplexity():
    model = small_model(stateful=True, batch_size=2, init_scale=0.1)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[Perplexity(pad_id=-1)],
    )
    dataset = stream_dataset(np.arange(300) % 11, 2, 10)
    model.fit(dataset, epochs=2, shuffle=False, verbose=0,
              callbacks=[ResetStates()])
    assert float(np.abs(model.carried_states[0]).sum()) > 0
    result = model.evaluate(dataset, verbose=0, return_dict=True,
                            callbacks=[ResetStates()])
    assert math.isclose(result["perplexity"], math.exp(result["loss"]),
                        rel_tol=1e-4)
    model.reset_states()
    assert float(np.abs(model.carried_states[0]).sum()) == 0


# --- bad input ------------------------------------------------------------


def test_bad_data_gives_clear_errors():
    with pytest.raises(ValueError, match="empty corpus"):
        Vocabulary.build([], "word")
    with pytest.raises(ValueError, match="non-empty 1-D token stream"):
        stream_windows([], 2, 3)
    with pytest.raises(ValueError, match="too short for one window"):
        stream_windows(np.arange(20), batch_size=4, num_steps=5)
    with pytest.raises(ValueError, match="`num_steps` must be a positive"):
        stream_windows(np.arange(20), 2, 0)
    with pytest.raises(ValueError, match="at least 2 tokens per stream"):
        evaluate_stream(small_model(), [3], batch_size=1)
    with pytest.raises(ValueError, match="`level` must be one of"):
        tokenize("abc", "byte")
    with pytest.raises(FileNotFoundError, match="No such corpus file"):
        read_tokens("/nonexistent/ptb.train.txt")


def test_bad_model_arguments_and_prompts_give_clear_errors():
    with pytest.raises(ValueError, match="embedding_dim` must equal"):
        LanguageModel(10, embedding_dim=4, units=8, tie_weights=True)
    with pytest.raises(ValueError, match="needs the fixed `batch_size`"):
        LanguageModel(10, stateful=True)
    with pytest.raises(ValueError, match="`cell` must be one of"):
        LanguageModel(10, cell="rnn")
    with pytest.raises(ValueError, match="`init_scale` must be"):
        LanguageModel(10, init_scale=-1)
    vocabulary = Vocabulary.build(tokenize("abc", "char"), "char")
    model = small_model(vocabulary_size=vocabulary.size)
    with pytest.raises(ValueError, match=r"missing from the vocabulary: "
                       r"\['x', 'z'\]"):
        model.generate("axbz", vocabulary, 5)
    with pytest.raises(ValueError, match="`temperature` must be a number"):
        model.generate("ab", vocabulary, 5, temperature=0.0)
    with pytest.raises(ValueError, match="`temperature` must be a number"):
        model.generate("ab", vocabulary, 5, temperature=-1.0)
    with pytest.raises(ValueError, match="apply to method='sample'"):
        model.generate("ab", vocabulary, 5, method="greedy",
                       temperature=0.5)
    with pytest.raises(ValueError, match="at least one character"):
        model.generate("", vocabulary, 5)
    other = Vocabulary(["<unk>"] + list("abcdefghij"), "char")
    with pytest.raises(ValueError, match="has 11 tokens but the model"):
        model.generate("a", other, 5)
    with pytest.raises(ValueError, match="carries states for batch_size=2"):
        small_model(stateful=True, batch_size=2)(np.zeros((3, 4), "int32"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_optimizer_trains_a_model_built_by_the_trainer(optimizer):
    """As in the README: the model is not called before training, so its
    weights and the optimizer's slots are created by the trainer (Adam's
    moments once crashed the retraced step)."""
    text = "hello world, hello kerasrnn. "
    vocabulary = Vocabulary.build(tokenize(text, "char"), "char")
    ids, _ = vocabulary.encode(tokenize(text * 10, "char"))
    model = LanguageModel(vocabulary.size, 16, 16, num_layers=1)
    rate = {"sgd": 1.0, "adam": 0.02}[optimizer]
    trainer = TBPTTTrainer(model, batch_size=4, num_steps=10,
                           learning_rate=rate, optimizer=optimizer)
    losses = [trainer.train_epoch(ids, epoch, verbose=0)["loss"]
              for epoch in range(1, 4)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.3


def test_vocabulary_is_saved_with_the_model(tmp_path):
    vocabulary = Vocabulary.build(tokenize(PTB_LIKE, "word"), "word")
    model = LanguageModel(vocabulary.size, 8, 8, num_layers=1,
                          vocabulary=vocabulary)
    model(np.zeros((1, 1), "int32"))
    expected = model.generate("the cat", max_length=4, method="greedy")
    path = tmp_path / "lm.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.vocabulary.tokens == vocabulary.tokens
    assert restored.generate("the cat", max_length=4,
                             method="greedy") == expected
    with pytest.raises(ValueError, match="needs the `vocabulary`"):
        small_model().generate("the")
    with pytest.raises(ValueError, match="options"):
        model.generate("the", max_length=3, method="greedy", beam_width=2)


def test_stacked_layers_start_independent_under_init_scale():
    """init_scale gives one uniform initializer; every layer's weights
    still draw their own values (they once started equal)."""
    model = small_model(init_scale=0.1)
    kernels = [v.numpy() for v in model.recurrent.weights
               if v.path.endswith("/kernel")]
    assert len(kernels) == 2 and kernels[0].shape == kernels[1].shape
    assert not np.allclose(kernels[0], kernels[1])
    assert np.abs(kernels[0]).max() <= 0.1
