"""Beam search with a pool of finished hypotheses and the GNMT length penalty.

Each row keeps ``K = beam_width`` live hypotheses and a pool of the ``K``
best finished ones. At step ``t`` every live hypothesis has ``t`` tokens;
with ``s_k`` the summed log-probability of live beam ``k``::

    candidates (k, v):  log-prob s_k + log_softmax(logits_k)[v],  length t+1
    score               log-prob / lp(length),
                        lp(n) = ((5 + n) / 6) ** length_penalty   (GNMT)
    of the 2K best candidates,
      those among the K best that end (v = end_id) join the pool, which
      keeps its K best;
      the K best that do not end are the new live beams (there are at least
      K: each live beam has one ending candidate);
    reorder every state leaf by the parents of the new live beams.

A hypothesis that ends leaves the beam, so the search never narrows (in
"frozen" beam search, as TensorFlow Addons' ``BeamSearchDecoder``, a
finished beam keeps one of the K slots). At the first step only beam 0 is
live (the others start at -inf), so the ``K`` beams are distinct.

Stopping is exact. Log-probabilities only decrease and lp only grows, so
no hypothesis grown from a live one can score above the live one's
log-prob / lp(max_length). A row is done when its pool holds ``K``
finished hypotheses and the worst of them scores at least that bound for
every live beam: no later hypothesis could enter the pool, and running on
would not change the result. The loop stops when every row is done, or after
``max_length`` steps. The live hypotheses, scored with their length, then
compete with the pool (finished ones win ties), and the best ``num_return``
are returned. Without an ``end_id`` the ``K`` live beams run
``max_length`` steps.

References:
    Wu et al., "Google's Neural Machine Translation System: Bridging the
    Gap between Human and Machine Translation", 2016 (length penalty).
    Tensor2Tensor ``utils/beam_search.py`` (the live and finished sets, the
    2K candidates, the lp(max_length) bound); fairseq's
    ``SequenceGenerator`` and Hugging Face's ``BeamSearchScorer`` (an
    ending candidate counts only from the top K of the 2K, so that
    ``beam_width=1`` without length penalty is greedy search).
"""

import collections

import keras
from keras import ops

from kerasrnn.decoding.checks import call_step
from kerasrnn.decoding.checks import check_forbidden_ids
from kerasrnn.decoding.checks import check_int
from kerasrnn.decoding.checks import check_lengths
from kerasrnn.decoding.checks import check_logits
from kerasrnn.decoding.checks import check_start_ids
from kerasrnn.decoding.checks import check_state
from kerasrnn.decoding.checks import check_step_fn
from kerasrnn.decoding.checks import scalar_tensor
from kerasrnn.decoding.logits import NEG_INF
from kerasrnn.decoding.logits import forbid_token
from kerasrnn.decoding.logits import forbid_tokens
from kerasrnn.decoding.result import DecodingResult
from kerasrnn.decoding.tensors import is_tensor
from kerasrnn.decoding.tensors import take_rows
from kerasrnn.decoding.tensors import top_k

# A set of hypotheses per row: ids (B, N, T), the others (B, N).
Hypotheses = collections.namedtuple(
    "Hypotheses", ["ids", "lengths", "log_probs", "scores"]
)


def tile_batch(nest, multiplier):
    """Repeats every row ``multiplier`` times: ``(B, ...) -> (B*m, ...)``,
    row ``b*m + k`` holding copy ``k`` of row ``b`` (not ``tf.tile``, which
    would interleave the rows)."""
    return keras.tree.map_structure(
        lambda x: ops.repeat(ops.convert_to_tensor(x), multiplier, axis=0),
        nest,
    )


def gather_beams(nest, flat_indices):
    """Reorders every leaf of a ``(B*K, ...)`` nest by ``flat_indices``
    (``b*K + parent``)."""
    return keras.tree.map_structure(
        lambda x: ops.take(x, flat_indices, axis=0), nest
    )


def length_penalty(lengths, alpha):
    """GNMT length penalty ``lp(n) = ((5 + n) / 6) ** alpha`` (1 for
    ``alpha = 0``)."""
    if not is_tensor(alpha) and alpha == 0:
        return ops.ones_like(lengths, "float32")
    return ops.power((5.0 + ops.cast(lengths, "float32")) / 6.0, alpha)


def check_length_penalty(length_penalty_weight):
    """α as a float >= 0 (or a scalar tensor checked by the caller)."""
    if is_tensor(length_penalty_weight):
        return scalar_tensor(
            "length_penalty_weight", length_penalty_weight, "float32"
        )
    if isinstance(length_penalty_weight, bool) or not isinstance(
        length_penalty_weight, (int, float)
    ) or length_penalty_weight < 0:
        raise ValueError(
            "`length_penalty_weight` must be a number >= 0. Received: "
            f"length_penalty_weight={length_penalty_weight!r}"
        )
    return float(length_penalty_weight)


def _select(hypotheses, indices):
    """The hypotheses at ``indices (B, N)`` of each row."""
    return keras.tree.map_structure(
        lambda x: take_rows(x, indices), hypotheses
    )


def _keep_best(first, second, count):
    """The ``count`` best of two sets of hypotheses by score, best first.

    On equal scores ``first`` wins (``top_k`` puts the lower index first).
    With the pool as ``first``, its empty entries (score -inf) therefore
    stay ahead of impossible candidates (score -inf too), and the empty
    entries are all a row returns beyond its possible hypotheses.
    """
    both = keras.tree.map_structure(
        lambda a, b: ops.concatenate([a, b], axis=1), first, second
    )
    _, best = top_k(both.scores, count)
    return _select(both, best)


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
    forbidden_ids=None,
):
    """Keeps the ``beam_width`` best live hypotheses per row and a pool of
    the ``beam_width`` best finished ones (see module doc).

    ``beam_width=1`` with ``length_penalty_weight=0`` is greedy search.
    With a length penalty it can return a longer hypothesis than greedy:
    the search goes on past greedy's end token while a longer one could
    still score higher.

    Args:
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
            pad_id, forbidden_ids: as in ``greedy_search``; ``step_fn`` sees
            ``B * beam_width`` rows, and every state leaf is tiled and
            reordered along its leading axis.
        beam_width: K, an integer >= 1.
        length_penalty_weight: α of the GNMT penalty, >= 0 (0: rank by
            summed log-probability).
        num_return: the n-best hypotheses to return per row, 1..K.

    Returns:
        A ``DecodingResult`` with ``K = num_return``, best first by score.
        A row with fewer than ``num_return`` hypotheses of nonzero
        probability is filled with empty ones: length 0, ``pad_id`` tokens,
        score and log-probability -inf.
    """
    check_step_fn(step_fn)
    check_int("beam_width", beam_width, 1)
    check_int("num_return", num_return, 1)
    if num_return > beam_width:
        raise ValueError(
            "`num_return` must not exceed `beam_width`. Received: "
            f"num_return={num_return}, beam_width={beam_width}"
        )
    alpha = check_length_penalty(length_penalty_weight)
    max_length, min_length = check_lengths(max_length, min_length)
    check_int("end_id", end_id, 0, allow_none=True)
    check_int("pad_id", pad_id, 0)
    forbidden_ids = check_forbidden_ids(forbidden_ids, end_id)
    start_ids = check_start_ids(start_ids)
    state = check_state(initial_state, start_ids.shape[0])
    width = beam_width
    batch = ops.shape(start_ids)[0]
    positions = ops.arange(max_length, dtype="int32")
    # Flat index of beam 0 of each row, to turn parents into flat indices.
    row_offsets = (ops.arange(batch, dtype="int32") * width)[:, None]
    # No hypothesis can score above its log-prob / lp(max_length).
    largest_penalty = length_penalty(max_length, alpha)

    def extend(live_ids, flat_candidates, vocabulary, t):
        """The parent beams and tokens of the candidates ``k*V + v`` of
        each row, and their ids: the parent's with the token at ``t``."""
        parents = flat_candidates // vocabulary
        tokens = flat_candidates % vocabulary
        ids = ops.where(
            ops.equal(positions, t)[None, None, :],
            tokens[:, :, None],
            take_rows(live_ids, parents),
        )
        return parents, tokens, ids

    def body(t, tokens, state, live_ids, live_log_probs, finished):
        logits, state = call_step(step_fn, tokens, state)
        logits = check_logits(logits, end_id, pad_id, forbidden_ids)
        logits = forbid_tokens(logits, forbidden_ids)
        if end_id is not None and (
            is_tensor(min_length) or min_length > 0
        ):
            logits = forbid_token(logits, end_id, t < min_length)
        vocabulary = ops.shape(logits)[-1]
        candidate_log_probs = ops.reshape(
            live_log_probs[:, :, None]
            + ops.reshape(ops.log_softmax(logits), (-1, width, vocabulary)),
            (-1, width * vocabulary),
        )
        # Every candidate has length t + 1: the best by log-probability are
        # the best by score.
        if end_id is None:
            live_log_probs, flat = top_k(candidate_log_probs, width)
            parents, tokens, live_ids = extend(live_ids, flat, vocabulary, t)
        else:
            count = 2 * width
            if logits.shape[-1] is not None:
                count = min(count, width * logits.shape[-1])
            top_log_probs, flat = top_k(candidate_log_probs, count)
            parents, tokens, ids = extend(live_ids, flat, vocabulary, t)
            ends = ops.equal(tokens, end_id)
            lengths = ops.zeros_like(tokens) + (t + 1)
            # The candidates among the K best that end join the pool; the
            # others score -inf there, behind every real finished one.
            joins_pool = ops.logical_and(ends, ops.arange(count) < width)
            ending = Hypotheses(
                ids, lengths, top_log_probs,
                ops.where(
                    joins_pool, top_log_probs / length_penalty(t + 1, alpha),
                    NEG_INF,
                ),
            )
            finished = _keep_best(finished, ending, width)
            # The K best candidates that do not end go on, in score order
            # (the candidates are sorted: rank by position, ends last).
            rank = ops.cast(count - ops.arange(count), "float32")
            _, going_on = top_k(ops.where(ends, -1.0, rank), width)
            parents = take_rows(parents, going_on)
            tokens = take_rows(tokens, going_on)
            live_ids = take_rows(ids, going_on)
            live_log_probs = take_rows(top_log_probs, going_on)
        state = gather_beams(state, ops.reshape(parents + row_offsets, (-1,)))
        return (
            t + 1, ops.reshape(tokens, (-1,)), state, live_ids,
            live_log_probs, finished,
        )

    def cond(t, tokens, state, live_ids, live_log_probs, finished):
        if end_id is None:
            return ops.convert_to_tensor(True)
        worst_finished = finished.scores[:, -1]
        best_reachable = (
            ops.max(live_log_probs, axis=1) / largest_penalty
        )
        done = ops.logical_and(
            worst_finished > NEG_INF, worst_finished >= best_reachable
        )
        return ops.logical_not(ops.all(done))

    first_beam_only = ops.concatenate(
        [ops.zeros((1,)), ops.full((width - 1,), NEG_INF)], axis=0
    )
    no_ids = ops.full((batch, width, max_length), pad_id, "int32")
    no_finished = Hypotheses(
        no_ids,
        ops.zeros((batch, width), "int32"),
        ops.full((batch, width), NEG_INF, "float32"),
        ops.full((batch, width), NEG_INF, "float32"),
    )
    loop_vars = (
        ops.convert_to_tensor(0, "int32"),
        ops.repeat(start_ids, width, axis=0),
        tile_batch(state, width),
        no_ids,
        ops.tile(first_beam_only[None], (batch, 1)),
        no_finished,
    )
    steps, _, _, live_ids, live_log_probs, finished = ops.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    live = Hypotheses(
        live_ids,
        ops.zeros_like(live_log_probs, "int32") + steps,
        live_log_probs,
        live_log_probs / length_penalty(steps, alpha),
    )
    best = _keep_best(finished, live, num_return)
    return DecodingResult(
        ids=best.ids,
        lengths=best.lengths,
        scores=best.scores,
        log_probs=best.log_probs,
    )
