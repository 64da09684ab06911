"""``AtomicBackupAndRestore``: Keras' ``BackupAndRestore`` whose backup is
never loaded half-written.

Keras' callback overwrites ``latest.weights.h5`` and then
``training_metadata.json`` in place, so a process killed while it writes
leaves a truncated file, or new weights beside the old epoch number. This
one writes each backup into a fresh directory, renames the directory into
place once both files are complete, and only then points ``LATEST`` (a
one-line file, itself replaced atomically) at it; the previous backup is
removed after that. A kill at any moment leaves ``LATEST`` naming a
complete backup, or no backup.

A backup holds what Keras' holds: the model's weights (the
scheduled-sampling probability included), the optimizer's variables (its
step counter, from which ``ScheduledSampling`` derives its position) and
the epoch to resume at; and what Keras' loses: the states of the model's
``keras.random.SeedGenerator`` s (dropout masks, scheduled-sampling
draws), which ``save_weights`` skips, so that a resumed run draws what the
uninterrupted run would have drawn.
"""

import json
import os
import shutil

import keras
import numpy as np

from kerasrnn.training.files import atomic_write_text
from kerasrnn.training.workers import worker_directory

POINTER = "LATEST"
SEEDS = "seed_states.npz"


def seed_variables(model):
    """The model's variables that are not weights: the states of its
    ``SeedGenerator`` s, which ``save_weights`` and a
    ``tf.train.Checkpoint`` of the model leave out."""
    weights = {id(weight) for weight in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` with crash-safe writes (see the
    module docstring) and one directory per worker of a multi-worker
    strategy (``kerasrnn.training.worker_directory``).

    Args:
        backup_dir: the directory of the backups (used for nothing else).
        save_freq: ``"epoch"`` or a number of batches, as Keras'. Keras'
            ``fit`` resumes at the start of the epoch it stopped in, so a
            kill loses at most the epoch under way.
        delete_checkpoint: remove the backups when ``fit`` ends.
    """

    def __init__(self, backup_dir, save_freq="epoch",
                 delete_checkpoint=True):
        super().__init__(
            backup_dir, save_freq=save_freq, delete_checkpoint=False
        )
        self.remove_at_end = delete_checkpoint
        self._saves = 0

    @property
    def _directory(self):
        # The model's strategy: callbacks run outside its scope.
        return worker_directory(
            self.backup_dir, getattr(self.model, "distribute_strategy", None)
        )

    def latest(self):
        """The directory of the newest complete backup, or None."""
        pointer = os.path.join(self._directory, POINTER)
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8") as handle:
            return os.path.join(self._directory, handle.read().strip())

    def _load_model(self):
        latest = self.latest()
        if latest is None:
            return
        self._weights_path = os.path.join(latest, "latest.weights.h5")
        self._training_metadata_path = os.path.join(
            latest, "training_metadata.json"
        )
        super()._load_model()
        seeds = seed_variables(self.model)
        with np.load(os.path.join(latest, SEEDS)) as saved:
            if len(saved.files) != len(seeds):
                raise ValueError(
                    f"The backup {latest} holds {len(saved.files)} seed "
                    f"states; the model has {len(seeds)}: it was written by "
                    "another model."
                )
            for index, variable in enumerate(seeds):
                variable.assign(saved[f"seed_{index}"])

    def _save_model(self):
        directory = self._directory
        os.makedirs(directory, exist_ok=True)
        previous = self.latest()
        self._saves += 1
        name = f"backup-{os.getpid()}-{self._saves}"
        partial = os.path.join(directory, f".partial-{name}")
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        self.model.save_weights(
            os.path.join(partial, "latest.weights.h5"), overwrite=True
        )
        np.savez(os.path.join(partial, SEEDS), **{
            f"seed_{index}": keras.ops.convert_to_numpy(variable)
            for index, variable in enumerate(seed_variables(self.model))
        })
        atomic_write_text(
            os.path.join(partial, "training_metadata.json"),
            json.dumps({"epoch": self._current_epoch,
                        "batch": self._last_batch_seen}),
        )
        os.rename(partial, os.path.join(directory, name))
        atomic_write_text(os.path.join(directory, POINTER), name + "\n")
        if previous is not None and os.path.basename(previous) != name:
            shutil.rmtree(previous, ignore_errors=True)
        for entry in os.listdir(directory):   # debris of killed writes
            if entry.startswith(".partial-"):
                shutil.rmtree(os.path.join(directory, entry),
                              ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.remove_at_end:
            shutil.rmtree(self._directory, ignore_errors=True)
