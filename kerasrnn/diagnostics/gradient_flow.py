"""How far back the loss reaches: ∂L/∂h_k for every step k, and ρ(U).

Backpropagation through time multiplies one Jacobian per step::

    ∂L/∂h_k = ∂L/∂h_{T-1} · ∂h_{T-1}/∂h_{T-2} ⋯ ∂h_{k+1}/∂h_k

For an Elman cell ``h_t = g(x_t W + h_{t-1} U + b)`` each factor is
``U diag(g'(a_t))`` (row vectors), so the norm shrinks or grows about
geometrically with the distance ``T-1-k``, at a rate set by ``U`` (its
spectral radius ρ(U) for the asymptotic rate, its largest singular value
for a bound) and by how saturated ``g`` is. LSTM and GRU add a path along
which the factor is a gate (``f_t``, resp. ``z_t``) instead of a matrix
product, so the gradient can survive for as long as the gate stays near 1.

The layers run their time loop as one graph loop that does not expose the
intermediate states. ``gradient_flow`` therefore runs the model itself
under the time loop's diagnostics hook (``kerasrnn.layers.time_loop.
state_hook``): every recurrent loop adds a zero perturbation ``ε_k`` to the
states it computes at every step::

    h_k = recurrent_step(x_k W + b, h_{k-1}) + ε_k

The forward pass is unchanged (ε = 0) and ``∂L/∂ε_k = ∂L/∂h_k``: all of
them come from one backward pass, through the real layers.
"""

import dataclasses
import warnings

import keras
import numpy as np
from keras import ops

from kerasrnn.layers import RNN
from kerasrnn.layers import Bidirectional
from kerasrnn.layers import StackedRecurrent
from kerasrnn.layers.time_loop import state_hook
from kerasrnn.requirements import require_tensorflow

RECURRENT_LAYERS = (RNN, Bidirectional, StackedRecurrent)


@dataclasses.dataclass(frozen=True)
class TrackFlow:
    """The gradient flow through one recurrent loop (one layer, direction).

    Attributes:
        name: the path of the loop, e.g. ``"lstm/layer_1"`` or
            ``"bidirectional/backward_rnn"``.
        cell: the cell's class name.
        go_backwards: whether the loop reads the sequence from its end.
        gradients: state name (``"h"``, and ``"c"`` for an LSTM) → an array
            ``(B, T, H)`` holding ``∂L/∂s_k`` for every example and step
            ``k`` *in processing order*: index ``T-1`` is the last step the
            loop ran (the first input step for a backward loop).
    """

    name: str
    cell: str
    go_backwards: bool
    gradients: dict

    @property
    def steps(self):
        """T, the number of steps of the loop."""
        return next(iter(self.gradients.values())).shape[1]

    @property
    def distance(self):
        """``T-1-k`` for k = 0..T-1: steps between ``h_k`` and the end."""
        return np.arange(self.steps)[::-1]

    def norms(self, state="h"):
        """``‖∂L/∂s_k‖₂`` per example and step, shape ``(B, T)``."""
        if state not in self.gradients:
            raise ValueError(
                f"Track '{self.name}' ({self.cell}) has states "
                f"{sorted(self.gradients)}. Received: state={state!r}"
            )
        # float64: squares of float32 gradients near 1e38 must not overflow.
        return np.linalg.norm(
            self.gradients[state].astype("float64"), axis=-1
        )

    def mean_norms(self, state="h"):
        """The batch mean of ``norms(state)``, shape ``(T,)``.

        NaN or inf at the steps where some example's gradient is not finite.
        """
        return self.norms(state).mean(axis=0)

    def nonfinite_steps(self):
        """Steps ``k`` (processing order) where a gradient is NaN or inf."""
        bad = np.zeros(self.steps, dtype=bool)
        for gradient in self.gradients.values():
            bad |= ~np.isfinite(gradient).all(axis=(0, 2))
        return np.flatnonzero(bad)


@dataclasses.dataclass(frozen=True)
class GradientFlow:
    """The result of ``gradient_flow``: one ``TrackFlow`` per loop.

    Attributes:
        loss: the value of ``L = Σ_b ℓ_b`` on the batch.
        tracks: the ``TrackFlow`` of every recurrent loop, in call order.
        outputs: the model's predictions in that pass (they equal
            ``model(x)``: the perturbations are zero).
    """

    loss: float
    tracks: tuple
    outputs: np.ndarray = dataclasses.field(repr=False)

    @property
    def names(self):
        return [track.name for track in self.tracks]

    def __getitem__(self, name):
        for track in self.tracks:
            if track.name == name:
                return track
        raise KeyError(
            f"No recurrent loop named {name!r}. Available: {self.names}"
        )

    @property
    def finite(self):
        """Whether the loss and every gradient are finite."""
        return bool(np.isfinite(self.loss)) and not any(
            len(track.nonfinite_steps()) for track in self.tracks
        )

    def summary(self):
        """A text table: per loop, the mean norm at distances 0 and T-1."""
        lines = [
            f"loss {self.loss:.4g}",
            (f"{'loop':32} {'cell':14} {'T':>5} {'|dL/dh| d=0':>12} "
             f"{'d=T-1':>10} {'non-finite':>10}"),
        ]
        for track in self.tracks:
            norms = track.mean_norms()
            lines.append(
                f"{track.name:32} {track.cell:14} {track.steps:5d} "
                f"{norms[-1]:12.3e} {norms[0]:10.3e} "
                f"{len(track.nonfinite_steps()):10d}"
            )
        return "\n".join(lines)


class Perturbations:
    """The state probe of ``time_loop.state_hook``: a zero ``ε`` per
    recurrent loop, watched by a tape, named by the loop's path."""

    def __init__(self, paths):
        self.paths = paths
        self.tape = None
        self.tensors = {}
        self.layers = {}

    def perturbation(self, layer, shape, dtype):
        name = self.paths.get(id(layer))
        if name is None:
            raise ValueError(
                f"Recurrent layer '{layer.name}' ran inside the model but is "
                "not one of its layers; gradient_flow measures the model's "
                "own recurrent layers."
            )
        if name in self.tensors:
            raise ValueError(
                f"Recurrent loop '{name}' ran twice in one forward pass; "
                "gradient_flow needs each recurrent layer called once."
            )
        import tensorflow as tf

        epsilon = tf.zeros(shape, dtype=dtype)
        self.tape.watch(epsilon)
        self.tensors[name] = epsilon
        self.layers[name] = layer
        return epsilon


def find_recurrent_layers(model):
    """The kerasrnn recurrent layers of a model (nested models included)."""
    if isinstance(model, RECURRENT_LAYERS):
        return [model]
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, RECURRENT_LAYERS):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += find_recurrent_layers(layer)
    return found


def check_native(layer):
    """The probes need a kerasrnn cell's ``project_inputs`` and
    ``recurrent_step``."""
    if not layer.native:
        raise TypeError(
            "gradient_flow probes kerasrnn's cells (RecurrentCell "
            f"subclasses); layer '{layer.name}' runs a "
            f"{type(layer.cell).__name__}."
        )


def recurrent_loops(layer, prefix=""):
    """``(path, RNN)`` for every loop of a recurrent layer, in call order.

    The probe re-runs a loop with its cell's ``project_inputs`` and
    ``recurrent_step``: a ``kerasrnn.RNN`` running another cell (a Keras
    or user cell, on the generic loop) is refused with its name."""
    if isinstance(layer, RNN):
        check_native(layer)
        return [(prefix + layer.name, layer)]
    prefix = f"{prefix}{layer.name}/"
    if isinstance(layer, Bidirectional):
        children = [layer.forward_layer, layer.backward_layer]
    else:
        children = layer.recurrent_layers
    return [
        loop for child in children for loop in recurrent_loops(child, prefix)
    ]


def check_has_recurrent_layers(model):
    layers = find_recurrent_layers(model)
    if not layers:
        kinds = sorted({type(layer).__name__ for layer in model.layers})
        raise ValueError(
            f"Model '{model.name}' has no kerasrnn recurrent layer (RNN, "
            "Bidirectional, SimpleRNN, LSTM, GRU), so there is no gradient "
            f"flow through time to measure. Received layers: {kinds}"
        )
    return layers


class GradientFlowProbe:
    """Prepares the probe of a model once; call it on batches.

    ``GradientFlowProbe(model)(x, y)`` equals ``gradient_flow(model, x, y)``;
    keep a probe to measure the same model repeatedly (the callback does).
    """

    def __init__(self, model, loss=None):
        if isinstance(model, RECURRENT_LAYERS):
            layers = [model]
        elif isinstance(model, keras.Model):
            layers = check_has_recurrent_layers(model)
            if not model.built:
                raise ValueError(
                    f"Model '{model.name}' is not built; call it on a batch "
                    "(or give it a keras.Input) first."
                )
        else:
            raise TypeError(
                "`model` must be a keras.Model or a kerasrnn recurrent layer "
                f"(RNN, Bidirectional, SimpleRNN, LSTM, GRU). Received: "
                f"model={model!r}"
            )
        self.model = model
        self.perturbations = Perturbations({
            id(rnn): path
            for layer in layers for path, rnn in recurrent_loops(layer)
        })
        self.loss = resolve_loss(model, loss)

    def __call__(self, x, y):
        require_tensorflow("gradient_flow (a tf.GradientTape)")
        import tensorflow as tf

        perturbations = self.perturbations
        perturbations.tensors, perturbations.layers = {}, {}
        with tf.GradientTape() as tape, state_hook(perturbations):
            perturbations.tape = tape
            # Dropout is off: the analysis is an inference pass.
            y_pred = self.model(x, training=False)
            if isinstance(y_pred, (list, tuple)) and isinstance(
                self.model, RECURRENT_LAYERS
            ):
                y_pred = y_pred[0]
            if isinstance(y_pred, (list, tuple, dict)):
                raise ValueError(
                    "gradient_flow needs a model with one output. Received "
                    f"{len(y_pred)} outputs."
                )
            loss = total_loss(self.loss, y, y_pred)
        perturbations.tape = None
        names = list(perturbations.tensors)
        grads = tape.gradient(
            loss, [perturbations.tensors[name] for name in names]
        )
        tracks = []
        for name, gradient in zip(names, grads):
            layer = perturbations.layers[name]
            cell = layer.cell
            if gradient is None:
                # The loss does not depend on this loop at all.
                gradient = tf.zeros_like(perturbations.tensors[name])
            gradient = np.asarray(gradient)
            parts = np.split(
                gradient, np.cumsum(cell.state_size)[:-1], axis=-1
            )
            tracks.append(
                TrackFlow(
                    name=name,
                    cell=type(cell).__name__,
                    go_backwards=layer.go_backwards,
                    gradients=dict(zip(cell.state_names, parts)),
                )
            )
        flow = GradientFlow(
            loss=float(loss),
            tracks=tuple(tracks),
            outputs=keras.ops.convert_to_numpy(y_pred),
        )
        if not flow.finite:
            bad = {
                track.name: len(track.nonfinite_steps())
                for track in flow.tracks
            }
            warnings.warn(
                f"Non-finite gradient flow (loss={flow.loss}); steps with a "
                f"NaN or inf gradient per loop: {bad}. The gradient explodes "
                "(or the forward pass overflows): see spectral_radius() and "
                "consider gradient clipping.",
                RuntimeWarning,
                stacklevel=2,
            )
        return flow


def resolve_loss(model, loss):
    """A per-example loss function ``(y_true, y_pred) -> (B, ...)``."""
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                "gradient_flow needs a loss: pass `loss=` (a Keras loss "
                "name, a keras.losses.Loss or a callable(y_true, y_pred)) "
                "or compile the model. Received: loss=None"
            )
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if isinstance(loss, str):
        return keras.losses.get(loss)
    if callable(loss):
        return loss
    raise ValueError(
        "`loss` must be a Keras loss name, a keras.losses.Loss or a "
        f"callable(y_true, y_pred). Received: loss={loss!r}"
    )


def total_loss(loss_fn, y_true, y_pred):
    """``L = Σ_b ℓ_b`` with ``ℓ_b`` the mean of example b's loss terms.

    Summing over the batch (instead of Keras' mean) makes the gradient for
    example b equal ``∂ℓ_b/∂h_k`` whatever the batch size. A loss function
    that returns a scalar is used as it is.
    """
    if y_true is not None:
        y_true = ops.convert_to_tensor(y_true)
    values = ops.convert_to_tensor(loss_fn(y_true, y_pred))
    if len(values.shape) == 0:
        return values
    if len(values.shape) > 1:
        values = ops.mean(values, axis=tuple(range(1, len(values.shape))))
    return ops.sum(values)


def gradient_flow(model, x, y, loss=None):
    """``‖∂L/∂h_k‖`` for every step k of every recurrent loop of a model.

    For each loop (each layer and direction of a stack, each direction of a
    ``Bidirectional``) the loop is re-run with a zero perturbation added to
    the states it computes at every step, and one backward pass gives
    ``∂L/∂h_k`` (and ``∂L/∂c_k`` for an LSTM) for all k. The model's other
    layers are used as they are; dropout is off.

    The loss is ``L = Σ_b ℓ_b``, the sum over the batch of each example's
    loss, so ``TrackFlow.norms()[b, k] = ‖∂ℓ_b/∂h_k‖`` does not depend on
    the batch size.

    Args:
        model: a built Sequential or functional ``keras.Model`` with at
            least one kerasrnn recurrent layer, or such a layer (its output,
            the first one with ``return_state``, goes to the loss).
        x: a batch of inputs.
        y: the targets (passed to the loss as ``y_true``).
        loss: a Keras loss name, a ``keras.losses.Loss`` or a callable
            ``(y_true, y_pred) -> per-example losses``; default: the loss
            the model was compiled with.

    Returns:
        A ``GradientFlow``. Non-finite gradients do not raise: they show as
        NaN/inf norms, ``GradientFlow.finite`` is False, each
        ``TrackFlow.nonfinite_steps()`` lists the steps, and a
        ``RuntimeWarning`` says so.

    Raises:
        ValueError: the model has no recurrent layer, is not built, has no
            loss, or has several outputs.

    Example:

    >>> model = keras.Sequential([keras.Input((50, 2)), LSTM(16), Dense(1)])
    >>> x, y = adding_problem(50, 32, seed=0)
    >>> flow = gradient_flow(model, x, y, loss="mse")
    >>> flow["lstm/layer_0"].mean_norms()   # (50,), index = step k
    """
    return GradientFlowProbe(model, loss)(x, y)


def spectral_radius(model):
    """ρ(U_g) = max |eig(U_g)| of every recurrent block of every loop.

    ``U_g`` is the ``(H, H)`` block of ``recurrent_kernel`` for gate ``g``
    (Keras gate order: ``h`` for Elman; ``i, f, c, o`` for LSTM; ``z, r, h``
    for GRU). For an Elman cell with ``|g'| ≤ 1`` the backward factor per
    step is ``U diag(g')``: ρ(U) < 1 means the product ``U^k`` vanishes, and
    the largest singular value ``‖U‖₂ < 1`` is sufficient for the gradient
    to vanish (Pascanu et al. 2013).

    Args:
        model: a ``keras.Model`` or a kerasrnn recurrent layer (built).

    Returns:
        ``{loop path: {gate: ρ}}``.
    """
    if isinstance(model, RECURRENT_LAYERS):
        layers = [model]
    elif isinstance(model, keras.Model):
        layers = check_has_recurrent_layers(model)
    else:
        raise TypeError(
            "`model` must be a keras.Model or a kerasrnn recurrent layer. "
            f"Received: model={model!r}"
        )
    radii = {}
    for layer in layers:
        for name, rnn in recurrent_loops(layer):
            cell = rnn.cell
            if not cell.built:
                raise ValueError(
                    f"Layer '{layer.name}' is not built; call it on a batch "
                    "first."
                )
            kernel = keras.ops.convert_to_numpy(cell.recurrent_kernel)
            if kernel.ndim == 1:
                # An elementwise recurrence u ⊙ h: U = diag(u).
                kernel = np.diag(kernel)
            gates = cell.gate_names
            blocks = np.split(kernel.astype("float64"), len(gates), axis=1)
            radii[name] = {
                gate: float(np.max(np.abs(np.linalg.eigvals(block))))
                for gate, block in zip(gates, blocks)
            }
    return radii
