"""See inside: gradient flow and the long-range lab (Elman, LSTM, GRU, IndRNN).

One command trains Elman, LSTM, GRU and IndRNN networks (any registered
cell, ``--cells``) on the adding problem for
several sequence lengths T with the same budget, records how far back the
loss gradient reaches (‖∂L/∂h_k‖ against the distance T-1-k) before and
after training, and writes the figures and the results table:

    python examples/gradient_flow_lab.py            # T = 50, 100 (minutes)
    python examples/gradient_flow_lab.py --full     # T = 50, 100, 200, 400
    python examples/gradient_flow_lab.py --lengths 100 1000 --steps 1500

Outputs in --out (default artifacts/gradient_flow_lab):
    gradient_flow.png     gradient norm vs distance, every cell, at
                          initialisation and after training (log scale)
    mse_vs_length.png     final held-out MSE vs T, baseline 0.167
    training_curves.png   held-out MSE during training, every run
    results.md            the lab table, spectral radii, settings
"""

import argparse
import dataclasses
import pathlib
import time

import numpy as np

from kerasrnn.diagnostics import GradientFlowRecorder
from kerasrnn.diagnostics import LabConfig
from kerasrnn.diagnostics import adding_problem
from kerasrnn.diagnostics import format_table
from kerasrnn.diagnostics import plot_gradient_flow
from kerasrnn.diagnostics import plot_history
from kerasrnn.diagnostics import plot_mse_vs_length
from kerasrnn.diagnostics import spectral_radius
from kerasrnn.diagnostics import train_adding
from kerasrnn.diagnostics.lab import mse_grid
from kerasrnn.diagnostics.tasks import ADDING_BASELINE_MSE

SMALL = {"lengths": (50, 100), "steps": 2000}
FULL = {"lengths": (50, 100, 200, 400), "steps": 6000}
FLOW_BATCH = 64          # examples in the gradient-flow batch
RECORD_EVERY = 5         # evaluations (of eval_every steps) between records


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="T = 50, 100, 200, 400 and a larger budget")
    parser.add_argument("--out", default="artifacts/gradient_flow_lab")
    parser.add_argument("--steps", type=int,
                        help="optimizer steps per run (the budget)")
    parser.add_argument("--lengths", type=int, nargs="+",
                        help="sequence lengths T")
    parser.add_argument("--flow-length", type=int,
                        help="T of the gradient-flow figure (default: the "
                             "largest T)")
    parser.add_argument("--cells", nargs="+",
                        default=["elman", "lstm", "gru", "indrnn"],
                        help="registered cell names (kerasrnn.cells."
                             "cell_names())")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1,
                        help="recurrent layers stacked in each model")
    parser.add_argument("--learning-rate", type=float,
                        default=LabConfig.learning_rate)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    settings = dict(FULL if args.full else SMALL)
    if args.steps:
        settings["steps"] = args.steps
    if args.lengths:
        settings["lengths"] = tuple(args.lengths)
    config = LabConfig(units=args.units, num_layers=args.layers,
                       learning_rate=args.learning_rate, seed=args.seed,
                       cells=tuple(args.cells), **settings)
    flow_length = args.flow_length or max(config.lengths)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_flow, y_flow = adding_problem(flow_length, FLOW_BATCH, seed=12345)

    runs, recorders = [], {}
    start = time.perf_counter()
    for length in config.lengths:
        for cell in config.cells:
            callbacks = []
            if length == flow_length:
                recorders[cell] = GradientFlowRecorder(
                    x_flow, y_flow, every=RECORD_EVERY
                )
                callbacks.append(recorders[cell])
            runs.append(train_adding(cell, length, config, callbacks))
    total = time.perf_counter() - start

    def panel(record_index):
        return {
            cell: next(iter(recorder.records[record_index]["norms"].values()))
            ["h"]
            for cell, recorder in recorders.items()
        }

    plot_gradient_flow(
        {"at initialisation": panel(0), "after training": panel(-1)},
        out / "gradient_flow.png",
        title=f"Adding problem, T = {flow_length}: how far back the loss "
              "reaches",
    )
    plot_mse_vs_length(mse_grid(runs), out / "mse_vs_length.png",
                       threshold=config.threshold)
    plot_history(
        {
            f"T = {length}": {
                run.cell: run.history for run in runs if run.length == length
            }
            for length in config.lengths
        },
        out / "training_curves.png",
        metric="loss",
        steps_per_epoch=config.eval_every,
        baseline=ADDING_BASELINE_MSE,
        threshold=config.threshold,
        title="Adding problem: training (solid) and held-out (dashed) MSE",
    )

    table = format_table(runs)
    lines = [
        f"# Adding problem: {', '.join(config.cells)}", "",
        f"Settings: {dataclasses.asdict(config)}", "",
        table, "",
        f"Total time {total:.0f} s.", "",
        (f"## Gradient flow at T = {flow_length} "
         f"(batch of {FLOW_BATCH}, mean ‖∂L/∂h_k‖)"), "",
        ("| cell | when | distance 0 | distance T/2 | distance T-1 | "
         "ρ(U) per gate (trained) |"),
        "|---|---|---:|---:|---:|---|",
    ]
    for run in runs:
        if run.length != flow_length:
            continue
        records = recorders[run.cell].records
        radii = next(iter(spectral_radius(run.model).values()))
        for when, record in (("init", records[0]), ("trained", records[-1])):
            norms = next(iter(record["norms"].values()))["h"]
            lines.append(
                f"| {run.cell} | {when} (epoch {record['epoch']}) | "
                f"{norms[-1]:.2e} | {norms[flow_length // 2]:.2e} | "
                f"{norms[0]:.2e} | "
                + (", ".join(f"{g} {r:.2f}" for g, r in radii.items())
                   if when == "trained" else "")
                + " |"
            )
    report = "\n".join(lines) + "\n"
    (out / "results.md").write_text(report)
    print(report)
    print(f"Figures and results in {out}/")
    return np.array([run.solved for run in runs])


if __name__ == "__main__":
    main()
