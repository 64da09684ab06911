"""Distributed training matches one device: Seq2Seq under a two-replica
MirroredStrategy trains on the objective of one device (the mean over the
real tokens of the global batch, not of each replica's half), and two
MultiWorkerMirroredStrategy workers on loopback train the classifier,
Seq2Seq and TBPTT language model as one worker does."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "mirrored_seq2seq.py"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_two_replicas_equal_one_device_on_ragged_targets(cell):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), cell], capture_output=True, text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["moved"] > 1e-2          # training changed the weights
    assert report["max_weight_difference"] < 1e-6
    for phase in ("history", "evaluate"):
        single, mirrored = (report[k][phase] for k in ("single", "mirrored"))
        assert single.keys() == mirrored.keys()
        for name in single:
            assert mirrored[name] == pytest.approx(single[name], abs=1e-5), (
                phase, name)


ROOT = pathlib.Path(__file__).resolve().parents[1]
MULTI_WORKER = ROOT / "tests" / "scripts" / "multi_worker.py"


def free_ports(count):
    """``count`` distinct free loopback ports (held open together while
    chosen, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for handle in sockets:
            handle.bind(("127.0.0.1", 0))
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def test_two_workers_train_as_one_with_the_same_global_batch(tmp_path):
    """Two MultiWorkerMirroredStrategy workers on loopback (TF_CONFIG)
    against one worker, global batch 8, two epochs. The classifier's fit
    and the TBPTT trainer (Adam, the global gradient clipped at 0.5, which
    acts) agree to float rounding. Seq2Seq with scheduled sampling follows
    the same schedule, but each replica draws the coins of its half of
    the batch from the same seed as the other (rows 0-3 and 4-7 get the
    same draws; one worker draws 8 different ones), so its losses agree
    only to 1% (measured 0.05% and 0.33% in epochs 1 and 2)."""
    ports = ",".join(map(str, free_ports(2)))
    workers = [
        subprocess.Popen(
            [sys.executable, str(MULTI_WORKER), str(index), ports,
             str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for index in (1, 0)
    ]
    try:
        outputs = [worker.communicate(timeout=150) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    first, second = (json.loads(stdout.strip().splitlines()[-1])
                     for stdout, _ in outputs)
    assert first["replicas"] == second["replicas"] == 2
    one = {**first["one_worker"], **second["one_worker"]}
    report = {}
    for name in ("classifier", "seq2seq", "lm"):
        (single_weights, single), (multi_weights, multi) = (
            one[name], second["two_workers"][name])
        # Both workers end with the same weights.
        assert first["two_workers"][name][0] == multi_weights, name
        initial = second["initial"][name]
        report[name] = {
            "one_worker": single, "two_workers": multi,
            "max_weight_difference": max(
                float(np.max(np.abs(np.subtract(a, b))))
                for a, b in zip(single_weights, multi_weights)),
            "moved": max(float(np.max(np.abs(np.subtract(a, b))))
                         for a, b in zip(initial, single_weights)),
        }
    print(json.dumps(report))
    for name in ("classifier", "lm"):
        run = report[name]
        assert run["moved"] > 0.1, name
        assert run["max_weight_difference"] < 1e-5, name
        for metric, values in run["one_worker"].items():
            assert run["two_workers"][metric] == pytest.approx(
                values, abs=1e-5), (name, metric)
    single, multi = (report["seq2seq"][k] for k in ("one_worker",
                                                    "two_workers"))
    assert multi["sampling_probability"] == pytest.approx(
        [0.15, 0.35], abs=1e-6)
    assert single["sampling_probability"] == multi["sampling_probability"]
    assert multi["loss"] == pytest.approx(single["loss"], rel=1e-2)
    assert single["loss"][1] < single["loss"][0]
    # Each worker keeps its own checkpoints: the chief's in the directory,
    # worker 1's below it.
    for name in ("lm-two", "seq2seq-two"):
        chief = {p.name for p in (tmp_path / name).iterdir()}
        assert ".worker-worker-1" in chief, (name, chief)
        assert {"checkpoint", "LATEST"} & chief, (name, chief)
        worker = {p.name for p in (tmp_path / name / ".worker-worker-1")
                  .iterdir()}
        assert {"checkpoint", "LATEST"} & worker, (name, worker)
