"""The searches of ``kerasrnn.decoding`` in NumPy, for TensorFlow-free
generation: greedy, sampling (temperature, top-k, top-p) and beam search
(width, GNMT length penalty, n-best).

The semantics are those of ``kerasrnn.decoding``, whose module
docstrings are the one description of each strategy: the same arguments
with the same defaults (a test compares the signatures), the same
per-step rules, the same tie-breaking (``top_k`` puts the lower index
first among equal values, as ``tf.math.top_k``), the same pool of
finished hypotheses and exact stopping bound in beam search, and the same
``DecodingResult`` fields. ``tests/test_decoding_spec.py`` runs both on
the same step functions and requires identical tokens and scores. The
one difference: sampling draws from NumPy's ``PCG64`` generator seeded by
``seed`` (reproducible run to run), not TensorFlow's stateless kernels,
so the same seed draws other tokens; the filtered distributions are the
same.

The model is a step function and a state::

    step_fn(token_ids, state) -> (logits, state)
        token_ids: int32 (B,)     state: {name: array with leading axis B}
        logits:    float32 (B, V) (log-probabilities are logits too)

``constant`` names state entries that no step changes (an encoder's
memory): beam search never reorders them, because every beam of a row
holds the same copy.
"""

import collections
import inspect

import numpy as np

NEG_INF = np.float32(-np.inf)


class DecodingResult(
    collections.namedtuple(
        "DecodingResult", ["ids", "lengths", "scores", "log_probs"]
    )
):
    """As ``kerasrnn.decoding.DecodingResult``: ``ids`` int32
    ``(B, K, T)``, ``lengths`` int32 ``(B, K)``, ``scores`` and
    ``log_probs`` float32 ``(B, K)``."""

    __slots__ = ()

    def to_lists(self, end_id=None):
        """``[B][K]`` lists of ids, each cut at its length, without the
        end token when ``end_id`` is given."""
        rows = []
        for row_ids, row_lengths in zip(self.ids, self.lengths):
            row = []
            for tokens, length in zip(row_ids, row_lengths):
                tokens = tokens[:length].tolist()
                if end_id is not None and tokens and tokens[-1] == end_id:
                    tokens = tokens[:-1]
                row.append(tokens)
            rows.append(row)
        return rows


def log_softmax(logits):
    """Row-wise ``log_softmax`` in float32 (``-inf`` stays ``-inf``)."""
    logits = np.asarray(logits, np.float32)
    top = np.max(logits, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, np.float32(0))
    shifted = logits - top
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return (shifted - total).astype(np.float32)


def softmax(logits):
    return np.exp(log_softmax(logits))


def top_k(values, k):
    """``(values, indices)`` of the ``k`` largest entries of each row of a
    2-D array, largest first, ties in index order (``tf.math.top_k``)."""
    size = values.shape[1]
    if k >= size:
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(values, order, axis=1), order
    kth = -np.partition(-values, k - 1, axis=1)[:, k - 1:k]
    greater = values > kth
    missing = k - greater.sum(axis=1, keepdims=True)
    equal = values == kth
    chosen = greater | (equal & (np.cumsum(equal, axis=1) <= missing))
    indices = np.nonzero(chosen)[1].reshape(values.shape[0], k)
    picked = np.take_along_axis(values, indices, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    return (np.take_along_axis(picked, order, axis=1),
            np.take_along_axis(indices, order, axis=1))


def length_penalty(lengths, alpha):
    """GNMT ``lp(n) = ((5 + n) / 6) ** alpha`` in float32 (1 for α = 0)."""
    lengths = np.asarray(lengths, np.float32)
    if alpha == 0:
        return np.ones_like(lengths)
    return np.power(
        (np.float32(5.0) + lengths) / np.float32(6.0), np.float32(alpha)
    ).astype(np.float32)


def forbid(logits, forbidden_ids, end_id, forbid_end):
    """``logits`` with the ``forbidden_ids`` columns (and ``end_id`` when
    ``forbid_end``) set to ``-inf``."""
    columns = list(forbidden_ids)
    if forbid_end and end_id is not None:
        columns.append(end_id)
    if columns:
        logits = logits.copy()
        logits[:, columns] = NEG_INF
    return logits


def apply_temperature(logits, temperature):
    if temperature == 1.0:
        return logits
    return (logits / np.float32(temperature)).astype(np.float32)


def top_k_filter(logits, k):
    """Keeps the ``k`` largest logits of each row (ties at the k-th value
    are all kept)."""
    k = min(k, logits.shape[-1])
    kth = -np.partition(-logits, k - 1, axis=-1)[:, k - 1:k]
    return np.where(logits >= kth, logits, NEG_INF)


def top_p_filter(logits, p):
    """Nucleus filter: keeps the most probable tokens while the
    probability mass before them is below ``p`` (see
    ``kerasrnn.decoding.top_p_filter``)."""
    if p >= 1.0:
        return logits
    ordered = -np.sort(-logits, axis=-1)
    probabilities = softmax(ordered)
    before = np.cumsum(probabilities, axis=-1) - probabilities
    kept = np.where(before < np.float32(p), ordered, np.float32(np.inf))
    threshold = np.min(kept, axis=-1, keepdims=True)
    return np.where(logits >= threshold, logits, NEG_INF)


def filtered_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution sampling draws from: ``softmax(top_p(top_k(
    logits / temperature)))``."""
    logits = apply_temperature(np.asarray(logits, np.float32), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return softmax(logits)


def greedy_search(
    step_fn,
    start_ids,
    initial_state,
    end_id,
    max_length,
    min_length=0,
    pad_id=0,
    forbidden_ids=None,
):
    """The most probable token at every step (``kerasrnn.decoding.
    greedy_search``)."""
    return drain(greedy_steps(
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
        pad_id, forbidden_ids,
    ))


def greedy_steps(step_fn, start_ids, initial_state, end_id, max_length,
                 min_length=0, pad_id=0, forbidden_ids=None):
    """``greedy_search`` one step at a time: a generator that yields
    ``(t, tokens (B,), alive (B,))`` after each step (the tokens chosen,
    which rows were still running) and returns the ``DecodingResult``
    (``drain`` runs it through). Closing it stops the search: a streaming
    server does so when its client goes away."""
    def select(logits, step):
        return np.argmax(logits, axis=-1).astype(np.int32)

    return _token_by_token(
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
        pad_id, forbidden_ids, select,
    )


def sample(
    step_fn,
    start_ids,
    initial_state,
    end_id,
    max_length,
    min_length=0,
    pad_id=0,
    forbidden_ids=None,
    temperature=1.0,
    top_k=None,
    top_p=None,
    num_samples=1,
    seed=None,
):
    """Ancestral sampling from ``filtered_distribution`` (``kerasrnn.
    decoding.sample``); draws from ``np.random.default_rng(seed)``.
    ``num_samples`` samples per row, in draw order."""
    return drain(sample_steps(
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
        pad_id, forbidden_ids, temperature, top_k, top_p, num_samples, seed,
    ))


def sample_steps(step_fn, start_ids, initial_state, end_id, max_length,
                 min_length=0, pad_id=0, forbidden_ids=None,
                 temperature=1.0, top_k=None, top_p=None, num_samples=1,
                 seed=None):
    """``sample`` one step at a time (as ``greedy_steps``; with
    ``num_samples`` > 1 the yielded rows are ``b * num_samples + k``)."""
    rng = np.random.default_rng(seed)

    def select(logits, step):
        probabilities = filtered_distribution(
            logits, temperature, top_k, top_p
        ).astype(np.float64)
        cumulative = np.cumsum(probabilities, axis=-1)
        draws = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
        chosen = np.sum(cumulative <= draws, axis=-1)
        return np.minimum(chosen, logits.shape[-1] - 1).astype(np.int32)

    start_ids = np.asarray(start_ids, np.int32)
    if num_samples > 1:
        start_ids = np.repeat(start_ids, num_samples)
        initial_state = tile_batch(initial_state, num_samples)
    result = yield from _token_by_token(
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
        pad_id, forbidden_ids, select,
    )
    if num_samples == 1:
        return result
    return DecodingResult(*(
        field.reshape(-1, num_samples, *field.shape[2:]) for field in result
    ))


def drain(steps):
    """Runs a step generator to its end; returns its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def tile_batch(state, multiplier):
    """Every row repeated ``multiplier`` times: row ``b*m + k`` is copy
    ``k`` of row ``b``."""
    return {name: np.repeat(value, multiplier, axis=0)
            for name, value in state.items()}


def _token_by_token(step_fn, start_ids, state, end_id, max_length,
                    min_length, pad_id, forbidden_ids, select):
    forbidden_ids = tuple(forbidden_ids or ())
    tokens = np.asarray(start_ids, np.int32)
    batch = tokens.shape[0]
    ids = np.full((batch, max_length), pad_id, np.int32)
    lengths = np.zeros(batch, np.int32)
    log_probs = np.zeros(batch, np.float32)
    finished = np.zeros(batch, bool)
    for t in range(max_length):
        if finished.all():
            break
        logits, state = step_fn(tokens, state)
        logits = forbid(np.asarray(logits, np.float32), forbidden_ids,
                        end_id, t < min_length)
        chosen = select(logits, t)
        step_log_probs = np.take_along_axis(
            log_softmax(logits), chosen[:, None], axis=1
        )[:, 0]
        alive = ~finished
        chosen = np.where(alive, chosen, pad_id).astype(np.int32)
        log_probs += np.where(alive, step_log_probs, np.float32(0))
        lengths += alive
        ids[:, t] = chosen
        if end_id is not None:
            finished = finished | (chosen == end_id)
            tokens = np.where(alive, chosen, end_id).astype(np.int32)
        else:
            tokens = chosen
        yield t, chosen, alive
    return DecodingResult(ids[:, None], lengths[:, None],
                          log_probs[:, None], log_probs[:, None].copy())


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
    constant=(),
    candidates_fn=None,
):
    """Beam search with a pool of finished hypotheses (``kerasrnn.
    decoding.beam_search``, whose module docstring is the algorithm).

    NumPy-only arguments:
        constant: state names never reordered (see the module doc).
        candidates_fn: optional ``candidates_fn(tokens, state, m,
            forbid_end) -> (log_probs (N, m), ids (N, m), state)``: each
            row's ``m`` most probable next tokens, best first (ties: lower
            id first), under ``log_softmax`` of the logits with
            ``forbidden_ids`` (and ``end_id`` when ``forbid_end``) removed
            -- what ``step_fn`` and the search would compute, computed by
            the model (an exported step graph's ``TopK``), so the search
            never touches the whole vocabulary. The beam's best candidates
            are among each beam's ``m = min(2K, V)`` best, so the result is
            the same.
    """
    forbidden_ids = tuple(forbidden_ids or ())
    alpha = float(length_penalty_weight)
    width = beam_width
    start_ids = np.asarray(start_ids, np.int32)
    batch = start_ids.shape[0]
    offsets = (np.arange(batch) * width)[:, None]
    largest_penalty = length_penalty(max_length, alpha)
    tokens = np.repeat(start_ids, width)
    state = tile_batch(initial_state, width)
    live_ids = np.full((batch, width, max_length), pad_id, np.int32)
    live_log_probs = np.tile(
        np.array([0.0] + [-np.inf] * (width - 1), np.float32), (batch, 1)
    )
    finished = _Pool(
        np.full((batch, width, max_length), pad_id, np.int32),
        np.zeros((batch, width), np.int32),
        np.full((batch, width), NEG_INF),
        np.full((batch, width), NEG_INF),
    )
    steps = 0
    for t in range(max_length):
        if end_id is not None and _all_done(finished, live_log_probs,
                                            largest_penalty):
            break
        forbid_end = end_id is not None and t < min_length
        if candidates_fn is None:
            logits, state = step_fn(tokens, state)
            logits = forbid(np.asarray(logits, np.float32), forbidden_ids,
                            end_id, forbid_end)
            best = _best_candidates(
                live_log_probs, log_softmax(logits), width, end_id
            )
        else:
            best_per_beam, token_ids, state = candidates_fn(
                tokens, state, 2 * width, forbid_end
            )
            best = _best_of_beams(live_log_probs, best_per_beam, token_ids,
                                  width, end_id)
        top_log_probs, parents, tokens = best
        ids = np.take_along_axis(live_ids, parents[:, :, None],
                                 axis=1).copy()
        ids[:, :, t] = tokens
        if end_id is None:
            live_log_probs, live_ids = top_log_probs, ids
        else:
            count = tokens.shape[1]
            ends = tokens == end_id
            joins_pool = ends & (np.arange(count) < width)
            ending = _Pool(
                ids, np.full(tokens.shape, t + 1, np.int32), top_log_probs,
                np.where(
                    joins_pool,
                    top_log_probs / length_penalty(t + 1, alpha),
                    NEG_INF,
                ).astype(np.float32),
            )
            finished = _keep_best(finished, ending, width)
            rank = (count - np.arange(count)).astype(np.float32)
            _, going_on = top_k(
                np.where(ends, np.float32(-1), rank), width
            )
            parents = np.take_along_axis(parents, going_on, axis=1)
            tokens = np.take_along_axis(tokens, going_on, axis=1)
            live_ids = np.take_along_axis(ids, going_on[:, :, None], axis=1)
            live_log_probs = np.take_along_axis(
                top_log_probs, going_on, axis=1
            )
        rows = (parents + offsets).reshape(-1)
        state = {
            name: value if name in constant else value[rows]
            for name, value in state.items()
        }
        tokens = tokens.reshape(-1).astype(np.int32)
        steps = t + 1
    live = _Pool(
        live_ids, np.full(live_log_probs.shape, steps, np.int32),
        live_log_probs,
        (live_log_probs / length_penalty(steps, alpha)).astype(np.float32),
    )
    best = _keep_best(finished, live, num_return)
    return DecodingResult(best.ids, best.lengths, best.scores,
                          best.log_probs)


_Pool = collections.namedtuple("_Pool",
                               ["ids", "lengths", "log_probs", "scores"])


def _best_candidates(live_log_probs, log_probs, width, end_id):
    """``(log-probs, parents, tokens)`` of the best candidates ``(B, n)``,
    best first: ``n = K`` without an end token, else ``min(2K, K*V)``."""
    batch = live_log_probs.shape[0]
    vocabulary = log_probs.shape[-1]
    candidates = (
        live_log_probs[:, :, None]
        + log_probs.reshape(batch, width, vocabulary)
    ).reshape(batch, width * vocabulary)
    count = width if end_id is None else min(2 * width, width * vocabulary)
    values, flat = top_k(candidates, count)
    return values, flat // vocabulary, (flat % vocabulary).astype(np.int32)


def _best_of_beams(live_log_probs, best_per_beam, token_ids, width, end_id):
    """``_best_candidates`` from each beam's ``m`` best tokens: the same
    candidates, ordered as ``top_k`` over ``k*V + v`` orders them (value,
    then parent, then token)."""
    batch = live_log_probs.shape[0]
    per_beam = best_per_beam.shape[-1]
    values = (live_log_probs[:, :, None]
              + best_per_beam.reshape(batch, width, per_beam)).reshape(
                  batch, width * per_beam).astype(np.float32)
    tokens = np.asarray(token_ids, np.int32).reshape(batch, width * per_beam)
    parents = np.broadcast_to(np.repeat(np.arange(width), per_beam),
                              tokens.shape)
    count = width if end_id is None else min(2 * width, width * per_beam)
    order = np.lexsort((tokens, parents, -values), axis=-1)[:, :count]
    return (np.take_along_axis(values, order, axis=1),
            np.take_along_axis(parents, order, axis=1),
            np.take_along_axis(tokens, order, axis=1))


def _keep_best(first, second, count):
    both = _Pool(*(np.concatenate([a, b], axis=1)
                   for a, b in zip(first, second)))
    _, best = top_k(both.scores, count)
    return _Pool(
        np.take_along_axis(both.ids, best[:, :, None], axis=1),
        *(np.take_along_axis(field, best, axis=1) for field in both[1:]),
    )


def _all_done(finished, live_log_probs, largest_penalty):
    worst = finished.scores[:, -1]
    reachable = np.max(live_log_probs, axis=1) / largest_penalty
    return bool(np.all((worst > NEG_INF) & (worst >= reachable)))


SEARCHES = {"greedy": greedy_search, "sample": sample, "beam": beam_search}
# What a model passes itself (as in kerasrnn.decoding.options), and the
# NumPy-only argument.
_MODEL_ARGUMENTS = {"step_fn", "start_ids", "initial_state", "end_id",
                    "max_length", "pad_id", "forbidden_ids"}
_HOOKS = {"constant", "candidates_fn"}
OPTIONS = {
    method: {
        name: parameter.default
        for name, parameter in inspect.signature(search).parameters.items()
        if name not in _MODEL_ARGUMENTS | _HOOKS
    }
    for method, search in SEARCHES.items()
}
STEP_SEARCHES = {"greedy": greedy_steps, "sample": sample_steps}
# Default upper limits a server puts on a request (``check_options``).
LIMITS = {"max_length": 256, "beam_width": 16, "num_samples": 16}


class OptionError(ValueError):
    """A search option a request cannot have; the message names it, says
    what it received and what is allowed."""


def check_options(method, max_length, options, limits=None):
    """Every option of ``method`` checked (the rules of ``kerasrnn.
    decoding.options.split_options``, plus ``limits``: the largest
    ``max_length``, ``beam_width`` and ``num_samples`` allowed, and
    ``vocabulary_size`` for ``top_k``); returns all of them, defaults
    filled in. Raises ``OptionError`` naming the first bad one."""
    limits = {**LIMITS, **(limits or {})}
    if method not in OPTIONS:
        raise OptionError(
            f"`method` must be one of {sorted(OPTIONS)}. Received: "
            f"method={method!r}"
        )
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        raise OptionError(
            f"method={method!r} takes the options "
            f"{sorted(OPTIONS[method])}. Received unknown options: "
            f"{unknown}"
        )
    values = {**OPTIONS[method], **options, "max_length": max_length}
    _integer(values, "max_length", 1, limits["max_length"])
    _integer(values, "min_length", 0, values["max_length"])
    if method == "sample":
        _number(values, "temperature", 0.0, None, "> 0")
        _integer(values, "top_k", 1, None, allow_none=True)
        _number(values, "top_p", 0.0, 1.0, "in (0, 1]", allow_none=True)
        _integer(values, "seed", 0, 2**63 - 1, allow_none=True)
        _integer(values, "num_samples", 1, limits["num_samples"])
    if method == "beam":
        _integer(values, "beam_width", 1, limits["beam_width"])
        _number(values, "length_penalty_weight", None, None, ">= 0",
                minimum_inclusive=0.0)
        _integer(values, "num_return", 1, values["beam_width"])
    return values


def _integer(values, name, low, high, allow_none=False):
    value = values[name]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OptionError(
            f"`{name}` must be an integer{' or null' * allow_none}. "
            f"Received: {name}={value!r}"
        )
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise OptionError(
            f"`{name}` must be an integer {bound}. Received: {name}={value}"
        )
    values[name] = int(value)


def _finite(value):
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:   # an int beyond any float
        return False


def _number(values, name, above, at_most, expected, allow_none=False,
            minimum_inclusive=None):
    value = values[name]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ) or not _finite(value):
        raise OptionError(
            f"`{name}` must be a finite number {expected}. Received: "
            f"{name}={value!r}"
        )
    if (above is not None and not value > above) or (
        at_most is not None and value > at_most
    ) or (minimum_inclusive is not None and value < minimum_inclusive):
        raise OptionError(
            f"`{name}` must be a number {expected}. Received: "
            f"{name}={value}"
        )
    values[name] = float(value)
