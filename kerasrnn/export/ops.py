"""Keras ops (``keras.ops.*`` nodes of a functional graph) as ONNX nodes.

A model built in Python carries its masks implicitly; the same model loaded
from a ``.keras`` file computes them with explicit ops (``not_equal``,
``any``, ``expand_dims``, ``logical_or``...), and a model may compute a
``mask=`` argument itself. These converters cover the ops that build masks.
Each takes ``(graph, operation, args, kwargs, keras_outputs)`` and returns
``Value``s with the Keras outputs' shapes and dtypes.
"""

import keras
import numpy as np
from onnx import TensorProto
from onnx import helper

from kerasrnn.export.graph import DTYPES
from kerasrnn.export.graph import Value

INT32, BOOL = TensorProto.INT32, TensorProto.BOOL


def convert_operation(graph, operation, args, kwargs, keras_outputs):
    converter = OPS.get(type(operation).__name__)
    if converter is None or not type(operation).__module__.startswith(
        "keras."
    ):
        raise ValueError(
            f"Cannot export the op '{operation.name}' "
            f"({type(operation).__name__}) to ONNX. Supported keras.ops in "
            f"a model's graph (mask computations): {sorted(OPS)}."
        )
    (keras_output,) = keras_outputs
    dtype = keras.backend.standardize_dtype(keras_output.dtype)
    if dtype not in DTYPES:
        raise ValueError(
            f"The op '{operation.name}' produces {dtype}; ONNX export "
            f"supports {sorted(DTYPES)}."
        )
    name = converter(graph, operation, args, dtype)
    return [Value(name, tuple(keras_output.shape), dtype)]


def _operand(graph, value, dtype):
    """A Value's name, or a Python/NumPy scalar as a constant."""
    if isinstance(value, Value):
        return value.name
    return graph.scalar(np.array(value).item(), dtype)


def _comparison(op_type, negate=False):
    def convert(graph, operation, args, dtype):
        x1, x2 = args
        operand_dtype = (x1 if isinstance(x1, Value) else x2).dtype
        name = graph.op(
            op_type,
            [_operand(graph, x1, operand_dtype),
             _operand(graph, x2, operand_dtype)],
            operation.name,
        )
        if negate:
            name = graph.op("Not", [name], f"{operation.name}/not")
        return name

    return convert


def _reduction(op_type):
    """``any`` (max) / ``all`` (min) over booleans, through int32."""
    def convert(graph, operation, args, dtype):
        (x,) = args
        as_int = graph.op("Cast", [x.name], f"{operation.name}/int", to=INT32)
        attributes = {"keepdims": int(operation.keepdims)}
        if operation.axis is not None:
            attributes["axes"] = list(operation.axis)
        reduced = graph.op(op_type, [as_int], f"{operation.name}/reduce",
                           **attributes)
        return graph.op("Cast", [reduced], operation.name, to=BOOL)

    return convert


def _axes(axis):
    return list(axis) if isinstance(axis, (list, tuple)) else [axis]


def _expand_dims(graph, operation, args, dtype):
    return graph.unsqueeze(args[0].name, _axes(operation.axis),
                           operation.name)


def _squeeze(graph, operation, args, dtype):
    if operation.axis is None:
        return graph.op("Squeeze", [args[0].name], operation.name)
    return graph.squeeze(args[0].name, _axes(operation.axis), operation.name)


def _filled(value):
    def convert(graph, operation, args, dtype):
        shape = graph.op("Shape", [args[0].name], f"{operation.name}/shape")
        fill = np.array([value], dtype=dtype)
        return graph.op(
            "ConstantOfShape", [shape], operation.name,
            value=helper.make_tensor("value", DTYPES[dtype], [1],
                                     fill.tolist()),
        )

    return convert


def _logical(op_type):
    def convert(graph, operation, args, dtype):
        return graph.op(op_type, [a.name for a in args], operation.name)

    return convert


def _concatenate(graph, operation, args, dtype):
    (values,) = args
    return graph.op("Concat", [v.name for v in values], operation.name,
                    axis=operation.axis)


def _cast(graph, operation, args, dtype):
    return graph.op("Cast", [args[0].name], operation.name,
                    to=DTYPES[dtype])


OPS = {
    "NotEqual": _comparison("Equal", negate=True),
    "Equal": _comparison("Equal"),
    "Any": _reduction("ReduceMax"),
    "All": _reduction("ReduceMin"),
    "ExpandDims": _expand_dims,
    "Squeeze": _squeeze,
    "ZerosLike": _filled(0),
    "OnesLike": _filled(1),
    "LogicalOr": _logical("Or"),
    "LogicalAnd": _logical("And"),
    "LogicalNot": _logical("Not"),
    "Concatenate": _concatenate,
    "Cast": _cast,
}
