"""Quickstart: train a kerasrnn classifier on built-in data, save, reload.

Task (no download needed): each example is a variable-length sequence of
tokens 1..9, right-padded with 0. The label says whether the first token
equals the last real token, so the model must carry information across the
whole (variable) length: Embedding(mask_zero=True) feeds the padding mask to
a bidirectional LSTM, whose backward direction starts at each sequence's last
real token.

    python examples/quickstart.py [--epochs 25] [--out artifacts/quickstart]
"""

import argparse
import pathlib
import time

import keras
import numpy as np

import kerasrnn

VOCAB = 10          # token 0 is padding
MAX_LENGTH = 20


def make_data(count, seed):
    """Padded token sequences and labels (first token == last real token)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, MAX_LENGTH + 1, size=count)
    tokens = np.zeros((count, MAX_LENGTH), dtype="int32")
    labels = rng.integers(0, 2, size=count)
    for row, (length, label) in enumerate(zip(lengths, labels)):
        tokens[row, :length] = rng.integers(1, VOCAB, size=length)
        if label:
            tokens[row, length - 1] = tokens[row, 0]
        elif tokens[row, length - 1] == tokens[row, 0]:
            tokens[row, length - 1] = tokens[row, 0] % (VOCAB - 1) + 1
    return tokens, labels.astype("int32")


def build_model():
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 16, mask_zero=True),
            kerasrnn.LSTM(32, bidirectional=True),
            keras.layers.Dense(2),
        ],
        name="first_equals_last",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--out", default="artifacts/quickstart")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)

    x_train, y_train = make_data(4000, seed=1)
    x_test, y_test = make_data(1000, seed=2)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(5e-3, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs,
              validation_split=0.1, verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"\ntrained {args.epochs} epochs in {seconds:.1f} s; "
          f"held-out accuracy {accuracy:.3f} (chance 0.5)")

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    difference = np.abs(
        reloaded.predict(x_test, verbose=0) - model.predict(x_test, verbose=0)
    ).max()
    print(f"saved {path}; reloaded model differs by {difference:.1e}")

    predictions = reloaded.predict(x_test[:5], verbose=0).argmax(-1)
    for tokens, label, predicted in zip(x_test[:5], y_test, predictions):
        sequence = " ".join(str(t) for t in tokens if t)
        print(f"  [{sequence}] first==last: {bool(label)!s:5} "
              f"predicted: {bool(predicted)}")


if __name__ == "__main__":
    main()
