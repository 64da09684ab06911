"""The README's demo runs end to end: train a seq2seq model, export it,
generate and serve it without TensorFlow, answer good, streaming and bad
requests."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo(tmp_path):
    result = subprocess.run(
        [sys.executable, "examples/demo.py", "--epochs", "1", "--train",
         "3000", "--test", "100", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "exported encoder.onnx: native GRU (bidirectional)" in out
    assert "exported decoder_step.onnx: native GRU (forward)" in out
    assert '"greedy_tokens_identical": true' in out
    # Both TensorFlow-free processes: the generate command and the server.
    assert out.count("tensorflow imported: False") == 2
    assert "-> 200; the same answer as Keras for 100/100" in out
    assert '  -> 400 {"error": "`beam_width` must be an integer in' in out
    assert '  data: {"index": 0, "id": ' in out
    assert "  event: done" in out
    assert 'GET /health -> 200 {"status":"ok"' in out
