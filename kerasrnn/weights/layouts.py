"""Weight layouts of Keras, PyTorch and ONNX recurrent cells (pure NumPy).

This module is the one place where gate permutations, transposes and bias
splits happen. For a cell with G gate blocks (SimpleRNN 1, LSTM 4, GRU 3),
F input features and H units:

==========  =========================  ====================  ==============
            Keras                      PyTorch               ONNX, one dir.
==========  =========================  ====================  ==============
input       ``kernel (F, G*H)``        ``weight_ih``         ``W [G*H, F]``
                                       ``(G*H, F)``
recurrent   ``recurrent_kernel``       ``weight_hh``         ``R [G*H, H]``
            ``(H, G*H)``               ``(G*H, H)``
bias        ``bias (G*H,)``; GRU with  ``bias_ih (G*H,)``,   ``B [2*G*H]``
            reset_after ``(2, 3H)``    ``bias_hh (G*H,)``    = [Wb, Rb]
            = [input; recurrent]
LSTM gates  i, f, c, o                 i, f, g, o (same)     i, o, f, c
GRU gates   z, r, h                    r, z, n               z, r, h
==========  =========================  ====================  ==============

Keras computes ``x @ kernel``; PyTorch and ONNX compute ``W @ x``, hence the
transposes. Keras keeps one bias wherever the equations allow it: going out
it becomes the input-side bias next to a zero recurrent-side bias, coming in
the two biases are summed. The GRU with ``reset_after=True`` is the
exception: its recurrent ``h`` bias sits inside ``r ⊙ (h U_h + b'_h)``, so
its two bias rows map one to one onto PyTorch's two biases and ONNX's
``linear_before_reset=1`` ``[Wb, Rb]``. A GRU with ``reset_after=False`` is
ONNX ``linear_before_reset=0`` and has no PyTorch form.

Arrays keep their dtype. Every shape is checked, and a wrong one raises a
``ValueError`` naming the array, the shape received and the one expected.
"""

import numpy as np

CELL_TYPES = ("simple_rnn", "lstm", "gru")

# The gate blocks along the G*H axis, in each framework's names and order.
KERAS_GATE_ORDERS = {
    "simple_rnn": ("h",),
    "lstm": ("i", "f", "c", "o"),
    "gru": ("z", "r", "h"),
}
TORCH_GATE_ORDERS = {
    "simple_rnn": ("h",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
}
ONNX_GATE_ORDERS = {
    "simple_rnn": ("h",),
    "lstm": ("i", "o", "f", "c"),
    "gru": ("z", "r", "h"),
}

# Block j of the target layout is block PERMUTATION[j] of the Keras layout.
KERAS_TO_TORCH = {
    "simple_rnn": (0,),
    # i,f,c,o -> i,f,g,o: the same order (PyTorch calls the candidate g).
    "lstm": (0, 1, 2, 3),
    # z,r,h -> r,z,n: the first two blocks swap (PyTorch's n is Keras' h).
    "gru": (1, 0, 2),
}
KERAS_TO_ONNX = {
    "simple_rnn": (0,),
    # i,f,c,o -> i,o,f,c.
    "lstm": (0, 3, 1, 2),
    # z,r,h -> z,r,h: the same order.
    "gru": (0, 1, 2),
}


def gate_count(cell_type):
    """G, the number of gate blocks of ``cell_type``."""
    _check_cell_type(cell_type)
    return len(KERAS_GATE_ORDERS[cell_type])


def keras_bias_shape(cell_type, units, reset_after=True):
    """The Keras bias shape: ``(2, 3H)`` for a GRU with ``reset_after``,
    else ``(G*H,)``."""
    if cell_type == "gru" and reset_after:
        return (2, 3 * units)
    return (gate_count(cell_type) * units,)


def check_torch_compatible(cell_type, reset_after=True):
    """Raises a ValueError for the one Keras cell PyTorch cannot hold: a GRU
    with ``reset_after=False``."""
    if cell_type == "gru" and not reset_after:
        raise ValueError(
            "A GRU with reset_after=False has no PyTorch equivalent: "
            "torch.nn.GRU applies the reset gate after the recurrent matmul, "
            "which is Keras' reset_after=True. Use reset_after=True. "
            "Received: reset_after=False"
        )


def permute_gates(array, permutation, axis=-1):
    """Reorders the G equal blocks of ``array`` along ``axis``.

    Block ``j`` of the result is block ``permutation[j]`` of ``array``.
    """
    blocks = np.split(array, len(permutation), axis=axis)
    return np.concatenate([blocks[p] for p in permutation], axis=axis)


def keras_to_torch(
    cell_type, kernel, recurrent_kernel, bias=None, reset_after=True
):
    """Keras cell weights -> PyTorch ``nn.RNN/LSTM/GRU`` parameters.

    With ``P`` the gate permutation ``KERAS_TO_TORCH[cell_type]``::

        weight_ih = P(kernel).T                        (G*H, F)
        weight_hh = P(recurrent_kernel).T              (G*H, H)
        SimpleRNN, LSTM:     bias_ih = P(bias),        bias_hh = 0
        GRU (reset_after):   bias_ih = P(bias[0]),     bias_hh = P(bias[1])

    Args:
        cell_type: ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
        kernel: ``(F, G*H)``.
        recurrent_kernel: ``(H, G*H)``.
        bias: the Keras bias, or None for ``use_bias=False``.
        reset_after: the GRU's reset placement. False raises a ValueError:
            PyTorch has no such GRU. Ignored for the other cells.

    Returns:
        dict with ``weight_ih``, ``weight_hh`` and, when ``bias`` is given,
        ``bias_ih`` and ``bias_hh`` (PyTorch's ``bias=False`` has neither).
    """
    _check_cell_type(cell_type)
    check_torch_compatible(cell_type, reset_after)
    kernel, recurrent_kernel, bias = _check_keras(
        cell_type, kernel, recurrent_kernel, bias, reset_after
    )
    perm = KERAS_TO_TORCH[cell_type]
    weights = {
        "weight_ih": permute_gates(kernel, perm).T,
        "weight_hh": permute_gates(recurrent_kernel, perm).T,
    }
    if bias is not None:
        if cell_type == "gru":
            bias_ih, bias_hh = bias
        else:
            bias_ih, bias_hh = bias, np.zeros_like(bias)
        weights["bias_ih"] = permute_gates(bias_ih, perm)
        weights["bias_hh"] = permute_gates(bias_hh, perm)
    return _contiguous(weights)


def torch_to_keras(
    cell_type,
    weight_ih,
    weight_hh,
    bias_ih=None,
    bias_hh=None,
    reset_after=True,
):
    """PyTorch ``nn.RNN/LSTM/GRU`` parameters -> Keras cell weights.

    With ``Q`` the inverse of ``KERAS_TO_TORCH[cell_type]``::

        kernel = Q(weight_ih.T)                        (F, G*H)
        recurrent_kernel = Q(weight_hh.T)              (H, G*H)
        SimpleRNN, LSTM:   bias = Q(bias_ih + bias_hh)           (G*H,)
        GRU:               bias = [Q(bias_ih); Q(bias_hh)]       (2, 3H)

    Args:
        cell_type: ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
        weight_ih: ``(G*H, F)``.
        weight_hh: ``(G*H, H)``.
        bias_ih, bias_hh: ``(G*H,)`` each, or both None (``bias=False``).
        reset_after: must be True for a GRU (PyTorch's only form).

    Returns:
        dict with ``kernel``, ``recurrent_kernel`` and, when the biases are
        given, ``bias``.
    """
    _check_cell_type(cell_type)
    check_torch_compatible(cell_type, reset_after)
    width = gate_count(cell_type) * _units(cell_type, "weight_hh", weight_hh)
    weight_ih = _check_shape(cell_type, "weight_ih", weight_ih, (width, "F"))
    weight_hh = np.asarray(weight_hh)
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(
            f"{cell_type} needs both `bias_ih` and `bias_hh`, or neither "
            f"(bias=False). Received: bias_ih={_describe(bias_ih)}, "
            f"bias_hh={_describe(bias_hh)}"
        )
    inverse = _inverse(KERAS_TO_TORCH[cell_type])
    weights = {
        "kernel": permute_gates(weight_ih.T, inverse),
        "recurrent_kernel": permute_gates(weight_hh.T, inverse),
    }
    if bias_ih is not None:
        bias_ih = _check_shape(cell_type, "bias_ih", bias_ih, (width,))
        bias_hh = _check_shape(cell_type, "bias_hh", bias_hh, (width,))
        if cell_type == "gru":
            bias = np.stack([bias_ih, bias_hh])
        else:
            bias = bias_ih + bias_hh
        weights["bias"] = permute_gates(bias, inverse)
    return _contiguous(weights)


def keras_to_onnx(
    cell_type, kernel, recurrent_kernel, bias=None, reset_after=True
):
    """Keras cell weights -> the ONNX ``RNN``/``LSTM``/``GRU`` ``W, R, B`` of
    one direction.

    With ``P`` the gate permutation ``KERAS_TO_ONNX[cell_type]``::

        W = P(kernel).T                                [G*H, F]
        R = P(recurrent_kernel).T                      [G*H, H]
        single Keras bias:          B = [P(bias), 0]   [2*G*H]
        GRU (reset_after=True):     B = [P(bias[0]), P(bias[1])]
        no bias:                    B = 0

    The GRU node needs ``linear_before_reset = int(reset_after)``. For a
    node's ``[D, ...]`` inputs stack the directions, forward first.

    Args:
        cell_type: ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
        kernel: ``(F, G*H)``.
        recurrent_kernel: ``(H, G*H)``.
        bias: the Keras bias, or None for ``use_bias=False``.
        reset_after: the GRU's reset placement (ignored for other cells).

    Returns:
        ``(W, R, B)``.
    """
    _check_cell_type(cell_type)
    kernel, recurrent_kernel, bias = _check_keras(
        cell_type, kernel, recurrent_kernel, bias, reset_after
    )
    perm = KERAS_TO_ONNX[cell_type]
    W = permute_gates(kernel, perm).T
    R = permute_gates(recurrent_kernel, perm).T
    if bias is None:
        B = np.zeros(2 * R.shape[0], dtype=R.dtype)
    elif bias.ndim == 2:
        B = np.concatenate([permute_gates(row, perm) for row in bias])
    else:
        B = np.concatenate([permute_gates(bias, perm), np.zeros_like(bias)])
    return tuple(np.ascontiguousarray(array) for array in (W, R, B))


def onnx_to_keras(cell_type, W, R, B=None, linear_before_reset=0):
    """The ONNX ``W, R, B`` of one direction -> Keras cell weights.

    The inverse of ``keras_to_onnx``, with ``Q`` undoing
    ``KERAS_TO_ONNX[cell_type]`` and ``B = [Wb, Rb]``::

        kernel = Q(W.T), recurrent_kernel = Q(R.T)
        GRU, linear_before_reset=1:   bias = [Q(Wb); Q(Rb)]   (reset_after)
        otherwise:                    bias = Q(Wb + Rb)

    With ``linear_before_reset=0`` the GRU's ``Rb_h`` is added outside the
    reset product, so it folds into the single Keras bias like the rest.

    Args:
        cell_type: ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
        W: ``[G*H, F]``.
        R: ``[G*H, H]``.
        B: ``[2*G*H]``, or None (zero biases).
        linear_before_reset: the GRU attribute (ignored for other cells).

    Returns:
        dict with ``kernel``, ``recurrent_kernel`` and ``bias``; the Keras
        GRU that takes them has ``reset_after=bool(linear_before_reset)``.
    """
    _check_cell_type(cell_type)
    width = gate_count(cell_type) * _units(cell_type, "R", R)
    W = _check_shape(cell_type, "W", W, (width, "F"))
    R = np.asarray(R)
    if B is None:
        B = np.zeros(2 * width, dtype=W.dtype)
    B = _check_shape(cell_type, "B", B, (2 * width,))
    input_bias, recurrent_bias = np.split(B, 2)
    if cell_type == "gru" and linear_before_reset:
        bias = np.stack([input_bias, recurrent_bias])
    else:
        bias = input_bias + recurrent_bias
    inverse = _inverse(KERAS_TO_ONNX[cell_type])
    return _contiguous(
        {
            "kernel": permute_gates(W.T, inverse),
            "recurrent_kernel": permute_gates(R.T, inverse),
            "bias": permute_gates(bias, inverse),
        }
    )


def _check_cell_type(cell_type):
    if cell_type not in CELL_TYPES:
        raise ValueError(
            f"`cell_type` must be one of {CELL_TYPES}. Received: "
            f"cell_type={cell_type!r}"
        )


def _check_shape(cell_type, name, array, expected, hint=""):
    """``np.asarray(array)`` if its shape is ``expected``, else a ValueError.

    ``expected`` holds ints and, for sizes that may be anything, names.
    """
    array = np.asarray(array)
    if array.ndim != len(expected) or any(
        isinstance(size, int) and size != actual
        for size, actual in zip(expected, array.shape)
    ):
        shape = "(" + ", ".join(str(size) for size in expected) + (
            ",)" if len(expected) == 1 else ")"
        )
        raise ValueError(
            f"{cell_type} `{name}` must have shape {shape}{hint}. "
            f"Received: {name}.shape={array.shape}"
        )
    return array


def _units(cell_type, name, recurrent):
    """H, read from a recurrent matrix: Keras ``(H, G*H)`` when ``name`` is
    ``recurrent_kernel``, else PyTorch/ONNX ``(G*H, H)``."""
    recurrent = np.asarray(recurrent)
    gates = gate_count(cell_type)
    keras_layout = name == "recurrent_kernel"
    if recurrent.ndim == 2:
        units = recurrent.shape[0 if keras_layout else 1]
        expected = (units, gates * units) if keras_layout else (
            gates * units, units
        )
        if units > 0 and recurrent.shape == expected:
            return units
    expected = "(H, G*H)" if keras_layout else "(G*H, H)"
    raise ValueError(
        f"{cell_type} `{name}` must have shape {expected} with G={gates} "
        f"gate blocks. Received: {name}.shape={recurrent.shape}"
    )


def _check_keras(cell_type, kernel, recurrent_kernel, bias, reset_after):
    units = _units(cell_type, "recurrent_kernel", recurrent_kernel)
    width = gate_count(cell_type) * units
    kernel = _check_shape(cell_type, "kernel", kernel, ("F", width))
    if bias is not None:
        hint = f" (reset_after={bool(reset_after)})" if (
            cell_type == "gru"
        ) else ""
        bias = _check_shape(
            cell_type,
            "bias",
            bias,
            keras_bias_shape(cell_type, units, reset_after),
            hint,
        )
    return kernel, np.asarray(recurrent_kernel), bias


def _inverse(permutation):
    inverse = [0] * len(permutation)
    for target, source in enumerate(permutation):
        inverse[source] = target
    return tuple(inverse)


def _contiguous(weights):
    return {key: np.ascontiguousarray(value) for key, value in weights.items()}


def _describe(value):
    return "None" if value is None else f"array of shape {np.shape(value)}"
