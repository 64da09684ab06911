"""The TensorFlow backend's GPU fast path: cuDNN's LSTM and GRU, by
Keras' own route.

With a GPU visible to TensorFlow, ``keras.layers.LSTM/GRU`` run cuDNN
through Keras' TensorFlow backend (``keras.src.backend.tensorflow.rnn``:
``lstm`` / ``gru``, one ``CudnnRNNV3`` op with its registered gradient).
An ``RNN`` of a kerasrnn ``LSTMCell`` or ``GRUCell`` calls those very
functions when ``cudnn_note`` is None:

* a GPU is visible to TensorFlow, ``use_cudnn`` is not False, and no
  portable graph is being traced (``portable_graphs``: the SavedModel
  export, whose graphs CPU-only servers must run);
* the cell computes torch's (hence cuDNN's) equations
  (``torch_kernels.kernel_note``: standard activations, GRU
  ``reset_after=True``, no recurrent dropout), is an LSTM or a GRU (Keras
  has no cuDNN route for the Elman cell) and has a bias;
* no mask, or a right-padded one with a real step in every row (under
  ``go_backwards`` the mask before the reversal). Any other mask takes the
  fused loop instead, decided in the graph (``tf.cond``), where Keras'
  layer would fail its assertion.

Kerasrnn keeps Keras' weight names, shapes and gate orders, so the
variables go to Keras' functions as they are. Input dropout and
DropConnect on ``U`` apply outside the kernel. What differs from the CPU
loops is cuDNN's arithmetic, not the equations; the outputs come back in
Keras' masking convention (``time_loop.keras_outputs``: at a padded step
the carried state, or zeros with ``zero_output_for_mask``).
"""

import contextlib
import contextvars

from keras import ops

from kerasrnn.cells.registry import cell_spec
from kerasrnn.layers import torch_kernels
from kerasrnn.layers.time_loop import keras_outputs
from kerasrnn.layers.time_loop import last_keras_output

_KERAS_KERNELS = {"LSTM": "lstm", "GRU": "gru"}
_PORTABLE = contextvars.ContextVar("kerasrnn_portable_graphs", default=False)


@contextlib.contextmanager
def portable_graphs():
    """Within it no layer takes the cuDNN route, so that graphs traced
    there (the SavedModel export) run on CPU-only servers."""
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)


def gpu_visible():
    """Whether TensorFlow sees a GPU (Keras' ``cudnn_ok`` asks the same)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def cudnn_note(cell, recurrent_dropout=False):
    """None when ``cell`` can run on cuDNN through Keras' TensorFlow
    backend, else why not (the fused loop runs it)."""
    note = torch_kernels.kernel_note(cell, recurrent_dropout)
    if note is not None:
        return note
    if cell_spec(cell).torch_module not in _KERAS_KERNELS:
        return "Keras runs cuDNN for LSTM and GRU cells only"
    if not cell.use_bias:
        return "Keras' cuDNN route needs use_bias=True"
    if _PORTABLE.get():
        return "a portable graph is being traced (the SavedModel export)"
    if not gpu_visible():
        return "no GPU is visible to TensorFlow"
    return None


def keras_kernel(cell):
    """Keras' TensorFlow ``lstm`` or ``gru`` function for ``cell``."""
    import importlib

    # The module, not the function ``rnn`` its package exports.
    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
    return getattr(rnn, _KERAS_KERNELS[cell_spec(cell).torch_module])


def run_cudnn_kernel(cell, sequences, states, mask, weight_mask,
                     go_backwards, zero_output_for_mask, return_sequences,
                     fallback):
    """Runs ``cell`` over batch-major ``sequences (B, T, F)`` (in
    processing order: already reversed under ``go_backwards``) on cuDNN,
    from ``states``; ``mask`` is None or boolean ``(B, T)`` in processing
    order. ``fallback()`` runs the fused loop; it answers for a mask cuDNN
    cannot take, and where Keras' function declines (NotImplementedError).

    Returns what the ``RNN`` loops return: ``(last_output, outputs
    (B, T, H) or None, final_states)``.
    """
    import tensorflow as tf

    def cudnn():
        try:
            return _cudnn(cell, sequences, states, mask, weight_mask,
                          go_backwards, zero_output_for_mask,
                          return_sequences)
        except NotImplementedError:
            return fallback()

    if mask is None:
        return cudnn()
    original = ops.flip(mask, axis=1) if go_backwards else mask
    result = tf.cond(_right_padded(original), lambda: _flat(cudnn()),
                     lambda: _flat(fallback()))
    return _unflat(result, return_sequences)


def _cudnn(cell, sequences, states, mask, weight_mask, go_backwards,
           zero_output_for_mask, return_sequences):
    """Keras' function on the sequence in its own order (reversed back
    under ``go_backwards``), its outputs in Keras' masking convention."""
    dtype = sequences.dtype
    kernel = ops.cast(cell.kernel, dtype)
    recurrent_kernel = ops.cast(cell.recurrent_weights(weight_mask), dtype)
    bias = ops.cast(cell.bias, dtype)
    original = sequences
    original_mask = mask
    if go_backwards:
        # Keras' functions take the sequence in its own order.
        original = ops.flip(sequences, axis=1)
        if mask is not None:
            original_mask = ops.flip(mask, axis=1)
    arguments = dict(
        mask=original_mask, kernel=kernel, recurrent_kernel=recurrent_kernel,
        bias=bias, activation=cell.activation,
        recurrent_activation=cell.recurrent_activation,
        return_sequences=True, go_backwards=go_backwards,
    )
    run = keras_kernel(cell)
    if cell_spec(cell).torch_module == "LSTM":
        _, outputs, final_states = run(original, states[0], states[1],
                                       **arguments)
    else:
        _, outputs, final_states = run(original, states[0],
                                       reset_after=True, **arguments)
    final_states = list(final_states)
    if mask is None:
        last_output = final_states[0]
    else:
        # cuDNN outputs zeros at padded steps; Keras' loops the carried
        # state after a row's last real step (and zeros before its first).
        time_mask = ops.expand_dims(ops.transpose(mask), -1)
        last_output = last_keras_output(final_states[0], time_mask,
                                        zero_output_for_mask)
        if return_sequences:
            carried = ops.where(
                ops.expand_dims(mask, -1), outputs,
                ops.expand_dims(final_states[0], 1),
            )
            outputs = ops.transpose(
                keras_outputs(ops.transpose(carried, (1, 0, 2)), time_mask,
                              zero_output_for_mask),
                (1, 0, 2),
            )
    return last_output, outputs if return_sequences else None, final_states


def _right_padded(mask):
    """True when every row of boolean ``mask (B, T)`` is real steps
    first, at least one, then padding."""
    lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
    positions = ops.arange(ops.shape(mask)[1])
    expected = positions[None, :] < lengths[:, None]
    return ops.logical_and(ops.all(lengths > 0),
                           ops.all(ops.equal(expected, mask)))


def _flat(result):
    last_output, outputs, final_states = result
    return [last_output] + ([] if outputs is None else [outputs]) + list(
        final_states)


def _unflat(flat, return_sequences):
    if return_sequences:
        return flat[0], flat[1], list(flat[2:])
    return flat[0], None, list(flat[1:])
