"""The probing lab: is syntax low and semantics high in a deep recurrent LM?

The lecture notes claim that "representations in first layers are better
for syntactic tasks while representations in last layers perform better on
semantic tasks". This lab checks it on kerasrnn's own stacks:

1. Train a 3-layer bidirectional LSTM language model the way ELMo does
   (Peters et al. 2018): a bidirectional LM must not see the token it
   predicts, so it is two ``kerasrnn.models.LanguageModel`` s with the same
   layout, a forward one on the corpus and a backward one on the reversed
   corpus. Layer k of the biLM is the concatenation of both models' layer
   k states at each token (the backward states realigned to the token
   order); depth 0 is the two embeddings.
2. Freeze it and fit a linear probe (``kerasrnn.diagnostics.probing``) per
   depth and direction for a syntactic task, part-of-speech tags (UD
   English-EWT, one label per token), and a semantic one, sentence
   sentiment (SST-2, the states mean-pooled over the sentence).
3. Do the same on a random-weights control: the same two networks,
   untrained.

    python examples/probing_lab.py                  # built-in toy data
    python examples/probing_lab.py --data ../shared/data   # PTB, EWT, SST

Without --data it trains on a small generated corpus (a toy grammar with
its own POS tags and negated sentiment), to show the pipeline in a couple
of minutes. With --data the LM reads PTB (``ptb/``; Mikolov's
preprocessing: lower case, numbers as ``N``, no punctuation), and the
probes read ``ud_ewt/`` and ``sst/``, mapped to the PTB vocabulary the
same way (punctuation and unknown words become ``<unk>``).

Outputs in --out (default artifacts/probing_lab): ``probes.png`` (accuracy
vs depth, both directions), ``probes_forward.png``, ``results.md`` (the
table, the verdict, the settings), ``results.json``, and the two LMs'
weights (``--reuse`` probes them again without training).
"""

import argparse
import json
import os
import pathlib
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasrnn import conllu  # noqa: E402
from kerasrnn.diagnostics.probing import LayerStates  # noqa: E402
from kerasrnn.diagnostics.probing import format_probe_table  # noqa: E402
from kerasrnn.diagnostics.probing import layer_features  # noqa: E402
from kerasrnn.diagnostics.probing import plot_probes  # noqa: E402
from kerasrnn.diagnostics.probing import probe_layers  # noqa: E402
from kerasrnn.models.language_model import LanguageModel  # noqa: E402
from kerasrnn.models.lm_data import EOS  # noqa: E402
from kerasrnn.models.lm_data import Vocabulary  # noqa: E402
from kerasrnn.models.lm_data import read_tokens  # noqa: E402
from kerasrnn.models.lm_training import TBPTTTrainer  # noqa: E402

POS_TASK = "POS"
SENTIMENT_TASK = "sentiment"

# --- the built-in toy language: its grammar knows every word's tag ---------

LEXICON = {
    "DET": ["the", "a", "this", "that"],
    "NOUN": ["cat", "dog", "film", "story", "man", "bird", "song", "plot"],
    "VERB": ["saw", "liked", "hated", "chased", "watched", "found"],
    "ADJ+": ["good", "great", "fine", "lovely", "funny"],
    "ADJ-": ["bad", "awful", "dull", "boring", "poor"],
    "ADV": ["very", "really", "quite"],
}


def toy_sentence(rng):
    """``(words, tags, sentiment or None)`` from the toy grammar."""
    def word(tag):
        return str(rng.choice(LEXICON[tag]))

    def noun_phrase():
        words, tags = [word("DET")], ["DET"]
        if rng.random() < 0.4:
            words.append(word(str(rng.choice(["ADJ+", "ADJ-"]))))
            tags.append("ADJ")
        return words + [word("NOUN")], tags + ["NOUN"]

    subject, subject_tags = noun_phrase()
    if rng.random() < 0.5:
        obj, obj_tags = noun_phrase()
        return (subject + [word("VERB")] + obj,
                subject_tags + ["VERB"] + obj_tags, None)
    words, tags = subject + ["was"], subject_tags + ["AUX"]
    negated = rng.random() < 0.5
    if negated:
        words, tags = words + ["not"], tags + ["PART"]
    if rng.random() < 0.5:
        words, tags = words + [word("ADV")], tags + ["ADV"]
    polarity = str(rng.choice(["ADJ+", "ADJ-"]))
    words, tags = words + [word(polarity)], tags + ["ADJ"]
    return words, tags, int((polarity == "ADJ+") != negated)


def toy_data(seed, sentences=3000):
    rng = np.random.default_rng(seed)
    drawn = [toy_sentence(rng) for _ in range(sentences)]
    lm_tokens = [t for words, _, _ in drawn[:2000] for t in words + [EOS]]
    tagged = [(words, tags) for words, tags, _ in drawn[2000:]]
    rated = [(words, label) for words, _, label in drawn[2000:]
             if label is not None]
    pos_cut, sst_cut = len(tagged) * 7 // 10, len(rated) * 7 // 10
    return (lm_tokens, tagged[:pos_cut], tagged[pos_cut:], rated[:sst_cut],
            rated[sst_cut:])


# --- the real data ------------------------------------------------------

NUMBER = re.compile(r"^[+-]?[\d.,:/\\-]*\d[\d.,:/\\-]*$")


def ptb_word(word):
    """A word as Mikolov's PTB writes it: lower case, numbers as ``N``."""
    word = word.lower()
    return "N" if NUMBER.match(word) else word


def read_conllu(path, limit=None):
    """``[(words, upos tags)]`` of a CoNLL-U file (multi-word ranges and
    empty nodes skipped: one row per syntactic word)."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    tagged = [([fields[1] for _, fields in words],
               [fields[3] for _, fields in words])
              for _, words in conllu.sentences(lines, path)]
    return tagged[:limit] if limit else tagged


LEAF = re.compile(r"\(\d ([^()]+)\)")


def read_sst(path):
    """``[(words, label)]`` of SST-2: the root labels 0-1 negative, 3-4
    positive; neutral (2) sentences dropped. Leaves split on ``(`` and
    ``)`` only (some hold a no-break space, see SOURCE.txt)."""
    rated = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            root = int(line[1])
            if root == 2:
                continue
            rated.append((LEAF.findall(line), int(root > 2)))
    return rated


def real_data(folder, pos_train):
    folder = pathlib.Path(folder)
    lm_tokens = read_tokens(str(folder / "ptb" / "ptb.train.txt"), "word")
    ewt = folder / "ud_ewt"
    tagged_train = read_conllu(ewt / "en_ewt-ud-train.conllu", pos_train)
    tagged_test = read_conllu(ewt / "en_ewt-ud-dev.conllu")
    rated_train = read_sst(folder / "sst" / "train.txt")
    rated_test = read_sst(folder / "sst" / "dev.txt")

    def convert(rows):
        return [([ptb_word(w) for w in words], y) for words, y in rows]

    return (lm_tokens, convert(tagged_train), convert(tagged_test),
            convert(rated_train), convert(rated_test))


# --- the biLM ---------------------------------------------------------------

def build_lm(args, vocabulary, seed):
    model = LanguageModel(
        vocabulary.size, embedding_dim=args.units, units=args.units,
        num_layers=args.layers, tie_weights=True,
        embedding_dropout=args.dropout, inter_layer_dropout=args.dropout,
        output_dropout=args.dropout, seed=seed, name=f"lm_{seed}",
    )
    model(np.zeros((1, 1), "int32"))
    return model


def train_lm(model, ids, args, label):
    trainer = TBPTTTrainer(model, args.batch_size, args.num_steps,
                           args.learning_rate, clipnorm=1.0,
                           optimizer="adam")
    history = []
    for epoch in range(1, args.epochs + 1):
        result = trainer.train_epoch(ids, epoch, verbose=0)
        history.append(result)
        print(f"  {label} LM epoch {epoch}: train perplexity "
              f"{result['perplexity']:.1f}, "
              f"{result['tokens_per_second']:.0f} tokens/s", flush=True)
    return history, trainer


def encode_rows(rows, vocabulary, reverse=False):
    """Right-padded ids and mask of the sentences (each reversed for the
    backward LM)."""
    length = max(len(words) for words, _ in rows)
    ids = np.zeros((len(rows), length), "int32")
    mask = np.zeros((len(rows), length), bool)
    for index, (words, _) in enumerate(rows):
        encoded, _ = vocabulary.encode(words[::-1] if reverse else words)
        ids[index, :len(words)] = encoded
        mask[index, :len(words)] = True
    return ids, mask


def bilm_features(forward_lm, backward_lm, rows, vocabulary, pooling):
    """The biLM's rows per depth: ``name/forward``, ``name/backward`` and
    ``name`` (both concatenated), the backward token rows realigned to the
    token order."""
    # Sorting by length keeps the batches' padding short.
    order = np.argsort([len(words) for words, _ in rows], kind="stable")
    rows = [rows[i] for i in order]
    lengths = np.array([len(words) for words, _ in rows])
    features = {}
    for direction, model in (("forward", forward_lm),
                             ("backward", backward_lm)):
        ids, mask = encode_rows(rows, vocabulary, direction == "backward")
        features[direction] = layer_features(
            model, ids, mask, pooling, stack=model.recurrent,
            embed=model.embedding, batch_size=128,
        )
    if pooling is None:
        # Token j of a sentence is row L-1-j of its reversed copy.
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        realign = np.concatenate([
            offset + length - 1 - np.arange(length)
            for offset, length in zip(offsets, lengths)
        ])
        labels = np.concatenate([rows[i][1] for i in range(len(rows))])
    else:
        realign = np.arange(len(rows))
        labels = np.array([label for _, label in rows])
    entries = []
    for forward, backward in zip(features["forward"],
                                 features["backward"]):
        backward_values = backward.values[realign]
        entries += [
            LayerStates(f"{forward.name}/forward", forward.depth, "forward",
                        forward.values),
            LayerStates(f"{forward.name}/backward", forward.depth,
                        "backward", backward_values),
            LayerStates(forward.name, forward.depth, "both",
                        np.concatenate([forward.values, backward_values],
                                       axis=1)),
        ]
    return entries, labels


def tag_ids(train, test):
    tags = sorted({t for _, tags in train for t in tags})
    index = {tag: i for i, tag in enumerate(tags)}
    # A tag unseen in training cannot be predicted: it counts as an error.

    def convert(rows):
        return [(words, [index.get(t, len(tags)) for t in row_tags])
                for words, row_tags in rows]

    return convert(train), convert(test), tags


def probe_model(label, forward_lm, backward_lm, data, vocabulary, args):
    _, tagged_train, tagged_test, rated_train, rated_test = data
    results = []
    for task, train_rows, test_rows, pooling in (
        (POS_TASK, tagged_train, tagged_test, None),
        (SENTIMENT_TASK, rated_train, rated_test, "mean"),
    ):
        started = time.perf_counter()
        train, train_labels = bilm_features(
            forward_lm, backward_lm, train_rows, vocabulary, pooling)
        test, test_labels = bilm_features(
            forward_lm, backward_lm, test_rows, vocabulary, pooling)
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        results += probe_layers(
            task, train, train_labels, test, test_labels,
            num_classes=num_classes, epochs=args.probe_epochs,
            seed=args.seed,
        )
        print(f"  {label}: {task} probes on {len(train_labels)} / "
              f"{len(test_labels)} rows in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return results


def best_depth(results, task, direction="both"):
    """The depth (≥ 1: the LSTM layers) with the best probe accuracy."""
    rows = [r for r in results
            if r.task == task and r.direction == direction and r.depth > 0]
    return max(rows, key=lambda r: r.accuracy)


def verdict(results, control):
    """The notes' claim, checked on the merged (both-direction) layers."""
    pos = best_depth(results, POS_TASK)
    sentiment = best_depth(results, SENTIMENT_TASK)
    lines = [
        f"- best LSTM layer for {POS_TASK}: depth {pos.depth} "
        f"({pos.accuracy:.3f}); for {SENTIMENT_TASK}: depth "
        f"{sentiment.depth} ({sentiment.accuracy:.3f}).",
    ]
    top = max(r.depth for r in results)
    # Read as: syntax peaks at a lower layer than semantics does.
    holds = pos.depth < sentiment.depth
    if holds:
        detail = (f": POS peaks at depth {pos.depth}, below sentiment's "
                  f"peak at depth {sentiment.depth}"
                  + ("" if sentiment.depth == top else
                     f" (not the top layer, depth {top})") + ".")
    else:
        detail = (f": POS peaks at depth {pos.depth}, sentiment at depth "
                  f"{sentiment.depth}.")
    lines.append(
        "- the claim (syntax best in the first layers, semantics in the "
        f"last) {'HELD' if holds else 'DID NOT HOLD'} on this setup"
        + detail
    )
    for task in (POS_TASK, SENTIMENT_TASK):
        gains = []
        for r in results:
            if r.task != task or r.direction != "both":
                continue
            c = next(c for c in control
                     if c.task == task and c.name == r.name)
            gains.append(f"depth {r.depth} {r.accuracy - c.accuracy:+.3f}")
        lines.append(f"- trained minus random control, {task}: "
                     + ", ".join(gains) + ".")
    return lines, holds


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder with ptb/, ud_ewt/, sst/; "
                        "omitted: the built-in toy language")
    parser.add_argument("--out", default="artifacts/probing_lab")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=35)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--max-train-tokens", type=int,
                        help="truncate the LM's training stream")
    parser.add_argument("--pos-train-sentences", type=int, default=3000,
                        help="EWT training sentences for the POS probes")
    parser.add_argument("--probe-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="load the LMs saved in --out by an earlier run "
                        "instead of training them (probes only)")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_arguments(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    if args.data is None:
        args.units = min(args.units, 64)
        args.epochs = max(args.epochs, 3)
        data = toy_data(args.seed)
    else:
        data = real_data(args.data, args.pos_train_sentences)
    lm_tokens, tagged_train, tagged_test, _, _ = data
    vocabulary = Vocabulary.build(lm_tokens, "word")
    ids, _ = vocabulary.encode(lm_tokens)
    if args.max_train_tokens:
        ids = ids[:args.max_train_tokens]
    tagged_train, tagged_test, tags = tag_ids(tagged_train, tagged_test)
    data = (lm_tokens, tagged_train, tagged_test) + data[3:]
    test_ids = np.concatenate([vocabulary.encode(words)[0]
                               for words, _ in tagged_test])
    unknown = float(np.mean(test_ids == vocabulary.unk_id))
    print(f"vocabulary {vocabulary.size}; LM stream {len(ids)} tokens; "
          f"{len(tags)} POS tags; <unk> rate in the POS test sentences "
          f"{unknown:.3f}", flush=True)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    forward_lm = build_lm(args, vocabulary, args.seed)
    backward_lm = build_lm(args, vocabulary, args.seed + 100)
    histories, trainers = {}, {}
    for direction, model, stream in (("forward", forward_lm, ids),
                                     ("backward", backward_lm,
                                      ids[::-1].copy())):
        weights = out / f"{direction}_lm.weights.h5"
        if args.reuse and weights.exists():
            model.load_weights(weights)
            trainers[direction] = TBPTTTrainer(
                model, args.batch_size, args.num_steps)
            histories[direction] = "loaded from " + str(weights)
            print(f"  {direction} LM loaded from {weights}", flush=True)
            continue
        histories[direction], trainers[direction] = train_lm(
            model, stream, args, direction)
        model.save_weights(weights)
    forward_trainer = trainers["forward"]
    backward_trainer = trainers["backward"]
    held = ids[-20000:] if args.data is None else None
    if args.data is not None:
        valid = read_tokens(os.path.join(args.data, "ptb", "ptb.valid.txt"))
        held = vocabulary.encode(valid)[0]
    perplexity = {
        "forward": forward_trainer.evaluate(held, batch_size=10,
                                            num_steps=50)["perplexity"],
        "backward": backward_trainer.evaluate(
            held[::-1].copy(), batch_size=10, num_steps=50)["perplexity"],
    }
    print(f"  valid perplexity: forward {perplexity['forward']:.1f}, "
          f"backward {perplexity['backward']:.1f}", flush=True)

    results = probe_model("trained", forward_lm, backward_lm, data,
                          vocabulary, args)
    control_forward = build_lm(args, vocabulary, args.seed + 1)
    control_backward = build_lm(args, vocabulary, args.seed + 101)
    control = probe_model("random", control_forward, control_backward,
                          data, vocabulary, args)

    both = {"trained biLM": results, "random-weights control": control}
    plot_probes(both, out / "probes.png", direction="both",
                title="linear probes, forward + backward states")
    plot_probes(both, out / "probes_forward.png", direction="forward",
                title="linear probes, forward LM states")
    table = format_probe_table({"trained": results, "random": control})
    lines, holds = verdict(results, control)
    wall = time.perf_counter() - started
    report = "\n".join([
        "# Probing lab", "",
        "Command: `" + " ".join(["python examples/probing_lab.py",
                                 *argv]) + "`", "",
        f"biLM: 2 x {args.layers}-layer LSTM LMs ({args.units} units, "
        f"tied, dropout {args.dropout}), {args.epochs} epoch(s) of "
        f"{len(ids)} tokens each; valid perplexity forward "
        f"{perplexity['forward']:.1f}, backward "
        f"{perplexity['backward']:.1f}.", "",
        "Held-out probe accuracy (POS: per token; sentiment: mean-pooled "
        "states, binary):", "", table, "", *lines, "",
        f"Wall time {wall:.0f} s.",
    ])
    (out / "results.md").write_text(report + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({
        "args": vars(args),
        "perplexity": perplexity,
        "history": histories,
        "trained": [r.__dict__ for r in results],
        "random": [r.__dict__ for r in control],
        "claim_held": holds,
        "wall_seconds": wall,
    }, indent=2), encoding="utf-8")
    print(report)
    return results, control, holds


if __name__ == "__main__":
    main()
