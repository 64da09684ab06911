"""A small ONNX graph builder: unique names, nodes, constants, masks, and
the checked ``ModelProto`` of a finished graph (``make_model``).

The converters in ``kerasrnn.export.layers`` and ``kerasrnn.export.recurrent``
write their nodes through ``GraphBuilder``; ``Value`` is what flows between
them (an ONNX tensor name plus the Keras shape, dtype and mask) and
``Mask`` a boolean ``(batch, time)`` tensor with the sequence lengths derived
from it on first use.
"""

import collections
import dataclasses

import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper

OPSET = 17
# onnx 1.23 writes IR 14 by default; onnxruntime 1.31 reads at most IR 13.
IR_VERSION = 8
DTYPES = {
    "float32": onnx.TensorProto.FLOAT,
    "int32": onnx.TensorProto.INT32,
    "int64": onnx.TensorProto.INT64,
    "bool": onnx.TensorProto.BOOL,
}
# Export-time check: |keras - onnxruntime| <= ATOL + RTOL * |keras|.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
# Slice bounds that reach the end of an axis of any length.
INT64_MIN = np.iinfo(np.int64).min
INT64_MAX = np.iinfo(np.int64).max


@dataclasses.dataclass(eq=False)
class Mask:
    """A boolean ``(batch, time)`` mask, True at real steps.

    ``origin`` says where it comes from, for error messages. ``lengths``
    and ``time_major`` are filled in by ``GraphBuilder`` when a layer first
    needs them.
    """

    name: str
    origin: str
    lengths: str = None
    time_major: str = None


@dataclasses.dataclass(eq=False)
class Value:
    """One Keras tensor in the ONNX graph.

    ``name`` is the ONNX tensor in Keras' (batch-major) layout; ``shape`` the
    Keras static shape (None where unknown); ``time_major`` optionally names
    the same sequence as ``[time, batch, features]`` so that consecutive
    recurrent layers skip a transpose pair.
    """

    name: str
    shape: tuple
    dtype: str
    mask: Mask = None
    time_major: str = None
    # The model input this is, if it is one (for the manifest's notes).
    input_name: str = None
    # This tensor as a Mask, when a layer received it as `mask=`.
    as_mask: Mask = None


class GraphBuilder:
    """Collects nodes and initializers; every name it returns is unique."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        # For the manifest: one entry per recurrent node, notes per input.
        self.recurrent_nodes = []
        self.input_notes = {}
        self._names = set()
        self._constants = {}

    def note_input(self, input_name, **notes):
        """Records what a model input is (padding, vocabulary size)."""
        self.input_notes.setdefault(input_name, {}).update(notes)

    def fresh(self, hint):
        """A tensor or node name based on ``hint`` that is not used yet."""
        name, index = hint, 1
        while name in self._names:
            name = f"{hint}_{index}"
            index += 1
        self._names.add(name)
        return name

    def reserve(self, name):
        """Marks a graph input or output name as taken."""
        if name in self._names:
            raise ValueError(f"The ONNX name '{name}' is used twice.")
        self._names.add(name)

    def op(self, op_type, inputs, hint, outputs=1, node_name=None,
           **attributes):
        """Adds one node; returns its output name, or a list when
        ``outputs`` is a list of hints (an empty hint = unused output).
        The node is named ``node_name`` or after ``hint``."""
        if isinstance(outputs, int):
            names = [self.fresh(hint) for _ in range(outputs)]
        else:
            names = [self.fresh(f"{hint}/{o}") if o else "" for o in outputs]
        while inputs and inputs[-1] == "":
            inputs = inputs[:-1]
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), names,
                name=self.fresh(node_name or hint),
                **attributes,
            )
        )
        return names[0] if outputs == 1 else names

    def constant(self, array, hint):
        """An initializer holding ``array`` (as it is: dtype included)."""
        # Not np.ascontiguousarray: it turns a 0-D array into 1-D.
        array = np.array(array, order="C")
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, *values):
        """A shared int64 1-D constant (axes, shapes, slice bounds)."""
        key = ("int64", values)
        if key not in self._constants:
            self._constants[key] = self.constant(
                np.array(values, dtype=np.int64), "const/ints"
            )
        return self._constants[key]

    def scalar(self, value, dtype):
        """A shared 0-D constant."""
        key = (dtype, value)
        if key not in self._constants:
            self._constants[key] = self.constant(
                np.array(value, dtype=dtype), f"const/{dtype}"
            )
        return self._constants[key]

    # Shape helpers used by several converters.

    def transpose(self, name, perm, hint):
        return self.op("Transpose", [name], hint, perm=list(perm))

    def unsqueeze(self, name, axes, hint):
        return self.op("Unsqueeze", [name, self.ints(*axes)], hint)

    def squeeze(self, name, axes, hint):
        return self.op("Squeeze", [name, self.ints(*axes)], hint)

    def flip(self, name, axis, hint):
        """Reverses ``name`` along ``axis`` (any length)."""
        return self.op(
            "Slice",
            [name, self.ints(-1), self.ints(INT64_MIN), self.ints(axis),
             self.ints(-1)],
            hint,
        )

    def time_major(self, value, hint):
        """``value`` (``(B, T, F)``) as ``[T, B, F]``."""
        if value.time_major is None:
            value.time_major = self.transpose(
                value.name, (1, 0, 2), f"{hint}/time_major"
            )
        return value.time_major

    # Masks.

    def lengths(self, mask, hint):
        """``sequence_lens`` of a right-padded mask, int32 ``[B]``.

        The lengths are the count of True steps. A mask that is not
        right-padded (a padding step followed by a real one) has no
        lengths: the graph then fails at run time in a node whose name says
        so, instead of returning numbers that differ from Keras'. The check
        costs five small nodes: ``m[:, 1:] - m[:, :-1]`` is 1 exactly where
        padding is followed by a real step, and its maximum (at least 0)
        indexes a one-element tensor.
        """
        if mask.lengths is not None:
            return mask.lengths
        as_int = self.op("Cast", [mask.name], f"{hint}/mask_int", to=_INT32)
        counted = self.op(
            "ReduceSum", [as_int, self.ints(1)], f"{hint}/lengths",
            keepdims=0,
        )
        rises = self.op(
            "Sub",
            [self.op("Slice", [as_int, self.ints(1), self.ints(INT64_MAX),
                               self.ints(1)], f"{hint}/next"),
             self.op("Slice", [as_int, self.ints(0), self.ints(-1),
                               self.ints(1)], f"{hint}/previous")],
            f"{hint}/rises",
        )
        # Max with 0: a one-step mask has no pairs (ReduceMax of nothing).
        index = self.op(
            "Max",
            [self.op("ReduceMax", [rises], f"{hint}/any_rise", keepdims=0),
             self.scalar(0, "int32")],
            f"{hint}/index",
        )
        guard = self.op(
            "Gather",
            [self.constant(np.zeros(1, np.int32), f"{hint}/zero"), index],
            f"{hint}/padding_check",
            node_name=_padding_error_name(mask.origin),
        )
        mask.lengths = self.op("Add", [counted, guard], f"{hint}/checked")
        return mask.lengths

    def mask_of(self, value, origin):
        """A tensor passed as ``mask=`` (``(B, T)``, True or nonzero = real
        step), as a ``Mask``."""
        if value.as_mask is None:
            if len(value.shape) != 2:
                raise ValueError(
                    f"{origin[0].upper()}{origin[1:]} must have shape "
                    f"(batch, time). Received: shape={value.shape}"
                )
            name = value.name
            if value.dtype != "bool":
                name = self.op("Cast", [name], f"{name}/as_mask", to=_BOOL)
            if value.input_name is not None:
                origin = f"input '{value.input_name}'"
                self.note_input(value.input_name, padding={"kind": "mask"})
            value.as_mask = Mask(name, origin)
        return value.as_mask

    def mask_time_major(self, mask, hint):
        """The mask as bool ``[T, B, 1]`` (for ``Where`` on ``[T, B, H]``)."""
        if mask.time_major is None:
            transposed = self.transpose(mask.name, (1, 0), f"{hint}/mask_tm")
            mask.time_major = self.unsqueeze(transposed, [2], hint)
        return mask.time_major


def _padding_error_name(origin):
    # onnxruntime prints the failing node's name: make it the message.
    return (
        f"ERROR - the mask of {origin} is not right-padded (a padded step is "
        "followed by a real one); the native recurrent operators need "
        "right-padded sequences"
    )


_BOOL = onnx.TensorProto.BOOL
_INT32 = onnx.TensorProto.INT32


def value_info(name, dtype, shape):
    """A graph input/output declaration; ``shape`` holds ints, dim names or
    None (unknown)."""
    return helper.make_tensor_value_info(name, DTYPES[dtype], list(shape))


def prune(nodes, outputs):
    """The nodes that the graph ``outputs`` depend on, in order."""
    producers = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            producers[name] = index
    needed, stack = set(), list(outputs)
    while stack:
        index = producers.get(stack.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        stack.extend(name for name in nodes[index].input if name)
    return [node for index, node in enumerate(nodes) if index in needed]


def make_model(graph, name, input_infos, output_infos):
    """The checked ``onnx.ModelProto`` of ``graph``, pruned to what its
    outputs need, and the nodes kept.

    Args:
        input_infos: ``(name, dtype, dims)`` of each graph input.
        output_infos: ``(name, value name, dtype, dims)`` of each output:
            the output ``name`` is an ``Identity`` of the graph's value.
    """
    for output, value, _, _ in output_infos:
        graph.nodes.append(
            onnx.helper.make_node("Identity", [value], [output],
                                  name=graph.fresh(f"output/{output}"))
        )
    names = [info[0] for info in output_infos]
    nodes = prune(graph.nodes, names)
    used = {input_name for node in nodes for input_name in node.input}
    onnx_graph = onnx.helper.make_graph(
        nodes,
        name,
        [value_info(*info) for info in input_infos],
        [value_info(output, dtype, shape)
         for output, _, dtype, shape in output_infos],
        initializer=[i for i in graph.initializers if i.name in used],
    )
    model_proto = onnx.helper.make_model(
        onnx_graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="kerasrnn",
        producer_version=version(),
    )
    onnx.checker.check_model(model_proto, full_check=True)
    return model_proto, nodes


def op_inventory(model_proto):
    """``{op_type: count}`` over the graph's nodes, sorted by op type."""
    counts = collections.Counter(node.op_type for node in
                                 model_proto.graph.node)
    return dict(sorted(counts.items()))


def version():
    """kerasrnn's version (the ``producer_version`` of the graphs)."""
    import kerasrnn

    return kerasrnn.__version__
