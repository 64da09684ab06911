"""Inference speed of the ONNX export against a hand-built graph and Keras.

For each cell and shape, one kerasrnn model (``Input -> SimpleRNN/LSTM/GRU``,
last output; ``--variant`` adds a mask or a backward direction) is timed
four ways on the same inputs:

* ``exported``: onnxruntime on ``kerasrnn.export.build_onnx(model)``;
* ``hand_built``: onnxruntime on the smallest graph computing the same
  function from the same weights, written by hand here: ``Transpose`` to
  time-major, the native ``RNN``/``LSTM``/``GRU`` node, ``Transpose`` and
  ``Reshape`` of ``Y_h`` (plus ``sequence_lens = ReduceSum(Cast(mask))``,
  without the exporter's right-padding check);
* ``raw_node``: the bare node fed a time-major input transposed beforehand
  and the lengths (outside the timing): the floor;
* ``keras_predict``: ``model.predict(x, batch_size=B)``, and
  ``keras_predict_on_batch``.

The exported and hand-built graphs are checked to give the same numbers
first. The onnxruntime graphs are timed round-robin, one call each per
round (the machine is shared); the table gives median milliseconds and the
ratios are medians of the per-round ratios.

    python benchmarks/export_speed.py                      # shapes a b
    python benchmarks/export_speed.py --shapes a --cells lstm --reps 50
    python benchmarks/export_speed.py --json artifacts/export_speed.json

Shapes (batch, time, input, hidden) as ``benchmarks/speed.py``: a =
32,100,128,256; b = 1,50,64,128; c = 64,200,256,512.
"""

import argparse
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto
from onnx import helper
from onnx import numpy_helper

import kerasrnn
from kerasrnn.export import build_onnx
from kerasrnn.weights import to_onnx_weights

SHAPES = {
    "a": (32, 100, 128, 256),
    "b": (1, 50, 64, 128),
    "c": (64, 200, 256, 512),
}
CELLS = {
    "lstm": (kerasrnn.LSTM, "LSTM"),
    "gru": (kerasrnn.GRU, "GRU"),
    "rnn": (kerasrnn.SimpleRNN, "RNN"),
}
VARIANTS = ("plain", "masked", "bidirectional")


def build_model(cell, shape, variant):
    layer_class, _ = CELLS[cell]
    _, _, features, hidden = shape
    x = keras.Input((None, features), name="x")
    inputs, call = [x], {}
    if variant == "masked":
        mask = keras.Input((None,), dtype="bool", name="mask")
        inputs.append(mask)
        call["mask"] = mask
    layer = layer_class(hidden, bidirectional=variant == "bidirectional")
    return keras.Model(inputs, layer(x, **call)), layer


def hand_built(layer, op, shape, variant, time_major_input):
    """The native node on the layer's weights, by hand (see docstring)."""
    (W, R, B), = to_onnx_weights(layer)
    _, _, features, hidden = shape
    directions = W.shape[0]
    float_, int32 = TensorProto.FLOAT, TensorProto.INT32
    nodes, inputs = [], []
    if time_major_input:
        inputs.append(helper.make_tensor_value_info(
            "X", float_, ["T", "B", features]))
    else:
        inputs.append(helper.make_tensor_value_info(
            "x", float_, ["B", "T", features]))
        nodes.append(helper.make_node("Transpose", ["x"], ["X"],
                                      perm=[1, 0, 2]))
    node_inputs = ["X", "W", "R", "B"]
    initializers = [numpy_helper.from_array(a, n)
                    for n, a in (("W", W), ("R", R), ("B", B))]
    if variant == "masked" and time_major_input:
        inputs.append(helper.make_tensor_value_info(
            "lengths", int32, ["B"]))
        node_inputs.append("lengths")
    elif variant == "masked":
        # The same function as the model: lengths = sum of the bool mask.
        inputs.append(helper.make_tensor_value_info(
            "mask", TensorProto.BOOL, ["B", "T"]))
        initializers.append(numpy_helper.from_array(
            np.array([1], np.int64), "time_axis"))
        nodes += [
            helper.make_node("Cast", ["mask"], ["mask_int"], to=int32),
            helper.make_node("ReduceSum", ["mask_int", "time_axis"],
                             ["lengths"], keepdims=0),
        ]
        node_inputs.append("lengths")
    attributes = {"hidden_size": hidden,
                  "direction": "bidirectional" if directions == 2 else
                  "forward"}
    if op == "GRU":
        attributes["linear_before_reset"] = 1
    nodes.append(helper.make_node(op, node_inputs, ["", "Y_h"],
                                  **attributes))
    # [D, B, H] -> [B, D*H] (forward | backward).
    nodes.append(helper.make_node("Transpose", ["Y_h"], ["Y_bdh"],
                                  perm=[1, 0, 2]))
    initializers.append(numpy_helper.from_array(
        np.array([0, -1], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["Y_bdh", "shape"], ["y"]))
    graph = helper.make_graph(
        nodes, "hand_built", inputs,
        [helper.make_tensor_value_info("y", float_,
                                       ["B", directions * hidden])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    onnx.checker.check_model(model)
    return model


def session(model, threads):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options,
        providers=["CPUExecutionProvider"],
    )


def median_ms(function, reps, warmup=3):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def interleaved(functions, reps):
    """Times several functions round-robin (the order rotating each round)
    so that load changes on a shared machine hit them alike.

    Returns ``(median ms per function, per-round times in ms)``.
    """
    names = list(functions)
    for function in functions.values():
        for _ in range(3):
            function()
    rounds = []
    for index in range(reps):
        times = {}
        for name in names[index % len(names):] + names[:index % len(names)]:
            start = time.perf_counter()
            functions[name]()
            times[name] = (time.perf_counter() - start) * 1e3
        rounds.append(times)
    medians = {name: float(np.median([r[name] for r in rounds]))
               for name in names}
    return medians, rounds


def paired_ratio(rounds, numerator, denominator):
    """The median over rounds of ``numerator / denominator``."""
    return float(np.median([r[numerator] / r[denominator] for r in rounds]))


def run(cell, shape_name, variant, reps, threads):
    shape = SHAPES[shape_name]
    batch, steps, features, _ = shape
    keras.utils.set_random_seed(0)
    model, layer = build_model(cell, shape, variant)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    lengths = np.full(batch, steps, dtype=np.int32)
    lengths[::2] = max(1, steps * 3 // 4)
    mask = np.arange(steps)[None, :] < lengths[:, None]
    exported_feeds = {"x": x}
    keras_inputs = x
    if variant == "masked":
        exported_feeds["mask"] = mask
        keras_inputs = [x, mask]
    _, op = CELLS[cell]
    exported = session(build_onnx(model)[0], threads)
    hand = session(hand_built(layer, op, shape, variant, False), threads)
    raw = session(hand_built(layer, op, shape, variant, True), threads)
    hand_feeds = {"x": x}
    raw_feeds = {"X": np.ascontiguousarray(x.transpose(1, 0, 2))}
    if variant == "masked":
        hand_feeds["mask"] = mask
        raw_feeds["lengths"] = lengths
    ours = exported.run(None, exported_feeds)[0]
    reference = hand.run(None, hand_feeds)[0]
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)
    timings, rounds = interleaved(
        {
            "exported": lambda: exported.run(None, exported_feeds),
            "hand_built": lambda: hand.run(None, hand_feeds),
            "raw_node": lambda: raw.run(None, raw_feeds),
        },
        reps,
    )
    timings["keras_predict"] = median_ms(
        lambda: model.predict(keras_inputs, batch_size=batch, verbose=0),
        max(5, reps // 4),
    )
    timings["keras_predict_on_batch"] = median_ms(
        lambda: model.predict_on_batch(keras_inputs), max(5, reps // 4)
    )
    return {
        "cell": cell,
        "shape": shape_name,
        "batch_time_input_hidden": list(shape),
        "variant": variant,
        "ms": timings,
        # Paired: the median of per-round ratios (robust to load drift).
        "exported_over_hand_built": paired_ratio(rounds, "exported",
                                                 "hand_built"),
        "exported_over_raw_node": paired_ratio(rounds, "exported",
                                               "raw_node"),
        "keras_predict_over_exported": timings["keras_predict"]
        / timings["exported"],
        "keras_predict_on_batch_over_exported": timings[
            "keras_predict_on_batch"] / timings["exported"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="a,b")
    parser.add_argument("--cells", default="lstm,gru,rnn")
    parser.add_argument("--variants", default="plain")
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2,
                        help="onnxruntime intra-op threads")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    header = (f"{'cell':5} {'shape':5} {'variant':13} {'exported':>9} "
              f"{'hand':>8} {'raw':>8} {'keras':>8} {'exp/hand':>9} "
              f"{'exp/raw':>8} {'keras/exp':>9}")
    print(header)
    for shape in args.shapes.split(","):
        for cell in args.cells.split(","):
            for variant in args.variants.split(","):
                result = run(cell, shape, variant, args.reps, args.threads)
                results.append(result)
                ms = result["ms"]
                print(f"{cell:5} {shape:5} {variant:13} "
                      f"{ms['exported']:9.3f} {ms['hand_built']:8.3f} "
                      f"{ms['raw_node']:8.3f} {ms['keras_predict']:8.2f} "
                      f"{result['exported_over_hand_built']:9.3f} "
                      f"{result['exported_over_raw_node']:8.3f} "
                      f"{result['keras_predict_over_exported']:9.1f}",
                      flush=True)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "machine": {"platform": platform.platform(),
                        "cpus": os.cpu_count(),
                        "onnxruntime": onnxruntime.__version__,
                        "keras": keras.__version__},
            "threads": args.threads,
            "reps": args.reps,
            "results": results,
        }, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
