"""Truncated BPTT training and stream evaluation of a ``LanguageModel``.

Training follows Zaremba et al. (2014) and the TensorFlow PTB tutorial::

    for epoch in 1..E:
        lr = learning_rate(epoch);  s = 0             state reset per epoch
        for (x, y) in stream_windows(train, B, T):
            loss = Σ_t mean_b CE(logits(x, s)_bt, y_bt)     (sum over time)
            g = clip_by_global_norm(∇ loss, clipnorm)
            θ -= lr · g;  s = final states (no gradient across windows)

The loss sums over the T steps and averages over the B streams, the
tutorial's ``cost``: the learning rate 1.0 of the paper is for this scale.

Evaluation carries the state across the whole stream and scores every
token after the first, so it equals running one token at a time
(the tutorial's ``batch_size = num_steps = 1`` test protocol) while running
windows of ``num_steps``: perplexity = exp(mean CE per token).

Each idea is written once, in ``keras.ops``: the window and its loss
(``_window``, ``_training_loss``), the state carry and the learning-rate
schedule (``TBPTTTrainer._epoch``) and the clipping (Keras' optimizer
option ``global_clipnorm``, the same formula as
``tf.clip_by_global_norm``). What differs per Keras backend is only how a
gradient is taken and applied (``_TensorFlowSteps``, ``_JaxSteps``,
``_TorchSteps``):

* TensorFlow: a ``tf.function`` (optionally XLA) with a ``GradientTape``,
  on one device or under a ``tf.distribute`` strategy (R replicas, each
  carrying B/R of the streams: the same updates as one device);
* JAX: one ``jax.jit`` step, ``jax.value_and_grad`` of the window run in a
  ``keras.StatelessScope`` (what ``Model.stateless_call`` does) and
  ``optimizer.stateless_apply``; the dropout seeds' states go in and out
  with the weights;
* PyTorch: eager, ``torch.autograd.grad`` and ``optimizer.apply``.

``TBPTTTrainer.fit`` checkpoints the loop so that a killed run resumes at
its last checkpoint and continues bit for bit: with
``tf.train.CheckpointManager`` on TensorFlow, in NumPy files elsewhere
(``_ArrayCheckpoints``).
"""

import contextlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
from keras import ops

from kerasrnn.models.lm_data import stream_windows
from kerasrnn.models.stateless import model_function
from kerasrnn.requirements import require_tensorflow
from kerasrnn.training.files import atomic_write_text
from kerasrnn.validation import check_int

OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


def zaremba_learning_rate(epoch, base=1.0, decay=0.5, constant_epochs=4):
    """``base · decay^max(epoch − constant_epochs, 0)`` for the 1-based
    ``epoch``: constant for ``constant_epochs`` epochs, then multiplied by
    ``decay`` every epoch (the small PTB config halves it after epoch 4)."""
    return base * decay ** max(epoch - constant_epochs, 0)


def _window(model, inputs, labels, states, training):
    """One window read from ``states``: the cross-entropy of every token
    ``(B, T)`` (float32) and the final states, cut from the gradient (the
    truncation: no gradient flows across windows)."""
    logits, states = model(
        inputs, initial_state=states, training=training, return_state=True
    )
    cross_entropy = ops.sparse_categorical_crossentropy(
        labels, ops.cast(logits, "float32"), from_logits=True
    )
    return cross_entropy, [ops.stop_gradient(state) for state in states]


def _training_loss(cross_entropy):
    """``(loss, mean)``: the loss ``Σ_t mean_b CE = T · mean`` of a window
    and its mean per token."""
    mean = ops.mean(cross_entropy)
    return mean * float(cross_entropy.shape[1]), mean


def _numpy(tensors):
    return [np.asarray(ops.convert_to_numpy(t)) for t in tensors]


def _dense(gradient, variable):
    """A dense gradient (zeros for a variable the loss does not reach)."""
    if gradient is None:
        return ops.zeros(variable.shape, variable.dtype)
    return ops.convert_to_tensor(gradient)


class _Steps:
    """How one backend takes a window's gradient and applies it; the base
    is one device with no strategy."""

    replicas = 1

    def __init__(self, trainer):
        self.model = trainer.model
        self.trainer = trainer

    def scope(self):
        return contextlib.nullcontext()

    def split(self, rows):
        """The global ``(B, ...)`` array ``rows`` as the step's input."""
        return ops.convert_to_tensor(rows)

    def gather(self, states):
        """The step's states as global ``(B, H)`` NumPy arrays."""
        return _numpy(states)

    def train_step(self, inputs, labels, states):
        """``(mean CE per token, final states)`` of one window, after the
        update."""
        raise NotImplementedError

    def checkpoints(self, directory, max_to_keep):
        return _ArrayCheckpoints(self.trainer, directory, max_to_keep)


class _TensorFlowSteps(_Steps):
    """A ``tf.function`` step (XLA with ``jit_compile``), on one device or
    under a ``tf.distribute`` strategy."""

    def __init__(self, trainer, strategy, jit_compile):
        import tensorflow as tf

        super().__init__(trainer)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self._step = tf.function(self._distributed_step,
                                 jit_compile=jit_compile,
                                 reduce_retracing=True)
        self._gather_states = tf.function(lambda states: [
            self.strategy.gather(state, axis=0) for state in states
        ])

    def scope(self):
        return self.strategy.scope()

    def _replica_step(self, inputs, labels, states):
        import tensorflow as tf

        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            cross_entropy, states = _window(self.model, inputs, labels,
                                            states, training=True)
            loss, mean = _training_loss(cross_entropy)
        # Dense: Keras' Adam treats the embedding's tf.IndexedSlices
        # (one slice per token, repeated ids not summed) differently from
        # the dense gradient, and differently again once the replicas'
        # slices are concatenated (measured: 0.2 apart after 8 steps).
        gradients = [tf.convert_to_tensor(g) for g in
                     tape.gradient(loss, variables)]
        if self.replicas > 1:
            # The global gradient g: the mean of the replicas' (equal-sized
            # shares of the streams). Each replica hands the optimizer its
            # share g/R, which it clips at clipnorm/R (the same scale as g
            # at clipnorm) and sums over the replicas.
            context = tf.distribute.get_replica_context()
            gradients = [g / self.replicas / self.replicas
                         for g in context.all_reduce(
                             tf.distribute.ReduceOp.SUM, gradients)]
        self.trainer.optimizer.apply(gradients, variables)
        return mean, states

    def _distributed_step(self, inputs, labels, states):
        import tensorflow as tf

        mean, states = self.strategy.run(
            self._replica_step, (inputs, labels, states)
        )
        return self.strategy.reduce(
            tf.distribute.ReduceOp.MEAN, mean, axis=None
        ), states

    def train_step(self, inputs, labels, states):
        return self._step(inputs, labels, states)

    def split(self, rows):
        """Each replica's ``B/R`` consecutive rows of ``rows``."""
        import tensorflow as tf

        if self.replicas == 1:
            return tf.constant(rows)
        size = rows.shape[0] // self.replicas

        def share(context):
            first = context.replica_id_in_sync_group * size
            return tf.constant(rows[first:first + size])

        return self.strategy.experimental_distribute_values_from_function(
            share
        )

    def gather(self, states):
        if self.replicas == 1:
            return _numpy(states)
        return _numpy(self._gather_states(states))

    def checkpoints(self, directory, max_to_keep):
        return _TensorFlowCheckpoints(self.trainer, directory, max_to_keep)


def _values(variables):
    return [v.value for v in variables]


def _assign(variables, values):
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class _JaxSteps(_Steps):
    """One ``jax.jit`` step: ``jax.value_and_grad`` of the stateless
    window, ``optimizer.stateless_apply``; the new values are assigned to
    the variables after every window (so callbacks, checkpoints and
    ``evaluate`` see them)."""

    def __init__(self, trainer):
        import jax

        super().__init__(trainer)
        model = self.model

        def loss(inputs, labels, states):
            cross_entropy, states = _window(model, inputs, labels, states,
                                            training=True)
            total, mean = _training_loss(cross_entropy)
            return total, (mean, states)

        pure = model_function(model, loss)

        def differentiable(trainable, others, inputs, labels, states):
            (total, aux), others = pure(trainable, others, inputs, labels,
                                        states)
            return total, (aux, others)

        gradient = jax.value_and_grad(differentiable, has_aux=True)

        def update(trainable, others, slots, inputs, labels, states):
            (_, ((mean, states), others)), gradients = gradient(
                trainable, others, inputs, labels, states)
            trainable, slots = trainer.optimizer.stateless_apply(
                slots, gradients, trainable)
            return mean, states, trainable, others, slots

        self._update = jax.jit(update)

    def train_step(self, inputs, labels, states):
        model, optimizer = self.model, self.trainer.optimizer
        mean, states, trainable, others, slots = self._update(
            _values(model.trainable_variables),
            _values(model.non_trainable_variables),
            _values(optimizer.variables), inputs, labels, states,
        )
        _assign(model.trainable_variables, trainable)
        _assign(model.non_trainable_variables, others)
        _assign(optimizer.variables, slots)
        return mean, states


class _TorchSteps(_Steps):
    """Eager: ``torch.autograd.grad`` of the window's loss, then
    ``optimizer.apply`` under ``torch.no_grad``."""

    def train_step(self, inputs, labels, states):
        import torch

        variables = self.model.trainable_variables
        cross_entropy, states = _window(self.model, inputs, labels, states,
                                        training=True)
        loss, mean = _training_loss(cross_entropy)
        gradients = torch.autograd.grad(
            loss, [v.value for v in variables], allow_unused=True
        )
        gradients = [_dense(g, v) for g, v in zip(gradients, variables)]
        with torch.no_grad():
            self.trainer.optimizer.apply(gradients, variables)
        return mean.detach(), states


def _evaluation_step(model, compiled=True):
    """``step(inputs, labels, states) -> (summed CE, final states)`` of
    one window, without dropout: a ``tf.function`` on TensorFlow (eager
    when not ``compiled``), ``jax.jit`` on JAX (always: an eager JAX
    model compiles its loop again at every call), under
    ``torch.no_grad`` on PyTorch."""
    def window_sum(inputs, labels, states):
        cross_entropy, states = _window(model, inputs, labels, states,
                                        training=False)
        return ops.sum(cross_entropy), states

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not compiled:
            return window_sum
        return tf.function(window_sum, reduce_retracing=True)
    if backend == "jax":
        import jax

        compiled_sum = jax.jit(model_function(model, window_sum))

        def step(inputs, labels, states):
            result, _ = compiled_sum(
                _values(model.trainable_variables),
                _values(model.non_trainable_variables),
                inputs, labels, states,
            )
            return result

        return step
    import torch

    def step(inputs, labels, states):
        with torch.no_grad():
            return window_sum(inputs, labels, states)

    return step


# --- checkpoints ----------------------------------------------------------
#
# A checkpoint holds the weights, the dropout seeds' states, the
# optimizer's variables (Adam's moments, its step, the learning rate) and
# the progress: ``epoch``, ``window`` (the next one), ``loss_sum`` (the
# epoch's running loss), ``states`` (carried into that window),
# ``history`` and ``stopped``.


def _seed_variables(model):
    from kerasrnn.training.backup import seed_variables

    return seed_variables(model)


class _TensorFlowCheckpoints:
    """``tf.train.CheckpointManager``: data first, then the ``checkpoint``
    index file replaced atomically; one directory per worker of a
    multi-worker strategy (``kerasrnn.training.worker_directory``)."""

    def __init__(self, trainer, directory, max_to_keep):
        import tensorflow as tf

        from kerasrnn.training.workers import worker_directory

        self.progress = {
            "epoch": tf.Variable(1, dtype="int64", trainable=False),
            "window": tf.Variable(0, dtype="int64", trainable=False),
            "loss_sum": tf.Variable(0.0, dtype="float64", trainable=False),
            "history": tf.Variable("[]", trainable=False),
            "stopped": tf.Variable(False, trainable=False),
        }
        self.states = [tf.Variable(state, trainable=False)
                       for state in trainer._zero_states()]
        seeds = [v.value for v in _seed_variables(trainer.model)]
        checkpoint = tf.train.Checkpoint(
            model=trainer.model, optimizer=trainer.optimizer, seeds=seeds,
            states=self.states, **self.progress
        )
        self.manager = tf.train.CheckpointManager(
            checkpoint,
            worker_directory(directory, trainer._steps.strategy),
            max_to_keep=max_to_keep,
        )

    def save(self, progress, states):
        for name, value in progress.items():
            if name == "history":
                value = json.dumps(value)
            self.progress[name].assign(value)
        for variable, value in zip(self.states, states):
            variable.assign(value)
        self.manager.save()

    def restore(self):
        """``(progress, states)`` of the newest checkpoint, or None."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return None
        self.manager.checkpoint.restore(latest).assert_consumed()
        progress = {name: v.numpy() for name, v in self.progress.items()}
        progress["history"] = json.loads(progress["history"].decode())
        return progress, [v.numpy() for v in self.states]


class _ArrayCheckpoints:
    """Checkpoints of the JAX and PyTorch trainers: ``ckpt-N/arrays.npz``
    (the model's variables, the seeds' states included, the optimizer's,
    the states; on PyTorch its random generators too, which an unseeded
    dropout draws from) and ``ckpt-N/progress.json``. Each is written into
    ``.partial-ckpt-N``, renamed into place once complete, and only then
    named by the ``LATEST`` file (replaced atomically): a checkpoint cut
    short by a kill is never the one restored."""

    POINTER = "LATEST"

    def __init__(self, trainer, directory, max_to_keep):
        self.trainer = trainer
        self.directory = directory
        self.max_to_keep = max_to_keep

    def _groups(self):
        trainer = self.trainer
        return {"model": trainer.model.variables,
                "optimizer": trainer.optimizer.variables}

    def _latest(self):
        pointer = os.path.join(self.directory, self.POINTER)
        if not os.path.exists(pointer):
            if os.path.exists(os.path.join(self.directory, "checkpoint")):
                raise ValueError(
                    f"{self.directory} holds TensorFlow checkpoints (a "
                    "tf.train.CheckpointManager index), written by "
                    "TBPTTTrainer on Keras' TensorFlow backend; Keras is "
                    f"set to {keras.config.backend()!r}. Resume it with "
                    "KERAS_BACKEND=tensorflow, or use another "
                    "checkpoint_dir."
                )
            return None
        with open(pointer, encoding="utf-8") as handle:
            return handle.read().strip()

    def save(self, progress, states):
        os.makedirs(self.directory, exist_ok=True)
        latest = self._latest()
        number = 1 if latest is None else int(latest.split("-")[1]) + 1
        name = f"ckpt-{number}"
        partial = os.path.join(self.directory, f".partial-{name}")
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        arrays = {f"state_{i}": s for i, s in enumerate(states)}
        for group, variables in self._groups().items():
            for index, value in enumerate(_numpy(variables)):
                arrays[f"{group}_{index}"] = value
        arrays.update(_torch_random_state())
        np.savez(os.path.join(partial, "arrays.npz"), **arrays)
        atomic_write_text(
            os.path.join(partial, "progress.json"),
            json.dumps({**progress, "backend": keras.config.backend()}),
        )
        os.rename(partial, os.path.join(self.directory, name))
        atomic_write_text(os.path.join(self.directory, self.POINTER),
                          name + "\n")
        kept = sorted(
            (entry for entry in os.listdir(self.directory)
             if entry.startswith("ckpt-")),
            key=lambda entry: int(entry.split("-")[1]),
        )
        for entry in kept[:-self.max_to_keep]:
            shutil.rmtree(os.path.join(self.directory, entry),
                          ignore_errors=True)
        for entry in os.listdir(self.directory):   # debris of killed writes
            if entry.startswith(".partial-"):
                shutil.rmtree(os.path.join(self.directory, entry),
                              ignore_errors=True)

    def restore(self):
        latest = self._latest()
        if latest is None:
            return None
        path = os.path.join(self.directory, latest)
        with open(os.path.join(path, "progress.json"),
                  encoding="utf-8") as handle:
            progress = json.load(handle)
        progress.pop("backend")
        with np.load(os.path.join(path, "arrays.npz")) as saved:
            arrays = {name: saved[name] for name in saved.files}
        # Everything is checked before anything is assigned.
        groups = {
            "state": [np.zeros(s.shape, s.dtype)
                      for s in self.trainer._zero_states()],
            **self._groups(),
        }
        values = {}
        for group, variables in groups.items():
            values[group] = [arrays[name] for name in sorted(
                (n for n in arrays if n.startswith(group + "_")),
                key=lambda n: int(n.split("_")[1]))]
            shapes = [tuple(v.shape) for v in values[group]]
            expected = [tuple(v.shape) for v in variables]
            if shapes != expected:
                raise ValueError(
                    f"The checkpoint {path} holds {group} arrays of shapes "
                    f"{shapes}; this trainer's are {expected}: it was "
                    "written for another model, optimizer or batch_size."
                )
        for group, variables in self._groups().items():
            _assign(variables, values[group])
        _set_torch_random_state(arrays)
        return progress, values["state"]


def _torch_random_state():
    """PyTorch's generators, which an unseeded dropout draws from (Keras
    seeds its own draws only when the layer has a seed)."""
    if keras.config.backend() != "torch":
        return {}
    import torch

    arrays = {"torch_cpu_random": torch.get_rng_state().numpy()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"torch_cuda_random_{index}"] = state.numpy()
    return arrays


def _set_torch_random_state(arrays):
    if "torch_cpu_random" not in arrays:
        return
    import torch

    torch.set_rng_state(torch.from_numpy(arrays["torch_cpu_random"]))
    if torch.cuda.is_available():
        count = sum(name.startswith("torch_cuda_random_")
                    for name in arrays)
        torch.cuda.set_rng_state_all([
            torch.from_numpy(arrays[f"torch_cuda_random_{index}"])
            for index in range(count)
        ])


# --- the trainer ----------------------------------------------------------


class TBPTTTrainer:
    """Truncated-BPTT training over contiguous streams (see the module
    docstring) on any Keras backend, on TensorFlow also under a
    ``tf.distribute`` strategy, with checkpoints it resumes from.

    Args:
        model: a ``LanguageModel`` (not stateful: states are passed
            explicitly), created under ``strategy.scope()`` when a
            strategy is given.
        batch_size: B, parallel streams: the global batch. Under a
            strategy of R replicas, replica r reads streams
            ``r·B/R .. (r+1)·B/R - 1`` (B must be a multiple of R), so R
            replicas train exactly as one device on the B streams: the
            gradient is the mean over all of them, clipped as one.
        num_steps: T, the truncation length.
        learning_rate: a callable ``epoch (1-based) -> rate``, or a number.
        clipnorm: the bound of the global norm of the global gradient (None
            for no clipping): the optimizer's ``global_clipnorm``.
        optimizer: ``"sgd"`` (plain SGD, as the paper) or ``"adam"``.
        jit_compile: on TensorFlow, compile the training step with XLA
            (one replica only). JAX's step is always compiled
            (``jax.jit``); on PyTorch (eager) True is refused.
        strategy: a ``tf.distribute`` strategy (None: the current one);
            TensorFlow only.
        checkpoint_dir: where ``fit`` writes checkpoints and resumes from
            (None: no checkpoints). A checkpoint holds the weights, the
            dropout seeds' states, the optimizer's variables (Adam's
            moments, its step, the learning rate), the epoch, the next
            window, the epoch's running loss, the states carried into
            that window and the history so far: a resumed run continues
            bit for bit where the checkpoint was taken. A checkpoint cut
            short by a kill is never the one restored. On TensorFlow it
            is written by ``tf.train.CheckpointManager`` (data first, then
            the ``checkpoint`` index file replaced atomically; under a
            multi-worker strategy each worker keeps its own copy,
            ``kerasrnn.training.worker_directory``); on JAX and PyTorch as
            NumPy files (``_ArrayCheckpoints``; a TensorFlow trainer's
            directory is refused there with an error saying so).
        checkpoint_every: also checkpoint every this many windows within
            an epoch (None: at the end of each epoch only).
        max_to_keep: checkpoints kept.
    """

    def __init__(self, model, batch_size, num_steps, learning_rate=1.0,
                 clipnorm=5.0, optimizer="sgd", jit_compile=False,
                 strategy=None, checkpoint_dir=None, checkpoint_every=None,
                 max_to_keep=2):
        if getattr(model, "stateful", False):
            raise ValueError(
                "TBPTTTrainer passes the states explicitly; build the model "
                "with stateful=False."
            )
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"`optimizer` must be one of {sorted(OPTIMIZERS)}. "
                f"Received: optimizer={optimizer!r}"
            )
        if clipnorm is not None and not (
            isinstance(clipnorm, (int, float)) and clipnorm > 0
        ):
            raise ValueError(
                "`clipnorm` must be None or a number > 0. Received: "
                f"clipnorm={clipnorm!r}"
            )
        backend = keras.config.backend()
        if strategy is not None:
            require_tensorflow("TBPTTTrainer(strategy=...) (tf.distribute)")
        if jit_compile and backend == "torch":
            raise ValueError(
                "jit_compile=True: the PyTorch trainer runs eagerly. "
                "Received: jit_compile=True on Keras' 'torch' backend."
            )
        check_int("batch_size", batch_size)
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every)
        self.model = model
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        if backend == "tensorflow":
            self._steps = _TensorFlowSteps(self, strategy, jit_compile)
        elif backend == "jax":
            self._steps = _JaxSteps(self)
        else:
            self._steps = _TorchSteps(self)
        self.strategy = getattr(self._steps, "strategy", None)
        self.replicas = self._steps.replicas
        if batch_size % self.replicas:
            raise ValueError(
                f"`batch_size` ({batch_size} streams) must be a multiple of "
                f"the strategy's {self.replicas} replicas."
            )
        if jit_compile and self.replicas > 1:
            raise ValueError(
                "jit_compile=True runs on one replica; the strategy has "
                f"{self.replicas}."
            )
        with self._steps.scope():
            # Each replica clips its share g/R of the global gradient g at
            # clipnorm/R: the same as one device clipping g at clipnorm.
            self.optimizer = OPTIMIZERS[optimizer](
                learning_rate=self._rate(1),
                global_clipnorm=(None if clipnorm is None
                                 else clipnorm / self.replicas),
            )
        self._eval_step = _evaluation_step(model)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.max_to_keep = max_to_keep
        self._checkpoints = None

    def _build(self):
        """Creates the model's weights and the optimizer's slots (Adam's
        moments) eagerly: a ``tf.function`` may create variables only on
        its first trace, and the step is traced again for new shapes."""
        with self._steps.scope():
            if not self.model.built:
                self.model.build((self.batch_size, self.num_steps))
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)

    def _rate(self, epoch):
        if callable(self.learning_rate):
            return float(self.learning_rate(epoch))
        return float(self.learning_rate)

    # --- checkpoints ------------------------------------------------------

    def _checkpoint(self):
        """The backend's checkpoints, created on first use."""
        if self._checkpoints is None:
            self._build()
            self._checkpoints = self._steps.checkpoints(
                self.checkpoint_dir, self.max_to_keep)
        return self._checkpoints

    def _zero_states(self):
        return [np.zeros((self.batch_size, size), "float32")
                for size in self.model.state_size]

    def _save(self, epoch, window, loss_sum, states, history,
              stopped=False):
        """Checkpoints the progress (``states``: global numpy arrays)."""
        if self.checkpoint_dir is None:
            return
        self._checkpoint().save(
            {"epoch": epoch, "window": window, "loss_sum": loss_sum,
             "history": history, "stopped": stopped},
            states,
        )

    def restore(self):
        """Restores the newest checkpoint of ``checkpoint_dir``.

        Returns:
            ``(epoch, window, loss_sum, states, history, stopped)`` to
            continue from: ``(1, 0, 0.0, None, [], False)`` when there is
            none; ``stopped`` when early stopping ended the run.
        """
        fresh = 1, 0, 0.0, None, [], False
        if self.checkpoint_dir is None:
            return fresh
        restored = self._checkpoint().restore()
        if restored is None:
            return fresh
        progress, states = restored
        return (
            int(progress["epoch"]), int(progress["window"]),
            float(progress["loss_sum"]), states, progress["history"],
            bool(progress["stopped"]),
        )

    # --- training ---------------------------------------------------------

    def _epoch(self, ids, epoch, verbose, start=0, loss_sum=0.0,
               states=None, history=None, on_window_end=None):
        """Windows ``start..`` of epoch ``epoch``, from ``states`` (None:
        zeros) and the running ``loss_sum`` of the windows before."""
        rate = self._rate(epoch)
        self._build()
        self.optimizer.learning_rate.assign(rate)
        inputs, labels = stream_windows(ids, self.batch_size, self.num_steps)
        windows = len(inputs)
        bar = keras.utils.Progbar(
            windows, verbose=verbose, stateful_metrics=["perplexity"],
            unit_name="window",
        )
        steps = self._steps
        if states is None:
            states = self._zero_states()
        states = [steps.split(s) for s in states]
        total, begin = loss_sum, time.perf_counter()
        for index in range(start, windows):
            mean, states = steps.train_step(
                steps.split(inputs[index]), steps.split(labels[index]),
                states,
            )
            total += float(mean)
            if on_window_end is not None:
                on_window_end(epoch, index + 1)
            if verbose and (index % 20 == 0 or index == windows - 1):
                bar.update(index + 1, [
                    ("perplexity", math.exp(total / (index + 1)))
                ])
            done = index + 1
            if (self.checkpoint_every and done < windows
                    and done % self.checkpoint_every == 0):
                self._save(epoch, done, total, steps.gather(states),
                           history or [])
        seconds = time.perf_counter() - begin
        tokens = (windows - start) * self.batch_size * self.num_steps
        loss = total / windows
        return {
            "epoch": epoch,
            "loss": loss,
            "perplexity": math.exp(loss),
            "learning_rate": rate,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds,
        }

    def train_epoch(self, ids, epoch=1, verbose=1):
        """One pass over the training stream ``ids`` from zero states (no
        checkpoint; ``fit`` checkpoints and resumes).

        Returns:
            A dict: ``epoch``, ``loss`` (mean nats per token),
            ``perplexity``, ``learning_rate``, ``tokens``, ``seconds``,
            ``tokens_per_second``.
        """
        return self._epoch(ids, epoch, verbose)

    def fit(self, ids, epochs, validation_ids=None, verbose=1,
            on_epoch_end=None, on_window_end=None):
        """Trains epochs ``1..epochs`` on the stream ``ids``, resuming from
        the newest checkpoint of ``checkpoint_dir`` (the epochs and windows
        it records are not run again; nothing, once early stopping ended
        the run), checkpointing as configured and at the end of every
        epoch.

        Args:
            ids: the training token stream.
            epochs: the last epoch (1-based) to train.
            validation_ids: a stream scored by ``evaluate`` after every
                epoch (``validation_loss``, ``validation_perplexity``).
            verbose: progress bar.
            on_epoch_end: optional ``callable(history)`` after each
                epoch (the history so far, before a resume included),
                before its checkpoint; returning True stops training
                (early stopping: a rule of the history alone holds across
                resumes).
            on_window_end: optional ``callable(epoch, windows done in
                it)`` after each window.

        Returns:
            The history: one ``train_epoch`` dict per epoch (validation
            figures added), those before a resume included.
        """
        epoch, window, loss_sum, states, history, stopped = self.restore()
        while epoch <= epochs and not stopped:
            record = self._epoch(ids, epoch, verbose, window, loss_sum,
                                 states, history, on_window_end)
            if validation_ids is not None:
                scored = self.evaluate(validation_ids, batch_size=1,
                                       num_steps=self.num_steps)
                record["validation_loss"] = scored["loss"]
                record["validation_perplexity"] = scored["perplexity"]
            history = history + [record]
            stopped = bool(on_epoch_end and on_epoch_end(history))
            epoch, window, loss_sum, states = epoch + 1, 0, 0.0, None
            self._save(epoch, 0, 0.0, self._zero_states(), history,
                       stopped)
        return history

    def evaluate(self, ids, batch_size=1, num_steps=100, verbose=0):
        """``evaluate_stream`` with this trainer's compiled step."""
        return evaluate_stream(
            self.model, ids, batch_size, num_steps, verbose,
            step=self._eval_step,
        )




def evaluate_stream(model, ids, batch_size=1, num_steps=100, verbose=0,
                    step=None):
    """Perplexity of ``model`` on a token stream, state carried throughout.

    The stream is cut into ``batch_size`` contiguous streams of
    ``L = len(ids) // batch_size`` tokens (a tail of fewer than
    ``batch_size`` tokens is dropped); each stream is read from zero states
    in windows of ``num_steps`` (the last one shorter), and every token but
    its first is predicted from all the tokens before it in its stream.
    With ``batch_size=1`` that is every token of the stream after the first,
    as in the one-token-at-a-time protocol; ``num_steps`` only sets the
    speed. It runs on every Keras backend (see ``_evaluation_step``).

    Returns:
        A dict: ``loss`` (mean nats per predicted token), ``perplexity``
        (``exp(loss)``), ``tokens`` (predicted tokens), ``seconds``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(
            f"`ids` must be a 1-D token stream. Received: shape={ids.shape}"
        )
    for name, value in (("batch_size", batch_size),
                        ("num_steps", num_steps)):
        check_int(name, value)
    length = ids.size // batch_size
    if length < 2:
        raise ValueError(
            f"Evaluation needs at least 2 tokens per stream: {ids.size} "
            f"tokens in batch_size={batch_size} streams. Received: "
            f"{ids.size} tokens."
        )
    streams = ids[:batch_size * length].reshape(batch_size, length)
    streams = streams.astype("int32")
    if step is None:
        step = _evaluation_step(model, compiled=False)
    if not model.built:
        model.build((batch_size, num_steps))
    starts = list(range(0, length - 1, num_steps))
    bar = keras.utils.Progbar(len(starts), verbose=verbose,
                              unit_name="window")
    states = model.initial_state(batch_size)
    total, start_time = 0.0, time.perf_counter()
    for index, start in enumerate(starts):
        stop = min(start + num_steps, length - 1)
        window_sum, states = step(
            ops.convert_to_tensor(streams[:, start:stop]),
            ops.convert_to_tensor(streams[:, start + 1:stop + 1]),
            states,
        )
        total += float(window_sum)
        if verbose:
            bar.update(index + 1)
    tokens = batch_size * (length - 1)
    loss = total / tokens
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "tokens": tokens,
        "seconds": time.perf_counter() - start_time,
    }


class ResetStates(keras.callbacks.Callback):
    """Zeroes a stateful ``LanguageModel``'s carried states at the start of
    every epoch and of every evaluation, for ``fit(stream_dataset(...),
    shuffle=False)``: each pass reads the streams from zero states."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_states()

    def on_test_begin(self, logs=None):
        self.model.reset_states()
