"""``DecodingResult``: what every search returns."""

import collections

import numpy as np


class DecodingResult(
    collections.namedtuple(
        "DecodingResult", ["ids", "lengths", "scores", "log_probs"]
    )
):
    """Hypotheses of a search, best first, as one tensor per field.

    A namedtuple, so a ``tf.function`` can return it and ``tf.nest`` maps
    over it.

    Fields, with B the batch size, K the hypotheses per row (1 for greedy,
    ``num_samples`` for sampling, ``num_return`` for beam search) and T the
    ``max_length`` of the search:

    * ``ids``: int32 ``(B, K, T)``. Generated tokens (the start token is not
      included). The end token is included when produced; every position
      after it holds ``pad_id``.
    * ``lengths``: int32 ``(B, K)``, tokens up to and including the end
      token (``T`` for a hypothesis that never ended).
    * ``scores``: float32 ``(B, K)``, the ranking score:
      ``log_probs / lp(lengths)`` for beam search with a length penalty,
      else equal to ``log_probs``.
    * ``log_probs``: float32 ``(B, K)``, ``Σ_t log p(y_t | y_<t, x)`` under
      the model's distribution (``log_softmax`` of the step logits after the
      ``min_length`` constraint, before temperature, top-k or top-p).
    """

    __slots__ = ()

    def to_lists(self, strip_end=True, end_id=None):
        """The hypotheses as nested Python lists ``[B][K][length]`` of ints.

        Args:
            strip_end: drop the final token of a hypothesis when it equals
                ``end_id``.
            end_id: the end token id (needed when ``strip_end``).
        """
        if strip_end and end_id is None:
            raise ValueError(
                "`end_id` is needed to strip the end token. Received: "
                "end_id=None with strip_end=True"
            )
        ids = np.asarray(self.ids)
        lengths = np.asarray(self.lengths)
        rows = []
        for row_ids, row_lengths in zip(ids, lengths):
            row = []
            for tokens, length in zip(row_ids, row_lengths):
                tokens = tokens[:length].tolist()
                if strip_end and tokens and tokens[-1] == end_id:
                    tokens = tokens[:-1]
                row.append(tokens)
            rows.append(row)
        return rows
