"""Moves whole layers' weights between kerasrnn, PyTorch, Keras and ONNX.

Each function takes a kerasrnn ``SimpleRNN``, ``LSTM`` or ``GRU`` (any
``num_layers``, uni- or bidirectional) and walks its sub-layers in PyTorch's
order: layer ``k``, forward then backward. The per-cell arithmetic (gate
permutations, transposes, biases) is ``kerasrnn.cells.layouts``.

Sub-layer ``k`` in each framework (``D`` directions):

* kerasrnn: ``layer.recurrent_layers[k]``, an ``RNN``, or a
  ``Bidirectional`` with ``.forward_layer`` and ``.backward_layer``;
* PyTorch: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
  ``bias_hh_l{k}``, and the same with ``_reverse`` for the backward layer;
* ONNX: one node per layer, ``W/R/B`` of shape ``[D, ...]``, forward at
  index 0 and backward at index 1.

A loader validates everything before it assigns anything, so a failed load
leaves the layer as it was. A layer that is not built yet is built from the
source's input size (``weight_ih_l0.shape[1]`` of a state dict, the Keras
layer's ``kernel.shape[0]``).
"""

import re

import keras
import numpy as np

from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells.registry import is_registered
from kerasrnn.layers.stacked import StackedRecurrent
from kerasrnn.cells import layouts

TORCH_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def load_torch_state_dict(layer, state_dict):
    """Loads a ``torch.nn.RNN/LSTM/GRU`` state dict into a kerasrnn layer.

    The PyTorch module and the layer must agree on ``num_layers``,
    ``bidirectional`` and ``bias``/``use_bias``; a deep bidirectional layer
    must merge with ``"concat"`` (PyTorch's only merge). A GRU must have
    ``reset_after=True``. Activations are not part of a state dict: an
    ``nn.RNN(nonlinearity="relu")`` needs ``SimpleRNN(activation="relu")``.
    An unbuilt layer is built for ``weight_ih_l0.shape[1]`` input features.

    Args:
        layer: a kerasrnn ``SimpleRNN``, ``LSTM`` or ``GRU``.
        state_dict: mapping from PyTorch names (``weight_ih_l{k}``,
            ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, with
            ``_reverse`` for the backward direction) to NumPy arrays, e.g.
            ``{k: v.numpy() for k, v in module.state_dict().items()}``.

    Raises:
        ValueError: listing missing keys, unexpected keys or wrong shapes.
    """
    cell_type = _check_torch_layer(layer)
    arrays = {key: np.asarray(value) for key, value in state_dict.items()}
    expected = _torch_keys(layer)
    missing = [key for key in expected if key not in arrays]
    unexpected = sorted(key for key in arrays if key not in expected)
    if missing or unexpected:
        raise ValueError(_key_report(layer, arrays, missing, unexpected))
    if layer.built:
        features = _cells(layer)[0][1].kernel.shape[0]
    else:
        first = arrays["weight_ih_l0"]
        features = first.shape[1] if first.ndim == 2 else "input_size"
    wrong = [
        f"{key}: expected {_format(shape)}, received {arrays[key].shape}"
        for key, shape in _torch_shapes(layer, features).items()
        if arrays[key].shape != shape
    ]
    if wrong:
        raise ValueError(
            f"Cannot load the state dict into layer '{layer.name}': wrong "
            "shapes (PyTorch layout, (G*H, input) and (G*H,)):\n  "
            + "\n  ".join(wrong)
        )
    if not layer.built:
        layer.build((None, None, features))
    assignments = []
    for suffix, cell in _cells(layer):
        names = [name + suffix for name in TORCH_PARAMETERS]
        weights = layouts.torch_to_keras(
            cell_type,
            *(arrays.get(name) for name in names),
            reset_after=getattr(cell, "reset_after", True),
        )
        assignments += _pairs(cell, weights)
    _assign(assignments)


def to_torch_state_dict(layer):
    """The PyTorch state dict of a built kerasrnn layer.

    Keys and order follow ``torch.nn.RNN/LSTM/GRU.state_dict()``; values
    are NumPy arrays (``torch.from_numpy`` each before ``load_state_dict``).
    The LSTM/SimpleRNN ``bias_hh`` is zero (Keras keeps a single bias).
    """
    cell_type = _check_torch_layer(layer)
    _check_built(layer)
    state_dict = {}
    for suffix, cell in _cells(layer):
        weights = layouts.keras_to_torch(
            cell_type,
            *_cell_weights(cell),
            reset_after=getattr(cell, "reset_after", True),
        )
        for name, value in weights.items():
            state_dict[name + suffix] = value
    return state_dict


def load_keras_weights(layer, keras_layer):
    """Copies a built Keras recurrent layer's weights into a kerasrnn layer.

    Keras and kerasrnn share names, shapes and gate orders, so the weights
    copy unchanged. ``keras.layers.SimpleRNN/LSTM/GRU`` goes into a
    one-layer unidirectional kerasrnn layer of the same type;
    ``keras.layers.Bidirectional`` of one into a one-layer bidirectional
    one (forward into ``forward_layer``, backward into ``backward_layer``).
    Both must agree on ``units``, ``use_bias``, the activations and, for a
    GRU, ``reset_after``. An unbuilt layer is built for the Keras layer's
    input size.

    Raises:
        TypeError: for a layer of the wrong type.
        ValueError: for a mismatch in structure, configuration or shapes.
    """
    cell_type = _cell_type(layer)
    if isinstance(keras_layer, keras.layers.Bidirectional):
        sources = [keras_layer.forward_layer, keras_layer.backward_layer]
    else:
        sources = [keras_layer]
    keras_name = cell_spec(cell_type).keras_layer
    if keras_name is None:
        raise TypeError(
            f"Layer '{layer.name}' runs the {cell_type} cell, which Keras "
            "has no built-in layer for."
        )
    expected_type = getattr(keras.layers, keras_name)
    for source in sources:
        if not isinstance(source, expected_type):
            raise TypeError(
                f"Layer '{layer.name}' is a kerasrnn {type(layer).__name__}; "
                f"it loads keras.layers.{expected_type.__name__} (or a "
                "Bidirectional of one). Received: "
                f"{type(source).__name__} '{source.name}'"
            )
    bidirectional = len(sources) == 2
    if layer.num_layers != 1 or layer.bidirectional != bidirectional:
        raise ValueError(
            f"Layer '{layer.name}' has num_layers={layer.num_layers}, "
            f"bidirectional={layer.bidirectional}; the Keras layer "
            f"'{keras_layer.name}' needs num_layers=1, "
            f"bidirectional={bidirectional}."
        )
    if not all(source.built for source in sources):
        raise ValueError(
            f"The Keras layer '{keras_layer.name}' has no weights yet: build "
            "it or call it on data first."
        )
    cells = [cell for _, cell in _cells(layer)]
    differences = []
    for cell, source in zip(cells, sources):
        differences += _config_differences(cell, source.cell)
        if layer.built:
            differences += _shape_differences(cell, source)
    if differences:
        raise ValueError(
            f"Cannot load Keras layer '{keras_layer.name}' into layer "
            f"'{layer.name}':\n  " + "\n  ".join(differences)
        )
    if not layer.built:
        layer.build((None, None, sources[0].cell.kernel.shape[0]))
    assignments = []
    for cell, source in zip(cells, sources):
        names = ("kernel", "recurrent_kernel", "bias")
        assignments += _pairs(
            cell, dict(zip(names, _cell_weights(source.cell)))
        )
    _assign(assignments)


def to_onnx_weights(layer):
    """The ONNX ``RNN``/``LSTM``/``GRU`` inputs of each layer of a stack.

    Returns:
        a list with one ``(W, R, B)`` per layer ``k``: ``W [D, G*H, F_k]``,
        ``R [D, G*H, H]``, ``B [D, 2*G*H]``, directions stacked forward
        first (``D = 2`` for a bidirectional layer). A node for layer ``k``
        uses ``direction="bidirectional"`` when ``D = 2``, ``"reverse"`` for
        a ``go_backwards`` layer, else ``"forward"``; a GRU node needs
        ``linear_before_reset = int(reset_after)``.
    """
    _cell_type(layer)
    _check_built(layer)
    per_layer = [[] for _ in range(layer.num_layers)]
    for index, (_, cell) in enumerate(_cells(layer)):
        per_layer[index // layer.num_directions].append(
            onnx_cell_weights(cell)
        )
    return [
        tuple(np.stack(arrays) for arrays in zip(*directions))
        for directions in per_layer
    ]


def onnx_cell_weights(cell):
    """One cell's ONNX ``(W, R, B)`` (``(W, R, B, P)`` with peepholes)."""
    spec = cell_spec(cell)
    extra = {}
    if spec.recurrent_bias is not None:
        extra["reset_after"] = getattr(cell, spec.recurrent_bias)
    if spec.peepholes:
        extra["peephole_kernel"] = keras.ops.convert_to_numpy(
            cell.peephole_kernel
        )
    return layouts.keras_to_onnx(spec.name, *_cell_weights(cell), **extra)


def _cell_type(layer):
    if not isinstance(layer, StackedRecurrent) or not is_registered(
        layer.cell_class
    ):
        raise TypeError(
            "Expected a kerasrnn SimpleRNN, LSTM or GRU layer (a "
            f"StackedRecurrent of a registered cell). Received: {layer!r}"
        )
    return cell_spec(layer.cell_class).name


def _check_torch_layer(layer):
    cell_type = _cell_type(layer)
    layouts.check_torch_compatible(
        cell_type, layer.cell_config.get("reset_after", True)
    )
    if layer.bidirectional and layer.num_layers > 1 and (
        layer.merge_mode != "concat"
    ):
        raise ValueError(
            "PyTorch feeds each bidirectional layer the concatenation of "
            f"both directions; layer '{layer.name}' merges them with "
            f"merge_mode={layer.merge_mode!r}. Use merge_mode='concat'."
        )
    return cell_type


def _check_built(layer):
    if not layer.built:
        raise ValueError(
            f"Layer '{layer.name}' has no weights yet: build it or call it "
            "on data first."
        )


def _cells(layer):
    """``(torch_suffix, cell)`` per sub-layer, layer-major, forward first."""
    cells = []
    for index, sublayer in enumerate(layer.recurrent_layers):
        if layer.bidirectional:
            cells.append((f"_l{index}", sublayer.forward_layer.cell))
            cells.append((f"_l{index}_reverse", sublayer.backward_layer.cell))
        else:
            cells.append((f"_l{index}", sublayer.cell))
    return cells


def _cell_weights(cell):
    """``(kernel, recurrent_kernel, bias or None)`` as NumPy arrays."""
    return tuple(
        None if variable is None else keras.ops.convert_to_numpy(variable)
        for variable in (cell.kernel, cell.recurrent_kernel, cell.bias)
    )


def _torch_keys(layer):
    names = TORCH_PARAMETERS if layer.cell_config.get("use_bias", True) else (
        TORCH_PARAMETERS[:2]
    )
    return [name + suffix for suffix, _ in _cells(layer) for name in names]


def _torch_shapes(layer, features):
    """The PyTorch shape of every state-dict entry, for ``features`` inputs
    to the first layer."""
    shapes = {}
    width = layouts.gate_count(_cell_type(layer)) * layer.units
    for suffix, cell in _cells(layer):
        inputs = features if suffix.startswith("_l0") else layer.output_size
        shapes["weight_ih" + suffix] = (width, inputs)
        shapes["weight_hh" + suffix] = (width, layer.units)
        if cell.use_bias:
            shapes["bias_ih" + suffix] = (width,)
            shapes["bias_hh" + suffix] = (width,)
    return shapes


def _format(shape):
    return "(" + ", ".join(str(size) for size in shape) + (
        ",)" if len(shape) == 1 else ")"
    )


def _key_report(layer, arrays, missing, unexpected):
    """Explains a key mismatch, with the likely configuration difference."""
    lines = [
        f"Cannot load the state dict into layer '{layer.name}' "
        f"({type(layer).__name__}, num_layers={layer.num_layers}, "
        f"bidirectional={layer.bidirectional}, "
        f"use_bias={layer.cell_config.get('use_bias', True)})."
    ]
    if missing:
        lines.append(f"Missing keys: {missing}")
    if unexpected:
        lines.append(f"Unexpected keys: {unexpected}")
    indices = {
        int(match.group(1))
        for match in map(re.compile(r"weight_ih_l(\d+)").match, arrays)
        if match
    }
    if indices and max(indices) + 1 != layer.num_layers:
        lines.append(
            f"The state dict holds {max(indices) + 1} layer(s); the layer "
            f"has num_layers={layer.num_layers}."
        )
    reverse = any(key.endswith("_reverse") for key in arrays)
    if arrays and reverse != layer.bidirectional:
        lines.append(
            f"The state dict is {'' if reverse else 'not '}bidirectional; "
            f"the layer has bidirectional={layer.bidirectional}."
        )
    if any(key.startswith("weight_hr") for key in arrays):
        lines.append("LSTM projections (proj_size > 0) are not supported.")
    return "\n".join(lines)


def _config_differences(cell, keras_cell):
    differences = []
    names = ["units", "use_bias", "activation"]
    if hasattr(keras_cell, "recurrent_activation"):
        names.append("recurrent_activation")
    if hasattr(keras_cell, "reset_after"):
        names.append("reset_after")
    for name in names:
        ours, theirs = getattr(cell, name), getattr(keras_cell, name)
        if callable(ours):
            ours = keras.activations.serialize(ours)
            theirs = keras.activations.serialize(theirs)
        if ours != theirs:
            differences.append(
                f"{name}: {theirs!r} in Keras, {ours!r} here"
            )
    return differences


def _shape_differences(cell, keras_layer):
    names = ("kernel", "recurrent_kernel", "bias")
    return [
        f"{keras_layer.name} {name} shape: {theirs.shape} in Keras, "
        f"{ours.shape} here"
        for name, ours, theirs in zip(
            names, _cell_weights(cell), _cell_weights(keras_layer.cell)
        )
        if ours is not None and theirs is not None
        and ours.shape != theirs.shape
    ]


def _pairs(cell, weights):
    """``(variable, value)`` for each of the cell's weights."""
    pairs = [
        (cell.kernel, weights["kernel"]),
        (cell.recurrent_kernel, weights["recurrent_kernel"]),
    ]
    if cell.bias is not None:
        pairs.append((cell.bias, weights["bias"]))
    return pairs


def _assign(pairs):
    for variable, value in pairs:
        variable.assign(np.asarray(value, dtype=variable.dtype))
