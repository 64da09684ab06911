"""The gated recurrent unit cell, in both reset placements."""

import keras
from keras import ops

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.base import apply_mask
from kerasrnn.cells.base import get_activation
from kerasrnn.cells.base import matmul_transposed
from kerasrnn.cells.base import output_derivative
from kerasrnn.cells.base import time_matmul
from kerasrnn.cells.base import time_sum
from kerasrnn.cells.registry import register_cell


@register_cell(
    "gru",
    # PyTorch: r, z, n (its n is Keras' h); ONNX: Keras' order.
    gate_orders={"torch": ("r", "z", "h"), "onnx": ("z", "r", "h")},
    onnx_operator="GRU",
    recurrent_bias="reset_after",
    keras_layer="GRU",
    torch_module="GRU",
)
@keras.saving.register_keras_serializable(package="kerasrnn")
class GRUCell(RecurrentCell):
    """GRU cell (Cho et al. 2014), reset gate before or after the matmul.

    Equations, with ``[W_z W_r W_h] = kernel``, ``[U_z U_r U_h] =
    recurrent_kernel``, σ = ``recurrent_activation``, ``g = activation``::

        z_t = σ(x_t W_z + b_z + h_{t-1} U_z + b'_z)           update gate
        r_t = σ(x_t W_r + b_r + h_{t-1} U_r + b'_r)           reset gate
        reset_after=True  (cuDNN, PyTorch, ONNX linear_before_reset=1):
            n_t = g(x_t W_h + b_h + r_t ⊙ (h_{t-1} U_h + b'_h))
        reset_after=False (Cho et al. 2014, ONNX linear_before_reset=0):
            n_t = g(x_t W_h + b_h + (r_t ⊙ h_{t-1}) U_h)
        h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ n_t

    With ``reset_after=True`` the bias has shape ``(2, 3H)``: row 0 is the
    input bias ``b``, row 1 the recurrent bias ``b'``. With
    ``reset_after=False`` it is one ``(3H,)`` vector ``b`` (no ``b'``).

    Args:
        units: H.
        activation: ``g``, default ``"tanh"``.
        recurrent_activation: σ, default ``"sigmoid"``.
        reset_after: where the reset gate applies (default True, as Keras).
        Other arguments as in ``keras.layers.GRUCell``.

    Call arguments:
        inputs: ``(batch, input_dim)``.
        states: ``[h_{t-1}]``.

    Returns:
        ``(h_t, [h_t])``.
    """

    gate_names = ("z", "r", "h")

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        **kwargs,
    ):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = get_activation(
            "recurrent_activation", recurrent_activation
        )
        self.reset_after = bool(reset_after)

    @property
    def bias_shape(self):
        if self.reset_after:
            return (2, 3 * self.units)
        return (3 * self.units,)

    @property
    def input_bias(self):
        return self.bias[0] if self.reset_after else self.bias

    @property
    def fused_separate_recurrent_gradient(self):
        # reset_after: the h_h block of the recurrent gradient carries r.
        return self.reset_after

    def fused_activations(self):
        return [self.activation, self.recurrent_activation]

    def step_parameters(self, weight_mask=None):
        kernel = self.recurrent_weights(weight_mask)
        if not self.reset_after:
            # [U_z U_r] and U_h, sliced once instead of at every step.
            return [kernel[:, : 2 * self.units], kernel[:, 2 * self.units :]]
        if self.use_bias:
            return [kernel, self.bias[1]]
        return [kernel]

    def step(self, projected, states, parameters, recurrent_mask=None):
        h_prev = states[0]
        h_in = apply_mask(h_prev, recurrent_mask)
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        if self.reset_after:
            inner = ops.matmul(h_in, parameters[0])
            if self.use_bias:
                inner = inner + parameters[1]
            h_z, h_r, h_h = ops.split(inner, 3, axis=-1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            n = self.activation(x_h + r * h_h)
            cache = (z, r, n, h_h)
        else:
            kernel_zr, kernel_h = parameters
            h_z, h_r = ops.split(ops.matmul(h_in, kernel_zr), 2, axis=-1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            n = self.activation(x_h + ops.matmul(r * h_in, kernel_h))
            cache = (z, r, n)
        h = z * h_prev + (1 - z) * n
        return [h], cache

    def fused_step_backward(
        self, cache, prev_states, new_states, d_states, parameters,
        recurrent_mask=None,
    ):
        h_prev = prev_states[0]
        h_in = apply_mask(h_prev, recurrent_mask)
        d_h = d_states[0]
        sigma_prime = output_derivative(self.recurrent_activation)
        if self.reset_after:
            z, r, n, h_h = ops.split(cache, 4, axis=-1)
        else:
            z, r, n = ops.split(cache, 3, axis=-1)
        # h = z ⊙ h_prev + (1 - z) ⊙ n
        d_a_n = d_h * (1 - z) * output_derivative(self.activation)(n)
        d_a_z = d_h * (h_prev - n) * sigma_prime(z)
        if self.reset_after:
            # n = g(x_h + r ⊙ (h U_h + b'_h))
            d_a_r = d_a_n * h_h * sigma_prime(r)
            d_inner = ops.concatenate([d_a_z, d_a_r, d_a_n * r], axis=-1)
            d_h_in = matmul_transposed(d_inner, parameters[0])
        else:
            # n = g(x_h + (r ⊙ h) U_h)
            kernel_zr, kernel_h = parameters
            d_rh = matmul_transposed(d_a_n, kernel_h)
            d_a_r = d_rh * h_in * sigma_prime(r)
            d_h_in = d_rh * r + matmul_transposed(
                ops.concatenate([d_a_z, d_a_r], axis=-1), kernel_zr
            )
            d_inner = None  # the same as d_projected
        d_projected = ops.concatenate([d_a_z, d_a_r, d_a_n], axis=-1)
        d_h_prev = d_h * z + apply_mask(d_h_in, recurrent_mask)
        return d_projected, [d_h_prev], d_inner

    def fused_parameter_gradients(
        self, prev_states, caches, d_recurrent, parameters, recurrent_mask=None
    ):
        h_in = apply_mask(prev_states[0], recurrent_mask)
        if self.reset_after:
            gradients = [time_matmul(h_in, d_recurrent)]
            if self.use_bias:
                gradients.append(time_sum(d_recurrent))
            return gradients
        units = self.units
        r = caches[..., units : 2 * units]
        return [
            time_matmul(h_in, d_recurrent[..., : 2 * units]),
            time_matmul(r * h_in, d_recurrent[..., 2 * units :]),
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "recurrent_activation": keras.activations.serialize(
                    self.recurrent_activation
                ),
                "reset_after": self.reset_after,
            }
        )
        return config
