"""Word-level LSTM language model on Penn Treebank (Zaremba et al. 2014).

The defaults are the paper's "small" configuration: 2 layers x 200 LSTM
units, 20 unrolled steps, batch 20, SGD with learning rate 1.0 halved every
epoch after epoch 4, 13 epochs, gradient global norm clipped at 5, every
weight uniform in [-0.1, 0.1], no dropout. The paper reports valid 120.7 /
test 114.5 perplexity.

    python examples/ptb_word_lm.py --data ../shared/data/ptb

Without --data it trains on a small built-in text, to show the pipeline in
a minute. ``--recurrent-dropout`` (variational, on h) and ``--weight-dropout``
(DropConnect on U) regularise the recurrence. Test perplexity is measured
the standard way: state carried over the whole test stream, every token
scored.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from kerasrnn.cells import cell_spec
from kerasrnn.models.language_model import LanguageModel
from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import read_tokens
from kerasrnn.models.lm_data import tokenize
from kerasrnn.models.lm_training import TBPTTTrainer
from kerasrnn.models.lm_training import zaremba_learning_rate

BUILT_IN = """\
the cat sat on the mat
the dog sat on the log
the cat saw the dog
the dog saw the cat on the mat
a bird sat on the dog
the bird saw a cat on the log
"""


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder with ptb.{train,valid,test}"
                        ".txt; omitted: a built-in toy text")
    parser.add_argument("--epochs", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--num-steps", type=int, default=20)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--learning-rate", type=float, default=1.0)
    parser.add_argument("--decay", type=float, default=0.5)
    parser.add_argument("--constant-epochs", type=int, default=4,
                        help="epochs at the initial learning rate")
    parser.add_argument("--clipnorm", type=float, default=5.0)
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="on embeddings, between layers, before softmax")
    parser.add_argument("--recurrent-dropout", type=float, default=0.0,
                        help="variational dropout on h_{t-1} (one mask per "
                             "sequence)")
    parser.add_argument("--weight-dropout", type=float, default=0.0,
                        help="DropConnect on the recurrent weights U (one "
                             "mask per batch; Merity et al. 2018)")
    parser.add_argument("--tie-weights", action="store_true")
    parser.add_argument("--jit", action="store_true",
                        help="compile the training step with XLA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train-tokens", type=int,
                        help="truncate the training stream (quick runs)")
    parser.add_argument("--sample-words", type=int, default=30)
    parser.add_argument("--results", help="write the summary as JSON here")
    parser.add_argument("--checkpoint", help="save the weights here after "
                        "every epoch (a .weights.h5 path)")
    parser.add_argument("--verbose", type=int, default=1)
    return parser.parse_args(argv)


def load_corpus(data):
    """Token lists (train, valid, test) at word level."""
    if data is None:
        tokens = tokenize(BUILT_IN * 40, "word")
        cut = len(tokens) * 8 // 10
        held = tokens[cut:]
        return tokens[:cut], held[:len(held) // 2], held[len(held) // 2:]
    return tuple(
        read_tokens(os.path.join(data, f"ptb.{part}.txt"), "word")
        for part in ("train", "valid", "test")
    )


def main(argv=None):
    args = parse_arguments(argv)
    keras.utils.set_random_seed(args.seed)
    train_tokens, valid_tokens, test_tokens = load_corpus(args.data)
    if args.data is None:
        args.batch_size, args.num_steps = min(args.batch_size, 4), min(
            args.num_steps, 10)
        args.units, args.epochs = min(args.units, 64), min(args.epochs, 6)
        args.constant_epochs = min(args.constant_epochs, 3)
    vocabulary = Vocabulary.build(train_tokens, "word")
    train, _ = vocabulary.encode(train_tokens)
    valid, valid_unknown = vocabulary.encode(valid_tokens)
    test, test_unknown = vocabulary.encode(test_tokens)
    if args.max_train_tokens:
        train = train[:args.max_train_tokens]
    print(f"vocabulary {vocabulary.size} words; tokens train {len(train)}, "
          f"valid {len(valid)} ({valid_unknown} not in the vocabulary -> "
          f"<unk>), test {len(test)} ({test_unknown} -> <unk>)")

    # A template cell carries the recurrent regularisers to every layer.
    cell = cell_spec(args.cell).cell_class(
        args.units, recurrent_dropout=args.recurrent_dropout,
        recurrent_weight_dropout=args.weight_dropout,
    )
    model = LanguageModel(
        vocabulary.size, embedding_dim=args.units, units=args.units,
        num_layers=args.layers, cell=cell, tie_weights=args.tie_weights,
        embedding_dropout=args.dropout, inter_layer_dropout=args.dropout,
        output_dropout=args.dropout, init_scale=args.init_scale,
        seed=args.seed,
    )
    model(keras.ops.zeros((1, 1), "int32"))
    print(f"model: {model.count_params():,} parameters")

    def learning_rate(epoch):
        return zaremba_learning_rate(
            epoch, args.learning_rate, args.decay, args.constant_epochs
        )

    trainer = TBPTTTrainer(
        model, args.batch_size, args.num_steps, learning_rate,
        args.clipnorm, jit_compile=args.jit,
    )
    history, started = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        print(f"epoch {epoch}/{args.epochs}, learning rate "
              f"{learning_rate(epoch):g}")
        train_result = trainer.train_epoch(train, epoch, args.verbose)
        valid_result = trainer.evaluate(valid)
        history.append({
            "epoch": epoch,
            "learning_rate": train_result["learning_rate"],
            "train_perplexity": train_result["perplexity"],
            "valid_perplexity": valid_result["perplexity"],
            "tokens_per_second": train_result["tokens_per_second"],
            "epoch_seconds": train_result["seconds"],
            "elapsed_seconds": time.perf_counter() - started,
        })
        print("  train perplexity {train_perplexity:.2f}, valid "
              "{valid_perplexity:.2f}, {tokens_per_second:.0f} tokens/s, "
              "{elapsed_seconds:.0f} s so far".format(**history[-1]),
              flush=True)
        if args.results:
            _write(args.results, {"args": vars(args), "history": history})
        if args.checkpoint:
            model.save_weights(args.checkpoint)
    test_result = trainer.evaluate(test)
    wall = time.perf_counter() - started
    sample = model.generate("the", vocabulary, args.sample_words,
                            method="sample", temperature=0.8,
                            seed=args.seed)
    summary = {
        "valid_perplexity": history[-1]["valid_perplexity"],
        "test_perplexity": test_result["perplexity"],
        "train_tokens_per_second": sum(
            h["tokens_per_second"] for h in history) / len(history),
        "wall_seconds": wall,
        "epochs": args.epochs,
        "sample": "the " + sample,
    }
    print("\nsummary")
    for key, value in summary.items():
        print(f"  {key:24s} {value:.2f}" if isinstance(value, float)
              else f"  {key:24s} {value}")
    if args.results:
        _write(args.results, {"args": vars(args), "history": history,
                              "summary": summary})
    return summary


def _write(path, payload):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
