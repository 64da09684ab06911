"""The four tasks of ``kerasrnn train``: how each encodes its rows, builds,
trains, scores and runs its model.

A task is built from a ``config`` (the size and training settings, see
``DEFAULTS``) and its ``assets`` (vocabularies and label sets, learnt from
the training rows by ``learn`` and stored in the run's ``run.json``, so
that a resumed run or ``kerasrnn evaluate`` encodes as training did).

* ``classifier``: ``(text, label)`` rows; Embedding -> recurrent layers ->
  Dense over the labels; accuracy.
* ``tagger``: ``(words, tags)`` sentences; Embedding -> recurrent layers
  (bidirectional by default) -> a Dense tag per word; masked accuracy.
* ``seq2seq``: ``(source, target)`` rows; ``kerasrnn.models.Seq2Seq`` with
  its tokenizers; token accuracy, perplexity, exact match, BLEU.
* ``lm``: text lines; ``kerasrnn.models.LanguageModel`` trained by
  truncated BPTT (``TBPTTTrainer``); perplexity.

``classifier``, ``tagger`` and ``seq2seq`` train with ``fit`` and the
callbacks ``AtomicBackupAndRestore`` (resume), ``EarlyStopping`` (best
weights kept) and ``EpochLog``; ``lm`` with ``TBPTTTrainer.fit``'s
checkpoints and the same early-stopping rule on the validation loss.
"""

import collections
import json
import os

import keras
import numpy as np

from kerasrnn.cells.registry import resolve_cell
from kerasrnn.cells.registry import sequence_layer
from kerasrnn.models import lm_data
from kerasrnn.models import text
from kerasrnn.training.backup import AtomicBackupAndRestore
from kerasrnn.training.files import atomic_write_text

TASKS = ("classifier", "tagger", "seq2seq", "lm")
# Every setting of a run, with its default; a config file may set any.
DEFAULTS = {
    "tokenizer": "word", "vocab_size": 20000, "max_length": 50,
    "cell": "lstm", "units": 128, "embedding_dim": 64, "layers": 1,
    "bidirectional": None, "dropout": 0.0, "attention": "luong_general",
    "sampling_schedule": "none", "epochs": 10, "batch_size": 32,
    "learning_rate": 1e-3, "patience": 3, "validation_split": 0.1,
    "num_steps": 35, "seed": 0, "max_examples": None,
}
CHOICES = {
    "tokenizer": ("word", "char"),
    "attention": ("none", "bahdanau", "luong_dot", "luong_general"),
    "sampling_schedule": ("none", "linear", "exponential",
                          "inverse_sigmoid"),
}
UNK, PAD = "<unk>", ""


class EpochLog(keras.callbacks.Callback):
    """Keeps ``path`` (JSON, rewritten atomically) as the list of epoch
    logs ``{"epoch": n, "loss": ...}`` of a run; a resumed run first drops
    the epochs it is about to train again."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.records = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.records is None:
            self.records = [r for r in read_log(self.path)
                            if r["epoch"] <= epoch]

    def on_epoch_end(self, epoch, logs=None):
        self.records.append({"epoch": epoch + 1, **{
            key: float(value) for key, value in (logs or {}).items()}})
        atomic_write_text(self.path, json.dumps(self.records, indent=1))


def read_log(path):
    """The epoch records ``EpochLog`` (or the LM's training) wrote."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _vocabulary(items, size):
    """``[PAD, UNK, most frequent items...]`` (at most ``size`` in all)."""
    counts = collections.Counter(items)
    ranked = sorted(counts, key=lambda item: (-counts[item], item))
    return [PAD, UNK] + ranked[:max(size - 2, 0)]


def _recurrent(config, return_sequences, bidirectional):
    spec, template = resolve_cell(config["cell"])
    return sequence_layer(spec)(
        config["units"], num_layers=config["layers"],
        bidirectional=bidirectional,
        inter_layer_dropout=config["dropout"],
        return_sequences=return_sequences, **template,
    )


def _token_model(config, vocabulary_size, classes, name, per_token,
                 bidirectional):
    """Embedding (masked) -> recurrent stack -> dropout -> logits, compiled
    with Adam (global clip norm 1): one label per text, or per token
    (``per_token``, padding weighted out of the accuracy)."""
    model = keras.Sequential([
        keras.Input((None,), dtype="int32", name="tokens"),
        keras.layers.Embedding(vocabulary_size, config["embedding_dim"],
                               mask_zero=True),
        _recurrent(config, per_token, bidirectional),
        keras.layers.Dropout(config["dropout"]),
        keras.layers.Dense(classes, name="logits"),
    ], name=name)
    accuracy = {"weighted_metrics" if per_token else "metrics": ["accuracy"]}
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"],
                                        global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **accuracy,
    )
    return model


class Task:
    """One task's encoding, model, training and use (see the module
    docstring). ``rows`` are what ``kerasrnn.training.data`` reads."""

    name = None
    monitor_metric = "loss"

    def __init__(self, config, assets=None):
        self.config = config
        self.assets = assets

    def learn(self, rows):
        """Sets ``assets`` from the training rows."""
        raise NotImplementedError

    def encode(self, rows):
        """``(x, y)`` arrays of ``rows``."""
        raise NotImplementedError

    def check(self, rows, training=True):
        """Raises ValueError for rows this task cannot train (or, not
        ``training``, score) on, before anything is written."""
        self.encode(rows)

    def build(self):
        """A new compiled model."""
        raise NotImplementedError

    def callbacks(self, steps):
        """The task's own callbacks for a run of ``steps`` batches."""
        return []

    def train(self, model, rows, validation, out, verbose):
        """Trains with ``fit`` and the resume/early-stopping callbacks,
        logging the epochs to ``out/history.json``."""
        config = self.config
        x, y = self.encode(rows)
        monitor = "val_loss" if validation else "loss"
        stopping = keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config["patience"],
            restore_best_weights=True,
        )
        model.fit(
            x, y, batch_size=config["batch_size"], epochs=config["epochs"],
            validation_data=self.encode(validation) if validation else None,
            verbose=verbose,
            callbacks=[     # the task's first: they add to the epoch logs
                AtomicBackupAndRestore(os.path.join(out, "backup"),
                                       delete_checkpoint=False),
                *self.callbacks(config["epochs"] * -(-len(rows) // config[
                    "batch_size"])), stopping,
                EpochLog(os.path.join(out, "history.json")),
            ],
        )

    def evaluate(self, model, rows):
        x, y = self.encode(rows)
        return model.evaluate(x, y, batch_size=self.config["batch_size"],
                              verbose=0, return_dict=True)


class Classifier(Task):
    name = "classifier"

    def _tokenizer(self):
        return text.Tokenizer(
            self.config["tokenizer"], vocabulary=self.assets["vocabulary"]
        )

    def learn(self, rows):
        tokenizer = text.Tokenizer(self.config["tokenizer"],
                                   max_tokens=self.config["vocab_size"])
        tokenizer.adapt([row[0] for row in rows])
        self.assets = {"vocabulary": tokenizer.vocabulary,
                       "labels": sorted({row[1] for row in rows})}

    def encode_texts(self, texts):
        ids = self._tokenizer().encode(list(texts))
        return text.pad(ids[:, :self.config["max_length"]])

    def encode(self, rows):
        index = {label: i for i, label in enumerate(self.assets["labels"])}
        unknown = [row[1] for row in rows if row[1] not in index]
        if unknown:
            raise ValueError(
                f"label {unknown[0]!r} was not among the training labels "
                f"{self.assets['labels']}"
            )
        return (self.encode_texts(row[0] for row in rows),
                np.array([index[row[1]] for row in rows], "int32"))

    def build(self):
        return _token_model(
            self.config, len(self.assets["vocabulary"]),
            len(self.assets["labels"]), "classifier", per_token=False,
            bidirectional=bool(self.config["bidirectional"]),
        )

    def generate(self, model, texts, options):
        logits = model.predict(self.encode_texts(texts), verbose=0)
        probabilities = keras.ops.convert_to_numpy(
            keras.ops.softmax(logits))
        labels = self.assets["labels"]
        return [f"{labels[int(np.argmax(p))]}\t{float(np.max(p)):.3f}"
                for p in probabilities]


class Tagger(Task):
    name = "tagger"

    def learn(self, rows):
        words = [w for sentence, _ in rows for w in sentence]
        self.assets = {
            "words": _vocabulary(words, self.config["vocab_size"]),
            "tags": [PAD] + sorted({t for _, tags in rows for t in tags}),
        }

    def encode_words(self, sentences):
        index = {w: i for i, w in enumerate(self.assets["words"])}
        length = min(self.config["max_length"],
                     max(len(s) for s in sentences))
        ids = np.zeros((len(sentences), length), "int32")
        for row, sentence in enumerate(sentences):
            for column, word in enumerate(sentence[:length]):
                ids[row, column] = index.get(word, 1)
        return ids

    def encode(self, rows):
        index = {t: i for i, t in enumerate(self.assets["tags"])}
        x = self.encode_words([words for words, _ in rows])
        y = np.zeros_like(x)
        for row, (_, tags) in enumerate(rows):
            for column, tag in enumerate(tags[:x.shape[1]]):
                if tag not in index:
                    raise ValueError(
                        f"tag {tag!r} was not among the training tags "
                        f"{self.assets['tags'][1:]}"
                    )
                y[row, column] = index[tag]
        return x, y

    def build(self):
        return _token_model(
            self.config, len(self.assets["words"]), len(self.assets["tags"]),
            "tagger", per_token=True,
            bidirectional=self.config["bidirectional"] is not False,
        )

    def generate(self, model, texts, options):
        sentences = [t.split() for t in texts]
        logits = model.predict(self.encode_words(sentences), verbose=0)
        tags = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        return [" ".join(f"{w}/{self.assets['tags'][t]}"
                         for w, t in zip(words, row))
                for words, row in zip(sentences, tags)]


class Translation(Task):
    name = "seq2seq"

    def _tokenizers(self):
        return [text.Tokenizer(self.config["tokenizer"], vocabulary=v)
                for v in (self.assets["source"], self.assets["target"])]

    def learn(self, rows):
        vocabularies = []
        for side in (0, 1):
            tokenizer = text.Tokenizer(self.config["tokenizer"],
                                       max_tokens=self.config["vocab_size"])
            tokenizer.adapt([row[side] for row in rows])
            vocabularies.append(tokenizer.vocabulary)
        self.assets = {"source": vocabularies[0],
                       "target": vocabularies[1]}

    def keep(self, rows):
        """The rows whose two sides are at most ``max_length`` tokens."""
        source, target = self._tokenizers()
        limit = self.config["max_length"]
        lengths = [source.encode([r[0] for r in rows]).row_lengths(),
                   target.encode([r[1] for r in rows]).row_lengths()]
        return [row for row, a, b in zip(rows, *lengths)
                if 0 < a <= limit and 0 < b <= limit]

    def encode(self, rows):
        source, target = self._tokenizers()
        return (text.pad(source.encode([r[0] for r in rows])),
                text.pad(target.encode([r[1] for r in rows], bos_eos=True)))

    def build(self):
        from kerasrnn.models import Seq2Seq
        from kerasrnn.models import default_optimizer

        config = self.config
        source, target = self._tokenizers()
        model = Seq2Seq(
            source.vocabulary_size, target.vocabulary_size,
            bos_id=target.bos_id, eos_id=target.eos_id,
            pad_id=target.pad_id, embedding_dim=config["embedding_dim"],
            units=config["units"], cell=config["cell"],
            encoder_layers=config["layers"], decoder_layers=config["layers"],
            bidirectional=bool(config["bidirectional"]),
            attention=None if config["attention"] == "none"
            else config["attention"],
            dropout=config["dropout"],
            max_target_length=config["max_length"] + 2, seed=config["seed"],
            source_tokenizer=source, target_tokenizer=target,
        )
        model.compile(optimizer=default_optimizer(config["learning_rate"]))
        return model

    def callbacks(self, steps):
        """Scheduled sampling, down to a teacher-forcing floor of 0.5: the
        linear schedule reaches it at the run's last batch; the others
        use ``ScheduledSampling``'s default k (per batch)."""
        from kerasrnn.models import ScheduledSampling

        schedule = self.config["sampling_schedule"]
        if schedule == "none":
            return []
        slope = {"c": 0.5 / steps} if schedule == "linear" else {}
        return [ScheduledSampling(schedule, epsilon=0.5, **slope)]

    def evaluate(self, model, rows):
        from kerasrnn.models import translation

        metrics = super().evaluate(model, rows)
        try:
            translation.require_sacrebleu()
        except ModuleNotFoundError:
            return metrics
        references = collections.defaultdict(list)
        for source, target in rows[:1000]:
            references[source].append(target)
        sources = list(references)
        hypotheses = self.generate(model, sources, {})
        bleu = translation.corpus_bleu(
            translation.standardise(hypotheses),
            [translation.standardise(references[s]) for s in sources],
        )
        metrics["bleu"] = round(bleu.score, 2)
        return metrics

    def generate(self, model, texts, options):
        return model.generate_text(list(texts), **options)


class LanguageModelTask(Task):
    name = "lm"

    def _vocabulary(self):
        return lm_data.Vocabulary(self.assets["tokens"],
                                  self.config["tokenizer"])

    def _tokens(self, lines):
        return lm_data.tokenize("\n".join(lines) + "\n",
                                self.config["tokenizer"])

    def learn(self, rows):
        vocabulary = lm_data.Vocabulary.build(
            self._tokens(rows), self.config["tokenizer"],
            max_size=self.config["vocab_size"],
        )
        self.assets = {"tokens": vocabulary.tokens}

    def encode(self, rows):
        ids, _ = self._vocabulary().encode(self._tokens(rows))
        return ids

    def check(self, rows, training=True):
        ids = self.encode(rows)
        if training:
            lm_data.stream_windows(ids, self.config["batch_size"],
                                   self.config["num_steps"])
        elif len(ids) < 2:
            raise ValueError(f"a language model is scored on 2 tokens or "
                             f"more; the data has {len(ids)}")

    def build(self):
        from kerasrnn.models import LanguageModel

        config = self.config
        return LanguageModel(
            len(self.assets["tokens"]), embedding_dim=config["embedding_dim"],
            units=config["units"], num_layers=config["layers"],
            cell=config["cell"], embedding_dropout=config["dropout"],
            inter_layer_dropout=config["dropout"],
            output_dropout=config["dropout"], seed=config["seed"],
            vocabulary=self._vocabulary(),
        )

    def _trainer(self, model, out=None):
        from kerasrnn.models.lm_training import TBPTTTrainer

        config = self.config
        return TBPTTTrainer(
            model, config["batch_size"], config["num_steps"],
            learning_rate=config["learning_rate"], optimizer="adam",
            checkpoint_dir=out and os.path.join(out, "checkpoints"),
        )

    def train(self, model, rows, validation, out, verbose):
        config = self.config
        trainer = self._trainer(model, out)
        patience = config["patience"]
        monitor = "validation_loss" if validation else "loss"

        def stop(history):
            atomic_write_text(os.path.join(out, "history.json"), json.dumps(
                [_lm_record(r) for r in history], indent=1))
            losses = [record[monitor] for record in history]
            return len(losses) - 1 - int(np.argmin(losses)) >= patience

        trainer.fit(
            self.encode(rows), config["epochs"],
            validation_ids=self.encode(validation) if validation else None,
            verbose=verbose, on_epoch_end=stop,
        )

    def evaluate(self, model, rows):
        result = self._trainer(model).evaluate(
            self.encode(rows), batch_size=1,
            num_steps=self.config["num_steps"],
        )
        return {"loss": result["loss"], "perplexity": result["perplexity"],
                "tokens": result["tokens"]}

    def generate(self, model, texts, options):
        joiner = " " if self.config["tokenizer"] == "word" else ""
        return [prompt + joiner + model.generate(prompt, **options)
                for prompt in texts]


def _lm_record(record):
    """A TBPTT epoch record with Keras' names (``val_loss``)."""
    names = {"validation_loss": "val_loss",
             "validation_perplexity": "val_perplexity"}
    return {names.get(key, key): value for key, value in record.items()}


CLASSES = {task.name: task for task in
           (Classifier, Tagger, Translation, LanguageModelTask)}


def task(name, config, assets=None):
    """The ``Task`` of ``name`` (one of ``TASKS``)."""
    return CLASSES[name](config, assets)
