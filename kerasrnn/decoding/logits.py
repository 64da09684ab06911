"""Logit processors: temperature, top-k, top-p, forbidding tokens.

Each takes float ``logits (B, V)`` and returns logits of the same shape in
which excluded tokens are ``-inf``, so ``softmax`` gives them probability 0.
"""

from keras import ops

from kerasrnn.decoding.checks import scalar_tensor
from kerasrnn.decoding.tensors import is_tensor

NEG_INF = float("-inf")


def check_temperature(temperature):
    """``temperature`` must be a number > 0 (use greedy search for 0), or
    a scalar tensor checked by the caller."""
    if is_tensor(temperature):
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
    if is_tensor(top_k):
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
    if is_tensor(top_p):
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
    if not is_tensor(temperature) and temperature == 1.0:
        return logits
    return logits / temperature


def top_k_filter(logits, top_k):
    """Keeps the ``top_k`` largest logits of each row (ties at the k-th
    value are all kept); ``top_k`` larger than V keeps everything."""
    vocabulary = ops.shape(logits)[-1]
    if not is_tensor(top_k) and isinstance(vocabulary, int):
        kth = ops.top_k(logits, k=min(top_k, vocabulary))[0][:, -1:]
    else:
        # A tensor k (one traced graph for every value): the k-th largest
        # of the sorted logits.
        k = ops.minimum(top_k, vocabulary)
        descending = ops.flip(ops.sort(logits, axis=-1), axis=-1)
        kth = ops.take(descending, ops.reshape(k - 1, (1,)), axis=-1)
    return ops.where(logits >= kth, logits, NEG_INF)


def top_p_filter(logits, top_p):
    """Nucleus filter (Holtzman et al. 2020): keeps the smallest set of
    most probable tokens whose probability sum reaches ``top_p``.

    With ``p`` sorted descending, token ``j`` is kept when
    ``Σ_{i<j} p_i < top_p``, so the most probable token is always kept.
    Tokens tied with the last kept logit are kept too.
    """
    if not is_tensor(top_p) and top_p >= 1.0:
        return logits
    sorted_logits = ops.flip(ops.sort(logits, axis=-1), axis=-1)
    probabilities = ops.softmax(sorted_logits, axis=-1)
    # Exclusive cumulative sum: the mass of the tokens before each one.
    mass_before = ops.cumsum(
        ops.pad(probabilities[:, :-1], [[0, 0], [1, 0]]), axis=-1
    )
    kept = ops.where(mass_before < top_p, sorted_logits, float("inf"))
    threshold = ops.min(kept, axis=-1, keepdims=True)
    filtered = ops.where(logits >= threshold, logits, NEG_INF)
    if is_tensor(top_p):
        return ops.where(top_p >= 1.0, logits, filtered)
    return filtered


def forbid_token(logits, token_id, condition):
    """Sets column ``token_id`` to ``-inf`` where the scalar bool
    ``condition`` holds (used to forbid the end token before
    ``min_length``)."""
    columns = ops.arange(ops.shape(logits)[-1], dtype="int32")
    hit = ops.logical_and(ops.equal(columns, token_id), condition)
    return ops.where(hit[None, :], NEG_INF, logits)


def forbid_tokens(logits, token_ids):
    """Sets the columns ``token_ids`` (a tuple of ints) to ``-inf`` in
    every row: tokens that are never valid output, such as padding or the
    start token."""
    if not token_ids:
        return logits
    columns = ops.arange(ops.shape(logits)[-1], dtype="int32")
    hit = ops.any(
        ops.equal(columns[:, None],
                  ops.convert_to_tensor(list(token_ids), "int32")),
        axis=-1,
    )
    return ops.where(hit[None, :], NEG_INF, logits)
