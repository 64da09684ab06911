"""Gradients on whichever Keras backend the tests run on, for the parity
suites that every backend runs (``KERAS_BACKEND=jax|torch|tensorflow``):
TensorFlow's ``GradientTape``, ``jax.grad`` through a
``keras.StatelessScope``, or ``torch.autograd.grad``."""

import keras
import numpy as np


def gradients(function, inputs, variables):
    """``∂ function(*inputs) / ∂ (inputs, variables)`` as NumPy arrays.

    ``function`` returns a scalar tensor; ``inputs`` are arrays,
    ``variables`` Keras variables that ``function`` reads."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = function(*tensors)
        result = tape.gradient(value, [*tensors, *variables])
    elif backend == "jax":
        import jax

        def pure(input_values, variable_values):
            mapping = list(zip(variables, variable_values))
            with keras.StatelessScope(state_mapping=mapping):
                return function(*input_values)

        d_inputs, d_variables = jax.grad(pure, argnums=(0, 1))(
            [jax.numpy.asarray(a) for a in inputs],
            [v.value for v in variables],
        )
        result = [*d_inputs, *d_variables]
    elif backend == "torch":
        import torch

        with torch.enable_grad():
            tensors = [torch.tensor(np.asarray(a), requires_grad=True)
                       for a in inputs]
            value = function(*tensors)
            result = torch.autograd.grad(
                value, [*tensors, *(v.value for v in variables)]
            )
    else:
        raise ValueError(f"No gradients for backend {backend!r}")
    return [np.asarray(keras.ops.convert_to_numpy(g)) for g in result]
