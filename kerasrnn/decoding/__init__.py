"""Decoding from any autoregressive model, independent of the model.

The model is a step function and a state::

    step_fn(token_ids, state) -> (logits, state)
        token_ids: int32 (B,)      the previous token of each row
        logits:    float (B, V)    scores of the next token
        state:     any nest of tensors whose leading axis is B

Searches: ``greedy_search``, ``sample`` (temperature, top-k, top-p) and
``beam_search`` (width, GNMT length penalty, n-best). All are batched with
per-row stopping at ``end_id``, honour ``max_length`` and ``min_length``,
return a ``DecodingResult`` and run on every Keras backend: one
``keras.ops.while_loop`` over fixed-size buffers (``tf.while_loop``, so
eagerly, inside ``tf.function`` and under XLA on TensorFlow;
``lax.while_loop`` on JAX; a Python loop on PyTorch).

Example:

>>> import tensorflow as tf
>>> def step_fn(token_ids, state):       # always predicts token (t + 1) % 4
...     logits = tf.one_hot((state + 1) % 4, 4) * 10.0
...     return logits, state + 1
>>> result = greedy_search(step_fn, start_ids=[0], initial_state=tf.zeros(
...     [1], "int32"), end_id=3, max_length=5)
>>> result.ids.numpy().tolist()
[[[1, 2, 3, 0, 0]]]
"""

from kerasrnn.decoding.beam import beam_search
from kerasrnn.decoding.beam import gather_beams
from kerasrnn.decoding.beam import length_penalty
from kerasrnn.decoding.beam import tile_batch
from kerasrnn.decoding.greedy import greedy_search
from kerasrnn.decoding.greedy import sample
from kerasrnn.decoding.logits import top_k_filter
from kerasrnn.decoding.logits import top_p_filter
from kerasrnn.decoding.options import SEARCHES as METHODS
from kerasrnn.decoding.result import DecodingResult


def decode(
    step_fn, start_ids, initial_state, end_id, max_length, method="greedy",
    **options,
):
    """Runs the search named by ``method`` (``"greedy"``, ``"sample"`` or
    ``"beam"``) with its keyword ``options``; see each search."""
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {sorted(METHODS)}. Received: "
            f"method={method!r}"
        )
    return METHODS[method](
        step_fn, start_ids, initial_state, end_id, max_length, **options
    )


__all__ = [
    "METHODS",
    "DecodingResult",
    "beam_search",
    "decode",
    "gather_beams",
    "greedy_search",
    "length_penalty",
    "sample",
    "tile_batch",
    "top_k_filter",
    "top_p_filter",
]
