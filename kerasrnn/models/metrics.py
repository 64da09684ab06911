"""Sequence metrics that skip padding: token accuracy, perplexity, exact
match.

Each takes ``y_true`` int ``(B, T)`` labels, ``y_pred`` float ``(B, T, V)``
logits and an optional ``sample_weight`` ``(B, T)`` or ``(B,)``. Positions
where ``y_true == pad_id`` (or whose weight is 0) do not count.
"""

import keras
from keras import ops


def _weights(y_true, sample_weight, pad_id):
    """``(B, T)`` float weights: 0 at padding, else ``sample_weight``."""
    weights = ops.cast(ops.not_equal(y_true, pad_id), "float32")
    if sample_weight is not None:
        sample_weight = ops.cast(sample_weight, "float32")
        if len(sample_weight.shape) == 1:
            sample_weight = ops.expand_dims(sample_weight, -1)
        weights = weights * sample_weight
    return weights


def _correct(y_true, y_pred):
    predicted = ops.argmax(y_pred, axis=-1)
    return ops.cast(
        ops.equal(ops.cast(y_true, "int32"), ops.cast(predicted, "int32")),
        "float32",
    )


class _SequenceMetric(keras.metrics.Metric):
    """Holds ``total`` and ``count``; ``direction`` (``"up"`` or
    ``"down"``) is which way is better, declared as Keras' own metrics do
    so that ``ModelCheckpoint``/``EarlyStopping`` with ``mode="auto"``
    know it."""

    direction = "up"

    def __init__(self, pad_id=0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._direction = self.direction
        self.pad_id = pad_id
        self.total = self.add_variable(
            shape=(), initializer="zeros", name="total"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", name="count"
        )

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="kerasrnn")
class MaskedTokenAccuracy(_SequenceMetric):
    """``Σ w_bt [argmax ŷ_bt = y_bt] / Σ w_bt`` over non-padding tokens."""

    def __init__(self, pad_id=0, name="token_accuracy", **kwargs):
        super().__init__(pad_id=pad_id, name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        weights = _weights(y_true, sample_weight, self.pad_id)
        self.total.assign_add(ops.sum(_correct(y_true, y_pred) * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="kerasrnn")
class Perplexity(_SequenceMetric):
    """``exp(Σ w_bt CE_bt / Σ w_bt)``, CE the token cross-entropy of the
    logits: the exponential of the mean negative log-likelihood per
    non-padding token."""

    direction = "down"

    def __init__(self, pad_id=0, name="perplexity", **kwargs):
        super().__init__(pad_id=pad_id, name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        weights = _weights(y_true, sample_weight, self.pad_id)
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            y_true, ops.cast(y_pred, "float32"), from_logits=True
        )
        self.total.assign_add(ops.sum(cross_entropy * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.exp(ops.divide_no_nan(self.total, self.count))


@keras.saving.register_keras_serializable(package="kerasrnn")
class SequenceExactMatch(_SequenceMetric):
    """Fraction of sequences (with at least one non-padding token) whose
    every non-padding token is predicted right (teacher-forced)."""

    def __init__(self, pad_id=0, name="exact_match", **kwargs):
        super().__init__(pad_id=pad_id, name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        counted = ops.cast(
            _weights(y_true, sample_weight, self.pad_id) > 0, "float32"
        )
        wrong = ops.sum((1.0 - _correct(y_true, y_pred)) * counted, axis=-1)
        has_tokens = ops.cast(ops.sum(counted, axis=-1) > 0, "float32")
        self.total.assign_add(
            ops.sum(ops.cast(wrong == 0, "float32") * has_tokens)
        )
        self.count.assign_add(ops.sum(has_tokens))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)
