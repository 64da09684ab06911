"""Speed of kerasrnn against Keras built-ins, PyTorch and onnxruntime.

Times, in one run and on the same inputs, the forward pass and one training
step (forward + backward + optimizer update) of each implementation, and
prints a table of median milliseconds, ratios to the Keras built-in, GFLOP/s
and the share of the measured matmul peak. Every configuration runs in its
own process (so peak RSS is its own), with warm-up and ``--reps`` timed
repetitions; ``--rounds N`` runs every configuration N times round-robin
and reports medians, ratios as the median of per-round ratios (robust to a
shared machine's drift).

    python benchmarks/speed.py                       # shapes a b c, all cells
    python benchmarks/speed.py --shapes b --cells lstm --reps 20
    python benchmarks/speed.py --rounds 3 --json artifacts/speed.json
    python benchmarks/speed.py --backend torch       # Keras on torch
    python benchmarks/speed.py --backend jax

``--backend`` sets the Keras backend of the ``keras`` and ``kerasrnn``
rows (TensorFlow by default; the ``-xla`` rows are TensorFlow's): on JAX
both run as Keras compiles them (``jit``), on torch eagerly, kerasrnn on
torch's fused kernels. The ``torch`` and ``onnxruntime`` rows are the same
on every backend, so ratios to them compare across runs.

Shapes (batch, time, input, hidden): a = 32,100,128,256; b = 1,50,64,128
(latency); c = 64,200,256,512 (throughput). Forward FLOPs are
2·B·T·(I+H)·G·H, with G = 4 (LSTM), 3 (GRU), 1 (Elman).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

SHAPES = {
    "a": (32, 100, 128, 256),
    "b": (1, 50, 64, 128),
    "c": (64, 200, 256, 512),
}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
IMPLEMENTATIONS = (
    "keras", "kerasrnn", "keras-xla", "kerasrnn-xla", "torch", "onnxruntime",
)
VARIANTS = ("plain", "masked", "bidirectional", "2-layer")


def forward_flops(shape, cell, variant="plain"):
    batch, steps, inputs, hidden = shape
    flops = 2 * batch * steps * (inputs + hidden) * GATES[cell] * hidden
    if variant == "bidirectional":
        return 2 * flops
    if variant == "2-layer":
        return flops + 2 * batch * steps * 2 * hidden * GATES[cell] * hidden
    return flops


def median_ms(function, reps, warmup=3):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def masked_lengths(batch, steps, seed=0):
    """Random lengths in [steps/2, steps], one full-length row."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(steps // 2, steps + 1, size=batch)
    lengths[0] = steps
    return lengths


# --------------------------------------------------------------- Keras side
def keras_layer(implementation, cell, hidden, variant):
    import keras

    import kerasrnn

    library = kerasrnn if implementation.startswith("kerasrnn") else (
        keras.layers
    )
    layer_class = {"lstm": library.LSTM, "gru": library.GRU,
                   "rnn": library.SimpleRNN}[cell]
    if variant == "bidirectional":
        return [library.Bidirectional(layer_class(hidden))]
    if variant == "2-layer":
        if library is kerasrnn:
            return [layer_class(hidden, num_layers=2)]
        return [layer_class(hidden, return_sequences=True),
                layer_class(hidden)]
    return [layer_class(hidden)]


def time_keras(implementation, cell, shape, variant, reps):
    import keras

    batch, steps, inputs, hidden = shape
    xla = implementation.endswith("-xla")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, inputs)).astype("float32")
    y = rng.normal(size=(batch, hidden * (2 if variant == "bidirectional"
                                          else 1))).astype("float32")
    sequence = keras.Input(batch_shape=(None, steps, inputs))
    hidden_tensor = sequence
    feeds = [x]
    if variant == "masked":
        mask_input = keras.Input(batch_shape=(None, steps), dtype="bool")
        lengths = masked_lengths(batch, steps)
        feeds.append(np.arange(steps)[None, :] < lengths[:, None])
    for layer in keras_layer(implementation, cell, hidden, variant):
        if variant == "masked":
            hidden_tensor = layer(hidden_tensor, mask=mask_input)
        else:
            hidden_tensor = layer(hidden_tensor)
    inputs_list = [sequence] + ([mask_input] if variant == "masked" else [])
    model = keras.Model(inputs_list, hidden_tensor)
    data = feeds if len(feeds) > 1 else feeds[0]
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        forward = tf.function(
            lambda *args: model(list(args) if len(args) > 1 else args[0]),
            jit_compile=xla,
        )
        tensors = [tf.constant(f) for f in feeds]
        forward_ms = median_ms(lambda: forward(*tensors).numpy(), reps)
    elif keras.config.backend() == "jax":
        import jax

        # The model's stateless call, jit-compiled (what predict runs).
        forward = jax.jit(lambda trainable, other, args: model.stateless_call(
            trainable, other, args)[0])
        variables = ([v.value for v in model.trainable_variables],
                     [v.value for v in model.non_trainable_variables])
        tensors = [jax.numpy.asarray(f) for f in feeds]
        args = tensors if len(tensors) > 1 else tensors[0]
        forward_ms = median_ms(
            lambda: forward(*variables, args).block_until_ready(), reps)
    else:
        import torch

        tensors = [torch.as_tensor(f) for f in feeds]
        args = tensors if len(tensors) > 1 else tensors[0]

        def forward():
            with torch.no_grad():
                return model(args)

        forward_ms = median_ms(forward, reps)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse",
                  jit_compile=xla or "auto")
    train_ms = median_ms(lambda: model.train_on_batch(data, y), reps)
    return forward_ms, train_ms


# ------------------------------------------------------------------ PyTorch
def time_torch(cell, shape, variant, reps):
    import torch

    torch.set_num_threads(os.cpu_count())
    batch, steps, inputs, hidden = shape
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
                    "rnn": torch.nn.RNN}[cell]
    module = module_class(
        inputs, hidden, batch_first=True,
        bidirectional=variant == "bidirectional",
        num_layers=2 if variant == "2-layer" else 1,
    )
    x = torch.randn(batch, steps, inputs)
    packed_lengths = None
    if variant == "masked":
        packed_lengths = torch.as_tensor(masked_lengths(batch, steps))

    def run():
        if packed_lengths is None:
            return module(x)[0][:, -1]
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, packed_lengths, batch_first=True, enforce_sorted=False
        )
        final = module(packed)[1]
        return final[0] if isinstance(final, tuple) else final

    with torch.no_grad():
        forward_ms = median_ms(run, reps)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)

    def train():
        optimizer.zero_grad()
        loss = run().float().pow(2).mean()
        loss.backward()
        optimizer.step()

    return forward_ms, median_ms(train, reps)


# -------------------------------------------------------------- onnxruntime
def time_onnxruntime(cell, shape, variant, reps):
    """The native ONNX LSTM/GRU/RNN operator, forward only."""
    import onnx
    import onnxruntime
    from onnx import TensorProto
    from onnx import helper

    batch, steps, inputs, hidden = shape
    if variant == "2-layer":
        return None, None
    directions = 2 if variant == "bidirectional" else 1
    gates = GATES[cell]
    rng = np.random.default_rng(0)
    weights = {
        "W": rng.normal(size=(directions, gates * hidden, inputs)),
        "R": rng.normal(size=(directions, gates * hidden, hidden)),
        "B": rng.normal(size=(directions, 2 * gates * hidden)),
    }
    initializers = [
        helper.make_tensor(name, TensorProto.FLOAT, value.shape,
                           value.astype("float32").ravel())
        for name, value in weights.items()
    ]
    attributes = {"hidden_size": hidden,
                  "direction": "bidirectional" if directions == 2
                  else "forward"}
    if cell == "gru":
        attributes["linear_before_reset"] = 1
    node = helper.make_node(
        {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell],
        ["X", "W", "R", "B", "sequence_lens"], ["Y"], **attributes,
    )
    graph = helper.make_graph(
        [node], "rnn",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                       ["T", "N", inputs]),
         helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                       ["N"])],
        [helper.make_tensor_value_info(
            "Y", TensorProto.FLOAT, ["T", directions, "N", hidden])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = rng.normal(size=(steps, batch, inputs)).astype("float32")
    lengths = (masked_lengths(batch, steps) if variant == "masked"
               else np.full(batch, steps)).astype("int32")
    onnx.checker.check_model(model)
    feeds = {"X": x, "sequence_lens": lengths}
    return median_ms(lambda: session.run(None, feeds), reps), None


def matmul_peak_gflops(reps=20):
    """The best of ``reps`` 2048² float32 matmuls in TF (a peak: the best,
    not the median, so a busy moment of a shared machine does not lower
    it)."""
    import tensorflow as tf

    size = 2048
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda: tf.matmul(a, b))
    for _ in range(3):
        matmul().numpy()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        matmul().numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def run_one(config):
    """Times one configuration in this process; returns a result dict."""
    implementation = config["implementation"]
    shape = SHAPES[config["shape"]]
    cell, variant, reps = config["cell"], config["variant"], config["reps"]
    if implementation == "torch":
        forward_ms, train_ms = time_torch(cell, shape, variant, reps)
    elif implementation == "onnxruntime":
        forward_ms, train_ms = time_onnxruntime(cell, shape, variant, reps)
    else:
        forward_ms, train_ms = time_keras(implementation, cell, shape,
                                          variant, reps)
    return dict(config, forward_ms=forward_ms, train_ms=train_ms,
                peak_rss_mb=peak_rss_mb())


def peak_rss_mb():
    """This process's peak resident set (VmHWM; reset by exec, unlike
    getrusage's ru_maxrss, which a child inherits from its parent)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_isolated(config):
    command = [sys.executable, __file__, "--one", json.dumps(config)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               KERAS_BACKEND=config["backend"])
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1:]
        return dict(config, error=" ".join(message) or "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def available(implementation):
    module = {"torch": "torch", "onnxruntime": "onnxruntime"}.get(
        implementation)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def combine_rounds(rounds):
    """One row per configuration from ``rounds`` (lists of result rows, one
    list per round): median ms over the rounds, and each ratio to Keras as
    the median of the per-round ratios (a round's runs are minutes apart,
    so a drift of the machine's speed cancels in the ratio)."""
    def key(row):
        return (row["shape"], row["cell"], row["variant"])

    combined = []
    for index, row in enumerate(rounds[0]):
        runs = [r[index] for r in rounds if "error" not in r[index]]
        if not runs:
            combined.append(row)
            continue
        merged = dict(runs[0], rounds=len(runs))
        for measure in ("forward_ms", "train_ms"):
            values = [r[measure] for r in runs if r[measure] is not None]
            merged[measure] = float(np.median(values)) if values else None
            merged[f"{measure}_rounds"] = values
            ratios = []
            for r_index, r in enumerate(rounds):
                base = next((b for b in r if key(b) == key(row)
                             and b["implementation"] == "keras"
                             and "error" not in b), None)
                mine = r[index]
                if (base is None or "error" in mine or mine[measure] is None
                        or base[measure] is None):
                    continue
                ratios.append(mine[measure] / base[measure])
            merged[f"{measure}_ratio"] = (
                float(np.median(ratios)) if ratios else None
            )
        merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        combined.append(merged)
    return combined


def format_table(results, peak, rounds=1):
    lines = [
        f"matmul peak (TF, 2048² float32): {peak:.0f} GFLOP/s; "
        f"{rounds} round(s), ratios = median of per-round ratios",
        "",
        "| shape | cell | variant | implementation | fwd ms | fwd/keras | "
        "train ms | train/keras | fwd GFLOP/s | % peak | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def number(value, digits=2):
        return "–" if value is None else f"{value:.{digits}f}"

    for row in results:
        head = (f"| {row['shape']} | {row['cell']} | {row['variant']} | "
                f"{row['implementation']} |")
        if "error" in row:
            lines.append(f"{head} error: {row['error'][:60]} |||||||")
            continue
        if row["forward_ms"] is None:   # e.g. no native op for this variant
            lines.append(f"{head} not measured |||||||")
            continue
        flops = forward_flops(SHAPES[row["shape"]], row["cell"],
                              row["variant"])
        gflops = flops / row["forward_ms"] / 1e6
        lines.append(
            f"{head} {number(row['forward_ms'])} | "
            f"{number(row.get('forward_ms_ratio'))} | "
            f"{number(row['train_ms'])} | "
            f"{number(row.get('train_ms_ratio'))} | "
            f"{gflops:.0f} | {100 * gflops / peak:.0f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES),
                        choices=list(SHAPES))
    parser.add_argument("--cells", nargs="+", default=list(GATES),
                        choices=list(GATES))
    parser.add_argument("--implementations", nargs="+", default=None,
                        choices=IMPLEMENTATIONS,
                        help="default: all (the -xla rows on TensorFlow only)")
    parser.add_argument("--variants", nargs="+", default=["plain"],
                        choices=VARIANTS)
    parser.add_argument("--backend", default="tensorflow",
                        choices=("tensorflow", "jax", "torch"),
                        help="Keras backend of the keras/kerasrnn rows")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, "
                        "round-robin, and report medians")
    parser.add_argument("--json", default=None,
                        help="also write the results to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.reps < 10:
        parser.error("--reps must be at least 10 for a stable median")

    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    if args.implementations is None:
        args.implementations = [
            i for i in IMPLEMENTATIONS
            if args.backend == "tensorflow" or not i.endswith("-xla")
        ]
    xla_rows = [i for i in args.implementations if i.endswith("-xla")]
    if args.backend != "tensorflow" and xla_rows:
        parser.error(f"{xla_rows} are TensorFlow rows: pass --implementations"
                     " without them, or --backend tensorflow")
    peak = matmul_peak_gflops()
    configs = [
        dict(shape=shape, cell=cell, variant=variant,
             implementation=implementation, reps=args.reps,
             backend=args.backend)
        for shape in args.shapes
        for cell in args.cells
        for variant in args.variants
        for implementation in args.implementations
        if available(implementation)
    ]
    rounds = []
    for round_index in range(args.rounds):
        rounds.append([])
        for config in configs:
            rounds[-1].append(run_isolated(config))
            print(f"  done round {round_index + 1}: {config['shape']} "
                  f"{config['cell']} {config['variant']} "
                  f"{config['implementation']}", file=sys.stderr, flush=True)
    results = combine_rounds(rounds)
    table = format_table(results, peak, args.rounds)
    print(table)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(
            {"matmul_peak_gflops": peak, "results": results}, indent=2))


if __name__ == "__main__":
    main()
