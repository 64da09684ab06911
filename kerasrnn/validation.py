"""Argument checks shared by every constructor and function of kerasrnn.

Each check returns the value (normalised) or raises a ValueError that names
the argument, what it received and what was expected, in Keras' words:
"`units` must be a positive integer. Received: units=0". Standard library
only. (Checks of tensors, shapes and data live with the layers and the
searches that receive them: ``layers/checks.py``, ``decoding/checks.py``.)
"""

import numbers


def check_int(name, value, minimum=1, allow_none=False):
    """``value`` as an int ``>= minimum`` (None passes when allowed);
    NumPy integers count, booleans do not."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = (
            "a positive integer" if minimum == 1 else
            f"an integer ≥ {minimum}"
        ) + (" or None" if allow_none else "")
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )
    if value < minimum:
        expected = "a positive integer" if minimum == 1 else f"≥ {minimum}"
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )
    return int(value)


def check_rate(name, rate):
    """A dropout rate: a float in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (
        0.0 <= rate < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={rate!r}"
        )
    return float(rate)


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. Received: "
            f"{name}={value!r}"
        )
    return value
