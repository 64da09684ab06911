"""Keras layers around the recurrent ones, as ONNX nodes.

Each converter takes ``(graph, layer, args, kwargs)``, the layer's call
arguments with every Keras tensor replaced by a ``Value``, and returns the
layer's outputs as a list of ``Value`` (Keras' flattened output order). It
computes what the layer computes at inference (dropout is the identity) and
the mask Keras would attach to its output. Layers are matched by exact
class: a subclass may compute something else.
"""

import keras
import numpy as np
import onnx
from onnx import TensorProto

from kerasrnn.export import recurrent
from kerasrnn.export.graph import Mask
from kerasrnn.export.graph import Value
from kerasrnn.layers.bidirectional import Bidirectional
from kerasrnn.layers.pooling import SequencePooling
from kerasrnn.cells.registry import cell_names
from kerasrnn.cells.registry import cell_spec
from kerasrnn.layers.rnn import RNN
from kerasrnn.layers.stacked import StackedRecurrent

FLOAT, INT32, BOOL = TensorProto.FLOAT, TensorProto.INT32, TensorProto.BOOL
CONVERTERS = {
    RNN: recurrent.convert_rnn,
    Bidirectional: recurrent.convert_bidirectional,
}


def converter(*classes):
    def register(function):
        for klass in classes:
            CONVERTERS[klass] = function
        return function

    return register


def supported_layers():
    """The names of the layers ``to_onnx`` converts: ``CONVERTERS`` and
    the sequence layer of every registered cell a native node runs."""
    stacked = [
        cell_spec(name).layer_class for name in cell_names()
        if cell_spec(name).onnx_operator is not None
        and cell_spec(name).layer_class is not None
    ]
    return sorted(
        f"{klass.__module__.split('.')[0]}.{klass.__name__}"
        for klass in [*CONVERTERS, *stacked]
    )


def convert_layer(graph, layer, args, kwargs):
    function = CONVERTERS.get(type(layer))
    if function is None and isinstance(layer, StackedRecurrent):
        # Any registered cell's layer; recurrent.check_cell refuses a cell
        # that no native node runs.
        function = recurrent.convert_stacked
    if function is None:
        raise ValueError(
            f"Cannot export layer '{layer.name}' ({type(layer).__name__}) to "
            "ONNX: no converter for it. Supported layers: "
            f"{', '.join(supported_layers())} (and nested Functional or "
            "Sequential models of them)."
        )
    return function(graph, layer, args, kwargs)


def _first(args, kwargs, name="inputs"):
    return args[0] if args else kwargs[name]


def _float_layer(layer):
    if layer.compute_dtype != "float32":
        raise ValueError(
            f"Layer '{layer.name}' computes in {layer.compute_dtype}; ONNX "
            "export supports float32 models."
        )


def _weight(variable):
    return keras.ops.convert_to_numpy(variable).astype("float32")


def _plain_weights(layer):
    """Refuses quantized and LoRA layers (other weights than the kernel)."""
    if getattr(layer, "quantization_mode", None) or getattr(
        layer, "lora_enabled", False
    ):
        raise ValueError(
            f"Layer '{layer.name}' is quantized or has LoRA weights; ONNX "
            "export reads plain float32 kernels (use "
            "kerasrnn.export.quantize_onnx on the exported model instead)."
        )


# Activations: Keras name -> function(graph, name, hint) -> name.


def _unary(op_type, **attributes):
    return lambda graph, x, hint: graph.op(op_type, [x], hint, **attributes)


def _times(inner):
    """``x * inner(x)`` (silu, mish, hard_silu)."""
    return lambda graph, x, hint: graph.op(
        "Mul", [x, inner(graph, x, f"{hint}/gate")], hint
    )


def _gelu(graph, x, hint):
    # Keras' default gelu is exact: 0.5 x (1 + erf(x / sqrt(2))).
    scaled = graph.op("Div", [x, graph.scalar(np.sqrt(2.0), "float32")],
                      f"{hint}/scaled")
    erf = graph.op("Erf", [scaled], f"{hint}/erf")
    one_plus = graph.op("Add", [erf, graph.scalar(1.0, "float32")],
                        f"{hint}/one_plus")
    half = graph.op("Mul", [x, graph.scalar(0.5, "float32")], f"{hint}/half")
    return graph.op("Mul", [half, one_plus], hint)


def _mish_gate(graph, x, hint):
    return graph.op(
        "Tanh", [graph.op("Softplus", [x], f"{hint}/softplus")], hint
    )


_HARD_SIGMOID = _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)
ACTIVATIONS = {
    "linear": None,
    "relu": _unary("Relu"),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "softmax": _unary("Softmax", axis=-1),
    "log_softmax": _unary("LogSoftmax", axis=-1),
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu", alpha=1.6732632423543772,
                   gamma=1.0507009873554805),
    "softplus": _unary("Softplus"),
    "softsign": _unary("Softsign"),
    "exponential": _unary("Exp"),
    "hard_sigmoid": _HARD_SIGMOID,
    "leaky_relu": _unary("LeakyRelu", alpha=0.2),
    "relu6": lambda graph, x, hint: graph.op(
        "Min",
        [graph.op("Relu", [x], f"{hint}/relu"), graph.scalar(6.0, "float32")],
        hint,
    ),
    "silu": _times(_unary("Sigmoid")),
    "hard_silu": _times(_HARD_SIGMOID),
    "mish": _times(_mish_gate),
    "gelu": _gelu,
}


def apply_activation(graph, layer, activation, x):
    key = keras.activations.serialize(activation)
    if not isinstance(key, str) or key not in ACTIVATIONS:
        raise ValueError(
            f"Layer '{layer.name}': activation {key!r} has no ONNX "
            f"conversion. Supported: {sorted(ACTIVATIONS)}."
        )
    function = ACTIVATIONS[key]
    if function is None:
        return x
    return function(graph, x, f"{layer.name}/{key}")


@converter(keras.layers.Embedding)
def embedding(graph, layer, args, kwargs):
    tokens = _first(args, kwargs)
    _plain_weights(layer)
    _float_layer(layer)
    if tokens.dtype not in ("int32", "int64"):
        raise ValueError(
            f"Embedding '{layer.name}' receives {tokens.dtype} input; ONNX "
            "export needs integer token ids (keras.Input(dtype='int32'))."
        )
    table = graph.constant(_weight(layer.embeddings), f"{layer.name}/table")
    output = graph.op("Gather", [table, tokens.name], layer.name, axis=0)
    mask = None
    if layer.mask_zero:
        if tokens.input_name is not None:
            origin = f"input '{tokens.input_name}' (token 0 is padding)"
            graph.note_input(
                tokens.input_name,
                padding={"kind": "tokens", "value": 0,
                         "layer": layer.name},
            )
        else:
            origin = f"the tokens of Embedding '{layer.name}'"
        not_padding = graph.op(
            "Not",
            [graph.op("Equal", [tokens.name,
                                graph.scalar(0, tokens.dtype)],
                      f"{layer.name}/is_padding")],
            f"{layer.name}/mask",
        )
        mask = Mask(not_padding, origin)
    if tokens.input_name is not None:
        graph.note_input(tokens.input_name,
                         vocabulary_size=int(layer.input_dim))
    return [Value(output, (*tokens.shape, layer.output_dim), "float32",
                  mask=mask)]


@converter(keras.layers.Masking)
def masking(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    hint = layer.name
    value = graph.scalar(float(layer.mask_value), "float32")
    differs = graph.op(
        "Cast",
        [graph.op("Not", [graph.op("Equal", [x.name, value],
                                   f"{hint}/equal")], f"{hint}/differs")],
        f"{hint}/differs_int", to=INT32,
    )
    # any(x != mask_value, axis=-1), as Keras.
    real = graph.op(
        "Cast",
        [graph.op("ReduceMax", [differs], f"{hint}/any", axes=[-1],
                  keepdims=0)],
        f"{hint}/mask", to=BOOL,
    )
    output = graph.op(
        "Where",
        [graph.unsqueeze(real, [-1], hint), x.name,
         graph.scalar(0.0, "float32")],
        hint,
    )
    if x.input_name is not None:
        origin = (
            f"input '{x.input_name}' (steps equal to {layer.mask_value} are "
            "padding)"
        )
        graph.note_input(
            x.input_name,
            padding={"kind": "steps", "value": float(layer.mask_value),
                     "layer": layer.name},
        )
    else:
        origin = f"Masking '{layer.name}'"
    return [Value(output, x.shape, "float32", mask=Mask(real, origin))]


@converter(keras.layers.Dense)
def dense(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    _plain_weights(layer)
    _float_layer(layer)
    output = graph.op(
        "MatMul",
        [x.name, graph.constant(_weight(layer.kernel), f"{layer.name}/kernel")],
        f"{layer.name}/matmul",
    )
    if layer.bias is not None:
        output = graph.op(
            "Add",
            [output, graph.constant(_weight(layer.bias),
                                    f"{layer.name}/bias")],
            f"{layer.name}/bias_add",
        )
    output = apply_activation(graph, layer, layer.activation, output)
    return [Value(output, (*x.shape[:-1], layer.units), "float32",
                  mask=x.mask)]


@converter(keras.layers.Activation)
def activation(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    output = apply_activation(graph, layer, layer.activation, x.name)
    return [Value(output, x.shape, "float32", mask=x.mask)]


@converter(keras.layers.ReLU)
def relu(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    if layer.threshold != 0:
        raise ValueError(
            f"ReLU '{layer.name}' has threshold={layer.threshold}; ONNX "
            "export supports threshold=0."
        )
    if layer.negative_slope:
        output = graph.op("LeakyRelu", [x.name], layer.name,
                          alpha=float(layer.negative_slope))
    else:
        output = graph.op("Relu", [x.name], layer.name)
    if layer.max_value is not None:
        output = graph.op(
            "Min", [output, graph.scalar(float(layer.max_value), "float32")],
            f"{layer.name}/max_value",
        )
    return [Value(output, x.shape, "float32", mask=x.mask)]


@converter(keras.layers.LeakyReLU)
def leaky_relu(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    output = graph.op("LeakyRelu", [x.name], layer.name,
                      alpha=float(layer.negative_slope))
    return [Value(output, x.shape, "float32", mask=x.mask)]


@converter(keras.layers.Softmax)
def softmax(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    if kwargs.get("mask") is not None:
        raise ValueError(
            f"Softmax '{layer.name}' receives a mask; ONNX export supports "
            "the Softmax layer on unmasked inputs (use Dense(..., "
            "activation='softmax') on masked sequences)."
        )
    if not isinstance(layer.axis, int):
        raise ValueError(
            f"Softmax '{layer.name}' has axis={layer.axis}; ONNX export "
            "supports one axis."
        )
    output = graph.op("Softmax", [x.name], layer.name, axis=layer.axis)
    return [Value(output, x.shape, "float32")]


@converter(
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
def identity(graph, layer, args, kwargs):
    # Inference: these layers return their input unchanged.
    return [_first(args, kwargs)]


@converter(keras.layers.LayerNormalization)
def layer_normalization(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    axes = [a % len(x.shape) for a in layer.axis]
    if axes != [len(x.shape) - 1] or getattr(layer, "rms_scaling", False):
        raise ValueError(
            f"LayerNormalization '{layer.name}' normalises axis "
            f"{layer.axis} (rms_scaling={getattr(layer, 'rms_scaling', 0)})"
            "; ONNX export supports the last axis without rms_scaling."
        )
    size = x.shape[-1]
    scale = _weight(layer.gamma) if layer.scale else np.ones(size, "float32")
    inputs = [x.name, graph.constant(scale, f"{layer.name}/gamma")]
    if layer.center:
        inputs.append(graph.constant(_weight(layer.beta), f"{layer.name}/beta"))
    output = graph.op(
        "LayerNormalization", inputs, layer.name, axis=-1,
        epsilon=float(layer.epsilon),
    )
    return [Value(output, x.shape, "float32", mask=x.mask)]


@converter(keras.layers.BatchNormalization)
def batch_normalization(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    if layer.axis % len(x.shape) != len(x.shape) - 1:
        raise ValueError(
            f"BatchNormalization '{layer.name}' has axis={layer.axis}; ONNX "
            "export supports the last axis."
        )
    # Inference: x * g / sqrt(var + eps) + (beta - mean * g / sqrt(...)).
    size = x.shape[-1]
    gamma = _weight(layer.gamma) if layer.scale else np.ones(size, "float32")
    beta = _weight(layer.beta) if layer.center else np.zeros(size, "float32")
    inverse = gamma / np.sqrt(_weight(layer.moving_variance) + layer.epsilon)
    offset = beta - _weight(layer.moving_mean) * inverse
    output = graph.op(
        "Add",
        [graph.op("Mul", [x.name, graph.constant(
            inverse.astype("float32"), f"{layer.name}/scale")],
            f"{layer.name}/mul"),
         graph.constant(offset.astype("float32"), f"{layer.name}/offset")],
        layer.name,
    )
    return [Value(output, x.shape, "float32", mask=x.mask)]


def _merge_inputs(layer, args, kwargs):
    inputs = list(_first(args, kwargs))
    ranks = {len(value.shape) for value in inputs}
    if len(ranks) != 1:
        raise ValueError(
            f"Layer '{layer.name}' merges inputs of different ranks "
            f"{[value.shape for value in inputs]}; ONNX export supports "
            "inputs of one rank."
        )
    return inputs


def _or_masks(graph, layer, masks):
    """Keras' merged mask: None if any input has none, else their OR."""
    if any(mask is None for mask in masks):
        return None
    if len({id(mask) for mask in masks}) == 1:
        return masks[0]
    name = masks[0].name
    for mask in masks[1:]:
        name = graph.op("Or", [name, mask.name], f"{layer.name}/mask")
    return Mask(name, f"the merged mask of '{layer.name}'")


def _all_real(graph, value, layer):
    """An all-True ``(B, T)`` mask for ``value``."""
    shape = graph.op("Shape", [value.name], f"{layer.name}/shape", end=2)
    name = graph.op(
        "ConstantOfShape", [shape], f"{layer.name}/all_real",
        value=onnx.helper.make_tensor("true", BOOL, [1], [True]),
    )
    return Mask(name, f"the merged mask of '{layer.name}'")


@converter(keras.layers.Concatenate)
def concatenate(graph, layer, args, kwargs):
    inputs = _merge_inputs(layer, args, kwargs)
    rank = len(inputs[0].shape)
    masks = [value.mask for value in inputs]
    mask = None
    if any(m is not None for m in masks):
        if layer.axis % rank != rank - 1:
            raise ValueError(
                f"Concatenate '{layer.name}' joins masked sequences along "
                f"axis {layer.axis}; ONNX export supports masked inputs "
                "joined along the last axis."
            )
        # Keras: an unmasked input counts as all real; the masks are ORed.
        masks = [
            _all_real(graph, value, layer) if m is None else m
            for value, m in zip(inputs, masks)
        ]
        mask = _or_masks(graph, layer, masks)
    output = graph.op(
        "Concat", [value.name for value in inputs], layer.name,
        axis=layer.axis,
    )
    shape = list(inputs[0].shape)
    sizes = [value.shape[layer.axis] for value in inputs]
    shape[layer.axis] = None if None in sizes else sum(sizes)
    return [Value(output, tuple(shape), "float32", mask=mask)]


def _elementwise(op_type, average=False):
    def convert(graph, layer, args, kwargs):
        inputs = _merge_inputs(layer, args, kwargs)
        output = inputs[0].name
        for value in inputs[1:]:
            output = graph.op(op_type, [output, value.name], layer.name)
        if average:
            output = graph.op(
                "Div",
                [output, graph.scalar(float(len(inputs)), "float32")],
                f"{layer.name}/average",
            )
        mask = _or_masks(graph, layer, [value.mask for value in inputs])
        return [Value(output, inputs[0].shape, "float32", mask=mask)]

    return convert


def _step_mask(graph, mask, hint):
    """A ``(B, T)`` mask as ``(B, T, 1)``, to select between sequences."""
    return graph.unsqueeze(mask.name, [2], hint)


@converter(keras.layers.Multiply)
def multiply(graph, layer, args, kwargs):
    # Keras: masked steps count as 1 in the product, and the output is 0
    # where no input is real when every input is masked.
    inputs = _merge_inputs(layer, args, kwargs)
    hint = layer.name
    factors = [
        value.name if value.mask is None else graph.op(
            "Where",
            [_step_mask(graph, value.mask, hint), value.name,
             graph.scalar(1.0, "float32")],
            f"{hint}/neutral",
        )
        for value in inputs
    ]
    output = factors[0]
    for factor in factors[1:]:
        output = graph.op("Mul", [output, factor], hint)
    mask = _or_masks(graph, layer, [value.mask for value in inputs])
    if mask is not None:
        output = graph.op(
            "Where",
            [_step_mask(graph, mask, hint), output,
             graph.scalar(0.0, "float32")],
            f"{hint}/masked",
        )
    return [Value(output, inputs[0].shape, "float32", mask=mask)]


def _extremum(op_type):
    def convert(graph, layer, args, kwargs):
        # Keras: a masked step takes the other operand's value, so padding
        # never wins (base_merge._apply_merge_op_and_or_mask).
        inputs = _merge_inputs(layer, args, kwargs)
        hint = layer.name
        output, output_mask = inputs[0].name, inputs[0].mask
        for value in inputs[1:]:
            x, mask = value.name, value.mask
            if mask is not None:
                x = graph.op("Where", [_step_mask(graph, mask, hint), x,
                                       output], f"{hint}/fill")
            if output_mask is not None:
                output = graph.op(
                    "Where", [_step_mask(graph, output_mask, hint), output,
                              x], f"{hint}/fill")
            output_mask = None if mask is None or output_mask is None else (
                _or_masks(graph, layer, [output_mask, mask])
            )
            output = graph.op(op_type, [output, x], hint)
        return [Value(output, inputs[0].shape, "float32", mask=output_mask)]

    return convert


converter(keras.layers.Add)(_elementwise("Add"))
converter(keras.layers.Subtract)(_elementwise("Sub"))
converter(keras.layers.Average)(_elementwise("Add", average=True))
converter(keras.layers.Maximum)(_extremum("Max"))
converter(keras.layers.Minimum)(_extremum("Min"))


def _check_pooling(layer, x):
    if len(x.shape) != 3 or getattr(layer, "keepdims", False) or getattr(
        layer, "data_format", "channels_last"
    ) != "channels_last":
        raise ValueError(
            f"Layer '{layer.name}': ONNX export supports pooling "
            "(batch, time, features) inputs, channels_last, "
            f"keepdims=False. Received: shape={x.shape}"
        )


def _mask_argument(graph, layer, kwargs):
    """The mask a call receives: the one Keras passes along with the input
    (a ``Mask``), one the model passes (a ``Value``), or None."""
    mask = kwargs.get("mask")
    if isinstance(mask, Value):
        return graph.mask_of(mask, f"the `mask` passed to '{layer.name}'")
    if mask is not None and not isinstance(mask, Mask):
        raise TypeError(
            f"Layer '{layer.name}' is called with a constant `mask`; export "
            "supports masks computed in the model or passed as model inputs."
        )
    return mask


def _float_mask(graph, mask, hint):
    """The mask as float ``[B, T, 1]``."""
    return graph.op(
        "Cast", [graph.unsqueeze(mask.name, [2], hint)], f"{hint}/weights",
        to=FLOAT,
    )


@converter(keras.layers.GlobalAveragePooling1D)
def global_average_pooling(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    _check_pooling(layer, x)
    hint = layer.name
    mask = _mask_argument(graph, layer, kwargs)
    if mask is None:
        output = graph.op("ReduceMean", [x.name], hint, axes=[1], keepdims=0)
    else:
        # Keras: sum(where(mask, x, 0)) / sum(mask) (NaN for empty rows).
        weights = _float_mask(graph, mask, hint)
        kept = graph.op(
            "Where",
            [graph.unsqueeze(mask.name, [2], hint), x.name,
             graph.scalar(0.0, "float32")],
            f"{hint}/kept",
        )
        output = graph.op(
            "Div",
            [graph.op("ReduceSum", [kept, graph.ints(1)], f"{hint}/sum",
                      keepdims=0),
             graph.op("ReduceSum", [weights, graph.ints(1)],
                      f"{hint}/count", keepdims=0)],
            hint,
        )
    return [Value(output, (x.shape[0], x.shape[2]), "float32")]


@converter(keras.layers.GlobalMaxPooling1D)
def global_max_pooling(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    _check_pooling(layer, x)
    # Keras' GlobalMaxPooling1D ignores masks: padding takes part.
    output = graph.op("ReduceMax", [x.name], layer.name, axes=[1],
                      keepdims=0)
    return [Value(output, (x.shape[0], x.shape[2]), "float32")]


@converter(SequencePooling)
def sequence_pooling(graph, layer, args, kwargs):
    x = _first(args, kwargs, "sequences")
    hint = layer.name
    mask = _mask_argument(graph, layer, kwargs)
    shape = (x.shape[0], x.shape[2])
    if layer.mode == "last":
        output = recurrent.last_valid_step(graph, x.name, mask, hint)
        return [Value(output, shape, "float32")]
    if mask is None:
        op_type = "ReduceMean" if layer.mode == "mean" else "ReduceMax"
        output = graph.op(op_type, [x.name], hint, axes=[1], keepdims=0)
        return [Value(output, shape, "float32")]
    weights = _float_mask(graph, mask, hint)
    count = graph.op("ReduceSum", [weights, graph.ints(1)], f"{hint}/count",
                     keepdims=0)
    if layer.mode == "mean":
        total = graph.op(
            "ReduceSum",
            [graph.op("Mul", [x.name, weights], f"{hint}/weighted"),
             graph.ints(1)],
            f"{hint}/sum", keepdims=0,
        )
        output = graph.op(
            "Div",
            [total, graph.op("Max", [count, graph.scalar(1.0, "float32")],
                             f"{hint}/count_1")],
            hint,
        )
        return [Value(output, shape, "float32")]
    # max: as kerasrnn, padding takes min(x) - 1; empty rows give zeros.
    lowest = graph.op(
        "Sub",
        [graph.op("ReduceMin", [x.name], f"{hint}/min", keepdims=0),
         graph.scalar(1.0, "float32")],
        f"{hint}/lowest",
    )
    pooled = graph.op(
        "ReduceMax",
        [graph.op("Where", [graph.unsqueeze(mask.name, [2], hint), x.name,
                            lowest], f"{hint}/kept")],
        f"{hint}/max", axes=[1], keepdims=0,
    )
    has_steps = graph.op(
        "Greater", [count, graph.scalar(0.0, "float32")], f"{hint}/has_steps"
    )
    output = graph.op(
        "Where", [has_steps, pooled, graph.scalar(0.0, "float32")], hint
    )
    return [Value(output, shape, "float32")]


# --- images (channels_last): Keras NHWC, ONNX Conv/Pool on NCHW ---------------


def _channels_last(layer):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"Layer '{layer.name}' has data_format={layer.data_format!r}; "
            "ONNX export supports channels_last images."
        )


def _padding(layer):
    if layer.padding not in ("valid", "same"):
        raise ValueError(
            f"Layer '{layer.name}' has padding={layer.padding!r}; ONNX "
            "export supports 'valid' and 'same'."
        )
    # TensorFlow's "same" puts the odd pixel after, as SAME_UPPER.
    return "SAME_UPPER" if layer.padding == "same" else "VALID"


def _nchw(graph, layer, x, op_type, inputs, **attributes):
    """``op_type`` on ``x`` (NHWC) transposed to NCHW and back."""
    hint = layer.name
    nchw = graph.transpose(x.name, (0, 3, 1, 2), f"{hint}/nchw")
    output = graph.op(op_type, [nchw, *inputs], f"{hint}/{op_type.lower()}",
                      **attributes)
    return graph.transpose(output, (0, 2, 3, 1), f"{hint}/nhwc")


def _output_shape(layer, x):
    return tuple(layer.compute_output_shape(tuple(x.shape)))


@converter(keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
def conv2d(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    _plain_weights(layer)
    _float_layer(layer)
    _channels_last(layer)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = _weight(layer.kernel)            # (kh, kw, C, multiplier)
        height, width, channels, multiplier = kernel.shape
        # Output channel c * multiplier + m reads input channel c.
        onnx_kernel = kernel.reshape(height, width, channels * multiplier)
        onnx_kernel = onnx_kernel.transpose(2, 0, 1)[:, None]
        groups = channels
    else:
        kernel = _weight(layer.kernel)            # (kh, kw, C / groups, F)
        onnx_kernel = kernel.transpose(3, 2, 0, 1)
        groups = layer.groups
    inputs = [graph.constant(np.ascontiguousarray(onnx_kernel),
                             f"{layer.name}/kernel")]
    if layer.use_bias:
        inputs.append(graph.constant(_weight(layer.bias),
                                     f"{layer.name}/bias"))
    output = _nchw(
        graph, layer, x, "Conv", inputs,
        kernel_shape=list(kernel.shape[:2]),
        strides=list(layer.strides), dilations=list(layer.dilation_rate),
        group=int(groups), auto_pad=_padding(layer),
    )
    output = apply_activation(graph, layer, layer.activation, output)
    return [Value(output, _output_shape(layer, x), "float32")]


@converter(keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
def pooling2d(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    _channels_last(layer)
    op_type = ("MaxPool" if isinstance(layer, keras.layers.MaxPooling2D)
               else "AveragePool")
    # Keras' average over "same" padding counts real pixels only, as
    # ONNX's default count_include_pad=0.
    output = _nchw(graph, layer, x, op_type, [],
                   kernel_shape=list(layer.pool_size),
                   strides=list(layer.strides), auto_pad=_padding(layer))
    return [Value(output, _output_shape(layer, x), "float32")]


@converter(keras.layers.ZeroPadding2D)
def zero_padding2d(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    _channels_last(layer)
    (top, bottom), (left, right) = layer.padding
    output = graph.op(
        "Pad", [x.name, graph.ints(0, top, left, 0, 0, bottom, right, 0)],
        layer.name,
    )
    return [Value(output, _output_shape(layer, x), "float32")]


@converter(keras.layers.Rescaling)
def rescaling(graph, layer, args, kwargs):
    x = _first(args, kwargs)
    scale = np.asarray(layer.scale, "float32")
    offset = np.asarray(layer.offset, "float32")
    output = graph.op(
        "Add",
        [graph.op("Mul", [x.name, graph.constant(scale,
                                                 f"{layer.name}/scale")],
                  f"{layer.name}/mul"),
         graph.constant(offset, f"{layer.name}/offset")],
        layer.name,
    )
    return [Value(output, x.shape, "float32", mask=x.mask)]
