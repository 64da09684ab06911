"""What kerasrnn needs at import, refused with the fix when missing: Keras
on one of the backends kerasrnn runs on, and that backend installed.

(The TensorFlow-free runtime, ``kerasrnn_serving``, needs none of them.)
"""

import importlib
import json
import os
import sys

INSTALL = (
    'pip install "kerasrnn[cpu]" (or "kerasrnn[gpu]" for CUDA; from a '
    'checkout: pip install -e ".[cpu]")'
)
# Keras backend -> the package it runs on.
SUPPORTED_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax",
                      "torch": "torch"}


def check():
    """Raises ``ImportError`` naming what is missing and how to fix it.

    The backend's package is imported before Keras (which would fail on a
    missing one with a less helpful message)."""
    backend = configured_backend()
    if backend not in SUPPORTED_BACKENDS:
        raise ImportError(
            f"kerasrnn supports the Keras backends "
            f"{tuple(SUPPORTED_BACKENDS)}; Keras is set to {backend!r} "
            f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}, or "
            "~/.keras/keras.json). Set KERAS_BACKEND to one of them before "
            "importing keras."
        )
    package = SUPPORTED_BACKENDS[backend]
    try:
        importlib.import_module(package)
    except ModuleNotFoundError as error:
        if error.name != package:
            raise
        hint = INSTALL if package == "tensorflow" else f"pip install {package}"
        raise ImportError(
            f"kerasrnn runs on Keras' {backend!r} backend here, and {package} "
            f"is not installed. Install it with: {hint}"
        ) from error


def configured_backend():
    """The backend Keras uses (or will use once imported): as Keras reads
    it, ``KERAS_BACKEND``, else ``$KERAS_HOME/keras.json`` (default
    ``~/.keras``), else TensorFlow."""
    if "keras" in sys.modules:
        return sys.modules["keras"].config.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME",
                          os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        with open(os.path.join(home, "keras.json")) as config:
            return json.load(config).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def require_tensorflow(feature):
    """Raises a ``RuntimeError`` when Keras is not on TensorFlow: for the
    parts of kerasrnn that are TensorFlow's (SavedModel, ``tf.data`` and
    ``tf.distribute`` helpers)."""
    import keras

    backend = keras.config.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{feature} runs on Keras' TensorFlow backend only; Keras is "
            f"set to {backend!r}. Set KERAS_BACKEND=tensorflow for it."
        )


def import_tensorflow(feature):
    """TensorFlow itself, for the parts that need it installed whatever
    the Keras backend (``TextVectorization``, ``tf.strings``, ``tf.data``:
    TensorFlow's on every backend; it installs beside JAX or torch);
    an ``ImportError`` naming ``feature`` and the fix where it is not."""
    try:
        import tensorflow
    except ImportError:
        raise ImportError(
            f"{feature} needs TensorFlow: keras.layers.TextVectorization, "
            "tf.strings and tf.data are TensorFlow's on every Keras "
            "backend. pip install tensorflow (it installs beside jax or "
            "torch)."
        ) from None
    return tensorflow
