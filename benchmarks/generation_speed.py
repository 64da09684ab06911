"""Generation speed: the TensorFlow-free runtime against ``Seq2Seq.generate``.

For each cell (LSTM and GRU; ``--cells``) one ``Seq2Seq`` with Luong
attention (``attention="luong_general"``, H = 256 units, embedding 256,
source and target vocabularies of 8,000 words, one layer each side) is
built with random weights (seed 0: speed does not depend on training)
and exported with ``kerasrnn.export.to_onnx`` (``encoder.onnx`` +
``decoder_step.onnx``). Sources are 20 random word ids; every search
generates exactly 30 tokens (``min_length=30, max_length=30`` on both
sides, so the end token cannot cut a search short). In one run:

1. greedy at batch 1, ms per request;
2. beam search (width 5) at batch 1, ms per request;
3. greedy at batch 32, generated tokens per second;

each timed five ways on the same sources, after warm-ups, in blocks:
4 rounds, each running every variant (the order rotating) for one
untimed call and then a quarter of ``--repeats`` (``--batch-repeats`` at
batch 32) timed calls. Load changes on this shared machine so hit all
alike, while the spin-waiting thread pools of one variant (onnxruntime's
and TensorFlow's intra-op pools keep spinning briefly after a call) do
not slow the next one's timed calls, as they did call-by-call
round-robin. The table gives the median of the timed calls (a second
one the best call, the least disturbed by the load):

* ``ort``: ``kerasrnn_serving.Generator(dir).generate_ids(...)``,
  onnxruntime with its default intra-op threads, NumPy search;
* ``ort_1t``: the same with ``threads=1``;
* ``ort_nospin``: default threads with the pool's spin-wait off
  (``session.intra_op.allow_spinning=0``, set here on the Generator's
  sessions: a diagnostic of where the default loses time);
* ``tf_function``: ``model.generate(...)``, the cached ``tf.function``
  ``generate`` traces (warm: the first call, with its trace, is reported
  apart and not timed);
* ``tf_xla``: the same function as ``generate`` builds (``model._search``
  on ``split_options``' tensors) wrapped in ``tf.function(jit_compile=
  True)``; whether it compiles is reported, with the error if not.

The ratio is the faster TensorFlow variant over the faster TF-free one
(goals: >= 5x for greedy, >= 3x for beam; the JSON also has it for each
TF-free variant); the tokens of both sides are compared as well.

4. Streaming: ``python -m kerasrnn_serving serve DIR --port 0`` in a
   subprocess (default threads), ``--stream-requests`` greedy requests
   with ``"stream": true`` sent one after another; the client times the
   gap between consecutive ``data:`` token events (p50/p99) and the time
   to the first token. For reference, the same gaps of
   ``Generator.stream`` in this process (default threads and one).
5. Profile of the TF-free greedy and beam loops at batch 1 and 32, for
   the three thread settings: the request time split into the encoder's
   ``session.run``, the step's ``session.run``, ``Generator.step``'s glue
   (dicts) and the rest (the NumPy search and Python), by timers wrapped
   around the sessions and the step function. To judge whether a TopK
   node in the step graph would pay off, it also times the full-vocabulary
   NumPy work alone (forbid, log_softmax, argmax or the top-2K of the
   K x V candidates) on real log-probabilities, and the step graph with a
   ``TopK`` (k = 1 greedy, 2K beam) appended in place of the
   ``log_probs`` output: the saving per step is roughly the first minus
   the extra ``session.run`` time of the second (counted as 0 where the
   TopK graph came out faster, which is noise or the smaller output).
   For scale it times the bare output ``MatMul`` ``(rows, H) x (H, V)``
   (a one-node graph, same threads): the floor of a step.

    python benchmarks/generation_speed.py         # 2.5-6 min on 2 busy cores
    python benchmarks/generation_speed.py --quick # smoke run: tiny, ~20 s
    python benchmarks/generation_speed.py --cells gru --repeats 40 \\
        --out artifacts/generation_speed_gru.json

Timings on a loaded machine are noisy: compare the ratios (same run, same
load), not absolute numbers across runs; the report records the load
average before and after.
"""

import argparse
import http.client
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
from onnx import helper

import kerasrnn.export
from kerasrnn.decoding.options import split_options
from kerasrnn.models.seq2seq import Seq2Seq
from kerasrnn.models.text import Tokenizer
from kerasrnn_serving import Generator
from kerasrnn_serving import search

FULL = {"units": 256, "embedding_dim": 256, "vocabulary": 8000,
        "source_length": 20, "new_tokens": 30, "beam_width": 5,
        "batch": 32}
QUICK = {"units": 32, "embedding_dim": 32, "vocabulary": 300,
         "source_length": 6, "new_tokens": 8, "beam_width": 5,
         "batch": 4}
GOALS = {"greedy_b1": 5.0, "beam_b1": 3.0}
VARIANTS = ("ort", "ort_1t", "ort_nospin", "tf_function", "tf_xla")
ROUNDS = 4  # blocks of each variant per case
# The onnxruntime thread setting of each TF-free variant.
SETTINGS = {"ort": "default", "ort_1t": 1, "ort_nospin": "nospin"}
CPU = "CPUExecutionProvider"
BOS, EOS = 2, 3  # kerasrnn.models.text.Tokenizer's layout
FIRST_WORD = 4


# --- the model ---------------------------------------------------------------


def build(cell, sizes, directory):
    """A random-weight Seq2Seq with word tokenizers, exported to
    ``directory``; returns ``(model, manifest, export seconds)``."""
    vocabulary = ["", "[UNK]", "[BOS]", "[EOS]"] + [
        f"w{i}" for i in range(FIRST_WORD, sizes["vocabulary"])
    ]
    keras.utils.set_random_seed(0)
    model = Seq2Seq(
        sizes["vocabulary"], sizes["vocabulary"], bos_id=BOS, eos_id=EOS,
        embedding_dim=sizes["embedding_dim"], units=sizes["units"],
        cell=cell, attention="luong_general",
        max_target_length=sizes["new_tokens"],
        source_tokenizer=Tokenizer("word", vocabulary=vocabulary),
        target_tokenizer=Tokenizer("word", vocabulary=vocabulary),
        name=f"{cell}_luong",
    )
    start = time.perf_counter()
    manifest = kerasrnn.export.to_onnx(model, directory)
    return model, manifest, time.perf_counter() - start


def generators(directory):
    """The TF-free runtimes compared: onnxruntime's default intra-op
    threads, one thread, and default threads with the pool's spin-wait
    off (``session.intra_op.allow_spinning=0``; ``Generator`` takes no
    such argument, so its sessions are rebuilt with it)."""
    no_spin = Generator(directory)
    for name, graph in no_spin.manifest["graphs"].items():
        no_spin.sessions[name] = onnxruntime.InferenceSession(
            str(pathlib.Path(directory) / graph["file"]),
            session_options(None, spin=False), providers=[CPU])
    no_spin._step_session = no_spin.sessions[
        "decoder_step" if no_spin.kind == "seq2seq" else "step"]
    return {"ort": Generator(directory),
            "ort_1t": Generator(directory, threads=1),
            "ort_nospin": no_spin}


def session_options(threads, spin=True):
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "0")
    return options


def sources(sizes, batch, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(FIRST_WORD, sizes["vocabulary"],
                        (batch, sizes["source_length"])).astype(np.int32)


def options(method, sizes):
    values = {"min_length": sizes["new_tokens"]}
    if method == "beam":
        values["beam_width"] = sizes["beam_width"]
    return values


# --- timing ------------------------------------------------------------------


def blocked(functions, repeats, warmup, rounds=ROUNDS):
    """Timing in rotating blocks (see the module doc): ``{name:
    {"median_ms", "min_ms", "calls"}}`` and, per round, each function's
    median ms in its block."""
    names = list(functions)
    for function in functions.values():
        for _ in range(warmup):
            function()
    rounds = max(1, min(rounds, repeats))
    per_block = -(-repeats // rounds)
    times = {name: [] for name in names}
    medians = []
    for index in range(rounds):
        shift = index % len(names)
        medians.append({})
        for name in names[shift:] + names[:shift]:
            functions[name]()  # untimed: absorbs the previous one's spin
            block = []
            for _ in range(per_block):
                start = time.perf_counter()
                functions[name]()
                block.append((time.perf_counter() - start) * 1e3)
            times[name] += block
            medians[-1][name] = float(np.median(block))
    stats = {name: {"median_ms": float(np.median(times[name])),
                    "min_ms": float(np.min(times[name])),
                    "calls": len(times[name])}
             for name in names}
    return stats, medians


def median_us(function, repeats, warmup=5):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


# --- the TensorFlow side -----------------------------------------------------


def tf_function_runner(model, method, sizes, source):
    """``model.generate`` (warm); returns ``(run, first-call seconds)``."""
    values = options(method, sizes)

    def run():
        result = model.generate(source, method=method,
                                max_length=sizes["new_tokens"], **values)
        return np.asarray(result.ids)

    start = time.perf_counter()
    run()
    return run, time.perf_counter() - start


def xla_runner(model, method, sizes, source):
    """``generate``'s function with ``jit_compile=True``; returns ``(run or
    None, {"compiles", "first_call_s" | "error"})``."""
    static, dynamic = split_options(method, sizes["new_tokens"],
                                    options(method, sizes))
    function = tf.function(
        lambda ids, values: model._search(ids, method, **static, **values),
        input_signature=[
            tf.TensorSpec([None, None], "int32"),
            {k: tf.TensorSpec([], v.dtype) for k, v in dynamic.items()},
        ],
        jit_compile=True,
    )

    def run():
        _, values = split_options(method, sizes["new_tokens"],
                                  options(method, sizes))
        return np.asarray(function(model.check_source(source), values).ids)

    start = time.perf_counter()
    try:
        run()
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        message = " ".join(str(error).split())
        return None, {"compiles": False,
                      "error": f"{type(error).__name__}: {message[:600]}"}
    return run, {"compiles": True,
                 "first_call_s": time.perf_counter() - start}


# --- comparisons 1-3 ---------------------------------------------------------


def compare(model, generators, method, sizes, source, repeats, warmup):
    """One case: the four variants timed round-robin."""
    values = options(method, sizes)
    functions = {}
    for name, generator in generators.items():
        functions[name] = (
            lambda g=generator: g.generate_ids(
                source, method=method, max_length=sizes["new_tokens"],
                **values).ids)
    functions["tf_function"], first_s = tf_function_runner(
        model, method, sizes, source)
    xla, xla_info = xla_runner(model, method, sizes, source)
    if xla is not None:
        functions["tf_xla"] = xla
    ort_ids = functions["ort"]()
    tf_ids = functions["tf_function"]()
    stats, rounds = blocked(functions, repeats, warmup)
    tf_best = min((n for n in stats if n.startswith("tf")),
                  key=lambda n: stats[n]["median_ms"])
    ort_best = min((n for n in stats if n.startswith("ort")),
                   key=lambda n: stats[n]["median_ms"])
    tokens = source.shape[0] * sizes["new_tokens"]
    return {
        "method": method,
        "batch": int(source.shape[0]),
        "options": values,
        "variants": stats,
        "tokens_per_second": {n: tokens / (s["median_ms"] / 1e3)
                              for n, s in stats.items()},
        "tf_function_first_call_s": first_s,
        "xla": xla_info,
        "best_tf": tf_best,
        "best_ort": ort_best,
        "ratio_best_tf_over_best_ort": stats[tf_best]["median_ms"]
        / stats[ort_best]["median_ms"],
        "ratio_per_ort_variant": {
            n: stats[tf_best]["median_ms"] / stats[n]["median_ms"]
            for n in stats if n.startswith("ort")},
        "paired_ratio_tf_function_over_ort": float(np.median(
            [r["tf_function"] / r["ort"] for r in rounds])),
        "same_tokens_fraction": float(np.mean(ort_ids == tf_ids)),
        "rounds_ms": rounds,
    }


# --- 4: streaming ------------------------------------------------------------


def stream_latency(directory, texts, sizes, requests, warmup):
    """The real server in a subprocess; token gaps seen by a client."""
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "kerasrnn_serving", "serve",
               str(directory), "--port", "0"]
    root = pathlib.Path(__file__).resolve().parent.parent
    start = time.perf_counter()
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=root)
    try:
        host, port, banner = _wait_for_server(server, log.name)
        ready_s = time.perf_counter() - start
        gaps, first, totals, counts = [], [], [], []
        for index in range(warmup + requests):
            text = texts[index % len(texts)]
            times, sent, end = _stream_once(host, port, text, sizes)
            if index < warmup:
                continue
            counts.append(len(times))
            first.append((times[0] - sent) * 1e3)
            totals.append((end - sent) * 1e3)
            gaps.extend(np.diff(times) * 1e3)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        os.unlink(log.name)
    gaps = np.asarray(gaps)
    return {
        "command": " ".join(command[1:]),
        "server_banner": banner,
        "server_ready_s": ready_s,
        "requests": requests,
        "tokens_per_request": sorted(set(counts)),
        "gaps": int(gaps.size),
        "gap_ms": {"p50": float(np.percentile(gaps, 50)),
                   "p90": float(np.percentile(gaps, 90)),
                   "p99": float(np.percentile(gaps, 99)),
                   "max": float(gaps.max())},
        "first_token_ms_p50": float(np.median(first)),
        "request_ms_p50": float(np.median(totals)),
    }


def in_process_stream(generator, texts, sizes, requests, warmup):
    """``Generator.stream`` in this process: the token gaps without HTTP,
    the JSON events or a second process."""
    gaps = []
    for index in range(warmup + requests):
        times = []
        for event in generator.stream(texts[index % len(texts)],
                                      "greedy", sizes["new_tokens"],
                                      min_length=sizes["new_tokens"]):
            if not event.get("done"):
                times.append(time.perf_counter())
        if index >= warmup:
            gaps.extend(np.diff(times) * 1e3)
    return {"p50": float(np.percentile(gaps, 50)),
            "p90": float(np.percentile(gaps, 90)),
            "p99": float(np.percentile(gaps, 99)),
            "max": float(np.max(gaps))}


def _wait_for_server(server, log_path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pathlib.Path(log_path).read_text()
        found = re.search(r"serving on http://([\d.]+):(\d+)", text)
        if found:
            banner = text.splitlines()[0] if text else ""
            return found.group(1), int(found.group(2)), banner
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{text}")
        time.sleep(0.05)
    raise RuntimeError("the server did not start within "
                       f"{timeout} s:\n{pathlib.Path(log_path).read_text()}")


def _stream_once(host, port, text, sizes):
    """``(token event times, send time, end time)`` of one request."""
    body = json.dumps({"texts": [text], "method": "greedy", "stream": True,
                       "max_length": sizes["new_tokens"],
                       "min_length": sizes["new_tokens"]})
    connection = http.client.HTTPConnection(host, port, timeout=60)
    sent = time.perf_counter()
    connection.request("POST", "/v1/generate", body,
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {response.read()[:500]}")
    times, done = [], False
    while True:
        line = response.readline()
        if not line:
            break
        if line.startswith(b"event: done"):
            done = True
        elif line.startswith(b"data:") and not done:
            times.append(time.perf_counter())
    end = time.perf_counter()
    connection.close()
    if len(times) != sizes["new_tokens"]:
        raise RuntimeError(f"expected {sizes['new_tokens']} token events, "
                           f"received {len(times)}")
    return times, sent, end


# --- 5: profile --------------------------------------------------------------


class _TimedSession:
    """An ``InferenceSession`` whose ``run`` adds its time to ``seconds``."""

    def __init__(self, session):
        self.session, self.seconds, self.calls = session, 0.0, 0

    def run(self, *args, **kwargs):
        start = time.perf_counter()
        values = self.session.run(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return values

    def __getattr__(self, name):
        return getattr(self.session, name)


def profile(generator, method, sizes, source, repeats, warmup):
    """Where the time of one TF-free request goes (see the module doc)."""
    values = options(method, sizes)
    encoder = _TimedSession(generator.sessions["encoder"])
    step_session = _TimedSession(generator._step_session)
    original_step = generator.step
    step_total = [0.0]

    def timed_step(token_ids, state):
        start = time.perf_counter()
        answer = original_step(token_ids, state)
        step_total[0] += time.perf_counter() - start
        return answer

    generator.sessions["encoder"] = encoder
    generator._step_session = step_session
    generator.step = timed_step
    parts = {"total": [], "encoder_run": [], "step_run": [],
             "step_glue": [], "search": []}
    steps = 0
    try:
        for index in range(warmup + repeats):
            encoder.seconds = step_session.seconds = step_total[0] = 0.0
            step_session.calls = 0
            start = time.perf_counter()
            generator.generate_ids(source, method=method,
                                   max_length=sizes["new_tokens"], **values)
            total = time.perf_counter() - start
            if index < warmup:
                continue
            steps = step_session.calls
            parts["total"].append(total)
            parts["encoder_run"].append(encoder.seconds)
            parts["step_run"].append(step_session.seconds)
            parts["step_glue"].append(step_total[0] - step_session.seconds)
            parts["search"].append(total - encoder.seconds - step_total[0])
    finally:
        generator.sessions["encoder"] = encoder.session
        generator._step_session = step_session.session
        del generator.step
    ms = {name: float(np.median(v) * 1e3) for name, v in parts.items()}
    total = ms["total"]
    return {
        "method": method, "batch": int(source.shape[0]), "steps": steps,
        "ms": ms,
        "share": {name: ms[name] / total for name in ms if name != "total"},
        "per_step_us": {name: ms[name] * 1e3 / steps
                        for name in ("step_run", "step_glue", "search")},
    }


def full_vocabulary_numpy_us(generator, method, sizes, source, repeats):
    """The per-step NumPy work over the whole vocabulary that an in-graph
    TopK would replace, on real log-probabilities."""
    width = sizes["beam_width"] if method == "beam" else 1
    state = search.tile_batch(generator.encode(source), width)
    rows = source.shape[0] * width
    tokens = np.full(rows, BOS, np.int32)
    log_probs = generator.step(tokens, state)[0]
    forbidden = generator.tokens["forbidden_ids"]
    batch = source.shape[0]
    live = np.zeros((batch, width), np.float32)

    def greedy():
        logits = search.forbid(log_probs, forbidden, EOS, True)
        chosen = np.argmax(logits, axis=-1)
        np.take_along_axis(search.log_softmax(logits), chosen[:, None], 1)

    def beam():
        logits = search.forbid(log_probs, forbidden, EOS, True)
        vocabulary = logits.shape[-1]
        candidates = (live[:, :, None] + search.log_softmax(logits).reshape(
            batch, width, vocabulary)).reshape(batch, width * vocabulary)
        search.top_k(candidates, 2 * width)

    return median_us(greedy if method == "greedy" else beam, repeats)


def topk_probe(directory, generator, method, sizes, source, setting,
               repeats):
    """``session.run`` of the step graph as exported and with a TopK in
    place of its ``log_probs`` output (forbidden ids masked first)."""
    width = sizes["beam_width"] if method == "beam" else 1
    k = 1 if method == "greedy" else 2 * width
    model = onnx.load(str(pathlib.Path(directory) / "decoder_step.onnx"))
    graph = model.graph
    vocabulary = sizes["vocabulary"]
    mask = np.zeros(vocabulary, np.float32)
    mask[generator.tokens["forbidden_ids"]] = -np.inf
    graph.initializer.extend([
        onnx.numpy_helper.from_array(mask, "probe/forbidden"),
        onnx.numpy_helper.from_array(np.array([k], np.int64), "probe/k"),
    ])
    graph.node.extend([
        helper.make_node("Add", ["log_probs", "probe/forbidden"],
                         ["probe/masked"]),
        helper.make_node("TopK", ["probe/masked", "probe/k"],
                         ["top_log_probs", "top_ids"], axis=-1),
    ])
    outputs = [o for o in graph.output if o.name != "log_probs"]
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("top_log_probs", onnx.TensorProto.FLOAT,
                                      ["batch", k]),
        helper.make_tensor_value_info("top_ids", onnx.TensorProto.INT64,
                                      ["batch", k]),
        *outputs,
    ])
    probe = onnxruntime.InferenceSession(
        model.SerializeToString(),
        session_options(setting if setting == 1 else None,
                        spin=setting != "nospin"),
        providers=[CPU])
    state = search.tile_batch(generator.encode(source), width)
    feeds = {"token_ids": np.full(source.shape[0] * width, BOS, np.int32),
             **state}
    projection, inputs = _projection_session(
        state["h_0"].shape, vocabulary, setting)
    plain = generator._step_session
    stats, _ = blocked({"plain": lambda: plain.run(None, feeds),
                        "topk": lambda: probe.run(None, feeds),
                        "projection": lambda: projection.run(None, inputs)},
                       repeats, 5)
    return {"k": k, "plain_run_us": stats["plain"]["median_ms"] * 1e3,
            "topk_run_us": stats["topk"]["median_ms"] * 1e3,
            "topk_extra_us": (stats["topk"]["median_ms"]
                              - stats["plain"]["median_ms"]) * 1e3,
            "projection_run_us": stats["projection"]["median_ms"] * 1e3}


def _projection_session(shape, vocabulary, setting):
    """A one-node graph, ``MatMul`` of ``(rows, H)`` by the ``(H, V)``
    output kernel (random): the floor of a step's ``session.run``."""
    rows, units = shape
    kernel = np.random.default_rng(0).normal(
        size=(units, vocabulary)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "kernel"], ["y"])], "projection",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                       ["rows", units])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT,
                                       ["rows", vocabulary])],
        initializer=[onnx.numpy_helper.from_array(kernel, "kernel")])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(),
        session_options(setting if setting == 1 else None,
                        spin=setting != "nospin"),
        providers=[CPU])
    x = np.random.default_rng(1).normal(size=(rows, units))
    return session, {"x": x.astype(np.float32)}


# --- the run -----------------------------------------------------------------


def run_cell(cell, sizes, args, root):
    directory = pathlib.Path(root) / cell
    model, manifest, export_s = build(cell, sizes, directory)
    runtimes = generators(directory)
    one = sources(sizes, 1, 1)
    batch = sources(sizes, sizes["batch"], 2)
    result = {"cell": cell, "export_s": export_s,
              "parity": manifest.get("parity"),
              "provider": runtimes["ort"].provider, "cases": {}}
    cases = (("greedy_b1", "greedy", one), ("beam_b1", "beam", one),
             (f"greedy_b{sizes['batch']}", "greedy", batch))
    for name, method, source in cases:
        repeats = args.repeats if len(source) == 1 else args.batch_repeats
        case = compare(model, runtimes, method, sizes, source, repeats,
                       args.warmup)
        case["goal"] = GOALS.get(name)
        result["cases"][name] = case
        print_case(cell, name, case, sizes, flush=True)
    texts = [" ".join(f"w{i}" for i in row) for row in sources(sizes, 8, 3)]
    encoded = runtimes["ort"].encode_texts(texts[:1])
    assert len(encoded[0]) == sizes["source_length"], encoded
    result["stream"] = stream_latency(directory, texts, sizes,
                                      args.stream_requests, warmup=2)
    result["stream"]["in_process_gap_ms"] = {
        variant: in_process_stream(runtimes[variant], texts, sizes,
                                   args.stream_requests, 2)
        for variant in ("ort", "ort_1t")}
    print_stream(cell, result["stream"])
    result["profile"] = []
    for variant, generator in runtimes.items():
        setting = SETTINGS[variant]
        for method in ("greedy", "beam"):
            for source in (one, batch):
                entry = profile(generator, method, sizes, source,
                                args.profile_repeats, 1)
                entry["threads"] = setting
                calls = args.probe_repeats if len(source) == 1 else max(
                    10, args.probe_repeats // 5)
                entry["full_vocabulary_numpy_us"] = full_vocabulary_numpy_us(
                    generator, method, sizes, source, calls)
                entry["topk_probe"] = topk_probe(
                    directory, generator, method, sizes, source, setting,
                    calls)
                entry["estimated_saving_per_step_us"] = (
                    entry["full_vocabulary_numpy_us"]
                    - max(0.0, entry["topk_probe"]["topk_extra_us"]))
                entry["estimated_saving_share"] = (
                    entry["estimated_saving_per_step_us"] * entry["steps"]
                    / (entry["ms"]["total"] * 1e3))
                result["profile"].append(entry)
    print_profile(cell, result["profile"])
    return result


# --- printing ----------------------------------------------------------------


def print_header():
    print(f"{'cell':5} {'case':10} {'unit':6} {'ort':>9} {'ort_1t':>9} "
          f"{'ort_nospin':>10} {'tf_func':>9} {'tf_xla':>9} {'tf/ort':>7} "
          f"{'goal':>5} {'same':>5}")


def print_case(cell, name, case, sizes, key="median_ms", flush=False):
    stats = case["variants"]
    tokens = case["batch"] * sizes["new_tokens"]
    if case["batch"] == 1:
        unit = "ms"
        cells = [f"{stats[n][key]:{_width(n)}.2f}" if n in stats
                 else f"{'n/a':>{_width(n)}}" for n in VARIANTS]
    else:
        unit = "tok/s"
        cells = [f"{tokens / stats[n][key] * 1e3:{_width(n)}.0f}"
                 if n in stats else f"{'n/a':>{_width(n)}}"
                 for n in VARIANTS]
    goal = case["goal"]
    ratio = (min(v[key] for n, v in stats.items() if n.startswith("tf"))
             / min(v[key] for n, v in stats.items() if n.startswith("ort")))
    mark = "" if goal is None else ("ok" if ratio >= goal else "MISS")
    goal_text = f"{goal:.0f}x" if goal else "-"
    print(f"{cell:5} {name:10} {unit:6} {' '.join(cells)} {ratio:6.2f}x "
          f"{goal_text:>5} {case['same_tokens_fraction']:5.2f} {mark}",
          flush=flush)
    if not case["xla"]["compiles"]:
        print(f"      XLA does not compile: {case['xla']['error']}")


def _width(variant):
    return max(9, len(variant))


def print_stream(cell, stream):
    gap = stream["gap_ms"]
    print(f"{cell:5} stream over HTTP (server, default threads): "
          f"{stream['requests']} requests x {stream['tokens_per_request']}"
          f" tokens: token gap p50 {gap['p50']:.2f} ms, p90 "
          f"{gap['p90']:.2f}, p99 {gap['p99']:.2f}, max {gap['max']:.2f}; "
          f"first token p50 {stream['first_token_ms_p50']:.2f} ms; request "
          f"p50 {stream['request_ms_p50']:.1f} ms", flush=True)
    for variant, gap in stream.get("in_process_gap_ms", {}).items():
        print(f"{cell:5} Generator.stream in process ({variant}): token gap "
              f"p50 {gap['p50']:.2f} ms, p90 {gap['p90']:.2f}, p99 "
              f"{gap['p99']:.2f}, max {gap['max']:.2f}", flush=True)


def print_profile(cell, entries):
    print(f"\n{cell} profile of the TF-free loop: per request ms (total, "
          "encoder run, step run, step glue, search = NumPy + Python), per "
          "step us (run/st, srch/st), search share, full-vocabulary NumPy "
          "us/step (fullV), extra us/step of a TopK node (topk+), the bare "
          "output MatMul us/step (proj) and the estimated share of the "
          "request an in-graph TopK saves (save%)")
    print(f"{'thr':>7} {'method':6} {'B':>3} {'total':>8} {'enc':>6} "
          f"{'run':>8} {'glue':>6} {'search':>7} {'run/st':>7} "
          f"{'srch/st':>7} {'srch%':>6} {'fullV':>7} {'topk+':>7} "
          f"{'proj':>6} {'save%':>6}")
    for e in entries:
        ms, per = e["ms"], e["per_step_us"]
        print(f"{str(e['threads']):>7} {e['method']:6} {e['batch']:3d} "
              f"{ms['total']:8.2f} {ms['encoder_run']:6.2f} "
              f"{ms['step_run']:8.2f} {ms['step_glue']:6.2f} "
              f"{ms['search']:7.2f} {per['step_run']:7.0f} "
              f"{per['search']:7.0f} {100 * e['share']['search']:5.1f}% "
              f"{e['full_vocabulary_numpy_us']:7.0f} "
              f"{e['topk_probe']['topk_extra_us']:7.0f} "
              f"{e['topk_probe']['projection_run_us']:6.0f} "
              f"{100 * e['estimated_saving_share']:5.1f}%", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per variant at batch 1 (default "
                        "24; quick 4)")
    parser.add_argument("--batch-repeats", type=int, default=None,
                        help="timed calls per variant at batch 32 (default "
                        "12; quick 4)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stream-requests", type=int, default=None,
                        help="streaming requests timed (default 30; "
                        "quick 3)")
    parser.add_argument("--profile-repeats", type=int, default=None,
                        help="requests per profile (default 6; quick 2)")
    parser.add_argument("--probe-repeats", type=int, default=None,
                        help="calls per NumPy/TopK probe at batch 1, a "
                        "fifth at batch 32 (default 200; quick 10)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats: a smoke run")
    parser.add_argument("--out", default="artifacts/generation_speed.json")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    defaults = {"repeats": (24, 4), "batch_repeats": (12, 4),
                "stream_requests": (30, 3), "profile_repeats": (6, 2),
                "probe_repeats": (200, 10)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"sizes {sizes}; random weights; {os.cpu_count()} CPUs, load "
          f"average {load_before[0]:.2f}; repeats {args.repeats}")
    print("batch-1 cases: median ms per request; batch-"
          f"{sizes['batch']}: generated tokens/s; tf/ort = the faster TF "
          "variant over the faster TF-free one; same = token agreement")
    print_header()
    results = []
    with tempfile.TemporaryDirectory() as root:
        for cell in args.cells.split(","):
            results.append(run_cell(cell, sizes, args, root))
            print()
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started
    print("summary: medians")
    print_header()
    for result in results:
        for name, case in result["cases"].items():
            print_case(result["cell"], name, case, sizes)
    print("summary: best call of each (the least disturbed by the load)")
    print_header()
    for result in results:
        for name, case in result["cases"].items():
            print_case(result["cell"], name, case, sizes, key="min_ms")
    for result in results:
        print_stream(result["cell"], result["stream"])
    print(f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          f"{elapsed:.0f} s")
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": "generation_speed",
        "command": " ".join([pathlib.Path(sys.executable).name,
                             *sys.argv]),
        "machine": {"platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "onnxruntime": onnxruntime.__version__,
                    "tensorflow": tf.__version__,
                    "keras": keras.__version__,
                    "numpy": np.__version__},
        "sizes": sizes,
        "weights": "random (keras.utils.set_random_seed(0)), untrained",
        "quick": args.quick,
        "repeats": args.repeats, "batch_repeats": args.batch_repeats,
        "warmup": args.warmup,
        "stream_requests": args.stream_requests,
        "profile_repeats": args.profile_repeats,
        "probe_repeats": args.probe_repeats,
        "goals": GOALS,
        "elapsed_s": elapsed,
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
