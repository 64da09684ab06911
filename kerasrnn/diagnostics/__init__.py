"""Seeing inside recurrent networks: gradient flow, long-range tasks, a lab.

* ``gradient_flow``: ``‖∂L/∂h_k‖`` for every step k of every recurrent loop
  of a model, and ``spectral_radius`` of the recurrent matrices.
* ``tasks``: the adding problem and the copy-memory task, for any length T.
* ``lab``: trains Elman, LSTM and GRU on the adding problem for several T.
* ``plots``: gradient norm vs distance, MSE vs T, training curves (PNG).
* ``GradientFlowRecorder``: a callback recording gradient flow during fit.
* ``probing``: every layer's (and direction's) states of a kerasrnn stack,
  a linear Dense probe per layer, the table and accuracy vs depth.
* ``uncertainty``: Monte-Carlo dropout (mean, spread, predictive entropy,
  mutual information), calibration (ECE, reliability diagram), AUROC.
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
from kerasrnn.diagnostics.probing import LayerStates
from kerasrnn.diagnostics.probing import ProbeResult
from kerasrnn.diagnostics.probing import fit_probe
from kerasrnn.diagnostics.probing import format_probe_table
from kerasrnn.diagnostics.probing import layer_features
from kerasrnn.diagnostics.probing import layer_states
from kerasrnn.diagnostics.probing import plot_probes
from kerasrnn.diagnostics.probing import probe_layers
from kerasrnn.diagnostics.tasks import ADDING_BASELINE_MSE
from kerasrnn.diagnostics.tasks import adding_problem
from kerasrnn.diagnostics.tasks import copy_memory
from kerasrnn.diagnostics.tasks import copy_memory_baseline
from kerasrnn.diagnostics.uncertainty import MCPrediction
from kerasrnn.diagnostics.uncertainty import auroc
from kerasrnn.diagnostics.uncertainty import expected_calibration_error
from kerasrnn.diagnostics.uncertainty import mc_dropout
from kerasrnn.diagnostics.uncertainty import plot_reliability
from kerasrnn.diagnostics.uncertainty import reliability_curve

__all__ = [
    "ADDING_BASELINE_MSE",
    "GradientFlow",
    "GradientFlowProbe",
    "GradientFlowRecorder",
    "LabConfig",
    "LabRun",
    "LayerStates",
    "MCPrediction",
    "ProbeResult",
    "TrackFlow",
    "adding_problem",
    "auroc",
    "copy_memory",
    "copy_memory_baseline",
    "expected_calibration_error",
    "fit_probe",
    "format_probe_table",
    "format_table",
    "gradient_flow",
    "layer_features",
    "layer_states",
    "mc_dropout",
    "plot_gradient_flow",
    "plot_history",
    "plot_mse_vs_length",
    "plot_probes",
    "plot_reliability",
    "probe_layers",
    "reliability_curve",
    "run_lab",
    "spectral_radius",
    "train_adding",
]
