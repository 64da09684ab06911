"""The long short-term memory cell."""

import keras
from keras import ops

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.base import apply_mask
from kerasrnn.cells.base import get_activation
from kerasrnn.cells.base import matmul_transposed
from kerasrnn.cells.base import output_derivative
from kerasrnn.cells.base import time_matmul
from kerasrnn.cells.base import unit_forget_bias
from kerasrnn.cells.registry import register_cell


@register_cell(
    "lstm",
    # PyTorch: the same order (it calls the candidate g); ONNX: i, o, f, c.
    gate_orders={"torch": ("i", "f", "c", "o"), "onnx": ("i", "o", "f", "c")},
    onnx_operator="LSTM",
    keras_layer="LSTM",
    torch_module="LSTM",
)
@keras.saving.register_keras_serializable(package="kerasrnn")
class LSTMCell(RecurrentCell):
    """LSTM cell with forget gate (Hochreiter & Schmidhuber 1997; Gers 2000).

    Equations, with ``[W_i W_f W_c W_o] = kernel``, ``[U_i U_f U_c U_o] =
    recurrent_kernel``, ``[b_i b_f b_c b_o] = bias``, σ =
    ``recurrent_activation`` and ``g = activation``::

        i_t = σ(x_t W_i + h_{t-1} U_i + b_i)        input gate
        f_t = σ(x_t W_f + h_{t-1} U_f + b_f)        forget gate
        g_t = g(x_t W_c + h_{t-1} U_c + b_c)        candidate
        o_t = σ(x_t W_o + h_{t-1} U_o + b_o)        output gate
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t             cell state
        h_t = o_t ⊙ g(c_t)                          hidden state

    Args:
        units: H, the size of ``h`` and ``c``.
        activation: ``g``, default ``"tanh"``.
        recurrent_activation: σ, default ``"sigmoid"``.
        unit_forget_bias: initialise ``b_f`` to 1 (Jozefowicz et al. 2015).
        Other arguments as in ``keras.layers.LSTMCell``.

    Call arguments:
        inputs: ``(batch, input_dim)``.
        states: ``[h_{t-1}, c_{t-1}]``, each ``(batch, H)``.

    Returns:
        ``(h_t, [h_t, c_t])``.
    """

    gate_names = ("i", "f", "c", "o")
    state_names = ("h", "c")

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        unit_forget_bias=True,
        **kwargs,
    ):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = get_activation(
            "recurrent_activation", recurrent_activation
        )
        self.unit_forget_bias = bool(unit_forget_bias)

    def bias_initial_value(self, shape, dtype=None):
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        return unit_forget_bias(self.bias_initializer, self.units, dtype)

    def fused_activations(self):
        return [self.activation, self.recurrent_activation]

    def step(self, projected, states, parameters, recurrent_mask=None):
        (recurrent_kernel,) = parameters
        h_prev, c_prev = states
        z = projected + ops.matmul(
            apply_mask(h_prev, recurrent_mask), recurrent_kernel
        )
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        g = self.activation(z_c)
        o = self.recurrent_activation(z_o)
        c = f * c_prev + i * g
        g_c = self.activation(c)
        h = o * g_c
        return [h, c], (i, f, g, o, g_c)

    def fused_step_backward(
        self, cache, prev_states, new_states, d_states, parameters,
        recurrent_mask=None,
    ):
        (recurrent_kernel,) = parameters
        i, f, g, o, g_c = ops.split(cache, 5, axis=-1)
        c_prev = prev_states[1]
        d_h, d_c = d_states
        sigma_prime = output_derivative(self.recurrent_activation)
        g_prime = output_derivative(self.activation)
        # h = o ⊙ g(c)  and  c = f ⊙ c_prev + i ⊙ g
        d_o = d_h * g_c
        d_c = d_c + d_h * o * g_prime(g_c)
        d_z = ops.concatenate(
            [
                d_c * g * sigma_prime(i),
                d_c * c_prev * sigma_prime(f),
                d_c * i * g_prime(g),
                d_o * sigma_prime(o),
            ],
            axis=-1,
        )
        d_h_prev = apply_mask(
            matmul_transposed(d_z, recurrent_kernel), recurrent_mask
        )
        return d_z, [d_h_prev, d_c * f], None

    def fused_parameter_gradients(
        self, prev_states, caches, d_recurrent, parameters, recurrent_mask=None
    ):
        h_in = apply_mask(prev_states[0], recurrent_mask)
        return [time_matmul(h_in, d_recurrent)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "recurrent_activation": keras.activations.serialize(
                    self.recurrent_activation
                ),
                "unit_forget_bias": self.unit_forget_bias,
            }
        )
        return config
