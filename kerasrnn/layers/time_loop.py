"""The time loop shared by every recurrent layer.

``run_time_loop`` runs a step function over the time axis of an already
projected sequence, with the loop of the Keras backend:

* TensorFlow: a graph loop (``tf.while_loop``) with no Python per step,
  XLA-compatible (``maximum_iterations`` is set);
* JAX: one ``lax.scan`` (``keras.ops.scan``), compiled with the step that
  calls it;
* PyTorch: a Python loop over eager tensors (what ``torch.nn`` cells do;
  the fused kernels are ``torch_kernels.py``);

or, on any backend, a Python unrolled loop when the length is static and
``unroll=True``.

Masking follows Keras: at a masked step the states carry over unchanged, and
the output is either the previous step's output (zeros before the first
step) or zeros (``zero_output_for_mask=True``).

The loop's diagnostics hook is ``state_hook(probe)``: inside it every kerasrnn
``RNN`` runs this loop (never a fused one) and adds, to the states its cell
computes at step ``k``, the ``(B, T, S)`` tensor ``ε`` that
``probe.perturbation(layer, shape, dtype)`` returns (``S`` the states'
summed sizes, in ``state_size`` order), leaving stateful layers' carried
states as they were. ``kerasrnn.diagnostics.gradient_flow`` passes zeros and
reads ``∂L/∂ε_k = ∂L/∂s_k`` from one backward pass, through the real
layers.
"""

import contextlib
import threading

import keras
from keras import ops

_ACTIVE = threading.local()


@contextlib.contextmanager
def state_hook(probe):
    """Runs the block with ``probe`` as the recurrent layers' state probe
    (see the module docstring); probes do not nest."""
    if active_state_hook() is not None:
        raise RuntimeError("A state probe is already active in this thread.")
    _ACTIVE.probe = probe
    try:
        yield probe
    finally:
        _ACTIVE.probe = None


def active_state_hook():
    """The probe of the enclosing ``state_hook`` block, or None."""
    return getattr(_ACTIVE, "probe", None)


def run_time_loop(
    step,
    inputs,
    initial_states,
    mask=None,
    return_sequences=True,
    zero_output_for_mask=False,
    unroll=False,
    zero_output=None,
):
    """Runs ``step`` over axis 1 of ``inputs``.

    Args:
        step: ``step(x_t, states) -> (output, new_states)`` where ``x_t`` is
            ``inputs[:, t]`` and ``output`` has the shape of ``states[0]``
            (or of ``zero_output``).
        inputs: ``(batch, time, features)``.
        initial_states: list of ``(batch, size)`` tensors.
        mask: None or a boolean ``(batch, time)`` tensor; False = skip step.
        return_sequences: whether to collect the output of every step.
        zero_output_for_mask: output zeros (not the previous output) at
            masked steps.
        unroll: unroll the loop in Python (needs a static time length).
        zero_output: the output before the first step (default zeros like
            ``states[0]``), for cells whose output is not their first
            state.

    Returns:
        ``(last_output, outputs, final_states)``; ``outputs`` is
        ``(batch, time, units)`` or None when ``return_sequences=False``.
    """
    inputs_tm = ops.transpose(inputs, (1, 0, 2))
    mask_tm = None
    if mask is not None:
        mask_tm = ops.expand_dims(ops.transpose(mask), -1)
    if zero_output is None:
        zero_output = ops.zeros_like(initial_states[0])

    def masked_step(x_t, mask_t, prev_output, states):
        output, new_states = step(x_t, states)
        if mask_t is None:
            return output, list(new_states)
        fallback = zero_output if zero_output_for_mask else prev_output
        output = ops.where(mask_t, output, fallback)
        new_states = [
            ops.where(mask_t, new, old) for new, old in zip(new_states, states)
        ]
        return output, new_states

    backend = keras.config.backend()
    if unroll or backend == "torch":
        if unroll and inputs_tm.shape[0] is None:
            raise ValueError(
                "unroll=True needs a static sequence length; received a "
                "time axis of unknown length. Pass `shape=(time, features)` "
                "to `keras.Input` or use unroll=False."
            )
        loop = _python_loop
    elif backend == "tensorflow":
        loop = _while_loop
    else:
        loop = _scan_loop
    return loop(masked_step, inputs_tm, mask_tm, zero_output, initial_states,
                return_sequences)


def _while_loop(masked_step, inputs_tm, mask_tm, zero_output, initial_states,
                return_sequences):
    """TensorFlow: one ``tf.while_loop`` over TensorArrays."""
    import tensorflow as tf

    steps = tf.shape(inputs_tm)[0]
    input_ta = tf.TensorArray(inputs_tm.dtype, size=steps).unstack(inputs_tm)
    mask_ta = None
    if mask_tm is not None:
        mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(mask_tm)
    state_count = len(initial_states)

    def body(t, prev_output, *rest):
        states, output_ta = list(rest[:state_count]), rest[state_count:]
        mask_t = None if mask_ta is None else mask_ta.read(t)
        output, new_states = masked_step(
            input_ta.read(t), mask_t, prev_output, states
        )
        # The output TensorArray is a loop variable only when it is needed:
        # an unused, empty one breaks XLA's gradient (uninitialized list).
        output_ta = tuple(ta.write(t, output) for ta in output_ta)
        return (t + 1, output, *new_states, *output_ta)

    loop_vars = (tf.constant(0), zero_output, *initial_states)
    if return_sequences:
        loop_vars += (tf.TensorArray(zero_output.dtype, size=steps),)
    result = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        loop_vars,
        maximum_iterations=steps,
    )
    last_output = result[1]
    final_states = list(result[2 : 2 + state_count])
    outputs = None
    if return_sequences:
        outputs = tf.transpose(result[-1].stack(), [1, 0, 2])
    return last_output, outputs, final_states


def _scan_loop(masked_step, inputs_tm, mask_tm, zero_output, initial_states,
               return_sequences):
    """JAX: one ``keras.ops.scan`` (``lax.scan``)."""

    def body(carry, inputs_t):
        prev_output, states = carry
        x_t, mask_t = inputs_t
        output, new_states = masked_step(x_t, mask_t, prev_output, states)
        return (output, new_states), (output if return_sequences else None)

    (last_output, final_states), outputs = ops.scan(
        body, (zero_output, list(initial_states)), (inputs_tm, mask_tm)
    )
    if return_sequences:
        outputs = ops.transpose(outputs, (1, 0, 2))
    return last_output, outputs, list(final_states)


def _python_loop(masked_step, inputs_tm, mask_tm, zero_output, states,
                 return_sequences):
    """A Python loop over the steps: ``unroll=True`` on any backend (the
    graph holds every step), and PyTorch's eager loop."""
    output = zero_output
    outputs = []
    for t in range(inputs_tm.shape[0]):
        mask_t = None if mask_tm is None else mask_tm[t]
        output, states = masked_step(inputs_tm[t], mask_t, output, states)
        if return_sequences:
            outputs.append(output)
    stacked = ops.stack(outputs, axis=1) if return_sequences else None
    return output, stacked, states


def last_keras_output(final_hidden, mask=None, zero_output_for_mask=False):
    """``keras_outputs(...)[-1]`` from the final hidden state alone."""
    if mask is None:
        return final_hidden
    keep = mask[-1] if zero_output_for_mask else ops.any(mask, axis=0)
    return ops.where(keep, final_hidden, ops.zeros_like(final_hidden))


def keras_outputs(hidden_states, mask=None, zero_output_for_mask=False):
    """The per-step outputs Keras reports, from the hidden-state sequence.

    ``hidden_states`` (``(T, B, H)``) holds the carried state at every step.
    At a masked step Keras outputs zeros (``zero_output_for_mask``) or the
    previous output, which is the carried state once a real step has been
    seen and zeros before.
    """
    if mask is None:
        return hidden_states
    if zero_output_for_mask:
        keep = mask
    else:
        keep = ops.cumsum(ops.cast(mask, "int32"), axis=0) > 0
    return ops.where(keep, hidden_states, ops.zeros_like(hidden_states))
