"""The initialisers of the sequence-to-sequence models, in one place.

``Seq2Seq`` and ``RecurrentDecoder`` take six initialiser arguments, each
None by default, meaning the value in ``DEFAULTS``:

    embeddings_initializer   both embeddings               N(0, 1)
    kernel_initializer       input kernels W of the cells  glorot_uniform
    recurrent_initializer    recurrent kernels U           orthogonal
    bias_initializer         cell, attention, output bias  zeros
    attention_initializer    attention kernels             glorot_uniform
    output_initializer       attentional, bridge, output   glorot_uniform

The embedding default is not Keras' ``Embedding`` default (uniform in
±0.05): with it an Adam-trained encoder-decoder learns several times more
slowly, because the embedded tokens are about 30 times smaller than the
recurrent state and the model spends its first epochs growing them
(``benchmarks/seq2seq_vs_torch.py``; figures in the README). N(0, 1) is
PyTorch's ``nn.Embedding`` default.
"""

import keras

DEFAULTS = {
    "embeddings_initializer": {
        "class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 1.0}
    },
    "kernel_initializer": "glorot_uniform",
    "recurrent_initializer": "orthogonal",
    "bias_initializer": "zeros",
    "attention_initializer": "glorot_uniform",
    "output_initializer": "glorot_uniform",
}


def resolve(**given):
    """``{argument: serialised initializer}`` for the arguments in
    ``DEFAULTS`` (None takes the default); an unknown identifier is an
    error naming its argument.

    Configs, not objects: every layer given one builds its own initializer
    from it, so no two weights share a drawn seed (see
    ``kerasrnn.cells.base.fresh_initializer``)."""
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"Unknown initializer arguments: {sorted(unknown)}")
    resolved = {}
    for name, default in DEFAULTS.items():
        value = given.get(name)
        try:
            resolved[name] = keras.initializers.serialize(
                keras.initializers.get(default if value is None else value)
            )
        except ValueError as error:
            raise ValueError(
                f"`{name}` must be a Keras initializer (a name such as "
                "'glorot_uniform', a config dict or an Initializer). "
                f"Received: {name}={value!r}"
            ) from error
    return resolved


def cell_arguments(resolved):
    """The cell constructor arguments among ``resolved``."""
    return {
        name: resolved[name]
        for name in ("kernel_initializer", "recurrent_initializer",
                     "bias_initializer")
    }
