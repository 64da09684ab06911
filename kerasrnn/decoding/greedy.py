"""Token-by-token searches: greedy and sampling (temperature, top-k, top-p).

Both run one loop (``keras.ops.while_loop``: ``tf.while_loop``,
``lax.while_loop``, a Python loop on PyTorch) over fixed-size buffers, so
they work eagerly, inside ``tf.function`` and under XLA. Each step::

    logits, state = step_fn(tokens, state)            # (B, V)
    logits[forbidden_ids] = -inf     (never generated: padding, BOS)
    logits[end_id] = -inf            while t < min_length
    y_t = argmax(logits)                               # greedy
    y_t ~ softmax(top_p(top_k(logits / temperature)))  # sampling
    log_prob += log_softmax(logits)[y_t]               # rows not finished
    finished |= (y_t == end_id)

A finished row writes ``pad_id`` and adds nothing to its score; the loop
stops when every row is finished or after ``max_length`` tokens.
"""

import keras
from keras import ops

from kerasrnn.decoding.beam import tile_batch
from kerasrnn.decoding.checks import call_step
from kerasrnn.decoding.checks import check_forbidden_ids
from kerasrnn.decoding.checks import check_int
from kerasrnn.decoding.checks import check_lengths
from kerasrnn.decoding.checks import check_logits
from kerasrnn.decoding.checks import check_start_ids
from kerasrnn.decoding.checks import check_state
from kerasrnn.decoding.checks import check_step_fn
from kerasrnn.decoding.logits import apply_temperature
from kerasrnn.decoding.logits import check_temperature
from kerasrnn.decoding.logits import check_top_k
from kerasrnn.decoding.logits import check_top_p
from kerasrnn.decoding.logits import forbid_token
from kerasrnn.decoding.logits import forbid_tokens
from kerasrnn.decoding.logits import top_k_filter
from kerasrnn.decoding.logits import top_p_filter
from kerasrnn.decoding.result import DecodingResult
from kerasrnn.decoding.tensors import is_tensor
from kerasrnn.decoding.tensors import random_seed
from kerasrnn.decoding.tensors import rank
from kerasrnn.decoding.tensors import stateless_categorical


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
    """Picks the most probable token at every step.

    Args:
        step_fn: ``step_fn(token_ids (B,) int32, state) -> (logits (B, V),
            state)``; ``state`` is any nest of tensors with leading axis B,
            returned with the same structure and shapes.
        start_ids: int ``(B,)``, the first input token of each row (BOS).
        initial_state: the state for the first step.
        end_id: the end token (EOS), or None to always run ``max_length``
            steps.
        max_length: the most tokens to generate (the end token included).
        min_length: the end token is forbidden for the first ``min_length``
            steps.
        pad_id: written after a row's end token.
        forbidden_ids: token ids never generated (None: none), e.g. the
            padding and start tokens of a model's vocabulary; their
            probability is 0 in every step.

    ``max_length``, ``min_length`` (and the sampling options) may also be
    scalar tensors, so that one traced graph serves every value; they are
    then not checked here.

    Returns:
        A ``DecodingResult`` with ``K = 1``.
    """
    return _token_by_token(
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
        pad_id, forbidden_ids, _argmax,
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
    """Ancestral sampling from ``softmax(logits / temperature)``, optionally
    restricted to the ``top_k`` tokens and then to the ``top_p`` nucleus.

    The draws are stateless: step ``t`` uses the seed pair ``(seed, t)``, so
    one seed gives the same samples every call, eagerly or in a
    ``tf.function``. Under XLA (``jit_compile=True``) the draws are just as
    reproducible but differ from those of the CPU kernels (XLA has its own
    generator).

    Args:
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
            pad_id, forbidden_ids: as in ``greedy_search``.
        temperature: > 0 (as it goes to 0 sampling becomes greedy search;
            0 itself is an error: use ``greedy_search``).
        top_k: None or an integer >= 1.
        top_p: None or a number in (0, 1].
        num_samples: samples per row (the state is tiled for them).
        seed: an int or scalar int tensor; None draws one from the global
            generator (TensorFlow's, or Keras' on JAX and PyTorch;
            reproducible under ``keras.utils.set_random_seed``). The
            draws of one seed differ between backends (each has its own
            generator).

    Returns:
        A ``DecodingResult`` with ``K = num_samples``, samples in draw order.
    """
    temperature = check_temperature(temperature)
    top_k = check_top_k(top_k)
    top_p = check_top_p(top_p)
    check_int("num_samples", num_samples, 1)
    if seed is None:
        seed = random_seed()
    if isinstance(seed, int) and not isinstance(seed, bool):
        seed = ops.convert_to_tensor(seed, dtype="int32")
    else:
        seed = ops.convert_to_tensor(seed)
        if rank(seed) != 0 or "int" not in keras.backend.standardize_dtype(
            seed.dtype
        ):
            raise ValueError(
                "`seed` must be None, an int or a scalar int tensor. "
                f"Received: seed={seed!r}"
            )
        seed = ops.cast(seed, "int32")

    def draw(logits, step):
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        return stateless_categorical(
            logits, ops.stack([seed, ops.cast(step, "int32")])
        )

    start_ids = check_start_ids(start_ids)
    if num_samples > 1:
        start_ids = tile_batch(start_ids, num_samples)
        initial_state = tile_batch(initial_state, num_samples)
    result = _token_by_token(
        step_fn, start_ids, initial_state, end_id, max_length, min_length,
        pad_id, forbidden_ids, draw,
    )
    if num_samples == 1:
        return result
    return keras.tree.map_structure(
        lambda x: _untile(x, num_samples), result
    )


def _argmax(logits, step):
    del step
    return ops.cast(ops.argmax(logits, axis=-1), "int32")


def _untile(tensor, count):
    """``(B*count, 1, ...)`` -> ``(B, count, ...)``."""
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        shape = tf.shape(tensor)
        return tf.reshape(
            tensor, tf.concat([[-1, count], shape[2:]], axis=0)
        )
    return ops.reshape(tensor, (-1, count, *tensor.shape[2:]))


def _token_by_token(
    step_fn, start_ids, initial_state, end_id, max_length, min_length,
    pad_id, forbidden_ids, select,
):
    check_step_fn(step_fn)
    max_length, min_length = check_lengths(max_length, min_length)
    check_int("end_id", end_id, 0, allow_none=True)
    check_int("pad_id", pad_id, 0)
    forbidden_ids = check_forbidden_ids(forbidden_ids, end_id)
    start_ids = check_start_ids(start_ids)
    batch_static = start_ids.shape[0]
    state = check_state(initial_state, batch_static)
    batch = ops.shape(start_ids)[0]
    positions = ops.arange(max_length, dtype="int32")

    def body(t, tokens, state, ids, lengths, log_probs, finished):
        logits, state = call_step(step_fn, tokens, state)
        logits = check_logits(logits, end_id, pad_id, forbidden_ids)
        logits = forbid_tokens(logits, forbidden_ids)
        if end_id is not None and (
            is_tensor(min_length) or min_length > 0
        ):
            logits = forbid_token(logits, end_id, t < min_length)
        chosen = select(logits, t)
        step_log_probs = ops.take_along_axis(
            ops.log_softmax(logits), chosen[:, None], axis=1
        )[:, 0]
        alive = ops.logical_not(finished)
        chosen = ops.where(alive, chosen, pad_id)
        log_probs += ops.where(alive, step_log_probs, 0.0)
        lengths += ops.cast(alive, "int32")
        ids = ops.where(
            ops.equal(positions, t)[None, :], chosen[:, None], ids
        )
        if end_id is not None:
            finished = ops.logical_or(finished, ops.equal(chosen, end_id))
            tokens = ops.where(alive, chosen, end_id)
        else:
            tokens = chosen
        return t + 1, tokens, state, ids, lengths, log_probs, finished

    def cond(t, tokens, state, ids, lengths, log_probs, finished):
        return ops.logical_not(ops.all(finished))

    loop_vars = (
        ops.convert_to_tensor(0, "int32"),
        start_ids,
        state,
        ops.full((batch, max_length), pad_id, "int32"),
        ops.zeros((batch,), "int32"),
        ops.zeros((batch,), "float32"),
        ops.zeros((batch,), "bool"),
    )
    _, _, _, ids, lengths, log_probs, _ = ops.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    return DecodingResult(
        ids=ids[:, None],
        lengths=lengths[:, None],
        scores=log_probs[:, None],
        log_probs=log_probs[:, None],
    )
