"""The largest |ours - reference| of every parity check, per reference.

Each parity test passes its compared arrays through :func:`record`; the
hooks in ``conftest.py`` gather the figures from every pytest-xdist worker
and print them at the end of the run, so each test run reports how close
kerasrnn is to each reference, not only that it is within tolerance.
"""

import keras
import numpy as np

# reference name -> [largest absolute error, number of compared arrays]
WORST = {}


def record(reference, ours, theirs):
    """Notes the largest absolute difference of two equally shaped arrays
    under ``reference`` and returns it."""
    ours = to_numpy(ours)
    theirs = to_numpy(theirs)
    return note(reference,
                float(np.abs(ours - theirs).max()) if ours.size else 0.0)


def to_numpy(value):
    """An array or any Keras backend's tensor as a float64 NumPy array."""
    if not isinstance(value, (np.ndarray, float, int, list, tuple)):
        value = keras.ops.convert_to_numpy(value)
    return np.asarray(value, np.float64)


def note(reference, error, count=1):
    """Notes ``error``, the largest of ``count`` comparisons, under
    ``reference`` and returns it."""
    worst, total = WORST.get(reference, (0.0, 0))
    WORST[reference] = [max(worst, error), total + count]
    return error


def merge(figures):
    """Adds another process's :data:`WORST` into this one's."""
    for reference, (error, count) in figures.items():
        note(reference, error, count)


def summary_lines():
    """One line per reference, largest error first."""
    width = max(map(len, WORST), default=0)
    return [
        f"{reference:<{width}}  max |error| {error:.1e}  "
        f"({count:,} arrays compared)"
        for reference, (error, count) in sorted(
            WORST.items(), key=lambda item: -item[1][0])
    ]
