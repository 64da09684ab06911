"""ONNX export of a tree classifier (``kerasrnn.trees.tree_classifier``).

ONNX has no tree operator, so the graph is the ``TreeRNN`` loop written
out: a ``Loop`` over the levels (``ReduceMax(levels) + 1`` trips); in trip
``l``, ``NonZero(levels == l)`` picks the nodes of that level in every
tree of the batch, ``Gather`` takes their inputs and their children's rows
of the state tables, the cell's equations run on all of them at once, and
``ScatterND`` writes their states back. Row ``B·N`` of each table stays
zero: missing children read it. The word-vector table is exported with
row 0 zero (``WordEmbedding``'s "no word").

Graph inputs (``kerasrnn.trees.encode``'s arrays, int64): ``tokens (B,
N)``, ``children (B, N, K)``, ``levels (B, N)``; outputs ``nodes (B, N,
C)`` and ``root (B, C)``, the logits. ``K`` may be smaller than a
positional cell's positions (the graph pads), not larger.

``to_onnx_tree(model, directory, vocabulary)`` writes ``model.onnx`` and
``manifest.json`` (format ``kerasrnn-tree-onnx``: inputs, outputs, the
vocabulary and its lookup key, the cell's positions) and checks the graph
against Keras with onnxruntime on random trees. ``kerasrnn_serving.trees``
runs it without TensorFlow, from bracketed trees or parent arrays.
"""

import json
import pathlib

import keras
import numpy as np
import onnx
from onnx import helper

from kerasrnn.export.graph import IR_VERSION
from kerasrnn.export.graph import OPSET
from kerasrnn.export.graph import PARITY_ATOL
from kerasrnn.export.graph import PARITY_RTOL
from kerasrnn.export.graph import GraphBuilder
from kerasrnn.export.graph import value_info
from kerasrnn.export.graph import version
from kerasrnn.trees import ChildSumTreeLSTMCell
from kerasrnn.trees import NaryTreeLSTMCell
from kerasrnn.trees import RecursiveCell
from kerasrnn.trees import TreeRNN
from kerasrnn.trees import WordEmbedding
from kerasrnn.trees import encode
from kerasrnn.trees import glove_key

MANIFEST_FORMAT = "kerasrnn-tree-onnx"
ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu",
               "linear": None}
KEYS = {None: None, glove_key: "glove_key"}
_INT64 = onnx.TensorProto.INT64


def tree_classifier_parts(model):
    """The embedding, ``TreeRNN`` and output ``Dense`` of a tree
    classifier, checked."""
    try:
        embedding = model.get_layer("embedding")
        tree = model.get_layer("tree")
        head = model.get_layer("classifier")
    except ValueError:
        raise ValueError(
            "Expected a kerasrnn.trees.tree_classifier model (layers "
            "'embedding', 'tree', 'classifier'). Received: layers="
            f"{[layer.name for layer in model.layers]}"
        ) from None
    if not isinstance(embedding, WordEmbedding) or not isinstance(
        tree, TreeRNN
    ) or not isinstance(head, keras.layers.Dense):
        raise ValueError(
            "The layers 'embedding', 'tree', 'classifier' must be a "
            "WordEmbedding, a TreeRNN and a Dense. Received: "
            f"{type(embedding).__name__}, {type(tree).__name__}, "
            f"{type(head).__name__}"
        )
    if head.activation is not keras.activations.linear:
        raise ValueError("The classifier must output logits (no activation).")
    return embedding, tree, head


def _activation(builder, name, value, hint):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"Activation {name!r} has no ONNX export here; expected one of "
            f"{sorted(ACTIVATIONS)}."
        )
    op = ACTIVATIONS[name]
    return value if op is None else builder.op(op, [value], hint)


def _cell_step(graph, body, cell, inputs, children, hint):
    """The ONNX nodes of ``cell.node_step`` on ``M`` nodes: ``inputs`` are
    their ``x W + b`` (one per gate block, cut outside the loop),
    ``children`` their ``(M, K, H)`` child states. Constants go to the
    outer ``graph`` (the Loop body reads them from there); the recurrent
    kernel is cut into one matrix per gate block here, in NumPy."""
    units = cell.units
    recurrent = np.asarray(cell.get_weights()[1], np.float32)

    def constant(array, name):
        return graph.constant(np.ascontiguousarray(array), f"tree/{name}")

    def matmul(value, array, name):
        return body.op("MatMul", [value, constant(array, name)],
                       f"{hint}/{name}")

    def flat(value):
        return body.op("Reshape", [value, graph.ints(0, -1)], f"{hint}/flat")

    act = keras.activations.serialize(cell.activation)
    if isinstance(cell, RecursiveCell):
        (h_children,) = children
        if cell.shared:
            summed = body.op("ReduceSum", [h_children, graph.ints(1)],
                             f"{hint}/child_sum", keepdims=0)
        else:
            summed = flat(h_children)
        z = body.op("Add", [inputs[0], matmul(summed, recurrent, "U")],
                    f"{hint}/z")
        return [_activation(body, act, z, f"{hint}/h")]
    sigma = keras.activations.serialize(cell.recurrent_activation)
    h_children, c_children = children
    x_i, x_f, x_c, x_o = inputs
    if isinstance(cell, NaryTreeLSTMCell):
        k = cell.max_children
        blocks = {"i": (0, 1), "f": (1, k + 1), "c": (k + 1, k + 2),
                  "o": (k + 2, k + 3)}
        h_cat = flat(h_children)
        z = {g: matmul(h_cat, recurrent[:, a * units:b * units], f"U_{g}")
             for g, (a, b) in blocks.items()}
        z["f"] = body.op("Reshape", [z["f"], graph.ints(-1, k, units)],
                         f"{hint}/z_f")
    elif isinstance(cell, ChildSumTreeLSTMCell):
        h_sum = body.op("ReduceSum", [h_children, graph.ints(1)],
                        f"{hint}/h_sum", keepdims=0)
        z = {g: matmul(h_children if g == "f" else h_sum,
                       recurrent[:, n * units:(n + 1) * units], f"U_{g}")
             for n, g in enumerate("ifco")}
    else:
        raise ValueError(
            f"No ONNX export for the cell {type(cell).__name__}."
        )

    def gate(x, name, activation):
        return _activation(body, activation,
                           body.op("Add", [x, z[name]], f"{hint}/{name}_in"),
                           f"{hint}/{name}")

    i = gate(x_i, "i", sigma)
    f = gate(body.op("Unsqueeze", [x_f, graph.ints(1)], f"{hint}/x_f"), "f",
             sigma)
    u = gate(x_c, "c", act)
    o = gate(x_o, "o", sigma)
    c = body.op("Add", [
        body.op("Mul", [i, u], f"{hint}/iu"),
        body.op("ReduceSum", [body.op("Mul", [f, c_children], f"{hint}/fc"),
                              graph.ints(1)], f"{hint}/fc_sum", keepdims=0),
    ], f"{hint}/c")
    h = body.op("Mul", [o, _activation(body, act, c, f"{hint}/g_c")],
                f"{hint}/h")
    return [h, c]


def build_tree_onnx(model):
    """The ``onnx.ModelProto`` of a tree classifier (module docstring)."""
    embedding, tree, head = tree_classifier_parts(model)
    cell = tree.cell
    graph = GraphBuilder()
    for name in ("tokens", "children", "levels", "nodes", "root"):
        graph.reserve(name)
    table = np.asarray(embedding.embeddings, np.float32).copy()
    table[0] = 0.0
    kernel, _, bias = (np.asarray(w, np.float32) for w in cell.get_weights())
    features = table.shape[1]

    shape = graph.op("Shape", ["levels"], "shape")
    batch = graph.op("Slice", [shape, graph.ints(0), graph.ints(1)], "batch")
    nodes = graph.op("Slice", [shape, graph.ints(1), graph.ints(2)], "count")
    total = graph.op("Mul", [batch, nodes], "total")
    x = graph.op("Gather", [graph.constant(table, "embedding"), "tokens"],
                 "x")
    x = graph.op("Reshape", [x, graph.ints(-1, features)], "x_flat")
    projected = graph.op("Add", [
        graph.op("MatMul", [x, graph.constant(kernel, "tree/kernel")],
                 "tree/xW"),
        graph.constant(bias, "tree/bias")], "tree/projected")

    # The gate blocks of x W + b, cut once for all nodes.
    width = cell.units
    blocks = [
        graph.op("Slice", [projected, graph.ints(g * width),
                           graph.ints((g + 1) * width), graph.ints(1)],
                 f"tree/x{g}")
        for g in range(cell.gate_count)
    ]
    children = "children"
    if cell.positions is not None:
        # Pad the child slots up to the cell's positions (none if equal).
        slots = graph.op("Slice", [graph.op("Shape", [children], "k_shape"),
                                   graph.ints(2), graph.ints(3)], "slots")
        missing = graph.op("Sub", [graph.ints(cell.positions), slots],
                           "missing")
        pads = graph.op("Concat", [graph.ints(0, 0, 0, 0, 0), missing],
                        "pads", axis=0)
        children = graph.op("Pad", [children, pads,
                                    graph.scalar(-1, "int64")],
                            "children_padded")
    offsets = graph.op("Reshape", [
        graph.op("Range", [graph.scalar(0, "int64"),
                           graph.squeeze(total, [0], "total_scalar"),
                           graph.squeeze(nodes, [0], "count_scalar")],
                 "offsets_flat"),
        graph.ints(-1, 1, 1)], "offsets")
    rows = graph.op("Where", [
        graph.op("GreaterOrEqual", [children, graph.scalar(0, "int64")],
                 "has_child"),
        graph.op("Add", [children, offsets], "child_rows"),
        total], "rows_3d")
    rows = graph.op("Reshape", [rows, graph.op("Concat", [
        total, graph.ints(-1)], "rows_shape", axis=0)], "rows")
    levels = graph.op("Reshape", ["levels", graph.ints(-1)], "levels_flat")
    trips = graph.op("Add", [
        graph.op("ReduceMax", [levels], "height", keepdims=0),
        graph.scalar(1, "int64")], "trips")
    table_shape = graph.op("Concat", [
        graph.op("Add", [total, graph.ints(1)], "rows_plus_one"),
        graph.ints(cell.units)], "table_shape", axis=0)
    zeros = graph.op("ConstantOfShape", [table_shape], "table_zeros",
                     value=helper.make_tensor("zero", onnx.TensorProto.FLOAT,
                                              [1], [0.0]))
    states = [f"level/{name}_in" for name in cell.state_names]

    body = GraphBuilder()
    for name in ["level/index", "level/cond"] + states:
        body.reserve(name)
    picked = body.op("NonZero", [body.op("Equal", [levels, "level/index"],
                                         "level/is_level")], "level/nonzero")
    index = body.op("Reshape", [picked, graph.ints(-1)], "level/nodes")
    at = body.op("Transpose", [picked], "level/at", perm=[1, 0])
    kids = body.op("Gather", [rows, index], "level/kids", axis=0)
    child_states = [body.op("Gather", [s, kids], f"level/{n}_children",
                            axis=0)
                    for s, n in zip(states, cell.state_names)]
    node_inputs = [body.op("Gather", [block, index], "level/x", axis=0)
                   for block in blocks]
    new = _cell_step(graph, body, cell, node_inputs, child_states,
                     "level/cell")
    outputs = [body.op("ScatterND", [s, at, n], f"level/{name}_out")
               for s, n, name in zip(states, new, cell.state_names)]
    cond = body.op("Identity", ["level/cond"], "level/cond_out")
    loop_body = helper.make_graph(
        body.nodes, "level",
        [value_info("level/index", "int64", []),
         value_info("level/cond", "bool", [])]
        + [value_info(s, "float32", [None, cell.units]) for s in states],
        [value_info(cond, "bool", [])]
        + [value_info(o, "float32", [None, cell.units]) for o in outputs],
    )
    final = graph.op("Loop", [trips, ""] + [zeros] * len(states), "levels",
                     outputs=[f"{n}_final" for n in cell.state_names],
                     body=loop_body)
    h = graph.op("Slice", [final[0], graph.ints(0), total], "h_nodes")
    h = graph.op("Reshape", [h, graph.op("Concat", [
        batch, nodes, graph.ints(cell.units)], "h_shape", axis=0)], "h")
    w_out, b_out = (np.asarray(w, np.float32) for w in head.get_weights())
    logits = graph.op("Add", [
        graph.op("MatMul", [h, graph.constant(w_out, "classifier/kernel")],
                 "classifier/hW"),
        graph.constant(b_out, "classifier/bias")], "logits")
    graph.nodes.append(helper.make_node("Identity", [logits], ["nodes"],
                                        name="output/nodes"))
    graph.nodes.append(helper.make_node(
        "Gather", [logits, graph.scalar(0, "int64")], ["root"], axis=1,
        name="output/root"))
    classes = w_out.shape[1]
    onnx_graph = helper.make_graph(
        graph.nodes, model.name,
        [value_info("tokens", "int64", ["batch", "nodes"]),
         value_info("children", "int64", ["batch", "nodes", "slots"]),
         value_info("levels", "int64", ["batch", "nodes"])],
        [value_info("nodes", "float32", ["batch", "nodes", classes]),
         value_info("root", "float32", ["batch", classes])],
        initializer=graph.initializers,
    )
    proto = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION, producer_name="kerasrnn",
        producer_version=version())
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx_tree(model, directory, vocabulary, check_trees=None):
    """Writes ``model.onnx`` and ``manifest.json`` for a tree classifier and
    checks onnxruntime against Keras.

    Args:
        model: a ``tree_classifier``.
        directory: where to write (created).
        vocabulary: the ``Vocabulary`` the model was trained with (its key
            must be None or ``glove_key``).
        check_trees: trees to check parity on (default: none; the check
            then runs on 16 random binary trees).

    Returns:
        The worst ``|keras - onnxruntime|`` of the check (logits).

    Raises:
        ValueError: a model that is not a tree classifier, an activation
            or cell without an export, an unknown vocabulary key, or
            outputs that differ by more than the export tolerance.
    """
    import onnxruntime

    if vocabulary.key not in KEYS:
        raise ValueError(
            "The vocabulary's `key` must be None or kerasrnn.trees."
            f"glove_key to be exported. Received: key={vocabulary.key!r}"
        )
    proto = build_tree_onnx(model)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, directory / "model.onnx")
    _, tree, head = tree_classifier_parts(model)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "inputs": ["tokens", "children", "levels"],
        "outputs": ["nodes", "root"],
        "num_classes": int(head.units),
        "max_children": tree.cell.positions,
        "vocabulary": vocabulary.words,
        "vocabulary_key": KEYS[vocabulary.key],
        "producer_version": version(),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    if check_trees is None:
        from kerasrnn.trees.data import sample_sentiment_trees

        check_trees = sample_sentiment_trees(16, seed=0)
    inputs, _ = encode(check_trees, vocabulary,
                       max_children=tree.cell.positions)
    expected = model.predict(inputs, verbose=0)
    session = onnxruntime.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["nodes", "root"],
                      {k: v.astype(np.int64) for k, v in inputs.items()})
    worst = 0.0
    for name, value in zip(("nodes", "root"), got):
        want = np.asarray(expected[name])
        error = np.abs(value - want)
        worst = max(worst, float(error.max()))
        if np.any(error > PARITY_ATOL + PARITY_RTOL * np.abs(want)):
            raise ValueError(
                f"onnxruntime's {name!r} differs from Keras by "
                f"{error.max():.3g} (tolerance {PARITY_ATOL} + "
                f"{PARITY_RTOL}·|keras|)."
            )
    return worst
