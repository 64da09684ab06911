"""Seq2seq number addition: "535+61" -> "596", characters in and out.

Built-in data (no download): both operands uniform in 0..999; the test sums
are pairs never seen in training. A bidirectional-LSTM encoder and an LSTM
decoder with Luong attention learn the carries; greedy and beam search
decode the held-out sums, scored by exact match.

    python examples/seq2seq_addition.py [--epochs 20] [--out artifacts/...]
"""

import argparse
import json
import pathlib
import time

import keras
import numpy as np

from kerasrnn.models import Seq2Seq
from kerasrnn.models import default_optimizer
from kerasrnn.models import text


def make_pairs(count, rng, exclude=frozenset()):
    """``count`` distinct (a, b) pairs with 0 <= a, b <= 999, in random
    order."""
    pairs = {}
    while len(pairs) < count:
        pair = tuple(int(v) for v in rng.integers(0, 1000, 2))
        if pair not in exclude:
            pairs[pair] = None
    return list(pairs)


def to_text(pairs):
    return [f"{a}+{b}" for a, b in pairs], [str(a + b) for a, b in pairs]


def exact_match(model, tokenizer, questions, answers, **options):
    source = text.pad(tokenizer.encode(questions))
    result = model.generate(source, **options)
    predicted = tokenizer.decode(result.ids.numpy()[:, 0])
    return float(np.mean([p == a for p, a in zip(predicted, answers)])), (
        predicted
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="artifacts/seq2seq_addition")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    train_pairs = make_pairs(args.train, rng)
    test_pairs = make_pairs(args.test, rng, exclude=set(train_pairs))
    train_q, train_a = to_text(train_pairs)
    test_q, test_a = to_text(test_pairs)

    tokenizer = text.Tokenizer("char")
    tokenizer.adapt(["0123456789+"])
    source = text.pad(tokenizer.encode(train_q))
    target = text.pad(tokenizer.encode(train_a, bos_eos=True))

    model = Seq2Seq(
        tokenizer.vocabulary_size, tokenizer.vocabulary_size,
        bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
        embedding_dim=32, units=args.units, cell="lstm", bidirectional=True,
        attention="luong_general", max_source_length=7, max_target_length=6,
        seed=args.seed,
    )
    model.compile(optimizer=default_optimizer(3e-3))
    start = time.time()
    history = model.fit(
        source, target, batch_size=args.batch_size, epochs=args.epochs,
        validation_split=0.05, verbose=2,
        callbacks=[keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=0.5, patience=2)],
    )
    train_seconds = time.time() - start

    greedy, predicted = exact_match(model, tokenizer, test_q, test_a)
    beam, _ = exact_match(
        model, tokenizer, test_q, test_a, method="beam", beam_width=3
    )
    for question, guess, answer in list(zip(test_q, predicted, test_a))[:8]:
        verdict = "ok" if guess == answer else f"expected {answer}"
        print(f"{question:>8} -> {guess:<5} {verdict}")
    report = {
        "train_pairs": len(train_pairs), "test_pairs": len(test_pairs),
        "epochs": args.epochs, "train_seconds": round(train_seconds, 1),
        "test_exact_match_greedy": greedy, "test_exact_match_beam3": beam,
        "final_val_exact_match_teacher_forced":
            history.history["val_exact_match"][-1],
    }
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
