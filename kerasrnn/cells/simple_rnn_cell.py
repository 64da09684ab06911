"""The Elman (simple) recurrent cell."""

import keras
from keras import ops

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.base import apply_mask
from kerasrnn.cells.base import matmul_transposed
from kerasrnn.cells.base import output_derivative
from kerasrnn.cells.base import time_matmul
from kerasrnn.cells.registry import register_cell


@register_cell(
    "simple_rnn",
    aliases=("elman",),
    gate_orders={"torch": ("h",), "onnx": ("h",)},
    onnx_operator="RNN",
    keras_layer="SimpleRNN",
    torch_module="RNN",
)
@keras.saving.register_keras_serializable(package="kerasrnn")
class SimpleRNNCell(RecurrentCell):
    """Elman cell: one tanh (or relu) layer fed back into itself.

    Equation, for input ``x_t`` and previous state ``h_{t-1}``::

        h_t = g(x_t W + h_{t-1} U + b)

    with ``W = kernel (input_dim, H)``, ``U = recurrent_kernel (H, H)``,
    ``b = bias (H,)`` and ``g = activation``. The output is ``h_t``.

    Args:
        units: H, the size of the state (positive int).
        activation: ``g``, default ``"tanh"`` (``"relu"`` for IRNN-style).
        use_bias, *_initializer, *_regularizer, *_constraint, dropout,
        recurrent_dropout, seed: as in ``keras.layers.SimpleRNNCell``.

    Call arguments:
        inputs: ``(batch, input_dim)``.
        states: ``[h_{t-1}]``, each ``(batch, H)``.
        training: whether dropout is active.

    Returns:
        ``(h_t, [h_t])``.

    Reference:
        Elman, "Finding Structure in Time", Cognitive Science 1990.
    """

    gate_names = ("h",)
    fused_cache = False

    def step(self, projected, states, parameters, recurrent_mask=None):
        (recurrent_kernel,) = parameters
        h_prev = apply_mask(states[0], recurrent_mask)
        # h_t = g(x_t W + b + h_{t-1} U)
        h = self.activation(projected + ops.matmul(h_prev, recurrent_kernel))
        return [h], ()

    def fused_step_backward(
        self, cache, prev_states, new_states, d_states, parameters,
        recurrent_mask=None,
    ):
        (recurrent_kernel,) = parameters
        # h = g(a), a = x W + b + h_{t-1} U
        # (new_states[0] is h wherever the step was not masked; at masked
        # steps d_states is zero.)
        d_a = d_states[0] * output_derivative(self.activation)(new_states[0])
        d_h_prev = apply_mask(
            matmul_transposed(d_a, recurrent_kernel), recurrent_mask
        )
        return d_a, [d_h_prev], None

    def fused_parameter_gradients(
        self, prev_states, caches, d_recurrent, parameters, recurrent_mask=None
    ):
        h_in = apply_mask(prev_states[0], recurrent_mask)
        return [time_matmul(h_in, d_recurrent)]
