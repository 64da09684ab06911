"""Seq2Seq under tf.distribute.MirroredStrategy with two replicas trains
on the objective of one device: the mean over the real tokens of the
global batch, not of each replica's half."""

import json
import pathlib
import subprocess
import sys

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
