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

each timed four ways on the same sources, after warm-ups, in blocks:
4 rounds, each running every variant (the order rotating) for one
untimed call and then a quarter of ``--repeats`` (``--batch-repeats`` at
batch 32) timed calls. Load changes on this shared machine so hit all
alike, while the spin-waiting thread pools of one variant (onnxruntime's
default pool and TensorFlow's intra-op pool keep spinning briefly after
a call) do not slow the next one's timed calls, as they did call-by-call
round-robin. The table gives the median of the timed calls (a second
one the best call, the least disturbed by the load):

* ``ort``: ``kerasrnn_serving.Generator(dir).generate_ids(...)``, the
  default: one onnxruntime intra-op thread; greedy runs a NumPy search
  over the step's ``log_probs``, beam search takes each beam's best
  tokens from the step graph's ``TopK`` head (``Generator.candidates``);
* ``ort_pool``: the same with ``threads=None``, onnxruntime's default
  intra-op pool (spin-waiting on; the pool with spin-wait off, measured
  before one thread became the default, was never faster than one
  thread and erratic under load, so it is no longer timed);
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
   subprocess (no ``--threads``: the CLI's default, one thread),
   ``--stream-requests`` greedy requests with ``"stream": true`` sent
   one after another; the client times the gap between consecutive
   ``data:`` token events (p50/p99) and the time to the first token. For
   reference, the same gaps of ``Generator.stream`` in this process
   (``ort`` and ``ort_pool``).
5. What the in-graph TopK saves beam search, at batch 1 and 32 (``ort``,
   one thread): ``search.beam_search`` with ``candidates_fn=
   generator.candidates`` (what ``Generator.search`` does) against the
   same call without it (``step_fn`` returns the full ``log_probs`` and
   the search forbids, normalizes and sorts the K x V candidates in
   NumPy), from the same encoder state, the two alternating call by call
   (one thread: no pool to spin); the tokens must be the same (a
   difference is reported and makes the script exit with status 1). For
   each: ms per request and its split (encoder and step ``session.run``,
   the step's glue, the search = NumPy + Python), per step.
6. Profile of the TF-free greedy and beam loops at batch 1 and 32, for
   both thread settings: the request time split into the encoder's
   ``session.run``, the step's ``session.run``, the glue of
   ``Generator.step`` / ``Generator.candidates`` (feeds, dicts) and the
   rest (the NumPy search and Python), by timers wrapped around the
   sessions and those two methods. For scale it times the bare output
   ``MatMul`` ``(rows, H) x (H, V)`` (a one-node graph, same threads):
   the floor of a step's ``session.run``.

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
VARIANTS = ("ort", "ort_pool", "tf_function", "tf_xla")
ROUNDS = 4  # blocks of each variant per case
WIDTH = 9  # of a variant's column
# The onnxruntime intra-op threads of each TF-free variant (None: the
# default pool).
THREADS = {"ort": 1, "ort_pool": None}
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
    """The TF-free runtimes compared: ``Generator``'s default (one
    intra-op thread) and onnxruntime's default pool."""
    return {"ort": Generator(directory),
            "ort_pool": Generator(directory, threads=None)}


def session_options(threads):
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
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
        "threads": "the CLI's default (1)",
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


# --- 5 and 6: TopK saving and profile -----------------------------------------


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


class _Timed:
    """A function that adds its time to ``seconds``."""

    def __init__(self, function):
        self.function, self.seconds = function, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.function(*args)
        finally:
            self.seconds += time.perf_counter() - start


class _Timers:
    """Timers on a generator's sessions (swapped in by ``attach``, put back
    by ``detach``) and on the step functions of a request: ``split``
    gives one request's parts in seconds."""

    PARTS = ("total", "encoder_run", "step_run", "step_glue", "search")

    def __init__(self, generator):
        self.generator = generator
        self.encoder = _TimedSession(generator.sessions["encoder"])
        self.step = _TimedSession(generator._step_session)
        self.functions = []

    def attach(self):
        self.generator.sessions["encoder"] = self.encoder
        self.generator._step_session = self.step

    def detach(self):
        self.generator.sessions["encoder"] = self.encoder.session
        self.generator._step_session = self.step.session

    def timed(self, function):
        timed = _Timed(function)
        self.functions.append(timed)
        return timed

    def reset(self):
        self.encoder.seconds = self.step.seconds = 0.0
        self.step.calls = 0
        for function in self.functions:
            function.seconds = 0.0

    def split(self, total):
        """``{part: seconds}`` of a request of ``total`` seconds: the step
        functions' time less the step's ``session.run`` is their glue,
        the rest of the request less the encoder's run the search."""
        functions = sum(f.seconds for f in self.functions)
        return {"total": total, "encoder_run": self.encoder.seconds,
                "step_run": self.step.seconds,
                "step_glue": functions - self.step.seconds,
                "search": total - self.encoder.seconds - functions}


def _summary(parts, steps):
    """Medians in ms of ``{part: [seconds]}``, shares and per-step us."""
    ms = {name: float(np.median(v) * 1e3) for name, v in parts.items()}
    total = ms["total"]
    return {
        "steps": steps,
        "ms": ms,
        "min_total_ms": float(np.min(parts["total"]) * 1e3),
        "share": {name: ms[name] / total for name in ms if name != "total"},
        "per_step_us": {name: ms[name] * 1e3 / steps
                        for name in ("step_run", "step_glue", "search")},
    }


def profile(generator, method, sizes, source, repeats, warmup):
    """Where the time of one TF-free request goes (see the module doc)."""
    values = options(method, sizes)
    timers = _Timers(generator)
    # Instance attributes shadow the methods: Generator._step_fn calls
    # self.step (greedy), Generator.search passes self.candidates (beam).
    generator.step = timers.timed(generator.step)
    generator.candidates = timers.timed(generator.candidates)
    timers.attach()
    parts = {name: [] for name in _Timers.PARTS}
    steps = 0
    try:
        for index in range(warmup + repeats):
            timers.reset()
            start = time.perf_counter()
            generator.generate_ids(source, method=method,
                                   max_length=sizes["new_tokens"], **values)
            total = time.perf_counter() - start
            if index < warmup:
                continue
            steps = timers.step.calls
            for name, value in timers.split(total).items():
                parts[name].append(value)
    finally:
        timers.detach()
        del generator.step, generator.candidates
    return {"method": method, "batch": int(source.shape[0]),
            **_summary(parts, steps)}


def topk_saving(generator, sizes, source, repeats, warmup):
    """Beam search with the step graph's TopK head (``candidates_fn=
    generator.candidates``, as ``Generator.search``) and without it (the
    full-vocabulary NumPy path), alternating call by call: ``{"topk":
    summary, "numpy": summary, "same_tokens", "saving_*"}``."""
    method = "beam"
    values = generator._options(method, sizes["new_tokens"],
                                options(method, sizes))
    end_id = generator.end_id(None)
    timers = _Timers(generator)
    candidates = timers.timed(generator.candidates)
    step = timers.timed(generator.step)

    def step_fn(token_ids, state):  # Generator._step_fn, timed
        log_probs, state, _ = step(token_ids, state)
        return log_probs, state

    def request(path):
        start_ids, state = generator._start(source)
        extra = {"candidates_fn": candidates} if path == "topk" else {}
        return search.beam_search(
            step_fn, start_ids, state, end_id,
            pad_id=generator.tokens["pad_id"],
            forbidden_ids=generator.tokens["forbidden_ids"],
            constant=generator.constant, **values, **extra)

    paths = ("topk", "numpy")
    parts = {path: {name: [] for name in _Timers.PARTS} for path in paths}
    steps, ids = {}, {}
    timers.attach()
    try:
        for index in range(warmup + repeats):
            for path in paths if index % 2 == 0 else paths[::-1]:
                timers.reset()
                start = time.perf_counter()
                result = request(path)
                total = time.perf_counter() - start
                ids.setdefault(path, result.ids)
                if index < warmup:
                    continue
                steps[path] = timers.step.calls
                for name, value in timers.split(total).items():
                    parts[path][name].append(value)
    finally:
        timers.detach()
    same = bool(np.array_equal(ids["topk"], ids["numpy"]))
    entry = {"method": method, "batch": int(source.shape[0]),
             "options": values, "same_tokens": same,
             "same_tokens_fraction": float(np.mean(
                 ids["topk"] == ids["numpy"])),
             **{path: _summary(parts[path], steps[path]) for path in paths}}
    topk, plain = entry["topk"], entry["numpy"]
    entry["saving_ms_per_request"] = (plain["ms"]["total"]
                                      - topk["ms"]["total"])
    entry["saving_share"] = (entry["saving_ms_per_request"]
                             / plain["ms"]["total"])
    entry["speedup"] = plain["ms"]["total"] / topk["ms"]["total"]
    entry["saving_search_us_per_step"] = (plain["per_step_us"]["search"]
                                          - topk["per_step_us"]["search"])
    entry["extra_step_run_us_per_step"] = (
        topk["per_step_us"]["step_run"] - plain["per_step_us"]["step_run"])
    return entry


def projection_us(rows, units, vocabulary, threads, repeats):
    """``session.run`` of a one-node graph, ``MatMul`` of ``(rows, H)`` by
    an ``(H, V)`` output kernel (random): the floor of a step's run."""
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
        model.SerializeToString(), session_options(threads),
        providers=[CPU])
    x = np.random.default_rng(1).normal(size=(rows, units))
    inputs = {"x": x.astype(np.float32)}
    return median_us(lambda: session.run(None, inputs), repeats)


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
        variant: in_process_stream(generator, texts, sizes,
                                   args.stream_requests, 2)
        for variant, generator in runtimes.items()}
    print_stream(cell, result["stream"])
    result["topk"] = []
    for source in (one, batch):
        repeats = args.repeats if len(source) == 1 else args.batch_repeats
        result["topk"].append(topk_saving(runtimes["ort"], sizes, source,
                                          repeats, 1))
    print_topk(cell, result["topk"], flush=True)
    result["profile"] = []
    units = sizes["units"]
    for variant, generator in runtimes.items():
        threads = THREADS[variant]
        for method in ("greedy", "beam"):
            width = sizes["beam_width"] if method == "beam" else 1
            for source in (one, batch):
                entry = profile(generator, method, sizes, source,
                                args.profile_repeats, 1)
                entry["variant"], entry["threads"] = variant, threads
                calls = args.probe_repeats if len(source) == 1 else max(
                    10, args.probe_repeats // 5)
                entry["projection_run_us"] = projection_us(
                    len(source) * width, units, sizes["vocabulary"],
                    threads, calls)
                result["profile"].append(entry)
    print_profile(cell, result["profile"])
    return result


# --- printing ----------------------------------------------------------------


def print_header():
    print(f"{'cell':5} {'case':10} {'unit':6} "
          + " ".join(f"{_label(n):>{WIDTH}}" for n in VARIANTS)
          + f" {'tf/ort':>7} {'goal':>5} {'same':>5}")


def _label(variant):
    return "tf_func" if variant == "tf_function" else variant


def print_case(cell, name, case, sizes, key="median_ms", flush=False):
    stats = case["variants"]
    tokens = case["batch"] * sizes["new_tokens"]
    if case["batch"] == 1:
        unit = "ms"
        cells = [f"{stats[n][key]:{WIDTH}.2f}" if n in stats
                 else f"{'n/a':>{WIDTH}}" for n in VARIANTS]
    else:
        unit = "tok/s"
        cells = [f"{tokens / stats[n][key] * 1e3:{WIDTH}.0f}"
                 if n in stats else f"{'n/a':>{WIDTH}}"
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


def print_stream(cell, stream):
    gap = stream["gap_ms"]
    print(f"{cell:5} stream over HTTP (server, the CLI's default threads): "
          f"{stream['requests']} requests x {stream['tokens_per_request']}"
          f" tokens: token gap p50 {gap['p50']:.2f} ms, p90 "
          f"{gap['p90']:.2f}, p99 {gap['p99']:.2f}, max {gap['max']:.2f}; "
          f"first token p50 {stream['first_token_ms_p50']:.2f} ms; request "
          f"p50 {stream['request_ms_p50']:.1f} ms", flush=True)
    for variant, gap in stream.get("in_process_gap_ms", {}).items():
        print(f"{cell:5} Generator.stream in process ({variant}): token gap "
              f"p50 {gap['p50']:.2f} ms, p90 {gap['p90']:.2f}, p99 "
              f"{gap['p99']:.2f}, max {gap['max']:.2f}", flush=True)


def print_topk(cell, entries, flush=False):
    print(f"{cell:5} beam search (width {entries[0]['options']['beam_width']}"
          ", ort, 1 thread) with the step graph's TopK head (topk) and "
          "without it (numpy: full-vocabulary NumPy search): ms per request "
          "(median, best), per step us (step run, search)", flush=flush)
    for e in entries:
        cells = []
        for path in ("topk", "numpy"):
            x = e[path]
            cells.append(f"{path} {x['ms']['total']:8.2f} "
                         f"({x['min_total_ms']:7.2f}) run/st "
                         f"{x['per_step_us']['step_run']:6.0f} srch/st "
                         f"{x['per_step_us']['search']:6.0f}")
        mark = "same tokens" if e["same_tokens"] else (
            f"DIFFERENT TOKENS ({e['same_tokens_fraction']:.3f} agree)")
        print(f"{cell:5}   B {e['batch']:3d}: {'; '.join(cells)}; saves "
              f"{e['saving_ms_per_request']:.2f} ms/request "
              f"({100 * e['saving_share']:.0f}%, {e['speedup']:.2f}x), "
              f"search {e['saving_search_us_per_step']:.0f} us/step; "
              f"{mark}", flush=flush)


def print_profile(cell, entries):
    print(f"\n{cell} profile of the TF-free loop: per request ms (total, "
          "encoder run, step run, step glue, search = NumPy + Python), per "
          "step us (run/st, glue/st, srch/st), search share and the bare "
          "output MatMul us per step (proj); greedy searches the full "
          "log_probs in NumPy, beam uses the TopK head")
    print(f"{'variant':8} {'thr':>4} {'method':6} {'B':>3} {'total':>8} "
          f"{'enc':>6} {'run':>8} {'glue':>6} {'search':>7} {'run/st':>7} "
          f"{'glue/st':>7} {'srch/st':>7} {'srch%':>6} {'proj':>6}")
    for e in entries:
        ms, per = e["ms"], e["per_step_us"]
        threads = "pool" if e["threads"] is None else str(e["threads"])
        print(f"{e['variant']:8} {threads:>4} {e['method']:6} "
              f"{e['batch']:3d} {ms['total']:8.2f} {ms['encoder_run']:6.2f} "
              f"{ms['step_run']:8.2f} {ms['step_glue']:6.2f} "
              f"{ms['search']:7.2f} {per['step_run']:7.0f} "
              f"{per['step_glue']:7.0f} {per['search']:7.0f} "
              f"{100 * e['share']['search']:5.1f}% "
              f"{e['projection_run_us']:6.0f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per variant at batch 1, and "
                        "pairs of the TopK comparison (default 24; quick 4)")
    parser.add_argument("--batch-repeats", type=int, default=None,
                        help="the same at batch 32 (default 12; quick 4)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stream-requests", type=int, default=None,
                        help="streaming requests timed (default 30; "
                        "quick 3)")
    parser.add_argument("--profile-repeats", type=int, default=None,
                        help="requests per profile (default 6; quick 2)")
    parser.add_argument("--probe-repeats", type=int, default=None,
                        help="calls of the bare output MatMul at batch "
                        "1, a fifth at batch 32 (default 200; quick 10)")
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
    for result in results:
        print_topk(result["cell"], result["topk"])
    different = [f"{r['cell']} B {e['batch']}" for r in results
                 for e in r["topk"] if not e["same_tokens"]]
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
    if different:
        print("error: beam search with and without the TopK head gave "
              f"different tokens: {', '.join(different)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
