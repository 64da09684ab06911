"""Layer probing: what each layer of a recurrent stack makes linearly
readable.

A *probe* (Alain & Bengio 2016; Belinkov et al. 2017; Peters et al. 2018)
freezes a trained network, takes the states ``h^(k)_t`` of one layer ``k``
(and one direction), and fits a linear classifier on them::

    ẑ = standardise(h^(k)_t)                 mean, std of the training rows
    p(y | h^(k)_t) = softmax(ẑ W_k + b_k)    a keras.layers.Dense, trained
                                             alone (the network is frozen)

for a token task (one label per real step, e.g. part of speech) or, on the
pooled states ``1/|V| Σ_{t∈V} h^(k)_t``, for a sequence task (e.g.
sentiment). The held-out accuracy per layer says how linearly accessible
the property is at that depth; a random-weights copy of the network is the
control that separates what training put there from what the architecture
and the embeddings give anyway (Hewitt & Liang 2019).

* ``layer_states``: every layer's (and direction's) output sequences of a
  kerasrnn stack, computed by calling the stack's own sub-layers.
* ``layer_features``: the same for a whole dataset, batch by batch, reduced
  to token rows or pooled rows (what the probes read).
* ``fit_probe`` / ``probe_layers``: one Dense probe per layer.
* ``format_probe_table`` and ``plot_probes``: the table and accuracy vs
  depth.

Reference:
    Alain & Bengio, "Understanding intermediate layers using linear
    classifier probes", 2016. Belinkov et al., "What do Neural Machine
    Translation Models Learn about Morphology?", ACL 2017. Peters et al.,
    "Deep contextualized word representations" (ELMo), NAACL 2018.
    Hewitt & Liang, "Designing and Interpreting Probes with Control
    Tasks", EMNLP 2019.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from kerasrnn.layers.bidirectional import Bidirectional
from kerasrnn.layers.bidirectional import merge
from kerasrnn.layers.pooling import POOLING_MODES
from kerasrnn.layers.pooling import SequencePooling
from kerasrnn.layers.rnn import RNN
from kerasrnn.layers.stacked import StackedRecurrent

DIRECTIONS = ("forward", "backward", "both")


@dataclasses.dataclass(frozen=True)
class LayerStates:
    """One layer's (one direction's) outputs.

    Attributes:
        name: ``"input"``, ``"layer_k"`` (unidirectional), or
            ``"layer_k/forward"``, ``"layer_k/backward"``, ``"layer_k"``
            (both directions merged, as the next layer reads them).
        depth: 0 for the stack's input (the embeddings), k + 1 for layer k.
        direction: ``"forward"``, ``"backward"`` or ``"both"`` (merged, or
            the stack's input).
        values: ``(B, T, H)`` outputs in input time order (the backward
            direction flipped back), or, from ``layer_features``, rows
            ``(N, H)``.
    """

    name: str
    depth: int
    direction: str
    values: object


def find_stack(model):
    """The one ``StackedRecurrent`` (``kerasrnn.LSTM/GRU/SimpleRNN``) in
    ``model``; an error names what was found when there is not exactly
    one."""
    if isinstance(model, StackedRecurrent):
        return model
    stacks = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, StackedRecurrent)]
    if len(stacks) != 1:
        raise ValueError(
            "Expected a model holding exactly one kerasrnn stack "
            "(kerasrnn.LSTM/GRU/SimpleRNN); pass `stack=` to choose. "
            f"Found {len(stacks)}: {[layer.name for layer in stacks]}"
        )
    return stacks[0]


def _sequence_copy(layer):
    """``layer`` itself when it returns sequences, else a copy (same
    config and weights) that does: the last layer of a stack built with
    ``return_sequences=False`` returns one step only."""
    if layer.return_sequences:
        return layer
    cache = layer.__dict__.setdefault("_probe_sequence_copy", {})
    copy = cache.get("copy")
    if copy is None:
        config = layer.get_config()
        config["return_sequences"] = True
        config["name"] = layer.name + "_probe"
        copy = type(layer).from_config(config)
        copy.build((None, None, layer.cell.kernel.shape[0]))
        cache["copy"] = copy
    # Weights are copied on every call: the original may have trained.
    copy.set_weights(layer.get_weights())
    return copy


def _run(layer, sequences, mask):
    output = _sequence_copy(layer)(sequences, mask=mask, training=False)
    if isinstance(output, (list, tuple)):
        output = output[0]
    return output


def layer_states(stack, sequences, mask=None, include_input=True):
    """Every layer's output sequences of a kerasrnn stack, at inference.

    Runs the stack's own sub-layers in its order (what
    ``StackedRecurrent.call`` does with ``training=False``): layer ``k``
    reads the merged outputs of layer ``k - 1`` (plus them, with
    ``residual``); a bidirectional layer's directions are returned
    separately and merged by its ``merge_mode``.

    Args:
        stack: a ``kerasrnn.LSTM/GRU/SimpleRNN`` (any ``num_layers``,
            ``bidirectional``), built.
        sequences: float ``(B, T, F)``, the stack's input.
        mask: optional boolean ``(B, T)``.
        include_input: also return the input itself (depth 0).

    Returns:
        A list of ``LayerStates`` with ``(B, T, H)`` tensors: for each layer,
        ``layer_k`` (unidirectional) or ``layer_k/forward``,
        ``layer_k/backward`` and the merged ``layer_k``.
    """
    if not isinstance(stack, StackedRecurrent):
        raise TypeError(
            "`stack` must be a kerasrnn LSTM/GRU/SimpleRNN layer. "
            f"Received: {type(stack).__name__}"
        )
    sequences = ops.convert_to_tensor(sequences, dtype=stack.compute_dtype)
    if len(sequences.shape) != 3:
        raise ValueError(
            "`sequences` must have shape (batch, time, features). "
            f"Received: shape={tuple(sequences.shape)}"
        )
    if not stack.built:
        stack.build(tuple(sequences.shape))
    found = []
    if include_input:
        found.append(LayerStates("input", 0, "both", sequences))
    inputs = sequences
    for index, layer in enumerate(stack.recurrent_layers):
        name = f"layer_{index}"
        if isinstance(layer, Bidirectional):
            forward = _run(layer.forward_layer, inputs, mask)
            backward = ops.flip(_run(layer.backward_layer, inputs, mask), 1)
            output = merge(layer.merge_mode, forward, backward)
            found.append(LayerStates(f"{name}/forward", index + 1,
                                     "forward", forward))
            found.append(LayerStates(f"{name}/backward", index + 1,
                                     "backward", backward))
            direction = "both"
        elif isinstance(layer, RNN):
            output = _run(layer, inputs, mask)
            direction = "backward" if layer.go_backwards else "forward"
            if layer.go_backwards:
                output = ops.flip(output, 1)
        else:
            raise TypeError(
                f"Unexpected sub-layer {layer.name!r} of type "
                f"{type(layer).__name__} in stack {stack.name!r}."
            )
        if stack.residual and index > 0:
            output = output + inputs
        found.append(LayerStates(name, index + 1, direction, output))
        inputs = output
    return found


def _default_embed(model, stack):
    """The function from the model's inputs to the stack's input."""
    embedding = getattr(model, "embedding", None)
    if isinstance(embedding, keras.layers.Embedding):
        return embedding   # LanguageModel and models like it
    try:
        inputs = model.inputs
        target = stack.input
        if isinstance(target, (list, tuple)):   # (sequences, mask) passed
            target = target[0]
        return keras.Model(inputs[0] if len(inputs) == 1 else inputs, target)
    except (AttributeError, ValueError, TypeError) as error:
        raise ValueError(
            f"Cannot find the input of stack {stack.name!r} in this "
            "model; pass `embed=`, a function from the inputs to the "
            "stack's (B, T, F) input."
        ) from error


def _check_pooling(pooling):
    if pooling is not None and pooling not in POOLING_MODES:
        raise ValueError(
            f"`pooling` must be None (token rows) or one of {POOLING_MODES}."
            f" Received: pooling={pooling!r}"
        )


def layer_features(model, inputs, mask, pooling=None, stack=None,
                   embed=None, batch_size=64, include_input=True):
    """``layer_states`` over a dataset, as probe rows.

    Args:
        model: a model holding one kerasrnn stack (or the stack itself,
            with ``embed``).
        inputs: ``(N, T)`` token ids (or what ``embed`` takes), right
            padded.
        mask: boolean ``(N, T)``: the real steps.
        pooling: None: one row per real step, row-major (sequence 0's
            steps, then sequence 1's, ...). ``"mean"``, ``"max"``,
            ``"last"``: one row per sequence, pooled over its real steps.
        stack: the stack to probe (default: ``find_stack(model)``).
        embed: ``embed(inputs) -> (B, T, F)``, the stack's input (default:
            ``model.embedding`` when it is an ``Embedding``, else the
            functional graph up to the stack's input).
        batch_size: sequences per forward pass; each batch is cut to its
            longest sequence.
        include_input: also return the stack's input (depth 0).

    Returns:
        A list of ``LayerStates`` whose values are float32 NumPy rows
        ``(rows, H)``, in ``layer_states`` order.
    """
    _check_pooling(pooling)
    stack = find_stack(model) if stack is None else stack
    if embed is None:
        embed = _default_embed(model, stack)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or len(mask) != len(inputs):
        raise ValueError(
            "`mask` must be a (sequences, time) boolean array, one row per "
            f"input. Received: shape={mask.shape} for {len(inputs)} inputs"
        )
    if not mask.any(axis=1).all():
        raise ValueError(
            "Every sequence needs at least one real step; rows "
            f"{np.flatnonzero(~mask.any(axis=1))[:5].tolist()} have none."
        )
    pool = None if pooling is None else SequencePooling(pooling)
    rows, template = [], None
    for start in range(0, len(mask), batch_size):
        batch_mask = mask[start:start + batch_size]
        steps = int(np.flatnonzero(batch_mask.any(axis=0)).max()) + 1
        batch_mask = batch_mask[:, :steps]
        sequences = embed(np.asarray(inputs[start:start + batch_size])[
            :, :steps])
        states = layer_states(stack, sequences, batch_mask, include_input)
        template = template or states
        batch_rows = []
        for state in states:
            if pool is None:
                values = ops.convert_to_numpy(state.values)[batch_mask]
            else:
                values = ops.convert_to_numpy(
                    pool(state.values, mask=ops.convert_to_tensor(
                        batch_mask)))
            batch_rows.append(values.astype("float32"))
        rows.append(batch_rows)
    return [
        dataclasses.replace(
            state, values=np.concatenate([batch[i] for batch in rows]))
        for i, state in enumerate(template)
    ]


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """One probe's figures.

    Attributes:
        task: the task's name.
        name, depth, direction: those of the ``LayerStates`` probed.
        accuracy: on the held-out rows.
        train_accuracy: on the training rows.
        majority: held-out accuracy of always predicting the most frequent
            training label (the floor).
        train_rows, test_rows, features: the sizes.
    """

    task: str
    name: str
    depth: int
    direction: str
    accuracy: float
    train_accuracy: float
    majority: float
    train_rows: int
    test_rows: int
    features: int


def _check_rows(name, features, labels):
    features = np.asarray(features, dtype="float32")
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"`{name}` must be (rows, features) with one integer label per "
            f"row. Received: features {features.shape}, labels "
            f"{labels.shape}"
        )
    if len(labels) == 0:
        raise ValueError(f"`{name}` has no rows.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(
            f"`{name}` labels must be integers ≥ 0 (class ids). Received "
            f"dtype {labels.dtype}, min {labels.min()}"
        )
    if not np.isfinite(features).all():
        raise ValueError(f"`{name}` features hold NaN or infinity.")
    return features, labels.astype("int32")


def fit_probe(train_features, train_labels, test_features, test_labels,
              num_classes=None, epochs=10, batch_size=256,
              learning_rate=3e-3, min_steps=1000, seed=0):
    """Trains a linear softmax probe and returns its accuracies.

    The features are standardised with the training rows' mean and
    standard deviation (a per-feature affine map, so the probe stays
    linear in ``h``), then ``keras.layers.Dense(num_classes)`` is trained
    alone with Adam on the softmax cross-entropy.

    Args:
        train_features, test_features: float ``(rows, H)``.
        train_labels, test_labels: int ``(rows,)`` class ids.
        num_classes: C (default: the largest label + 1).
        epochs, batch_size, learning_rate: of the probe's training.
        min_steps: train for more epochs when ``epochs`` would give fewer
            updates than this (small training sets).
        seed: of the probe's initial weights and the shuffling.

    Returns:
        ``(accuracy, train_accuracy, majority)``: held-out and training
        accuracy, and the held-out accuracy of the majority training label.
    """
    x_train, y_train = _check_rows("train", train_features, train_labels)
    x_test, y_test = _check_rows("test", test_features, test_labels)
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            "Training and held-out rows must have the same number of "
            f"features. Received: {x_train.shape[1]} and {x_test.shape[1]}"
        )
    largest = int(max(y_train.max(), y_test.max()))
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ValueError(
            f"A label ({largest}) is ≥ num_classes={num_classes}.")
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    x_train = (x_train - mean) / scale
    x_test = (x_test - mean) / scale
    probe = keras.Sequential([
        keras.Input((x_train.shape[1],)),
        keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.GlorotUniform(seed),
        ),
    ])
    probe.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # Shuffled once per epoch by a generator of its own: the same seed
    # gives the same probe whatever the global random state.
    rng = np.random.default_rng(seed)
    # Small training sets get more epochs: at least ``min_steps`` updates.
    epochs = max(epochs, -(-min_steps * batch_size // len(x_train)))
    order = np.concatenate([rng.permutation(len(x_train))
                            for _ in range(epochs)])
    # One pass over the epochs' permutations end to end.
    probe.fit(x_train[order], y_train[order], batch_size=batch_size,
              epochs=1, shuffle=False, verbose=0)

    def accuracy(x, y):
        predicted = np.concatenate([
            ops.convert_to_numpy(probe(x[i:i + 8192])).argmax(axis=-1)
            for i in range(0, len(x), 8192)
        ])
        return float((predicted == y).mean())

    majority = np.bincount(y_train).argmax()
    return (accuracy(x_test, y_test), accuracy(x_train, y_train),
            float((y_test == majority).mean()))


def probe_layers(task, train_states, train_labels, test_states, test_labels,
                 **probe_options):
    """``fit_probe`` on every layer: one ``ProbeResult`` per entry.

    Args:
        task: a name for the table and the plot.
        train_states, test_states: lists of ``LayerStates`` with row values
            from ``layer_features`` (the same layers, in the same order).
        train_labels, test_labels: one class id per row.
        **probe_options: for ``fit_probe`` (``epochs``, ``seed``...).
    """
    if len(train_states) != len(test_states) or any(
        a.name != b.name for a, b in zip(train_states, test_states)
    ):
        raise ValueError(
            "`train_states` and `test_states` must list the same layers. "
            f"Received: {[s.name for s in train_states]} and "
            f"{[s.name for s in test_states]}"
        )
    results = []
    for train, test in zip(train_states, test_states):
        accuracy, train_accuracy, majority = fit_probe(
            train.values, train_labels, test.values, test_labels,
            **probe_options)
        results.append(ProbeResult(
            task, train.name, train.depth, train.direction, accuracy,
            train_accuracy, majority, len(train.values), len(test.values),
            int(train.values.shape[1]),
        ))
    return results


def held_out_split(count, fraction=0.2, seed=0):
    """``(train_indices, test_indices)``: a seeded random split of
    ``count`` sequences (split sequences, not tokens, so that no sentence
    is on both sides)."""
    if not 0 < fraction < 1:
        raise ValueError(
            f"`fraction` must lie in (0, 1). Received: fraction={fraction!r}")
    order = np.random.default_rng(seed).permutation(count)
    cut = int(round(count * (1 - fraction)))
    if cut in (0, count):
        raise ValueError(
            f"{count} sequences are too few to hold out {fraction:.0%}.")
    return np.sort(order[:cut]), np.sort(order[cut:])


def format_probe_table(results, models=None):
    """A Markdown table: one row per layer, one column per (model, task).

    Args:
        results: ``{model label: [ProbeResult, ...]}`` or one list (one
            model, labelled ``"model"``).
        models: optional order of the model labels.
    """
    if not isinstance(results, dict):
        results = {"model": list(results)}
    models = list(models or results)
    tasks = sorted({r.task for rs in results.values() for r in rs})
    columns = [(m, t) for t in tasks for m in models]
    layers = []   # in the order the results list them
    for rs in results.values():
        for r in rs:
            if (r.depth, r.name) not in layers:
                layers.append((r.depth, r.name))
    lookup = {(m, r.task, r.name): r for m in models for r in results[m]}
    header = "| layer | " + " | ".join(f"{t} ({m})" for m, t in columns)
    lines = [header + " |", "|---" * (len(columns) + 1) + "|"]
    for _, name in layers:
        cells = []
        for m, t in columns:
            r = lookup.get((m, t, name))
            cells.append("" if r is None else f"{r.accuracy:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    floors = []
    for m, t in columns:
        r = next((r for r in results[m] if r.task == t), None)
        floors.append("" if r is None else f"{r.majority:.3f}")
    lines.append("| majority class | " + " | ".join(floors) + " |")
    return "\n".join(lines)


def _points(results, task, direction):
    """``(depth, accuracy)`` per depth: the entry of ``direction`` there,
    else the depth's only entry (the input; a unidirectional layer)."""
    by_depth = {}
    for r in results:
        if r.task == task:
            by_depth.setdefault(r.depth, []).append(r)
    points = []
    for depth, entries in sorted(by_depth.items()):
        chosen = [r for r in entries if r.direction == direction]
        if not chosen and len(entries) == 1:
            chosen = entries
        if chosen:
            points.append((depth, chosen[0].accuracy))
    return points


def plot_probes(results, path, direction="both", title=None):
    """Probe accuracy against depth: one panel per task, one line per model.

    Args:
        results: ``{model label: [ProbeResult, ...]}`` or one list.
        path: a ``.png`` path (its folder is created).
        direction: which entry to draw per depth (``"both"``: the merged
            layers; ``"forward"``/``"backward"``); a depth with one entry
            only (the input, a unidirectional layer) draws that one.
        title: optional figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    from kerasrnn.diagnostics.plots import save

    if direction not in DIRECTIONS:
        raise ValueError(
            f"`direction` must be one of {DIRECTIONS}. Received: "
            f"direction={direction!r}"
        )
    if not isinstance(results, dict):
        results = {"model": list(results)}
    tasks = sorted({r.task for rs in results.values() for r in rs})
    if not tasks:
        raise ValueError("`results` holds no ProbeResult to plot.")
    figure = Figure(figsize=(4.5 * len(tasks), 4))
    for column, task in enumerate(tasks):
        axes = figure.add_subplot(1, len(tasks), column + 1)
        floor = None
        for label, rs in results.items():
            points = _points(rs, task, direction)
            if not points:
                continue
            depths, accuracies = zip(*points)
            axes.plot(depths, accuracies, marker="o", label=label)
            floor = next(r.majority for r in rs if r.task == task)
        if floor is not None:
            axes.axhline(floor, color="grey", linestyle=":",
                         label="majority class")
        axes.set_title(task)
        axes.set_xlabel("depth (0 = embeddings)")
        axes.set_ylabel("held-out probe accuracy")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save(figure, path)
