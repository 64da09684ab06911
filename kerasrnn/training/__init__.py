"""Training that survives and scales: crash-safe checkpoint files,
``BackupAndRestore`` that never loads a half-written backup, and the worker
roles of a multi-worker ``tf.distribute`` run.

``kerasrnn.models.lm_training.TBPTTTrainer`` checkpoints through
``files``/``workers`` too; the ``kerasrnn`` command (``kerasrnn.cli``)
builds its ``train`` runs from these pieces.
"""

from kerasrnn.training.backup import AtomicBackupAndRestore
from kerasrnn.training.files import atomic_write_text
from kerasrnn.training.workers import is_chief
from kerasrnn.training.workers import worker_directory

__all__ = [
    "AtomicBackupAndRestore",
    "MultiWorkerMirroredStrategy",
    "atomic_write_text",
    "is_chief",
    "worker_directory",
]


def __getattr__(name):
    # TensorFlow's strategy subclass: TensorFlow is imported when it is
    # asked for, so kerasrnn.training loads without it.
    if name == "MultiWorkerMirroredStrategy":
        from kerasrnn.training import workers

        return workers.MultiWorkerMirroredStrategy
    raise AttributeError(
        f"module 'kerasrnn.training' has no attribute {name!r}")
