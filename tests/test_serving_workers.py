"""``serve --workers N``: several server processes on one port
(``kerasrnn_serving.workers``), real processes and sockets on the loopback.

Every worker answers (each one's CPU time grows under concurrent
clients), the answers are the model's, ``/metrics`` adds up the workers,
a killed worker is replaced while the others go on answering, SIGTERM
answers what was accepted and exits 0, and a bad ``--workers`` is one
line and exit code 2. Every wait is bounded.
"""

import http.client
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from test_serving_faults import ROOT
from test_serving_faults import Served
from test_serving_faults import call
from test_serving_faults import check_sigterm_outcomes
from test_serving_faults import classifier  # noqa: F401 - a fixture
from test_serving_faults import in_threads
from test_serving_faults import metric
from test_serving_faults import padded_rows
from test_serving_faults import sigterm_under_load
from test_serving_faults import wait_for

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_pids(server):
    """The worker pids the banner names (``N worker processes (pids
    ...)``), or those of the replacements: the parent's children that run
    a worker."""
    children = subprocess.run(
        ["pgrep", "-P", str(server.process.pid), "-f", "spawn_main"],
        capture_output=True, text=True).stdout.split()
    return sorted(int(pid) for pid in children)


@pytest.fixture(scope="module")
def workers(classifier):  # noqa: F811 - the fixture imported above
    server = Served(classifier[0], "--workers", 2)
    try:
        yield server
    finally:
        server.close()


def test_every_worker_answers_correctly(workers, classifier):  # noqa: F811
    _, predictor = classifier
    pids = worker_pids(workers)
    assert len(pids) == 2, pids
    before = {pid: cpu_seconds(pid) for pid in pids}
    rows = padded_rows(64, seed=11)
    expected = predictor.predict(rows)["logits"]

    def client(index):
        connection = http.client.HTTPConnection(workers.host, workers.port,
                                                timeout=30)
        answers = []
        for repeat in range(20):
            row = (index * 20 + repeat) % len(rows)
            status, _, body = call(workers, "/v1/predict",
                                   {"inputs": rows[row:row + 1].tolist()},
                                   connection)
            assert status == 200, body
            answers.append((row, body["outputs"]["logits"][0]))
        connection.close()
        return answers

    # 32 connections: the kernel spreads them over the two workers.
    answers = [a for result in in_threads(32, client) for a in result]
    for row, logits in answers:
        np.testing.assert_allclose(logits, expected[row], atol=1e-5)
    busy = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    assert all(seconds > 0 for seconds in busy.values()), busy


def test_metrics_add_up_the_workers(workers):
    route = {"route": "/v1/predict", "status": "200"}
    before = metric(workers, "kerasrnn_requests_total", **route)
    # New connections each time: they land on either worker.
    for _ in range(30):
        status, _, _ = call(workers, "/v1/predict", {"inputs": [[1, 2, 3]]})
        assert status == 200
    assert metric(workers, "kerasrnn_requests_total", **route) == (
        before + 30)
    assert metric(workers, "kerasrnn_in_flight") == 0


def test_a_killed_worker_is_replaced(workers):
    pids = worker_pids(workers)
    os.kill(pids[0], signal.SIGKILL)
    # Connections queued on the killed worker's socket are reset (as with
    # any SO_REUSEPORT server); once it is gone (reaped: the parent says
    # so), the other one answers every new connection while a
    # replacement starts.
    wait_for(lambda: f"worker {pids[0]} exited with code -9" in
             workers.log(), 30, "the killed worker was not reaped")
    for _ in range(10):
        status, _, _ = call(workers, "/v1/predict", {"inputs": [[4, 5]]})
        assert status == 200
    wait_for(lambda: len(worker_pids(workers)) == 2
             and pids[0] not in worker_pids(workers), 60,
             "no worker replaced the killed one:\n" + workers.log()[-2000:])
    new = (set(worker_pids(workers)) - set(pids)).pop()
    # Ready once the parent logs nothing more and new connections reach
    # it: its CPU time grows while fresh connections are answered.
    wait_for(lambda: all(call(workers, "/ready")[0] == 200
                         for _ in range(8)), 60,
             "the workers never answered /ready")

    def replacement_answers():
        before = cpu_seconds(new)
        for _ in range(40):
            assert call(workers, "/v1/predict",
                        {"inputs": [[1, 2, 3]]})[0] == 200
        return cpu_seconds(new) > before

    wait_for(replacement_answers, 60, "no connection reached the "
             "replacement:\n" + workers.log()[-2000:])
    assert f"worker {pids[0]} exited with code -9" in workers.log()


def test_sigterm_answers_what_was_accepted_and_exits_0(classifier):  # noqa: F811,E501
    outcomes, signalled, code, log = sigterm_under_load(
        classifier[0], "--workers", 2, clients=6, rows=128, steps=64)
    check_sigterm_outcomes(outcomes, signalled, log)
    assert code == 0, log[-2000:]


def test_workers_must_be_positive(classifier):  # noqa: F811
    result = subprocess.run(
        [sys.executable, "-m", "kerasrnn_serving", "serve",
         str(classifier[0]), "--workers", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --workers must be 1 or more. Received: 0")
