"""Input checks shared by the sequence layers: clear errors, no broadcasting.

Each check names the argument, what it received and what it expected.
"""

from keras import ops


def check_sequences(sequences, layer_name, feature_size=None, dtype=None):
    """``sequences`` must be a numeric ``(batch, time, features)`` tensor;
    integer and boolean ones are cast to ``dtype`` (the layer's compute
    dtype), as Keras' recurrent layers do."""
    sequences = ops.convert_to_tensor(sequences)
    shape = tuple(sequences.shape)
    if len(shape) != 3:
        raise ValueError(
            f"Layer '{layer_name}' expects `sequences` of rank 3 "
            f"(batch, time, features). Received: shape={shape}"
        )
    kind = str(sequences.dtype.name if hasattr(sequences.dtype, "name")
               else sequences.dtype)
    if "float" not in kind:
        if not ("int" in kind or kind == "bool"):
            raise TypeError(
                f"Layer '{layer_name}' expects numeric `sequences`. "
                f"Received: dtype={kind}"
            )
        sequences = ops.cast(sequences, dtype or "float32")
    if shape[1] == 0:
        raise ValueError(
            f"Layer '{layer_name}' received empty sequences (time axis of "
            f"length 0). Received: shape={shape}"
        )
    if feature_size is not None and shape[2] is not None:
        if shape[2] != feature_size:
            raise ValueError(
                f"Layer '{layer_name}' was built for {feature_size} input "
                f"features; `sequences` has {shape[2]}. Received: "
                f"shape={shape}"
            )
    return sequences


def check_mask(mask, sequences, layer_name):
    """``mask`` must be None or ``(batch, time)``; returned as bool."""
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    expected = tuple(sequences.shape[:2])
    shape = tuple(mask.shape)
    if len(shape) != 2 or any(
        a is not None and b is not None and a != b
        for a, b in zip(shape, expected)
    ):
        raise ValueError(
            f"Layer '{layer_name}' expects `mask` of shape (batch, time) = "
            f"{expected}. Received: mask.shape={shape}"
        )
    return ops.cast(mask, "bool")


def check_states(states, sizes, batch_size, layer_name, argument):
    """A list of ``len(sizes)`` tensors, state ``k`` of shape (B, sizes[k])."""
    if not isinstance(states, (list, tuple)):
        states = [states]
    if len(states) != len(sizes):
        raise ValueError(
            f"Layer '{layer_name}' expects `{argument}` to be a list of "
            f"{len(sizes)} tensor(s) of shapes "
            f"{[(batch_size, s) for s in sizes]}. Received "
            f"{len(states)} tensor(s)."
        )
    checked = []
    for index, (state, size) in enumerate(zip(states, sizes)):
        state = ops.convert_to_tensor(state)
        shape = tuple(state.shape)
        expected = (batch_size, size)
        if len(shape) != 2 or any(
            a is not None and b is not None and a != b
            for a, b in zip(shape, expected)
        ):
            raise ValueError(
                f"Layer '{layer_name}': `{argument}[{index}]` must have "
                f"shape {expected}. Received: shape={shape}"
            )
        checked.append(state)
    return checked


def check_use_cudnn(use_cudnn, layer_name):
    """``use_cudnn`` as Keras' recurrent layers take it, but ``True``:
    ``"auto"`` (the vendor kernel where the configuration allows it) or
    ``False`` (never)."""
    if use_cudnn is False or use_cudnn == "auto":
        return use_cudnn
    raise ValueError(
        f"Layer '{layer_name}' cannot promise cuDNN: `use_cudnn` must be "
        "'auto' (the backend's vendor kernel where the configuration allows "
        "it) or False (never). Received: "
        f"use_cudnn={use_cudnn!r}"
    )
