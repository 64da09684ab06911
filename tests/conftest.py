"""Shared test setup: quiet TensorFlow's C++ logs, seed every test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def seed_everything():
    """Seeds Python, NumPy and TensorFlow alike before each test, so that a
    test's result depends neither on the order nor on the xdist worker."""
    keras.utils.set_random_seed(1234)
