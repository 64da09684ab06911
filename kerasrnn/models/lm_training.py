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

``TBPTTTrainer`` runs that loop on one device or under a ``tf.distribute``
strategy (R replicas, each carrying B/R of the streams: the same updates
as one device), and ``TBPTTTrainer.fit`` checkpoints it so that a killed
run resumes at its last checkpoint and continues bit for bit.
"""

import json
import math
import time

import keras
import numpy as np
import tensorflow as tf

from kerasrnn.models.lm_data import stream_windows
from kerasrnn.requirements import require_tensorflow
from kerasrnn.training.backup import seed_variables
from kerasrnn.training.workers import worker_directory
from kerasrnn.validation import check_int

OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


def zaremba_learning_rate(epoch, base=1.0, decay=0.5, constant_epochs=4):
    """``base · decay^max(epoch − constant_epochs, 0)`` for the 1-based
    ``epoch``: constant for ``constant_epochs`` epochs, then multiplied by
    ``decay`` every epoch (the small PTB config halves it after epoch 4)."""
    return base * decay ** max(epoch - constant_epochs, 0)


def _token_cross_entropy(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, "float32")
    )


class TBPTTTrainer:
    """Truncated-BPTT training over contiguous streams (see the module
    docstring), on one device or under a ``tf.distribute`` strategy, with
    checkpoints it resumes from.

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
            for no clipping).
        optimizer: ``"sgd"`` (plain SGD, as the paper) or ``"adam"``.
        jit_compile: compile the training step with XLA (one replica
            only).
        strategy: a ``tf.distribute`` strategy (None: the current one).
        checkpoint_dir: where ``fit`` writes checkpoints and resumes from
            (None: no checkpoints). A checkpoint holds the weights (the
            dropout seeds included), the optimizer's variables (Adam's
            moments, its step, the learning rate), the epoch, the next
            window, the epoch's running loss, the states carried into
            that window and the history so far: a resumed run continues
            bit for bit where the checkpoint was taken. It is written by
            ``tf.train.CheckpointManager``: data first, then the
            ``checkpoint`` index file replaced atomically, so a checkpoint
            cut short by a kill is never the one restored. Under a
            multi-worker strategy each worker keeps its own copy
            (``kerasrnn.training.worker_directory``).
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
        require_tensorflow("TBPTTTrainer (a tf.function loop, tf.distribute)")
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        check_int("batch_size", batch_size)
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
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every)
        self.model = model
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        with self.strategy.scope():
            # Clipping is done on the global gradient in the step, not by
            # the optimizer, which would clip each replica's share.
            self.optimizer = OPTIMIZERS[optimizer](
                learning_rate=self._rate(1)
            )
        self._train_step = tf.function(
            self._distributed_step, jit_compile=jit_compile,
            reduce_retracing=True,
        )
        self._eval_step = tf.function(
            self._eval_step_eager, reduce_retracing=True
        )
        self._gather_states = tf.function(lambda states: [
            self.strategy.gather(state, axis=0) for state in states
        ])
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.max_to_keep = max_to_keep
        self._manager = None

    def _build(self):
        """Creates the model's weights and the optimizer's slots (Adam's
        moments) eagerly: a ``tf.function`` may create variables only on
        its first trace, and the step is traced again for new shapes."""
        with self.strategy.scope():
            if not self.model.built:
                self.model.build((self.batch_size, self.num_steps))
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)

    def _rate(self, epoch):
        if callable(self.learning_rate):
            return float(self.learning_rate(epoch))
        return float(self.learning_rate)

    def _replica_step(self, inputs, labels, states):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits, states = self.model(
                inputs, initial_state=states, training=True,
                return_state=True,
            )
            mean = tf.reduce_mean(_token_cross_entropy(labels, logits))
            loss = mean * tf.cast(tf.shape(labels)[1], "float32")
        # Dense: Keras' Adam treats the embedding's tf.IndexedSlices
        # (one slice per token, repeated ids not summed) differently from
        # the dense gradient, and differently again once the replicas'
        # slices are concatenated (measured: 0.2 apart after 8 steps).
        gradients = [tf.convert_to_tensor(g) for g in
                     tape.gradient(loss, variables)]
        if self.replicas > 1:
            # The global gradient: the mean of the replicas' (equal-sized
            # shares of the streams), clipped as one device would clip it;
            # the optimizer then sums the replicas' copies, hence / R.
            context = tf.distribute.get_replica_context()
            gradients = [g / self.replicas for g in context.all_reduce(
                tf.distribute.ReduceOp.SUM, gradients)]
        if self.clipnorm is not None:
            gradients, _ = tf.clip_by_global_norm(gradients, self.clipnorm)
        if self.replicas > 1:
            gradients = [g / self.replicas for g in gradients]
        self.optimizer.apply(gradients, variables)
        return mean, states

    def _distributed_step(self, inputs, labels, states):
        mean, states = self.strategy.run(
            self._replica_step, (inputs, labels, states)
        )
        return self.strategy.reduce(
            tf.distribute.ReduceOp.MEAN, mean, axis=None
        ), states

    def _eval_step_eager(self, inputs, labels, states):
        logits, states = self.model(
            inputs, initial_state=states, return_state=True
        )
        return tf.reduce_sum(_token_cross_entropy(labels, logits)), states

    def _split(self, rows):
        """The global ``(B, ...)`` array ``rows`` as each replica's
        ``B/R`` consecutive rows."""
        if self.replicas == 1:
            return tf.constant(rows)
        size = rows.shape[0] // self.replicas

        def share(context):
            first = context.replica_id_in_sync_group * size
            return tf.constant(rows[first:first + size])

        return self.strategy.experimental_distribute_values_from_function(
            share
        )

    def _gather(self, states):
        """Per-replica states as global ``(B, H)`` numpy arrays."""
        if self.replicas == 1:
            return [np.asarray(s) for s in states]
        return [np.asarray(s) for s in self._gather_states(states)]

    # --- checkpoints ------------------------------------------------------

    def _checkpoint(self):
        """The ``tf.train.CheckpointManager``, created on first use."""
        if self._manager is None:
            self._build()
            self._progress = {
                "epoch": tf.Variable(1, dtype="int64", trainable=False),
                "window": tf.Variable(0, dtype="int64", trainable=False),
                "loss_sum": tf.Variable(0.0, dtype="float64",
                                        trainable=False),
                "history": tf.Variable("[]", trainable=False),
                "stopped": tf.Variable(False, trainable=False),
                "states": [
                    tf.Variable(state, trainable=False)
                    for state in self._zero_states()
                ],
            }
            seeds = [v.value for v in seed_variables(self.model)]
            checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, seeds=seeds,
                **self._progress
            )
            self._manager = tf.train.CheckpointManager(
                checkpoint,
                worker_directory(self.checkpoint_dir, self.strategy),
                max_to_keep=self.max_to_keep,
            )
        return self._manager

    def _zero_states(self):
        return [np.zeros((self.batch_size, size), "float32")
                for size in self.model.state_size]

    def _save(self, epoch, window, loss_sum, states, history,
              stopped=False):
        """Checkpoints the progress (``states``: global numpy arrays)."""
        if self.checkpoint_dir is None:
            return
        manager = self._checkpoint()
        progress = self._progress
        progress["stopped"].assign(stopped)
        progress["epoch"].assign(epoch)
        progress["window"].assign(window)
        progress["loss_sum"].assign(loss_sum)
        progress["history"].assign(json.dumps(history))
        for variable, value in zip(progress["states"], states):
            variable.assign(value)
        manager.save()

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
        manager = self._checkpoint()
        if manager.latest_checkpoint is None:
            return fresh
        manager.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
        progress = self._progress
        states = [v.numpy() for v in progress["states"]]
        return (
            int(progress["epoch"].numpy()), int(progress["window"].numpy()),
            float(progress["loss_sum"].numpy()), states,
            json.loads(progress["history"].numpy().decode()),
            bool(progress["stopped"].numpy()),
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
        if states is None:
            states = self._zero_states()
        states = [self._split(s) for s in states]
        total, begin = loss_sum, time.perf_counter()
        for index in range(start, windows):
            mean, states = self._train_step(
                self._split(inputs[index]), self._split(labels[index]),
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
                self._save(epoch, done, total, self._gather(states),
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
    speed.

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
        def step(inputs, labels, states):
            logits, states = model(
                inputs, initial_state=states, return_state=True
            )
            return tf.reduce_sum(_token_cross_entropy(labels, logits)), (
                states
            )

    starts = list(range(0, length - 1, num_steps))
    bar = keras.utils.Progbar(len(starts), verbose=verbose,
                              unit_name="window")
    states = model.initial_state(batch_size)
    total, start_time = 0.0, time.perf_counter()
    for index, start in enumerate(starts):
        stop = min(start + num_steps, length - 1)
        window_sum, states = step(
            tf.constant(streams[:, start:stop]),
            tf.constant(streams[:, start + 1:stop + 1]),
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
