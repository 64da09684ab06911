"""The roles of the workers of a ``tf.distribute`` run.

In a ``MultiWorkerMirroredStrategy`` every worker runs the same program;
all of them take part in saving (a save may read variables through
collectives), but only the chief's files are the run's: the others write
their copies to a private directory below it.

Off TensorFlow there is no ``tf.distribute`` strategy: every process is its
own chief. ``MultiWorkerMirroredStrategy`` imports TensorFlow when it is
first asked for, so this module loads without it.
"""

import functools
import os

import keras


def _current(strategy):
    """``strategy``, or the current ``tf.distribute`` strategy (None off
    TensorFlow)."""
    if strategy is not None or keras.config.backend() != "tensorflow":
        return strategy
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _task(strategy):
    """``(task_type, task_id)`` of this worker, ``(None, None)`` outside a
    multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy=None):
    """True for the chief (``chief``, or ``worker`` 0 without one) of
    ``strategy`` (None: the current one), and for every process outside a
    multi-worker strategy."""
    strategy = _current(strategy)
    task_type, task_id = _task(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    resolver = strategy.cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_directory(directory, strategy=None):
    """Where this worker of ``strategy`` (None: the current one) writes a
    checkpoint meant for ``directory``: ``directory`` itself on the chief,
    ``directory/.worker-<type>-<id>`` on the others (each restores from
    its own, so the workers need no shared file system)."""
    strategy = _current(strategy)
    if is_chief(strategy):
        return directory
    task_type, task_id = _task(strategy)
    return os.path.join(directory, f".worker-{task_type}-{task_id}")


@functools.cache
def _strategy_class():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(
            tf.distribute.MultiWorkerMirroredStrategy):
        """``tf.distribute.MultiWorkerMirroredStrategy`` whose ``reduce``
        accepts what Keras 3's ``fit`` passes it.

        Keras (3.15) calls ``strategy.reduce`` in two ways TensorFlow's
        multi-worker strategy rejects: on the first batch, an ``(x, y)`` nest,
        to infer shapes ("Attempt to convert a value (PerReplica...)"), and on
        every scalar metric with ``axis=0`` ("Invalid reduction dimension 0
        for input with 0 dimensions"). This ``reduce`` maps over a nest and
        reduces a scalar across the replicas only (``axis=None``), which is
        what ``MirroredStrategy`` gives ``fit``; everything else is
        TensorFlow's. Create it, like TensorFlow's, before any other
        TensorFlow operation, with ``TF_CONFIG`` set.
        """

        def reduce(self, reduce_op, value, axis):
            parent = super()

            def one(item):
                local = self.experimental_local_results(item)[0]
                scalar = getattr(local, "shape", None) is not None and (
                    local.shape.rank == 0
                )
                return parent.reduce(reduce_op, item, None if scalar else axis)

            return tf.nest.map_structure(one, value)

    MultiWorkerMirroredStrategy.__qualname__ = "MultiWorkerMirroredStrategy"
    return MultiWorkerMirroredStrategy


def __getattr__(name):
    if name == "MultiWorkerMirroredStrategy":
        return _strategy_class()
    raise AttributeError(
        f"module 'kerasrnn.training.workers' has no attribute {name!r}")
