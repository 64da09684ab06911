"""Monte-Carlo dropout: predictions with dropout kept on, and their spread.

Gal & Ghahramani (2016) read a network trained with dropout as a Bayesian
approximation: running it ``N`` times with dropout *on* draws ``N`` weight
samples ``ω_n ~ q(ω)``, and the spread of the outputs measures the model's
uncertainty. ``mc_dropout`` does exactly that: each sample is one forward
pass with ``training=True``, so every kerasrnn cell draws its variational
masks (one input mask and one recurrent mask per sequence, as in training)
and every ``Dropout`` layer its own (per element, as in training: the
``inter_layer_dropout`` of a stack and a ``LanguageModel``'s embedding and
output dropout are ``keras.layers.Dropout``, so those masks change from
step to step). With ``seed`` given, the model's seed
generators are set from it for the run and restored afterwards, so the
samples repeat exactly and the model's own random stream is left as it was.

For a classifier with sample probabilities ``p_n = softmax(f(x; ω_n))``::

    p̄               = 1/N Σ_n p_n                        (mean)
    H[p̄]            = -Σ_c p̄_c log p̄_c                   (predictive entropy)
    E[H]            = 1/N Σ_n -Σ_c p_nc log p_nc         (expected entropy)
    MI              = H[p̄] - E[H]  ≥ 0                   (mutual information)

``MI`` (the BALD score) is the part of the uncertainty due to the weights.
Entropies are in nats. Taggers and language models give the same per
token (the class axis is the last one); regression outputs and sequence
scores (``seq2seq_scores``) get the mean and the standard deviation.

``expected_calibration_error``, ``reliability_curve`` and ``auroc`` are the
figures the example reports; ``plot_reliability`` draws the diagram.

Reference:
    Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing
    Model Uncertainty in Deep Learning", ICML 2016; "A Theoretically
    Grounded Application of Dropout in Recurrent Neural Networks", NeurIPS
    2016. Houlsby et al., "Bayesian Active Learning for Classification and
    Preference Learning" (BALD), 2011. Guo et al., "On Calibration of
    Modern Neural Networks", ICML 2017 (ECE).
"""

import dataclasses

import numpy as np
from keras import ops

OUTPUTS = ("logits", "probabilities", "values")


@dataclasses.dataclass(frozen=True)
class MCPrediction:
    """The samples of ``mc_dropout`` and their statistics.

    Attributes:
        samples: ``(N, *output_shape)``: one forward pass per sample, as
            probabilities for ``output="logits"`` or ``"probabilities"``,
            as returned for ``"values"``.
        output: the ``output`` kind the samples were read as.
    """

    samples: np.ndarray
    output: str

    @property
    def mean(self):
        """``1/N Σ_n y_n``, the MC estimate of the predictive mean."""
        return self.samples.mean(axis=0)

    @property
    def std(self):
        """The standard deviation over samples (``ddof=0``)."""
        return self.samples.std(axis=0)

    def _check_classes(self, name):
        if self.output == "values":
            raise ValueError(
                f"`{name}` needs class probabilities; these samples were "
                "read with output='values'. Use output='logits' or "
                "'probabilities'."
            )

    @property
    def predictive_entropy(self):
        """``H[p̄] = -Σ_c p̄_c log p̄_c`` (nats), per example or token."""
        self._check_classes("predictive_entropy")
        return entropy(self.mean)

    @property
    def expected_entropy(self):
        """``1/N Σ_n H[p_n]`` (nats): the aleatoric part."""
        self._check_classes("expected_entropy")
        return entropy(self.samples).mean(axis=0)

    @property
    def mutual_information(self):
        """``H[p̄] - E[H[p_n]]`` (nats), clipped at 0 against round-off."""
        self._check_classes("mutual_information")
        return np.maximum(self.predictive_entropy - self.expected_entropy, 0)

    @property
    def predicted_class(self):
        """``argmax_c p̄_c``."""
        self._check_classes("predicted_class")
        return self.mean.argmax(axis=-1)


def entropy(probabilities, axis=-1):
    """``-Σ_c p_c log p_c`` over ``axis`` (nats; ``0 log 0 = 0``)."""
    p = np.asarray(probabilities, dtype="float64")
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=axis)


def seed_generators(model):
    """Every ``keras.random.SeedGenerator`` of ``model`` and its sublayers
    (the cells' dropout masks, ``Dropout`` layers), each once, in layer
    order."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator) not in seen:
                seen.add(id(generator))
                found.append(generator)
    return found


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or (
        value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an integer ≥ {minimum}. Received: "
            f"{name}={value!r}"
        )


def _as_numpy(outputs, output):
    if isinstance(outputs, (list, tuple)):
        raise ValueError(
            "The forward pass must return one tensor (the logits, "
            f"probabilities or values). Received a {type(outputs).__name__}"
            f" of {len(outputs)}; pass `forward=` to pick one."
        )
    values = ops.convert_to_numpy(outputs).astype("float64")
    if output == "logits":
        values = values - values.max(axis=-1, keepdims=True)
        values = np.exp(values)
        values /= values.sum(axis=-1, keepdims=True)
    return values


def mc_dropout(model, inputs, samples=30, seed=None, output="logits",
               forward=None, batch_size=None):
    """Runs ``model`` ``samples`` times with dropout on.

    Each sample is ``forward(inputs, training=True)`` (default
    ``model(inputs, training=True)``): the cells draw new variational masks
    (one per sequence and sample, as in training), so sample ``n`` is the
    network with weights ``ω_n ~ q(ω)``. A model without dropout gives
    identical samples (zero spread).

    Args:
        model: a Keras model or layer with dropout (its seed generators are
            the ones seeded).
        inputs: whatever ``forward`` (or the model) takes: one batch.
        samples: N ≥ 1.
        seed: an int: the run's seed generators start from states derived
            from it (generator ``k`` at ``[seed, k]``-like states) and are
            restored afterwards, so equal seeds give equal samples. None:
            the generators continue their own streams.
        output: ``"logits"`` (softmax over the last axis), ``"probabilities"``
            (used as they are) or ``"values"`` (no class axis: regression
            outputs, sequence scores).
        forward: optional ``forward(inputs, training) -> tensor``, for
            models whose call returns several things or a score to be
            computed (``seq2seq_scores``).
        batch_size: None: ``inputs`` is one batch. An int: ``inputs`` (an
            array, or a tuple of arrays with one row per example) is cut
            into batches of this many rows along the first axis; each batch
            gets all N samples.

    Returns:
        An ``MCPrediction``: ``samples (N, *shape)``, ``mean``, ``std``
        and, for classes, ``predictive_entropy``, ``expected_entropy``,
        ``mutual_information``.

    Example:

    >>> import keras
    >>> import kerasrnn
    >>> model = keras.Sequential([
    ...     keras.Input((5, 3)),
    ...     kerasrnn.LSTM(8, dropout=0.3, recurrent_dropout=0.3),
    ...     keras.layers.Dense(4)])
    >>> result = mc_dropout(model, np.ones((2, 5, 3)), samples=10, seed=0)
    >>> result.samples.shape, result.predictive_entropy.shape
    ((10, 2, 4), (2,))
    """
    _check_count("samples", samples, 1)
    if output not in OUTPUTS:
        raise ValueError(
            f"`output` must be one of {OUTPUTS}. Received: output={output!r}"
        )
    if seed is not None and (isinstance(seed, bool)
                             or not isinstance(seed, int) or seed < 0):
        raise ValueError(
            f"`seed` must be None or an integer ≥ 0. Received: seed={seed!r}"
        )
    if forward is None:
        if not callable(model):
            raise TypeError(
                "`model` must be a callable Keras model or layer. Received: "
                f"{type(model).__name__}"
            )

        def forward(batch, training):
            return model(batch, training=training)

    generators = seed_generators(model)
    saved = [ops.convert_to_numpy(g.state.value) for g in generators]
    if seed is not None:
        for index, generator in enumerate(generators):
            generator.state.assign(ops.cast(
                ops.convert_to_tensor([seed, 1000003 * (index + 1)]),
                generator.state.dtype,
            ))
    if batch_size is None:
        batches = [inputs]
    else:
        _check_count("batch_size", batch_size, 1)
        batches = _batches(inputs, batch_size)
    try:
        drawn = np.concatenate([
            np.stack([_as_numpy(forward(batch, training=True), output)
                      for _ in range(samples)])
            for batch in batches
        ], axis=1)
    finally:
        if seed is not None:
            for generator, state in zip(generators, saved):
                generator.state.assign(state)
    return MCPrediction(samples=drawn, output=output)


def _batches(inputs, batch_size):
    parts = inputs if isinstance(inputs, tuple) else (inputs,)
    parts = [np.asarray(part) for part in parts]
    rows = {len(part) for part in parts}
    if len(rows) != 1:
        raise ValueError(
            "With `batch_size`, every input array needs the same number of "
            f"rows. Received: {sorted(rows)}"
        )
    count = rows.pop()
    batches = []
    for start in range(0, count, batch_size):
        cut = tuple(part[start:start + batch_size] for part in parts)
        batches.append(cut if isinstance(inputs, tuple) else cut[0])
    return batches


def seq2seq_scores(model, source, target):
    """A ``forward`` for ``mc_dropout`` scoring targets under a ``Seq2Seq``.

    Returns ``forward(inputs, training)`` that ignores ``inputs`` and gives
    ``log p(y | x) = Σ_t log softmax(logits_t)[y_{t+1}]`` per pair, over the
    real (non-pad) target tokens after ``bos``, from the teacher-forced
    logits of ``model((source, target[:, :-1]))``.
    """
    source = np.asarray(source)
    target = np.asarray(target)
    if source.ndim != 2 or target.ndim != 2 or (
        source.shape[0] != target.shape[0]
    ):
        raise ValueError(
            "`source` and `target` must be (batch, time) id arrays with the "
            f"same batch. Received: shapes {source.shape} and "
            f"{target.shape}"
        )
    labels = target[:, 1:]
    weights = (labels != model.pad_id).astype("float32")

    def forward(_, training):
        logits = model((source, target[:, :-1]), training=training)
        logs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        picked = ops.take_along_axis(
            logs, ops.expand_dims(labels, -1), axis=-1
        )[..., 0]
        return ops.sum(picked * weights, axis=-1)

    return forward


def _check_confidences(probabilities, labels):
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ValueError(
            "Expected `probabilities` (examples, classes) and `labels` "
            "(examples,). Received: shapes "
            f"{probabilities.shape} and {labels.shape}"
        )
    if labels.size == 0:
        raise ValueError("`labels` is empty: nothing to calibrate.")
    return probabilities, labels


def reliability_curve(probabilities, labels, bins=10):
    """Confidence bins of equal width on ``[0, 1]``.

    The confidence of an example is ``max_c p_c``; it falls in bin ``b``
    when ``b/M < conf ≤ (b+1)/M`` (the first bin includes 0).

    Returns:
        ``(counts, confidence, accuracy)``, each ``(M,)``: examples per
        bin, their mean confidence and their accuracy (NaN for an empty
        bin).
    """
    _check_count("bins", bins, 1)
    probabilities, labels = _check_confidences(probabilities, labels)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype("float64")
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(
            index, confidence, minlength=bins) / counts
        accuracy = np.bincount(index, correct, minlength=bins) / counts
    return counts, mean_confidence, accuracy


def expected_calibration_error(probabilities, labels, bins=10):
    """``ECE = Σ_b (n_b / n) |acc_b - conf_b|`` over ``reliability_curve``
    bins (Guo et al. 2017)."""
    counts, confidence, accuracy = reliability_curve(
        probabilities, labels, bins
    )
    filled = counts > 0
    gaps = np.abs(accuracy[filled] - confidence[filled])
    return float((counts[filled] * gaps).sum() / counts.sum())


def auroc(scores, positives):
    """Area under the ROC curve of ``scores`` for the ``positives``.

    ``P(score(a) > score(b)) + ½ P(score(a) = score(b))`` for a random
    positive ``a`` and negative ``b`` (the Mann-Whitney statistic, with
    ties counted half): 1 when every positive scores above every negative,
    0.5 for chance. With ``scores`` = predictive entropy and ``positives``
    = misclassified, it says how well the uncertainty flags errors.
    """
    scores = np.asarray(scores, dtype="float64").ravel()
    positives = np.asarray(positives, dtype=bool).ravel()
    if scores.shape != positives.shape:
        raise ValueError(
            "`scores` and `positives` must have one entry per example. "
            f"Received: {scores.size} and {positives.size}"
        )
    count = int(positives.sum())
    if count == 0 or count == positives.size:
        raise ValueError(
            "AUROC needs both positives and negatives. Received: "
            f"{count} positives of {positives.size}"
        )
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(
        sorted_scores, return_index=True, return_counts=True
    )
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    negatives = positives.size - count
    statistic = ranks[positives].sum() - count * (count + 1) / 2.0
    return float(statistic / (count * negatives))


def plot_reliability(curves, path, title=None):
    """A reliability diagram: accuracy against confidence per bin.

    Args:
        curves: ``{label: (probabilities, labels)}``; each becomes one line
            with its ECE in the legend (the diagonal is perfect
            calibration).
        path: a ``.png`` path (its folder is created).
        title: optional figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    from kerasrnn.diagnostics.plots import save

    if not curves:
        raise ValueError("`curves` must hold at least one (probabilities, "
                         "labels) pair.")
    figure = Figure(figsize=(5.5, 5))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":",
              label="perfect calibration")
    for label, (probabilities, labels) in curves.items():
        counts, confidence, accuracy = reliability_curve(
            probabilities, labels)
        ece = expected_calibration_error(probabilities, labels)
        filled = counts > 0
        axes.plot(confidence[filled], accuracy[filled], marker="o",
                  label=f"{label} (ECE {ece:.3f})")
    axes.set_xlabel("confidence (max probability)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left")
    if title:
        axes.set_title(title)
    return save(figure, path)


def deterministic_probabilities(model, inputs, forward=None):
    """``softmax`` of one pass with dropout off (the usual prediction), as
    float64 NumPy: the baseline ``mc_dropout`` is compared with."""
    outputs = (forward(inputs, training=False) if forward is not None
               else model(inputs, training=False))
    return _as_numpy(outputs, "logits")

