"""Argument checks shared by the searches: each error names the argument,
what it received and what was expected."""

import keras
from keras import ops

from kerasrnn.decoding.tensors import backend
from kerasrnn.decoding.tensors import dtype_name
from kerasrnn.decoding.tensors import is_tensor
from kerasrnn.decoding.tensors import rank


def check_step_fn(step_fn):
    if not callable(step_fn):
        raise TypeError(
            "`step_fn` must be callable as step_fn(token_ids, state) -> "
            f"(logits, state). Received: step_fn={step_fn!r}"
        )


def check_int(name, value, minimum, allow_none=False):
    """``value`` if it is an int >= ``minimum`` (or None when allowed).

    A scalar integer tensor passes as an int32 tensor: its value is only
    known when the graph runs, so the caller checks it beforehand (this is
    how ``Seq2Seq.generate`` traces one graph for every value)."""
    if value is None and allow_none:
        return None
    if is_tensor(value):
        return scalar_tensor(name, value, "int32")
    if isinstance(value, bool) or not isinstance(value, int) or (
        value < minimum
    ):
        extra = " or None" if allow_none else ""
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}{extra}. Received: "
            f"{name}={value!r}"
        )
    return value


def scalar_tensor(name, value, dtype):
    """A scalar tensor ``value`` cast to ``dtype``; any other shape, or a
    non-numeric dtype, is an error naming ``name``."""
    kind = dtype_name(value)
    if rank(value) != 0 or not ("int" in kind or "float" in kind):
        raise ValueError(
            f"`{name}` must be a number or a scalar numeric tensor. "
            f"Received: {name} of shape {tuple(value.shape)} and dtype "
            f"{kind}"
        )
    return ops.cast(value, dtype)


def check_lengths(max_length, min_length):
    """The lengths checked (ints, or scalar int32 tensors)."""
    max_length = check_int("max_length", max_length, 1)
    min_length = check_int("min_length", min_length, 0)
    if is_tensor(max_length) or is_tensor(min_length):
        return max_length, min_length
    if min_length > max_length:
        raise ValueError(
            "`min_length` must not exceed `max_length`. Received: "
            f"min_length={min_length}, max_length={max_length}"
        )
    return max_length, min_length


def check_forbidden_ids(forbidden_ids, end_id):
    """``forbidden_ids`` as a sorted tuple of distinct ints >= 0, none of
    them ``end_id``."""
    if forbidden_ids is None:
        return ()
    if isinstance(forbidden_ids, int) and not isinstance(
        forbidden_ids, bool
    ):
        forbidden_ids = (forbidden_ids,)
    ids = []
    for value in forbidden_ids:
        ids.append(check_int("forbidden_ids", value, 0))
    if end_id is not None and end_id in ids:
        raise ValueError(
            "`forbidden_ids` must not contain the end token "
            f"end_id={end_id}. Received: forbidden_ids={sorted(ids)}"
        )
    return tuple(sorted(set(ids)))


def check_start_ids(start_ids):
    """``start_ids`` as an int32 ``(B,)`` tensor."""
    start_ids = ops.convert_to_tensor(start_ids)
    if rank(start_ids) != 1:
        raise ValueError(
            "`start_ids` must be a 1-D tensor of token ids, one per batch "
            f"row. Received: shape={tuple(start_ids.shape)}"
        )
    if "int" not in dtype_name(start_ids):
        raise TypeError(
            "`start_ids` must hold integer token ids. Received: "
            f"dtype={dtype_name(start_ids)}"
        )
    return ops.cast(start_ids, "int32")


def check_state(state, batch_size):
    """Converts every leaf of ``state`` to a tensor and checks its leading
    axis is the batch (when both sizes are known)."""
    state = keras.tree.map_structure(ops.convert_to_tensor, state)
    for index, leaf in enumerate(keras.tree.flatten(state)):
        leading = leaf.shape[0] if rank(leaf) else None
        if rank(leaf) == 0 or (
            leading is not None and batch_size is not None
            and leading != batch_size
        ):
            raise ValueError(
                "Every tensor in `initial_state` must have the batch as its "
                f"leading axis ({batch_size} rows, as `start_ids`). "
                f"Received: leaf {index} with shape {tuple(leaf.shape)}"
            )
    return state


def check_logits(logits, end_id, pad_id, forbidden_ids=()):
    """Static checks on the first logits ``step_fn`` returns."""
    logits = ops.convert_to_tensor(logits)
    if rank(logits) != 2:
        raise ValueError(
            "`step_fn` must return logits of shape (batch, vocabulary). "
            f"Received: shape={tuple(logits.shape)}"
        )
    vocabulary = logits.shape[-1]
    if vocabulary is not None:
        named = [("end_id", end_id), ("pad_id", pad_id)] + [
            ("forbidden_ids", value) for value in forbidden_ids
        ]
        for name, value in named:
            if value is not None and value >= vocabulary:
                raise ValueError(
                    f"`{name}` must be a token id below the vocabulary "
                    f"size {vocabulary}. Received: {name}={value}"
                )
    return ops.cast(logits, "float32")


def call_step(step_fn, token_ids, state):
    """Calls ``step_fn`` and pins the new state to the old state's
    structure and shapes (a loop needs both fixed)."""
    logits, new_state = step_fn(token_ids, state)
    try:
        keras.tree.assert_same_structure(state, new_state)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`step_fn` must return a state with the structure of the state "
            f"it received. Received: {keras.tree.map_structure(_shape, state)}"
            f" -> {keras.tree.map_structure(_shape, new_state)}"
        ) from error
    if backend() == "tensorflow":
        import tensorflow as tf

        return logits, tf.nest.map_structure(
            lambda new, old: tf.ensure_shape(
                tf.cast(new, old.dtype), old.shape
            ),
            new_state,
            state,
        )
    return logits, keras.tree.map_structure(
        lambda new, old: _same_shape(ops.cast(new, old.dtype), old),
        new_state, state,
    )


def _same_shape(new, old):
    if tuple(new.shape) != tuple(old.shape):
        raise ValueError(
            "`step_fn` must return state tensors of the shapes it received. "
            f"Received: {tuple(old.shape)} -> {tuple(new.shape)}"
        )
    return new


def _shape(tensor):
    return tuple(getattr(tensor, "shape", ()))
