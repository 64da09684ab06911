"""The LSTM with peephole connections (Gers & Schmidhuber 2000)."""

import keras
from keras import ops

from kerasrnn.cells.base import apply_mask
from kerasrnn.cells.base import matmul_transposed
from kerasrnn.cells.base import output_derivative
from kerasrnn.cells.base import time_matmul
from kerasrnn.cells.base import time_sum
from kerasrnn.cells.lstm_cell import LSTMCell
from kerasrnn.cells.registry import register_cell


@register_cell(
    "peephole_lstm",
    gate_orders={"onnx": ("i", "o", "f", "c")},
    onnx_operator="LSTM",
    # ONNX P = [P_i, P_o, P_f]; here peephole_kernel = [p_i, p_f, p_o].
    peepholes={"keras": ("i", "f", "o"), "onnx": ("i", "o", "f")},
)
@keras.saving.register_keras_serializable(package="kerasrnn")
class PeepholeLSTMCell(LSTMCell):
    """LSTM whose gates also look at the cell state (peephole connections).

    Equations (Gers & Schmidhuber 2000; the ONNX ``LSTM`` with ``P``), with
    ``LSTMCell``'s weights plus ``[p_i p_f p_o] = peephole_kernel (3H,)``
    (elementwise weights on the cell state)::

        i_t = σ(x_t W_i + h_{t-1} U_i + p_i ⊙ c_{t-1} + b_i)
        f_t = σ(x_t W_f + h_{t-1} U_f + p_f ⊙ c_{t-1} + b_f)
        g_t = g(x_t W_c + h_{t-1} U_c + b_c)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        o_t = σ(x_t W_o + h_{t-1} U_o + p_o ⊙ c_t + b_o)
        h_t = o_t ⊙ g(c_t)

    The output gate looks at the new state ``c_t``, the other two at
    ``c_{t-1}``. Keras and PyTorch have no such cell.

    Args:
        units, activation, recurrent_activation, unit_forget_bias, and the
            rest: as ``LSTMCell``.
        peephole_initializer, peephole_regularizer, peephole_constraint:
            for ``peephole_kernel`` (default zeros: the cell starts as a
            plain LSTM).

    Returns:
        ``(h_t, [h_t, c_t])``.
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        unit_forget_bias=True,
        peephole_initializer="zeros",
        peephole_regularizer=None,
        peephole_constraint=None,
        **kwargs,
    ):
        super().__init__(
            units, activation=activation,
            recurrent_activation=recurrent_activation,
            unit_forget_bias=unit_forget_bias, **kwargs,
        )
        self.peephole_initializer = keras.initializers.get(
            peephole_initializer
        )
        self.peephole_regularizer = keras.regularizers.get(
            peephole_regularizer
        )
        self.peephole_constraint = keras.constraints.get(peephole_constraint)

    def build(self, input_shape):
        super().build(input_shape)
        self.peephole_kernel = self.add_weight(
            shape=(3 * self.units,),
            name="peephole_kernel",
            initializer=self.peephole_initializer,
            regularizer=self.peephole_regularizer,
            constraint=self.peephole_constraint,
        )

    def step_parameters(self, weight_mask=None):
        return [self.recurrent_weights(weight_mask),
                ops.convert_to_tensor(self.peephole_kernel)]

    def step(self, projected, states, parameters, recurrent_mask=None):
        recurrent_kernel, peepholes = parameters
        p_i, p_f, p_o = ops.split(peepholes, 3)
        h_prev, c_prev = states
        z = projected + ops.matmul(
            apply_mask(h_prev, recurrent_mask), recurrent_kernel
        )
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i + p_i * c_prev)
        f = self.recurrent_activation(z_f + p_f * c_prev)
        g = self.activation(z_c)
        c = f * c_prev + i * g
        o = self.recurrent_activation(z_o + p_o * c)
        g_c = self.activation(c)
        h = o * g_c
        return [h, c], (i, f, g, o, g_c)

    def fused_step_backward(
        self, cache, prev_states, new_states, d_states, parameters,
        recurrent_mask=None,
    ):
        recurrent_kernel, peepholes = parameters
        p_i, p_f, p_o = ops.split(peepholes, 3)
        i, f, g, o, g_c = ops.split(cache, 5, axis=-1)
        c_prev = prev_states[1]
        d_h, d_c = d_states
        sigma_prime = output_derivative(self.recurrent_activation)
        g_prime = output_derivative(self.activation)
        # h = o ⊙ g(c), o = σ(z_o + p_o ⊙ c), c = f ⊙ c_prev + i ⊙ g
        d_z_o = d_h * g_c * sigma_prime(o)
        d_c = d_c + d_h * o * g_prime(g_c) + d_z_o * p_o
        d_z_i = d_c * g * sigma_prime(i)
        d_z_f = d_c * c_prev * sigma_prime(f)
        d_z = ops.concatenate(
            [d_z_i, d_z_f, d_c * i * g_prime(g), d_z_o], axis=-1
        )
        d_h_prev = apply_mask(
            matmul_transposed(d_z, recurrent_kernel), recurrent_mask
        )
        d_c_prev = d_c * f + d_z_i * p_i + d_z_f * p_f
        return d_z, [d_h_prev, d_c_prev], None

    def fused_parameter_gradients(
        self, prev_states, caches, d_recurrent, parameters, recurrent_mask=None
    ):
        h_in = apply_mask(prev_states[0], recurrent_mask)
        c_prev = prev_states[1]
        i, f, g, _, _ = ops.split(caches, 5, axis=-1)
        c = f * c_prev + i * g
        d_z_i, d_z_f, _, d_z_o = ops.split(d_recurrent, 4, axis=-1)
        d_peepholes = ops.concatenate(
            [time_sum(d_z_i * c_prev), time_sum(d_z_f * c_prev),
             time_sum(d_z_o * c)],
            axis=-1,
        )
        return [time_matmul(h_in, d_recurrent), d_peepholes]

    def get_config(self):
        return {
            **super().get_config(),
            "peephole_initializer": keras.initializers.serialize(
                self.peephole_initializer
            ),
            "peephole_regularizer": keras.regularizers.serialize(
                self.peephole_regularizer
            ),
            "peephole_constraint": keras.constraints.serialize(
                self.peephole_constraint
            ),
        }
