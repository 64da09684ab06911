"""Mask-aware pooling of a sequence into one vector, for classification."""

import keras
from keras import ops

POOLING_MODES = ("last", "mean", "max")


def last_valid_step(sequences, mask=None):
    """``sequences[b, t_b]`` where ``t_b`` is the last step with mask True.

    Without a mask, the last step. A row with no valid step gives zeros.
    """
    if mask is None:
        return sequences[:, -1]
    mask = ops.cast(mask, "int32")
    steps = ops.shape(sequences)[1]
    positions = ops.arange(steps, dtype="int32")
    last = ops.max(mask * (positions + 1), axis=1) - 1   # -1: no valid step
    picked = ops.take_along_axis(
        sequences, ops.reshape(ops.maximum(last, 0), (-1, 1, 1)), axis=1
    )[:, 0]
    has_valid = ops.cast(ops.expand_dims(last >= 0, -1), sequences.dtype)
    return picked * has_valid


@keras.saving.register_keras_serializable(package="kerasrnn")
class SequencePooling(keras.layers.Layer):
    """Pools ``(B, T, F)`` sequences into ``(B, F)``, honouring the mask.

    Modes, with ``V_b`` the valid (mask True) steps of row ``b``::

        last:  y_b = x_{b, max V_b}
        mean:  y_b = Σ_{t∈V_b} x_{b,t} / |V_b|
        max:   y_b = max_{t∈V_b} x_{b,t}

    A row with no valid step pools to zeros in every mode.

    Args:
        mode: ``"last"``, ``"mean"`` or ``"max"``.
    """

    def __init__(self, mode="last", **kwargs):
        if mode not in POOLING_MODES:
            raise ValueError(
                f"`mode` must be one of {POOLING_MODES}. Received: "
                f"mode={mode!r}"
            )
        super().__init__(**kwargs)
        self.mode = mode
        self.supports_masking = True

    def call(self, sequences, mask=None):
        if len(sequences.shape) != 3:
            raise ValueError(
                f"Layer '{self.name}' expects sequences of rank 3 (batch, "
                f"time, features). Received: shape={tuple(sequences.shape)}"
            )
        if self.mode == "last":
            return last_valid_step(sequences, mask)
        if mask is None:
            mask = ops.ones(ops.shape(sequences)[:2], dtype="bool")
        weights = ops.cast(ops.expand_dims(mask, -1), sequences.dtype)
        count = ops.sum(weights, axis=1)
        if self.mode == "mean":
            return ops.sum(sequences * weights, axis=1) / ops.maximum(count, 1)
        lowest = ops.min(sequences) - 1
        pooled = ops.max(
            ops.where(ops.expand_dims(mask, -1), sequences, lowest), axis=1
        )
        return ops.where(count > 0, pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, sequences_shape):
        return (sequences_shape[0], sequences_shape[2])

    def compute_mask(self, sequences, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
