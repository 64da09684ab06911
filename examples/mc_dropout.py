"""Monte-Carlo dropout on a recurrent classifier: does the uncertainty
flag the errors, and is the model better calibrated?

The lecture notes: dropout "used in testing: run the sample again and
again with dropout to get a confidence interval" (Gal & Ghahramani 2016).
This trains a bidirectional LSTM sentence classifier with variational
dropout (``dropout`` and ``recurrent_dropout`` on the cells, one mask per
sequence), then predicts the test set twice:

* deterministic: one pass, dropout off (the usual prediction);
* MC dropout: ``kerasrnn.diagnostics.uncertainty.mc_dropout``, N passes
  with dropout on, averaged.

and reports the accuracy, the expected calibration error (ECE, 10 bins),
the negative log-likelihood, and the AUROC of the predictive entropy (and
of the mutual information) for telling misclassified test sentences from
correct ones; ``reliability.png`` draws both reliability diagrams.

    python examples/mc_dropout.py                               # built-in
    python examples/mc_dropout.py --data ../shared/data/sst        # SST-2
    python examples/mc_dropout.py --data ../shared/data/sms_spam   # spam

Without --data it trains on a generated task (sentences of positive,
negative and neutral words, labelled by which kind is in the majority, a
tie drawn at random: some examples cannot be right, the model should be
unsure of them) in a minute. SST-2 uses the standard train / test split
(neutral sentences dropped); SMS spam a seeded 80 / 20 split.
"""

import argparse
import json
import os
import pathlib
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasrnn  # noqa: E402
from kerasrnn.diagnostics.uncertainty import auroc  # noqa: E402
from kerasrnn.diagnostics.uncertainty import deterministic_probabilities  # noqa: E402,E501
from kerasrnn.diagnostics.uncertainty import entropy  # noqa: E402
from kerasrnn.diagnostics.uncertainty import expected_calibration_error  # noqa: E402,E501
from kerasrnn.diagnostics.uncertainty import mc_dropout  # noqa: E402
from kerasrnn.diagnostics.uncertainty import plot_reliability  # noqa: E402

LEAF = re.compile(r"\(\d ([^()]+)\)")
WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def toy_data(seed, rows=6000):
    """Sentences over 40 words: 1-8 positive, 9-16 negative, the rest
    neutral; label 1 when positives outnumber negatives (a tie is a coin
    flip)."""
    rng = np.random.default_rng(seed)
    sentences, labels = [], []
    for _ in range(rows):
        length = int(rng.integers(4, 16))
        words = rng.integers(1, 41, length)
        positive = int(np.sum(words <= 8))
        negative = int(np.sum((words > 8) & (words <= 16)))
        label = int(rng.random() < 0.5) if positive == negative else int(
            positive > negative)
        sentences.append([str(w) for w in words])
        labels.append(label)
    cut = rows * 3 // 4
    return (sentences[:cut], labels[:cut]), (sentences[cut:], labels[cut:])


def read_sst(path):
    rated = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and line[1] != "2":
                rated.append(([w.lower() for w in LEAF.findall(line)],
                              int(line[1] > "2")))
    return [words for words, _ in rated], [label for _, label in rated]


def read_spam(path, seed):
    sentences, labels = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            kind, _, text = line.rstrip("\n").partition("\t")
            if kind in ("ham", "spam"):
                sentences.append(WORD.findall(text.lower()))
                labels.append(int(kind == "spam"))
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = len(order) * 4 // 5

    def pick(indices):
        return [sentences[i] for i in indices], [labels[i] for i in indices]

    return pick(order[:cut]), pick(order[cut:])


def load(data, seed):
    if data is None:
        return "built-in", *toy_data(seed)
    folder = pathlib.Path(data)
    if (folder / "train.txt").exists():
        return ("SST-2", read_sst(folder / "train.txt"),
                read_sst(folder / "test.txt"))
    if (folder / "SMSSpamCollection").exists():
        return "SMS spam", *read_spam(folder / "SMSSpamCollection", seed)
    raise FileNotFoundError(
        f"{data!r} holds neither SST (train.txt, test.txt) nor "
        "SMSSpamCollection."
    )


def encode(sentences, index, length):
    ids = np.zeros((len(sentences), length), "int32")
    for row, words in enumerate(sentences):
        encoded = [index.get(w, 1) for w in words][:length]
        ids[row, :len(encoded)] = encoded
    return ids


def build_model(vocabulary_size, args):
    return keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(vocabulary_size, args.units, mask_zero=True),
        kerasrnn.LSTM(args.units, bidirectional=True, return_sequences=True,
                      dropout=args.dropout,
                      recurrent_dropout=args.dropout, seed=args.seed),
        kerasrnn.SequencePooling("mean"),
        keras.layers.Dropout(args.dropout, seed=args.seed + 1),
        keras.layers.Dense(2),
    ])


def figures(probabilities, labels):
    predicted = probabilities.argmax(axis=-1)
    errors = predicted != labels
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": float(1 - errors.mean()),
        "ece": expected_calibration_error(probabilities, labels),
        "nll": float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
        "entropy_auroc": auroc(entropy(probabilities), errors),
        "errors": int(errors.sum()),
    }


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="an SST or sms_spam folder; omitted:"
                        " the built-in task")
    parser.add_argument("--out", default="artifacts/mc_dropout")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=30,
                        help="MC-dropout passes")
    parser.add_argument("--max-length", type=int, default=60)
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    name, (train_x, train_y), (test_x, test_y) = load(args.data, args.seed)
    counts = {}
    for words in train_x:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    kept = sorted(w for w, c in counts.items() if c >= args.min_count)
    index = {w: i + 2 for i, w in enumerate(kept)}   # 0 pad, 1 unknown
    length = min(args.max_length, max(len(w) for w in train_x + test_x))
    x_train, x_test = (encode(train_x, index, length),
                       encode(test_x, index, length))
    y_train, y_test = np.array(train_y), np.array(test_y)
    print(f"{name}: {len(y_train)} training, {len(y_test)} test "
          f"sentences, vocabulary {len(index) + 2}", flush=True)

    model = build_model(len(index) + 2, args)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=args.batch_size,
              epochs=args.epochs, validation_split=0.1, verbose=2)

    deterministic = deterministic_probabilities(model, x_test)
    mc_started = time.perf_counter()
    result = mc_dropout(model, x_test, samples=args.samples, seed=args.seed,
                        batch_size=512)
    mc_seconds = time.perf_counter() - mc_started
    plain = figures(deterministic, y_test)
    sampled = figures(result.mean, y_test)
    mc_errors = result.predicted_class != y_test
    sampled["mutual_information_auroc"] = auroc(result.mutual_information,
                                                mc_errors)
    out = pathlib.Path(args.out)
    plot_reliability(
        {"deterministic": (deterministic, y_test),
         f"MC dropout, N={args.samples}": (result.mean, y_test)},
        out / "reliability.png",
        title=f"{name} test set, BiLSTM (dropout {args.dropout})",
    )
    rows = [
        ("accuracy", "accuracy"), ("ECE (10 bins)", "ece"),
        ("NLL (nats)", "nll"),
        ("AUROC of entropy for errors", "entropy_auroc"),
    ]
    table = ["| | deterministic | MC dropout |", "|---|---|---|"]
    for label, key in rows:
        table.append(f"| {label} | {plain[key]:.4f} | {sampled[key]:.4f} |")
    table.append("| AUROC of mutual information for errors | | "
                 f"{sampled['mutual_information_auroc']:.4f} |")
    table.append(f"| errors | {plain['errors']} | {sampled['errors']} |")
    command = "python examples/mc_dropout.py" + (
        f" --data {args.data}" if args.data else "")
    report = "\n".join([
        "# MC dropout", "", f"Command: `{command}`", "",
        f"{name}: {len(y_test)} test sentences; BiLSTM {args.units} units "
        f"per direction, dropout {args.dropout} (input and recurrent, one "
        f"mask per sequence) and on the pooled vector, {args.epochs} "
        f"epochs; N = {args.samples} MC passes ({mc_seconds:.1f} s).", "",
        *table, "", f"Wall time {time.perf_counter() - started:.0f} s.",
    ])
    (out / "results.md").write_text(report + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "data": name, "deterministic": plain,
         "mc_dropout": sampled, "mc_seconds": mc_seconds}, indent=2),
        encoding="utf-8")
    print(report)
    return plain, sampled


if __name__ == "__main__":
    main()
