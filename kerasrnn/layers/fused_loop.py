"""The fast time loop: forward and a hand-written backward pass (BPTT).

Autodiff through ``tf.while_loop`` (the generic path, ``time_loop.py``)
accumulates the recurrent weight gradient with one small matmul per step and
keeps every intermediate of every op. Here the loop runs the cell's ``step``
(its equations, the same ones every loop runs) and keeps only the ``cache``
it returns for the backward, the backward loop does only the per-step chain
rule (``fused_step_backward``: elementwise work and ``dz Uᵀ``), and the weight
gradients are single large matmuls over all steps afterwards
(``dU = Σ_t h_{t-1}ᵀ dz_t``), as cuDNN and PyTorch's fused kernels do.

Masked steps carry the states: ``s_t = m_t ? step(s_{t-1}) : s_{t-1}``, so
``ds_{t-1} = m_t ? d step : ds_t``.

The result equals the generic path (tests check values and gradients).
"""

import tensorflow as tf

from kerasrnn.cells.base import time_matmul
from kerasrnn.cells.base import time_sum


def run_fused_loop(cell, inputs, initial_states, mask=None,
                   recurrent_mask=None, weight_mask=None):
    """Runs ``cell`` over a time-major sequence, with a fused backward.

    The input projection ``x_t W + b`` runs inside the forward loop, where
    it overlaps with the previous step's recurrent work; its gradients are
    large matmuls after the backward loop.

    Args:
        cell: a kerasrnn cell with ``supports_fused``.
        inputs: ``(T, B, F)``.
        initial_states: list of ``(B, H)``.
        mask: None or boolean ``(T, B, 1)``; False = carry the states.
        recurrent_mask: None or the ``(B, H)`` recurrent dropout mask.
        weight_mask: None or the DropConnect mask on ``U`` (applied to
            ``step_parameters`` outside the hand-written backward, so
            autodiff carries ``dU ⊙ M`` back to the weights).

    Returns:
        A list with each state stacked over time, ``(T, B, H)``: the state
        after every step (the hidden state sequence is the first).
    """
    # Read the variables here: inside the custom gradient only tensors flow.
    input_parameters = [tf.identity(cell.kernel)]
    if cell.use_bias:
        input_parameters.append(tf.identity(cell.input_bias))
    parameters = [tf.identity(p) for p in cell.step_parameters(weight_mask)]
    input_count, state_count = len(input_parameters), len(initial_states)

    @tf.custom_gradient
    def sequence(inputs, *arguments):
        kernel, *bias = arguments[:input_count]
        states0 = list(arguments[input_count:input_count + state_count])
        params = list(arguments[input_count + state_count:])
        steps = tf.shape(inputs)[0]

        def project(x_t):
            projected = tf.matmul(x_t, kernel)
            return projected + bias[0] if bias else projected

        def new_array():
            return tf.TensorArray(inputs.dtype, size=steps)

        def forward(t, states, state_arrays, *cache_array):
            new_states, cache = cell.step(
                project(inputs[t]), states, params, recurrent_mask
            )
            if mask is not None:
                keep = mask[t]
                new_states = [tf.where(keep, new, old)
                              for new, old in zip(new_states, states)]
            state_arrays = [a.write(t, s) for a, s in zip(state_arrays,
                                                           new_states)]
            # A cell whose backward needs only the states caches nothing.
            cache_array = [a.write(t, tf.concat(cache, axis=-1))
                           for a in cache_array]
            return (t + 1, new_states, state_arrays, *cache_array)

        _, _, state_arrays, *cache_array = tf.while_loop(
            lambda t, *_: t < steps,
            forward,
            (0, states0, [new_array() for _ in states0],
             *([new_array()] if cell.fused_cache else [])),
            maximum_iterations=steps,
        )
        state_seqs = [a.stack() for a in state_arrays]
        caches = cache_array[0].stack() if cache_array else None
        prev_seqs = [
            tf.concat([s0[None], seq[:-1]], axis=0)
            for s0, seq in zip(states0, state_seqs)
        ]

        def backward(*d_state_seqs):
            def step_back(k, d_states, d_projected, *d_recurrent):
                t = steps - 1 - k
                d_states = [d + seq[t] for d, seq in zip(d_states,
                                                         d_state_seqs)]
                d_new = d_states
                if mask is not None:
                    keep = mask[t]
                    d_new = [tf.where(keep, d, zero) for d in d_states]
                d_proj, d_prev, d_rec = cell.fused_step_backward(
                    None if caches is None else caches[t],
                    [p[t] for p in prev_seqs],
                    [s[t] for s in state_seqs],
                    d_new,
                    params,
                    recurrent_mask,
                )
                if mask is not None:
                    d_prev = [tf.where(keep, d, carried)
                              for d, carried in zip(d_prev, d_states)]
                d_recurrent = [a.write(t, d_rec) for a in d_recurrent]
                return (k + 1, d_prev, d_projected.write(t, d_proj),
                        *d_recurrent)

            zeros = [tf.zeros_like(s) for s in states0]
            zero = tf.zeros((), inputs.dtype)  # broadcast by tf.where
            # Most cells' recurrent pre-activation gradient is d_projected
            # itself; only a separate one gets its own array.
            separate = cell.fused_separate_recurrent_gradient
            _, d_states0, d_projected, *d_recurrent = tf.while_loop(
                lambda k, *_: k < steps,
                step_back,
                (0, zeros, new_array(), *([new_array()] if separate else [])),
                maximum_iterations=steps,
            )
            d_projected = d_projected.stack()
            d_params = cell.fused_parameter_gradients(
                prev_seqs, caches,
                d_recurrent[0].stack() if separate else d_projected,
                params, recurrent_mask,
            )
            d_inputs = tf.matmul(d_projected, kernel, transpose_b=True)
            d_kernel = time_matmul(inputs, d_projected)
            d_bias = [time_sum(d_projected)] if bias else []
            return (d_inputs, d_kernel, *d_bias, *d_states0, *d_params)

        return state_seqs, backward

    return sequence(inputs, *input_parameters, *initial_states, *parameters)


def run_forward_loop(cell, inputs, initial_states, mask=None,
                     recurrent_mask=None, weight_mask=None,
                     return_sequences=True):
    """The forward of ``run_fused_loop`` alone, for inference.

    ``x_t W + b`` in the loop, where it overlaps with the previous step's
    recurrent work, then the cell's ``step``; no cache and no
    state history: only the hidden states are written, and only when
    ``return_sequences``. Gradients, if asked for, come from
    autodiff through the loop (correct, not fast: training uses
    ``run_fused_loop``).

    Args:
        as ``run_fused_loop``; ``return_sequences``: keep every hidden state.

    Returns:
        ``(hidden_states, final_states)``: the hidden state after every
        step ``(T, B, H)`` (None unless ``return_sequences``) and the list
        of final states.
    """
    kernel = tf.convert_to_tensor(cell.kernel)
    bias = tf.convert_to_tensor(cell.input_bias) if cell.use_bias else None
    parameters = cell.step_parameters(weight_mask)
    steps = tf.shape(inputs)[0]

    def forward(t, states, *hidden_array):
        projected = tf.matmul(inputs[t], kernel)
        if bias is not None:
            projected = projected + bias
        new_states, _ = cell.step(projected, states, parameters,
                                  recurrent_mask)
        if mask is not None:
            keep = mask[t]
            new_states = [tf.where(keep, new, old)
                          for new, old in zip(new_states, states)]
        hidden_array = [a.write(t, new_states[0]) for a in hidden_array]
        return (t + 1, new_states, *hidden_array)

    arrays = ([tf.TensorArray(inputs.dtype, size=steps)]
              if return_sequences else [])
    _, final_states, *arrays = tf.while_loop(
        lambda t, *_: t < steps,
        forward,
        (0, list(initial_states), *arrays),
        maximum_iterations=steps,
    )
    return (arrays[0].stack() if arrays else None), final_states
