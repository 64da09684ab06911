"""A Keras callback that records gradient flow while a model trains."""

import keras

from kerasrnn.diagnostics.gradient_flow import GradientFlowProbe
from kerasrnn.validation import check_int


class GradientFlowRecorder(keras.callbacks.Callback):
    """Measures ``gradient_flow`` on a fixed batch during ``fit``.

    Records once before the first epoch (epoch 0, the initial weights),
    after every ``every``-th epoch, and after the last epoch (so the last
    record always holds the final weights, also when training stops early).
    Each record keeps only the batch means of the norms, so recording is
    cheap in memory. The probe runs
    eagerly on the model's own weights and does not change them.

    Args:
        x, y: the batch to measure on (keep it small: one probe pass costs
            about one training step run eagerly).
        every: record after every ``every``-th epoch.
        loss: as in ``gradient_flow`` (default: the compiled loss).
        states: the states to record, ``("h",)`` by default; add ``"c"``
            for LSTMs.

    Attributes:
        records: a list of dicts ``{"epoch": e, "loss": L, "finite": bool,
            "norms": {loop path: {state: (T,) array}}}``, ``norms[k]``
            indexed by step k as ``TrackFlow.mean_norms``.

    Example:

    >>> recorder = GradientFlowRecorder(x[:32], y[:32], every=5)
    >>> model.fit(x, y, epochs=20, callbacks=[recorder])
    >>> recorder.records[-1]["norms"]["lstm/layer_0"]["h"]
    """

    def __init__(self, x, y, every=1, loss=None, states=("h",)):
        super().__init__()
        self.x = x
        self.y = y
        self.every = check_int("every", every, 1)
        self.loss = loss
        self.states = tuple(states)
        self.records = []
        self.probe = None

    def record(self, epoch):
        if self.probe is None:
            self.probe = GradientFlowProbe(self.model, self.loss)
        flow = self.probe(self.x, self.y)
        norms = {}
        for track in flow.tracks:
            norms[track.name] = {
                state: track.mean_norms(state)
                for state in self.states
                if state in track.gradients
            }
        self.records.append(
            {
                "epoch": epoch,
                "loss": flow.loss,
                "finite": flow.finite,
                "norms": norms,
            }
        )

    def on_train_begin(self, logs=None):
        self.epoch = 0
        self.record(0)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        if self.epoch % self.every == 0:
            self.record(self.epoch)

    def on_train_end(self, logs=None):
        if self.records[-1]["epoch"] != self.epoch:
            self.record(self.epoch)
