"""Long-range-dependency tasks as NumPy data generators.

Both tasks put the information the target needs at the start of a sequence
of length ``T`` and ask for it at the end, so a model must carry it across
about ``T`` recurrent steps; the trivial, memoryless answer has a known loss
(the baseline) that a model which fails to learn the dependency stays at.
"""

import math

import numpy as np

from kerasrnn.validation import check_int

# MSE of always predicting E[y] = 1: Var(u_1 + u_2) = 2 / 12 for u ~ U[0, 1].
ADDING_BASELINE_MSE = 1.0 / 6.0


def adding_problem(length, count, seed=None):
    """Samples of the adding problem with sequences of ``length`` steps.

    Each step carries two features: a value ``u_t ~ U[0, 1]`` and a marker
    ``m_t ∈ {0, 1}``. Exactly two steps are marked, one drawn uniformly from
    the first half ``[0, ⌊T/2⌋)`` and one from the second half
    ``[⌊T/2⌋, T)``, so the first marked value must be held for at least
    ``T/2`` steps. The target is the sum of the marked values::

        y = Σ_t u_t m_t

    Predicting ``E[y] = 1`` whatever the input gives an MSE of
    ``Var(u_1 + u_2) = 1/6 ≈ 0.167`` (``ADDING_BASELINE_MSE``); a model has
    learned the task when its MSE is far below that (0.01 is the usual bar).

    Args:
        length: T, the number of steps (an integer ≥ 2).
        count: the number of samples (an integer ≥ 1).
        seed: seed of ``np.random.default_rng`` (or a Generator).

    Returns:
        ``(x, y)``: float32 arrays of shapes ``(count, T, 2)`` and
        ``(count, 1)``.

    Reference:
        Hochreiter & Schmidhuber, "Long Short-Term Memory", 1997 (the
        task); Le, Jaitly & Hinton, "A Simple Way to Initialize Recurrent
        Networks of Rectified Linear Units", 2015 (this U[0, 1] variant).
    """
    length = check_int("length", length, 2)
    count = check_int("count", count, 1)
    rng = np.random.default_rng(seed)
    half = length // 2
    values = rng.random((count, length))
    markers = np.zeros((count, length))
    rows = np.arange(count)
    markers[rows, rng.integers(0, half, count)] = 1.0
    markers[rows, rng.integers(half, length, count)] = 1.0
    x = np.stack([values, markers], axis=-1).astype("float32")
    y = (values * markers).sum(axis=1, keepdims=True).astype("float32")
    return x, y


def copy_memory(length, count, copy_length=10, alphabet=8, seed=None):
    """Samples of the copy-memory task with a delay of ``length`` steps.

    Tokens: 0 is the blank, ``1..alphabet`` are data symbols and
    ``alphabet + 1`` is the delimiter. An input sequence has
    ``T + 2·copy_length`` steps::

        x = s_1 … s_K | 0 × (T − 1) | delimiter | 0 × K
        y = 0 × (T + K)                         | s_1 … s_K

    with ``K = copy_length`` symbols ``s_i`` drawn uniformly from
    ``1..alphabet``. The model must output blanks until the delimiter, then
    repeat the first ``K`` symbols. A model without memory outputs blanks
    and then guesses uniformly, for a mean cross-entropy per step of
    ``K log(alphabet) / (T + 2K)`` (``copy_memory_baseline``).

    Args:
        length: T, the delay (an integer ≥ 1).
        count: the number of samples.
        copy_length: K, how many symbols to remember.
        alphabet: how many distinct data symbols.
        seed: seed of ``np.random.default_rng`` (or a Generator).

    Returns:
        ``(x, y)``: int32 arrays of shape ``(count, T + 2K)``; the number of
        classes is ``alphabet + 2``.

    Reference:
        Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio, "Unitary
        Evolution Recurrent Neural Networks", 2016 (this formulation).
    """
    length = check_int("length", length, 1)
    count = check_int("count", count, 1)
    copy_length = check_int("copy_length", copy_length, 1)
    alphabet = check_int("alphabet", alphabet, 1)
    rng = np.random.default_rng(seed)
    steps = length + 2 * copy_length
    symbols = rng.integers(1, alphabet + 1, (count, copy_length))
    x = np.zeros((count, steps), dtype="int32")
    y = np.zeros((count, steps), dtype="int32")
    x[:, :copy_length] = symbols
    x[:, length + copy_length - 1] = alphabet + 1
    y[:, length + copy_length:] = symbols
    return x, y


def copy_memory_baseline(length, copy_length=10, alphabet=8):
    """Mean cross-entropy per step of the memoryless copy-memory strategy."""
    length = check_int("length", length, 1)
    return copy_length * math.log(alphabet) / (length + 2 * copy_length)
