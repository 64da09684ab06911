"""The README's Python blocks run as written, in order, in one fresh
process (each block may use what the ones before it made: the model of
"Usage" is exported, then served)."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", readme, re.S | re.M)


def test_readme_python_blocks_run_in_order(tmp_path):
    blocks = python_blocks()
    assert len(blocks) >= 6
    script = "\n\n".join(
        f"print('--- README block {index}', flush=True)\n{block}"
        for index, block in enumerate(blocks, 1)
    )
    (tmp_path / "readme_blocks.py").write_text(script, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "readme_blocks.py"], cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    reached = re.findall(r"--- README block (\d+)", completed.stdout)
    assert completed.returncode == 0, (
        f"README block {reached[-1] if reached else '?'} failed:\n"
        + completed.stderr[-3000:]
    )
    assert (tmp_path / "artifacts" / "model" / "model.onnx").is_file()
