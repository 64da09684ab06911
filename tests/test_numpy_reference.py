"""kerasrnn against the float64 NumPy reference of ``reference/numpy_rnn.py``.

Seeded sweeps over cells, activations, masks, directions, merge modes and
stack shapes compare float32 kerasrnn outputs and states with the reference
(``atol=1e-5``). Further checks: a padded batch equals its sequences run
alone, ``RNN`` equals its cell in a Python loop, ``unroll=True`` equals the
graph loop, gradients equal central finite differences (float64), dropout is
variational, inter-layer dropout sits between layers only, and stateful
layers carry their states across calls.

All weights, including biases, are drawn at random (the default zero biases
would hide bias bugs), and padding steps hold random values, not zeros.
"""

import itertools

import keras
import numpy as np
import parity
from backend_autodiff import gradients
import pytest
from reference import numpy_rnn as ref

import kerasrnn
from keras import ops
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec

ATOL = 1e-5
# (kind, cell arguments): every activation named here is in ref.ACTIVATIONS.
# Every registered cell must appear (test_every_registered_cell_is_swept).
CELL_CONFIGS = [
    ("elman", {"activation": "tanh"}),
    ("elman", {"activation": "relu"}),
    ("elman", {"activation": "softsign", "use_bias": False}),
    ("lstm", {}),
    ("lstm", {"recurrent_activation": "hard_sigmoid"}),
    ("lstm", {"activation": "softsign", "use_bias": False}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("gru", {"recurrent_activation": "hard_sigmoid", "activation": "relu"}),
    ("gru", {"reset_after": True, "use_bias": False}),
    ("gru", {"reset_after": False, "use_bias": False}),
    ("peephole_lstm", {}),
    ("peephole_lstm", {"recurrent_activation": "hard_sigmoid",
                       "use_bias": False}),
    ("indrnn", {"activation": "relu"}),
    ("indrnn", {"activation": "tanh", "use_bias": False}),
]
# One non-default configuration per kind, for the wider layer sweeps.
KIND_CONFIGS = [
    ("elman", {"activation": "tanh"}),
    ("lstm", {"recurrent_activation": "hard_sigmoid"}),
    ("gru", {"reset_after": False}),
    ("peephole_lstm", {}),
    # tanh: with ReLU's dead units several dropout masks give one output.
    ("indrnn", {"activation": "tanh"}),
]
# The classes, from the registry ("elman" is the simple_rnn's alias).
CELLS = {kind: cell_spec(kind).cell_class for kind, _ in CELL_CONFIGS}
STACKS = {kind: cell_spec(kind).layer_class for kind in CELLS}


def num_states(kind):
    return len(cell_spec(kind).state_names)


def test_every_registered_cell_is_swept():
    """A registered cell is compared with its NumPy equations (and so has
    them in reference/numpy_rnn.py) in the cell and layer sweeps."""
    swept = {cell_spec(kind).name for kind, _ in CELL_CONFIGS}
    layered = {cell_spec(kind).name for kind, _ in KIND_CONFIGS}
    assert swept == layered == set(cell_names())
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


def config_id(config):
    kind, arguments = config
    return "-".join([kind] + [f"{k}={v}" for k, v in arguments.items()])


@pytest.fixture(autouse=True)
def torch_without_autograd():
    """On the torch backend, outputs of layers (whose weights require grad)
    reach NumPy only outside autograd; ``backend_autodiff.gradients``
    turns it back on for the gradient tests."""
    if keras.config.backend() != "torch":
        yield
        return
    import torch

    with torch.no_grad():
        yield


def numpy64(value):
    """A backend tensor (or array) as a float64 NumPy array."""
    return ops.convert_to_numpy(value).astype(np.float64)


def assert_close(actual, expected, atol=ATOL,
                 reference="NumPy equations (float64)"):
    parity.record(reference, actual, expected)
    np.testing.assert_allclose(
        numpy64(actual), expected, rtol=0, atol=atol
    )


def randomize(layer, rng, scale=0.6):
    """Draws every trainable weight of ``layer`` from N(0, scale²)."""
    for weight in layer.trainable_weights:
        weight.assign(rng.normal(0.0, scale, weight.shape))


def reference_cell(cell, kind, arguments):
    """The reference twin of a built kerasrnn cell: same weights, same
    activations (taken from the test's arguments, not from the cell)."""
    return ref.Cell(
        kind,
        cell.kernel.numpy(),
        cell.recurrent_kernel.numpy(),
        None if cell.bias is None else cell.bias.numpy(),
        activation=arguments.get("activation", "tanh"),
        recurrent_activation=arguments.get("recurrent_activation", "sigmoid"),
        reset_after=arguments.get("reset_after", True),
        P=(cell.peephole_kernel.numpy()
           if hasattr(cell, "peephole_kernel") else None),
    )


def stack_cells(layer, kind, arguments):
    """Reference cells of a stacked layer: per layer, (forward[, backward])."""
    cells = []
    for sublayer in layer.recurrent_layers:
        if isinstance(sublayer, kerasrnn.Bidirectional):
            directions = (sublayer.forward_layer, sublayer.backward_layer)
        else:
            directions = (sublayer,)
        cells.append(
            tuple(reference_cell(d.cell, kind, arguments) for d in directions)
        )
    return cells


def random_lengths(rng, batch_size, steps):
    """Right-padding lengths in 1..steps, with a full-length and, for a
    batch of two or more, a length-1 sequence."""
    lengths = rng.integers(1, steps + 1, size=batch_size)
    lengths[0] = steps
    if batch_size > 1:
        lengths[-1] = 1
    return lengths


def random_sizes(rng, min_batch=1):
    """(batch, steps, features, units), small."""
    return (
        int(rng.integers(min_batch, 5)),
        int(rng.integers(2, 7)),
        int(rng.integers(1, 5)),
        int(rng.integers(1, 6)),
    )


def random_states(rng, count, batch_size, units):
    return [
        rng.normal(0.0, 0.5, (batch_size, units)).astype("float32")
        for _ in range(count)
    ]


def float32(rng, *shape):
    return rng.normal(size=shape).astype("float32")


# --------------------------------------------------------------- cells


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("config", CELL_CONFIGS, ids=config_id)
def test_cell_step(config, seed):
    kind, arguments = config
    rng = np.random.default_rng(seed)
    batch_size, _, features, units = random_sizes(rng)
    cell = CELLS[kind](units, **arguments)
    x = float32(rng, batch_size, features)
    num_states = len(cell_spec(kind).state_names)
    states = random_states(rng, num_states, batch_size, units)
    cell(x, states)
    randomize(cell, rng)
    output, new_states = cell(x, states)
    expected, expected_states = reference_cell(cell, kind, arguments).step(
        x.astype(np.float64), [s.astype(np.float64) for s in states]
    )
    assert_close(output, expected)
    assert len(new_states) == num_states
    for state, expected_state in zip(new_states, expected_states):
        assert_close(state, expected_state)


# ----------------------------------------------------------------- RNN

# (masked, go_backwards, initial_state, zero_output_for_mask)
RNN_OPTIONS = [
    (False, False, False, False),
    (True, False, True, False),
    (True, True, False, True),
    (False, True, True, False),
    (True, True, True, False),
    (True, False, False, True),
]


@pytest.mark.parametrize(
    "options", RNN_OPTIONS,
    ids=lambda o: "mask{}-back{}-init{}-zero{}".format(*map(int, o)),
)
@pytest.mark.parametrize("config", CELL_CONFIGS, ids=config_id)
def test_rnn(config, options):
    masked, go_backwards, with_initial_state, zero_output = options
    kind, arguments = config
    rng = np.random.default_rng(len(config_id(config)) + 7 * sum(options))
    batch_size, steps, features, units = random_sizes(rng, min_batch=2)
    cell = CELLS[kind](units, **arguments)
    layer = kerasrnn.RNN(
        cell,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output,
    )
    last_layer = kerasrnn.RNN(
        cell, go_backwards=go_backwards, zero_output_for_mask=zero_output
    )
    x = float32(rng, batch_size, steps, features)
    mask = None
    if masked:
        mask = ref.lengths_to_mask(
            random_lengths(rng, batch_size, steps), steps
        )
    initial_state = None
    if with_initial_state:
        initial_state = random_states(
            rng, num_states(kind), batch_size, units
        )
    layer.build(x.shape)
    randomize(layer, rng)
    output, *states = layer(x, initial_state=initial_state, mask=mask)
    last = last_layer(x, initial_state=initial_state, mask=mask)
    expected, expected_last, expected_states = ref.run(
        reference_cell(cell, kind, arguments),
        x,
        mask,
        initial_state,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output,
    )
    assert output.shape == (batch_size, steps, units)
    assert_close(output, expected)
    assert_close(last, expected_last)
    for state, expected_state in zip(states, expected_states, strict=True):
        assert_close(state, expected_state)


@pytest.mark.parametrize("config", CELL_CONFIGS, ids=config_id)
def test_rnn_equals_cell_in_python_loop(config):
    kind, arguments = config
    rng = np.random.default_rng(len(config_id(config)))
    batch_size, steps, features, units = random_sizes(rng)
    cell = CELLS[kind](units, **arguments)
    layer = kerasrnn.RNN(cell, return_sequences=True, return_state=True)
    x = float32(rng, batch_size, steps, features)
    states = random_states(rng, num_states(kind), batch_size, units)
    layer.build(x.shape)
    randomize(layer, rng)
    output, *final_states = layer(x, initial_state=states)
    outputs = []
    for t in range(steps):
        step_output, states = cell(x[:, t], states)
        outputs.append(step_output)
    assert_close(output, np.stack(outputs, axis=1), atol=1e-6,
                 reference="RNN layer = cell in a Python loop")
    for state, loop_state in zip(final_states, states, strict=True):
        assert_close(state, loop_state, atol=1e-6,
                     reference="RNN layer = cell in a Python loop")


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_unroll_equals_while_loop(config, masked, go_backwards):
    kind, arguments = config
    rng = np.random.default_rng(3 + masked + 2 * go_backwards)
    batch_size, steps, features, units = random_sizes(rng, min_batch=2)
    cell = CELLS[kind](units, **arguments)
    options = dict(
        return_sequences=True, return_state=True, go_backwards=go_backwards
    )
    looped = kerasrnn.RNN(cell, **options)
    unrolled = kerasrnn.RNN(cell, unroll=True, **options)
    x = float32(rng, batch_size, steps, features)
    mask = None
    if masked:
        mask = ref.lengths_to_mask(
            random_lengths(rng, batch_size, steps), steps
        )
    looped.build(x.shape)
    randomize(looped, rng)
    for a, b in zip(looped(x, mask=mask), unrolled(x, mask=mask), strict=True):
        assert_close(a, ops.convert_to_numpy(b), atol=1e-6,
                     reference="unroll=True = graph loop")


# ------------------------------------------------------- bidirectional


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("merge_mode", MERGE_MODES)
@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_bidirectional(config, merge_mode, return_sequences):
    kind, arguments = config
    rng = np.random.default_rng(MERGE_MODES.index(merge_mode))
    batch_size, steps, features, units = random_sizes(rng, min_batch=2)
    layer = kerasrnn.Bidirectional(
        kerasrnn.RNN(
            CELLS[kind](units, **arguments),
            return_sequences=return_sequences,
            return_state=True,
        ),
        merge_mode=merge_mode,
    )
    x = float32(rng, batch_size, steps, features)
    lengths = random_lengths(rng, batch_size, steps)
    num_states = len(cell_spec(kind).state_names)
    initial_state = None
    if (MERGE_MODES.index(merge_mode) + return_sequences) % 2:
        initial_state = random_states(rng, 2 * num_states, batch_size, units)
    layer.build(x.shape)
    randomize(layer, rng)
    result = layer(
        x,
        initial_state=initial_state,
        mask=ref.lengths_to_mask(lengths, steps),
    )
    sequence, last, forward_states, backward_states = ref.bidirectional(
        reference_cell(layer.forward_layer.cell, kind, arguments),
        reference_cell(layer.backward_layer.cell, kind, arguments),
        x,
        lengths,
        merge_mode,
        initial_state,
    )
    expected = sequence if return_sequences else last
    expected = expected if merge_mode is None else [expected]
    expected = expected + forward_states + backward_states
    assert len(result) == len(expected)
    for actual, wanted in zip(result, expected):
        assert_close(actual, wanted)


# ------------------------------------------------------ stacked layers


@pytest.mark.parametrize("state_layout", ["keras", "pytorch"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [2, 3])
@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_stacked(config, num_layers, bidirectional, residual, state_layout):
    kind, arguments = config
    rng = np.random.default_rng(num_layers + 2 * bidirectional + 4 * residual)
    batch_size, steps, features, units = random_sizes(rng, min_batch=2)
    # residual + bidirectional needs return_sequences; else alternate.
    return_sequences = (bidirectional and residual) or (
        state_layout == "keras"
    )
    layer = STACKS[kind](
        units,
        num_layers=num_layers,
        bidirectional=bidirectional,
        residual=residual,
        state_layout=state_layout,
        return_sequences=return_sequences,
        return_state=True,
        **arguments,
    )
    directions = 2 if bidirectional else 1
    num_states = len(cell_spec(kind).state_names)
    x = float32(rng, batch_size, steps, features)
    lengths = random_lengths(rng, batch_size, steps)
    # Per (layer, direction) sub-layer, its [h] or [h, c].
    initial = [
        random_states(rng, num_states, batch_size, units)
        for _ in range(num_layers * directions)
    ]
    if state_layout == "pytorch":
        initial_state = [
            np.stack([sub[s] for sub in initial]) for s in range(num_states)
        ]
    else:
        initial_state = [state for sub in initial for state in sub]
    layer.build(x.shape)
    randomize(layer, rng)
    output, *states = layer(
        x, initial_state=initial_state, mask=ref.lengths_to_mask(lengths, steps)
    )
    per_layer = [
        sum(initial[k * directions:(k + 1) * directions], [])
        for k in range(num_layers)
    ]
    sequence, last, expected_states = ref.stack(
        stack_cells(layer, kind, arguments),
        x,
        lengths,
        residual=residual,
        initial_states=per_layer,
    )
    width = directions * units
    if return_sequences:
        assert output.shape == (batch_size, steps, width)
        assert_close(output, sequence)
    else:
        assert output.shape == (batch_size, width)
        assert_close(output, last)
    if state_layout == "pytorch":
        # [h_n] or [h_n, c_n], (layers * directions, B, H), layer-major,
        # forward before backward: the order of torch.nn.LSTM.
        assert len(states) == num_states
        for s, state in enumerate(states):
            assert state.shape == (num_layers * directions, batch_size, units)
            assert_close(state, np.stack(expected_states[s::num_states]))
    else:
        assert len(states) == num_layers * directions * num_states
        for state, expected_state in zip(states, expected_states):
            assert_close(state, expected_state)


@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_single_layer_go_backwards(config):
    """One unidirectional layer (the Keras drop-in) with go_backwards."""
    kind, arguments = config
    rng = np.random.default_rng(41)
    batch_size, steps, features, units = 3, 5, 2, 4
    layer = STACKS[kind](
        units, go_backwards=True, return_sequences=True, return_state=True,
        state_layout="pytorch", **arguments,
    )
    x = float32(rng, batch_size, steps, features)
    mask = ref.lengths_to_mask(random_lengths(rng, batch_size, steps), steps)
    layer.build(x.shape)
    randomize(layer, rng)
    output, *states = layer(x, mask=mask)
    (cell,), = stack_cells(layer, kind, arguments)
    expected, _, expected_states = ref.run(cell, x, mask, go_backwards=True)
    assert_close(output, expected)
    for state, expected_state in zip(states, expected_states, strict=True):
        assert state.shape == (1, batch_size, units)
        assert_close(state[0], expected_state)


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave"])
@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_stacked_merge_modes(config, merge_mode):
    """Deep bidirectional residual stacks merging by sum, mul or ave."""
    kind, arguments = config
    rng = np.random.default_rng(37)
    batch_size, steps, features, units = 3, 4, 3, 3
    layer = STACKS[kind](
        units, num_layers=2, bidirectional=True, merge_mode=merge_mode,
        residual=True, return_sequences=True, **arguments,
    )
    x = float32(rng, batch_size, steps, features)
    lengths = random_lengths(rng, batch_size, steps)
    layer.build(x.shape)
    randomize(layer, rng)
    sequence, _, _ = ref.stack(
        stack_cells(layer, kind, arguments),
        x,
        lengths,
        merge_mode=merge_mode,
        residual=True,
    )
    output = layer(x, mask=ref.lengths_to_mask(lengths, steps))
    assert output.shape == (batch_size, steps, units)
    assert_close(output, sequence)


# --------------------------------------------------------------- pooling


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_sequence_pooling(mode, seed):
    rng = np.random.default_rng(seed)
    batch_size, steps, features, _ = random_sizes(rng, min_batch=3)
    x = float32(rng, batch_size, steps, features)
    lengths = random_lengths(rng, batch_size, steps)
    lengths[1] = 0   # a row with no real step pools to zeros
    pooling = kerasrnn.SequencePooling(mode)
    masked = pooling(x, mask=ref.lengths_to_mask(lengths, steps))
    assert_close(masked, ref.pool(x, lengths, mode))
    full = pooling(x)
    assert_close(full, ref.pool(x, np.full(batch_size, steps), mode))


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_pooling_of_bidirectional_outputs(mode):
    """Pooling the padded outputs of a Bidirectional LSTM, with its mask."""
    rng = np.random.default_rng(11)
    batch_size, steps, features, units = 4, 5, 3, 3
    layer = kerasrnn.Bidirectional(
        kerasrnn.RNN(kerasrnn.LSTMCell(units), return_sequences=True)
    )
    x = float32(rng, batch_size, steps, features)
    lengths = random_lengths(rng, batch_size, steps)
    mask = ref.lengths_to_mask(lengths, steps)
    layer.build(x.shape)
    randomize(layer, rng)
    pooled = kerasrnn.SequencePooling(mode)(layer(x, mask=mask), mask=mask)
    sequence, *_ = ref.bidirectional(
        reference_cell(layer.forward_layer.cell, "lstm", {}),
        reference_cell(layer.backward_layer.cell, "lstm", {}),
        x,
        lengths,
    )
    assert_close(pooled, ref.pool(sequence, lengths, mode))


# ------------------------------------------- padded == each one alone


def make_layer(structure, kind, units):
    if structure == "stacked_bidirectional":
        return STACKS[kind](
            units, num_layers=2, bidirectional=True, return_sequences=True,
            return_state=True,
        )
    cell = CELLS[kind](units)
    rnn = kerasrnn.RNN(
        cell,
        return_sequences=True,
        return_state=True,
        go_backwards=structure == "backwards",
    )
    return kerasrnn.Bidirectional(rnn) if structure == "bidirectional" else rnn


@pytest.mark.parametrize(
    "structure",
    ["forward", "backwards", "bidirectional", "stacked_bidirectional"],
)
@pytest.mark.parametrize("kind", CELLS)
def test_padded_batch_equals_sequences_alone(kind, structure):
    rng = np.random.default_rng(5)
    batch_size, steps, features, units = 4, 6, 3, 4
    layer = make_layer(structure, kind, units)
    x = float32(rng, batch_size, steps, features)
    lengths = random_lengths(rng, batch_size, steps)
    layer.build(x.shape)
    randomize(layer, rng)
    output, *states = layer(x, mask=ref.lengths_to_mask(lengths, steps))
    for row, length in enumerate(lengths):
        alone, *alone_states = layer(x[row:row + 1, :length])
        # go_backwards outputs come in processing order: padding first.
        start = steps - length if structure == "backwards" else 0
        assert_close(output[row:row + 1, start:start + length], alone,
                     reference="padded batch = each sequence alone")
        for state, alone_state in zip(states, alone_states, strict=True):
            assert_close(state[row:row + 1], alone_state,
                         reference="padded batch = each sequence alone")


# ------------------------------------------------------------ gradients

# Central differences need float64 arithmetic; Keras' JAX and torch
# backends compute float64 matmuls in float32 (``result_type`` maps 64-bit
# types to 32-bit, as JAX does by default). Their gradients are checked
# against the generic loop in tests/test_backends.py instead.
float64_backend = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="Keras' jax/torch backends compute float64 matmuls in float32",
)


def finite_difference_check(loss, arrays, analytic, eps=1e-6):
    """Central differences of ``loss()`` in each entry of each array (changed
    in place), against the ``analytic`` gradients; max-norm relative
    error below 1e-5 per array."""
    for array, gradient in zip(arrays, analytic, strict=True):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            upper = loss()
            array[index] = saved - eps
            lower = loss()
            array[index] = saved
            numeric[index] = (upper - lower) / (2 * eps)
        error = np.max(np.abs(np.asarray(gradient) - numeric))
        relative = parity.note(
            "gradients vs central differences (relative, float64)",
            error / max(np.max(np.abs(numeric)), 1e-8))
        assert relative < 1e-5


def weighted_sum(tensors, weights):
    return sum(ops.sum(t * ops.convert_to_tensor(w, t.dtype))
               for t, w in zip(tensors, weights))


@float64_backend
@pytest.mark.parametrize("config", CELL_CONFIGS, ids=config_id)
def test_cell_gradient(config):
    kind, arguments = config
    rng = np.random.default_rng(len(config_id(config)))
    batch_size, features, units = 2, 3, 3
    cell = CELLS[kind](units, dtype="float64", **arguments)
    num_states = len(cell_spec(kind).state_names)
    x = rng.normal(size=(batch_size, features))
    states = [
        rng.normal(0.0, 0.5, (batch_size, units)) for _ in range(num_states)
    ]
    cell(x, states)
    randomize(cell, rng)
    variables = cell.trainable_weights
    values = [v.numpy() for v in variables]
    projections = [rng.normal(size=(batch_size, units))
                   for _ in range(1 + num_states)]

    def loss_tensor():
        # Tensors, not arrays: Keras' torch backend converts a float64
        # array input through float32.
        output, new_states = cell(ops.convert_to_tensor(x),
                                  [ops.convert_to_tensor(s) for s in states])
        return weighted_sum([output, *new_states], projections)

    def loss():
        for variable, value in zip(variables, values):
            variable.assign(value)
        return float(loss_tensor())

    def value(x, *states):
        output, new_states = cell(x, list(states))
        return weighted_sum([output, *new_states], projections)

    analytic = gradients(value, [x, *states], variables)
    finite_difference_check(loss, [x, *states, *values], analytic)


@float64_backend
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_rnn_gradient(config, go_backwards):
    kind, arguments = config
    rng = np.random.default_rng(13)
    batch_size, steps, features, units = 2, 4, 2, 3
    layer = kerasrnn.RNN(
        CELLS[kind](units, dtype="float64", **arguments),
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        dtype="float64",
    )
    x = rng.normal(size=(batch_size, steps, features))
    mask = ref.lengths_to_mask([steps, 2], steps)
    layer.build(x.shape)
    randomize(layer, rng)
    variables = layer.trainable_weights
    values = [v.numpy() for v in variables]
    num_states = len(cell_spec(kind).state_names)
    projections = [rng.normal(size=(batch_size, steps, units))] + [
        rng.normal(size=(batch_size, units)) for _ in range(num_states)
    ]

    def loss_tensor(inputs):
        return weighted_sum(layer(inputs, mask=mask), projections)

    def loss():
        for variable, value in zip(variables, values):
            variable.assign(value)
        return float(loss_tensor(ops.convert_to_tensor(x)))

    analytic = gradients(loss_tensor, [x], variables)
    finite_difference_check(loss, [x, *values], analytic)


# -------------------------------------------------------------- dropout


def recover_fixed_masks(cell, x, output, dropout, recurrent_dropout):
    """Per row, the input and recurrent dropout masks, fixed over time, under
    which the reference reproduces ``output``; asserts exactly one fits.

    Tries every 0/1 pattern (scaled by 1 / (1 - rate)) on the features and
    units that have a nonzero rate.
    """
    batch_size, steps, features = x.shape
    units = cell.units
    input_patterns = [np.ones(features)]
    if dropout:
        input_patterns = [
            np.array(bits) / (1 - dropout)
            for bits in itertools.product([0, 1], repeat=features)
        ]
    recurrent_patterns = [np.ones(units)]
    if recurrent_dropout:
        recurrent_patterns = [
            np.array(bits) / (1 - recurrent_dropout)
            for bits in itertools.product([0, 1], repeat=units)
        ]
    candidates = list(itertools.product(input_patterns, recurrent_patterns))
    input_masks = np.stack([c[0] for c in candidates])
    recurrent_masks = np.stack([c[1] for c in candidates])
    recovered = []
    for row in range(batch_size):
        sequences = np.repeat(x[row:row + 1], len(candidates), axis=0)
        outputs, _, _ = ref.run(
            cell, sequences, input_mask=input_masks,
            recurrent_mask=recurrent_masks,
        )
        errors = np.max(np.abs(outputs - output[row]), axis=(1, 2))
        fits = np.flatnonzero(errors < ATOL)
        assert len(fits) == 1, f"row {row}: {len(fits)} fixed masks fit"
        recovered.append(candidates[fits[0]])
    return recovered


@pytest.mark.parametrize(
    "rates", [(0.5, 0.0), (0.0, 0.5), (0.4, 0.4)],
    ids=lambda r: f"dropout={r[0]}-recurrent={r[1]}",
)
@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_variational_dropout(config, rates):
    """With training=True the output is the reference's under one dropout
    mask per sequence (a mask redrawn per step fits no fixed mask), and with
    training=False it is the reference's without dropout."""
    kind, arguments = config
    dropout, recurrent_dropout = rates
    rng = np.random.default_rng(17)
    batch_size, steps, features, units = 4, 5, 3, 3
    cell = CELLS[kind](
        units, dropout=dropout, recurrent_dropout=recurrent_dropout, seed=3,
        **arguments,
    )
    layer = kerasrnn.RNN(cell, return_sequences=True)
    x = float32(rng, batch_size, steps, features)
    layer.build(x.shape)
    randomize(layer, rng)
    twin = reference_cell(cell, kind, arguments)
    output = numpy64(layer(x, training=True))
    recovered = recover_fixed_masks(
        twin, x, output, dropout, recurrent_dropout
    )
    dropped = [np.any(m == 0) for pair in recovered for m in pair]
    assert any(dropped), "training=True dropped nothing"
    expected, _, _ = ref.run(twin, x)
    assert_close(layer(x, training=False), expected)
    assert_close(layer(x), expected)


def identity_tail(layer, rng):
    """Random first layer; every later SimpleRNN layer maps y -> y (kernel
    I, recurrent kernel 0, bias 0, linear activation)."""
    randomize(layer.recurrent_layers[0], rng)
    for sublayer in layer.recurrent_layers[1:]:
        cell = sublayer.cell
        cell.kernel.assign(np.eye(*cell.kernel.shape))
        cell.recurrent_kernel.assign(np.zeros(cell.recurrent_kernel.shape))
        cell.bias.assign(np.zeros(cell.bias.shape))


def test_inter_layer_dropout_between_layers_only():
    """Two linear SimpleRNN layers, the second the identity: the output is
    the first layer's output times the one inter-layer mask, whose entries
    are 0 or 1 / (1 - rate); a dropout after the last layer would give
    1 / (1 - rate)² or more zeros, none between would give all ones."""
    rate = 0.5
    rng = np.random.default_rng(19)
    batch_size, steps, features, units = 3, 4, 2, 5
    layer = kerasrnn.SimpleRNN(
        units, num_layers=2, inter_layer_dropout=rate, activation="linear",
        return_sequences=True, seed=1,
    )
    x = float32(rng, batch_size, steps, features)
    layer.build(x.shape)
    identity_tail(layer, rng)
    first, _, _ = ref.run(
        reference_cell(
            layer.recurrent_layers[0].cell, "elman", {"activation": "linear"}
        ),
        x,
    )
    assert_close(layer(x, training=False), first)
    output = numpy64(layer(x, training=True))
    scaled = np.isclose(output, first / (1 - rate), rtol=0, atol=ATOL)
    zeroed = np.isclose(output, 0.0, rtol=0, atol=ATOL)
    assert np.all(scaled | zeroed)
    assert np.any(scaled & ~zeroed) and np.any(zeroed & ~scaled)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", CELLS)
def test_inter_layer_dropout_not_after_last_layer(kind, bidirectional):
    rng = np.random.default_rng(23)
    layer = STACKS[kind](
        3, inter_layer_dropout=0.5, bidirectional=bidirectional,
        return_sequences=True, seed=2,
    )
    x = float32(rng, 2, 4, 3)
    layer.build(x.shape)
    randomize(layer, rng)
    assert_close(layer(x, training=True), numpy64(layer(x)), atol=0,
                 reference="no dropout after the last layer")


# -------------------------------------------------------------- stateful


HALVES = "stateful halves = one call"


def check_stateful(stateful, whole, x, mask, split):
    """Two calls on the halves of ``x`` equal ``whole`` on all of it, and
    ``reset_states()`` brings the zero state back.

    Outputs are compared at real steps only: the output repeated over
    padding is not a state, so a second call restarts it from zeros.
    """
    first, *_ = stateful(x[:, :split], mask=mask[:, :split])
    second, *states = stateful(x[:, split:], mask=mask[:, split:])
    expected, *expected_states = whole(x, mask=mask)
    real = mask[..., None]
    assert_close(
        np.where(real, np.concatenate([first, second], axis=1), 0.0),
        np.where(real, expected, 0.0),
        1e-6,
        reference=HALVES,
    )
    for state, expected_state in zip(states, expected_states, strict=True):
        assert_close(state, expected_state, 1e-6, reference=HALVES)
    stateful.reset_states()
    again, *_ = stateful(x[:, :split], mask=mask[:, :split])
    assert_close(again, ops.convert_to_numpy(first), 1e-6, reference=HALVES)


@pytest.mark.parametrize("config", KIND_CONFIGS, ids=config_id)
def test_stateful_rnn(config):
    kind, arguments = config
    rng = np.random.default_rng(29)
    batch_size, steps, features, units = 3, 6, 2, 4
    options = dict(return_sequences=True, return_state=True)
    stateful = kerasrnn.RNN(
        CELLS[kind](units, **arguments), stateful=True, **options
    )
    x = float32(rng, batch_size, steps, features)
    stateful.build(x.shape)
    randomize(stateful, rng)
    whole = kerasrnn.RNN(stateful.cell, **options)
    lengths = random_lengths(rng, batch_size, steps)
    mask = ref.lengths_to_mask(lengths, steps)
    check_stateful(stateful, whole, x, mask, split=2)
    stateful.reset_states()
    for variable in stateful.states:
        assert not np.any(variable.numpy())
    expected, _, _ = ref.run(
        reference_cell(stateful.cell, kind, arguments), x, mask
    )
    assert_close(stateful(x, mask=mask)[0], expected)


@pytest.mark.parametrize("kind", CELLS)
def test_stateful_stack(kind):
    rng = np.random.default_rng(31)
    options = dict(num_layers=2, return_sequences=True, return_state=True)
    stateful = STACKS[kind](3, stateful=True, **options)
    whole = STACKS[kind](3, **options)
    x = float32(rng, 2, 5, 3)
    stateful.build(x.shape)
    whole.build(x.shape)
    randomize(stateful, rng)
    whole.set_weights(stateful.get_weights())
    mask = ref.lengths_to_mask(random_lengths(rng, 2, 5), 5)
    check_stateful(stateful, whole, x, mask, split=3)
