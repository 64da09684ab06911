"""Seeing inside recurrent networks: gradient flow, long-range tasks, a lab.

* ``gradient_flow``: ``‖∂L/∂h_k‖`` for every step k of every recurrent loop
  of a model, and ``spectral_radius`` of the recurrent matrices.
* ``tasks``: the adding problem and the copy-memory task, for any length T.
* ``lab``: trains Elman, LSTM and GRU on the adding problem for several T.
* ``plots``: gradient norm vs distance, MSE vs T, training curves (PNG).
* ``GradientFlowRecorder``: a callback recording gradient flow during fit.
"""

from kerasrnn.diagnostics.callbacks import GradientFlowRecorder
from kerasrnn.diagnostics.gradient_flow import GradientFlow
from kerasrnn.diagnostics.gradient_flow import GradientFlowProbe
from kerasrnn.diagnostics.gradient_flow import TrackFlow
from kerasrnn.diagnostics.gradient_flow import gradient_flow
from kerasrnn.diagnostics.gradient_flow import spectral_radius
from kerasrnn.diagnostics.lab import LabConfig
from kerasrnn.diagnostics.lab import LabRun
from kerasrnn.diagnostics.lab import format_table
from kerasrnn.diagnostics.lab import run_lab
from kerasrnn.diagnostics.lab import train_adding
from kerasrnn.diagnostics.plots import plot_gradient_flow
from kerasrnn.diagnostics.plots import plot_history
from kerasrnn.diagnostics.plots import plot_mse_vs_length
from kerasrnn.diagnostics.tasks import ADDING_BASELINE_MSE
from kerasrnn.diagnostics.tasks import adding_problem
from kerasrnn.diagnostics.tasks import copy_memory
from kerasrnn.diagnostics.tasks import copy_memory_baseline

__all__ = [
    "ADDING_BASELINE_MSE",
    "GradientFlow",
    "GradientFlowProbe",
    "GradientFlowRecorder",
    "LabConfig",
    "LabRun",
    "TrackFlow",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "format_table",
    "gradient_flow",
    "plot_gradient_flow",
    "plot_history",
    "plot_mse_vs_length",
    "run_lab",
    "spectral_radius",
    "train_adding",
]
