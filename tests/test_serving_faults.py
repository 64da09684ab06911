"""The server under concurrency and faults: real processes (``python -m
kerasrnn_serving serve DIR --port 0``), real sockets on the loopback.

Behaviour, not speed (the figures are ``benchmarks/serving_load.py``'s):
concurrent clients get correct answers, concurrent requests share
``session.run`` calls (and get what they would alone), idle and slow
sockets neither block others nor stay open past ``--header-timeout``, a
body slower than ``--body-timeout`` gets 408, a client that goes away is
not the server's problem, SIGTERM answers what was accepted and exits 0,
``--max-in-flight`` answers 503 with ``Retry-After``, and a manifest that
contradicts its graph stops the start-up with one line. Every wait is
bounded; the timing bounds are generous (seconds, not milliseconds).
"""

import contextlib
import http.client
import json
import os
import pathlib
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import pytest

import kerasrnn
import kerasrnn_serving as serving
from kerasrnn.export import to_onnx
from kerasrnn.models import Seq2Seq
from kerasrnn.models.text import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
VOCAB, LENGTH = 10, 20   # examples/quickstart.py's data
SOURCE_CHARS = "0123456789 abcdefghijklmnopqrstuvwxyz"
HEADER_TIMEOUT = 1.0   # the short server's --header-timeout and
BODY_TIMEOUT = 1.0     # --body-timeout


# --- the server process ------------------------------------------------------


class Served:
    """``python -m kerasrnn_serving serve DIR --port 0 FLAGS``, its stderr
    in a temporary file."""

    def __init__(self, directory, *flags):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kerasrnn_serving", "serve",
             str(directory), "--port", "0", *map(str, flags)],
            stdout=subprocess.PIPE, stderr=self.stderr, bufsize=0,
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        received, deadline = b"", time.monotonic() + 60
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
                pytest.fail("the server did not start:\n"
                            + received.decode() + self.log())
            received += chunk
        url = received.decode().strip().splitlines()[-1].split()[-1]
        host, port = url[len("http://"):].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def close(self):
        self.stop()
        self.process.stdout.close()
        self.stderr.close()


@contextlib.contextmanager
def served(directory, *flags):
    server = Served(directory, *flags)
    try:
        yield server
    finally:
        server.close()


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """examples/quickstart.py's classifier (Embedding(10, 16, mask_zero) ->
    bidirectional LSTM(32) -> Dense(2)), random weights, exported; its
    directory and ``Predictor``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((None,), dtype="int32", name="tokens"),
        keras.layers.Embedding(VOCAB, 16, mask_zero=True),
        kerasrnn.LSTM(32, bidirectional=True),
        keras.layers.Dense(2, name="logits"),
    ], name="first_equals_last")
    directory = tmp_path_factory.mktemp("classifier")
    to_onnx(model, directory)
    return directory, serving.Predictor(directory)


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    """A tiny char-level Seq2Seq (random weights), exported."""
    keras.utils.set_random_seed(1)
    sources = Tokenizer("char")
    sources.adapt([SOURCE_CHARS])
    targets = Tokenizer("char")
    targets.adapt(["0123456789-"])
    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id, embedding_dim=8,
        units=16, cell="gru", bidirectional=True, attention="bahdanau",
        max_source_length=16, max_target_length=12,
        source_tokenizer=sources, target_tokenizer=targets)
    directory = tmp_path_factory.mktemp("seq2seq")
    to_onnx(model, directory)
    return directory


@pytest.fixture(scope="module")
def server(classifier):
    """The classifier with the default flags."""
    with served(classifier[0]) as server:
        yield server


@pytest.fixture(scope="module")
def short_server(classifier):
    """The classifier with short head and body timeouts."""
    with served(classifier[0], "--header-timeout", HEADER_TIMEOUT,
                "--body-timeout", BODY_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def generation_server(seq2seq):
    with served(seq2seq, "--max-in-flight", 2) as server:
        yield server


# --- helpers -----------------------------------------------------------------


def call(server, path, payload=None, connection=None, timeout=30):
    """``(status, headers, decoded JSON or text)`` of a GET (no payload)
    or a JSON POST, on ``connection`` (kept open) or a new one."""
    own = connection is None
    if own:
        connection = http.client.HTTPConnection(server.host, server.port,
                                                timeout=timeout)
    try:
        if payload is None:
            connection.request("GET", path)
        else:
            connection.request("POST", path, json.dumps(payload),
                               {"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
    finally:
        if own:
            connection.close()
    kind = response.getheader("Content-Type", "")
    if kind.startswith("application/json"):
        body = json.loads(body)
    else:
        body = body.decode()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return response.status, headers, body


def metric(server, name, **labels):
    """A sample of the server's /metrics (0 when absent)."""
    status, _, text = call(server, "/metrics")
    assert status == 200
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def wait_for(condition, seconds, message):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)


def padded_rows(count, seed):
    """quickstart's inputs: tokens 1..9, lengths 4..20, right-padded."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((count, LENGTH), np.int32)
    for row, length in enumerate(rng.integers(4, LENGTH + 1, count)):
        tokens[row, :length] = rng.integers(1, VOCAB, length)
    return tokens


def in_threads(count, work):
    """Runs ``work(index)`` in ``count`` threads; their results."""
    results = [None] * count
    errors = []

    def run(index):
        try:
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "hung client"
    assert not errors, errors
    return results


def raw_socket(server):
    return socket.create_connection((server.host, server.port), timeout=10)


def head(server, path="/v1/predict", length=1000):
    return (f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
            f"{length}\r\n\r\n").encode()


def hang_up(client):
    """Closes with a reset (SO_LINGER 0), as a client that went away."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    client.close()


def read_answer(client, seconds):
    """The bytes the server sends until it closes or ``seconds`` pass."""
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = client.recv(65536)
        except socket.timeout:
            break
        except OSError:
            break
        if not chunk:
            break
        received += chunk
        if b"\r\n\r\n" in received:
            top, _, body = received.partition(b"\r\n\r\n")
            for line in top.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    if len(body) >= int(line.split(b":")[1]):
                        return received
    return received


# --- load and batching -------------------------------------------------------


def test_concurrent_clients_get_correct_answers(server, classifier):
    """16 keep-alive clients x 25 requests of 1-4 ragged rows: every
    answer is 200 and equals the Predictor's."""
    _, predictor = classifier
    rng = np.random.default_rng(2)
    requests = []
    for _ in range(16 * 25):
        rows = [rng.integers(1, VOCAB, rng.integers(1, 12)).tolist()
                for _ in range(rng.integers(1, 5))]
        requests.append((rows, predictor.predict(rows)["logits"]))

    def client(index):
        connection = http.client.HTTPConnection(server.host, server.port,
                                                timeout=30)
        wrong = []
        for rows, expected in requests[index::16]:
            status, _, body = call(server, "/v1/predict",
                                   {"inputs": {"tokens": rows}}, connection)
            if status != 200 or not np.allclose(
                body["outputs"]["logits"], expected, atol=1e-5
            ):
                wrong.append((status, body))
        connection.close()
        return wrong

    wrong = [w for result in in_threads(16, client) for w in result]
    assert wrong == []


def test_concurrent_requests_share_session_runs(server, classifier):
    """16 clients posting one row of the same length at once, 8 rounds:
    the batch-rows histogram shows runs of more than one row, and every
    answer equals that row run alone."""
    _, predictor = classifier
    rows = padded_rows(16 * 8, seed=3)
    expected = np.concatenate([predictor.predict(rows[i:i + 1])["logits"]
                               for i in range(len(rows))])
    runs = metric(server, "kerasrnn_batch_rows_count", kind="predict")
    single = metric(server, "kerasrnn_batch_rows_bucket", kind="predict",
                    le="1.0")
    barrier = threading.Barrier(16, timeout=30)

    def client(index):
        connection = http.client.HTTPConnection(server.host, server.port,
                                                timeout=30)
        answers = []
        for round_ in range(8):
            row = round_ * 16 + index
            barrier.wait()
            status, _, body = call(
                server, "/v1/predict",
                {"inputs": {"tokens": rows[row:row + 1].tolist()}},
                connection)
            assert status == 200, body
            answers.append((row, body["outputs"]["logits"]))
        connection.close()
        return answers

    for answers in in_threads(16, client):
        for row, logits in answers:
            np.testing.assert_allclose(logits, expected[row:row + 1],
                                       atol=1e-5)
    runs = metric(server, "kerasrnn_batch_rows_count", kind="predict") - runs
    single = metric(server, "kerasrnn_batch_rows_bucket", kind="predict",
                    le="1.0") - single
    assert runs < 16 * 8, "every request had a session.run of its own"
    assert runs - single >= 1


# --- idle and slow sockets ---------------------------------------------------


def open_slow_sockets(server, count):
    """``count`` sockets: a third send nothing, a third half a request
    head, a third a whole head and part of the body."""
    sockets = []
    whole = head(server)
    for index in range(count):
        client = raw_socket(server)
        if index % 3 == 1:
            client.sendall(whole[:len(whole) // 2])
        elif index % 3 == 2:
            client.sendall(whole + b'{"inputs": {"tok')
        sockets.append(client)
    return sockets


def test_idle_and_slow_sockets_do_not_block_other_clients(server,
                                                          classifier):
    _, predictor = classifier
    sockets = open_slow_sockets(server, 50)
    try:
        rows = padded_rows(20, seed=4)
        expected = predictor.predict(rows)["logits"]
        connection = http.client.HTTPConnection(server.host, server.port,
                                                timeout=30)
        for index in range(len(rows)):
            started = time.monotonic()
            status, _, body = call(
                server, "/v1/predict",
                {"inputs": {"tokens": rows[index:index + 1].tolist()}},
                connection)
            assert time.monotonic() - started < 5
            assert status == 200, body
            np.testing.assert_allclose(body["outputs"]["logits"],
                                       expected[index:index + 1], atol=1e-5)
        connection.close()
    finally:
        for client in sockets:
            client.close()


def test_slow_sockets_are_closed_after_the_header_timeout(short_server):
    """Sockets that send nothing, half a head, or a head one byte at a
    time are closed by the server within --header-timeout (+ slack),
    without an answer."""
    whole = head(short_server)
    kinds = {}
    for index in range(30):
        client = raw_socket(short_server)
        client.setblocking(False)
        if index % 3 == 1:
            client.sendall(whole[:len(whole) // 2])
        kinds[client] = ("nothing", "half_head", "trickling_head")[index % 3]
    opened = time.monotonic()
    closed, received = {}, {}
    sent = dict.fromkeys(kinds, 0)
    while len(closed) < len(kinds) and time.monotonic() - opened < (
        HEADER_TIMEOUT + 5
    ):
        waiting = [c for c in kinds if c not in closed]
        for client in waiting:
            if kinds[client] == "trickling_head" and sent[client] < len(
                whole
            ):
                try:
                    client.send(whole[sent[client]:sent[client] + 1])
                    sent[client] += 1
                except OSError:
                    pass
        for client in select.select(waiting, [], [], 0.1)[0]:
            try:
                chunk = client.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                received[client] = received.get(client, b"") + chunk
            else:
                closed[client] = time.monotonic() - opened
    for client in kinds:
        client.close()
    still_open = sorted(kinds[c] for c in kinds if c not in closed)
    assert still_open == [], f"not closed: {still_open}"
    assert all(sent[c] < len(whole) for c in kinds
               if kinds[c] == "trickling_head")
    assert max(closed.values()) < HEADER_TIMEOUT + 5
    assert received == {}, "a slow socket got an answer"


def test_a_busy_keep_alive_connection_outlives_the_header_timeout(
    short_server,
):
    """A client that keeps one connection busy (a request every few ms)
    for 3 x --header-timeout gets every answer on it: the head deadline
    is for heads that do not arrive, not for the connection's age."""
    body = {"inputs": {"tokens": [[1, 2, 3]]}}
    connection = http.client.HTTPConnection(short_server.host,
                                            short_server.port, timeout=30)
    connection.auto_open = 0   # a reconnection would hide a close
    connection.connect()
    failures, answered = [], 0
    started = time.monotonic()
    while time.monotonic() - started < 3 * HEADER_TIMEOUT:
        try:
            status, _, _ = call(short_server, "/v1/predict", body,
                                connection)
            assert status == 200
            answered += 1
        except (OSError, http.client.HTTPException) as error:
            failures.append(f"after {time.monotonic() - started:.2f} s "
                            f"and {answered} answers: {error!r}")
            break
        time.sleep(0.002)
    connection.close()
    assert failures == []


def test_a_body_slower_than_the_body_timeout_gets_408(short_server):
    client = raw_socket(short_server)
    try:
        client.sendall(head(short_server, length=200) + b"{")
        answer, started = b"", time.monotonic()
        client.setblocking(False)
        while time.monotonic() - started < BODY_TIMEOUT + 5:
            try:
                client.send(b" ")
            except OSError:
                pass
            if select.select([client], [], [], 0.25)[0]:
                try:
                    chunk = client.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
                if b"}" in answer:
                    break
    finally:
        client.close()
    top, _, body = answer.partition(b"\r\n\r\n")
    assert top.split(b" ")[1] == b"408", answer
    assert json.loads(body)["kind"] == "timeout"


def test_a_client_that_hangs_up_before_its_answer(server, classifier):
    """6 large requests whose clients reset the connection before the
    answers: the server keeps answering (correctly), frees their in-flight
    slots and logs no error."""
    _, predictor = classifier
    rng = np.random.default_rng(5)
    tokens = rng.integers(1, VOCAB, (256, 512)).tolist()
    body = json.dumps({"inputs": {"tokens": tokens}}).encode()
    before = len(server.log())
    clients = []
    for _ in range(6):
        client = raw_socket(server)
        client.sendall(head(server, length=len(body)) + body)
        clients.append(client)
    time.sleep(0.5)
    for client in clients:
        hang_up(client)
    rows = padded_rows(4, seed=6)
    started = time.monotonic()
    status, _, answer = call(server, "/v1/predict",
                             {"inputs": {"tokens": rows.tolist()}})
    assert status == 200, answer
    assert time.monotonic() - started < 10
    np.testing.assert_allclose(answer["outputs"]["logits"],
                               predictor.predict(rows)["logits"], atol=1e-5)
    wait_for(lambda: metric(server, "kerasrnn_in_flight") == 0, 15,
             "in-flight requests of gone clients were never released")
    log = server.log()[before:]
    assert "Traceback" not in log and "failed" not in log, log[-3000:]
    status, _, _ = call(server, "/health")
    assert status == 200


# --- SIGTERM -----------------------------------------------------------------


def sigterm_under_load(directory, *flags, clients=4, rows=256, steps=128):
    """``clients`` clients posting ``rows`` x ``steps`` token requests in a
    loop to ``serve DIR --access-log FLAGS``; SIGTERM after their first
    answers; the clients go on until a connection is refused. Returns
    ``(outcomes [(start, end, kind)], signal time, exit code, log)``."""
    server = Served(directory, "--access-log", *flags)
    rng = np.random.default_rng(7)
    payload = {"inputs": {"tokens": rng.integers(1, VOCAB, (rows, steps))
                          .tolist()}}
    outcomes = []
    answered = threading.Event()
    deadline = time.monotonic() + 40

    def client(index):
        connection = http.client.HTTPConnection(server.host, server.port,
                                                timeout=30)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, _, body = call(server, "/v1/predict", payload,
                                       connection)
                kind = "ok" if status == 200 and len(
                    body["outputs"]["logits"]) == rows else (
                    f"status {status}")
                answered.set()
            except ConnectionRefusedError:
                return
            except (http.client.IncompleteRead, ValueError):
                kind = "truncated"
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError):
                kind = "unanswered"   # closed before any byte of an answer
            outcomes.append((started, time.monotonic(), kind))
            if kind != "ok":
                connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(clients)]
    try:
        for thread in threads:
            thread.start()
        assert answered.wait(30), server.log()[-2000:]
        time.sleep(0.3)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=45)
        code = server.process.wait(timeout=60)
        return outcomes, signalled, code, server.log()
    finally:
        server.close()


def check_sigterm_outcomes(outcomes, signalled, log):
    """Every request the server accepted (logged) reached its client
    whole, with 200; the requests in flight at the signal were answered."""
    logged = [json.loads(line) for line in log.splitlines()
              if line.startswith("{")]
    logged = [entry for entry in logged if entry["path"] == "/v1/predict"]
    kinds = [kind for _, _, kind in outcomes]
    assert "truncated" not in kinds
    assert {entry["status"] for entry in logged} == {200}
    assert kinds.count("ok") == len(logged)
    assert set(kinds) <= {"ok", "unanswered"}
    assert any(start < signalled < end and kind == "ok"
               for start, end, kind in outcomes)


@pytest.fixture(scope="module")
def terminated(classifier):
    """SIGTERM under load, 4 clients of 256 x 128 tokens."""
    return sigterm_under_load(classifier[0])


def test_sigterm_answers_every_accepted_request(terminated):
    outcomes, signalled, _, log = terminated
    check_sigterm_outcomes(outcomes, signalled, log)


def test_sigterm_exits_0(terminated):
    _, _, code, log = terminated
    assert code == 0, (f"exit status {code} after SIGTERM; the log ends:\n"
                       + "\n".join(log.splitlines()[-2:]))


# --- generation: in-flight limit, continuous batching -----------------------


def slow_generation(texts=32):
    """A beam search that decodes 256 steps for 32 texts x 16 beams."""
    rng = np.random.default_rng(8)
    letters = list(SOURCE_CHARS)
    return {"texts": ["".join(rng.choice(letters, 10))
                      for _ in range(texts)],
            "method": "beam", "beam_width": 16, "max_length": 256,
            "min_length": 256}


QUICK = {"texts": ["3 may"], "method": "greedy", "max_length": 4}


def test_the_in_flight_limit_answers_503_with_retry_after(
    generation_server,
):
    """--max-in-flight 2: two slow generations in flight, a third request
    is refused with 503 and Retry-After; once they end, it is served."""
    server = generation_server
    slow = slow_generation()
    results = []

    def run():
        results.append(call(server, "/v1/generate", slow, timeout=60))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: metric(server, "kerasrnn_in_flight") == 2, 20,
             "the two slow requests were never in flight together")
    status, headers, body = call(server, "/v1/generate", QUICK)
    assert status == 503, body
    assert headers.get("retry-after") == "1"
    assert body["kind"] == "overloaded"
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _, _ in results] == [200, 200]
    assert all(len(body["results"]) == 32 for _, _, body in results)
    status, _, body = call(server, "/v1/generate", QUICK)
    assert status == 200, body


def test_concurrent_generations_share_decoder_steps(generation_server):
    """Two concurrent greedy requests of 32 texts: some decoder-step
    session.run calls hold more than one request's 32 rows."""
    server = generation_server
    wait_for(lambda: metric(server, "kerasrnn_in_flight") == 0, 60,
             "requests of an earlier test are still in flight")
    rng = np.random.default_rng(9)
    letters = list(SOURCE_CHARS)
    payload = {"texts": ["".join(rng.choice(letters, 8))
                         for _ in range(32)],
               "method": "greedy", "max_length": 200, "min_length": 200}
    within_32 = metric(server, "kerasrnn_batch_rows_bucket", kind="step",
                       le="32.0")
    runs = metric(server, "kerasrnn_batch_rows_count", kind="step")
    for _ in range(2):
        answers = in_threads(2, lambda index: call(
            server, "/v1/generate", payload, timeout=60))
        assert [status for status, _, _ in answers] == [200, 200]
        assert answers[0][2] == answers[1][2]   # the same texts, merged
    runs = metric(server, "kerasrnn_batch_rows_count", kind="step") - runs
    within_32 = metric(server, "kerasrnn_batch_rows_bucket", kind="step",
                       le="32.0") - within_32
    assert runs - within_32 >= 1, "no step merged the two requests"


def test_slow_request_bodies_do_not_take_the_in_flight_slots(
    generation_server,
):
    """Two clients that send a head and then hold their body back (as
    slow or idle clients do) must not make the server refuse everyone
    else with 503 (--max-in-flight 2) until --body-timeout."""
    server = generation_server
    wait_for(lambda: metric(server, "kerasrnn_in_flight") == 0, 60,
             "requests of an earlier test are still in flight")
    holders = []
    try:
        for _ in range(2):
            client = raw_socket(server)
            client.sendall(head(server, "/v1/generate", 500) + b'{"te')
            holders.append(client)
        time.sleep(0.5)
        status, _, body = call(server, "/v1/generate", QUICK)
    finally:
        for client in holders:
            hang_up(client)
        wait_for(lambda: metric(server, "kerasrnn_in_flight") == 0, 15,
                 "the held bodies' in-flight slots were never released")
    assert status == 200, body


# --- start-up checks ---------------------------------------------------------


@pytest.mark.parametrize("edit, named", [
    (lambda entry: entry.update(name="tokenz"), "tokenz"),
    (lambda entry: entry.update(dtype="float32"), "float32"),
], ids=["input_name", "input_dtype"])
def test_a_manifest_that_contradicts_the_graph_stops_the_start(
    classifier, tmp_path, edit, named,
):
    directory, _ = classifier
    for name in ("model.onnx", "manifest.json"):
        (tmp_path / name).write_bytes((directory / name).read_bytes())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    edit(manifest["inputs"][0])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run(
        [sys.executable, "-m", "kerasrnn_serving", "serve", str(tmp_path),
         "--port", "0"], capture_output=True, text=True, timeout=60,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0, result.stdout + result.stderr
    assert "serving on" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(tmp_path / "manifest.json") in lines[0]
    assert named in lines[0]
