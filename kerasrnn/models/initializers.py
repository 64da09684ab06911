"""The initialisers of the sequence-to-sequence models, in one place.

``Seq2Seq`` and ``RecurrentDecoder`` take six initialiser arguments, each
None by default, meaning the value in ``DEFAULTS``:

    embeddings_initializer   both embeddings               N(0, 1)
    kernel_initializer       input kernels W of the cells  glorot_uniform
    recurrent_initializer    recurrent kernels U           the cell's own
                                                           (orthogonal;
                                                           IndRNN U(0, 1))
    bias_initializer         cell, attention, output bias  zeros
    attention_initializer    attention kernels             U(±1/√fan_in)
    output_initializer       attentional, bridge, output   U(±1/√fan_in)

Two are not Keras' defaults, each measured on English-French with
``benchmarks/seq2seq_vs_torch.py`` (figures in the README):

- the embeddings: Keras' ``Embedding`` default, uniform in ±0.05, makes an
  Adam-trained encoder-decoder learn several times more slowly (greedy
  BLEU 5.6 instead of 23.7 after 4 epochs): the embedded tokens are about
  30 times smaller than the state and the first epochs go into growing
  them. N(0, 1) is PyTorch's ``nn.Embedding`` default.
- the attention and output kernels: uniform in ±1/√fan_in (PyTorch's
  ``nn.Linear`` default, ``VarianceScaling(1/3, "fan_in", "uniform")``)
  instead of Glorot: training loss 1.54 instead of 1.66 after 4 epochs,
  BLEU 25.3 instead of 23.7. (The same for the cells' kernels did not
  help: they keep Keras' Glorot/orthogonal.)
"""

import keras

from kerasrnn.cells.base import fresh_initializer

# PyTorch's nn.Linear weights: U(-1/√fan_in, 1/√fan_in).
TORCH_LINEAR = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"},
}
DEFAULTS = {
    "embeddings_initializer": {
        "class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 1.0}
    },
    "kernel_initializer": "glorot_uniform",
    # None: the cell's own default (a cell knows its recurrence's shape).
    "recurrent_initializer": None,
    "bias_initializer": "zeros",
    "attention_initializer": TORCH_LINEAR,
    "output_initializer": TORCH_LINEAR,
}


def resolve(arguments):
    """``{argument: keras Initializer}`` for the arguments in ``DEFAULTS``,
    read from ``arguments`` (a constructor's ``locals()``; None takes the
    default); an unknown identifier is an error naming its argument.

    Hand each weight its own copy (``fresh``): an unseeded initializer
    object draws its seed once, so one object shared by two weights would
    start them equal (``kerasrnn.cells.base.fresh_initializer``)."""
    resolved = {}
    for name, default in DEFAULTS.items():
        value = arguments.get(name)
        try:
            resolved[name] = keras.initializers.get(
                default if value is None else value
            )
        except ValueError as error:
            raise ValueError(
                f"`{name}` must be a Keras initializer (a name such as "
                "'glorot_uniform', a config dict or an Initializer). "
                f"Received: {name}={value!r}"
            ) from error
    return resolved


def fresh(resolved, *names):
    """``{name: a new copy of that initializer}`` for ``names`` (default:
    all), to give to one layer."""
    return {
        name: fresh_initializer(resolved[name]) for name in names or resolved
    }


def fresh_one(resolved, name):
    """A new copy of initializer ``name``, for one weight."""
    return fresh_initializer(resolved[name])


def cell_arguments(resolved):
    """The cell constructor arguments among ``resolved``, fresh copies;
    one left at None keeps the cell's own default."""
    arguments = fresh(resolved, "kernel_initializer",
                      "recurrent_initializer", "bias_initializer")
    return {name: value for name, value in arguments.items()
            if value is not None}


def serialize(resolved):
    """``resolved`` for ``get_config``: new config dicts on every call, as
    Keras' layers serialise their initializers."""
    return {
        name: keras.initializers.serialize(value)
        for name, value in resolved.items()
    }
