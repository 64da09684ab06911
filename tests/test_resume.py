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

import keras
import numpy as np
import pytest

from kerasrnn.models import LanguageModel
from kerasrnn.models.lm_training import TBPTTTrainer
from kerasrnn.training import AtomicBackupAndRestore

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "resumable_training.py"
TIMEOUT = 120


def start(directory):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def run(directory, kill_at=None, process=None):
    """Runs the script (or waits for ``process``, running it); SIGKILLs it
    once it prints ``kill_at``. Returns its stdout lines."""
    process = process or start(directory)
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
    # The reference, beside the runs below.
    uninterrupted = start("--uninterrupted")
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
    third = run(tmp_path)
    assert "resumed tbptt 3 0" in third               # the LM is done:
    progress = [line for line in third if line.startswith(("fit", "tbptt"))]
    assert progress[0] == "fit 1 0"                   # nothing retrained
    assert any(line.startswith("resumed fit") for line in third)
    report = json.loads(third[-1])
    clean = json.loads(run(None, process=uninterrupted)[-1])
    assert report["lm"]["history"] == pytest.approx(
        clean["lm"]["history"], rel=1e-6)
    assert report["lm"]["perplexity"] == pytest.approx(
        clean["lm"]["perplexity"], rel=1e-6)
    # The resumed fit runs the second epoch (0-based 1) only, on the
    # schedule's course (p from the restored optimizer step).
    for name in ("sampling_probability", "history"):
        assert report["seq2seq"][name] == pytest.approx(
            clean["seq2seq"][name][1:], rel=1e-5), name
    print(json.dumps({"lost_windows": lost_windows,
                      "lost_batches": fit_killed_at[1] + 1,
                      "resumed": report, "uninterrupted": clean}))


def small_classifier():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5),
                              keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_backup_cut_short_is_never_restored(tmp_path):
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model = small_classifier()
    backup = AtomicBackupAndRestore(tmp_path, delete_checkpoint=False)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[backup])
    complete = backup.latest()
    saved = [np.asarray(v) for v in model.variables]
    model.fit(x, y, epochs=1, verbose=0)              # moves on, no backup

    def dies_while_writing(filepath, overwrite=True):
        with open(filepath, "wb") as handle:            # a truncated file
            handle.write(b"\x89HDF\r\n")
        raise KeyboardInterrupt("killed")

    model.save_weights = dies_while_writing
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    assert backup.latest() == complete
    assert any(name.startswith(".partial-") for name in os.listdir(tmp_path))

    restored = small_classifier()
    restore = AtomicBackupAndRestore(tmp_path, delete_checkpoint=False)
    restore.set_model(restored)
    restore.on_train_begin()
    assert restored._initial_epoch == 1
    for before, after in zip(saved, restored.variables):   # seeds included
        np.testing.assert_array_equal(before, np.asarray(after))


def test_a_tbptt_checkpoint_cut_short_is_never_restored(tmp_path):
    ids = np.random.default_rng(0).integers(0, 9, 4 * 31)

    def trainer():
        keras.utils.set_random_seed(0)
        model = LanguageModel(9, embedding_dim=4, units=8, num_layers=1)
        return TBPTTTrainer(model, 4, 10, optimizer="adam",
                            checkpoint_dir=str(tmp_path))

    first = trainer()
    first.fit(ids, 1, verbose=0)
    weights = first.model.get_weights()
    # A later checkpoint whose data file was cut short by a kill before
    # the index file named it.
    for name in os.listdir(tmp_path):
        if name.startswith("ckpt-1."):
            data = (tmp_path / name).read_bytes()
            (tmp_path / name.replace("ckpt-1.", "ckpt-2.")).write_bytes(
                data[:len(data) // 2])
    resumed = trainer()
    epoch, window, _, _, history, stopped = resumed.restore()
    assert (epoch, window, len(history), stopped) == (2, 0, 1, False)
    for before, after in zip(weights, resumed.model.get_weights()):
        np.testing.assert_array_equal(before, after)
