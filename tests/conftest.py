"""Shared test setup: quiet TensorFlow's C++ logs, seed every test, and
report the parity figures of :mod:`tests.parity` at the end of a run."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

if keras.config.backend() == "jax":
    # The float64 references (central differences) need JAX's 64-bit mode.
    import jax  # noqa: E402

    jax.config.update("jax_enable_x64", True)

import parity  # noqa: E402


@pytest.fixture(autouse=True)
def seed_everything():
    """Seeds Python, NumPy and TensorFlow alike before each test, so that a
    test's result depends neither on the order nor on the xdist worker."""
    keras.utils.set_random_seed(1234)


def pytest_sessionfinish(session):
    """An xdist worker hands its parity figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["parity"] = json.dumps(parity.WORST)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller gathers each worker's parity figures."""
    figures = getattr(node, "workeroutput", {}).get("parity")
    if figures:
        parity.merge(json.loads(figures))


def pytest_terminal_summary(terminalreporter):
    if parity.WORST:
        terminalreporter.section("parity: largest |kerasrnn - reference|")
        for line in parity.summary_lines():
            terminalreporter.write_line(line)
