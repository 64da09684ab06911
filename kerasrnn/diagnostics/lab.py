"""The long-range lab: Elman vs LSTM vs GRU on the adding problem.

For every cell and sequence length T, ``run_lab`` trains
``Input((T, 2)) → {SimpleRNN, LSTM, GRU}(units) → Dense(1)`` on freshly
sampled adding-problem batches for a fixed budget of optimizer steps, and
reports the final MSE on a held-out set against the 1/6 ≈ 0.167 of the
trivial answer. A run counts as solved when that MSE falls below 0.01.
"""

import dataclasses
import math
import time

import keras
import numpy as np

from kerasrnn.diagnostics.tasks import ADDING_BASELINE_MSE
from kerasrnn.diagnostics.tasks import adding_problem
from kerasrnn.validation import check_int
from kerasrnn.cells.registry import cell_names
from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells.registry import is_registered
from kerasrnn.cells.registry import sequence_layer


@dataclasses.dataclass(frozen=True)
class LabConfig:
    """Settings of ``run_lab``; every (cell, T) run gets the same budget.

    Attributes:
        lengths: the sequence lengths T.
        cells: registered cell names or aliases (``"elman"``, ``"lstm"``,
            ``"gru"``, ``"indrnn"``...; ``kerasrnn.cells.cell_names()``).
        units: the state size H of every recurrent layer.
        num_layers: recurrent layers stacked in each model (default 1).
        steps: the budget, in optimizer steps per run.
        batch_size: samples per step (fresh samples at every step).
        learning_rate: of Adam.
        clipnorm: gradient clipping by global norm (None: none).
        eval_every: steps between two evaluations (one Keras epoch).
        eval_size: samples in the held-out set.
        threshold: the MSE below which a run counts as solved.
        stop_when_solved: end a run at the first evaluation below
            ``threshold`` (its reported MSE is then that evaluation's).
        jit_compile: compile the training step with XLA.
        seed: seeds the weights and the data.
    """

    lengths: tuple = (50, 100)
    cells: tuple = ("elman", "lstm", "gru")
    units: int = 64
    num_layers: int = 1
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 3e-3
    clipnorm: float = 1.0
    eval_every: int = 100
    eval_size: int = 1000
    threshold: float = 0.01
    stop_when_solved: bool = True
    jit_compile: bool = True
    seed: int = 0

    def __post_init__(self):
        for length in self.lengths:
            check_int("lengths[i]", length, 2)
        if not self.lengths:
            raise ValueError("`lengths` must list at least one T ≥ 2.")
        unknown = [cell for cell in self.cells if not is_registered(cell)]
        if unknown or not self.cells:
            raise ValueError(
                f"`cells` must list some of the registered cells "
                f"{cell_names()} (or their aliases). Received: "
                f"cells={self.cells!r}"
            )
        for name in ("units", "num_layers", "steps", "batch_size",
                     "eval_every", "eval_size"):
            check_int(name, getattr(self, name), 1)
        if self.steps % self.eval_every:
            raise ValueError(
                "`steps` must be a multiple of `eval_every`. Received: "
                f"steps={self.steps}, eval_every={self.eval_every}"
            )
        if not self.learning_rate > 0 or not self.threshold > 0:
            raise ValueError(
                "`learning_rate` and `threshold` must be positive. "
                f"Received: learning_rate={self.learning_rate}, "
                f"threshold={self.threshold}"
            )


@dataclasses.dataclass
class LabRun:
    """The outcome of one (cell, T) run.

    Attributes:
        cell, length: what was trained.
        mse: the MSE on the held-out set at the end of the run.
        solved: ``mse < threshold``.
        steps: optimizer steps taken (less than the budget when the run
            stopped once solved).
        seconds: wall-clock time of the run, compilation included.
        history: ``keras.callbacks.History.history`` (``loss`` and
            ``val_loss`` per evaluation, i.e. every ``eval_every`` steps).
        model: the trained model.
    """

    cell: str
    length: int
    mse: float
    solved: bool
    steps: int
    seconds: float
    history: dict
    model: keras.Model = dataclasses.field(repr=False)


class AddingProblemBatches(keras.utils.PyDataset):
    """``batches`` fresh adding-problem batches per epoch, seeded.

    Batch ``i`` of epoch ``e`` is ``adding_problem(T, batch_size,
    seed=(seed, 0, e, i))``: reproducible, and never repeated across epochs.
    """

    def __init__(self, length, batch_size, batches, seed=0):
        super().__init__()
        self.length = length
        self.batch_size = batch_size
        self.batches = batches
        self.seed = seed
        self.epoch = 0

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        return adding_problem(
            self.length,
            self.batch_size,
            seed=(self.seed, 0, self.epoch, index),
        )

    def on_epoch_end(self):
        self.epoch += 1


class StopWhenSolved(keras.callbacks.Callback):
    """Stops training once ``logs[monitor] < threshold`` at an epoch end."""

    def __init__(self, threshold, monitor="val_loss"):
        super().__init__()
        self.threshold = threshold
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.threshold:
            self.model.stop_training = True


class LabProgress(keras.callbacks.Callback):
    """A ``keras.utils.Progbar`` over the steps of one run."""

    def __init__(self, target, label, verbose=1):
        super().__init__()
        self.target = target
        self.label = label
        self.verbose = verbose
        self.done = 0

    def on_train_begin(self, logs=None):
        if self.verbose:
            print(self.label)
        self.bar = keras.utils.Progbar(
            self.target,
            verbose=self.verbose,
            stateful_metrics=["loss", "val_mse"],
        )

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        self.bar.update(
            self.done,
            [("loss", (logs or {}).get("loss", math.nan))],
            finalize=False,
        )

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(
            self.done,
            [("val_mse", (logs or {}).get("val_loss", math.nan))],
            finalize=False,
        )

    def on_train_end(self, logs=None):
        # Once, at the end: a run stopped early ends short of the target.
        self.bar.update(self.done, finalize=True)


def build_model(cell, length, units, num_layers=1):
    """``Input((T, 2)) → cell layer(units, num_layers) → Dense(1)`` for
    the lab."""
    layer_class = sequence_layer(cell_spec(cell))
    return keras.Sequential(
        [
            keras.Input((length, 2)),
            layer_class(units, num_layers=num_layers),
            keras.layers.Dense(1),
        ],
        name=f"{cell}_adding_{length}",
    )


def train_adding(cell, length, config=None, callbacks=(), verbose=1):
    """Trains one cell on the adding problem of length T; see ``LabConfig``.

    Returns:
        A ``LabRun``.
    """
    config = config or LabConfig(lengths=(length,), cells=(cell,))
    length = check_int("length", length, 2)
    keras.utils.set_random_seed(config.seed)
    model = build_model(cell, length, config.units, config.num_layers)
    model.compile(
        optimizer=keras.optimizers.Adam(
            config.learning_rate, clipnorm=config.clipnorm
        ),
        loss="mse",
        jit_compile=config.jit_compile,
    )
    x_eval, y_eval = adding_problem(
        length, config.eval_size, seed=(config.seed, 1, length)
    )
    batches = AddingProblemBatches(
        length, config.batch_size, config.eval_every, seed=config.seed
    )
    run_callbacks = list(callbacks)
    if config.stop_when_solved:
        run_callbacks.append(StopWhenSolved(config.threshold))
    progress = LabProgress(
        config.steps, f"{cell} T={length}", verbose=verbose
    )
    start = time.perf_counter()
    history = model.fit(
        batches,
        epochs=config.steps // config.eval_every,
        validation_data=(x_eval, y_eval),
        validation_batch_size=config.eval_size,
        callbacks=[*run_callbacks, progress],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    mse = float(history.history["val_loss"][-1])
    return LabRun(
        cell=cell,
        length=length,
        mse=mse,
        solved=bool(mse < config.threshold),
        steps=progress.done,
        seconds=seconds,
        history=dict(history.history),
        model=model,
    )


def run_lab(config=None, callbacks=(), verbose=1):
    """Trains every cell of ``config`` at every length; returns the runs.

    Args:
        config: a ``LabConfig`` (default: T = 50, 100, 2000 steps).
        callbacks: Keras callbacks added to every run.
        verbose: 1 for a progress bar per run, 0 for silence.

    Returns:
        A list of ``LabRun``, lengths outer, cells inner.
    """
    config = config or LabConfig()
    runs = []
    for length in config.lengths:
        for cell in config.cells:
            runs.append(
                train_adding(cell, length, config, callbacks, verbose)
            )
    return runs


def format_table(runs, baseline=ADDING_BASELINE_MSE):
    """A Markdown table: cell × T → MSE, MSE / baseline, solved, steps, s."""
    lines = [
        "| cell | T | MSE | MSE / 0.167 | solved | steps | time (s) |",
        "|---|---:|---:|---:|:---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.cell} | {run.length} | {run.mse:.4f} | "
            f"{run.mse / baseline:.3f} | {'yes' if run.solved else 'no'} | "
            f"{run.steps} | {run.seconds:.0f} |"
        )
    return "\n".join(lines)


def mse_grid(runs):
    """``{cell: (lengths, mses)}`` sorted by length, for plotting."""
    grid = {}
    for run in runs:
        grid.setdefault(run.cell, []).append((run.length, run.mse))
    return {
        cell: tuple(np.array(values) for values in zip(*sorted(pairs)))
        for cell, pairs in grid.items()
    }
