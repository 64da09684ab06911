"""The truncated-BPTT trainer and stream evaluation on the backend of
``KERAS_BACKEND`` (CI runs this file on jax and torch; it passes on
TensorFlow too).

References, both independent of the backend under test:

* a float64 NumPy language model (``tests/reference/numpy_rnn.py``'s
  cells) trained by the module docstring's loop with finite-difference
  gradients (central, 1e-6): the same windows, carried states, per-epoch
  learning rate, global-norm clipping and SGD update;
* TensorFlow, run in a subprocess on the same initial weights and data
  (as ``test_keras_file_moves_between_backends``): per-window losses,
  final weights and perplexities (on TensorFlow itself, NumPy only).
"""

import json
import math
import os

import keras
import numpy as np
import pytest
from keras import ops
from on_backend import run_on_backend
from reference import numpy_rnn as ref

from kerasrnn.models import LanguageModel
from kerasrnn.models.lm_data import stream_windows
from kerasrnn.models.lm_training import TBPTTTrainer
from kerasrnn.models.lm_training import evaluate_stream

BACKEND = keras.config.backend()
CONFIG = {"vocabulary_size": 7, "embedding_dim": 4, "units": 4,
          "num_layers": 2}
BATCH, STEPS = 2, 4
RATES = {1: 0.5, 2: 0.25}           # the per-epoch learning rate
# cell, clipnorm, initial weights' scale. "lstm_clipped": the global norm
# of every window's gradient is above the bound (checked on NumPy's).
CASES = {
    "lstm": ("lstm", 10.0, 0.3),
    "gru": ("gru", 10.0, 0.3),
    "lstm_clipped": ("lstm", 0.05, 0.8),
}
RTOL = 1e-5


def numpy_of(tensors):
    return [np.asarray(ops.convert_to_numpy(t), np.float64)
            for t in tensors]


def training_stream():
    # 2 windows per epoch: the second is read from the first's states.
    return np.random.default_rng(11).integers(
        0, 7, BATCH * (2 * STEPS + 1))


def evaluation_stream():
    return np.random.default_rng(12).integers(0, 7, 14)


def build(case, **options):
    """The case's model with deterministic initial weights (the same on
    every backend)."""
    cell, _, scale = CASES[case]
    model = LanguageModel(cell=cell, **{**CONFIG, **options})
    model.build((BATCH, STEPS))
    rng = np.random.default_rng(5)
    for variable in model.trainable_variables:
        variable.assign(
            rng.uniform(-scale, scale, variable.shape).astype("float32"))
    return model


def train(case):
    """Two epochs of TBPTT: the per-window losses, the final weights."""
    _, clipnorm, _ = CASES[case]
    model = build(case)
    trainer = TBPTTTrainer(model, BATCH, STEPS, learning_rate=RATES.get,
                           clipnorm=clipnorm)
    losses, step = [], trainer._steps.train_step

    def recording(*arguments):
        mean, states = step(*arguments)
        losses.append(float(mean))
        return mean, states

    trainer._steps.train_step = recording
    history = trainer.fit(training_stream(), epochs=2, verbose=0)
    assert [record["learning_rate"] for record in history] == [0.5, 0.25]
    return np.array(losses), numpy_of(model.trainable_variables)


def perplexity(case):
    return evaluate_stream(build(case), evaluation_stream(), batch_size=1,
                           num_steps=5)["perplexity"]


# --- the NumPy reference --------------------------------------------------


def roles(model):
    """The role of each trainable variable, in their order."""
    named = {id(model.embedding.embeddings): "E",
             id(model.output_layer.kernel): "W_out",
             id(model.output_layer.bias): "b_out"}
    for index, layer in enumerate(model.recurrent.recurrent_layers):
        for name in ("kernel", "recurrent_kernel", "bias"):
            named[id(getattr(layer.cell, name))] = (name, index)
    return [named[id(v)] for v in model.trainable_variables]


def numpy_window(parameters, names, kind, inputs, labels, states):
    """``(loss Σ_t mean_b CE, mean CE, final states)`` in float64."""
    p = dict(zip(names, parameters))
    sequence = p["E"][inputs]
    per_layer = 2 if kind == "lstm" else 1
    final = []
    for index in range(CONFIG["num_layers"]):
        cell = ref.Cell(kind, p["kernel", index],
                        p["recurrent_kernel", index], p["bias", index])
        sequence, _, layer_states = ref.run(
            cell, sequence,
            initial_state=states[index * per_layer:(index + 1) * per_layer])
        final += layer_states
    logits = sequence @ p["W_out"] + p["b_out"]
    top = logits.max(axis=-1, keepdims=True)
    log_p = logits - top - np.log(np.exp(logits - top).sum(-1,
                                                            keepdims=True))
    cross_entropy = -np.take_along_axis(log_p, labels[..., None], -1)
    mean = cross_entropy.mean()
    return mean * labels.shape[1], mean, final


def numpy_training(case):
    """The module docstring's loop in float64 with finite-difference
    gradients: per-window losses, final weights, gradient norms."""
    kind, clipnorm, _ = CASES[case]
    model = build(case)
    names = roles(model)
    parameters = numpy_of(model.trainable_variables)
    inputs, labels = stream_windows(training_stream(), BATCH, STEPS)
    losses, norms, eps = [], [], 1e-6
    for epoch in (1, 2):
        states = [np.zeros((BATCH, CONFIG["units"]))] * len(
            model.state_size)
        for x, y in zip(inputs, labels):
            _, mean, final = numpy_window(parameters, names, kind, x, y,
                                          states)
            gradients = []
            for array in parameters:
                gradient = np.zeros_like(array)
                for index in np.ndindex(array.shape):
                    values = []
                    for sign in (1, -1):
                        array[index] += sign * eps
                        values.append(numpy_window(
                            parameters, names, kind, x, y, states)[0])
                        array[index] -= sign * eps
                    gradient[index] = (values[0] - values[1]) / (2 * eps)
                gradients.append(gradient)
            norm = math.sqrt(sum((g ** 2).sum() for g in gradients))
            scale = min(1.0, clipnorm / norm)
            parameters = [p - RATES[epoch] * scale * g
                          for p, g in zip(parameters, gradients)]
            states = final
            losses.append(mean)
            norms.append(norm)
    return np.array(losses), parameters, norms


def numpy_perplexity(case):
    kind = CASES[case][0]
    model = build(case)
    ids = evaluation_stream()[None]
    states = [np.zeros((1, CONFIG["units"]))] * len(model.state_size)
    _, mean, _ = numpy_window(numpy_of(model.trainable_variables),
                              roles(model), kind, ids[:, :-1], ids[:, 1:],
                              states)
    return math.exp(mean)


# --- the TensorFlow reference ---------------------------------------------

_REFERENCE = """
import json, sys, numpy as np
sys.path.insert(0, {tests!r})
import test_backends_lm as t
arrays, losses = {{}}, {{}}
for case in t.CASES:
    window_losses, weights = t.train(case)
    arrays[case + "/losses"] = window_losses
    for index, weight in enumerate(weights):
        arrays[f"{{case}}/weight_{{index}}"] = weight
    arrays[case + "/perplexity"] = np.array(t.perplexity(case))
np.savez({path!r}, **arrays)
"""


@pytest.fixture(scope="module")
def tensorflow_reference(tmp_path_factory):
    """TensorFlow's figures of every case (None on TensorFlow itself)."""
    if BACKEND == "tensorflow":
        return None
    path = tmp_path_factory.mktemp("tensorflow") / "reference.npz"
    code = _REFERENCE.format(tests=os.path.dirname(__file__),
                             path=str(path))
    run_on_backend("tensorflow", code)
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def assert_close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-6,
                               err_msg=f"{BACKEND}: {what}")


# --- tests ----------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_training_matches_numpy_and_tensorflow(case, tensorflow_reference):
    """Per-window losses and final weights after 2 epochs (4 windows,
    states carried within an epoch, the rate halved in the second):
    against the float64 NumPy loop and against TensorFlow."""
    losses, weights = train(case)
    expected_losses, expected_weights, norms = numpy_training(case)
    clipnorm = CASES[case][1]
    if case == "lstm_clipped":
        assert min(norms) > 5 * clipnorm        # the clipping engages
    else:
        assert max(norms) < clipnorm            # ... and not here
    assert_close(losses, expected_losses, f"{case} losses vs NumPy")
    for index, (weight, expected) in enumerate(zip(weights,
                                                   expected_weights)):
        assert_close(weight, expected, f"{case} weight {index} vs NumPy")
    if tensorflow_reference is None:
        return
    assert_close(losses, tensorflow_reference[case + "/losses"],
                 f"{case} losses vs TensorFlow")
    for index, weight in enumerate(weights):
        assert_close(weight, tensorflow_reference[f"{case}/weight_{index}"],
                     f"{case} weight {index} vs TensorFlow")


@pytest.mark.parametrize("case", ["lstm", "gru"])
def test_stream_perplexity_is_the_one_token_at_a_time_one(
        case, tensorflow_reference):
    """evaluate_stream (13 tokens in windows of 5, the last shorter) and
    the trainer's compiled evaluation equal feeding one token at a time,
    NumPy's float64 model and TensorFlow's figure."""
    model = build(case)
    ids = evaluation_stream()
    states, total = model.initial_state(1), 0.0
    for t in range(len(ids) - 1):
        logits, states = model(np.array([[ids[t]]], "int32"),
                               initial_state=states, return_state=True)
        log_p = ops.convert_to_numpy(ops.log_softmax(logits[0, 0]))
        total -= float(log_p[ids[t + 1]])
    one_at_a_time = math.exp(total / (len(ids) - 1))
    result = evaluate_stream(model, ids, batch_size=1, num_steps=5)
    assert result["tokens"] == len(ids) - 1
    assert_close(result["perplexity"], one_at_a_time, "one token at a time")
    trainer = TBPTTTrainer(model, BATCH, STEPS)
    assert_close(trainer.evaluate(ids, num_steps=5)["perplexity"],
                 one_at_a_time, "the trainer's compiled evaluation")
    assert_close(result["perplexity"], numpy_perplexity(case), "NumPy")
    if tensorflow_reference is not None:
        assert_close(result["perplexity"],
                     tensorflow_reference[case + "/perplexity"],
                     "TensorFlow")


def resumable_trainer(directory, seed=3):
    model = build("gru", num_layers=1, embedding_dropout=0.25,
                  output_dropout=0.25, seed=seed)
    return TBPTTTrainer(model, BATCH, STEPS, learning_rate=0.02,
                        optimizer="adam", clipnorm=1.0,
                        checkpoint_dir=directory, checkpoint_every=2)


def resume_stream():
    return np.random.default_rng(13).integers(0, 7, BATCH * (5 * STEPS + 1))


class Killed(Exception):
    pass


@pytest.mark.parametrize("seed", [3, None], ids=["seeded", "unseeded"])
def test_checkpoint_and_resume_continue_identically(tmp_path, seed):
    """Adam, dropout, a checkpoint every 2 windows: a run stopped in epoch
    2 after window 3 (its checkpoint: window 2) and resumed by a new
    trainer, after the global random state moved, ends exactly as an
    uninterrupted run. Unseeded, the dropout layers' seeds come from the
    global state (on PyTorch they draw from torch's generator, which the
    checkpoint holds)."""
    ids = resume_stream()
    keras.utils.set_random_seed(0)
    clean = resumable_trainer(None, seed)
    clean_history = clean.fit(ids, 2, verbose=0)
    keras.utils.set_random_seed(0)

    def kill(epoch, window):
        if (epoch, window) == (2, 3):
            raise Killed

    with pytest.raises(Killed):
        resumable_trainer(str(tmp_path), seed).fit(ids, 2, verbose=0,
                                                   on_window_end=kill)
    keras.utils.set_random_seed(99)
    resumed = resumable_trainer(str(tmp_path), seed)
    epoch, window, _, states, history, stopped = resumed.restore()
    assert (epoch, window, len(history), stopped) == (2, 2, 1, False)
    assert np.abs(states[0]).sum() > 0           # carried, not zeros
    windows = []
    resumed_history = resumed.fit(
        ids, 2, verbose=0, on_window_end=lambda e, w: windows.append(w))
    assert windows == [3, 4, 5]                    # nothing redone
    assert [r["loss"] for r in resumed_history] == [
        r["loss"] for r in clean_history]
    for before, after in zip(clean.model.get_weights(),
                             resumed.model.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(numpy_of(clean.optimizer.variables),
                             numpy_of(resumed.optimizer.variables)):
        np.testing.assert_array_equal(before, after)


def test_dropout_is_reproducible_from_its_seed():
    """Dropout draws from the model's seed: the same seed trains the same
    weights, another seed others, and dropout acts (no dropout trains
    others again)."""
    def weights(seed, **options):
        model = build("gru", num_layers=1, seed=seed, **options)
        TBPTTTrainer(model, BATCH, STEPS).train_epoch(resume_stream(),
                                                      verbose=0)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    dropout = {"embedding_dropout": 0.25, "output_dropout": 0.25}
    first = weights(3, **dropout)
    np.testing.assert_array_equal(first, weights(3, **dropout))
    assert np.abs(first - weights(4, **dropout)).max() > 1e-3
    assert np.abs(first - weights(3)).max() > 1e-3


def test_what_stays_tensorflow_s_is_refused_clearly(tmp_path):
    model = build("lstm")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        trainer = TBPTTTrainer(model, BATCH, STEPS,
                               strategy=tf.distribute.get_strategy())
        assert trainer.replicas == 1
        return
    with pytest.raises(RuntimeError, match="TensorFlow backend only"):
        TBPTTTrainer(model, BATCH, STEPS, strategy=object())
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="runs eagerly"):
            TBPTTTrainer(model, BATCH, STEPS, jit_compile=True)
    # A TensorFlow trainer's checkpoint directory (its index file).
    (tmp_path / "checkpoint").write_text(json.dumps({}))
    trainer = TBPTTTrainer(model, BATCH, STEPS, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="holds TensorFlow checkpoints"):
        trainer.restore()


@pytest.mark.skipif(BACKEND == "tensorflow",
                    reason="TensorFlow's checkpoints: tests/test_resume.py")
def test_an_array_checkpoint_cut_short_is_never_restored(tmp_path,
                                                          monkeypatch):
    """A kill while ``ckpt-N`` is written leaves ``LATEST`` on the last
    complete checkpoint, which a new trainer restores; at most
    ``max_to_keep`` checkpoints stay."""
    ids = resume_stream()
    trainer = resumable_trainer(str(tmp_path))
    trainer.fit(ids, 1, verbose=0)      # checkpoints at windows 2, 4, end
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == [
        "ckpt-2", "ckpt-3"]
    weights = trainer.model.get_weights()
    latest = (tmp_path / "LATEST").read_text()

    def dies_while_writing(path, **arrays):
        with open(path, "wb") as handle:              # a truncated file
            handle.write(b"PK\x03\x04")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(np, "savez", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(ids, 2, verbose=0)  # dies in epoch 2's first save
    monkeypatch.undo()
    assert (tmp_path / "LATEST").read_text() == latest
    assert list(tmp_path.glob(".partial-*"))
    resumed = resumable_trainer(str(tmp_path))
    epoch, window, _, _, history, _ = resumed.restore()
    assert (epoch, window, len(history)) == (2, 0, 1)
    for before, after in zip(weights, resumed.model.get_weights()):
        np.testing.assert_array_equal(before, after)
