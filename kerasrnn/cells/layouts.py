"""Weight layouts of Keras, PyTorch and ONNX recurrent cells (NumPy; and
on live torch tensors for the torch backend's fused kernels).

This module is the one place where gate permutations, transposes and bias
splits happen; what it knows about each cell (gate orders, a diagonal
recurrence, peepholes, a two-row bias) it reads from the cell registry
(``kerasrnn.cells.registry``). For a cell with G gate blocks (SimpleRNN 1,
LSTM 4, GRU 3), F input features and H units:

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

from kerasrnn.cells.registry import cell_names
from kerasrnn.cells.registry import cell_spec


def gate_count(cell_type):
    """G, the number of gate blocks of ``cell_type``."""
    return _spec(cell_type).gate_count


def keras_bias_shape(cell_type, units, reset_after=True):
    """The Keras bias shape: ``(2, G*H)`` for a cell whose bias has a
    recurrent row (a GRU with ``reset_after``), else ``(G*H,)``."""
    if _two_bias_rows(cell_type, reset_after):
        return (2, gate_count(cell_type) * units)
    return (gate_count(cell_type) * units,)


def check_torch_compatible(cell_type, reset_after=True):
    """Raises a ValueError for a cell ``torch.nn`` cannot hold: one with no
    PyTorch module, or a GRU with ``reset_after=False``."""
    spec = _spec(cell_type)
    if spec.torch_module is None:
        raise ValueError(
            f"The {cell_type} cell has no PyTorch equivalent (torch.nn has "
            "no module with its equations)."
        )
    if spec.recurrent_bias is not None and not reset_after:
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

    With ``P`` the gate permutation to PyTorch's order
    (``cell_spec(cell_type).permutation("torch")``)::

        weight_ih = P(kernel).T                        (G*H, F)
        weight_hh = P(recurrent_kernel).T              (G*H, H)
        SimpleRNN, LSTM:     bias_ih = P(bias),        bias_hh = 0
        GRU (reset_after):   bias_ih = P(bias[0]),     bias_hh = P(bias[1])

    Args:
        cell_type: a registered cell name (``kerasrnn.cells.cell_names()``).
        kernel: ``(F, G*H)``.
        recurrent_kernel: ``(H, G*H)``.
        bias: the Keras bias, or None for ``use_bias=False``.
        reset_after: the GRU's reset placement. False raises a ValueError:
            PyTorch has no such GRU. Ignored for the other cells.

    Returns:
        dict with ``weight_ih``, ``weight_hh`` and, when ``bias`` is given,
        ``bias_ih`` and ``bias_hh`` (PyTorch's ``bias=False`` has neither).
    """
    check_torch_compatible(cell_type, reset_after)
    kernel, recurrent_kernel, bias = _check_keras(
        cell_type, kernel, recurrent_kernel, bias, reset_after
    )
    perm = _spec(cell_type).permutation("torch")
    weights = {
        "weight_ih": permute_gates(kernel, perm).T,
        "weight_hh": permute_gates(recurrent_kernel, perm).T,
    }
    if bias is not None:
        if bias.ndim == 2:
            bias_ih, bias_hh = bias
        else:
            bias_ih, bias_hh = bias, np.zeros_like(bias)
        weights["bias_ih"] = permute_gates(bias_ih, perm)
        weights["bias_hh"] = permute_gates(bias_hh, perm)
    return _contiguous(weights)


def torch_kernel_parameters(
    cell_type, kernel, recurrent_kernel, bias=None, reset_after=True
):
    """``keras_to_torch`` on live torch tensors, differentiable: the
    ``params`` list of ``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh``
    (``[weight_ih, weight_hh, bias_ih, bias_hh]``, the biases only when
    ``bias`` is given), for the torch backend's fused kernels
    (``kerasrnn.layers.torch_kernels``). Same mapping, same checks of the
    cell type, no shape checks (the cell built its weights)."""
    import torch

    check_torch_compatible(cell_type, reset_after)
    perm = _spec(cell_type).permutation("torch")

    def torch_order(tensor):
        if list(perm) == sorted(perm):
            return tensor
        blocks = torch.chunk(tensor, len(perm), dim=-1)
        return torch.cat([blocks[p] for p in perm], dim=-1)

    # Contiguous: torch's CPU kernels (oneDNN) take a slow path on views.
    parameters = [torch_order(kernel).T.contiguous(),
                  torch_order(recurrent_kernel).T.contiguous()]
    if bias is not None:
        if bias.ndim == 2:
            bias_ih, bias_hh = bias[0], bias[1]
        else:
            bias_ih, bias_hh = bias, torch.zeros_like(bias)
        parameters += [torch_order(bias_ih), torch_order(bias_hh)]
    return parameters


def torch_to_keras(
    cell_type,
    weight_ih,
    weight_hh,
    bias_ih=None,
    bias_hh=None,
    reset_after=True,
):
    """PyTorch ``nn.RNN/LSTM/GRU`` parameters -> Keras cell weights.

    With ``Q`` the inverse of the permutation to PyTorch's order::

        kernel = Q(weight_ih.T)                        (F, G*H)
        recurrent_kernel = Q(weight_hh.T)              (H, G*H)
        SimpleRNN, LSTM:   bias = Q(bias_ih + bias_hh)           (G*H,)
        GRU:               bias = [Q(bias_ih); Q(bias_hh)]       (2, 3H)

    Args:
        cell_type: a registered cell name (``kerasrnn.cells.cell_names()``).
        weight_ih: ``(G*H, F)``.
        weight_hh: ``(G*H, H)``.
        bias_ih, bias_hh: ``(G*H,)`` each, or both None (``bias=False``).
        reset_after: must be True for a GRU (PyTorch's only form).

    Returns:
        dict with ``kernel``, ``recurrent_kernel`` and, when the biases are
        given, ``bias``.
    """
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
    inverse = _inverse(_spec(cell_type).permutation("torch"))
    weights = {
        "kernel": permute_gates(weight_ih.T, inverse),
        "recurrent_kernel": permute_gates(weight_hh.T, inverse),
    }
    if bias_ih is not None:
        bias_ih = _check_shape(cell_type, "bias_ih", bias_ih, (width,))
        bias_hh = _check_shape(cell_type, "bias_hh", bias_hh, (width,))
        if _two_bias_rows(cell_type, reset_after):
            bias = np.stack([bias_ih, bias_hh])
        else:
            bias = bias_ih + bias_hh
        weights["bias"] = permute_gates(bias, inverse)
    return _contiguous(weights)


def keras_to_onnx(
    cell_type, kernel, recurrent_kernel, bias=None, reset_after=True,
    peephole_kernel=None,
):
    """Keras cell weights -> the ONNX ``RNN``/``LSTM``/``GRU`` inputs of one
    direction: ``W, R, B`` (and ``P`` for a cell with peepholes).

    With ``P`` the gate permutation to ONNX's order
    (``cell_spec(cell_type).permutation("onnx")``)::

        W = P(kernel).T                                [G*H, F]
        R = P(recurrent_kernel).T                      [G*H, H]
        diagonal recurrence (IndRNN, u = recurrent_kernel (H,)):
            R = diag(u)                                [H, H]
        single Keras bias:          B = [P(bias), 0]   [2*G*H]
        GRU (reset_after=True):     B = [P(bias[0]), P(bias[1])]
        no bias:                    B = 0
        peepholes (i, f, o) -> ONNX P = [p_i, p_o, p_f]   [3H]

    The GRU node needs ``linear_before_reset = int(reset_after)``. For a
    node's ``[D, ...]`` inputs stack the directions, forward first.

    Args:
        cell_type: a registered cell name (``kerasrnn.cells.cell_names()``).
        kernel: ``(F, G*H)``.
        recurrent_kernel: ``(H, G*H)`` (``(H,)`` for a diagonal one).
        bias: the Keras bias, or None for ``use_bias=False``.
        reset_after: the GRU's reset placement (ignored for other cells).
        peephole_kernel: ``(3H,)``, the peephole weights of a cell that has
            them (required there, refused elsewhere).

    Returns:
        ``(W, R, B)``, or ``(W, R, B, P)`` for a cell with peepholes.
    """
    spec = _spec(cell_type)
    kernel, recurrent_kernel, bias = _check_keras(
        cell_type, kernel, recurrent_kernel, bias, reset_after
    )
    perm = spec.permutation("onnx")
    W = permute_gates(kernel, perm).T
    if spec.recurrent == "diagonal":
        R = np.diag(recurrent_kernel)
    else:
        R = permute_gates(recurrent_kernel, perm).T
    if bias is None:
        B = np.zeros(2 * R.shape[0], dtype=R.dtype)
    elif bias.ndim == 2:
        B = np.concatenate([permute_gates(row, perm) for row in bias])
    else:
        B = np.concatenate([permute_gates(bias, perm), np.zeros_like(bias)])
    arrays = [W, R, B]
    if spec.peepholes:
        if peephole_kernel is None:
            raise ValueError(
                f"The {cell_type} cell needs its `peephole_kernel` (3H,)."
            )
        units = R.shape[1]
        peephole_kernel = _check_shape(
            cell_type, "peephole_kernel", peephole_kernel, (3 * units,)
        )
        arrays.append(permute_gates(
            peephole_kernel, _peephole_permutation(spec)
        ))
    elif peephole_kernel is not None:
        raise ValueError(f"The {cell_type} cell has no peepholes.")
    return tuple(np.ascontiguousarray(array) for array in arrays)


def onnx_to_keras(cell_type, W, R, B=None, linear_before_reset=0, P=None):
    """The ONNX ``W, R, B`` (and ``P``) of one direction -> Keras weights.

    The inverse of ``keras_to_onnx``, with ``Q`` undoing the permutation
    to ONNX's order and ``B = [Wb, Rb]``::

        kernel = Q(W.T), recurrent_kernel = Q(R.T)   (diag(R) if diagonal)
        GRU, linear_before_reset=1:   bias = [Q(Wb); Q(Rb)]   (reset_after)
        otherwise:                    bias = Q(Wb + Rb)
        peepholes: peephole_kernel = [p_i, p_f, p_o] from P = [p_i, p_o, p_f]

    With ``linear_before_reset=0`` the GRU's ``Rb_h`` is added outside the
    reset product, so it folds into the single Keras bias like the rest.

    Args:
        cell_type: a registered cell name.
        W: ``[G*H, F]``.
        R: ``[G*H, H]`` (a diagonal ``[H, H]`` for a diagonal recurrence).
        B: ``[2*G*H]``, or None (zero biases).
        linear_before_reset: the GRU attribute (ignored for other cells).
        P: ``[3H]`` peepholes, or None (zero) for a cell that has them.

    Returns:
        dict with ``kernel``, ``recurrent_kernel``, ``bias`` (and
        ``peephole_kernel``); the Keras GRU that takes them has
        ``reset_after=bool(linear_before_reset)``.
    """
    spec = _spec(cell_type)
    units = _units(cell_type, "R", R)
    width = gate_count(cell_type) * units
    W = _check_shape(cell_type, "W", W, (width, "F"))
    R = np.asarray(R)
    if B is None:
        B = np.zeros(2 * width, dtype=W.dtype)
    B = _check_shape(cell_type, "B", B, (2 * width,))
    input_bias, recurrent_bias = np.split(B, 2)
    if _two_bias_rows(cell_type, linear_before_reset):
        bias = np.stack([input_bias, recurrent_bias])
    else:
        bias = input_bias + recurrent_bias
    inverse = _inverse(spec.permutation("onnx"))
    if spec.recurrent == "diagonal":
        if np.any(R != np.diag(np.diag(R))):
            raise ValueError(
                f"The {cell_type} cell's recurrence is elementwise: `R` must "
                "be diagonal. Received an R with off-diagonal entries."
            )
        recurrent_kernel = np.diag(R).copy()
    else:
        recurrent_kernel = permute_gates(R.T, inverse)
    weights = {
        "kernel": permute_gates(W.T, inverse),
        "recurrent_kernel": recurrent_kernel,
        "bias": permute_gates(bias, inverse),
    }
    if spec.peepholes:
        if P is None:
            P = np.zeros(3 * units, dtype=W.dtype)
        P = _check_shape(cell_type, "P", P, (3 * units,))
        weights["peephole_kernel"] = permute_gates(
            P, _inverse(_peephole_permutation(spec))
        )
    elif P is not None:
        raise ValueError(f"The {cell_type} cell has no peepholes.")
    return _contiguous(weights)


def _spec(cell_type):
    """The registry entry of a canonical cell name (aliases are for the
    models' ``cell=``; the layouts speak in canonical names)."""
    if cell_type not in cell_names():
        raise ValueError(
            f"`cell_type` must be one of {cell_names()}. Received: "
            f"cell_type={cell_type!r}"
        )
    return cell_spec(cell_type)


def _two_bias_rows(cell_type, reset_after):
    """Whether the Keras bias is ``[input; recurrent]`` (a GRU with
    ``reset_after``)."""
    return _spec(cell_type).recurrent_bias is not None and bool(reset_after)


def _peephole_permutation(spec):
    keras, onnx = spec.peepholes["keras"], spec.peepholes["onnx"]
    return tuple(keras.index(gate) for gate in onnx)


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
    if keras_layout and _spec(cell_type).recurrent == "diagonal":
        if recurrent.ndim == 1 and recurrent.shape[0] > 0:
            return recurrent.shape[0]
        raise ValueError(
            f"{cell_type} `{name}` must have shape (H,) (an elementwise "
            f"recurrence). Received: {name}.shape={recurrent.shape}"
        )
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
            _spec(cell_type).recurrent_bias is not None
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
