"""The independently recurrent cell (IndRNN, Li et al. 2018)."""

import keras
from keras import ops

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.base import apply_mask
from kerasrnn.cells.base import output_derivative
from kerasrnn.cells.base import time_sum
from kerasrnn.cells.registry import register_cell


@keras.saving.register_keras_serializable(package="kerasrnn")
class MaxAbsolute(keras.constraints.Constraint):
    """Clips every entry of a weight to ``[-max_value, max_value]``."""

    def __init__(self, max_value):
        if isinstance(max_value, bool) or not isinstance(
            max_value, (int, float)
        ) or max_value <= 0:
            raise ValueError(
                "`max_value` must be a number > 0. Received: "
                f"max_value={max_value!r}"
            )
        self.max_value = float(max_value)

    def __call__(self, w):
        return ops.clip(w, -self.max_value, self.max_value)

    def get_config(self):
        return {"max_value": self.max_value}


@register_cell(
    "indrnn",
    gate_orders={"onnx": ("h",)},
    # An ONNX RNN node with R = diag(u).
    onnx_operator="RNN",
    recurrent="diagonal",
)
@keras.saving.register_keras_serializable(package="kerasrnn")
class IndRNNCell(RecurrentCell):
    """IndRNN: every unit has its own recurrent weight (Li et al. 2018).

    Equation, with ``W = kernel (F, H)``, ``u = recurrent_kernel (H,)``,
    ``b = bias (H,)`` and ``g = activation`` (ReLU)::

        h_t = g(x_t W + u ⊙ h_{t-1} + b)

    The recurrence is elementwise, so unit ``n``'s gradient through time
    is ``Π_t u_n g'(a_{t,n})``: with ReLU and ``|u_n| ≤ 1`` it neither
    explodes nor (while the unit is active and ``u_n`` near 1) vanishes,
    which is how IndRNN learns dependencies over thousands of steps. The
    bound on ``|u|`` is ``recurrent_max_abs`` (a clip after each update;
    Li et al. bound it by ``2^{1/T}``-style limits for their tasks).

    Args:
        units: H.
        activation: ``g``, default ``"relu"``.
        recurrent_initializer: default uniform on ``[0, 1]`` (Li et al.).
        recurrent_max_abs: the bound on ``|u|`` (default 1.0; None: no
            bound). It is the ``recurrent_constraint``; pass one or the
            other.
        Other arguments as in ``SimpleRNNCell``.

    Returns:
        ``(h_t, [h_t])``.

    Reference:
        Li, Li, Cook, Zhu, Gao, "Independently Recurrent Neural Network
        (IndRNN): Building A Longer and Deeper RNN", CVPR 2018.
    """

    gate_names = ("h",)
    fused_cache = False

    def __init__(
        self,
        units,
        activation="relu",
        recurrent_initializer=None,
        recurrent_max_abs=1.0,
        recurrent_constraint=None,
        **kwargs,
    ):
        if recurrent_initializer is None:
            recurrent_initializer = keras.initializers.RandomUniform(0.0, 1.0)
        if recurrent_max_abs is not None:
            if recurrent_constraint is not None:
                raise ValueError(
                    "`recurrent_max_abs` is the recurrent constraint of an "
                    "IndRNN; pass it or `recurrent_constraint`, not both. "
                    f"Received: recurrent_max_abs={recurrent_max_abs!r}, "
                    f"recurrent_constraint={recurrent_constraint!r}"
                )
            recurrent_constraint = MaxAbsolute(recurrent_max_abs)
        super().__init__(
            units, activation=activation,
            recurrent_initializer=recurrent_initializer,
            recurrent_constraint=recurrent_constraint, **kwargs,
        )
        self.recurrent_max_abs = recurrent_max_abs

    @property
    def recurrent_kernel_shape(self):
        return (self.units,)

    def step(self, projected, states, parameters, recurrent_mask=None):
        (u,) = parameters
        h_prev = apply_mask(states[0], recurrent_mask)
        # h_t = g(x_t W + b + u ⊙ h_{t-1})
        h = self.activation(projected + u * h_prev)
        return [h], ()

    def fused_step_backward(
        self, cache, prev_states, new_states, d_states, parameters,
        recurrent_mask=None,
    ):
        (u,) = parameters
        # h = g(a), a = x W + b + u ⊙ h_{t-1}
        d_a = d_states[0] * output_derivative(self.activation)(new_states[0])
        return d_a, [apply_mask(d_a * u, recurrent_mask)], None

    def fused_parameter_gradients(
        self, prev_states, caches, d_recurrent, parameters, recurrent_mask=None
    ):
        h_in = apply_mask(prev_states[0], recurrent_mask)
        return [time_sum(h_in * d_recurrent)]

    def get_config(self):
        config = super().get_config()
        config["recurrent_max_abs"] = self.recurrent_max_abs
        if self.recurrent_max_abs is not None:
            # Rebuilt from recurrent_max_abs.
            config["recurrent_constraint"] = None
        return config
