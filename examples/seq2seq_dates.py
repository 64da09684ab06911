"""Seq2seq date normalisation: "3 May 1979" -> "1979-05-03".

Built-in data (no download): random dates from 1900 to 2099 written in 16
human formats (day-month or month-day order, full or short month names,
weekday names, ordinal suffixes, case variations, numeric day.month.year).
Held-out dates never appear in training (in any format). A GRU encoder and
decoder with Bahdanau attention map characters to characters.

    python examples/seq2seq_dates.py [--epochs 2] [--out artifacts/...]
"""

import argparse
import datetime
import json
import pathlib
import time

import keras
import numpy as np

from kerasrnn.models import Seq2Seq
from kerasrnn.models import default_optimizer
from kerasrnn.models import text

FIRST = datetime.date(1900, 1, 1)
DAYS = (datetime.date(2099, 12, 31) - FIRST).days + 1


def ordinal(day):
    if day in (11, 12, 13):
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


# Each format is unambiguous: numeric forms are always day.month.year.
FORMATS = [
    lambda d: f"{d.day} {d:%B} {d.year}",            # 3 May 1979
    lambda d: f"{d:%d} {d:%B} {d.year}",             # 03 May 1979
    lambda d: f"{d:%B} {d.day}, {d.year}",           # May 3, 1979
    lambda d: f"{d.day} {d:%b} {d.year}",            # 3 May 1979 (short)
    lambda d: f"{d:%b} {d.day} {d.year}",            # Sep 3 1979
    lambda d: f"{d:%A}, {d.day} {d:%B} {d.year}",    # Thursday, 3 May 1979
    lambda d: f"{d:%a} {d:%b} {d.day} {d.year}",     # Thu May 3 1979
    lambda d: f"{d:%A} {d:%B} {d.day}, {d.year}",    # Thursday May 3, 1979
    lambda d: f"{d.day}.{d.month}.{d.year}",         # 3.5.1979
    lambda d: f"{d:%d}.{d:%m}.{d.year}",             # 03.05.1979
    lambda d: f"{ordinal(d.day)} {d:%B} {d.year}",   # 3rd May 1979
    lambda d: f"the {ordinal(d.day)} of {d:%B}, {d.year}",
    lambda d: f"{d:%B} {ordinal(d.day)}, {d.year}",  # May 3rd, 1979
    lambda d: f"{d.day} {d:%B} {d.year}".upper(),    # 3 MAY 1979
    lambda d: f"{d:%b}. {d.day}, {d.year}".lower(),  # may. 3, 1979
    lambda d: f"{d.year} {d:%B} {d.day}",            # 1979 May 3
]


def make_examples(offsets, rng):
    dates = [FIRST + datetime.timedelta(days=int(o)) for o in offsets]
    formats = rng.integers(0, len(FORMATS), len(dates))
    sources = [FORMATS[f](d) for f, d in zip(formats, dates)]
    return sources, [d.isoformat() for d in dates]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=40_000)
    parser.add_argument("--test", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="artifacts/seq2seq_dates")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    # Held-out dates are disjoint from training dates. Training draws each
    # remaining date (with replacement) in a random format.
    order = rng.permutation(DAYS)
    test_days, train_days = order[: args.test], order[args.test:]
    test_x, test_y = make_examples(test_days, rng)
    train_x, train_y = make_examples(
        rng.choice(train_days, args.train), rng
    )

    sources = text.Tokenizer("char")
    sources.adapt(train_x)
    targets = text.Tokenizer("char")
    targets.adapt(train_y)

    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id,
        embedding_dim=32, units=args.units, cell="gru", bidirectional=True,
        attention="bahdanau", max_target_length=12, seed=args.seed,
    )
    model.compile(optimizer=default_optimizer(3e-3))
    dataset = text.bucketed_dataset(
        sources.encode(train_x), targets.encode(train_y, bos_eos=True),
        batch_size=args.batch_size, boundaries=[16, 24, 32], seed=args.seed,
    )
    start = time.time()
    model.fit(dataset, epochs=args.epochs, verbose=2, shuffle=False)
    train_seconds = time.time() - start

    test_source = text.pad(sources.encode(test_x))
    report = {"train_examples": len(train_x), "test_dates": len(test_x),
              "epochs": args.epochs, "train_seconds": round(train_seconds, 1)}
    for name, options in (("greedy", {}),
                          ("beam3", {"method": "beam", "beam_width": 3})):
        start = time.time()
        ids = model.generate(test_source, **options).ids.numpy()[:, 0]
        predicted = targets.decode(ids)
        report[f"test_exact_match_{name}"] = float(
            np.mean([p == y for p, y in zip(predicted, test_y)])
        )
        report[f"decode_seconds_{name}"] = round(time.time() - start, 1)
        if name == "greedy":
            shown = list(zip(test_x, predicted, test_y))
    wrong = [example for example in shown if example[1] != example[2]]
    for source_text, guess, answer in shown[:6] + wrong[:6]:
        verdict = "ok" if guess == answer else f"expected {answer}"
        print(f"{source_text:>32} -> {guess} {verdict}")
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
