"""Seq2seq English -> French on the Tatoeba pairs (fra.txt), with BLEU.

Reads ``fra.txt`` (one "English<TAB>French" pair a line), keeps pairs of at
most 10 words on both sides and holds out 10 % of the distinct English
sentences (with all their translations, which become the references of a
multi-reference BLEU). Word-level tokens (lower-cased, punctuation split
off); a bidirectional LSTM encoder and an LSTM decoder, with or without
Luong attention. Reports sacrebleu BLEU for greedy and beam search, a few
translations and, with attention, writes an attention heat map.

    python examples/seq2seq_translate.py PATH/TO/fra.txt \
        [--attention luong_general|bahdanau|none] [--epochs 6]
    # score a model saved by an earlier run (same data and seed):
    python examples/seq2seq_translate.py PATH/TO/fra.txt --attention none \
        --load artifacts/seq2seq_translate/none/model.keras
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from kerasrnn.export import to_onnx
from kerasrnn.models import Seq2Seq
from kerasrnn.models import default_optimizer
from kerasrnn.models import text
from kerasrnn.models import translation


class TimeBudget(keras.callbacks.Callback):
    """Stops training after ``minutes`` (checked after every batch)."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = minutes * 60
        self.start = time.time()
        self.epoch = 0
        self.stopped_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped_at = f"epoch {self.epoch + 1}, after batch {batch + 1}"


def translate(model, sources, tokens, targets, batch_size=256, **options):
    """Decodes in batches of similar length; returns texts and results."""
    ids = tokens.encode(sources)
    lengths = ids.row_lengths().numpy()
    order = np.argsort(lengths, kind="stable")
    texts = [None] * len(sources)
    log_probs = np.zeros(len(sources))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = text.pad(tf.gather(ids, rows))
        result = model.generate(batch, **options)
        for row, decoded, log_prob in zip(
            rows, targets.decode(result.ids.numpy()[:, 0]),
            result.log_probs.numpy()[:, 0],
        ):
            texts[row] = decoded
            log_probs[row] = log_prob
    return texts, log_probs


def heat_map(model, sources, tokens, targets, path):
    figure = Figure(figsize=(5 * len(sources), 5))
    for axis, sentence in zip(figure.subplots(1, len(sources)), sources):
        source = text.pad(tokens.encode([sentence]))
        result = model.generate(source)
        generated = result.ids.numpy()[:, 0]
        length = int(result.lengths.numpy()[0, 0])
        target = np.concatenate([[[targets.bos_id]], generated], axis=1)
        weights = np.asarray(model.alignments(source, target))[0, :length]
        source_words = [tokens.vocabulary[i] for i in source[0]]
        target_words = [targets.vocabulary[i] for i in generated[0, :length]]
        axis.imshow(weights, cmap="viridis", vmin=0, vmax=1)
        axis.set_xticks(range(len(source_words)), source_words, rotation=60)
        axis.set_yticks(range(len(target_words)), target_words)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def check_loaded(model, tokens, targets, attention):
    """A loaded model must match this run's vocabularies and attention."""
    found = (model.source_vocabulary_size, model.target_vocabulary_size,
             model.attention)
    expected = (tokens.vocabulary_size, targets.vocabulary_size, attention)
    if found != expected:
        raise SystemExit(
            "--load: the model has (source vocabulary, target vocabulary, "
            f"attention) = {found}, but this run's data and options give "
            f"{expected}. Use the data, --seed, --source-tokens, "
            "--target-tokens and --attention of the run that saved it."
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", help="path to fra.txt")
    parser.add_argument("--attention", default="luong_general",
                        choices=["luong_general", "luong_dot", "bahdanau",
                                 "none"])
    parser.add_argument("--max-words", type=int, default=10)
    parser.add_argument("--source-tokens", type=int, default=6000)
    parser.add_argument("--target-tokens", type=int, default=8000)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=60,
                        help="stop training after this many minutes")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--beam-width", type=int, default=5)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--max-train-pairs", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", default=None,
                        help="a model.keras from an earlier run with the "
                        "same data, seed and vocabulary sizes: skip "
                        "training, only evaluate")
    parser.add_argument("--out", default="artifacts/seq2seq_translate")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the ONNX export and TF-free decoding")
    args = parser.parse_args()
    translation.require_sacrebleu()
    keras.utils.set_random_seed(args.seed)
    attention = None if args.attention == "none" else args.attention
    out = pathlib.Path(args.out) / args.attention
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    pairs = translation.read_pairs(args.pairs, args.max_words)
    train, test = translation.split_by_source(pairs, 0.1, rng)
    if args.max_train_pairs:
        train = [train[i] for i in rng.permutation(len(train))[
            : args.max_train_pairs]]
    if args.max_test:
        test = [test[i] for i in sorted(rng.permutation(len(test))[
            : args.max_test])]
    print(f"{len(pairs)} pairs: {len(train)} for training, {len(test)} "
          "held-out English sentences")

    tokens = text.Tokenizer("word", max_tokens=args.source_tokens)
    tokens.adapt(english for english, _ in train)
    targets = text.Tokenizer("word", max_tokens=args.target_tokens)
    targets.adapt(french for _, french in train)
    validation = len(train) // 50
    order = rng.permutation(len(train))
    fit_rows, validation_rows = order[validation:], order[:validation]

    def dataset(rows, shuffle):
        return text.bucketed_dataset(
            tokens.encode([train[i][0] for i in rows]),
            targets.encode([train[i][1] for i in rows], bos_eos=True),
            batch_size=args.batch_size, boundaries=[6, 9, 12, 16],
            shuffle=shuffle, seed=args.seed,
        )

    if args.load:
        model = keras.models.load_model(args.load)
        check_loaded(model, tokens, targets, attention)
    else:
        model = Seq2Seq(
            tokens.vocabulary_size, targets.vocabulary_size,
            bos_id=targets.bos_id, eos_id=targets.eos_id,
            embedding_dim=args.embedding_dim, units=args.units, cell="lstm",
            bidirectional=True, attention=attention, dropout=args.dropout,
            max_target_length=2 * args.max_words + 4, seed=args.seed,
            source_tokenizer=tokens, target_tokenizer=targets,
        )
    model.compile(optimizer=default_optimizer())
    report = {
        "attention": args.attention, "train_pairs": len(train),
        "test_sources": len(test),
        "source_vocabulary": tokens.vocabulary_size,
        "target_vocabulary": targets.vocabulary_size,
    }
    if args.load:
        scores = model.evaluate(dataset(validation_rows, False), verbose=0,
                                return_dict=True)
        report.update(loaded=args.load,
                      val_loss=round(scores["loss"], 4),
                      val_perplexity=round(scores["perplexity"], 2))
    else:
        budget = TimeBudget(args.minutes)
        start = time.time()
        history = model.fit(
            dataset(fit_rows, True), validation_data=dataset(
                validation_rows, False),
            epochs=args.epochs, verbose=2, shuffle=False,
            callbacks=[budget],
        )
        model.save(out / "model.keras")
        report.update(
            epochs_run=len(history.history["loss"]),
            stopped_by_time_budget=budget.stopped_at,
            train_minutes=round((time.time() - start) / 60, 1),
            val_loss=round(history.history["val_loss"][-1], 4),
            val_perplexity=round(history.history["val_perplexity"][-1], 2),
        )

    sources = [english for english, _ in test]
    standardise = [translation.standardise(refs) for _, refs in test]
    searches = {
        "greedy": {},
        f"beam{args.beam_width}": {
            "method": "beam", "beam_width": args.beam_width,
            "length_penalty_weight": args.length_penalty},
        f"beam{args.beam_width}_no_penalty": {
            "method": "beam", "beam_width": args.beam_width},
    }
    outputs = {}
    for name, options in searches.items():
        start = time.time()
        hypotheses, log_probs = translate(
            model, sources, tokens, targets, **options
        )
        outputs[name] = (hypotheses, log_probs)
        score = translation.corpus_bleu(hypotheses, standardise)
        first_only = translation.corpus_bleu(
            hypotheses, [refs[:1] for refs in standardise]
        )
        report[f"bleu_{name}"] = round(score.score, 2)
        report[f"bleu_single_reference_{name}"] = round(first_only.score, 2)
        report[f"decode_seconds_{name}"] = round(time.time() - start, 1)
    beam_log_probs = outputs[f"beam{args.beam_width}_no_penalty"][1]
    report["beam_no_penalty_log_prob_at_least_greedy"] = float(np.mean(
        beam_log_probs >= outputs["greedy"][1] - 1e-4
    ))
    for index in rng.choice(len(sources), 8, replace=False):
        print(f"EN     {sources[index]}")
        print(f"REF    {standardise[index][0]}")
        for name in ("greedy", f"beam{args.beam_width}"):
            print(f"{name:<7}{outputs[name][0][index]}")
    if attention is not None:
        heat_map(model, [sources[i] for i in rng.choice(len(sources), 3)],
                 tokens, targets, out / "attention.png")
        report["heat_map"] = str(out / "attention.png")
    if not args.no_export:
        report.update(export_and_decode(model, sources, out / "onnx",
                                        outputs["greedy"][0], args))
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2))


def export_and_decode(model, sources, directory, keras_greedy, args):
    """Exports the model (encoder + one-step decoder ONNX graphs), decodes
    the held-out sources without TensorFlow, and translates three of them
    in a fresh process (``python -m kerasrnn_serving generate``)."""
    from kerasrnn_serving import Generator

    if model.source_tokenizer is None:
        return {"export": "skipped: the loaded model has no tokenizers"}
    manifest = to_onnx(model, directory)
    generator = Generator(directory)
    answers = []
    for start in range(0, len(sources), 256):
        answers += [a["text"] for a in
                    generator.generate(sources[start:start + 256])]
    same = np.mean([a == b for a, b in zip(answers, keras_greedy)])
    command = [sys.executable, "-m", "kerasrnn_serving", "generate",
               str(directory), *sources[:3], "--method", "beam",
               "--beam-width", str(args.beam_width), "--length-penalty",
               str(args.length_penalty)]
    print(subprocess.run(command, capture_output=True, text=True,
                         check=True).stdout)
    return {"onnx_export": str(directory),
            "export_parity": manifest["parity"],
            "tf_free_greedy_same_text_as_keras": float(same)}


if __name__ == "__main__":
    main()
