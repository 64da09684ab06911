"""``SimpleRNN``, ``LSTM``, ``GRU``: drop-in Keras layers, deep, bidirectional.

With the defaults (``num_layers=1``, ``bidirectional=False``) each is a
drop-in replacement for ``keras.layers.SimpleRNN/LSTM/GRU``: same arguments,
same weights (``get_weights() == [kernel, recurrent_kernel, bias]``), same
outputs. The PyTorch-style options stack layers the way ``torch.nn.LSTM``
does: layer ``k+1`` reads the (merged) output sequence of layer ``k``.
"""

import inspect

import keras
from keras import ops

from kerasrnn.cells import GRUCell
from kerasrnn.cells import IndRNNCell
from kerasrnn.cells import LSTMCell
from kerasrnn.cells import PeepholeLSTMCell
from kerasrnn.cells import SimpleRNNCell
from kerasrnn.cells.base import RecurrentCell
from kerasrnn.cells.base import fresh_initializer
from kerasrnn.cells.registry import cell_spec
from kerasrnn.cells.registry import is_registered
from kerasrnn.layers.bidirectional import Bidirectional
from kerasrnn.layers.bidirectional import check_merge_mode
from kerasrnn.layers.checks import check_sequences
from kerasrnn.layers.checks import check_states
from kerasrnn.layers.checks import check_use_cudnn
from kerasrnn.layers.pooling import last_valid_step
from kerasrnn.layers.rnn import RNN
from kerasrnn.validation import check_choice
from kerasrnn.validation import check_int
from kerasrnn.validation import check_rate

STATE_LAYOUTS = ("keras", "pytorch")
# Arguments for the Layer itself; every other keyword configures the cells.
LAYER_ARGUMENTS = ("name", "dtype", "trainable", "autocast", "input_shape",
                   "activity_regularizer")


class StackedRecurrent(keras.layers.Layer):
    """A stack of ``num_layers`` recurrent layers of one cell type.

    Args:
        units: H, the state size of every layer.
        **cell arguments: forwarded to each cell (activation, initializers,
            regularizers, constraints, dropout, recurrent_dropout,
            recurrent_weight_dropout (DropConnect on U), seed, and
            ``unit_forget_bias`` / ``reset_after`` for LSTM / GRU).
        return_sequences, return_state, go_backwards, stateful, unroll,
            zero_output_for_mask: as in Keras (``go_backwards`` only for one
            unidirectional layer).
        num_layers: number of stacked layers (default 1).
        bidirectional: run each layer in both directions.
        merge_mode: how each bidirectional layer merges its directions,
            ``"concat"`` (default, as PyTorch), ``"sum"``, ``"mul"``,
            ``"ave"``.
        inter_layer_dropout: dropout rate on each layer's output sequence
            before the next layer (not after the last layer).
        residual: add each layer's input to its output, from the second
            layer on (GNMT-style; shapes match there).
        state_layout: ``"keras"`` (default): final and initial states are a
            flat list, layer-major, forward before backward, ``[h, c]``
            within each. ``"pytorch"``: ``[h_n]`` or ``[h_n, c_n]``, each
            ``(num_layers * num_directions, B, H)`` in the same order, as
            returned by ``torch.nn.LSTM``.
        activity_regularizer, name, dtype, trainable: as any Keras layer
            (the regularizer applies to the layer's outputs).

    Call arguments:
        sequences: float ``(B, T, F)``.
        initial_state: states in ``state_layout``.
        mask: boolean ``(B, T)``.
        training: enables dropout.

    Returns:
        ``output`` (``(B, T, D*H)`` or ``(B, D*H)`` for concat), followed by
        the final states in ``state_layout`` when ``return_state=True``.
    """

    cell_class = RecurrentCell

    def __init_subclass__(cls, **kwargs):
        """The first subclass that names a registered ``cell_class``
        becomes that cell's sequence layer in the registry (what models
        build); later ones (a user's variant of ``LSTM``) do not replace
        it."""
        super().__init_subclass__(**kwargs)
        if "cell_class" in cls.__dict__ and is_registered(cls.cell_class):
            spec = cell_spec(cls.cell_class)
            if spec.layer_class is None:
                spec.layer_class = cls

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
        inter_layer_dropout=0.0,
        residual=False,
        state_layout="keras",
        **kwargs,
    ):
        # Keras' legacy `implementation` (1 or 2) selects a kernel layout,
        # not the numbers; Keras accepts it in constructors and configs.
        kwargs.pop("implementation", None)
        layer_kwargs = {
            key: kwargs.pop(key) for key in LAYER_ARGUMENTS if key in kwargs
        }
        unknown = set(kwargs) - set(self.cell_arguments())
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown argument(s) "
                f"{sorted(unknown)}. Expected cell arguments "
                f"{sorted(self.cell_arguments())} or layer arguments."
            )
        super().__init__(**layer_kwargs)
        check_int("num_layers", num_layers)
        check_choice("state_layout", state_layout, STATE_LAYOUTS)
        if go_backwards and (num_layers > 1 or bidirectional):
            raise ValueError(
                "`go_backwards=True` applies to one unidirectional layer; "
                "for deep or bidirectional stacks use bidirectional=True or "
                f"reverse the inputs. Received: num_layers={num_layers}, "
                f"bidirectional={bidirectional}"
            )
        residual = bool(residual)
        if residual and bidirectional and not return_sequences:
            raise ValueError(
                "residual=True with bidirectional=True needs "
                "return_sequences=True (the residual sum has no 'last step' "
                "for the backward half); pool the sequences with "
                "SequencePooling instead."
            )
        self.units = units
        self.cell_config = dict(kwargs, units=units)
        # Builds (and so validates) one cell now: a bad argument fails here.
        prototype = self.cell_class(**self.cell_config)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.num_layers = num_layers
        self.bidirectional = bool(bidirectional)
        self.merge_mode = check_merge_mode(merge_mode)
        if self.merge_mode is None:
            raise ValueError(
                "`merge_mode=None` cannot feed a next layer; use 'concat', "
                "'sum', 'mul' or 'ave'."
            )
        self.inter_layer_dropout = check_rate(
            "inter_layer_dropout", inter_layer_dropout
        )
        self.residual = residual
        self.state_layout = state_layout
        self.state_size = list(prototype.state_size)
        self.num_directions = 2 if self.bidirectional else 1
        self.supports_masking = True

        dtype = layer_kwargs.get("dtype")
        self.recurrent_layers = []
        self.dropout_layers = []
        for index in range(num_layers):
            last = index == num_layers - 1
            sequences_out = self.return_sequences or not last or (
                self.residual and index > 0
            )
            layer = self._make_rnn(
                index, 0, sequences_out, self.go_backwards, dtype
            )
            if self.bidirectional:
                layer = Bidirectional(
                    layer,
                    merge_mode=self.merge_mode,
                    backward_layer=self._make_rnn(
                        index, 1, sequences_out, True, dtype
                    ),
                    name=f"layer_{index}",
                    dtype=dtype,
                )
            self.recurrent_layers.append(layer)
            if not last and self.inter_layer_dropout > 0:
                self.dropout_layers.append(
                    keras.layers.Dropout(
                        self.inter_layer_dropout,
                        seed=self.cell_config.get("seed"),
                        name=f"dropout_{index}",
                    )
                )
        self.zero_output_for_mask = zero_output_for_mask

    @property
    def zero_output_for_mask(self):
        return self._zero_output_for_mask

    @zero_output_for_mask.setter
    def zero_output_for_mask(self, value):
        # Bidirectional sets it on the layer it wraps; the sub-layers follow
        # (inner Bidirectional layers keep their own, forced, setting).
        self._zero_output_for_mask = bool(value)
        for layer in getattr(self, "recurrent_layers", []):
            if isinstance(layer, RNN):
                layer.zero_output_for_mask = self._zero_output_for_mask

    @classmethod
    def cell_arguments(cls):
        names = set()
        for klass in (cls.cell_class, RecurrentCell):
            names |= set(inspect.signature(klass.__init__).parameters)
        return names - {"self", "kwargs", "units"}

    def _make_rnn(self, index, direction, return_sequences, backwards, dtype):
        config = {
            key: fresh_initializer(value) if key.endswith("_initializer")
            else value
            for key, value in self.cell_config.items()
        }
        if config.get("seed") is not None:
            # Distinct dropout masks per layer and direction.
            config["seed"] = config["seed"] + 2 * index + direction
        suffix = "backward" if direction else "forward"
        name = f"layer_{index}_{suffix}" if self.bidirectional else (
            f"layer_{index}"
        )
        return RNN(
            self.cell_class(**config, dtype=dtype),
            return_sequences=return_sequences,
            return_state=True,
            go_backwards=backwards,
            stateful=self.stateful,
            unroll=self.unroll,
            name=name,
            dtype=dtype,
        )

    @property
    def output_size(self):
        if self.bidirectional and self.merge_mode == "concat":
            return 2 * self.units
        return self.units

    def build(self, sequences_shape, initial_state_shape=None):
        shape = tuple(sequences_shape)
        if len(shape) != 3:
            raise ValueError(
                f"Layer '{self.name}' expects `sequences` of rank 3 (batch, "
                f"time, features). Received: shape={shape}"
            )
        self.input_features = shape[-1]
        for layer in self.recurrent_layers:
            layer.build(shape)
            shape = shape[:2] + (self.output_size,)

    def split_initial_state(self, initial_state, batch_size):
        """Initial states as one list per layer (its directions' states in
        order, forward first); ``[None] * num_layers`` when none is given.
        Accepts either state layout and checks counts and shapes."""
        per_layer = len(self.state_size) * self.num_directions
        if initial_state is None:
            return [None] * self.num_layers
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if self.state_layout == "pytorch":
            initial_state = self._from_pytorch_layout(
                initial_state, batch_size
            )
        expected = per_layer * self.num_layers
        if len(initial_state) != expected:
            raise ValueError(
                f"Layer '{self.name}' expects `initial_state` to list "
                f"{expected} tensors (layer-major, forward before backward, "
                f"{len(self.state_size)} per direction). Received "
                f"{len(initial_state)}."
            )
        sizes = [self.units] * expected
        states = check_states(
            initial_state, sizes, batch_size, self.name, "initial_state"
        )
        return [
            states[k * per_layer:(k + 1) * per_layer]
            for k in range(self.num_layers)
        ]

    def _from_pytorch_layout(self, initial_state, batch_size):
        count = self.num_layers * self.num_directions
        if len(initial_state) != len(self.state_size):
            raise ValueError(
                f"Layer '{self.name}' with state_layout='pytorch' expects "
                f"`initial_state` = {len(self.state_size)} tensor(s) of "
                f"shape ({count}, batch, {self.units}). Received "
                f"{len(initial_state)}."
            )
        stacked = []
        for index, state in enumerate(initial_state):
            state = ops.convert_to_tensor(state)
            expected = (count, batch_size, self.units)
            shape = tuple(state.shape)
            if len(shape) != 3 or any(
                a is not None and b is not None and a != b
                for a, b in zip(shape, expected)
            ):
                raise ValueError(
                    f"Layer '{self.name}': `initial_state[{index}]` must "
                    f"have shape {expected} (state_layout='pytorch'). "
                    f"Received: shape={shape}"
                )
            stacked.append(state)
        # Flat layout: for each (layer, direction), its [h, c].
        return [
            stacked[s][k]
            for k in range(count)
            for s in range(len(self.state_size))
        ]

    def to_pytorch_layout(self, states):
        """Flat final states (layer-major, forward before backward, each
        sub-layer's ``[h, c]``) as PyTorch's ``(L * D, batch, units)``."""
        size = len(self.state_size)
        return [ops.stack(states[s::size], axis=0) for s in range(size)]

    def call(self, sequences, initial_state=None, mask=None, training=False):
        sequences = check_sequences(
            sequences, self.name, self.input_features, self.compute_dtype
        )
        initial_states = self.split_initial_state(
            initial_state, sequences.shape[0]
        )
        inputs = sequences
        final_states = []
        for index, layer in enumerate(self.recurrent_layers):
            # An RNN sub-layer is built with the stack and gets the stack's
            # checked, cast inputs inside the stack's own Keras __call__
            # (its autocast scope, its masks), so it runs its `call`
            # directly: a second __call__ cost about 0.25 ms per call at
            # batch 1 on torch.
            run = layer.call if isinstance(layer, RNN) else layer
            output, *states = run(
                inputs,
                initial_state=initial_states[index],
                mask=mask,
                training=training,
            )
            final_states += states
            if self.residual and index > 0:
                output = output + inputs
            if index < len(self.dropout_layers):
                output = self.dropout_layers[index](output, training=training)
            inputs = output
        if self.residual and self.num_layers > 1 and not self.return_sequences:
            output = last_valid_step(output, mask)
        if not self.return_state:
            return output
        if self.state_layout == "pytorch":
            final_states = self.to_pytorch_layout(final_states)
        return [output, *final_states]

    def reset_states(self):
        """Zeroes the carried states of every layer (stateful only)."""
        if not self.stateful:
            raise AttributeError(
                f"Layer '{self.name}' is not stateful; reset_states() only "
                "applies to layers built with stateful=True."
            )
        for layer in self.recurrent_layers:
            layer.reset_states()

    reset_state = reset_states   # the Keras 3 name

    @property
    def states(self):
        """The carried states of a stateful layer (None before it is
        built, or when not stateful), flat, in the ``"keras"`` layout."""
        states = [layer.states for layer in self._rnn_layers()]
        if any(s is None for s in states):
            return None
        return [state for layer_states in states for state in layer_states]

    def _rnn_layers(self):
        for layer in self.recurrent_layers:
            if isinstance(layer, Bidirectional):
                yield layer.forward_layer
                yield layer.backward_layer
            else:
                yield layer

    def get_initial_state(self, batch_size):
        """Zero states for ``batch_size`` rows, in ``state_layout``."""
        states = [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for _ in range(self.num_layers * self.num_directions)
            for size in self.state_size
        ]
        if self.state_layout == "pytorch":
            return self.to_pytorch_layout(states)
        return states

    def _first_cell(self):
        layer = self.recurrent_layers[0]
        if isinstance(layer, Bidirectional):
            layer = layer.forward_layer
        return layer.cell

    @property
    def cell(self):
        """The cell, as ``keras.layers.LSTM.cell`` (for one
        unidirectional layer; a stack has one cell per layer and
        direction: ``recurrent_layers``)."""
        if self.num_layers != 1 or self.bidirectional:
            raise AttributeError(
                f"Layer '{self.name}' runs {self.num_layers} layer(s) x "
                f"{self.num_directions} direction(s), one cell each: read "
                "them from `recurrent_layers`."
            )
        return self.recurrent_layers[0].cell

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch_size, steps = sequences_shape[0], sequences_shape[1]
        if self.return_sequences:
            output_shape = (batch_size, steps, self.output_size)
        else:
            output_shape = (batch_size, self.output_size)
        if not self.return_state:
            return output_shape
        count = self.num_layers * self.num_directions
        if self.state_layout == "pytorch":
            states = [(count, batch_size, self.units)] * len(self.state_size)
        else:
            states = [(batch_size, self.units)] * (
                count * len(self.state_size)
            )
        return [output_shape] + states

    def compute_mask(self, sequences, mask=None):
        output_mask = mask if self.return_sequences else None
        if not self.return_state:
            return output_mask
        states = len(self.compute_output_shape((None, None, None))) - 1
        return [output_mask] + [None] * states

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell_class(**self.cell_config).get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config.update(cell_config)
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
                "num_layers": self.num_layers,
                "bidirectional": self.bidirectional,
                "merge_mode": self.merge_mode,
                "inter_layer_dropout": self.inter_layer_dropout,
                "residual": self.residual,
                "state_layout": self.state_layout,
            }
        )
        return config


def _cell_attribute(name):
    def read(self):
        return getattr(self._first_cell(), name)

    return property(read, doc=f"The cells' ``{name}`` (as Keras' layers).")


# The cell attributes Keras' recurrent layers expose as properties
# (``layer.activation``, ``layer.dropout``...); every cell of a stack has
# the same ones.
for _name in (
    "activation", "recurrent_activation", "use_bias", "kernel_initializer",
    "recurrent_initializer", "bias_initializer", "kernel_regularizer",
    "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
    "recurrent_constraint", "bias_constraint", "dropout",
    "recurrent_dropout", "recurrent_weight_dropout", "unit_forget_bias",
    "reset_after",
):
    setattr(StackedRecurrent, _name, _cell_attribute(_name))


@keras.saving.register_keras_serializable(package="kerasrnn")
class SimpleRNN(StackedRecurrent):
    """Elman RNN layer(s); see ``SimpleRNNCell`` and ``StackedRecurrent``.

    The arguments are ``keras.layers.SimpleRNN``'s, in its order, then
    kerasrnn's stacking options (``StackedRecurrent``)."""

    cell_class = SimpleRNNCell

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_weight_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        zero_output_for_mask=False,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
        inter_layer_dropout=0.0,
        residual=False,
        state_layout="keras",
        **kwargs,
    ):
        super().__init__(**_spelled_out(locals()))


def _spelled_out(arguments):
    """The keyword arguments of a constructor that spells out its
    arguments (as Keras' layers do, so that ``help()`` and IDEs show
    them), from its ``locals()``."""
    arguments = dict(arguments)
    for name in ("self", "__class__"):
        arguments.pop(name, None)
    arguments.update(arguments.pop("kwargs"))
    return arguments


class CudnnArgument:
    """Accepts Keras' ``use_cudnn`` so that ``keras.layers.LSTM/GRU``
    arguments carry over unchanged, and passes it to every layer of the
    stack (``RNN``'s ``use_cudnn``): ``"auto"`` runs the vendor kernel where
    the configuration allows it (torch's fused kernel, which is cuDNN's on
    CUDA and oneDNN's on a CPU; on TensorFlow with a visible GPU, cuDNN's
    LSTM/GRU by Keras' own route), ``False`` never. ``True`` is refused
    (kerasrnn cannot promise cuDNN for every configuration).
    """

    def __init__(self, units, use_cudnn="auto", **kwargs):
        check_use_cudnn(use_cudnn, kwargs.get("name") or type(self).__name__)
        super().__init__(units, **kwargs)
        self.use_cudnn = use_cudnn
        for layer in self._rnn_layers():
            layer.use_cudnn = use_cudnn

    def get_config(self):
        return {**super().get_config(), "use_cudnn": self.use_cudnn}


@keras.saving.register_keras_serializable(package="kerasrnn")
class LSTM(CudnnArgument, StackedRecurrent):
    """LSTM layer(s); see ``LSTMCell`` and ``StackedRecurrent``.

    The arguments are ``keras.layers.LSTM``'s, in its order, then
    kerasrnn's stacking options (``StackedRecurrent``)."""

    cell_class = LSTMCell

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_weight_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        zero_output_for_mask=False,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
        inter_layer_dropout=0.0,
        residual=False,
        state_layout="keras",
        **kwargs,
    ):
        super().__init__(**_spelled_out(locals()))


@keras.saving.register_keras_serializable(package="kerasrnn")
class GRU(CudnnArgument, StackedRecurrent):
    """GRU layer(s); see ``GRUCell`` and ``StackedRecurrent``.

    The arguments are ``keras.layers.GRU``'s, in its order, then
    kerasrnn's stacking options (``StackedRecurrent``)."""

    cell_class = GRUCell

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_weight_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        reset_after=True,
        use_cudnn="auto",
        zero_output_for_mask=False,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
        inter_layer_dropout=0.0,
        residual=False,
        state_layout="keras",
        **kwargs,
    ):
        super().__init__(**_spelled_out(locals()))


@keras.saving.register_keras_serializable(package="kerasrnn")
class PeepholeLSTM(StackedRecurrent):
    """Peephole LSTM layer(s); see ``PeepholeLSTMCell`` and
    ``StackedRecurrent``.

    The arguments are ``kerasrnn.LSTM``'s (without ``use_cudnn``) and the
    peephole weights' initializer, regularizer and constraint."""

    cell_class = PeepholeLSTMCell

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        peephole_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        peephole_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        peephole_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_weight_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
        inter_layer_dropout=0.0,
        residual=False,
        state_layout="keras",
        **kwargs,
    ):
        super().__init__(**_spelled_out(locals()))


@keras.saving.register_keras_serializable(package="kerasrnn")
class IndRNN(StackedRecurrent):
    """IndRNN layer(s); see ``IndRNNCell`` and ``StackedRecurrent``.

    The arguments are ``kerasrnn.SimpleRNN``'s with IndRNN's defaults
    (ReLU, ``u`` uniform on [0, 1]) and ``recurrent_max_abs``."""

    cell_class = IndRNNCell

    def __init__(
        self,
        units,
        activation="relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer=None,
        bias_initializer="zeros",
        recurrent_max_abs=1.0,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        recurrent_weight_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        zero_output_for_mask=False,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
        inter_layer_dropout=0.0,
        residual=False,
        state_layout="keras",
        **kwargs,
    ):
        super().__init__(**_spelled_out(locals()))
