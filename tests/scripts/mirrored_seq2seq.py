"""Trains one Seq2Seq twice on the same ragged batches, on one device and
under a 2-replica MirroredStrategy (two logical CPUs), and prints the
largest weight difference and both runs' metrics as JSON.

Run as a subprocess: the logical devices must be set before TensorFlow
starts."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasrnn.models import Seq2Seq  # noqa: E402

PAD, BOS, EOS, VOCAB = 0, 1, 2, 12


def data(count=16):
    """Targets of very different lengths: in each batch of 8 the first
    replica's 4 rows hold 7 symbols, the second's 1, so the replicas see
    different numbers of real tokens."""
    rng = np.random.default_rng(0)
    source = np.zeros((count, 7), "int32")
    target = np.zeros((count, 9), "int32")
    for row in range(count):
        length = 7 if row % 8 < 4 else 1
        symbols = rng.integers(3, VOCAB, length)
        source[row, :length] = symbols
        target[row, :length + 2] = [BOS, *symbols[::-1], EOS]
    return source, target


def train(strategy, weights, model_kind):
    with strategy.scope():
        model = Seq2Seq(VOCAB, VOCAB, BOS, EOS, embedding_dim=8, units=16,
                        cell=model_kind, attention="bahdanau",
                        bidirectional=True)
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    source, target = data()
    dataset = tf.data.Dataset.from_tensor_slices((source, target)).batch(8)
    history = model.fit(dataset, epochs=2, verbose=0, shuffle=False)
    evaluated = model.evaluate(dataset, verbose=0, return_dict=True)
    return model.get_weights(), history.history, evaluated


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "gru"
    keras.utils.set_random_seed(0)
    initial = Seq2Seq(VOCAB, VOCAB, BOS, EOS, embedding_dim=8, units=16,
                      cell=kind, attention="bahdanau",
                      bidirectional=True).get_weights()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    single = train(tf.distribute.get_strategy(), initial, kind)
    mirrored = train(tf.distribute.MirroredStrategy(devices), initial, kind)
    print(json.dumps({
        "replicas": len(devices),
        "max_weight_difference": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(single[0], mirrored[0])),
        "moved": max(float(np.max(np.abs(a - b)))
                     for a, b in zip(initial, single[0])),
        "single": {"history": single[1], "evaluate": single[2]},
        "mirrored": {"history": mirrored[1], "evaluate": mirrored[2]},
    }))


if __name__ == "__main__":
    main()
