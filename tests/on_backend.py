"""Test code run on another Keras backend: the backend is fixed per
process, so references from another backend (TensorFlow's results, a
``.keras`` file saved elsewhere) come from a subprocess."""

import os
import subprocess
import sys


def run_on_backend(backend, code, timeout=300):
    """Runs the Python source ``code`` with ``KERAS_BACKEND=backend``;
    a failure fails the calling test with the end of its stderr."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
