"""Kill and resume: a training process SIGKILLed mid-epoch and started
again loses at most the epoch under way and ends where an uninterrupted
run ends; a checkpoint cut short is never the one restored."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "resumable_training.py"
TIMEOUT = 120


def run(directory, kill_at=None, *flags):
    """Runs the script; SIGKILLs it once it prints ``kill_at``. Returns
    its stdout lines and return code."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(directory), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if lines[-1] == kill_at:
                os.kill(process.pid, signal.SIGKILL)
                break
        lines += [line.strip() for line in process.stdout]
        stderr = process.stderr.read()
        process.wait()
    finally:
        timer.cancel()
        process.kill()
    assert process.returncode != 0 or kill_at is None, stderr[-3000:]
    if kill_at is None:
        assert process.returncode == 0, stderr[-3000:]
    else:
        assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    return lines


def last(lines, kind):
    """``(epoch, step)`` of the last ``kind EPOCH STEP`` progress line."""
    words = [line.split() for line in lines if line.startswith(kind + " ")]
    return tuple(int(word) for word in words[-1][1:]) if words else None


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(
        tmp_path):
    # 1. Killed in the language model's 2nd epoch (12 windows an epoch,
    # a checkpoint every 4 windows and at each epoch end).
    first = run(tmp_path, "tbptt 2 6")
    killed_at = last(first, "tbptt")
    assert killed_at[0] == 2 and killed_at[1] >= 6
    # 2. Resumes the LM from its last checkpoint, then is killed in the
    # Seq2Seq's 2nd epoch (6 batches an epoch, a backup at each end).
    second = run(tmp_path, "fit 1 2")
    resumed = [line for line in second if line.startswith("resumed tbptt")]
    assert len(resumed) == 1
    epoch, window = map(int, resumed[0].split()[2:])
    assert (epoch, window) <= killed_at
    lost_windows = (killed_at[0] - epoch) * 12 + killed_at[1] - window
    assert 0 <= lost_windows < 12                     # within one epoch
    assert next(line for line in second if line.startswith("tbptt")) == (
        f"tbptt {epoch} {window + 1}")                # nothing redone
    fit_killed_at = last(second, "fit")
    assert fit_killed_at[0] == 1 and fit_killed_at[1] >= 2
    # 3. Resumes the Seq2Seq at the start of the epoch it was killed in.
    third = run(tmp_path, None, "--compare")
    assert "resumed tbptt 4 0" in third               # the LM is done:
    progress = [line for line in third if line.startswith(("fit", "tbptt"))]
    assert progress[0] == "fit 1 0"                   # nothing retrained
    assert any(line.startswith("resumed fit") for line in third)
    report = json.loads(third[-1])
    clean = report["uninterrupted"]
    assert report["lm"]["history"] == pytest.approx(
        clean["lm"]["history"], rel=1e-6)
    assert report["lm"]["perplexity"] == pytest.approx(
        clean["lm"]["perplexity"], rel=1e-6)
    # The resumed fit runs epochs 2 and 3 (0-based 1, 2) only, on the
    # schedule's course (p from the restored optimizer step).
    for name in ("sampling_probability", "history"):
        assert report["seq2seq"][name] == pytest.approx(
            clean["seq2seq"][name][1:], rel=1e-5), name
    assert report["seq2seq"]["loss"] == pytest.approx(
        clean["seq2seq"]["loss"], rel=1e-5)
    print(json.dumps({"lost_windows": lost_windows,
                      "lost_batches": fit_killed_at[1] + 1,
                      "resumed": report, }))
