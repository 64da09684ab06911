"""kerasrnn's ``Seq2Seq`` against a PyTorch twin of the same model, side by
side: the same tokenizer, vocabularies and batches, one run.

The model (both libraries): source and target embeddings E, a
bidirectional GRU encoder (H/2 per direction), its final states
concatenated into the decoder's first state (bridge "copy"), a GRU decoder
of H units with input feeding, Bahdanau attention of A units queried by
h_t, the attentional layer ã_t = tanh(W_c [c_t; h_t]) and the output layer
ã_t W_o + b_o; the loss is the mean cross-entropy over real target tokens;
Adam with gradient clipping. PyTorch keeps its own default initialisation
(``nn.Embedding`` N(0, 1), ``nn.GRU`` and ``nn.Linear`` uniform ±1/√fan);
kerasrnn runs with its defaults, or with any ``Seq2Seq`` arguments given
in ``--kerasrnn-options`` (one difference at a time).

Every epoch both train on the identical batches (bucketed by length, the
order drawn from the seed), PyTorch first, then kerasrnn (``model.fit``).
After the last epoch both are scored on the held-out sources with the same
search code (``kerasrnn.decoding``; the twin's step runs in PyTorch):
validation perplexity, sacrebleu BLEU of greedy and beam search against
all references of each source, and seconds per epoch.

    python benchmarks/seq2seq_vs_torch.py                    # built-in pairs
    python benchmarks/seq2seq_vs_torch.py \
        --data ../shared/data/nmt_pairs/fra-eng/fra.txt --epochs 4
    python benchmarks/seq2seq_vs_torch.py --data ... --implementations \
        kerasrnn --kerasrnn-options '{"embeddings_initializer": "uniform"}'

``--data`` defaults to ``$KERASRNN_NMT_PAIRS``; without either, a built-in
synthetic language pair is generated (a quick run, a few minutes).
"""

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
import torch
from torch import nn

from kerasrnn import decoding
from kerasrnn.models import Seq2Seq
from kerasrnn.models import text
from kerasrnn.models import translation


# --- data -------------------------------------------------------------------

def builtin_pairs(count, rng):
    """A synthetic language pair: a word-for-word lexicon (every source
    word has its own target word) and a reordering (each adjacent pair of
    words swaps, as adjective and noun do between English and French)."""
    words = [f"w{i}" for i in range(60)]
    pairs = set()
    while len(pairs) < count:
        length = int(rng.integers(3, 9))
        source = list(rng.choice(words, length))
        target = [f"t{w[1:]}" for w in source]
        for i in range(0, length - 1, 2):
            target[i], target[i + 1] = target[i + 1], target[i]
        pairs.add((" ".join(source), " ".join(target)))
    return sorted(pairs)


def epoch_batches(sources, targets, batch_size, rng):
    """One epoch of ``(source (B, S), target (B, T))`` int32 batches: the
    pairs sorted by length within a shuffle, cut into batches, the batches
    shuffled; right padded with 0."""
    order = rng.permutation(len(sources))
    lengths = np.array([max(len(sources[i]), len(targets[i]))
                        for i in order])
    order = order[np.argsort(lengths, kind="stable")]
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batches.append((pad_rows([sources[i] for i in rows]),
                        pad_rows([targets[i] for i in rows])))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_rows(rows):
    array = np.zeros((len(rows), max(len(r) for r in rows)), "int32")
    for index, row in enumerate(rows):
        array[index, :len(row)] = row
    return array


# --- the PyTorch twin -------------------------------------------------------

class TorchSeq2Seq(nn.Module):
    """The kerasrnn ``Seq2Seq`` of this benchmark, written in PyTorch with
    PyTorch's default initialisation (see the module doc)."""

    def __init__(self, source_vocabulary, target_vocabulary, embedding_dim,
                 units, attention_units, dropout, pad_id=0):
        super().__init__()
        self.pad_id = pad_id
        self.source_embedding = nn.Embedding(source_vocabulary, embedding_dim)
        self.encoder = nn.GRU(embedding_dim, units // 2, batch_first=True,
                              bidirectional=True)
        self.target_embedding = nn.Embedding(target_vocabulary,
                                             embedding_dim)
        self.decoder = nn.GRUCell(embedding_dim + units, units)
        self.query = nn.Linear(units, attention_units, bias=False)
        self.memory_key = nn.Linear(units, attention_units)
        self.score = nn.Linear(attention_units, 1, bias=False)
        self.attentional = nn.Linear(2 * units, units, bias=False)
        self.output = nn.Linear(units, target_vocabulary)
        self.dropout = nn.Dropout(dropout)
        self.units = units

    def encode(self, source):
        """The first decoder state ``(h, ã, memory, keys, mask)``."""
        mask = source != self.pad_id
        lengths = mask.sum(1).clamp(min=1).cpu()
        embedded = self.dropout(self.source_embedding(source))
        packed = nn.utils.rnn.pack_padded_sequence(
            embedded, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(
            outputs, batch_first=True, total_length=source.shape[1])
        hidden = torch.cat([final[0], final[1]], dim=-1)
        attentional = memory.new_zeros(source.shape[0], self.units)
        return hidden, attentional, memory, self.memory_key(memory), mask

    def step(self, token_ids, state):
        """``(token_ids (B,), state) -> (ã (B, H), state)``."""
        hidden, attentional, memory, keys, mask = state
        inputs = torch.cat(
            [self.dropout(self.target_embedding(token_ids)), attentional], -1)
        hidden = self.decoder(inputs, hidden)
        scores = self.score(torch.tanh(
            keys + self.query(hidden)[:, None])).squeeze(-1)
        scores = scores.masked_fill(~mask, -1e9)
        context = torch.einsum("bs,bsd->bd", scores.softmax(-1), memory)
        attentional = torch.tanh(
            self.attentional(torch.cat([context, hidden], -1)))
        return attentional, (hidden, attentional, memory, keys, mask)

    def forward(self, source, decoder_inputs):
        state = self.encode(source)
        outputs = []
        for t in range(decoder_inputs.shape[1]):
            attentional, state = self.step(decoder_inputs[:, t], state)
            outputs.append(attentional)
        return self.output(self.dropout(torch.stack(outputs, 1)))


class TorchRunner:
    """Trains and scores the twin: Adam, global-norm clipping
    (``clip_grad_norm_``), token-mean cross-entropy."""

    name = "torch"

    def __init__(self, args, vocabularies, seed):
        torch.manual_seed(seed)
        self.model = TorchSeq2Seq(*vocabularies, args.embedding_dim,
                                  args.units, args.attention_units,
                                  args.dropout)
        self.optimizer = torch.optim.Adam(self.model.parameters(),
                                          lr=args.learning_rate)
        self.clip = args.clip
        self.loss = nn.CrossEntropyLoss(ignore_index=0, reduction="sum")

    def _token_losses(self, source, target):
        target = torch.from_numpy(target).long()
        logits = self.model(torch.from_numpy(source).long(), target[:, :-1])
        labels = target[:, 1:]
        total = self.loss(logits.reshape(-1, logits.shape[-1]),
                          labels.reshape(-1))
        return total, int((labels != 0).sum())

    def train_epoch(self, batches):
        self.model.train()
        total, tokens = 0.0, 0
        for source, target in batches:
            loss_sum, count = self._token_losses(source, target)
            self.optimizer.zero_grad()
            (loss_sum / count).backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            total += float(loss_sum.detach())
            tokens += count
        return total / tokens

    @torch.no_grad()
    def validation_loss(self, batches):
        self.model.eval()
        total, tokens = 0.0, 0
        for source, target in batches:
            loss_sum, count = self._token_losses(source, target)
            total += float(loss_sum.detach())
            tokens += count
        return total / tokens

    @torch.no_grad()
    def generate(self, source, max_length, bos_id, eos_id, **options):
        self.model.eval()
        state = self.model.encode(torch.from_numpy(source).long())

        def step_fn(token_ids, state):
            with torch.no_grad():
                tensors = [torch.from_numpy(np.asarray(s)) for s in state]
                tensors[-1] = tensors[-1].bool()
                attentional, new = self.model.step(
                    torch.from_numpy(np.asarray(token_ids)).long(), tensors)
                logits = self.model.output(attentional)
            return (tf.constant(logits.numpy()),
                    tuple(tf.constant(s.numpy()) for s in new))

        start = np.full([source.shape[0]], bos_id, "int32")
        return decoding.decode(
            step_fn, start, tuple(s.numpy() for s in state), end_id=eos_id,
            max_length=max_length, pad_id=0, **options)


class KerasRNNRunner:
    """Trains ``Seq2Seq`` with ``model.fit`` (its ``train_step``) and
    scores it with ``model.generate``."""

    name = "kerasrnn"

    def __init__(self, args, vocabularies, seed, bos_id, eos_id):
        keras.utils.set_random_seed(seed)
        options = dict(
            embedding_dim=args.embedding_dim, units=args.units, cell="gru",
            bidirectional=True, bridge="copy", attention="bahdanau",
            attention_units=args.attention_units, dropout=args.dropout,
            max_target_length=args.max_length, seed=seed,
        )
        options.update(json.loads(args.kerasrnn_options))
        self.model = Seq2Seq(*vocabularies, bos_id=bos_id, eos_id=eos_id,
                             **options)
        clip = {"global_clipnorm" if args.kerasrnn_clip == "global"
                else "clipnorm": args.clip}
        self.model.compile(optimizer=keras.optimizers.Adam(
            args.learning_rate, epsilon=args.kerasrnn_epsilon, **clip))

    @staticmethod
    def _dataset(batches):
        signature = (tf.TensorSpec([None, None], "int32"),) * 2
        dataset = tf.data.Dataset.from_generator(
            lambda: iter(batches), output_signature=signature)
        return dataset.apply(
            tf.data.experimental.assert_cardinality(len(batches)))

    def train_epoch(self, batches):
        history = self.model.fit(self._dataset(batches), epochs=1,
                                 verbose=0, shuffle=False)
        return history.history["loss"][-1]

    def validation_loss(self, batches):
        return self.model.evaluate(self._dataset(batches), verbose=0,
                                   return_dict=True)["loss"]

    def generate(self, source, max_length, bos_id, eos_id, **options):
        return self.model.generate(source, max_length=max_length, **options)


# --- scoring ----------------------------------------------------------------

def translate(runner, sources, tokens, targets, max_length, batch_size=250,
              **options):
    """Decoded texts of ``sources`` (batches of similar length)."""
    ids = [list(row) for row in tokens.encode(sources).to_list()]
    order = np.argsort([len(row) for row in ids], kind="stable")
    texts = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        result = runner.generate(
            pad_rows([ids[i] for i in rows]), max_length, targets.bos_id,
            targets.eos_id, **options)
        for row, decoded in zip(
                rows, targets.decode(np.asarray(result.ids)[:, 0])):
            texts[row] = decoded
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KERASRNN_NMT_PAIRS"),
                        help="a 'source<TAB>target' file such as fra.txt")
    parser.add_argument("--max-words", type=int, default=10)
    parser.add_argument("--max-train-pairs", type=int, default=30_000)
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--source-tokens", type=int, default=6000)
    parser.add_argument("--target-tokens", type=int, default=8000)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--attention-units", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=1.0,
                        help="gradient clipping norm (torch: global)")
    parser.add_argument("--kerasrnn-clip", choices=["global", "per_variable"],
                        default="global",
                        help="Adam(global_clipnorm=...) or clipnorm=...")
    parser.add_argument("--kerasrnn-epsilon", type=float, default=1e-8,
                        help="Adam epsilon (Keras' default 1e-7, torch 1e-8)")
    parser.add_argument("--kerasrnn-options", default="{}",
                        help="JSON of Seq2Seq arguments to override")
    parser.add_argument("--implementations", nargs="+",
                        default=["torch", "kerasrnn"],
                        choices=["torch", "kerasrnn"])
    parser.add_argument("--beam-width", type=int, default=5)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    args.max_length = 2 * args.max_words + 4
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    if args.data:
        pairs = translation.read_pairs(args.data, args.max_words)
    else:
        pairs = builtin_pairs(6000, rng)
        args.max_train_pairs = min(args.max_train_pairs, 5000)
    train, test = translation.split_by_source(pairs, 0.1, rng)
    train = [train[i] for i in rng.permutation(len(train))[
        :args.max_train_pairs]]
    test = [test[i] for i in sorted(rng.permutation(len(test))[
        :args.max_test])]
    tokens = text.Tokenizer("word", max_tokens=args.source_tokens)
    tokens.adapt(source for source, _ in train)
    targets = text.Tokenizer("word", max_tokens=args.target_tokens)
    targets.adapt(target for _, target in train)
    sources = tokens.encode([s for s, _ in train]).to_list()
    labels = targets.encode([t for _, t in train], bos_eos=True).to_list()
    validation = max(1, len(train) // 50)
    validation_batches = epoch_batches(
        sources[:validation], labels[:validation], 256,
        np.random.default_rng(0))
    sources, labels = sources[validation:], labels[validation:]
    print(f"{len(sources)} training pairs, {validation} validation pairs, "
          f"{len(test)} held-out sources; vocabularies "
          f"{tokens.vocabulary_size}/{targets.vocabulary_size}")

    vocabularies = (tokens.vocabulary_size, targets.vocabulary_size)
    runners = []
    for name in args.implementations:
        if name == "torch":
            runners.append(TorchRunner(args, vocabularies, args.seed))
        else:
            runners.append(KerasRNNRunner(args, vocabularies, args.seed,
                                          targets.bos_id, targets.eos_id))
    results = {r.name: {"train_loss": [], "epoch_seconds": []}
               for r in runners}
    batch_rng = np.random.default_rng(args.seed + 1)
    for epoch in range(1, args.epochs + 1):
        batches = epoch_batches(sources, labels, args.batch_size, batch_rng)
        for runner in runners:
            start = time.perf_counter()
            loss = runner.train_epoch(batches)
            seconds = time.perf_counter() - start
            results[runner.name]["train_loss"].append(round(loss, 4))
            results[runner.name]["epoch_seconds"].append(round(seconds, 1))
            print(f"epoch {epoch} {runner.name:>8}: loss {loss:.4f} "
                  f"({seconds:.0f} s)", flush=True)

    test_sources = [source for source, _ in test]
    references = [translation.standardise(refs) for _, refs in test]
    searches = {
        "greedy": {},
        f"beam{args.beam_width}": {
            "method": "beam", "beam_width": args.beam_width,
            "length_penalty_weight": args.length_penalty},
    }
    for runner in runners:
        result = results[runner.name]
        loss = runner.validation_loss(validation_batches)
        result["validation_perplexity"] = round(float(np.exp(loss)), 2)
        for search, options in searches.items():
            start = time.perf_counter()
            hypotheses = translate(runner, test_sources, tokens, targets,
                                   args.max_length, **options)
            result[f"bleu_{search}"] = round(
                translation.corpus_bleu(hypotheses, references).score, 2)
            result[f"decode_seconds_{search}"] = round(
                time.perf_counter() - start, 1)
        print(runner.name, json.dumps(result), flush=True)

    report = {
        "data": args.data or "built-in synthetic pairs",
        "train_pairs": len(sources), "test_sources": len(test),
        "vocabularies": list(vocabularies),
        "arguments": {k: v for k, v in vars(args).items() if k != "json"},
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
