"""Serving under load: the HTTP server against raw onnxruntime, on loopback.

``python -m kerasrnn_serving serve DIR --port 0`` runs in a subprocess (its
default flags unless a phase says otherwise); the clients run in this
process on one asyncio loop, each a persistent HTTP/1.1 keep-alive
connection over a raw socket (``asyncio.Protocol``: prebuilt request bytes,
the answer's head parsed for its status and Content-Length, nothing else),
closed loop (one request in flight per client). The classifier is
``examples/quickstart.py``'s (Embedding(10, 16, mask_zero) -> bidirectional
``kerasrnn.LSTM(32)`` -> Dense(2)) with random weights (seed 0: speed does
not depend on training), exported with ``kerasrnn.export.to_onnx``; its
inputs are quickstart's: tokens 1..9, lengths 4..20, right-padded to 20.
Everything is bounded (``--seconds`` per load phase, deadlines on every
wait) and nothing leaves the loopback. Phases, in one run:

1. Raw onnxruntime: ``session.run`` on the same rows (batch 1, and 32),
   calls/s with one intra-op thread and with onnxruntime's default pool,
   measured before the server starts and again after the load phases
   (the drift shows how steady the machine was).
2. The client's own cost: the same client against ``GET /health`` (a
   trivial route), 64 connections: answers/s, and the client's and the
   server's CPU per answer (the server's is the floor of its stack:
   HTTP, routing, the guard, the metrics).
   During every load phase the client's and the server's CPU are read
   (``time.process_time`` here, ``/proc/PID/stat`` there): the client
   is not the bottleneck when it can drive /health far faster than the
   server answers predicts and its CPU share is small.
3. 64 clients x batch 1 and 16 clients x batch 32 on ``/v1/predict`` for
   ``--seconds`` each (after a warm-up), for each server ``--workers``
   count of ``--workers`` (default 1 and 2): errors, p50/p99/max latency,
   throughput (rows/s) against the fastest raw onnxruntime figure of the
   same batch size (of the four: 1 thread or the pool, before or after;
   the strictest reference), the mean rows per batched ``session.run`` (the
   server's ``kerasrnn_batch_rows`` histogram, ``kind="predict"``), and
   a sample of the answers checked against onnxruntime on the same rows.
   Targets: 0 errors, p99 <= 50 ms, max <= 1 s, >= 50 % of raw at batch
   1; >= 80 % of raw at batch 32.
4. Memory: ``--rss-requests`` requests of the largest size the server's
   limits allow (``/v1/metadata``'s ``limits``: ``max_rows`` rows of
   ``min(max_length, max_cells // max_rows)`` steps), one at a time
   (``--rss-concurrency``); the server's VmRSS (``/proc/PID/status``)
   after the first and after the last must be within 50 MB. The RSS
   after the second is reported too: onnxruntime's memory pattern
   (``enable_mem_pattern``, on by default) allocates its planned block
   on a shape's second run, a one-off step (about 66 MB for this size),
   so growth after the second is what a leak would show.
5. Slow and idle sockets: ``--slow-sockets`` connections held open, a
   third sending nothing, a third half a request head, a third a whole
   head and then one body byte every 0.5 s (the server runs with
   ``--header-timeout`` and ``--body-timeout``), while 8 normal clients
   keep asking (target: no client waits over 1 s for a 200, errors and
   retries included, and 0 errors; a client waits ``BACK_OFF`` after an
   error answer before it asks again); then when
   the server closed each slow socket (target: the head-less ones within
   ``--header-timeout`` + 1 s, the trickling ones within
   ``--body-timeout`` + ``--header-timeout`` + 1 s, after their 408).
6. SIGTERM under load: 32 clients on a server with ``--access-log``,
   SIGTERM after 2 s, the clients going on until their reconnection is
   refused. Every request the server accepted (an access-log line) must
   have reached its client complete (target: the 200s logged equal the
   200s received, no truncated answer), and the process must exit 0; the
   requests completed after the signal and those refused (connection
   closed before any byte of an answer, or refused) are counted.
7. Generation: a tiny ``kerasrnn.models.Seq2Seq`` (char level,
   bidirectional GRU, Bahdanau attention, random weights) exported with
   ``to_onnx``; ``--generate-clients`` concurrent greedy ``/v1/generate``
   clients (``min_length = max_length = 24``: every request decodes 24
   steps), then 1 client for reference: requests/s, tokens/s, latency,
   and the mean rows per decoder-step ``session.run`` (``kind="step"``):
   above 1 when continuous batching merges the concurrent requests'
   steps; then the concurrent clients again on the largest ``--workers``
   count.

    python benchmarks/serving_load.py --quick     # smoke run, ~1 min
    python benchmarks/serving_load.py --seconds 60  # ~8 min on 2 cores

Prints a table (figure, value, target, pass/miss) and writes everything to
``--out`` (default ``artifacts/serving_load.json``); a missed target is
printed and recorded, never hidden (the exit status stays 0 unless the
benchmark itself fails). The client shares the machine with the server:
on 2 cores read the CPU columns with the figures, and compare ratios from
one run (same load), not absolute numbers across runs; the load average
is recorded before and after.
"""

import argparse
import asyncio
import errno
import json
import os
import pathlib
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CPU = "CPUExecutionProvider"
VOCAB, MAX_LENGTH = 10, 20   # examples/quickstart.py's data
TICK = os.sysconf("SC_CLK_TCK")
TARGETS = {
    "b1_errors": 0, "b1_p99_ms": 50.0, "b1_max_ms": 1000.0,
    "b1_vs_raw": 0.5, "b32_vs_raw": 0.8, "rss_growth_mb": 50.0,
    "slow_max_ms": 1000.0,
}
GENERATE_STEPS = 24
# Seconds a client waits after an error answer before its next request.
BACK_OFF = 0.01


# --- models ------------------------------------------------------------------


def export_models(root):
    """Exports quickstart's classifier and a tiny Seq2Seq (random
    weights) under ``root``; returns their directories."""
    import keras

    from kerasrnn.export import to_onnx
    from kerasrnn.models import Seq2Seq
    from kerasrnn.models.text import Tokenizer

    sys.path.insert(0, str(ROOT / "examples"))
    import quickstart

    keras.utils.set_random_seed(0)
    classifier = pathlib.Path(root) / "classifier"
    to_onnx(quickstart.build_model(), classifier)
    sources = Tokenizer("char")
    sources.adapt([SOURCE_CHARS])
    targets = Tokenizer("char")
    targets.adapt(["0123456789-"])
    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id, embedding_dim=8,
        units=16, cell="gru", bidirectional=True, attention="bahdanau",
        max_source_length=16, max_target_length=12,
        source_tokenizer=sources, target_tokenizer=targets,
        name="tiny_dates",
    )
    seq2seq = pathlib.Path(root) / "seq2seq"
    to_onnx(model, seq2seq)
    return classifier, seq2seq


SOURCE_CHARS = "0123456789 abcdefghijklmnopqrstuvwxyz"


def rows(count, seed):
    """quickstart's inputs: tokens 1..9, lengths 4..20, right-padded."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((count, MAX_LENGTH), np.int32)
    for row, length in enumerate(rng.integers(4, MAX_LENGTH + 1, count)):
        tokens[row, :length] = rng.integers(1, VOCAB, length)
    return tokens


def session(directory, threads):
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        str(pathlib.Path(directory) / "model.onnx"), options,
        providers=[CPU])


def raw_onnxruntime(directory, data, batch, seconds):
    """``session.run`` calls/s and rows/s on ``batch``-row slices of
    ``data``, for one thread and the default pool."""
    result = {}
    for name, threads in (("1_thread", 1), ("default", None)):
        runner = session(directory, threads)
        feeds = [{"tokens": data[start:start + batch]}
                 for start in range(0, len(data) - batch + 1, batch)]
        for feed in feeds[:20]:
            runner.run(None, feed)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for feed in feeds:
                runner.run(None, feed)
            calls += len(feeds)
        elapsed = time.perf_counter() - started
        result[name] = {"calls_per_s": calls / elapsed,
                        "rows_per_s": calls * batch / elapsed}
        del runner
    return result


# --- the server process ------------------------------------------------------


class Server:
    """``python -m kerasrnn_serving serve DIR --port 0 FLAGS`` in a
    subprocess, its stderr in a temporary file."""

    def __init__(self, directory, *flags, timeout=120):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kerasrnn_serving", "serve",
             str(directory), "--port", "0", *map(str, flags)],
            stdout=subprocess.PIPE, stderr=self.stderr, bufsize=0,
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.pid = self.process.pid
        received, deadline = b"", time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"serving on http://" not in received or not (
            received.endswith(b"\n")
        ):
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0]
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.process.kill()
                self.process.wait()
                raise RuntimeError("the server did not start:\n"
                                   + received.decode() + self.errors())
            received += chunk
        line = [x for x in received.decode().splitlines()
                if x.startswith("serving on")][0]
        self.url = line.split()[-1]
        host, port = self.url[len("http://"):].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def errors(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def rss_mb(self):
        return _status_kb(self.pid, "VmRSS") / 1024

    def peak_mb(self):
        return _status_kb(self.pid, "VmHWM") / 1024

    def cpu_s(self):
        """CPU seconds of the server and of its worker processes
        (``--workers``)."""
        children = subprocess.run(["pgrep", "-P", str(self.pid)],
                                  capture_output=True, text=True).stdout
        total = 0.0
        for pid in [self.pid, *map(int, children.split())]:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:   # a child that just ended
                continue
            total += (int(fields[11]) + int(fields[12])) / TICK
        return total

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (a kill after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process.stdout.close()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.stderr.close()


def _status_kb(pid, key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


# --- the client --------------------------------------------------------------


class Closed(Exception):
    """The server closed the connection before a whole answer; ``partial``
    holds the bytes of the answer received."""

    def __init__(self, partial):
        super().__init__(f"closed after {len(partial)} answer bytes")
        self.partial = partial


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.future = None
        self.length = None
        self.lost = False

    @classmethod
    async def open(cls, host, port):
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.future is not None:
            self._answer()

    def _answer(self):
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        if self.length is None:
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"content-length:")
            self.length = int(head[at + 15:head.find(b"\r\n", at)]) if (
                at >= 0) else 0
            self.close = b"connection: close" in head
        total = end + 4 + self.length
        if len(self.buffer) >= total:
            body = bytes(self.buffer[end + 4:total])
            del self.buffer[:total]
            future, self.future = self.future, None
            future.set_result((self.status, body, self.close))

    def connection_lost(self, exc):
        self.lost = True
        if self.future is not None and not self.future.done():
            self.future.set_exception(Closed(bytes(self.buffer)))

    def request(self, data):
        """A future of ``(status, body, connection closes)``."""
        if self.lost:
            raise Closed(b"")
        self.future = asyncio.get_running_loop().create_future()
        self.length = None
        self.transport.write(data)
        return self.future

    def shut(self):
        if self.transport is not None:
            self.transport.close()


def post(host, port, path, body):
    """The bytes of a JSON POST."""
    if not isinstance(body, bytes):
        body = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def get(host, port, path):
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


class Tally:
    """What a load phase's clients saw."""

    def __init__(self):
        self.latencies = []
        self.errors = {}
        self.samples = []   # (request index, body) checked afterwards
        self.outcomes = []  # (start, kind) with ``keep_outcomes``
        self.completed = 0
        # The longest any client waited for a 200 (from its start or its
        # previous 200), errors and retries included.
        self.longest_wait = 0.0

    def error(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def run_load(host, port, requests, clients, seconds, warmup=0.0,
                   check_every=0, stop_on_refused=False, grace=40.0,
                   keep_outcomes=False, on_start=None):
    """``clients`` closed-loop workers cycling through ``requests`` (a
    list of request bytes) for ``warmup`` + ``seconds``; returns a
    ``Tally`` of the requests started after the warm-up, its window in
    seconds and the client's CPU seconds in the window. Every
    ``check_every``-th answer of a worker is kept (request index, body)
    for checking."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    start = loop.time()
    record_from = start + warmup
    stop_at = record_from + seconds
    window = {}

    async def worker(index):
        connection = None
        count = index * 7919   # spread the workers over the requests
        last_ok = None
        while loop.time() < stop_at:
            if connection is None or connection.lost:
                try:
                    connection = await Connection.open(host, port)
                except OSError as error:
                    if loop.time() >= record_from:
                        tally.error("refused" if error.errno in (
                            errno.ECONNREFUSED, None) else
                            f"connect_{error.errno}")
                        if keep_outcomes:
                            tally.outcomes.append((loop.time(), "refused"))
                    if stop_on_refused:
                        return
                    await asyncio.sleep(0.05)
                    continue
            which = count % len(requests)
            count += 1
            began = loop.time()
            recorded = began >= record_from
            try:
                status, body, close = await connection.request(
                    requests[which])
            except Closed as error:
                connection = None
                kind = "truncated" if error.partial else "closed"
                if recorded:
                    tally.error(kind)
                    if keep_outcomes:
                        tally.outcomes.append((began, kind))
                continue
            if close:
                connection.shut()
                connection = None
            if not recorded:
                continue
            ended = loop.time()
            if status != 200:
                tally.error(f"status_{status}")
                if keep_outcomes:
                    tally.outcomes.append((began, f"status_{status}"))
                await asyncio.sleep(BACK_OFF)
                continue
            last_ok = max(last_ok or record_from, record_from)
            tally.longest_wait = max(tally.longest_wait, ended - last_ok)
            last_ok = ended
            if keep_outcomes:
                tally.outcomes.append((began, "ok"))
            if ended <= stop_at:
                tally.completed += 1
                tally.latencies.append(ended - began)
            if check_every and count % check_every == 0:
                tally.samples.append((which, body))
        if connection is not None:
            connection.shut()
        now = min(loop.time(), stop_at)
        if now > record_from:
            tally.longest_wait = max(tally.longest_wait,
                                     now - (last_ok or record_from))

    async def mark():
        await asyncio.sleep(max(record_from - loop.time(), 0))
        window["cpu"] = time.process_time()
        if on_start is not None:
            on_start()

    marker = asyncio.ensure_future(mark())
    tasks = [asyncio.ensure_future(worker(i)) for i in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=warmup + seconds
                                       + grace)
    for task in pending:   # a request that never got an answer
        task.cancel()
        tally.error("no_answer")
    await asyncio.gather(*pending, return_exceptions=True)
    await marker
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    client_cpu = time.process_time() - window["cpu"]
    return tally, seconds, client_cpu


async def fetch(host, port, path, timeout=30):
    """``(status, body)`` of one GET on a fresh connection."""
    connection = await Connection.open(host, port)
    try:
        status, body, _ = await asyncio.wait_for(
            connection.request(get(host, port, path)), timeout)
    finally:
        connection.shut()
    return status, body


async def batch_rows(server, kind):
    """``(sum, count, {le: cumulative count})`` of the server's
    ``kerasrnn_batch_rows`` histogram for ``kind``."""
    _, body = await fetch(server.host, server.port, "/metrics")
    total = count = 0.0
    buckets = {}
    label = f'kind="{kind}"'
    for line in body.decode().splitlines():
        if not line.startswith("kerasrnn_batch_rows") or label not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("kerasrnn_batch_rows_sum"):
            total = float(value)
        elif name.startswith("kerasrnn_batch_rows_count"):
            count = float(value)
        elif name.startswith("kerasrnn_batch_rows_bucket"):
            le = name.split('le="')[1].split('"')[0]
            buckets[le] = float(value)
    return total, count, buckets


def percentiles(latencies):
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None,
                "mean_ms": None}
    values = np.asarray(latencies) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max()), "mean_ms": float(values.mean())}


# --- the phases --------------------------------------------------------------


async def predict_phase(server, data, batch, clients, seconds, warmup,
                        reference, check_every=50):
    """``clients`` x ``batch``-row requests on /v1/predict."""
    starts = range(0, len(data) - batch + 1, batch)
    requests = [post(server.host, server.port, "/v1/predict",
                     {"inputs": {"tokens": data[s:s + batch].tolist()}})
                for s in starts]
    before_rows = await batch_rows(server, "predict")
    cpu = {}
    load = asyncio.ensure_future(run_load(
        server.host, server.port, requests, clients, seconds, warmup,
        check_every=check_every,
        on_start=lambda: cpu.setdefault("start", server.cpu_s())))
    tally, window, client_cpu = await load
    server_cpu = server.cpu_s() - cpu["start"]
    after_rows = await batch_rows(server, "predict")
    wrong = 0
    for which, body in tally.samples:
        got = np.asarray(json.loads(body)["outputs"]["logits"])
        start = list(starts)[which]
        if not np.allclose(got, reference[start:start + batch], atol=1e-4):
            wrong += 1
    if wrong:
        tally.errors["wrong_answer"] = wrong
    runs = after_rows[1] - before_rows[1]
    merged = runs - (after_rows[2].get("1.0", 0)
                     - before_rows[2].get("1.0", 0))
    completed = tally.completed
    return {
        "clients": clients, "batch": batch, "seconds": window,
        "requests": completed, "requests_per_s": completed / window,
        "rows_per_s": completed * batch / window,
        "errors": sum(tally.errors.values()), "error_kinds": tally.errors,
        **percentiles(tally.latencies),
        "checked_answers": len(tally.samples), "wrong_answers": wrong,
        "mean_rows_per_run": (after_rows[0] - before_rows[0]) / runs
        if runs else None,
        "session_runs": runs, "runs_over_1_row": merged,
        "client_cpu_per_request_us": client_cpu / max(completed, 1) * 1e6,
        "client_cores": client_cpu / window,
        "server_cores": server_cpu / window,
    }


async def health_phase(server, clients, seconds):
    requests = [get(server.host, server.port, "/health")]
    cpu = {}
    tally, window, client_cpu = await run_load(
        server.host, server.port, requests, clients, seconds, 0.5,
        on_start=lambda: cpu.setdefault("start", server.cpu_s()))
    server_cpu = server.cpu_s() - cpu["start"]
    return {"clients": clients, "seconds": window,
            "server_cpu_per_request_us": server_cpu
            / max(tally.completed, 1) * 1e6,
            "requests_per_s": tally.completed / window,
            "errors": sum(tally.errors.values()),
            "error_kinds": tally.errors,
            "client_cpu_per_request_us": client_cpu
            / max(tally.completed, 1) * 1e6,
            "client_cores": client_cpu / window,
            **percentiles(tally.latencies)}


async def rss_phase(directory, count, concurrency=1):
    """``count`` requests of the largest size the limits allow; the
    server's RSS after the first and after the last."""
    with Server(directory) as server:
        _, body = await fetch(server.host, server.port, "/v1/metadata")
        limits = json.loads(body)["limits"]
        rows_, length = limits["max_rows"], limits["max_length"]
        if limits.get("max_cells"):
            length = min(length, limits["max_cells"] // rows_)
        rng = np.random.default_rng(3)
        requests = [post(server.host, server.port, "/v1/predict", {
            "inputs": {"tokens": rng.integers(1, VOCAB, (rows_, length))
                       .tolist()}}) for _ in range(4)]
        size = len(requests[0])
        rss = {"start": server.rss_mb()}
        errors = {}
        started = time.perf_counter()
        for name, request in (("after_first", requests[0]),
                              ("after_second", requests[1])):
            for attempt in range(3):
                connection = await Connection.open(server.host, server.port)
                try:
                    status, _, _ = await connection.request(request)
                    break
                except Closed:
                    errors[f"closed_{name}"] = errors.get(
                        f"closed_{name}", 0) + 1
                finally:
                    connection.shut()
            if status != 200:
                raise RuntimeError(f"a largest request was answered "
                                   f"{status}: {server.errors()[-2000:]}")
            rss[name] = server.rss_mb()
        series = [(1, rss["after_first"]), (2, rss["after_second"])]
        sent = [2]

        async def worker(index):
            connection = await Connection.open(server.host, server.port)
            while sent[0] < count:
                sent[0] += 1
                number = sent[0]
                try:
                    status, _, _ = await connection.request(
                        requests[number % len(requests)])
                except Closed:
                    errors["closed"] = errors.get("closed", 0) + 1
                    connection = await Connection.open(server.host,
                                                       server.port)
                    continue
                if status != 200:
                    errors[status] = errors.get(status, 0) + 1
                if number % max(count // 10, 1) == 0:
                    series.append((number, server.rss_mb()))
            connection.shut()

        await asyncio.wait_for(asyncio.gather(
            *(worker(i) for i in range(concurrency))), 30 * count + 60)
        rss["after_last"] = server.rss_mb()
        rss["peak"] = server.peak_mb()
        return {
            "requests": count, "concurrency": concurrency,
            "rows": rows_, "length": length, "body_bytes": size,
            "limits": limits, "rss_mb": rss, "series": series,
            "growth_mb": rss["after_last"] - rss["after_first"],
            # onnxruntime's memory pattern (SessionOptions.
            # enable_mem_pattern) allocates its planned block on the
            # second run of a shape: growth after that is the leak test.
            "growth_after_second_mb": rss["after_last"]
            - rss["after_second"],
            "errors": errors, "seconds": time.perf_counter() - started,
        }


async def slow_phase(directory, data, sockets, header_timeout,
                     body_timeout, clients=8):
    """Slow and idle sockets against normal clients (see the module
    doc)."""
    flags = ("--header-timeout", header_timeout, "--body-timeout",
             body_timeout)
    loop = asyncio.get_running_loop()
    with Server(directory, *flags) as server:
        host, port = server.host, server.port
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 4000"
                "\r\n\r\n").encode()
        kinds = ["nothing", "half_head", "trickling_body"]
        closed = {kind: [] for kind in kinds}
        answers = {kind: {} for kind in kinds}
        opened = []

        async def slow(kind):
            reader, writer = await asyncio.open_connection(host, port)
            began = loop.time()
            opened.append(kind)
            if kind == "half_head":
                writer.write(head[:len(head) // 2])
            elif kind == "trickling_body":
                writer.write(head)

            async def trickle():
                try:
                    while True:
                        await asyncio.sleep(0.5)
                        writer.write(b" ")
                        await writer.drain()
                except (OSError, RuntimeError):
                    pass

            dripping = (asyncio.ensure_future(trickle())
                        if kind == "trickling_body" else None)
            received = b""
            try:
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    received += chunk
            except OSError:
                pass
            closed[kind].append(loop.time() - began)
            status = received[9:12].decode() if received else "none"
            answers[kind][status] = answers[kind].get(status, 0) + 1
            if dripping is not None:
                dripping.cancel()
            writer.close()

        holders = [asyncio.ensure_future(slow(kinds[i % 3]))
                   for i in range(sockets)]
        while len(opened) < sockets:
            await asyncio.sleep(0.01)
        requests = [post(host, port, "/v1/predict",
                         {"inputs": {"tokens": data[i:i + 1].tolist()}})
                    for i in range(64)]
        seconds = max(header_timeout, body_timeout) + 1.0
        tally, window, _ = await run_load(host, port, requests, clients,
                                          seconds)
        wait = body_timeout + header_timeout + 5.0
        _, still_open = await asyncio.wait(holders, timeout=wait)
        for task in still_open:
            task.cancel()
        await asyncio.gather(*still_open, return_exceptions=True)
        bound = {"nothing": header_timeout + 1.0,
                 "half_head": header_timeout + 1.0,
                 "trickling_body": body_timeout + header_timeout + 1.0}
        return {
            "sockets": sockets, "header_timeout": header_timeout,
            "body_timeout": body_timeout, "clients": clients,
            "client_requests": tally.completed,
            "client_errors": sum(tally.errors.values()),
            "client_error_kinds": tally.errors,
            "client_longest_wait_ms": tally.longest_wait * 1e3,
            **{"client_" + k: v for k, v in
               percentiles(tally.latencies).items()},
            "closed": {kind: {
                "count": len(times), "of": sockets // 3 + (
                    kinds.index(kind) < sockets % 3),
                "min_s": min(times) if times else None,
                "max_s": max(times) if times else None,
                "within_bound": sum(t <= bound[kind] for t in times),
                "bound_s": bound[kind], "answers": answers[kind],
            } for kind, times in closed.items()},
            "still_open": len(still_open),
        }


async def sigterm_phase(directory, data, clients, before):
    """SIGTERM under load (see the module doc)."""
    loop = asyncio.get_running_loop()
    server = Server(directory, "--access-log")
    try:
        requests = [post(server.host, server.port, "/v1/predict",
                         {"inputs": {"tokens": data[i:i + 1].tolist()}})
                    for i in range(64)]
        signalled = {}

        async def terminate():
            await asyncio.sleep(before)
            signalled["at"] = loop.time()
            server.process.send_signal(signal.SIGTERM)

        killer = asyncio.ensure_future(terminate())
        tally, _, _ = await run_load(
            server.host, server.port, requests, clients, before + 40,
            stop_on_refused=True, keep_outcomes=True, grace=60)
        await killer
        code = await asyncio.to_thread(server.process.wait, 60)
        logged = {}
        for line in server.errors().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("path") == (
                "/v1/predict"
            ):
                logged[entry["status"]] = logged.get(entry["status"], 0) + 1
        after = [kind for began, kind in tally.outcomes
                 if began >= signalled["at"]]
        received = sum(kind == "ok" for _, kind in tally.outcomes)
        return {
            "clients": clients, "signal_after_s": before,
            "exit_code": code,
            "received_200": received,
            "logged_200": logged.get(200, 0), "logged": logged,
            "completed_after_signal": after.count("ok"),
            # Requests sent whose connection closed before any byte of
            # an answer (never accepted: no access-log line), and
            # connections refused (the listener closed).
            "closed_unanswered_after_signal": after.count("closed"),
            "closed_unanswered": tally.errors.get("closed", 0),
            "connect_refused": tally.errors.get("refused", 0),
            "truncated": tally.errors.get("truncated", 0),
            "other_errors": {k: v for k, v in tally.errors.items()
                             if k not in ("closed", "refused",
                                          "truncated")},
            "stderr_tail": server.errors()[-600:] if code else "",
        }
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait()
        server.stderr.close()


async def generation_phase(directory, clients, seconds, workers):
    """Concurrent greedy /v1/generate clients, then one client; then the
    concurrent clients again on ``--workers workers`` (when above 1)."""
    rng = np.random.default_rng(4)
    letters = np.array(list(SOURCE_CHARS))
    texts = ["".join(rng.choice(letters, rng.integers(4, 16)))
             for _ in range(64)]
    results = {}
    runs = [(1, "concurrent", clients), (1, "one_client", 1)]
    if workers > 1:
        runs.append((workers, f"concurrent_{workers}_workers", clients))
    for count_workers in sorted({run[0] for run in runs}):
        with Server(directory, "--workers", count_workers) as server:
            for name, count in [(n, c) for w, n, c in runs
                                if w == count_workers]:
                results[name] = await _generation_load(
                    server, texts, count, seconds)
    results["speedup"] = (results["concurrent"]["tokens_per_s"]
                          / max(results["one_client"]["tokens_per_s"],
                                1e-9))
    return results


async def _generation_load(server, texts, count, seconds):
    """``count`` closed-loop greedy clients on ``server``'s /v1/generate:
    throughput, latency and rows per decoder-step ``session.run``."""
    requests = [post(server.host, server.port, "/v1/generate", {
        "texts": [text], "method": "greedy",
        "max_length": GENERATE_STEPS, "min_length": GENERATE_STEPS})
        for text in texts]
    before = await batch_rows(server, "step")
    tally, window, _ = await run_load(server.host, server.port, requests,
                                      count, seconds, 1.0)
    after = await batch_rows(server, "step")
    runs = after[1] - before[1]
    return {
        "clients": count, "seconds": window,
        "requests_per_s": tally.completed / window,
        "tokens_per_s": tally.completed * GENERATE_STEPS / window,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        **percentiles(tally.latencies),
        "step_runs": runs,
        "mean_rows_per_step_run": (after[0] - before[0]) / runs
        if runs else None,
        "step_rows_histogram": {
            le: after[2].get(le, 0) - before[2].get(le, 0)
            for le in after[2]},
    }


# --- the report --------------------------------------------------------------


def verdict(ok):
    return "pass" if ok else "MISS"


def figure_rows(report):
    """``(figure, value, target, pass/miss or "")`` lines of the table."""
    lines = []
    raw = report["raw"]
    overhead = report["client_overhead"]
    lines.append(("client: /health answers/s, 64 conns",
                  f"{overhead['requests_per_s']:.0f}", "", ""))
    lines.append(("CPU per /health answer: client / server",
                  f"{overhead['client_cpu_per_request_us']:.0f} / "
                  f"{overhead['server_cpu_per_request_us']:.0f} us", "",
                  ""))
    for batch in (1, 32):
        for threads in ("1_thread", "default"):
            value = raw[f"b{batch}"]["before"][threads]["rows_per_s"]
            lines.append((f"raw ort b{batch} {threads} rows/s (before)",
                          f"{value:.0f}", "", ""))
    for workers, phases in report["workers"].items():
        lines += load_rows(workers, phases, raw)
    rss = report["rss"]
    lines.append((f"RSS {rss['requests']} x ({rss['rows']} x "
                  f"{rss['length']}) first -> last MB",
                  f"{rss['rss_mb']['after_first']:.0f} -> "
                  f"{rss['rss_mb']['after_last']:.0f} ("
                  f"{rss['growth_mb']:+.1f}; peak "
                  f"{rss['rss_mb']['peak']:.0f})", "<= +50",
                  verdict(rss["growth_mb"] <= TARGETS["rss_growth_mb"])))
    lines.append(("RSS phase: errors", f"{sum(rss['errors'].values())} "
                  f"{json.dumps(rss['errors'])}", "0",
                  verdict(not rss["errors"])))
    lines.append(("RSS second -> last MB",
                  f"{rss['rss_mb']['after_second']:.0f} -> "
                  f"{rss['rss_mb']['after_last']:.0f} ("
                  f"{rss['growth_after_second_mb']:+.1f})", "", ""))
    slow = report["slow"]
    lines.append((f"{slow['sockets']} slow sockets: other clients' "
                  "longest wait for a 200",
                  f"{slow['client_longest_wait_ms']:.0f} ms (max latency "
                  f"{slow['client_max_ms'] or 0:.0f} ms, "
                  f"{slow['client_requests']} answers)", "<= 1000 ms",
                  verdict(slow["client_longest_wait_ms"]
                          <= TARGETS["slow_max_ms"])))
    lines.append((f"{slow['sockets']} slow sockets: other clients' errors",
                  f"{slow['client_errors']} "
                  f"{json.dumps(slow['client_error_kinds'])}", "0",
                  verdict(slow["client_errors"] == 0)))
    for kind, closed in slow["closed"].items():
        lines.append((f"slow sockets '{kind}' closed within "
                      f"{closed['bound_s']:g} s",
                      f"{closed['within_bound']} of {closed['of']} "
                      f"(max {closed['max_s'] or 0:.1f} s; answers "
                      f"{json.dumps(closed['answers'])})", "all",
                      verdict(closed["within_bound"] == closed["of"])))
    term = report["sigterm"]
    lines.append(("SIGTERM: exit code", str(term["exit_code"]), "0",
                  verdict(term["exit_code"] == 0)))
    lines.append(("SIGTERM: 200 logged / received",
                  f"{term['logged_200']} / {term['received_200']}",
                  "equal, 0 truncated",
                  verdict(term["logged_200"] == term["received_200"]
                          and not term["truncated"])))
    lines.append(("SIGTERM: after the signal: completed / closed "
                  "unanswered / reconnects refused",
                  f"{term['completed_after_signal']} / "
                  f"{term['closed_unanswered_after_signal']} / "
                  f"{term['connect_refused']}", "", ""))
    generation = report["generation"]
    for name in [key for key in generation if key != "speedup"]:
        phase = generation[name]
        workers = name.split("_")[1] if name.endswith("_workers") else "1"
        label = f"generate --workers {workers}, {phase['clients']} clients"
        lines.append((f"{label}: req/s, tokens/s",
                      f"{phase['requests_per_s']:.1f}, "
                      f"{phase['tokens_per_s']:.0f} ({phase['errors']} "
                      "errors)", "", ""))
        lines.append((f"{label}: p50 / p99 ms",
                      f"{phase['p50_ms']:.1f} / {phase['p99_ms']:.1f}",
                      "", ""))
        lines.append((f"{label}: rows per step run, mean (all runs <=)",
                      f"{phase['mean_rows_per_step_run']:.2f} ("
                      f"{largest_bucket(phase['step_rows_histogram'])})",
                      "> 1" if phase["clients"] > 1 else "",
                      verdict(phase["mean_rows_per_step_run"] > 1)
                      if phase["clients"] > 1 else ""))
    lines.append(("generate: concurrent / one client tokens/s",
                  f"{generation['speedup']:.2f}x", "", ""))
    return lines


def load_rows(workers, phases, raw):
    """The table lines of the load phases of one ``--workers`` count."""
    lines = []
    name = f"--workers {workers}"
    phase = phases["b1"]
    lines.append((f"{name}: client CPU per predict answer (64 x 1)",
                  f"{phase['client_cpu_per_request_us']:.0f} us = "
                  f"{phase['client_cores']:.2f} cores (server "
                  f"{phase['server_cores']:.2f})", "", ""))
    for key, batch, target in (("b1", 1, TARGETS["b1_vs_raw"]),
                               ("b32", 32, TARGETS["b32_vs_raw"])):
        phase = phases[key]
        best = max(raw[f"b{batch}"][when][threads]["rows_per_s"]
                   for when in ("before", "after")
                   for threads in ("1_thread", "default"))
        label = f"{name} {phase['clients']}x{batch}"
        lines.append((f"{label}: errors", str(phase["errors"]), "0",
                      verdict(phase["errors"] == 0)))
        if phase["error_kinds"]:
            lines.append((f"{label}: error kinds",
                          json.dumps(phase["error_kinds"]), "", ""))
        lines.append((f"{label}: p50 / p99 ms",
                      f"{phase['p50_ms']:.1f} / {phase['p99_ms']:.1f}",
                      "p99 <= 50" if batch == 1 else "",
                      verdict(phase["p99_ms"] <= TARGETS["b1_p99_ms"])
                      if batch == 1 else ""))
        lines.append((f"{label}: max ms", f"{phase['max_ms']:.1f}",
                      "<= 1000" if batch == 1 else "",
                      verdict(phase["max_ms"] <= TARGETS["b1_max_ms"])
                      if batch == 1 else ""))
        ratio = phase["rows_per_s"] / best
        phase["vs_best_raw"] = ratio
        lines.append((f"{label}: rows/s",
                      f"{phase['rows_per_s']:.0f} = {ratio:.1%} of raw "
                      f"{best:.0f}", f">= {target:.0%}",
                      verdict(ratio >= target)))
        lines.append((f"{label}: rows/run, runs > 1 row",
                      f"{phase['mean_rows_per_run']:.1f}, "
                      f"{phase['runs_over_1_row']:.0f} of "
                      f"{phase['session_runs']:.0f}", "", ""))
        lines.append((f"{label}: CPU cores client / server",
                      f"{phase['client_cores']:.2f} / "
                      f"{phase['server_cores']:.2f}", "", ""))
        lines.append((f"{label}: answers checked, wrong",
                      f"{phase['checked_answers']}, "
                      f"{phase['wrong_answers']}", "0 wrong",
                      verdict(phase["wrong_answers"] == 0)))
    return lines


def largest_bucket(histogram):
    """The smallest ``le`` bucket of a cumulative histogram holding every
    observation."""
    total = histogram.get("+Inf", 0)
    for le, count in sorted(histogram.items(),
                            key=lambda item: float(item[0])):
        if count >= total:
            return le.replace(".0", "")
    return "+Inf"


def print_table(lines):
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    for figure, value, target, mark in lines:
        print(f"{figure:<{widths[0]}}  {value:<{widths[1]}}  "
              f"{target:<{widths[2]}}  {mark}".rstrip())


async def run(args, classifier, seq2seq):
    data = rows(512, seed=1)
    reference = session(classifier, 1).run(None, {"tokens": data})[0]
    report = {"raw": {"b1": {}, "b32": {}}}
    report["raw"]["b1"]["before"] = raw_onnxruntime(classifier, data, 1,
                                                    args.raw_seconds)
    report["raw"]["b32"]["before"] = raw_onnxruntime(classifier, data, 32,
                                                     args.raw_seconds)
    report["workers"] = {}
    for workers in args.workers:
        with Server(classifier, "--workers", workers) as server:
            if workers == args.workers[0]:
                report["server_rss_idle_mb"] = server.rss_mb()
                print(f"{time.strftime('%X')} client overhead (/health)",
                      flush=True)
                report["client_overhead"] = await health_phase(
                    server, args.clients, min(5.0, args.seconds))
            warmup = min(2.0, args.seconds / 4)
            phases = report["workers"][workers] = {}
            print(f"{time.strftime('%X')} --workers {workers}: "
                  f"{args.clients} x batch 1, {args.seconds:g} s",
                  flush=True)
            phases["b1"] = await predict_phase(
                server, data, 1, args.clients, args.seconds, warmup,
                reference)
            print(f"{time.strftime('%X')} --workers {workers}: 16 x batch "
                  f"32, {args.seconds:g} s", flush=True)
            phases["b32"] = await predict_phase(
                server, data, 32, 16, args.seconds, warmup, reference,
                check_every=10)
    report["raw"]["b1"]["after"] = raw_onnxruntime(classifier, data, 1,
                                                   args.raw_seconds)
    report["raw"]["b32"]["after"] = raw_onnxruntime(classifier, data, 32,
                                                    args.raw_seconds)
    print(f"{time.strftime('%X')} RSS, {args.rss_requests} largest "
          "requests", flush=True)
    report["rss"] = await rss_phase(classifier, args.rss_requests,
                                    args.rss_concurrency)
    print(f"{time.strftime('%X')} {args.slow_sockets} slow sockets",
          flush=True)
    report["slow"] = await slow_phase(classifier, data, args.slow_sockets,
                                      args.header_timeout,
                                      args.body_timeout)
    print(f"{time.strftime('%X')} SIGTERM under load", flush=True)
    report["sigterm"] = await sigterm_phase(classifier, data, 32,
                                            args.sigterm_after)
    print(f"{time.strftime('%X')} generation, {args.generate_clients} "
          "clients", flush=True)
    report["generation"] = await generation_phase(
        seq2seq, args.generate_clients, args.generate_seconds,
        max(args.workers))
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="each predict load phase (default 60; quick 5)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", default="1,2",
                        type=lambda text: [int(n) for n in text.split(",")],
                        help="the load phases' server --workers counts, "
                        "in one run (default 1,2)")
    parser.add_argument("--raw-seconds", type=float, default=None,
                        help="each raw onnxruntime timing (default 5; "
                        "quick 1)")
    parser.add_argument("--rss-requests", type=int, default=None,
                        help="largest requests of the memory phase "
                        "(default 1000; quick 40)")
    parser.add_argument("--rss-concurrency", type=int, default=1,
                        help="clients of the memory phase (1: the RSS "
                        "after the first request is a steady state)")
    parser.add_argument("--slow-sockets", type=int, default=200)
    parser.add_argument("--header-timeout", type=float, default=None,
                        help="the slow phase's server flag (default 5; "
                        "quick 2)")
    parser.add_argument("--body-timeout", type=float, default=None,
                        help="the slow phase's server flag (default 5; "
                        "quick 2)")
    parser.add_argument("--sigterm-after", type=float, default=2.0)
    parser.add_argument("--generate-clients", type=int, default=16)
    parser.add_argument("--generate-seconds", type=float, default=None,
                        help="each generation phase (default 20; quick 3)")
    parser.add_argument("--quick", action="store_true",
                        help="short phases: a smoke run")
    parser.add_argument("--out", default="artifacts/serving_load.json")
    args = parser.parse_args()
    defaults = {"seconds": (60.0, 5.0), "raw_seconds": (5.0, 1.0),
                "rss_requests": (1000, 40), "header_timeout": (5.0, 2.0),
                "body_timeout": (5.0, 2.0), "generate_seconds": (20.0, 3.0)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f}; onnxruntime "
          f"{onnxruntime.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as root:
        classifier, seq2seq = export_models(root)
        report = asyncio.run(run(args, classifier, seq2seq))
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started
    lines = figure_rows(report)
    print()
    print_table([("figure", "value", "target", "")] + lines)
    misses = [line[0] for line in lines if line[3] == "MISS"]
    print(f"\n{len(misses)} target(s) missed" + (
        ": " + "; ".join(misses) if misses else ""))
    print(f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          f"{elapsed:.0f} s")
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": "serving_load",
        "command": " ".join([pathlib.Path(sys.executable).name,
                             *sys.argv]),
        "machine": {"platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "onnxruntime": onnxruntime.__version__,
                    "numpy": np.__version__},
        "model": "examples/quickstart.py build_model(), random weights "
                 "(seed 0)",
        "arguments": vars(args), "targets": TARGETS,
        "misses": misses, "elapsed_s": elapsed,
        "table": [list(line) for line in lines],
        **report,
    }, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
