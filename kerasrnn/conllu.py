"""CoNLL-U files (Universal Dependencies), read in one place: the sentence
and token layout every reader here shares. Standard library only.

A sentence is a block of lines ended by a blank line; ``#`` lines are
comments; a token line has 10 tab-separated columns (ID, FORM, LEMMA,
UPOS, XPOS, FEATS, HEAD, DEPREL, DEPS, MISC). Multi-word ranges (ID
``3-4``) and empty nodes (``5.1``) are skipped, so each row is one
syntactic word.
"""


def sentences(lines, where, error=ValueError):
    """Yields ``(start, words)`` per sentence of ``lines`` (the file's lines
    without newlines): ``start`` is the sentence's first line number,
    ``words`` a list of ``(line number, the 10 columns)``.

    A token line without 10 columns raises ``error`` naming ``where``
    (the file), the line and the count found."""
    words, start = [], 1
    for number, line in enumerate(lines, 1):
        if not line.strip():
            if words:
                yield start, words
            words, start = [], number + 1
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise error(
                f"{where}:{number}: a CoNLL-U token line has 10 "
                f"tab-separated columns, found {len(fields)}: {line[:60]!r}"
            )
        if "-" in fields[0] or "." in fields[0]:
            continue
        words.append((number, fields))
    if words:
        yield start, words
