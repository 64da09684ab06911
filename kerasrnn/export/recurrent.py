"""kerasrnn recurrent layers as native ONNX ``RNN`` / ``LSTM`` / ``GRU`` nodes.

One node per layer-direction group: a ``RNN`` layer is one ``forward`` or
``reverse`` node, a ``Bidirectional`` one ``bidirectional`` node, a stack of
``num_layers`` layers ``num_layers`` nodes; ``cell_step`` writes one step
of a bare cell (a decoder's) as a node over a sequence of length 1.
Which node runs a cell, and how its weights are laid out, comes from the
cell registry (``kerasrnn.cells.registry``); weights go through
``kerasrnn.cells.layouts.keras_to_onnx`` (the one place where gates are
permuted). Inside a stack the sequence stays
time-major (``[T, B, F]``, the only layout onnxruntime accepts), with one
transpose in and one out.

How Keras' results map onto a node's outputs ``Y [T, D, B, H]``,
``Y_h [D, B, H]`` (and ``Y_c``), ``d`` the direction of a sub-layer:

* final states: ``Y_h[d]``; with a mask and given initial states, a row of
  length 0 keeps its initial state (onnxruntime returns zeros there);
* last output (``return_sequences=False``): ``Y_h[d]`` (zeros for a row of
  length 0, as Keras);
* output sequence: ``Y[:, d]``, time-flipped for a ``go_backwards`` layer
  (Keras returns it in processing order). At padded steps ONNX writes zeros;
  a forward layer with ``zero_output_for_mask=False`` repeats its last real
  output there in Keras, so the converter writes
  ``Where(mask, Y[:, d], Y_h[d])``: every step equals Keras, padding
  included.
"""

import keras
import numpy as np
from onnx import TensorProto

from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells.registry import is_registered
from kerasrnn.export.graph import Mask
from kerasrnn.export.graph import Value
from kerasrnn.layers.bidirectional import Bidirectional
from kerasrnn.layers.rnn import RNN
from kerasrnn.layers.stacked import StackedRecurrent
from kerasrnn.weights.transfer import onnx_cell_weights

INT64 = TensorProto.INT64
# Keras activation -> ONNX recurrent activation, alpha, beta (None: the
# function takes none).
ACTIVATIONS = {
    "tanh": ("Tanh", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None),
    # Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1).
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
    "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
}


class Direction:
    """One sub-layer's results: names of ``[B, H]`` tensors and of its
    output sequence, time-major, in the node's (input) time order."""

    def __init__(self, layer, index, last, states, sequence, carried):
        self.layer = layer
        self.index = index
        self.last = last
        self.states = states
        self.sequence = sequence
        # True when padding repeats the last output (not Y's zeros).
        self.carried = carried


def convert_rnn(graph, layer, args, kwargs):
    """A kerasrnn ``RNN``: one ``forward`` or ``reverse`` node."""
    x, mask, initial = _call_arguments(graph, layer, args, kwargs)
    states = None if initial is None else [list(initial)]
    _, (direction,) = _emit(
        graph, [layer], graph.time_major(x, layer.name), mask, states,
        layer.name, layer.return_sequences,
    )
    if layer.return_sequences:
        output = _sequence_output(
            graph, _keras_order(graph, direction, False), x, layer
        )
    else:
        output = _last_output(direction.last, x, layer)
    outputs = [output]
    if layer.return_state:
        outputs += [_state_value(name, x, layer.units) for name in
                    direction.states]
    return outputs


def convert_bidirectional(graph, layer, args, kwargs):
    """A kerasrnn ``Bidirectional``: one ``bidirectional`` node."""
    x, mask, initial = _call_arguments(graph, layer, args, kwargs)
    (forward, torch_states), (backward, _) = (
        _unwrap(layer.forward_layer), _unwrap(layer.backward_layer)
    )
    states = None
    if initial is not None:
        if torch_states:
            initial = [graph.squeeze(s, [0], layer.name) for s in initial]
        count = len(forward.state_size)
        states = [initial[:count], initial[count:]]
    node, directions = _emit(
        graph, [forward, backward], graph.time_major(x, layer.name), mask,
        states, layer.name, layer.return_sequences,
    )
    if layer.return_sequences:
        merged = _merge_sequences(graph, node, directions, layer.merge_mode,
                                  layer.name)
        outputs = [
            _sequence_output(graph, name, x, layer)
            for name in merged
        ]
    else:
        merged = _merge(
            graph, layer.merge_mode, [d.last for d in directions], layer.name
        )
        outputs = [_last_output(name, x, layer) for name in merged]
    if layer.return_state:
        for direction in directions:
            for name in direction.states:
                if torch_states:
                    outputs.append(Value(
                        graph.unsqueeze(name, [0], layer.name),
                        (1, x.shape[0], forward.units), "float32",
                    ))
                else:
                    outputs.append(_state_value(name, x, forward.units))
    return outputs


def convert_stacked(graph, layer, args, kwargs):
    """A kerasrnn ``SimpleRNN``/``LSTM``/``GRU``: one node per layer."""
    x, mask, initial = _call_arguments(graph, layer, args, kwargs)
    per_layer = _split_initial_state(graph, layer, initial)
    inputs = graph.time_major(x, layer.name)
    final_states = []
    for index, sublayer in enumerate(layer.recurrent_layers):
        hint = f"{layer.name}/{sublayer.name}"
        if isinstance(sublayer, Bidirectional):
            layers = [sublayer.forward_layer, sublayer.backward_layer]
        else:
            layers = [sublayer]
        node, directions = _emit(
            graph, layers, inputs, mask, per_layer[index], hint,
            sublayer.return_sequences,
        )
        for direction in directions:
            final_states += direction.states
        if not sublayer.return_sequences:
            (output,) = _merge(
                graph, layer.merge_mode, [d.last for d in directions], hint
            )
        elif isinstance(sublayer, Bidirectional):
            (output,) = _merge_sequences(
                graph, node, directions, layer.merge_mode, hint
            )
        else:
            output = _keras_order(graph, directions[0], False)
        if layer.residual and index > 0:
            output = graph.op("Add", [output, inputs], f"{hint}/residual")
        inputs = output
    if layer.return_sequences:
        output = _sequence_output(graph, inputs, x, layer)
    elif layer.residual and layer.num_layers > 1:
        output = _last_output(
            _last_valid_step_tm(graph, inputs, mask, layer.name), x, layer
        )
    else:
        output = _last_output(inputs, x, layer)
    outputs = [output]
    if layer.return_state:
        if layer.state_layout == "pytorch":
            size = len(layer.state_size)
            final_states = [
                graph.op(
                    "Concat",
                    [graph.unsqueeze(s, [0], layer.name)
                     for s in final_states[kind::size]],
                    f"{layer.name}/state_{kind}",
                    axis=0,
                )
                for kind in range(size)
            ]
            count = layer.num_layers * layer.num_directions
            outputs += [
                Value(s, (count, x.shape[0], layer.units), "float32")
                for s in final_states
            ]
        else:
            outputs += [_state_value(s, x, layer.units)
                        for s in final_states]
    return outputs


def last_valid_step(graph, sequences, mask, hint):
    """``kerasrnn.layers.pooling.last_valid_step`` on a ``(B, T, F)`` name."""
    if mask is None:
        return graph.op(
            "Gather", [sequences, graph.scalar(-1, "int64")], f"{hint}/last",
            axis=1,
        )
    lengths = graph.lengths(mask, hint)
    index = graph.op(
        "Max",
        [graph.op("Sub", [lengths, graph.scalar(1, "int32")], f"{hint}/t"),
         graph.scalar(0, "int32")],
        f"{hint}/t_clipped",
    )
    index = graph.op("Cast", [index], f"{hint}/t64", to=INT64)
    features = graph.op("Shape", [sequences], f"{hint}/shape")
    features = graph.op(
        "Slice", [features, graph.ints(2), graph.ints(3)], f"{hint}/features"
    )
    index = graph.op(
        "Expand",
        [graph.unsqueeze(index, [1, 2], hint),
         graph.op("Concat", [graph.op("Shape", [index], f"{hint}/b"),
                             graph.ints(1), features], f"{hint}/to",
                  axis=0)],
        f"{hint}/index",
    )
    picked = graph.squeeze(
        graph.op("GatherElements", [sequences, index], f"{hint}/pick",
                 axis=1),
        [1], hint,
    )
    return _zero_empty_rows(graph, picked, lengths, hint)


def _zero_empty_rows(graph, rows, lengths, hint):
    """``rows [B, F]`` with the rows of length 0 set to zero."""
    empty = graph.op(
        "Equal", [lengths, graph.scalar(0, "int32")], f"{hint}/empty"
    )
    return graph.op(
        "Where",
        [graph.unsqueeze(empty, [1], hint), graph.scalar(0.0, "float32"),
         rows],
        f"{hint}/valid",
    )


def _last_valid_step_tm(graph, sequences_tm, mask, hint):
    if mask is None:
        return graph.op(
            "Gather", [sequences_tm, graph.scalar(-1, "int64")],
            f"{hint}/last",
        )
    return last_valid_step(
        graph, graph.transpose(sequences_tm, (1, 0, 2), f"{hint}/bm"),
        mask, hint,
    )


def _call_arguments(graph, layer, args, kwargs):
    """``(sequences, mask, initial_state names or None)`` of a call.

    ``mask`` is the one the layer receives; ``sequences.mask`` stays what
    Keras attaches to the outputs (the input's mask), even when the layer
    runs unmasked (Keras passes no mask along with an ``initial_state``).
    """
    _check_layer(layer)
    x = args[0] if args else kwargs.get("sequences")
    if len(args) > 1:
        kwargs = dict(kwargs, initial_state=args[1])
    if len(x.shape) != 3:
        raise ValueError(
            f"Layer '{layer.name}' expects a (batch, time, features) input. "
            f"Received: shape={x.shape}"
        )
    mask = kwargs.get("mask")
    if isinstance(mask, Value):
        mask = graph.mask_of(mask, f"the `mask` passed to '{layer.name}'")
        x = Value(x.name, x.shape, x.dtype, mask=mask,
                  time_major=x.time_major)
    elif mask is not None and not isinstance(mask, Mask):
        raise TypeError(
            f"Layer '{layer.name}' is called with a constant `mask`; export "
            "supports masks computed in the model (Embedding(mask_zero=True), "
            "Masking) or passed as a model input."
        )
    initial = kwargs.get("initial_state")
    if initial is not None:
        initial = keras.tree.flatten(initial)
        if not all(isinstance(state, Value) for state in initial):
            raise ValueError(
                f"Layer '{layer.name}' gets a constant `initial_state`; "
                "export supports initial states that are model inputs or "
                "computed from them."
            )
        initial = [state.name for state in initial]
    return x, mask, initial


def _check_layer(layer):
    """Stateful layers and unknown cells are refused, with the reason."""
    for rnn in _rnn_layers(layer):
        if rnn.stateful:
            raise ValueError(
                f"Layer '{layer.name}' is stateful. An exported model is "
                "stateless: rebuild the layer with stateful=False and pass "
                "the states as model inputs (initial_state) and outputs "
                "(return_state=True)."
            )
        check_cell(rnn.cell, layer.name)


def check_cell(cell, name):
    """Refuses a cell the native operators cannot run (unknown class, not
    float32, an activation with no ONNX counterpart); ``name`` is the
    layer it belongs to, for the message."""
    if not is_registered(cell) or cell_spec(cell).onnx_operator is None:
        raise TypeError(
            f"Layer '{name}' runs a {type(cell).__name__}; ONNX "
            "export supports the registered kerasrnn cells that a native "
            "ONNX RNN/LSTM/GRU node runs (exactly these classes: a "
            "subclass may compute other equations)."
        )
    if cell.compute_dtype != "float32" or cell.variable_dtype != (
        "float32"
    ):
        raise ValueError(
            f"Layer '{name}' computes in {cell.compute_dtype} "
            f"with {cell.variable_dtype} weights; ONNX export supports "
            "float32 models (set the dtype policy to 'float32')."
        )
    _cell_activations(name, cell)


def _rnn_layers(layer):
    if isinstance(layer, RNN):
        return [layer]
    if isinstance(layer, Bidirectional):
        return _rnn_layers(layer.forward_layer) + _rnn_layers(
            layer.backward_layer
        )
    return [
        rnn for sublayer in layer.recurrent_layers
        for rnn in _rnn_layers(sublayer)
    ]


def _unwrap(layer):
    """The ``RNN`` inside a Bidirectional's direction, and whether its
    states are in PyTorch's layout (a one-layer stack, ``(1, B, H)``)."""
    if isinstance(layer, StackedRecurrent):
        return layer.recurrent_layers[0], layer.state_layout == "pytorch"
    return layer, False


def _activation(layer_name, cell, name):
    function = getattr(cell, name)
    key = keras.activations.serialize(function)
    if not isinstance(key, str) or key not in ACTIVATIONS:
        raise ValueError(
            f"Layer '{layer_name}': {name}={key!r} has no ONNX recurrent "
            f"activation. Supported: {sorted(ACTIVATIONS)}."
        )
    return ACTIVATIONS[key]


def _cell_activations(layer_name, cell):
    """The node's ``activations`` for one direction, in ONNX order:
    RNN f; GRU f (gates), g; LSTM f (gates), g (candidate), h (output)."""
    gate = (
        [_activation(layer_name, cell, "recurrent_activation")]
        if hasattr(cell, "recurrent_activation") else []
    )
    candidate = _activation(layer_name, cell, "activation")
    if cell_spec(cell).onnx_operator == "LSTM":
        return gate + [candidate, candidate]
    return gate + [candidate]


def _emit(graph, layers, x_tm, mask, initial, hint, need_sequences):
    """Writes the node for ``layers`` (one RNN, or a Bidirectional's
    forward and backward RNN) on ``x_tm [T, B, F]``.

    ``initial`` is None or, per layer, its list of ``[B, H]`` states.
    Returns the node's ``Y`` name and one ``Direction`` per layer, in the
    order of ``layers``.
    """
    cells = [layer.cell for layer in layers]
    activations = [_cell_activations(hint, cell) for cell in cells]
    signature = [
        (type(cell), cell.units, acts, getattr(cell, "reset_after", None))
        for cell, acts in zip(cells, activations)
    ]
    if len(set(map(repr, signature))) != 1:
        raise ValueError(
            f"Layer '{hint}': the forward and backward layers differ in "
            "cell type, units, activations or reset_after; one ONNX "
            "bidirectional node needs them equal."
        )
    if len(layers) == 2:
        if layers[0].go_backwards == layers[1].go_backwards:
            raise ValueError(
                f"Layer '{hint}': both directions have go_backwards="
                f"{layers[0].go_backwards}."
            )
        # ONNX holds the forward-processing direction first.
        order = [0, 1] if layers[1].go_backwards else [1, 0]
        direction = "bidirectional"
    else:
        order = [0]
        direction = "reverse" if layers[0].go_backwards else "forward"
    lengths = "" if mask is None else graph.lengths(mask, hint)
    stacked_initial = None
    if initial is not None:
        stacked_initial = [[initial[i][kind] for i in order]
                           for kind in range(len(cells[0].state_size))]
    results = _node(
        graph, [cells[i] for i in order], [activations[i] for i in order],
        direction, x_tm, lengths, stacked_initial, hint, need_sequences,
    )
    y, final = results[0], results[1:]
    directions = [None] * len(layers)
    for d, i in enumerate(order):
        states = [_direction(graph, s, d, len(order), hint) for s in final]
        last = states[0]
        if mask is not None and initial is not None:
            # onnxruntime zeroes Y_h at length 0; Keras keeps the state.
            empty = graph.unsqueeze(
                graph.op("Equal", [graph.lengths(mask, hint),
                                   graph.scalar(0, "int32")],
                         f"{hint}/empty"),
                [1], hint,
            )
            states = [
                graph.op("Where", [empty, initial[i][k], s],
                         f"{hint}/state_{k}")
                for k, s in enumerate(states)
            ]
        sequence, layer = None, layers[i]
        carried = mask is not None and not layer.go_backwards and not (
            layer.zero_output_for_mask
        )
        if need_sequences:
            sequence = graph.op(
                "Gather", [y, graph.scalar(d, "int64")], f"{hint}/Y_{d}",
                axis=1,
            )
            if carried:
                # Keras repeats the last real output over the padding.
                sequence = graph.op(
                    "Where",
                    [graph.mask_time_major(mask, hint), sequence, last],
                    f"{hint}/carry_{d}",
                )
        directions[i] = Direction(layer, d, last, states, sequence, carried)
    return y, directions


def _node(graph, cells, activations, direction, x_tm, lengths, initial,
          hint, need_sequences):
    """One native node over ``x_tm [T, B, F]`` for ``cells`` (one per
    direction, in ONNX's order); ``initial`` is None or, per state kind,
    the ``[B, H]`` names per direction. Returns the node's outputs
    ``[Y or "", Y_h(, Y_c)]``."""
    spec = cell_spec(cells[0])
    W, R, B, *P = (
        np.stack(arrays).astype("float32")
        for arrays in zip(*(onnx_cell_weights(cell) for cell in cells))
    )
    inputs = [
        x_tm,
        graph.constant(W, f"{hint}/W"),
        graph.constant(R, f"{hint}/R"),
        graph.constant(B, f"{hint}/B"),
        lengths,
    ]
    initial = initial or []
    for kind, names in enumerate(initial):
        stacked = [graph.unsqueeze(name, [0], hint) for name in names]
        inputs.append(
            stacked[0] if len(stacked) == 1 else graph.op(
                "Concat", stacked, f"{hint}/initial_{kind}", axis=0
            )
        )
    attributes = {"hidden_size": cells[0].units, "direction": direction}
    flat = [a for acts in activations for a in acts]
    attributes["activations"] = [name for name, _, _ in flat]
    # onnxruntime hands alphas (betas) out in order, only to the functions
    # that take one: list exactly those.
    alphas = [alpha for _, alpha, _ in flat if alpha is not None]
    betas = [beta for _, _, beta in flat if beta is not None]
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    if spec.recurrent_bias is not None:
        # Always explicit: onnxruntime's CUDA provider checks the attribute.
        attributes["linear_before_reset"] = int(
            getattr(cells[0], spec.recurrent_bias)
        )
    if P:
        # LSTM inputs: X W R B sequence_lens initial_h initial_c P.
        inputs += [""] * (7 - len(inputs))
        inputs.append(graph.constant(P[0], f"{hint}/P"))
    op = spec.onnx_operator
    outputs = ["Y" if need_sequences else "", "Y_h"]
    if op == "LSTM":
        outputs.append("Y_c")
    results = graph.op(op, inputs, hint, outputs=outputs, **attributes)
    graph.recurrent_nodes.append(
        {"node": graph.nodes[-1].name, "layer": hint, "op": op,
         "direction": direction, "hidden_size": cells[0].units}
    )
    return results


def cell_step(graph, cell, x, states, hint):
    """One step of a kerasrnn cell as a native node on a sequence of
    length 1: ``x [B, F]`` and the cell's ``[B, H]`` states -> the new
    states (``h`` first; the cell's output is ``h``)."""
    check_cell(cell, hint)
    x_tm = graph.unsqueeze(x, [0], f"{hint}/x")
    results = _node(
        graph, [cell], [_cell_activations(hint, cell)], "forward", x_tm, "",
        [[name] for name in states], hint, False,
    )
    return [graph.squeeze(name, [0], hint) for name in results[1:]]


def _direction(graph, name, d, count, hint):
    """Direction ``d`` of a ``[D, B, H]`` node output, as ``[B, H]``."""
    if count == 1:
        return graph.squeeze(name, [0], hint)
    return graph.op(
        "Gather", [name, graph.scalar(d, "int64")], f"{hint}/dir{d}", axis=0
    )


def _keras_order(graph, direction, flip_again):
    """A direction's sequence in the time order Keras gives it
    (``flip_again``: a Bidirectional flips its backward output)."""
    if direction.layer.go_backwards != flip_again:
        return graph.flip(direction.sequence, 0, f"{direction.layer.name}")
    return direction.sequence


def _merge_sequences(graph, y, directions, merge_mode, hint):
    """A Bidirectional's merged output sequence(s), time-major."""
    forward, backward = directions
    # Forward first and neither flipped nor carried: Y as it is.
    plain = forward.index == 0 and not forward.layer.go_backwards and not (
        forward.carried or backward.carried
    )
    if plain and merge_mode == "concat":
        # [T, 2, B, H] -> [T, B, 2, H] -> [T, B, 2H]: [forward | backward].
        return [graph.op(
            "Reshape",
            [graph.transpose(y, (0, 2, 1, 3), f"{hint}/merge"),
             graph.ints(0, 0, -1)],
            f"{hint}/concat",
        )]
    if plain and merge_mode == "sum":
        return [graph.op(
            "ReduceSum", [y, graph.ints(1)], f"{hint}/sum", keepdims=0
        )]
    return _merge(
        graph, merge_mode,
        [_keras_order(graph, forward, False),
         _keras_order(graph, backward, True)],
        hint,
    )


def _merge(graph, merge_mode, pair, hint):
    """``kerasrnn.layers.bidirectional.merge`` on two names (a list of
    one merged name, or of both for ``merge_mode=None``)."""
    if len(pair) == 1:
        return pair
    first, second = pair
    if merge_mode is None:
        return [first, second]
    if merge_mode == "concat":
        return [graph.op("Concat", pair, f"{hint}/concat", axis=-1)]
    if merge_mode == "sum":
        return [graph.op("Add", pair, f"{hint}/sum")]
    if merge_mode == "mul":
        return [graph.op("Mul", pair, f"{hint}/mul")]
    total = graph.op("Add", pair, f"{hint}/sum")
    return [graph.op("Div", [total, graph.scalar(2.0, "float32")],
                     f"{hint}/ave")]


def _sequence_output(graph, name_tm, x, layer):
    """A time-major sequence as the layer's batch-major output Value, with
    the mask Keras attaches (the input's)."""
    return Value(
        graph.transpose(name_tm, (1, 0, 2), f"{layer.name}/output"),
        (x.shape[0], x.shape[1], None), "float32",
        mask=x.mask, time_major=name_tm,
    )


def _last_output(name, x, layer):
    return Value(name, (x.shape[0], None), "float32")


def _state_value(name, x, units):
    return Value(name, (x.shape[0], units), "float32")


def _split_initial_state(graph, layer, initial):
    """Per layer of a stack: None or per direction its ``[B, H]`` states."""
    if initial is None:
        return [None] * layer.num_layers
    size = len(layer.state_size)
    directions = layer.num_directions
    if layer.state_layout == "pytorch":
        rows = [
            graph.op("Gather", [state, graph.scalar(row, "int64")],
                     f"{layer.name}/initial_{kind}_{row}", axis=0)
            for row in range(layer.num_layers * directions)
            for kind, state in enumerate(initial)
        ]
    else:
        rows = list(initial)
    expected = layer.num_layers * directions * size
    if len(rows) != expected:
        raise ValueError(
            f"Layer '{layer.name}' expects {expected} initial states. "
            f"Received {len(rows)}."
        )
    return [
        [rows[(k * directions + j) * size:(k * directions + j + 1) * size]
         for j in range(directions)]
        for k in range(layer.num_layers)
    ]
