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
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf

from kerasrnn.models.lm_data import stream_dataset
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
    docstring).

    Args:
        model: a ``LanguageModel`` (not stateful: states are passed
            explicitly).
        batch_size: B, parallel streams.
        num_steps: T, the truncation length.
        learning_rate: a callable ``epoch (1-based) -> rate``, or a number.
        clipnorm: the global gradient norm bound (None for no clipping).
        optimizer: ``"sgd"`` (plain SGD, as the paper) or ``"adam"``.
        jit_compile: compile the training step with XLA.
    """

    def __init__(self, model, batch_size, num_steps, learning_rate=1.0,
                 clipnorm=5.0, optimizer="sgd", jit_compile=False):
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
        self.model = model
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        self.optimizer = OPTIMIZERS[optimizer](
            learning_rate=self._rate(1), global_clipnorm=clipnorm
        )
        self._train_step = tf.function(
            self._train_step_eager, jit_compile=jit_compile,
            reduce_retracing=True,
        )
        self._eval_step = tf.function(
            self._eval_step_eager, reduce_retracing=True
        )

    def _build(self):
        """Creates the model's weights and the optimizer's slots (Adam's
        moments) eagerly: a ``tf.function`` may create variables only on
        its first trace, and the step is traced again for new shapes."""
        if not self.model.built:
            self.model.build((self.batch_size, self.num_steps))
        if not self.optimizer.built:
            self.optimizer.build(self.model.trainable_variables)

    def _rate(self, epoch):
        if callable(self.learning_rate):
            return float(self.learning_rate(epoch))
        return float(self.learning_rate)

    def _train_step_eager(self, inputs, labels, states):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits, states = self.model(
                inputs, initial_state=states, training=True,
                return_state=True,
            )
            mean = tf.reduce_mean(_token_cross_entropy(labels, logits))
            loss = mean * tf.cast(tf.shape(labels)[1], "float32")
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply(gradients, variables)
        return mean, states

    def _eval_step_eager(self, inputs, labels, states):
        logits, states = self.model(
            inputs, initial_state=states, return_state=True
        )
        return tf.reduce_sum(_token_cross_entropy(labels, logits)), states

    def train_epoch(self, ids, epoch=1, verbose=1):
        """One pass over the training stream ``ids`` from zero states.

        Returns:
            A dict: ``loss`` (mean nats per token), ``perplexity``,
            ``learning_rate``, ``tokens``, ``seconds``,
            ``tokens_per_second``.
        """
        rate = self._rate(epoch)
        self._build()
        self.optimizer.learning_rate.assign(rate)
        dataset = stream_dataset(ids, self.batch_size, self.num_steps)
        windows = int(dataset.cardinality())
        bar = keras.utils.Progbar(
            windows, verbose=verbose, stateful_metrics=["perplexity"],
            unit_name="window",
        )
        states = self.model.initial_state(self.batch_size)
        total, start = 0.0, time.perf_counter()
        for index, (inputs, labels) in enumerate(dataset):
            mean, states = self._train_step(inputs, labels, states)
            total += float(mean)
            if verbose and (index % 20 == 0 or index == windows - 1):
                bar.update(index + 1, [
                    ("perplexity", math.exp(total / (index + 1)))
                ])
        seconds = time.perf_counter() - start
        tokens = windows * self.batch_size * self.num_steps
        loss = total / windows
        return {
            "loss": loss,
            "perplexity": math.exp(loss),
            "learning_rate": rate,
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds,
        }

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
