"""The PyTorch backend's fast path: torch's fused recurrent kernels.

``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh`` and ``torch.rnn_relu``
are the kernels behind ``torch.nn.LSTM/GRU/RNN`` (oneDNN on CPU, cuDNN on
CUDA), with their own backward. On the torch backend an ``RNN`` of a
kerasrnn cell runs one of them when the cell computes exactly its
equations (``kernel_note`` is None):

* a registered cell with a ``torch_module`` (``simple_rnn``, ``lstm``,
  ``gru``);
* the standard activations: ``tanh`` (or ``relu`` for the Elman cell) and a
  ``sigmoid`` recurrent activation;
* a GRU with ``reset_after=True`` (PyTorch's only GRU);
* no recurrent dropout (its mask sits inside the step). Input dropout and
  DropConnect on ``U`` apply outside the kernel, so they keep it;
* no mask, or a padded one: right-padded (real steps first, at least one
  per row), run through ``pack_padded_sequence``, or left-padded (what a
  right-padded batch becomes under ``go_backwards``: each row's real steps
  are shifted to the front, run, and shifted back); another mask runs the
  generic loop.

The weights go to PyTorch's layout through
``kerasrnn.cells.layouts.torch_kernel_parameters`` (differentiable, so
gradients reach the Keras variables), and the outputs come back in Keras'
masking convention (``time_loop.keras_outputs``).
"""

import keras
from keras import ops

from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells.registry import is_registered
from kerasrnn.layers.time_loop import last_keras_output
from kerasrnn.cells.layouts import torch_kernel_parameters

_KERNELS = {"LSTM": "lstm", "GRU": "gru"}


def kernel_note(cell, recurrent_dropout=False):
    """None when ``cell`` can run on torch's fused kernel, else why not
    (the generic loop runs it: same values, autodiff gradients).
    ``recurrent_dropout``: whether a recurrent dropout mask is active
    (training with ``recurrent_dropout > 0``)."""
    if not is_registered(cell) or cell_spec(cell).torch_module is None:
        return (f"{type(cell).__name__} computes no torch.nn equations, so "
                "no torch kernel runs it")
    activations = {keras.activations.tanh: "tanh"}
    if cell_spec(cell).torch_module == "RNN":
        activations[keras.activations.relu] = "relu"
    if cell.activation not in activations:
        return ("torch's kernels support activation " +
                " or ".join(repr(a) for a in activations.values()))
    recurrent = getattr(cell, "recurrent_activation", None)
    if recurrent is not None and recurrent is not keras.activations.sigmoid:
        return "torch's kernels support recurrent_activation 'sigmoid' only"
    if not getattr(cell, "reset_after", True):
        return "PyTorch's GRU is reset_after=True"
    if recurrent_dropout:
        return "recurrent dropout masks h_{t-1} inside the step"
    return None


def padded_lengths(mask):
    """``(lengths, left)`` for a padded ``(B, T)`` mask with at least one
    real step per row: right-padded (``left=False``) or left-padded; None
    for any other mask (the kernel cannot take it)."""
    import torch

    lengths = mask.sum(dim=1)
    if not bool((lengths > 0).all()):
        return None
    positions = torch.arange(mask.shape[1], device=mask.device)
    if bool(torch.equal(positions[None, :] < lengths[:, None], mask)):
        return lengths, False
    starts = mask.shape[1] - lengths
    if bool(torch.equal(positions[None, :] >= starts[:, None], mask)):
        return lengths, True
    return None


def run_torch_kernel(cell, sequences, states, padding=None, weight_mask=None,
                     training=False, zero_output_for_mask=False):
    """Runs ``cell`` over batch-major ``sequences (B, T, F)`` on torch's
    fused kernel, from ``states`` (list of ``(B, H)``); ``padding`` is
    None (every step is real) or ``padded_lengths(mask)``.

    Returns ``(last_output, outputs (B, T, H), final_states)`` in Keras'
    convention: at a padded step the output is the carried state (zeros
    with ``zero_output_for_mask``) and the states carry over.
    """
    import torch
    from torch.nn.utils import rnn as torch_rnn

    spec = cell_spec(cell)
    parameters = _kernel_parameters(cell, spec, sequences.dtype, weight_mask)
    kernel = _KERNELS.get(spec.torch_module)
    if kernel is None:
        relu = cell.activation is keras.activations.relu
        kernel = "rnn_relu" if relu else "rnn_tanh"
    kernel = getattr(torch, kernel)
    hx = [state[None] for state in states]
    hx = tuple(hx) if len(hx) > 1 else hx[0]
    arguments = (parameters, cell.use_bias, 1, 0.0, bool(training), False)
    if padding is None:
        outputs, *final_states = kernel(sequences, hx, *arguments, True)
        final_states = [state[0] for state in final_states]
        return outputs[:, -1], outputs, final_states

    lengths, left = padding
    steps = sequences.shape[1]
    if left:
        # Real steps t >= T - L move to the front (and back, below).
        shift = (steps - lengths)[:, None]
        sequences = _shift(sequences, shift)
    packed = torch_rnn.pack_padded_sequence(
        sequences, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    if isinstance(hx, tuple):
        hx = tuple(state[:, order] for state in hx)
    else:
        hx = hx[:, order]
    data, *final_states = kernel(packed.data, packed.batch_sizes, hx,
                                 *arguments)
    outputs, _ = torch_rnn.pad_packed_sequence(
        torch_rnn.PackedSequence(data, packed.batch_sizes, order, unorder),
        batch_first=True, total_length=sequences.shape[1],
    )
    final_states = [state[0, unorder] for state in final_states]
    positions = torch.arange(steps, device=sequences.device)
    lengths = lengths.to(sequences.device)
    if left:
        # Before a row's first real step Keras outputs zeros either way.
        outputs = _shift(outputs, -shift)
        mask = positions[None, :] >= (steps - lengths)[:, None]
    else:
        mask = positions[None, :] < lengths[:, None]
        if not zero_output_for_mask:
            # After a row's end Keras outputs its last output: the carried
            # h.
            outputs = torch.where(mask[..., None], outputs,
                                  final_states[0][:, None])
    last_output = last_keras_output(
        final_states[0], ops.transpose(mask[..., None], (1, 0, 2)),
        zero_output_for_mask,
    )
    return last_output, outputs, final_states


def _kernel_parameters(cell, spec, dtype, weight_mask):
    """``torch_kernel_parameters`` of ``cell``'s weights in ``dtype``.

    Without autograd (inference under ``torch.no_grad``, as in Keras'
    ``predict``) and without a DropConnect mask, the reordered contiguous
    copies are kept on the cell while its weights stay what they were: the
    key is each weight variable's storage and in-place version counter,
    which every assignment (``assign``, ``set_weights``, an optimizer
    step) moves. At batch 1 the copies cost about as much as the kernel.
    """
    import torch

    variables = [cell.kernel, cell.recurrent_kernel] + (
        [cell.bias] if cell.use_bias else [])
    key = None
    if weight_mask is None and not torch.is_grad_enabled():
        values = [ops.convert_to_tensor(variable) for variable in variables]
        key = (dtype, tuple((v.data_ptr(), v._version) for v in values))
        cached = getattr(cell, "_torch_kernel_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
    parameters = torch_kernel_parameters(
        spec.name,
        ops.cast(cell.kernel, dtype),
        ops.cast(cell.recurrent_weights(weight_mask), dtype),
        ops.cast(cell.bias, dtype) if cell.use_bias else None,
        getattr(cell, "reset_after", True),
    )
    if key is not None:
        cell._torch_kernel_cache = (key, parameters)
    return parameters


def _shift(sequences, shift):
    """``out[b, t] = sequences[b, t + shift[b]]``, zeros where that falls
    outside the sequence."""
    import torch

    steps = sequences.shape[1]
    source = torch.arange(steps, device=sequences.device)[None, :] + shift
    inside = (source >= 0) & (source < steps)
    index = source.clamp(0, steps - 1)[..., None].expand_as(sequences)
    shifted = torch.gather(sequences, 1, index)
    return torch.where(inside[..., None], shifted, torch.zeros_like(shifted))
