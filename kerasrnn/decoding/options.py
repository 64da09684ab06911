"""The options each search takes, checked before anything is traced.

``split_options(method, max_length, options)`` checks every option
eagerly, with a message naming it, and splits them in two:

- ``static``: options that change the graph's structure or shapes
  (``beam_width``, ``num_return``, ``num_samples``); a traced search is
  kept per distinct value;
- ``dynamic``: per-call numbers (``max_length``, ``min_length``,
  ``temperature``, ``top_k``, ``top_p``, ``seed``,
  ``length_penalty_weight``); on TensorFlow as scalar tensors, so one
  traced graph serves every value (elsewhere, where nothing is traced, as
  the Python numbers).

``top_k``, ``top_p`` and ``seed`` left at None are absent from both (the
search then skips that filter, or draws a seed).
"""

import inspect

import keras

from kerasrnn.decoding.beam import beam_search
from kerasrnn.decoding.beam import check_length_penalty
from kerasrnn.decoding.checks import check_int
from kerasrnn.decoding.checks import check_lengths
from kerasrnn.decoding.greedy import greedy_search
from kerasrnn.decoding.greedy import sample
from kerasrnn.decoding.logits import check_temperature
from kerasrnn.decoding.logits import check_top_k
from kerasrnn.decoding.logits import check_top_p

SEARCHES = {"greedy": greedy_search, "sample": sample, "beam": beam_search}
# What the caller of a search (a model) always passes itself.
_MODEL_ARGUMENTS = {"step_fn", "start_ids", "initial_state", "end_id",
                    "max_length", "pad_id", "forbidden_ids"}
# Every option of each search, with its default, read off its signature.
OPTIONS = {
    method: {
        name: parameter.default
        for name, parameter in inspect.signature(search).parameters.items()
        if name not in _MODEL_ARGUMENTS
    }
    for method, search in SEARCHES.items()
}
STATIC = ("beam_width", "num_return", "num_samples")
DTYPES = {"max_length": "int32", "min_length": "int32", "top_k": "int32",
          "seed": "int32", "temperature": "float32", "top_p": "float32",
          "length_penalty_weight": "float32"}


def split_options(method, max_length, options):
    """``(static, dynamic)`` for ``method`` (see the module doc); an
    unknown method or option, or a bad value, is an error naming it."""
    if method not in OPTIONS:
        raise ValueError(
            f"`method` must be one of {sorted(OPTIONS)}. Received: "
            f"method={method!r}"
        )
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        raise ValueError(
            f"method={method!r} takes the options "
            f"{sorted(OPTIONS[method])}. Received unknown options: "
            f"{unknown}"
        )
    values = {**OPTIONS[method], **options, "max_length": max_length}
    check_lengths(values["max_length"], values["min_length"])
    if method == "sample":
        check_temperature(values["temperature"])
        check_top_k(values["top_k"])
        check_top_p(values["top_p"])
        check_int("seed", values["seed"], -(2**31), allow_none=True)
        check_int("num_samples", values["num_samples"], 1)
    if method == "beam":
        check_int("beam_width", values["beam_width"], 1)
        check_length_penalty(values["length_penalty_weight"])
        check_int("num_return", values["num_return"], 1)
        if values["num_return"] > values["beam_width"]:
            raise ValueError(
                "`num_return` must not exceed `beam_width`. Received: "
                f"num_return={values['num_return']}, "
                f"beam_width={values['beam_width']}"
            )
    static = {k: v for k, v in values.items() if k in STATIC}
    dynamic = {
        k: v for k, v in values.items() if k not in STATIC and v is not None
    }
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        dynamic = {k: tf.constant(v, DTYPES[k]) for k, v in dynamic.items()}
    return static, dynamic
