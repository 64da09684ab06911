"""``Bidirectional``: a recurrent layer run forwards and backwards."""

import keras
from keras import ops

from kerasrnn.layers.checks import check_sequences

MERGE_MODES = {
    "concat": lambda a, b: ops.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "ave": lambda a, b: (a + b) / 2,
    None: None,
}


def check_merge_mode(merge_mode):
    if merge_mode not in MERGE_MODES:
        raise ValueError(
            "`merge_mode` must be one of 'concat', 'sum', 'mul', 'ave' or "
            f"None. Received: merge_mode={merge_mode!r}"
        )
    return merge_mode


def merge(merge_mode, forward, backward):
    """Merges the two directions' outputs (a list of both for None)."""
    if merge_mode is None:
        return [forward, backward]
    return MERGE_MODES[merge_mode](forward, backward)


@keras.saving.register_keras_serializable(package="kerasrnn")
class Bidirectional(keras.layers.Layer):
    """Runs a recurrent layer forwards and a copy of it backwards.

    Both directions are copies made from the given layers' configs (as in
    Keras): the backward one has the same configuration with
    ``go_backwards`` flipped; each has its own weights. The backward
    outputs are flipped back to the input's time order, so ``output[:, t]``
    merges the forward state after ``x_0..x_t`` with the backward state
    after ``x_{T-1}..x_t``. With a mask
    (right-padded sequences) the backward direction starts at the last real
    step of each sequence, not at the padding: padding steps carry the
    initial state and output zeros.

    Args:
        layer: a kerasrnn ``RNN``, or a one-layer unidirectional
            ``SimpleRNN``/``LSTM``/``GRU``.
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"``,
            or None for a list of both outputs.
        backward_layer: optional layer to use as the backward direction
            (must have ``go_backwards`` opposite to ``layer``).

    Call arguments:
        sequences: ``(B, T, F)``.
        initial_state: forward states then backward states
            (``[h_f, c_f, h_b, c_b]`` for an LSTM).
        mask: ``(B, T)`` boolean.

    Returns:
        the merged output, followed by the forward then backward final
        states when the layer has ``return_state=True``.
    """

    def __init__(
        self, layer, merge_mode="concat", backward_layer=None, **kwargs
    ):
        if not hasattr(layer, "go_backwards") or getattr(
            layer, "bidirectional", False
        ) or getattr(layer, "num_layers", 1) != 1:
            raise ValueError(
                "`layer` must be a kerasrnn RNN or a one-layer, "
                "unidirectional SimpleRNN/LSTM/GRU (for deep bidirectional "
                "stacks use LSTM(..., num_layers=n, bidirectional=True)). "
                f"Received: layer={layer!r}"
            )
        super().__init__(**kwargs)
        self.merge_mode = check_merge_mode(merge_mode)
        # A copy, as Keras makes: wrapping one layer twice gives two sets
        # of weights, and the given layer is left as it was.
        layer = type(layer).from_config(layer.get_config())
        if backward_layer is not None:
            backward_layer = type(backward_layer).from_config(
                backward_layer.get_config()
            )
        self.forward_layer = layer
        if backward_layer is None:
            config = layer.get_config()
            config["go_backwards"] = not layer.go_backwards
            config["name"] = "backward_" + layer.name
            backward_layer = type(layer).from_config(config)
        elif backward_layer.go_backwards == layer.go_backwards:
            raise ValueError(
                "`backward_layer` must have go_backwards opposite to "
                f"`layer`. Received: go_backwards={layer.go_backwards} for "
                "both."
            )
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        # As Keras: padding outputs zeros so that flipping back is exact.
        for direction in (self.forward_layer, self.backward_layer):
            direction.zero_output_for_mask = direction.return_sequences
        self.supports_masking = True

    @property
    def state_size(self):
        return list(self.forward_layer.state_size) * 2

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"Layer '{self.name}' expects `sequences` of rank 3 (batch, "
                f"time, features). Received: shape={tuple(sequences_shape)}"
            )
        self.forward_layer.build(sequences_shape)
        self.backward_layer.build(sequences_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        sequences = check_sequences(
            sequences, self.name, dtype=self.compute_dtype
        )
        forward_state = backward_state = None
        if initial_state is not None:
            count = len(self.forward_layer.state_size)
            if not isinstance(initial_state, (list, tuple)) or len(
                initial_state
            ) != 2 * count:
                got = (
                    len(initial_state)
                    if isinstance(initial_state, (list, tuple))
                    else 1
                )
                raise ValueError(
                    f"Layer '{self.name}' expects `initial_state` to list "
                    f"{2 * count} tensors (forward states then backward "
                    f"states). Received {got}."
                )
            forward_state = list(initial_state[:count])
            backward_state = list(initial_state[count:])
        forward = self.forward_layer(
            sequences, initial_state=forward_state, mask=mask,
            training=training,
        )
        backward = self.backward_layer(
            sequences, initial_state=backward_state, mask=mask,
            training=training,
        )
        states = []
        if self.return_state:
            forward, *forward_states = forward
            backward, *backward_states = backward
            states = forward_states + backward_states
        if self.return_sequences:
            backward = ops.flip(backward, axis=1)
        # As Keras: the merged output is in this layer's dtype, whatever
        # its directions compute in.
        forward = ops.cast(forward, self.compute_dtype)
        backward = ops.cast(backward, self.compute_dtype)
        output = merge(self.merge_mode, forward, backward)
        if not self.return_state:
            return output
        if self.merge_mode is None:
            return [*output, *states]
        return [output, *states]

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        shape = self.forward_layer.compute_output_shape(sequences_shape)
        state_shapes = []
        if self.return_state:
            shape, *state_shapes = shape
        shape = tuple(shape)
        if self.merge_mode == "concat":
            output_shape = shape[:-1] + (shape[-1] * 2,)
            outputs = [output_shape]
        elif self.merge_mode is None:
            outputs = [shape, shape]
        else:
            outputs = [shape]
        if self.return_state:
            return outputs + state_shapes * 2
        return outputs[0] if len(outputs) == 1 else outputs

    def compute_mask(self, sequences, mask=None):
        output_mask = mask if self.return_sequences else None
        masks = [output_mask] * (2 if self.merge_mode is None else 1)
        if self.return_state:
            masks += [None] * len(self.state_size)
        return masks if len(masks) > 1 else masks[0]

    def reset_states(self):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    reset_state = reset_states   # the Keras 3 name

    @property
    def stateful(self):
        return self.forward_layer.stateful

    @property
    def states(self):
        """Forward then backward carried states (None if not carried)."""
        forward = self.forward_layer.states
        backward = self.backward_layer.states
        if forward is None or backward is None:
            return None
        return [*forward, *backward]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": keras.saving.serialize_keras_object(
                    self.forward_layer
                ),
                "backward_layer": keras.saving.serialize_keras_object(
                    self.backward_layer
                ),
                "merge_mode": self.merge_mode,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(
            config["layer"]
        )
        config["backward_layer"] = keras.saving.deserialize_keras_object(
            config["backward_layer"]
        )
        return cls(**config)
