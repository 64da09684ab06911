"""Logit processors: temperature, top-k, top-p, forbidding tokens.

Each takes float ``logits (B, V)`` and returns logits of the same shape in
which excluded tokens are ``-inf``, so ``softmax`` gives them probability 0.
"""

import tensorflow as tf

from kerasrnn.decoding.checks import scalar_tensor

NEG_INF = float("-inf")


def check_temperature(temperature):
    """``temperature`` must be a number > 0 (use greedy search for 0), or
    a scalar tensor checked by the caller."""
    if tf.is_tensor(temperature):
        return scalar_tensor("temperature", temperature, "float32")
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float)
    ) or not temperature > 0:
        raise ValueError(
            "`temperature` must be a number > 0; for temperature -> 0 use "
            "greedy search (method='greedy'). Received: "
            f"temperature={temperature!r}"
        )
    return float(temperature)


def check_top_k(top_k):
    """``top_k`` must be None or an integer >= 1 (or a scalar tensor
    checked by the caller)."""
    if top_k is None:
        return None
    if tf.is_tensor(top_k):
        return scalar_tensor("top_k", top_k, "int32")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(
            "`top_k` must be None or an integer >= 1. Received: "
            f"top_k={top_k!r}"
        )
    return top_k


def check_top_p(top_p):
    """``top_p`` must be None or a number in (0, 1] (or a scalar tensor
    checked by the caller)."""
    if top_p is None:
        return None
    if tf.is_tensor(top_p):
        return scalar_tensor("top_p", top_p, "float32")
    if isinstance(top_p, bool) or not isinstance(
        top_p, (int, float)
    ) or not 0.0 < top_p <= 1.0:
        raise ValueError(
            f"`top_p` must be None or a number in (0, 1]. Received: "
            f"top_p={top_p!r}"
        )
    return float(top_p)


def apply_temperature(logits, temperature):
    """``logits / temperature``: sharper below 1, flatter above."""
    if not tf.is_tensor(temperature) and temperature == 1.0:
        return logits
    return logits / temperature


def top_k_filter(logits, top_k):
    """Keeps the ``top_k`` largest logits of each row (ties at the k-th
    value are all kept); ``top_k`` larger than V keeps everything."""
    k = tf.minimum(top_k, tf.shape(logits)[-1])
    kth = tf.math.top_k(logits, k=k).values[:, -1:]
    return tf.where(logits >= kth, logits, NEG_INF)


def top_p_filter(logits, top_p):
    """Nucleus filter (Holtzman et al. 2020): keeps the smallest set of
    most probable tokens whose probability sum reaches ``top_p``.

    With ``p`` sorted descending, token ``j`` is kept when
    ``Σ_{i<j} p_i < top_p``, so the most probable token is always kept.
    Tokens tied with the last kept logit are kept too.
    """
    if not tf.is_tensor(top_p) and top_p >= 1.0:
        return logits
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    mass_before = tf.cumsum(
        tf.nn.softmax(sorted_logits, axis=-1), axis=-1, exclusive=True
    )
    kept = tf.where(mass_before < top_p, sorted_logits, float("inf"))
    threshold = tf.reduce_min(kept, axis=-1, keepdims=True)
    filtered = tf.where(logits >= threshold, logits, NEG_INF)
    if tf.is_tensor(top_p):
        return tf.where(top_p >= 1.0, logits, filtered)
    return filtered


def forbid_token(logits, token_id, condition):
    """Sets column ``token_id`` to ``-inf`` where the scalar bool
    ``condition`` holds (used to forbid the end token before
    ``min_length``)."""
    columns = tf.range(tf.shape(logits)[-1])
    hit = tf.logical_and(tf.equal(columns, token_id), condition)
    return tf.where(hit[tf.newaxis, :], NEG_INF, logits)


def forbid_tokens(logits, token_ids):
    """Sets the columns ``token_ids`` (a tuple of ints) to ``-inf`` in
    every row: tokens that are never valid output, such as padding or the
    start token."""
    if not token_ids:
        return logits
    columns = tf.range(tf.shape(logits)[-1])
    hit = tf.reduce_any(
        tf.equal(columns[:, tf.newaxis], tf.constant(token_ids)), axis=-1
    )
    return tf.where(hit[tf.newaxis, :], NEG_INF, logits)
