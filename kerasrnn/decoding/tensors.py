"""The few tensor operations of the searches and the decoder that
``keras.ops`` does not give the same on every backend.

* stateless draws from an explicit int32 seed pair ``(2,)``, usable inside
  a loop body (``keras.random`` takes only ints or a ``SeedGenerator``,
  whose state a JAX loop body cannot update): TensorFlow's
  ``tf.random.stateless_*``, JAX's ``jax.random`` with the pair as its
  raw key, a ``torch.Generator`` seeded with the pair on PyTorch (eager);
* ``top_k`` with ties broken towards the lower index on every backend
  (``torch.topk`` does not promise it; the beam search relies on it);
* ``is_concrete``: whether a tensor's values can be read now (not a graph
  or a JAX trace), for the eager checks of ids.
"""

import keras
import numpy as np
from keras import ops


def backend():
    return keras.config.backend()


def is_tensor(value):
    """A tensor of the backend (or a Keras variable)."""
    return ops.is_tensor(value) or isinstance(value, keras.Variable)


def is_concrete(tensor):
    """Whether ``tensor``'s values can be read eagerly."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if name == "jax":
        import jax

        return not isinstance(tensor, jax.core.Tracer)
    return True


def rank(tensor):
    return len(tensor.shape)


def dtype_name(tensor):
    return keras.backend.standardize_dtype(tensor.dtype)


def top_k(values, k):
    """``(values, indices)`` of the ``k`` largest entries of the last axis,
    largest first, equal values in index order."""
    if backend() == "torch":
        import torch

        values = ops.convert_to_tensor(values)
        ordered, indices = torch.sort(values, dim=-1, descending=True,
                                      stable=True)
        return ordered[..., :k], indices[..., :k].to(torch.int32)
    best, indices = ops.top_k(values, k)
    return best, ops.cast(indices, "int32")


def take_rows(tensor, indices):
    """``tensor (B, N, ...)`` at ``indices (B, M)`` of each row: ``(B, M,
    ...)`` (TensorFlow's ``tf.gather(..., batch_dims=1)``)."""
    extra = rank(tensor) - 2
    if extra == 0:
        return ops.take_along_axis(tensor, indices, axis=1)
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(tensor, indices, batch_dims=1)
    expanded = ops.reshape(indices, (*indices.shape, *([1] * extra)))
    expanded = ops.broadcast_to(
        expanded, (*indices.shape, *tensor.shape[2:])
    )
    return ops.take_along_axis(tensor, expanded, axis=1)


def _torch_device():
    from keras.src.backend.torch.core import get_device

    return get_device()


def _torch_generator(seed):
    import torch

    first, second = (int(v) for v in ops.convert_to_numpy(seed))
    generator = torch.Generator(device=_torch_device())
    # torch's CPU generator keeps 32 bits of its seed: mix both halves in.
    mixed = np.random.SeedSequence(
        [first & 0xFFFFFFFF, second & 0xFFFFFFFF]
    ).generate_state(1)[0]
    generator.manual_seed(int(mixed))
    return generator


def stateless_categorical(logits, seed):
    """One draw per row of ``softmax(logits (B, V))``: int32 ``(B,)``,
    a function of ``seed`` (int32 ``(2,)``) alone."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_categorical(
            logits, 1, seed=seed, dtype="int32"
        )[:, 0]
    if name == "jax":
        import jax

        key = ops.cast(seed, "uint32")
        return jax.random.categorical(key, logits, axis=-1).astype("int32")
    import torch

    probabilities = torch.softmax(ops.cast(logits, "float32"), dim=-1)
    return torch.multinomial(
        probabilities, 1, generator=_torch_generator(seed)
    )[:, 0].to(torch.int32)


def stateless_uniform(shape, seed):
    """Float32 uniform ``[0, 1)`` draws of ``shape``, a function of
    ``seed`` alone."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed=seed)
    if name == "jax":
        import jax

        return jax.random.uniform(ops.cast(seed, "uint32"), tuple(shape))
    import torch

    return torch.rand(tuple(int(s) for s in shape),
                      generator=_torch_generator(seed),
                      device=_torch_device())


def random_seed():
    """An int32 scalar seed from the global generator: TensorFlow's
    (reproducible under ``keras.utils.set_random_seed``) or Keras'."""
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.uniform([], maxval=2**31 - 1, dtype="int32")
    value = keras.random.randint((), 0, 2**31 - 1, dtype="int32")
    return int(np.asarray(ops.convert_to_numpy(value)))
