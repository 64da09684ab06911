"""Walks a Functional or Sequential Keras model's graph and converts each
layer and op onto an ONNX ``GraphBuilder`` (``export.layers``,
``export.ops``): the one walker of ``to_onnx`` and of the captioner's image
encoder export."""

import keras

from kerasrnn.export.layers import convert_layer
from kerasrnn.export.ops import convert_operation


def model_tensors(model):
    """The model's input and (flattened) output Keras tensors."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "to_onnx expects a keras.Model (Functional or Sequential). "
            f"Received: {type(model).__name__}"
        )
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except AttributeError as error:
        raise ValueError(
            f"Model '{model.name}' has no symbolic graph to export: use a "
            "Functional or Sequential model built on keras.Input "
            f"({error})."
        ) from None
    return inputs, outputs


def run_functional(graph, model, inputs, input_values):
    """Converts the layers between ``inputs`` and ``model.outputs``."""
    values = {id(tensor): value for tensor, value in zip(inputs,
                                                         input_values)}
    converted = set()

    def visit(tensor):
        if id(tensor) in values:
            return values[id(tensor)]
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        if node.is_input or id(node) in converted:
            raise ValueError(
                f"Model '{model.name}' reads tensor '{tensor.name}', which "
                "is not one of its inputs."
            )
        implicit = _implicit_masks(node)
        for child in node.input_tensors:
            if id(child) not in implicit:
                visit(child)
        # A mask Keras attached by itself is the converted input's Mask.
        known = dict(values)
        for mask_id, source in implicit.items():
            known[mask_id] = values[id(source)].mask
        args, kwargs = node.arguments.fill_in(known)
        if isinstance(operation, keras.Model):
            results = _nested(graph, operation, args)
        elif isinstance(operation, keras.layers.Layer):
            results = convert_layer(graph, operation, args, kwargs)
        else:
            results = convert_operation(graph, operation, args, kwargs,
                                        node.outputs)
        if len(results) != len(node.outputs):
            raise RuntimeError(
                f"Layer '{operation.name}': the converter returned "
                f"{len(results)} outputs, Keras has {len(node.outputs)}."
            )
        converted.add(id(node))
        for keras_tensor, value in zip(node.outputs, results):
            _check_mask(operation, keras_tensor, value)
            values[id(keras_tensor)] = value
        return values[id(tensor)]

    return [visit(tensor) for tensor in model.outputs]


def _implicit_masks(node):
    """``{id(mask tensor): input tensor}`` for the masks Keras passed to a
    call by itself.

    When a layer's call has one tensor argument, Keras passes the mask that
    travels with it as ``mask=``, computed by its own ops (``not_equal``,
    ``any``...). The converters rebuild those masks layer by layer
    (``Value.mask``), so these tensors are not converted; a ``mask`` the
    model passes explicitly is. (With more tensor arguments, e.g.
    ``initial_state``, Keras passes no mask and the layer runs unmasked.)
    """
    args = node.arguments.args
    mask = node.arguments.kwargs.get("mask")
    if mask is None or not args:
        return {}
    sources = keras.tree.flatten(args[0])
    return {
        id(given): source
        for given, source in zip(keras.tree.flatten(mask), sources)
        if given is not None
        and given is getattr(source, "_keras_mask", None)
    }


def _check_mask(operation, keras_tensor, value):
    """The converters rebuild Keras' masks; a disagreement on whether a
    tensor carries one would give other numbers, so it stops the export."""
    keras_has = getattr(keras_tensor, "_keras_mask", None) is not None
    if keras_has != (value.mask is not None):
        keras_says = "attaches a" if keras_has else "attaches no"
        ours = "does not" if keras_has else "does"
        raise RuntimeError(
            f"Layer '{operation.name}': Keras {keras_says} mask to its "
            f"output, the ONNX converter {ours}. Please report this model "
            "configuration."
        )


def _nested(graph, model, args):
    inner_inputs, _ = model_tensors(model)
    given = keras.tree.flatten(args)
    if len(given) != len(inner_inputs):
        raise ValueError(
            f"Nested model '{model.name}' takes {len(inner_inputs)} inputs; "
            f"it is called with {len(given)}."
        )
    return run_functional(graph, model, inner_inputs, given)
