"""Sentence-pair corpora and their BLEU score, shared by the translation
example and the side-by-side benchmark.

``read_pairs`` reads "source<TAB>target" lines (the Tatoeba ``fra.txt``
layout), ``split_by_source`` holds out whole source sentences with all
their translations (the references of a multi-reference BLEU) and
``corpus_bleu`` scores hypotheses against them with sacrebleu (the
``examples`` extra).
"""

import collections

import numpy as np


def read_pairs(path, max_words):
    """Distinct ``(source, target)`` pairs of at most ``max_words`` words
    on both sides, in file order."""
    pairs = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2:
                raise ValueError(
                    f"{path}:{number}: expected 'source<TAB>target', got "
                    f"{line[:60]!r}"
                )
            source, target = fields[:2]
            if max(len(source.split()), len(target.split())) <= max_words:
                pairs.append((source, target))
    return list(dict.fromkeys(pairs))


def split_by_source(pairs, test_fraction, rng):
    """``(train pairs, [(source, [references...]), ...])``: the held-out
    sources (``test_fraction`` of the distinct ones, drawn with the numpy
    ``rng``) share no source sentence with the training pairs."""
    sources = sorted({source for source, _ in pairs})
    test = set(rng.choice(sources, int(len(sources) * test_fraction),
                          replace=False))
    train = [pair for pair in pairs if pair[0] not in test]
    references = collections.defaultdict(list)
    for source, target in pairs:
        if source in test:
            references[source].append(target)
    return train, sorted(references.items())


def require_sacrebleu():
    """The ``sacrebleu`` module, or an error that names the extra that
    installs it (call it before hours of training, not after)."""
    try:
        import sacrebleu
    except ModuleNotFoundError as error:
        if error.name != "sacrebleu":
            raise
        raise ModuleNotFoundError(
            "BLEU needs sacrebleu: pip install -e \".[examples]\" (or pip "
            "install sacrebleu)", name="sacrebleu",
        ) from error
    return sacrebleu


def corpus_bleu(hypotheses, references):
    """sacrebleu corpus BLEU (13a tokenisation) of ``hypotheses`` against
    every reference of each: ``references[i]`` is the list of
    translations of hypothesis ``i``."""
    sacrebleu = require_sacrebleu()
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} reference "
            "lists: one list per hypothesis is expected."
        )
    count = max((len(refs) for refs in references), default=0)
    streams = [
        [refs[k] if k < len(refs) else None for refs in references]
        for k in range(count)
    ]
    return sacrebleu.corpus_bleu(list(hypotheses), streams)


def standardise(texts):
    """Texts as the word tokenizer sees them (lower case, punctuation
    split off, single spaces), for scoring decoded text."""
    from kerasrnn.models.text import split_punctuation

    return [
        " ".join(split_punctuation(t).numpy().decode().split())
        for t in np.asarray(texts, dtype=object).tolist()
    ]
