"""The README's demo runs end to end: train, export, predict and serve
without TensorFlow, answer a good and a bad HTTP request."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_demo(tmp_path):
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py", "--epochs", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "native LSTM node (bidirectional) for layer 'lstm/layer_0'" in out
    # Both TensorFlow-free processes: the predict command and the server.
    assert out.count("tensorflow imported: False") == 2
    assert "onnxruntime vs Keras on 1000 sequences" in out
    assert "  -> 200 {\"outputs\": {\"logits\": [[" in out
    assert ("  -> 400 {\"error\": \"Input 'tokens' holds token id 12"
            in out)
    assert 'GET /health -> 200 {"status":"ok"' in out
    assert (tmp_path / "onnx" / "model.int8.onnx").exists()
