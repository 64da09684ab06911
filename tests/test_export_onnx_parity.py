"""Keras vs onnxruntime over the full export matrix, and the op inventory.

Matrix: 4 cells (SimpleRNN, LSTM, GRU with reset_after True and False)
× forward / reverse (``go_backwards``) / bidirectional × 1–2 layers ×
masked / unmasked × with / without initial states = 96 models, each run at
batch sizes 1 and 5 and sequence lengths 3 and 8 (384 comparisons). Every
output is compared at 1e-5: the whole output sequence (padding steps
included), and every final state.

Masked models take a boolean ``mask`` input (right-padded, lengths drawn
per row, one row of length 0 when the batch allows): Keras 3 passes no
implicit mask to a layer called with ``initial_state``, so an explicit mask
is what makes "masked with initial states" a real case. Padded steps hold
large values that must not leak. Two reverse layers are two chained
``go_backwards`` layers (a stack cannot be ``go_backwards``).

Each model is built and converted once; its session serves the four
shapes. ``python tests/test_export_onnx_parity.py`` prints the matrix size
and the largest error.
"""

import itertools

import keras
import numpy as np
import parity
import onnx
import onnxruntime
import pytest

import kerasrnn
from kerasrnn.export import build_onnx
from kerasrnn.export.onnx import call_model

ATOL = 1e-5
UNITS, FEATURES = 6, 4
CELLS = {
    "simple_rnn": (kerasrnn.SimpleRNN, {}, "RNN"),
    "lstm": (kerasrnn.LSTM, {}, "LSTM"),
    "gru_reset_after": (kerasrnn.GRU, {"reset_after": True}, "GRU"),
    "gru_reset_before": (kerasrnn.GRU, {"reset_after": False}, "GRU"),
    "peephole_lstm": (kerasrnn.PeepholeLSTM, {}, "LSTM"),
    "indrnn": (kerasrnn.IndRNN, {}, "RNN"),
}
DIRECTIONS = ("forward", "reverse", "bidirectional")
SHAPES = ((1, 3), (1, 8), (5, 3), (5, 8))   # (batch, steps)
CONFIGS = list(itertools.product(CELLS, DIRECTIONS, (1, 2), (False, True),
                                 (False, True)))


def config_id(config):
    cell, direction, layers, masked, initial = config
    return (f"{cell}-{direction}-{layers}layer-"
            f"{'masked' if masked else 'full'}-"
            f"{'initial' if initial else 'zero'}")


class Case:
    """One matrix model with random weights, and its ONNX export."""

    def __init__(self, cell, direction, layers, masked, initial):
        self.layer_class, self.kwargs, self.op = CELLS[cell]
        self.direction, self.layers = direction, layers
        self.masked, self.initial = masked, initial
        self.seed = CONFIGS.index((cell, direction, layers, masked, initial))
        self.model = self.build_model()
        rng = np.random.default_rng(self.seed)
        # N(0, 0.5²) weights: gates away from saturation, states moving.
        self.model.set_weights([
            0.5 * rng.normal(size=w.shape).astype("float32")
            for w in self.model.get_weights()
        ])
        self.onnx_model, self.manifest = build_onnx(self.model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            self.onnx_model.SerializeToString(), options,
            providers=["CPUExecutionProvider"],
        )

    def build_model(self):
        x = keras.Input((None, FEATURES), name="x")
        inputs, call = [x], {}
        if self.masked:
            mask = keras.Input((None,), dtype="bool", name="mask")
            inputs.append(mask)
            call["mask"] = mask
        directions = 2 if self.direction == "bidirectional" else 1
        count = len(self.layer_class.cell_class(1).state_size)
        states = [
            keras.Input((UNITS,), name=f"state_{k}")
            for k in range(count * directions * self.layers)
        ] if self.initial else []
        inputs += states

        def make(**kwargs):
            return self.layer_class(
                UNITS, return_sequences=True, return_state=True,
                **self.kwargs, **kwargs,
            )

        if self.direction == "reverse" and self.layers == 2:
            first, second = make(go_backwards=True), make(go_backwards=True)
            split = len(states) // 2
            out_1, *states_1 = first(
                x, **call, **self._initial(states[:split]))
            out_2, *states_2 = second(
                out_1, **call, **self._initial(states[split:]))
            outputs = [out_2, *states_1, *states_2]
        else:
            layer = make(
                num_layers=self.layers,
                go_backwards=self.direction == "reverse",
                bidirectional=self.direction == "bidirectional",
            )
            outputs = layer(x, **call, **self._initial(states))
        return keras.Model(inputs, outputs)

    @staticmethod
    def _initial(states):
        return {"initial_state": states} if states else {}

    def feeds(self, batch, steps, seed):
        rng = np.random.default_rng(seed)
        feeds = {"x": rng.normal(size=(batch, steps, FEATURES)).astype(
            "float32")}
        if self.masked:
            lengths = rng.integers(1, steps + 1, size=batch)
            lengths[0] = steps
            if batch > 2:
                lengths[1] = 0
            mask = np.arange(steps)[None, :] < lengths[:, None]
            feeds["mask"] = mask
            feeds["x"][~mask] = 100.0
        for tensor in self.model.inputs:
            if tensor.name.startswith("state_"):
                feeds[tensor.name] = rng.normal(
                    size=(batch, UNITS)).astype("float32")
        return feeds

    def keras_outputs(self, feeds):
        results = call_model(
            self.model, [feeds[tensor.name] for tensor in self.model.inputs]
        )
        return [np.asarray(value) for value in results]

    def onnx_outputs(self, feeds):
        return self.session.run(None, feeds)

    def max_error(self):
        """The largest |Keras - onnxruntime| over the four shapes."""
        worst = 0.0
        for index, (batch, steps) in enumerate(SHAPES):
            feeds = self.feeds(batch, steps, seed=1000 * self.seed + index)
            expected = self.keras_outputs(feeds)
            received = self.onnx_outputs(feeds)
            assert len(received) == len(expected)
            for ours, theirs in zip(received, expected):
                assert ours.shape == theirs.shape
                worst = max(worst, parity.record(
                    "exported models in onnxruntime", ours, theirs))
        return worst


@pytest.mark.parametrize("config", CONFIGS, ids=map(config_id, CONFIGS))
def test_keras_onnxruntime_parity(config):
    case = Case(*config)
    recurrent = [node for node in case.onnx_model.graph.node
                 if node.op_type in ("RNN", "LSTM", "GRU")]
    # One native node per layer (both directions in one), no loops.
    assert [(node.op_type, attribute(node, "direction"))
            for node in recurrent] == [(case.op, case.direction)] * (
                case.layers)
    assert not {"Loop", "Scan", "If"} & set(case.manifest["ops"])
    if case.op == "GRU":
        assert {attribute(node, "linear_before_reset")
                for node in recurrent} == {int(case.kwargs["reset_after"])}
    assert case.max_error() <= ATOL


def attribute(node, name):
    value = onnx.helper.get_attribute_value(
        next(a for a in node.attribute if a.name == name)
    )
    return value.decode() if isinstance(value, bytes) else value


def main():
    worst = max(Case(*config).max_error() for config in CONFIGS)
    print(f"{len(CONFIGS)} models x {len(SHAPES)} shapes = "
          f"{len(CONFIGS) * len(SHAPES)} comparisons; max |keras - "
          f"onnxruntime| = {worst:.2e}")


if __name__ == "__main__":
    main()
