"""Beam search with the GNMT length penalty and frozen finished beams.

Each row keeps ``K = beam_width`` hypotheses. Each step, with ``s_k`` the
summed log-probability of beam ``k`` and ``n_k`` its length::

    candidates (k, v):  s_k + log_softmax(logits_k)[v],  length n_k + 1
    finished beam k:    only (k, end_id), score s_k unchanged, length n_k
    rank by             (s_k + log p(v)) / lp(length),
                        lp(n) = ((5 + n) / 6) ** length_penalty   (GNMT)
    keep the K best candidates; reorder every state leaf by their parent.

At the first step only beam 0 is live (the others start at -inf), so the
``K`` beams are distinct. The loop stops when every beam of every row has
produced the end token, or after ``max_length`` steps; unfinished beams
are returned as they stand.

Reference:
    Wu et al., "Google's Neural Machine Translation System", 2016 (length
    penalty); TensorFlow Addons ``BeamSearchDecoder`` (finished beams).
"""

import tensorflow as tf

from kerasrnn.decoding.checks import call_step
from kerasrnn.decoding.checks import check_int
from kerasrnn.decoding.checks import check_lengths
from kerasrnn.decoding.checks import check_logits
from kerasrnn.decoding.checks import check_start_ids
from kerasrnn.decoding.checks import check_state
from kerasrnn.decoding.checks import check_step_fn
from kerasrnn.decoding.logits import NEG_INF
from kerasrnn.decoding.logits import forbid_token
from kerasrnn.decoding.result import DecodingResult


def tile_batch(nest, multiplier):
    """Repeats every row ``multiplier`` times: ``(B, ...) -> (B*m, ...)``,
    row ``b*m + k`` holding copy ``k`` of row ``b`` (not ``tf.tile``, which
    would interleave the rows)."""
    return tf.nest.map_structure(
        lambda x: tf.repeat(tf.convert_to_tensor(x), multiplier, axis=0),
        nest,
    )


def gather_beams(nest, flat_indices):
    """Reorders every leaf of a ``(B*K, ...)`` nest by ``flat_indices``
    (``b*K + parent``)."""
    return tf.nest.map_structure(
        lambda x: tf.gather(x, flat_indices, axis=0), nest
    )


def length_penalty(lengths, alpha):
    """GNMT length penalty ``lp(n) = ((5 + n) / 6) ** alpha`` (1 for
    ``alpha = 0``)."""
    if alpha == 0:
        return tf.ones_like(lengths, "float32")
    return tf.pow((5.0 + tf.cast(lengths, "float32")) / 6.0, alpha)


def beam_search(
    step_fn,
    start_ids,
    initial_state,
    end_id,
    max_length,
    beam_width=4,
    length_penalty_weight=0.0,
    num_return=1,
    min_length=0,
    pad_id=0,
):
    """Keeps the ``beam_width`` best hypotheses per row (see module doc).

    With ``beam_width=1`` it is greedy search.

    Args:
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
            pad_id: as in ``greedy_search``; ``step_fn`` sees
            ``B * beam_width`` rows, and every state leaf is tiled and
            reordered along its leading axis.
        beam_width: K, an integer >= 1.
        length_penalty_weight: α of the GNMT penalty, >= 0 (0: rank by
            summed log-probability).
        num_return: the n-best hypotheses to return per row, 1..K.

    Returns:
        A ``DecodingResult`` with ``K = num_return``, best first by score.
    """
    check_step_fn(step_fn)
    check_int("beam_width", beam_width, 1)
    check_int("num_return", num_return, 1)
    if num_return > beam_width:
        raise ValueError(
            "`num_return` must not exceed `beam_width`. Received: "
            f"num_return={num_return}, beam_width={beam_width}"
        )
    if isinstance(length_penalty_weight, bool) or not isinstance(
        length_penalty_weight, (int, float)
    ) or length_penalty_weight < 0:
        raise ValueError(
            "`length_penalty_weight` must be a number >= 0. Received: "
            f"length_penalty_weight={length_penalty_weight!r}"
        )
    alpha = float(length_penalty_weight)
    check_lengths(max_length, min_length)
    check_int("end_id", end_id, 0, allow_none=True)
    check_int("pad_id", pad_id, 0)
    start_ids = check_start_ids(start_ids)
    state = check_state(initial_state, start_ids.shape[0])
    width = beam_width
    batch = tf.shape(start_ids)[0]
    positions = tf.range(max_length)
    # Flat index of beam 0 of each row, to turn parents into flat indices.
    row_offsets = (tf.range(batch) * width)[:, tf.newaxis]

    def body(t, tokens, state, ids, lengths, log_probs, finished, scores):
        logits, state = call_step(step_fn, tokens, state)
        logits = check_logits(logits, end_id, pad_id)
        if end_id is not None and min_length > 0:
            logits = forbid_token(logits, end_id, t < min_length)
        vocabulary = tf.shape(logits)[-1]
        step_log_probs = tf.reshape(
            tf.nn.log_softmax(logits), [batch, width, vocabulary]
        )
        if end_id is not None:
            # A finished beam has one continuation, end_id, costing nothing.
            frozen = tf.where(
                tf.equal(tf.range(vocabulary), end_id), 0.0, NEG_INF
            )
            step_log_probs = tf.where(
                finished[:, :, tf.newaxis], frozen, step_log_probs
            )
        total = log_probs[:, :, tf.newaxis] + step_log_probs
        new_lengths = lengths + tf.cast(tf.logical_not(finished), "int32")
        ranked = total / length_penalty(new_lengths, alpha)[:, :, tf.newaxis]
        scores, flat = tf.math.top_k(
            tf.reshape(ranked, [batch, width * vocabulary]), k=width
        )
        parents = flat // vocabulary
        chosen = flat % vocabulary
        log_probs = tf.gather(
            tf.reshape(total, [batch, width * vocabulary]), flat, batch_dims=1
        )
        lengths = tf.gather(new_lengths, parents, batch_dims=1)
        parent_finished = tf.gather(finished, parents, batch_dims=1)
        chosen = tf.where(parent_finished, pad_id, chosen)
        ids = tf.gather(ids, parents, batch_dims=1)
        ids = tf.where(
            tf.equal(positions, t)[tf.newaxis, tf.newaxis, :],
            chosen[:, :, tf.newaxis],
            ids,
        )
        state = gather_beams(state, tf.reshape(parents + row_offsets, [-1]))
        if end_id is not None:
            finished = tf.logical_or(parent_finished, tf.equal(chosen, end_id))
            tokens = tf.where(parent_finished, end_id, chosen)
        else:
            tokens = chosen
        return (
            t + 1, tf.reshape(tokens, [-1]), state, ids, lengths, log_probs,
            finished, scores,
        )

    def cond(t, tokens, state, ids, lengths, log_probs, finished, scores):
        return tf.logical_not(tf.reduce_all(finished))

    first_beam_only = tf.concat(
        [tf.zeros([1]), tf.fill([width - 1], NEG_INF)], axis=0
    )
    loop_vars = (
        tf.constant(0),
        tf.repeat(start_ids, width),
        tile_batch(state, width),
        tf.fill([batch, width, max_length], tf.constant(pad_id, "int32")),
        tf.zeros([batch, width], "int32"),
        tf.tile(first_beam_only[tf.newaxis], [batch, 1]),
        tf.zeros([batch, width], "bool"),
        tf.zeros([batch, width], "float32"),
    )
    _, _, _, ids, lengths, log_probs, _, scores = tf.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    # top_k returns candidates sorted by score, so the beams are best first.
    return DecodingResult(
        ids=ids[:, :num_return],
        lengths=lengths[:, :num_return],
        scores=scores[:, :num_return],
        log_probs=log_probs[:, :num_return],
    )
