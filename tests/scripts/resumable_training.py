"""Trains a TBPTT language model, then a Seq2Seq with scheduled sampling
(``fit`` + ``AtomicBackupAndRestore``), both checkpointed under DIRECTORY,
resuming whatever a previous (killed) run of this script left there.

    python tests/scripts/resumable_training.py DIRECTORY|--uninterrupted

It prints ``tbptt EPOCH WINDOW`` after every TBPTT window and ``fit EPOCH
BATCH`` after every Seq2Seq batch (flushed, so a test can SIGKILL it at a
chosen point), ``resumed KIND ...`` where a run resumes, and at the end one
JSON line: the LM's final perplexity on its stream and both models' epoch
losses (the last is the Seq2Seq's final metric). ``--uninterrupted``
trains the same way with no checkpoints (the reference run).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasrnn.models import LanguageModel  # noqa: E402
from kerasrnn.models import ScheduledSampling  # noqa: E402
from kerasrnn.models import Seq2Seq  # noqa: E402
from kerasrnn.models.lm_training import TBPTTTrainer  # noqa: E402
from kerasrnn.training import AtomicBackupAndRestore  # noqa: E402

DIRECTORY = None if sys.argv[1] == "--uninterrupted" else sys.argv[1]
EPOCHS, VOCAB, BOS, EOS = 2, 12, 1, 2


def say(*words):
    print(*words, flush=True)


def language_model(directory):
    keras.utils.set_random_seed(0)
    model = LanguageModel(VOCAB, embedding_dim=8, units=16, num_layers=1,
                          embedding_dropout=0.1, seed=1)
    ids = np.random.default_rng(2).integers(0, VOCAB, 4 * 121)
    trainer = TBPTTTrainer(
        model, 4, 10, learning_rate=0.02, optimizer="adam",
        checkpoint_dir=directory and os.path.join(directory, "lm"),
        checkpoint_every=4,
    )
    epoch, window, *_ = trainer.restore()
    if (epoch, window) != (1, 0):
        say("resumed tbptt", epoch, window)
    history = trainer.fit(
        ids, EPOCHS, verbose=0,
        on_window_end=lambda epoch, window: say("tbptt", epoch, window),
    )
    return {"perplexity": trainer.evaluate(ids)["perplexity"],
            "history": [record["loss"] for record in history]}


class Progress(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        say("fit", self.epoch, batch)


def seq2seq(directory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    source = rng.integers(3, VOCAB, (48, 6)).astype("int32")
    target = np.concatenate([np.full((48, 1), BOS), source[:, ::-1],
                             np.full((48, 1), EOS)], axis=1).astype("int32")
    model = Seq2Seq(VOCAB, VOCAB, BOS, EOS, embedding_dim=8, units=16,
                    cell="gru", dropout=0.1, seed=3)
    model.compile()
    callbacks = [ScheduledSampling("linear", k=1.0, c=0.02, epsilon=0.5),
                 Progress()]
    if directory:
        backup = AtomicBackupAndRestore(os.path.join(directory, "seq2seq"))
        if backup.latest() is not None:
            say("resumed fit", os.path.basename(backup.latest()))
        callbacks.insert(0, backup)
    history = model.fit(source, target, batch_size=8, epochs=EPOCHS,
                        shuffle=False, verbose=0, callbacks=callbacks)
    return {"history": history.history["loss"],
            "sampling_probability": history.history[
                "sampling_probability"]}


def main():
    report = {"lm": language_model(DIRECTORY),
              "seq2seq": seq2seq(DIRECTORY)}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
