"""``ScheduledSampling``: anneals a model's ``sampling_probability``.

Bengio et al. (2015) decay ε_i, the probability of feeding the ground
truth, with the training step i (or epoch)::

    linear:           ε_i = max(ε_min, k - c·i)
    exponential:      ε_i = max(ε_min, k^i)              k < 1
    inverse_sigmoid:  ε_i = max(ε_min, k / (k + exp(i / k)))   k >= 1

and the model feeds its own sample with probability p_i = 1 - ε_i.

Reference:
    Bengio, Vinyals, Jaitly & Shazeer, "Scheduled Sampling for Sequence
    Prediction with Recurrent Neural Networks", NeurIPS 2015.
"""

import math

import keras

SCHEDULES = ("linear", "exponential", "inverse_sigmoid")
UNITS = ("batch", "epoch")


def teacher_forcing_probability(schedule, i, k, c=0.0, epsilon=0.0):
    """ε_i of the module docstring."""
    if schedule == "linear":
        value = k - c * i
    elif schedule == "exponential":
        value = k**i
    else:
        value = k / (k + math.exp(min(i / k, 700.0)))
    return max(epsilon, value)


class ScheduledSampling(keras.callbacks.Callback):
    """Sets ``model.sampling_probability`` to ``1 - ε_i`` before each
    training batch (``unit="batch"``: i is ``model.optimizer.iterations``,
    the training steps applied so far over all epochs and ``fit`` calls)
    or epoch (``unit="epoch"``: i is the 0-based epoch ``fit`` reports).
    Its value appears in the epoch logs as ``sampling_probability``.

    The callback keeps no state of its own: i is read from the state that
    a restore brings back (the optimizer's step counter, the epoch
    ``keras.callbacks.BackupAndRestore`` resumes at), so a resumed run
    continues the schedule where the interrupted one stopped.

    Args:
        schedule: ``"linear"``, ``"exponential"`` or ``"inverse_sigmoid"``.
        k: the schedule's k (linear: ε at i = 0, in [0, 1]; exponential:
            in (0, 1); inverse sigmoid: >= 1).
        c: the linear slope (>= 0).
        epsilon: the floor ε_min of ε_i in [0, 1] (so p <= 1 - ε_min).
        unit: ``"batch"`` or ``"epoch"``.
    """

    def __init__(self, schedule="inverse_sigmoid", k=None, c=0.0,
                 epsilon=0.0, unit="batch"):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(
                f"`schedule` must be one of {SCHEDULES}. Received: "
                f"schedule={schedule!r}"
            )
        if unit not in UNITS:
            raise ValueError(
                f"`unit` must be one of {UNITS}. Received: unit={unit!r}"
            )
        if k is None:
            k = {"linear": 1.0, "exponential": 0.999,
                 "inverse_sigmoid": 100.0}[schedule]
        valid = {
            "linear": 0 <= k <= 1,
            "exponential": 0 < k < 1,
            "inverse_sigmoid": k >= 1,
        }[schedule]
        expected = {
            "linear": "[0, 1]", "exponential": "(0, 1)",
            "inverse_sigmoid": ">= 1",
        }[schedule]
        if not valid:
            raise ValueError(
                f"`k` for the {schedule} schedule must be {expected}. "
                f"Received: k={k!r}"
            )
        if c < 0:
            raise ValueError(f"`c` must be >= 0. Received: c={c!r}")
        if not 0 <= epsilon <= 1:
            raise ValueError(
                f"`epsilon` must lie in [0, 1]. Received: epsilon={epsilon!r}"
            )
        self.schedule, self.k, self.c = schedule, float(k), float(c)
        self.epsilon, self.unit = float(epsilon), unit

    def probability(self, i):
        """p_i = 1 - ε_i."""
        return 1.0 - teacher_forcing_probability(
            self.schedule, i, self.k, self.c, self.epsilon
        )

    def _set(self, i):
        if not hasattr(self.model, "sampling_probability"):
            raise ValueError(
                "ScheduledSampling needs a model with a "
                "`sampling_probability` variable, such as Seq2Seq. "
                f"Received: {type(self.model).__name__}"
            )
        self.model.sampling_probability.assign(self.probability(i))

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "batch":
            self._set(int(keras.ops.convert_to_numpy(
                self.model.optimizer.iterations)))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sampling_probability"] = float(
                keras.ops.convert_to_numpy(self.model.sampling_probability)
            )
