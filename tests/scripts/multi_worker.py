"""One worker of a two-worker ``MultiWorkerMirroredStrategy`` run on
loopback, and (worker 0) the same training on one worker, for
``tests/test_distributed.py`` and the README's figures.

    python tests/scripts/multi_worker.py INDEX PORT0,PORT1 DIRECTORY [EPOCHS]

Each worker trains three models with global batch 8, replica r reading
its half of every global batch: a kerasrnn LSTM classifier (``fit``), a
``Seq2Seq`` (``fit`` with its custom ``train_step`` and
``ScheduledSampling``) and a ``LanguageModel`` (``TBPTTTrainer``, the
global gradient clipped), the Seq2Seq and the LM checkpointing under
DIRECTORY (``seq2seq-two``, ``lm-two``; each worker its own copy). Then
the same models train from the same weights without a strategy (worker 0
the classifier and the LM, worker 1 the Seq2Seq). Each worker prints one
JSON line: ``replicas`` (2), ``initial`` weights, ``two_workers`` and
``one_worker``: per model, the final weights and the epoch logs (losses,
sampling probabilities).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
INDEX = int(sys.argv[1])
PORTS = sys.argv[2].split(",")
DIRECTORY = sys.argv[3]
EPOCHS = int(sys.argv[4]) if len(sys.argv) > 4 else 2
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in PORTS]},
    "task": {"type": "worker", "index": INDEX},
})

import tensorflow as tf  # noqa: E402

from kerasrnn.training.workers import MultiWorkerMirroredStrategy  # noqa: E402,E501

STRATEGY = MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasrnn  # noqa: E402
from kerasrnn.models import LanguageModel  # noqa: E402
from kerasrnn.models import ScheduledSampling  # noqa: E402
from kerasrnn.models import Seq2Seq  # noqa: E402
from kerasrnn.models.lm_training import TBPTTTrainer  # noqa: E402
from kerasrnn.training import AtomicBackupAndRestore  # noqa: E402

BATCH, VOCAB, BOS, EOS = 8, 12, 1, 2


def batched(*arrays):
    """Global batches of 8 in order; each worker reads its replica's half
    of every batch (DATA sharding after rebatching)."""
    dataset = tf.data.Dataset.from_tensor_slices(arrays).batch(BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def classifier_data():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, (32, 9)).astype("int32")
    return tokens, (tokens[:, 0] == tokens[:, -1]).astype("int32")


def seq2seq_data():
    rng = np.random.default_rng(1)
    source = rng.integers(3, VOCAB, (32, 6)).astype("int32")
    target = np.concatenate([np.full((32, 1), BOS), source[:, ::-1],
                             np.full((32, 1), EOS)], axis=1).astype("int32")
    return source, target


def classifier():
    return keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(VOCAB, 8),
        kerasrnn.LSTM(16),
        keras.layers.Dense(2),
    ])


def seq2seq():
    return Seq2Seq(VOCAB, VOCAB, BOS, EOS, embedding_dim=8, units=16,
                   cell="gru", seed=5)


def language_model():
    return LanguageModel(VOCAB, embedding_dim=8, units=16, num_layers=1)


def train_fit(strategy, build, weights, data, compile_arguments, callbacks):
    with strategy.scope():
        model = build()
        model.set_weights(weights)
        model.compile(**compile_arguments())
    history = model.fit(batched(*data), epochs=EPOCHS, verbose=0,
                        shuffle=False, callbacks=callbacks())
    return model.get_weights(), history.history


def train_lm(strategy, weights, ids, directory):
    with strategy.scope():
        model = language_model()
        model.build((BATCH, 10))
        model.set_weights(weights)
    trainer = TBPTTTrainer(model, BATCH, 10, learning_rate=0.05,
                           clipnorm=0.5, optimizer="adam", strategy=strategy,
                           checkpoint_dir=directory, checkpoint_every=2)
    history = trainer.fit(ids, EPOCHS, verbose=0)
    return model.get_weights(), {"loss": [h["loss"] for h in history]}


def runs(strategy, initial, mode, names=("classifier", "seq2seq", "lm")):
    """``{name: (final weights, epoch logs)}`` of the models ``names``."""
    ids = np.random.default_rng(2).integers(0, VOCAB, 8 * 41)
    trainings = {
        "classifier": lambda: train_fit(
            strategy, classifier, initial["classifier"], classifier_data(),
            lambda: dict(optimizer=keras.optimizers.Adam(1e-2),
                         loss=keras.losses.SparseCategoricalCrossentropy(
                             from_logits=True),
                         metrics=["accuracy"]),
            lambda: [],
        ),
        "seq2seq": lambda: train_fit(
            strategy, seq2seq, initial["seq2seq"], seq2seq_data(),
            # No global_clipnorm: Keras clips each replica's gradient
            # before the all-reduce (see the README).
            lambda: dict(optimizer=keras.optimizers.Adam(1e-2)),
            lambda: [ScheduledSampling("linear", k=1.0, c=0.05,
                                       epsilon=0.5),
                     AtomicBackupAndRestore(
                         os.path.join(DIRECTORY, f"seq2seq-{mode}"),
                         delete_checkpoint=False)],
        ),
        "lm": lambda: train_lm(strategy, initial["lm"], ids,
                               os.path.join(DIRECTORY, f"lm-{mode}")),
    }
    return {name: trainings[name]() for name in names}


def main():
    keras.utils.set_random_seed(0)
    lm = language_model()
    lm.build((BATCH, 10))
    initial = {"classifier": classifier().get_weights(),
               "seq2seq": seq2seq().get_weights(),
               "lm": lm.get_weights()}
    report = {"two_workers": runs(STRATEGY, initial, "two")}
    # The one-worker runs, shared out between the two processes.
    names = ("classifier", "lm") if INDEX == 0 else ("seq2seq",)
    report["one_worker"] = runs(tf.distribute.get_strategy(), initial,
                                "one", names)
    report["replicas"] = STRATEGY.num_replicas_in_sync
    report["initial"] = initial
    print(json.dumps(report, default=lambda array: array.tolist()))


if __name__ == "__main__":
    main()
