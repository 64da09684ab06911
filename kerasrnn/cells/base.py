"""The contract every kerasrnn cell follows, and the weights they share.

A cell computes one time step. To let a sequence layer keep the time loop
lean, each step is split in two parts:

* ``project_inputs(x)``: the input part ``x W (+ b_x)`` for *all* gates. It has
  no time dependency, so ``RNN`` applies it to the whole sequence as one
  matmul before the loop.
* ``recurrent_step(projected, states)``: everything that needs ``h_{t-1}``.
  This is the only work done per step.

``call(inputs, states)`` chains the two and is the Keras cell contract, so a
cell also works on its own (a decoder step, a Python loop, Keras' own
``keras.layers.RNN``).

Weights use Keras' names, shapes and gate orders: ``kernel (input_dim, G*H)``,
``recurrent_kernel (H, G*H)``, ``bias``. A Keras built-in layer's weights load
into the matching kerasrnn cell unchanged.
"""

import keras
from keras import ops

from kerasrnn.validation import check_int
from kerasrnn.validation import check_rate


def fresh_initializer(initializer):
    """A new initializer with ``initializer``'s config.

    An unseeded Keras initializer object draws its seed once, so one
    object used for several weights gives them identical values (both
    directions of a bidirectional layer, every layer of a stack); as Keras
    itself does for its sublayers, each weight gets its own copy. A seeded
    initializer stays seeded: its copies repeat the same values, as the
    user asked. Strings and configs pass unchanged (Keras builds a new
    object from them)."""
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


def unit_forget_bias(initializer, units, dtype=None):
    """An LSTM bias ``[b_i, b_f, b_c, b_o]`` (Keras' gate order) with
    ``b_f = 1`` and the rest from ``initializer`` (Jozefowicz et al.
    2015; Keras' ``unit_forget_bias``)."""
    return ops.concatenate(
        [
            initializer((units,), dtype=dtype),
            ops.ones((units,), dtype=dtype),
            initializer((2 * units,), dtype=dtype),
        ]
    )


def output_derivative(activation):
    """``g'`` written in terms of the output ``y = g(a)``, or None.

    The fused time loop (``kerasrnn.layers.fused_loop``) back-propagates
    through cached activations, so it supports the activations whose
    derivative is a function of their output.
    """
    if activation is keras.activations.tanh:
        return lambda y: 1 - y * y
    if activation is keras.activations.sigmoid:
        return lambda y: y * (1 - y)
    if activation is keras.activations.relu:
        return lambda y: ops.cast(y > 0, y.dtype)
    if activation is keras.activations.linear:
        return ops.ones_like
    return None


def get_activation(name, value):
    """``keras.activations.get`` with an error that names the argument."""
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Unknown `{name}`: {value!r}. Expected a Keras activation name "
            "such as 'tanh', 'sigmoid' or 'relu', or a callable."
        ) from error


class RecurrentCell(keras.layers.Layer):
    """Base class of the cells: arguments, weights, dropout masks.

    A subclass states its ``gate_names`` (the ``G`` gate blocks along the
    ``G*H`` axis, in Keras' order) and ``state_names`` (in ``state_size``
    order; ``h`` is also the output, and exports name state tensors after
    them), and writes its equations once, in ``step``. When its weights
    differ from ``kernel (F, G*H)``, ``recurrent_kernel (H, G*H)``, ``bias
    (G*H,)`` it overrides ``recurrent_kernel_shape``, ``bias_shape`` /
    ``input_bias`` or ``build``. A backward for the fused training path
    (``fused_step_backward``, ``fused_parameter_gradients``) is optional.
    ``kerasrnn.cells.register_cell`` makes it known to the weight layouts,
    the exporters and the models' ``cell=`` argument.

    Dropout follows Gal & Ghahramani (2016): ``dropout`` masks the inputs and
    ``recurrent_dropout`` masks ``h_{t-1}`` where it enters the recurrent
    matmul, with one mask per sequence. ``recurrent_weight_dropout`` is
    DropConnect on the recurrent weights (the weight-dropped LSTM of Merity
    et al. 2018): one mask on ``recurrent_kernel`` for the whole batch,
    ``U ⊙ M / (1 - p)``, in every loop, the fused one included. ``RNN``
    draws the masks once before its loop (``dropout_masks``,
    ``weight_dropout_mask``); calling the cell directly draws new masks on
    every call. All are off at inference.
    """

    gate_names = ("h",)
    state_names = ("h",)

    @property
    def gate_count(self):
        """G, the number of gate blocks."""
        return len(self.gate_names)

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_weight_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_int("units", units)
        self.activation = get_activation("activation", activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(
            recurrent_regularizer
        )
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(
            recurrent_constraint
        )
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate(
            "recurrent_dropout", recurrent_dropout
        )
        self.recurrent_weight_dropout = check_rate(
            "recurrent_weight_dropout", recurrent_weight_dropout
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def state_size(self):
        return [self.units] * len(self.state_names)

    @property
    def output_size(self):
        return self.units

    @property
    def recurrent_kernel_shape(self):
        return (self.units, self.gate_count * self.units)

    @property
    def bias_shape(self):
        return (self.gate_count * self.units,)

    def bias_initial_value(self, shape, dtype=None):
        return self.bias_initializer(shape, dtype=dtype)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs a known feature size (the last "
                f"axis of the input). Received: input_shape={input_shape}"
            )
        width = self.gate_count * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=self.recurrent_kernel_shape,
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self.bias_shape,
                name="bias",
                initializer=self.bias_initial_value,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    @property
    def input_bias(self):
        """The bias added to ``x W`` (None without bias)."""
        return self.bias

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for size in self.state_size
        ]

    def dropout_masks(self, batch_size, input_dim, training=False):
        """One input mask ``(B, input_dim)`` and one recurrent mask ``(B, H)``.

        Either is None when its rate is 0 or when not training.
        """
        input_mask = recurrent_mask = None
        if training and self.dropout > 0:
            input_mask = keras.random.dropout(
                ops.ones((batch_size, input_dim), dtype=self.compute_dtype),
                rate=self.dropout,
                seed=self.seed_generator,
            )
        if training and self.recurrent_dropout > 0:
            recurrent_mask = keras.random.dropout(
                ops.ones((batch_size, self.units), dtype=self.compute_dtype),
                rate=self.recurrent_dropout,
                seed=self.seed_generator,
            )
        return input_mask, recurrent_mask

    def weight_dropout_mask(self, training=False):
        """The DropConnect mask on ``recurrent_kernel`` (its shape, scaled
        by ``1 / (1 - p)``), or None when the rate is 0 or not training."""
        if not training or self.recurrent_weight_dropout == 0:
            return None
        return keras.random.dropout(
            ops.ones(self.recurrent_kernel_shape, dtype=self.compute_dtype),
            rate=self.recurrent_weight_dropout,
            seed=self.seed_generator,
        )

    def recurrent_weights(self, weight_mask=None):
        """``recurrent_kernel``, times the DropConnect mask when given."""
        kernel = ops.convert_to_tensor(self.recurrent_kernel)
        return kernel if weight_mask is None else kernel * weight_mask

    def project_inputs(self, inputs):
        """``x W + b_x`` for all gates; ``inputs`` has any leading axes."""
        projected = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            projected = projected + self.input_bias
        return projected

    def step_parameters(self, weight_mask=None):
        """The tensors ``step`` reads besides its inputs and states (``U``,
        and whatever else the recurrence uses), read once per sequence;
        ``U`` through ``recurrent_weights(weight_mask)``."""
        return [self.recurrent_weights(weight_mask)]

    def step(self, projected, states, parameters, recurrent_mask=None):
        """The cell's equations: one step given ``projected = x_t W + b_x``.

        This is the one place a cell writes its forward. Every loop runs
        it: ``recurrent_step`` (the generic loop, a decoder step, a Python
        loop), the inference loop and the fused training loop, which keeps
        ``cache`` for its backward.

        Args:
            projected: ``(B, G*H)``, the input part of every gate.
            states: the states before the step, in ``state_size`` order.
            parameters: ``step_parameters(weight_mask)``.
            recurrent_mask: None, or the ``(B, H)`` recurrent dropout mask
                that multiplies ``h_{t-1}`` where it enters the recurrent
                product.

        Returns:
            ``(new_states, cache)``: the states after the step (``h``
            first; ``h`` is the output) and a tuple of ``(B, ·)`` tensors
            that ``fused_step_backward`` reads (empty when ``fused_cache``
            is False).
        """
        raise NotImplementedError(
            f"{type(self).__name__} defines neither `step` nor "
            "`recurrent_step`: a kerasrnn cell must define its equations "
            "as step(projected, states, parameters, recurrent_mask) -> "
            "(new_states, cache) (see RecurrentCell.step), or at least "
            "recurrent_step(projected, states, recurrent_mask) -> (output, "
            "new_states) (it then runs on the generic loop)."
        )

    def recurrent_step(self, projected, states, recurrent_mask=None):
        """``step`` as the loops call it: returns ``(output, new_states)``.

        ``recurrent_mask`` (or None) multiplies ``h_{t-1}`` where it enters
        the recurrent matmul. A user cell may define this alone instead of
        ``step``: it then runs on the generic loop.
        """
        new_states, _ = self.step(
            projected, list(states), self.step_parameters(), recurrent_mask
        )
        return new_states[0], new_states

    # The fused training path: ``step`` with its cache, and a hand-written
    # backward. ``RNN`` uses it when ``supports_fused``
    # (layers/fused_loop.py); a cell without a backward trains on the
    # generic loop, through autodiff.

    # Whether ``step`` returns a cache (False: the backward needs only the
    # states before and after the step).
    fused_cache = True
    # Whether the gradient at the recurrent matmul's output (d_recurrent)
    # differs from the one at the input projection (d_projected).
    fused_separate_recurrent_gradient = False

    @property
    def supports_fused(self):
        """Whether the fused path applies (``fused_path_note`` is None)."""
        return self.fused_path_note is None

    @property
    def fused_path_note(self):
        """None when ``RNN`` can train this cell on the fused path, else
        why it runs the generic loop instead (same values, autodiff
        gradients): the cell's class must define its ``step`` and a
        backward for it (``fused_step_backward``,
        ``fused_parameter_gradients``) and not override
        ``recurrent_step``, and every activation must have a derivative
        known to the fused path."""
        name = type(self).__name__
        missing = [
            method for method in ("step", "fused_step_backward",
                                  "fused_parameter_gradients")
            if getattr(type(self), method) is getattr(RecurrentCell, method)
        ]
        if missing:
            return (f"{name} does not define {', '.join(missing)}: it "
                    "trains on the generic loop.")
        if type(self).recurrent_step is not RecurrentCell.recurrent_step:
            return (f"{name} overrides recurrent_step, so its step may not "
                    "be its equations: it trains on the generic loop.")
        for activation in self.fused_activations():
            if output_derivative(activation) is None:
                return (
                    f"{name}'s activation "
                    f"{keras.activations.serialize(activation)!r} has no "
                    "derivative written in terms of its output (tanh, "
                    "sigmoid, relu and linear do): it trains on the generic "
                    "loop."
                )
        return None

    def fused_activations(self):
        return [self.activation]

    def fused_step_backward(
        self, cache, prev_states, new_states, d_states, parameters,
        recurrent_mask=None,
    ):
        """Back-propagates one step.

        Args:
            cache: the step's cache from ``step``, concatenated along the
                last axis.
            prev_states, new_states: the states before and after the step.
            d_states: gradients of the loss w.r.t. ``new_states``.

        Returns:
            ``(d_projected, d_prev_states, d_recurrent)`` where
            ``d_recurrent``, one ``(B, K)`` tensor, feeds
            ``fused_parameter_gradients`` (None unless
            ``fused_separate_recurrent_gradient``: then ``d_projected``
            does).
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no fused backward; RNN trains it on "
            "the generic loop (supports_fused is False)."
        )

    def fused_parameter_gradients(
        self, prev_states, caches, d_recurrent, parameters, recurrent_mask=None
    ):
        """Gradients of ``step_parameters`` from the whole sequence.

        Every argument is stacked over time (``(T, B, ...)``), so each
        weight gradient is one large matmul outside the loop.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no fused backward; RNN trains it on "
            "the generic loop (supports_fused is False)."
        )

    def call(self, inputs, states, training=False):
        if not isinstance(states, (list, tuple)):
            states = [states]
        batch_size = ops.shape(inputs)[0]
        input_mask, recurrent_mask = self.dropout_masks(
            batch_size, inputs.shape[-1], training
        )
        if input_mask is not None:
            inputs = inputs * input_mask
        weight_mask = self.weight_dropout_mask(training)
        if weight_mask is None:
            return self.recurrent_step(
                self.project_inputs(inputs), list(states), recurrent_mask
            )
        self.check_weight_dropout()
        new_states, _ = self.step(
            self.project_inputs(inputs), list(states),
            self.step_parameters(weight_mask), recurrent_mask,
        )
        return new_states[0], new_states

    def check_weight_dropout(self):
        """DropConnect masks the ``U`` that ``step`` reads: a cell that
        runs its own ``recurrent_step`` cannot take it."""
        if type(self).recurrent_step is not RecurrentCell.recurrent_step:
            raise ValueError(
                f"{type(self).__name__} defines only recurrent_step; "
                "recurrent_weight_dropout needs its equations as `step` "
                "(which reads U from step_parameters). Received: "
                f"recurrent_weight_dropout={self.recurrent_weight_dropout}"
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "recurrent_regularizer": keras.regularizers.serialize(
                    self.recurrent_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(
                    self.bias_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "recurrent_constraint": keras.constraints.serialize(
                    self.recurrent_constraint
                ),
                "bias_constraint": keras.constraints.serialize(
                    self.bias_constraint
                ),
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "recurrent_weight_dropout": self.recurrent_weight_dropout,
                "seed": self.seed,
            }
        )
        return config


def apply_mask(h, recurrent_mask):
    """``h * mask`` when a recurrent dropout mask is given, else ``h``."""
    return h if recurrent_mask is None else h * recurrent_mask


# The two matmuls below serve the fused backward, which runs on TensorFlow
# only (``layers/fused_loop.py``).


def time_matmul(left, right):
    """``Σ_t left[t]ᵀ right[t]`` for ``(T, B, M)`` and ``(T, B, N)``."""
    import tensorflow as tf

    left = ops.reshape(left, (-1, ops.shape(left)[-1]))
    right = ops.reshape(right, (-1, ops.shape(right)[-1]))
    return tf.linalg.matmul(left, right, transpose_a=True)


def matmul_transposed(left, right):
    """``left rightᵀ`` without materialising the transpose (the fused
    backward's ``dz Uᵀ``, once per step)."""
    import tensorflow as tf

    return tf.linalg.matmul(left, right, transpose_b=True)


def time_sum(values):
    """``Σ_t Σ_b values[t, b]`` for ``(T, B, N)``."""
    return ops.sum(values, axis=(0, 1))
