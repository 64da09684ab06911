"""What kerasrnn needs at import, refused with the fix when missing:
TensorFlow installed, and Keras on its TensorFlow backend.

(The TensorFlow-free runtime, ``kerasrnn_serving``, needs neither.)
"""

import os

INSTALL = (
    'pip install "kerasrnn[cpu]" (or "kerasrnn[gpu]" for CUDA; from a '
    'checkout: pip install -e ".[cpu]")'
)
SUPPORTED_BACKENDS = ("tensorflow",)


def check():
    """Raises ``ImportError`` naming what is missing and how to fix it."""
    try:
        import tensorflow  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise ImportError(
            "kerasrnn runs on Keras' TensorFlow backend, and TensorFlow is "
            f"not installed. Install it with: {INSTALL}"
        ) from error
    import keras

    backend = keras.config.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise ImportError(
            f"kerasrnn supports the Keras backends {SUPPORTED_BACKENDS}; "
            f"Keras is set to {backend!r} (KERAS_BACKEND="
            f"{os.environ.get('KERAS_BACKEND')!r}, or ~/.keras/keras.json). "
            "Set KERAS_BACKEND=tensorflow before importing keras."
        )
