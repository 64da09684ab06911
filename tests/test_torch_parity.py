"""kerasrnn against PyTorch's nn.RNN / nn.LSTM / nn.GRU with shared weights.

PyTorch weights go in through ``load_torch_state_dict`` and come back out
through ``to_torch_state_dict``; the two-layer stacks, uni- and
bidirectional, must then agree on the output sequence and on ``h_n`` (and
``c_n``), with and without initial states, and on packed variable-length
batches against a masked kerasrnn call.
"""

import numpy as np
import parity
import pytest

import kerasrnn
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec
from kerasrnn.weights import load_torch_state_dict
from kerasrnn.weights import to_torch_state_dict

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

ATOL = 1e-5
NUM_LAYERS = 2
# name: (PyTorch module, its arguments, kerasrnn layer, its arguments)
MODES = {
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}, kerasrnn.SimpleRNN,
                 {"activation": "tanh"}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, kerasrnn.SimpleRNN,
                 {"activation": "relu"}),
    "lstm": (torch.nn.LSTM, {}, kerasrnn.LSTM, {}),
    "gru": (torch.nn.GRU, {}, kerasrnn.GRU, {}),
}


def test_every_cell_with_a_pytorch_twin_is_compared():
    """The registry's PyTorch twins are exactly the modules compared here."""
    twins = {
        (getattr(torch.nn, cell_spec(name).torch_module),
         cell_spec(name).layer_class)
        for name in cell_names() if cell_spec(name).torch_module
    }
    assert twins == {(module, layer) for module, _, layer, _ in
                     MODES.values()}


def configs():
    for mode in MODES:
        for bidirectional in (False, True):
            for seed in (0, 1):
                yield pytest.param(
                    mode, bidirectional, seed,
                    id=f"{mode}-{'bi' if bidirectional else 'uni'}-{seed}",
                )


class Case:
    """A random PyTorch module, the kerasrnn layer loaded from it, data."""

    def __init__(self, mode, bidirectional, seed):
        rng = np.random.default_rng(seed)
        torch_class, torch_kwargs, layer_class, layer_kwargs = MODES[mode]
        self.lstm = mode == "lstm"
        self.batch, self.steps, features, self.units = (
            int(n) for n in rng.integers(2, 7, size=4)
        )
        self.directions = 2 if bidirectional else 1
        use_bias = seed == 0
        torch.manual_seed(seed)
        self.module = torch_class(
            features, self.units, num_layers=NUM_LAYERS,
            bidirectional=bidirectional, batch_first=True, bias=use_bias,
            **torch_kwargs,
        )
        with torch.no_grad():
            for parameter in self.module.parameters():
                parameter.uniform_(-0.6, 0.6)
        self.layer = layer_class(
            self.units, num_layers=NUM_LAYERS, bidirectional=bidirectional,
            use_bias=use_bias, return_sequences=True, return_state=True,
            state_layout="pytorch", **layer_kwargs,
        )
        load_torch_state_dict(self.layer, state_dict_of(self.module))
        self.x = rng.normal(size=(self.batch, self.steps, features)).astype(
            "float32"
        )
        state_shape = (NUM_LAYERS * self.directions, self.batch, self.units)
        self.initial_states = [
            rng.normal(size=state_shape).astype("float32")
            for _ in range(2 if self.lstm else 1)
        ]
        self.rng = rng

    def run_torch(self, module, x, initial_states=None):
        """``[output, h_n(, c_n)]`` of ``module`` as NumPy arrays."""
        hidden = None
        if initial_states is not None:
            hidden = [torch.from_numpy(s) for s in initial_states]
            hidden = tuple(hidden) if self.lstm else hidden[0]
        with torch.no_grad():
            output, states = module(x, hidden)
        states = states if self.lstm else (states,)
        return output, [s.numpy() for s in states]

    def run_layer(self, x, initial_states=None, mask=None):
        output, *states = self.layer(x, initial_state=initial_states,
                                     mask=mask)
        return np.asarray(output), [np.asarray(s) for s in states]


def state_dict_of(module):
    return {k: v.numpy() for k, v in module.state_dict().items()}


def assert_close(ours, theirs):
    parity.record("PyTorch nn.RNN/LSTM/GRU", ours, theirs)
    np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("with_initial_state", [False, True],
                         ids=["zero-state", "initial-state"])
@pytest.mark.parametrize("mode, bidirectional, seed", configs())
def test_outputs_and_states_match(mode, bidirectional, seed,
                                  with_initial_state):
    case = Case(mode, bidirectional, seed)
    initial = case.initial_states if with_initial_state else None
    output, states = case.run_layer(case.x, initial)
    expected_output, expected_states = case.run_torch(
        case.module, torch.from_numpy(case.x), initial
    )
    assert output.shape == (
        case.batch, case.steps, case.directions * case.units
    )
    assert_close(output, expected_output.numpy())
    assert len(states) == len(expected_states)
    for ours, theirs in zip(states, expected_states):
        assert ours.shape == theirs.shape
        assert_close(ours, theirs)


@pytest.mark.parametrize("mode, bidirectional, seed", configs())
def test_exported_state_dict_runs_in_torch(mode, bidirectional, seed):
    case = Case(mode, bidirectional, seed)
    exported = to_torch_state_dict(case.layer)
    original = case.module.state_dict()
    assert list(exported) == list(original)
    module = type(case.module)(**{
        name: getattr(case.module, name)
        for name in ("input_size", "hidden_size", "num_layers", "bias",
                     "batch_first", "bidirectional")
    }, **MODES[mode][1])
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in exported.items()}
    )
    output, states = case.run_layer(case.x, case.initial_states)
    expected_output, expected_states = case.run_torch(
        module, torch.from_numpy(case.x), case.initial_states
    )
    assert_close(output, expected_output.numpy())
    for ours, theirs in zip(states, expected_states):
        assert_close(ours, theirs)


@pytest.mark.parametrize("with_initial_state", [False, True],
                         ids=["zero-state", "initial-state"])
@pytest.mark.parametrize("mode, bidirectional, seed", configs())
def test_packed_sequences_match_mask(mode, bidirectional, seed,
                                     with_initial_state):
    case = Case(mode, bidirectional, seed)
    lengths = case.rng.integers(1, case.steps + 1, size=case.batch)
    lengths[0], lengths[-1] = case.steps, 1
    mask = np.arange(case.steps)[None, :] < lengths[:, None]
    # Padding holds garbage: neither side may read it.
    x = np.where(mask[..., None], case.x, np.float32(100.0))
    initial = case.initial_states if with_initial_state else None
    output, states = case.run_layer(x, initial, mask=mask)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True,
        enforce_sorted=False,
    )
    packed_output, expected_states = case.run_torch(
        case.module, packed, initial
    )
    expected_output, _ = torch.nn.utils.rnn.pad_packed_sequence(
        packed_output, batch_first=True, total_length=case.steps
    )
    assert_close(output[mask], expected_output.numpy()[mask])
    for ours, theirs in zip(states, expected_states):
        assert_close(ours, theirs)
