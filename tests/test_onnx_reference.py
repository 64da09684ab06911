"""kerasrnn against single ONNX RNN / LSTM / GRU nodes built from its weights.

Each kerasrnn layer's weights go through ``to_onnx_weights`` into one ONNX
node (opset 17), evaluated by ``onnx.reference.ReferenceEvaluator`` and by
onnxruntime. Directions: forward, reverse (a kerasrnn ``go_backwards``
layer) and bidirectional; GRU with ``reset_after`` both ways
(``linear_before_reset``); with and without initial states; full-length and
right-padded batches (a kerasrnn mask, ONNX ``sequence_lens``).

Two ONNX facts shape the comparisons: ``Y`` is ``[T, D, B, H]`` in input
time order, whereas a ``go_backwards`` layer returns its outputs in reversed
order; and the reference evaluator ignores ``sequence_lens``, so there each
padded sequence runs alone, cut to its length.
"""

import numpy as np
import parity
import pytest

import kerasrnn
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec
from kerasrnn.weights import to_onnx_weights

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
ReferenceEvaluator = pytest.importorskip("onnx.reference").ReferenceEvaluator
helper = onnx.helper
FLOAT, INT32 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32

ATOL = 1e-5
OPSET = 17
# name: (ONNX op, kerasrnn layer, its arguments, ONNX attributes)
CELLS = {
    "rnn_tanh": ("RNN", kerasrnn.SimpleRNN, {}, {}),
    "rnn_relu": ("RNN", kerasrnn.SimpleRNN, {"activation": "relu"},
                 {"activations": ["Relu"]}),
    "lstm": ("LSTM", kerasrnn.LSTM, {}, {}),
    "gru_reset_after": ("GRU", kerasrnn.GRU, {"reset_after": True},
                        {"linear_before_reset": 1}),
    "gru_reset_before": ("GRU", kerasrnn.GRU, {"reset_after": False},
                         {"linear_before_reset": 0}),
    "peephole_lstm": ("LSTM", kerasrnn.PeepholeLSTM, {}, {}),
    "indrnn": ("RNN", kerasrnn.IndRNN, {}, {"activations": ["Relu"]}),
    # R = diag(u) checked by onnx.reference too (it runs only Tanh).
    "indrnn_tanh": ("RNN", kerasrnn.IndRNN, {"activation": "tanh"}, {}),
}
DIRECTIONS = ("forward", "reverse", "bidirectional")


def test_every_cell_with_a_native_operator_is_compared():
    compared = {layer.cell_class for _, layer, _, _ in CELLS.values()}
    native = {
        cell_spec(name).cell_class for name in cell_names()
        if cell_spec(name).onnx_operator is not None
    }
    assert compared == native


def uses_relu(cell):
    return "Relu" in CELLS[cell][3].get("activations", [])


def configs():
    for index, (cell, direction) in enumerate(
        (cell, direction) for cell in CELLS for direction in DIRECTIONS
    ):
        for with_initial_state in (False, True):
            yield pytest.param(
                cell, direction, with_initial_state, index,
                id=f"{cell}-{direction}-"
                f"{'initial' if with_initial_state else 'zero'}",
            )


class Case:
    """A random kerasrnn layer, the ONNX model of it, and data."""

    def __init__(self, cell, direction, with_initial_state, seed):
        rng = np.random.default_rng(seed)
        self.op, layer_class, layer_kwargs, self.attributes = CELLS[cell]
        self.direction = direction
        self.batch, self.steps, features, self.units = (
            int(n) for n in rng.integers(2, 7, size=4)
        )
        self.directions = 2 if direction == "bidirectional" else 1
        self.layer = layer_class(
            self.units,
            go_backwards=direction == "reverse",
            bidirectional=direction == "bidirectional",
            use_bias=seed % 3 != 0,
            return_sequences=True,
            return_state=True,
            state_layout="pytorch",
            **layer_kwargs,
        )
        self.layer.build((None, None, features))
        # Scaled down from N(0, 1) so that relu stays in a moderate range.
        self.layer.set_weights(
            [0.5 * rng.normal(size=w.shape).astype("float32")
             for w in self.layer.get_weights()]
        )
        self.x = rng.normal(size=(self.batch, self.steps, features)).astype(
            "float32"
        )
        state_count = 2 if self.op == "LSTM" else 1
        self.initial_states = None
        if with_initial_state:
            shape = (self.directions, self.batch, self.units)
            self.initial_states = [
                rng.normal(size=shape).astype("float32")
                for _ in range(state_count)
            ]
        self.state_names = ["Y_h", "Y_c"][:state_count]
        self.model = self.build_model(*to_onnx_weights(self.layer)[0])
        self.rng = rng

    def build_model(self, W, R, B, *P):
        tensor = helper.make_tensor_value_info
        states = [self.directions, "N", self.units]
        inputs = [
            tensor("X", FLOAT, ["T", "N", W.shape[2]]),
            tensor("sequence_lens", INT32, ["N"]),
        ]
        node_inputs = ["X", "W", "R", "B", "sequence_lens"]
        if self.initial_states is not None:
            for name in ("initial_h", "initial_c")[: len(self.state_names)]:
                node_inputs.append(name)
                inputs.append(tensor(name, FLOAT, states))
        constants = [("W", W), ("R", R), ("B", B)]
        if P:
            # LSTM inputs: X W R B sequence_lens initial_h initial_c P.
            node_inputs += [""] * (7 - len(node_inputs)) + ["P"]
            constants.append(("P", P[0]))
        outputs = [tensor("Y", FLOAT, ["T", *states])] + [
            tensor(name, FLOAT, states) for name in self.state_names
        ]
        attributes = dict(self.attributes)
        if "activations" in attributes:
            attributes["activations"] = (
                attributes["activations"] * self.directions
            )
        node = helper.make_node(
            self.op, node_inputs, ["Y", *self.state_names],
            hidden_size=self.units, direction=self.direction, **attributes,
        )
        graph = helper.make_graph(
            [node], "recurrent", inputs, outputs,
            initializer=[
                onnx.numpy_helper.from_array(array, name)
                for name, array in constants
            ],
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=8,
        )
        onnx.checker.check_model(model)
        return model

    def feeds(self, x, lengths, rows=slice(None)):
        """ONNX inputs for batch-major ``x``: time-major, with states."""
        feeds = {
            "X": np.ascontiguousarray(x.transpose(1, 0, 2)),
            "sequence_lens": lengths.astype("int32"),
        }
        if self.initial_states is not None:
            for name, state in zip(("initial_h", "initial_c"),
                                   self.initial_states):
                feeds[name] = np.ascontiguousarray(state[:, rows])
        return feeds

    def run_layer(self, x, mask=None):
        """kerasrnn results in ONNX's terms: ``[Y, Y_h(, Y_c)]`` with ``Y``
        as ``(B, T, D*H)`` in input time order."""
        output, *states = self.layer(
            x, initial_state=self.initial_states, mask=mask
        )
        output = np.asarray(output)
        if self.direction == "reverse":
            output = output[:, ::-1]
        return [output, *(np.asarray(state) for state in states)]


def from_onnx(results):
    """``Y [T, D, B, H]`` -> ``(B, T, D*H)``; states stay ``[D, B, H]``."""
    y, *states = results
    steps, directions, batch, units = y.shape
    y = y.transpose(2, 0, 1, 3).reshape(batch, steps, directions * units)
    return [y, *states]


def assert_close(ours, theirs, reference):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        parity.record(reference, a, b)
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


RUNTIME = "ONNX operators in onnxruntime"
EVALUATOR = "ONNX operators in onnx.reference"


def onnxruntime_session(model):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options,
        providers=["CPUExecutionProvider"],
    )


@pytest.mark.parametrize("cell, direction, with_initial_state, seed",
                         configs())
def test_full_length_batch(cell, direction, with_initial_state, seed):
    case = Case(cell, direction, with_initial_state, seed)
    expected = case.run_layer(case.x)
    lengths = np.full(case.batch, case.steps)
    feeds = case.feeds(case.x, lengths)
    assert_close(
        from_onnx(onnxruntime_session(case.model).run(None, feeds)), expected,
        RUNTIME,
    )
    if not uses_relu(cell):  # The reference RNN implements only Tanh.
        assert_close(
            from_onnx(ReferenceEvaluator(case.model).run(None, feeds)),
            expected, EVALUATOR,
        )


@pytest.mark.parametrize("cell, direction, with_initial_state, seed",
                         configs())
def test_variable_lengths(cell, direction, with_initial_state, seed):
    case = Case(cell, direction, with_initial_state, seed)
    lengths = case.rng.integers(1, case.steps + 1, size=case.batch)
    lengths[0], lengths[-1] = case.steps, 1
    mask = np.arange(case.steps)[None, :] < lengths[:, None]
    x = np.where(mask[..., None], case.x, np.float32(100.0))
    output, *states = case.run_layer(x, mask=mask)

    y, *onnx_states = from_onnx(
        onnxruntime_session(case.model).run(None, case.feeds(x, lengths))
    )
    assert_close([y[mask], *onnx_states], [output[mask], *states],
                 RUNTIME)

    if uses_relu(cell):  # The reference RNN implements only Tanh.
        return
    evaluator = ReferenceEvaluator(case.model)
    for row, length in enumerate(lengths):
        rows = slice(row, row + 1)
        y, *onnx_states = from_onnx(
            evaluator.run(
                None, case.feeds(x[rows, :length], lengths[rows], rows)
            )
        )
        assert_close(
            [y[0], *onnx_states],
            [output[row, :length], *(s[:, rows] for s in states)],
            EVALUATOR,
        )
