"""``RNN``: runs a cell over the time axis: kerasrnn's cells on their fast
paths, any Keras-compatible cell (or a list of cells, stacked) on the
generic loop."""

import inspect

import keras
import numpy as np
from keras import ops

from kerasrnn.cells.base import RecurrentCell
from kerasrnn.layers.checks import check_mask
from kerasrnn.layers.checks import check_sequences
from kerasrnn.layers.checks import check_states
from kerasrnn.layers.checks import check_use_cudnn
from kerasrnn.layers import cudnn_kernels
from kerasrnn.layers import torch_kernels
from kerasrnn.layers.time_loop import active_state_hook
from kerasrnn.layers.time_loop import keras_outputs
from kerasrnn.layers.time_loop import last_keras_output
from kerasrnn.layers.time_loop import run_time_loop


@keras.saving.register_keras_serializable(package="kerasrnn")
class RNN(keras.layers.Layer):
    """Runs a cell over a sequence, like ``keras.layers.RNN``.

    The input part of every gate, ``x_t W + b``, is computed for all steps in
    one matmul before the loop; the loop does only the cell's ``step``.
    Equivalent loop, for ``sequences`` of shape ``(B, T, F)``::

        states = initial_state or zeros
        for t in range(T):                      # reversed if go_backwards
            out_t, new = cell(sequences[:, t], states)
            states = new      where mask[:, t] else states
            out_t  = out_t    where mask[:, t] else previous out (or zeros)

    Args:
        cell: a kerasrnn cell (``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``:
            projected inputs, fused loops), or any Keras-compatible cell
            (a layer with ``state_size`` and ``call(inputs, states) ->
            (output, new_states)``, optionally ``output_size``,
            ``get_initial_state(batch_size)`` and a ``training`` argument;
            Keras' own cells), run by the generic loop as
            ``keras.layers.RNN`` runs it; or a list of cells, stacked in a
            ``keras.layers.StackedRNNCells`` (states nested per cell, as
            in Keras).
        return_sequences: return the output of every step ``(B, T, H)``
            instead of the last one ``(B, H)``.
        return_state: also return the final states.
        go_backwards: process the sequence from its end; outputs come in
            processing (reversed) order, as in Keras.
        stateful: carry the final states of a batch into the next call
            (needs a fixed batch size); ``reset_states()`` zeroes them.
        unroll: unroll the time loop in Python (static, short sequences).
        zero_output_for_mask: output zeros at masked steps instead of the
            previous output (``Bidirectional`` sets it for sequences).
        fused: use the backend's fast path when the cell supports it
            (``fast_path`` says which runs, and why not): on TensorFlow,
            in training, the time loop with a hand-written backward pass
            (tanh, sigmoid, relu or linear activations; not with
            ``unroll``, ``fused_loop.py``), otherwise a forward-only loop
            that keeps no cache (autodiff still works through it); on
            torch, torch's fused ``lstm``/``gru``/``rnn_*`` kernels
            (``torch_kernels.py``); on JAX the generic loop is already one
            compiled ``lax.scan``. False forces the generic loop with
            autodiff; all give the same numbers.
            ``cell.fused_path_note`` says why a cell runs the generic loop.
        use_cudnn: as in Keras' layers: ``"auto"`` lets the vendor kernel
            run where the configuration allows it (torch's fused kernels,
            cuDNN's on CUDA; on TensorFlow with a visible GPU, cuDNN's LSTM
            and GRU by Keras' own route, ``cudnn_kernels.py``), ``False``
            never (TensorFlow keeps its fused loop, torch the generic
            loop). ``True`` is refused: kerasrnn cannot promise cuDNN for
            every configuration.

    Call arguments:
        sequences: float ``(B, T, F)``.
        initial_state: list of ``(B, H)`` tensors (``[h]`` or ``[h, c]``).
        mask: boolean ``(B, T)``, True for real steps. Comes from
            ``Embedding(mask_zero=True)`` or ``Masking`` automatically. At a
            masked step the state carries over unchanged.
        training: enables dropout. Dropout masks are drawn once per sequence
            (variational dropout, Gal & Ghahramani 2016).

    Returns:
        ``output`` or, with ``return_state``, ``[output, *final_states]``.
    """

    def __init__(
        self,
        cell,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        fused=True,
        use_cudnn="auto",
        **kwargs,
    ):
        if isinstance(cell, (list, tuple)):
            cell = keras.layers.StackedRNNCells(list(cell))
        if not isinstance(cell, RecurrentCell) and not (
            callable(getattr(cell, "call", None))
            and hasattr(cell, "state_size")
        ):
            raise TypeError(
                "`cell` must be a kerasrnn cell, a Keras-compatible RNN cell "
                "(a layer with `state_size` and `call(inputs, states) -> "
                "(output, new_states)`) or a list of them. Received: "
                f"cell={cell!r}"
            )
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.fused = bool(fused)
        self.use_cudnn = check_use_cudnn(use_cudnn, self.name)
        self.supports_masking = True
        self.states = None

    @property
    def supports_jit(self):
        """False where a call can run cuDNN on TensorFlow (its op has no
        XLA kernel), so that ``jit_compile="auto"`` leaves XLA off, as for
        Keras' own layers."""
        on_cudnn = (
            keras.config.backend() == "tensorflow"
            and self.native and self.use_cudnn == "auto"
            and cudnn_kernels.cudnn_note(self.cell) is None
        )
        return self._supports_jit and not on_cudnn

    @supports_jit.setter
    def supports_jit(self, value):
        self._supports_jit = value

    @property
    def native(self):
        """True for kerasrnn's own cells (the projected, fused loops)."""
        return isinstance(self.cell, RecurrentCell)

    @property
    def state_size(self):
        """The size of each state, flattened (a stack's cells in order)."""
        if self.native:
            return self.cell.state_size
        return [int(size) for size in keras.tree.flatten(
            self.cell.state_size)]

    @property
    def units(self):
        return getattr(self.cell, "units", None)

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"Layer '{self.name}' expects `sequences` of rank 3 (batch, "
                f"time, features). Received: shape={tuple(sequences_shape)}"
            )
        if not self.cell.built:
            self.cell.build((sequences_shape[0], sequences_shape[-1]))
        if self.stateful and self.states is None:
            batch_size = sequences_shape[0]
            if batch_size is None:
                raise ValueError(
                    f"Layer '{self.name}' is stateful and needs a static "
                    "batch size: pass `batch_shape=(batch, time, features)` "
                    f"to keras.Input. Received: shape={tuple(sequences_shape)}"
                )
            # Like Keras, the carried states are not weights: they are not
            # saved and do not shift get_weights(), so a stateful layer
            # still takes a Keras built-in layer's weights as they are.
            object.__setattr__(self, "states", [
                keras.Variable(
                    ops.zeros((batch_size, size), dtype=self.compute_dtype),
                    trainable=False,
                    name=f"{self.name}_state_{index}",
                )
                for index, size in enumerate(self.state_size)
            ])

    def reset_states(self, states=None):
        """Zeroes the carried states of a stateful layer, or sets them."""
        if not self.stateful:
            raise AttributeError(
                f"Layer '{self.name}' is not stateful; reset_states() only "
                "applies to layers built with stateful=True."
            )
        if self.states is None:
            return
        if states is None:
            for variable in self.states:
                variable.assign(ops.zeros(variable.shape, variable.dtype))
            return
        batch_size = self.states[0].shape[0]
        states = check_states(
            states, self.state_size, batch_size, self.name, "states"
        )
        for variable, value in zip(self.states, states):
            variable.assign(value)

    reset_state = reset_states

    def call(self, sequences, initial_state=None, mask=None, training=False):
        sequences, mask, states = self._prepare(sequences, initial_state, mask)
        if not self.native:
            return self._call_cell(sequences, mask, states, training)
        states = [ops.cast(s, self.compute_dtype) for s in states]
        input_mask, recurrent_mask = self.cell.dropout_masks(
            ops.shape(sequences)[0], sequences.shape[-1], training
        )
        if input_mask is not None:
            # One mask for the whole sequence: broadcast over time.
            sequences = sequences * ops.expand_dims(input_mask, 1)
        # DropConnect: one mask on U for the whole batch.
        weight_mask = self.cell.weight_dropout_mask(training)
        if weight_mask is not None:
            self.cell.check_weight_dropout()
        probe = active_state_hook()
        if probe is not None:
            return self._result(
                *self._generic_loop(sequences, states, mask, recurrent_mask,
                                    weight_mask, probe),
                carry=False,
            )
        loop, padding = self._choose_loop(
            mask, training, recurrent_mask is not None
        )
        if loop in ("fused", "forward"):
            run = self._fused_loop if loop == "fused" else self._forward_loop
            result = run(sequences, states, mask, recurrent_mask, weight_mask)
        elif loop == "cudnn":
            fallback = self._fused_loop if training else self._forward_loop
            result = cudnn_kernels.run_cudnn_kernel(
                self.cell, sequences, states, mask, weight_mask,
                self.go_backwards, self.zero_output_for_mask,
                self.return_sequences,
                lambda: fallback(sequences, states, mask, recurrent_mask,
                                 weight_mask),
            )
        elif loop == "torch_kernel":
            result = torch_kernels.run_torch_kernel(
                self.cell, sequences, states, padding, weight_mask, training,
                self.zero_output_for_mask,
            )
        else:  # "generic", "scan"
            result = self._generic_loop(
                sequences, states, mask, recurrent_mask, weight_mask
            )
        return self._result(*result)

    def fast_path(self, mask=None, training=False):
        """The loop a call with ``mask`` (None or a boolean ``(B, T)``
        array) runs on the current Keras backend:

        * ``"fused"``: TensorFlow's fused loop with its hand-written
          backward (training; ``fused_loop.py``), ``"forward"`` its
          inference loop;
        * ``"cudnn"``: on TensorFlow with a visible GPU, cuDNN's LSTM or
          GRU by Keras' route (``cudnn_kernels.py``; a mask that is not
          right-padded takes the fused loop, decided in the graph);
        * ``"torch_kernel"``: torch's fused kernel (``torch_kernels.py``);
        * ``"scan"``: JAX's compiled ``lax.scan`` of the cell's step;
        * ``"generic"``: the generic loop (``cell.fused_path_note`` or
          ``torch_kernels.kernel_note`` says why).
        """
        if mask is not None:
            mask = ops.convert_to_tensor(mask, "bool")
        recurrent_dropout = (training and self.native
                             and self.cell.recurrent_dropout > 0)
        return self._choose_loop(mask, training, recurrent_dropout)[0]

    def _choose_loop(self, mask, training, recurrent_dropout):
        """``(loop, padding)``: ``fast_path``'s loop, and for the torch
        kernel the mask's ``torch_kernels.padded_lengths`` (None without
        a mask)."""
        backend = keras.config.backend()
        if not self.native or not self.fused or self.unroll:
            return "generic", None
        if backend == "tensorflow":
            if self.use_cudnn == "auto" and cudnn_kernels.cudnn_note(
                    self.cell, recurrent_dropout) is None:
                return "cudnn", None
            if not self.cell.supports_fused:
                return "generic", None
            return ("fused" if training else "forward"), None
        if backend == "torch":
            if self.use_cudnn is False:
                return "generic", None
            note = torch_kernels.kernel_note(self.cell, recurrent_dropout)
            if note is not None:
                return "generic", None
            if mask is None:
                return "torch_kernel", None
            padding = torch_kernels.padded_lengths(mask)
            if padding is None:
                return "generic", None
            return "torch_kernel", padding
        # JAX's fast path is the generic loop itself: one lax.scan.
        return "scan", None

    def _prepare(self, sequences, initial_state, mask):
        """The checked sequences and mask (in processing order: reversed
        with ``go_backwards``) and the flat list of initial states (given,
        carried, or the cell's initial ones)."""
        features = self.cell.kernel.shape[0] if self.native else None
        sequences = check_sequences(
            sequences, self.name, features, self.compute_dtype
        )
        mask = check_mask(mask, sequences, self.name)
        batch_size = sequences.shape[0]
        self._check_stateful_batch_size(batch_size)
        if initial_state is None:
            if self.stateful:
                initial_state = [ops.convert_to_tensor(s) for s in self.states]
            else:
                initial_state = self._initial_cell_states(
                    ops.shape(sequences)[0]
                )
        states = check_states(
            keras.tree.flatten(initial_state), self.state_size, batch_size,
            self.name, "initial_state",
        )
        if self.go_backwards:
            sequences = ops.flip(sequences, axis=1)
            if mask is not None:
                mask = ops.flip(mask, axis=1)
        return sequences, mask, states

    def _result(self, last_output, outputs, final_states, carry=True):
        """Stores the carried states (unless ``carry`` is False) and
        returns what ``call`` returns, in this layer's dtype; a Keras
        cell's states nested as it nests them."""
        final_states = [ops.cast(s, self.compute_dtype) for s in final_states]
        if self.stateful and carry:
            for variable, value in zip(self.states, final_states):
                variable.assign(value)
        output = outputs if self.return_sequences else last_output
        output = ops.cast(output, self.compute_dtype)
        if not self.return_state:
            return output
        if not self.native:
            final_states = keras.tree.pack_sequence_as(
                self._state_structure(), final_states
            )
        return [output, *final_states]

    def _check_stateful_batch_size(self, batch_size):
        """A stateful layer carries states for one batch size."""
        if not self.stateful or self.states is None or batch_size is None:
            return
        expected = self.states[0].shape[0]
        if batch_size != expected:
            raise ValueError(
                f"Layer '{self.name}' is stateful and carries states for a "
                f"batch size of {expected}; the sequences have a batch size "
                f"of {batch_size}. Feed batches of {expected} (or "
                "rebuild the layer for the new batch size)."
            )

    def _fused_loop(self, sequences, states, mask, recurrent_mask,
                    weight_mask):
        from kerasrnn.layers.fused_loop import run_fused_loop

        if mask is not None:
            mask = ops.expand_dims(ops.transpose(mask), -1)
        state_sequences = run_fused_loop(
            self.cell, ops.transpose(sequences, (1, 0, 2)), states, mask,
            recurrent_mask, weight_mask,
        )
        outputs = keras_outputs(
            state_sequences[0], mask, self.zero_output_for_mask
        )
        final_states = [sequence[-1] for sequence in state_sequences]
        if self.return_sequences:
            return outputs[-1], ops.transpose(outputs, (1, 0, 2)), final_states
        return outputs[-1], None, final_states

    def _forward_loop(self, sequences, states, mask, recurrent_mask,
                      weight_mask):
        from kerasrnn.layers.fused_loop import run_forward_loop

        if mask is not None:
            mask = ops.expand_dims(ops.transpose(mask), -1)
        hidden_states, final_states = run_forward_loop(
            self.cell, ops.transpose(sequences, (1, 0, 2)), states, mask,
            recurrent_mask, weight_mask, self.return_sequences,
        )
        last_output = last_keras_output(
            final_states[0], mask, self.zero_output_for_mask
        )
        if not self.return_sequences:
            return last_output, None, final_states
        outputs = keras_outputs(hidden_states, mask, self.zero_output_for_mask)
        return last_output, ops.transpose(outputs, (1, 0, 2)), final_states

    def _generic_loop(self, sequences, states, mask, recurrent_mask,
                      weight_mask=None, probe=None):
        """The cell's ``step`` in the core time loop, its parameters (``U``
        times the DropConnect ``weight_mask`` when given) read once per
        sequence; a cell that overrides ``recurrent_step`` runs that.
        With a ``probe`` (``time_loop.state_hook``), its perturbation
        ``ε_k`` is added to the states of step ``k``.

        ``x_t W + b`` runs before the loop as one matmul, except on JAX,
        where it runs inside the ``lax.scan`` (XLA's CPU loop is about 2×
        faster on inputs it computes in the step than on a precomputed
        sequence it slices, ``benchmarks/speed.py --backend jax``)."""
        cell = self.cell
        in_loop = keras.config.backend() == "jax" and probe is None
        projected = sequences if in_loop else cell.project_inputs(sequences)
        recurrent_step = cell.recurrent_step
        if type(cell).recurrent_step is RecurrentCell.recurrent_step:
            parameters = cell.step_parameters(weight_mask)

            def recurrent_step(projected_t, step_states, recurrent_mask):
                new_states, _ = cell.step(projected_t, list(step_states),
                                          parameters, recurrent_mask)
                return new_states[0], new_states
        bounds = None
        if probe is not None:
            sizes = list(cell.state_size)
            width = projected.shape[-1]
            epsilon = probe.perturbation(
                self, (ops.shape(sequences)[0], ops.shape(sequences)[1],
                       sum(sizes)), projected.dtype,
            )
            # ε_k travels through the loop next to x_k W + b.
            projected = ops.concatenate([projected, epsilon], axis=-1)
            bounds = np.cumsum([width, *sizes]).tolist()

        def step(inputs_t, step_states):
            if in_loop:
                inputs_t = cell.project_inputs(inputs_t)
            if bounds is None:
                return recurrent_step(inputs_t, step_states, recurrent_mask)
            output, new_states = recurrent_step(
                inputs_t[:, :bounds[0]], step_states, recurrent_mask
            )
            epsilons = [inputs_t[:, start:stop]
                        for start, stop in zip(bounds, bounds[1:])]
            new_states = [s + e for s, e in zip(new_states, epsilons)]
            # A kerasrnn cell outputs its first state, h_k.
            return output + epsilons[0], new_states

        return run_time_loop(
            step,
            projected,
            states,
            mask=mask,
            return_sequences=self.return_sequences,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
        )

    # --- any Keras-compatible cell -------------------------------------------

    def _state_structure(self):
        """The sizes of the states, nested as the cell takes and returns
        them: as its ``get_initial_state`` nests them, else as its
        ``state_size`` (a list even for one state, as Keras passes it)."""
        get_initial_state = getattr(self.cell, "get_initial_state", None)
        if get_initial_state is not None:
            states = get_initial_state(batch_size=1)
            if not keras.tree.is_nested(states):
                states = [states]
            return keras.tree.map_structure(
                lambda state: int(state.shape[-1]), list(states)
            )
        sizes = self.cell.state_size
        return list(sizes) if keras.tree.is_nested(sizes) else [sizes]

    def _initial_cell_states(self, batch_size):
        get_initial_state = getattr(self.cell, "get_initial_state", None)
        if get_initial_state is None:
            return [ops.zeros((batch_size, size), dtype=self.compute_dtype)
                    for size in self.state_size]
        return keras.tree.flatten(get_initial_state(batch_size=batch_size))

    def _output_size(self):
        size = getattr(self.cell, "output_size", None)
        return self.state_size[0] if size is None else int(size)

    def _call_cell(self, sequences, mask, states, training):
        """The generic loop for any Keras-compatible cell: the cell's own
        ``call`` at every step, its states packed as it expects them."""
        # The loop runs in the cell's dtype, the result in the layer's.
        cell_dtype = getattr(self.cell, "compute_dtype", self.compute_dtype)
        states = [ops.cast(s, cell_dtype) for s in states]
        structure = self._state_structure()
        arguments = {}
        if "training" in inspect.signature(self.cell.call).parameters:
            arguments["training"] = training

        def step(inputs_t, flat_states):
            nested = keras.tree.pack_sequence_as(structure, flat_states)
            output, new_states = self.cell(inputs_t, nested, **arguments)
            return output, keras.tree.flatten(new_states)

        last_output, outputs, final_states = run_time_loop(
            step, sequences, states, mask=mask,
            return_sequences=self.return_sequences,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
            zero_output=ops.zeros(
                (ops.shape(sequences)[0], self._output_size()), cell_dtype
            ),
        )
        for cell in _dropout_cells(self.cell):
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
        return self._result(last_output, outputs, final_states)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch_size, steps = sequences_shape[0], sequences_shape[1]
        output_size = (self.cell.output_size if self.native
                       else self._output_size())
        if self.return_sequences:
            output_shape = (batch_size, steps, output_size)
        else:
            output_shape = (batch_size, output_size)
        if self.return_state:
            structure = (self.state_size if self.native
                         else self._state_structure())
            return [output_shape, *keras.tree.map_structure(
                lambda size: (batch_size, int(size)), list(structure))]
        return output_shape

    def compute_mask(self, sequences, mask=None):
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            structure = (self.state_size if self.native
                         else self._state_structure())
            return [output_mask] + [None] * len(structure)
        return output_mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell": keras.saving.serialize_keras_object(self.cell),
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
                "fused": self.fused,
                "use_cudnn": self.use_cudnn,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)


def _dropout_cells(cell):
    """The Keras ``DropoutRNNCell`` s in ``cell`` (itself, or a stack's),
    whose per-sequence dropout masks are reset after each call."""
    if hasattr(cell, "reset_recurrent_dropout_mask"):
        yield cell
    for inner in getattr(cell, "cells", ()):
        yield from _dropout_cells(inner)
