"""kerasrnn.decoding against scripted step functions and independent
references (a plain-Python beam search and brute-force enumeration)."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from kerasrnn import decoding

PAD, BOS, EOS = 0, 1, 2
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
VOCAB = ["<pad>", "<s>", "</s>"] + list(ALPHABET)


def encode(text):
    return [VOCAB.index(c) for c in text] + [EOS]


def decode_ids(ids):
    return "".join(VOCAB[i] for i in ids if i > EOS)


def scripted(words, confidence=10.0):
    """A step function whose state is the step count: at step t row b
    predicts ``words[b]`` letter t (then EOS) with the given margin."""
    targets = [encode(w) for w in words]
    width = max(len(t) for t in targets)
    table = np.full((len(words), width + 1), EOS)
    for row, target in enumerate(targets):
        table[row, : len(target)] = target
    table = tf.constant(table, "int32")

    def step_fn(token_ids, state):
        rows, t = state["row"], state["t"]
        index = tf.stack([rows, tf.minimum(t, width)], axis=1)
        logits = tf.one_hot(tf.gather_nd(table, index), len(VOCAB))
        return logits * confidence, {"row": rows, "t": t + 1}

    state = {"row": tf.range(len(words)), "t": tf.zeros([len(words)], "int32")}
    return step_fn, state


def markov(seed, vocabulary=6, scale=2.0, steps=12):
    """A model whose logits depend on the step and the previous token:
    ``table[t, previous]`` (the step makes exact score ties unlikely)."""
    table = np.random.default_rng(seed).normal(
        size=(steps, vocabulary, vocabulary)
    ) * scale
    table = table.astype("float32")

    def step_fn(token_ids, t):
        index = tf.stack([t, token_ids], axis=1)
        return tf.gather_nd(tf.constant(table), index), t + 1

    def logits_fn(start, tokens):
        return table[len(tokens), tokens[-1] if tokens else start]

    return step_fn, logits_fn


def markov_rows(seed, rows, vocabulary=6, scale=2.0, steps=8, end_bias=0.0):
    """``rows`` independent models like ``markov``, one per batch row:
    ``table[row, t, previous]``; the state is ``{"row", "t"}``.
    ``end_bias`` is added to the end token's logits."""
    table = np.random.default_rng(seed).normal(
        size=(rows, steps, vocabulary, vocabulary)
    ) * scale
    table[..., EOS] += end_bias
    table = table.astype("float32")

    def step_fn(token_ids, state):
        row, t = state["row"], state["t"]
        index = tf.stack([row, t, token_ids], axis=1)
        logits = tf.gather_nd(tf.constant(table), index)
        return logits, {"row": row, "t": t + 1}

    def logits_fn(row, start, tokens):
        return table[row, len(tokens), tokens[-1] if tokens else start]

    state = {"row": tf.range(rows), "t": tf.zeros([rows], "int32")}
    return step_fn, state, logits_fn


def log_softmax(x):
    x = x - x.max()
    return x - math.log(np.exp(x).sum())


def next_log_probs(logits_fn, tokens, min_length):
    """float64 log-probabilities of the next token after ``tokens``, EOS
    forbidden before ``min_length`` tokens."""
    logits = np.array(logits_fn(tokens), "float64")
    if len(tokens) < min_length:
        logits[EOS] = -np.inf
    return log_softmax(logits)


def reference_beam(logits_fn, width, max_length, alpha, min_length=0,
                   stop_early=True):
    """Plain-Python beam search with a pool of finished hypotheses, the
    module's rules written independently (float64, lists, sorting).

    ``logits_fn(prefix)`` gives the next-token logits after the generated
    ``prefix``. Returns the ``width`` best ``(tokens, log_prob, score)``,
    best first. ``stop_early=False`` runs all ``max_length`` steps.
    """
    def score(hypothesis):
        tokens, log_prob = hypothesis
        return log_prob / ((5 + len(tokens)) / 6) ** alpha

    def best_first(hypotheses):
        # sorted() is stable: on equal scores the earlier entry stays first.
        return sorted(hypotheses, key=lambda h: -score(h))

    live = [((), 0.0)]   # (tokens, log_prob), EOS-free
    finished = []        # the `width` best (tokens, log_prob) that ended
    for _ in range(max_length):
        candidates = [
            (tokens + (v,), log_prob + step)
            for tokens, log_prob in live
            for v, step in enumerate(
                next_log_probs(logits_fn, tokens, min_length)
            )
            if step > -np.inf
        ]
        candidates = sorted(candidates, key=lambda c: -c[1])[: 2 * width]
        ended = [c for c in candidates[:width] if c[0][-1] == EOS]
        finished = best_first(finished + ended)[:width]
        live = [c for c in candidates if c[0][-1] != EOS][:width]
        if not live:
            break
        best_possible = max(log_prob for _, log_prob in live) / (
            (5 + max_length) / 6
        ) ** alpha
        if stop_early and len(finished) == width and (
            score(finished[-1]) >= best_possible
        ):
            break
    return [
        (list(tokens), log_prob, score((tokens, log_prob)))
        for tokens, log_prob in best_first(finished + live)[:width]
    ]


def frozen_reference_beam(logits_fn, width, max_length, alpha):
    """The previous rules, for comparison: a finished beam stays in the
    beam (one of the ``width`` slots) with its score, until all ended."""
    def lp(n):
        return ((5 + n) / 6) ** alpha
    beams = [((), 0.0, False)]
    for _ in range(max_length):
        candidates = []
        for tokens, log_prob, done in beams:
            if done:
                candidates.append((tokens, log_prob, True))
                continue
            for v, step in enumerate(next_log_probs(logits_fn, tokens, 0)):
                candidates.append((tokens + (v,), log_prob + step, v == EOS))
        candidates.sort(key=lambda c: -c[1] / lp(len(c[0])))
        beams = candidates[:width]
        if all(done for _, _, done in beams):
            break
    return [(list(tokens), log_prob, log_prob / lp(len(tokens)))
            for tokens, log_prob, _ in beams]


def sequence_log_prob(logits_fn, tokens):
    return sum(
        log_softmax(np.array(logits_fn(tokens[:t]), "float64"))[token]
        for t, token in enumerate(tokens)
    )


# --- greedy ----------------------------------------------------------------

def test_greedy_spells_scripted_strings_with_per_row_stop():
    words = ["hello", "hi", "seq"]
    step_fn, state = scripted(words)
    result = decoding.greedy_search(
        step_fn, [BOS] * 3, state, end_id=EOS, max_length=8
    )
    ids = result.ids.numpy()
    assert ids.shape == (3, 1, 8)
    assert [decode_ids(row[0]) for row in ids] == words
    assert result.lengths.numpy()[:, 0].tolist() == [6, 3, 4]
    # Everything after a row's EOS is padding.
    assert ids[1, 0].tolist() == encode("hi") + [PAD] * 5
    assert result.to_lists(end_id=EOS)[0][0] == encode("hello")[:-1]
    margin = np.log1p((len(VOCAB) - 1) * np.exp(-10.0))
    np.testing.assert_allclose(
        result.log_probs.numpy()[:, 0], -margin * np.array([6, 3, 4]),
        rtol=1e-4,
    )


def test_max_length_truncates_and_min_length_delays_end():
    step_fn, state = scripted(["hello", "hi"])
    result = decoding.greedy_search(
        step_fn, [BOS, BOS], state, end_id=EOS, max_length=3
    )
    assert result.lengths.numpy().ravel().tolist() == [3, 3]
    assert decode_ids(result.ids.numpy()[0, 0]) == "hel"
    assert result.ids.numpy()[1, 0].tolist() == encode("hi")
    # EOS is forbidden before 4 tokens: "hi" then the runner-up tokens.
    step_fn, state = scripted(["hi"])
    result = decoding.greedy_search(
        step_fn, [BOS], state, end_id=EOS, max_length=8, min_length=4
    )
    assert result.lengths.numpy()[0, 0] >= 5
    assert EOS not in result.ids.numpy()[0, 0, :4].tolist()


def test_no_end_id_runs_to_max_length():
    step_fn, state = scripted(["ab"])
    result = decoding.greedy_search(
        step_fn, [BOS], state, end_id=None, max_length=6
    )
    assert result.lengths.numpy()[0, 0] == 6
    assert result.ids.numpy()[0, 0].tolist()[:3] == encode("ab")


# --- logit filters and sampling ---------------------------------------------

def test_top_k_and_top_p_filters():
    logits = tf.math.log(tf.constant([[0.5, 0.2, 0.15, 0.1, 0.05]]))

    def kept(x):
        return np.isfinite(x.numpy()[0]).tolist()

    assert kept(decoding.top_k_filter(logits, 2)) == [1, 1, 0, 0, 0]
    assert kept(decoding.top_k_filter(logits, 9)) == [1] * 5
    # Mass before each token: 0, .5, .7, .85, .95.
    assert kept(decoding.top_p_filter(logits, 0.45)) == [1, 0, 0, 0, 0]
    assert kept(decoding.top_p_filter(logits, 0.55)) == [1, 1, 0, 0, 0]
    assert kept(decoding.top_p_filter(logits, 0.8)) == [1, 1, 1, 0, 0]
    assert kept(decoding.top_p_filter(logits, 0.9)) == [1, 1, 1, 1, 0]
    assert kept(decoding.top_p_filter(logits, 1.0)) == [1] * 5
    assert kept(decoding.top_p_filter(logits, 1e-6)) == [1, 0, 0, 0, 0]


def uniform_step(vocabulary=8):
    """Logits favour higher ids a little; EOS never comes."""
    logits = tf.constant(
        [[-50.0, -50.0, -50.0] + [0.1 * v for v in range(vocabulary - 3)]]
    )

    def step_fn(token_ids, state):
        return tf.repeat(logits, tf.shape(token_ids)[0], axis=0), state

    return step_fn, tf.zeros([4, 1])


def test_sampling_respects_top_k_and_top_p():
    step_fn, state = uniform_step()

    def run(**options):
        return decoding.sample(
            step_fn, [BOS] * 4, state, end_id=EOS, max_length=50, seed=3,
            **options,
        ).ids.numpy()

    assert set(np.unique(run(top_k=2))) == {6, 7}
    assert set(np.unique(run())) == {3, 4, 5, 6, 7}
    # The top token has p ~ 0.23: top_p=0.3 keeps the two most probable.
    assert set(np.unique(run(top_p=0.3))) == {6, 7}


def test_sampling_is_seeded_and_reproducible():
    step_fn, state = uniform_step()

    def run(seed, n=1):
        return decoding.sample(
            step_fn, [BOS] * 4, state, end_id=EOS, max_length=20, seed=seed,
            num_samples=n,
        )

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first.ids, again.ids)
    np.testing.assert_array_equal(first.log_probs, again.log_probs)
    assert not np.array_equal(first.ids, other.ids)
    # Rows of one batch draw independently.
    assert not np.array_equal(first.ids[0], first.ids[1])
    several = run(7, n=3)
    assert several.ids.shape == (4, 3, 20)
    assert several.lengths.shape == (4, 3)
    graph = tf.function(lambda: run(7).ids)()
    np.testing.assert_array_equal(graph, first.ids)


def steps(batch):
    return tf.zeros([batch], "int32")


def test_temperature_towards_zero_is_greedy():
    step_fn, _ = markov(seed=0, vocabulary=9)
    start = tf.constant([3, 4, 5, 6, 7])
    greedy = decoding.greedy_search(
        step_fn, start, steps(5), end_id=EOS, max_length=12
    )
    cold = decoding.sample(
        step_fn, start, steps(5), end_id=EOS, max_length=12,
        temperature=1e-4, seed=0,
    )
    np.testing.assert_array_equal(cold.ids, greedy.ids)
    np.testing.assert_allclose(cold.log_probs, greedy.log_probs, rtol=1e-6)


# --- beam search ------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_is_greedy(seed):
    """Without length penalty: an ending candidate joins the pool only from
    the top K, so width 1 follows greedy's path and returns its hypothesis
    (token for token, same log-probability)."""
    step_fn, _ = markov(seed, vocabulary=7)
    start = tf.constant([3, 4, 5, 6])
    greedy = decoding.greedy_search(
        step_fn, start, steps(4), end_id=EOS, max_length=10
    )
    beam = decoding.beam_search(
        step_fn, start, steps(4), end_id=EOS, max_length=10,
        beam_width=1, length_penalty_weight=0.0,
    )
    np.testing.assert_array_equal(beam.ids, greedy.ids)
    np.testing.assert_array_equal(beam.lengths, greedy.lengths)
    np.testing.assert_allclose(beam.log_probs, greedy.log_probs, rtol=1e-5)


@pytest.mark.parametrize(
    "seed,width,alpha,min_length",
    [
        (0, 3, 0.0, 0), (1, 4, 0.6, 0), (2, 5, 1.0, 2), (3, 2, 0.0, 1),
        (4, 1, 0.6, 0), (5, 4, 2.0, 0), (6, 6, 0.6, 1), (7, 3, 0.0, 3),
    ],
)
def test_beam_matches_plain_python_reference(seed, width, alpha, min_length):
    step_fn, logits_fn = markov(seed, vocabulary=6)
    starts = [3, 4, 5]
    result = decoding.beam_search(
        step_fn, starts, steps(3), end_id=EOS, max_length=7,
        beam_width=width, length_penalty_weight=alpha, num_return=width,
        min_length=min_length,
    )
    for row, start in enumerate(starts):
        expected = reference_beam(
            lambda tokens, start=start: logits_fn(start, tokens),
            width, 7, alpha, min_length,
        )
        assert len(expected) == width
        for k, (tokens, log_prob, score) in enumerate(expected):
            length = result.lengths.numpy()[row, k]
            assert result.ids.numpy()[row, k, :length].tolist() == tokens
            assert np.all(result.ids.numpy()[row, k, length:] == PAD)
            np.testing.assert_allclose(
                result.log_probs.numpy()[row, k], log_prob, rtol=1e-5
            )
            np.testing.assert_allclose(
                result.scores.numpy()[row, k], score, rtol=1e-5
            )


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_early_stopping_is_exact(alpha):
    """The search stops before ``max_length`` once, in every row, nothing
    grown from a live hypothesis could enter the pool, and returns what a
    search that runs all ``max_length`` steps returns."""
    rows, width, max_length = 20, 3, 20
    step_fn, state, logits_fn = markov_rows(
        seed=11, rows=rows, steps=max_length, end_bias=2.0
    )
    calls = []

    def counted_step_fn(token_ids, state):
        calls.append(1)
        return step_fn(token_ids, state)

    result = decoding.beam_search(
        counted_step_fn, [3] * rows, state, end_id=EOS,
        max_length=max_length, beam_width=width, num_return=width,
        length_penalty_weight=alpha,
    )
    assert len(calls) < max_length
    for row in range(rows):
        expected = reference_beam(
            lambda tokens, row=row: logits_fn(row, 3, tokens),
            width, max_length, alpha, stop_early=False,
        )
        assert result.to_lists(strip_end=False)[row] == [
            tokens for tokens, _, _ in expected
        ]
        np.testing.assert_allclose(
            result.scores.numpy()[row], [s for _, _, s in expected],
            rtol=1e-5,
        )


def test_row_is_done_only_when_its_pool_is_full():
    """'</s>' (p .9) outscores every live hypothesis from the first step,
    but the pool holds one finished hypothesis of three: the search goes
    on, and returns three finished ones rather than unfinished prefixes."""
    letter_a, letter_b = VOCAB.index("a"), VOCAB.index("b")
    table = np.full((len(VOCAB), len(VOCAB)), -np.inf, "float32")
    table[BOS, [EOS, letter_a, letter_b]] = np.log([0.9, 0.06, 0.04])
    table[letter_a, [EOS, letter_a]] = np.log(0.5)
    table[letter_b, [EOS, letter_b]] = np.log(0.5)

    def step_fn(token_ids, state):
        return tf.gather(tf.constant(table), token_ids), state

    result = decoding.beam_search(
        step_fn, [BOS], steps(1), end_id=EOS, max_length=5, beam_width=3,
        num_return=3,
    )
    assert result.to_lists(strip_end=False)[0] == [
        [EOS], encode("a"), encode("b")
    ]
    np.testing.assert_allclose(
        np.exp(result.log_probs.numpy()[0]), [0.9, 0.03, 0.02], rtol=1e-5
    )


def test_an_ending_hypothesis_leaves_the_beam():
    """From BOS: '</s>' .5, 'a' .3, 'b' .2; 'b</s>' is then certain, while
    every continuation of 'a' is unlikely. With width 2, '</s>' moves to
    the pool and 'a' and 'b' both go on, so the second best is 'b</s>'
    (.2). Had '</s>' kept one of the two slots (finished beams frozen, the
    previous rules), 'b' would have been pruned at the first step."""
    letter_a, letter_b, letter_c = (VOCAB.index(x) for x in "abc")
    table = np.full((len(VOCAB), len(VOCAB)), -np.inf, "float32")
    table[BOS, [EOS, letter_a, letter_b]] = np.log([0.5, 0.3, 0.2])
    table[letter_a, [EOS, letter_c]] = np.log([0.1, 0.9])
    table[letter_c, [EOS, letter_c]] = np.log([0.1, 0.9])
    table[letter_b, EOS] = 0.0

    def step_fn(token_ids, state):
        return tf.gather(tf.constant(table), token_ids), state

    result = decoding.beam_search(
        step_fn, [BOS], steps(1), end_id=EOS, max_length=6, beam_width=2,
        num_return=2,
    )
    assert result.to_lists(strip_end=False)[0] == [[EOS], encode("b")]
    np.testing.assert_allclose(
        np.exp(result.log_probs.numpy()[0]), [0.5, 0.2], rtol=1e-5
    )
    frozen = frozen_reference_beam(
        lambda tokens: table[tokens[-1] if tokens else BOS], 2, 6, 0.0
    )
    assert encode("b") not in [tokens for tokens, _, _ in frozen]


def test_wide_beam_finds_the_exact_n_best():
    """With the beam wider than the hypothesis space, beam search is exact:
    compare with enumerating every sequence (brute force)."""
    vocabulary, max_length, alpha = 5, 4, 0.7
    step_fn, logits_fn = markov(seed=4, vocabulary=vocabulary, scale=1.5)
    everything = []
    for n in range(1, max_length + 1):
        for tokens in itertools.product(range(vocabulary), repeat=n):
            if EOS in tokens[:-1] or (n < max_length and tokens[-1] != EOS):
                continue
            log_prob = sequence_log_prob(
                lambda prefix: logits_fn(BOS, prefix), tokens
            )
            everything.append(
                (log_prob / ((5 + n) / 6) ** alpha, list(tokens))
            )
    everything.sort(key=lambda pair: -pair[0])
    result = decoding.beam_search(
        step_fn, [BOS], steps(1), end_id=EOS, max_length=max_length,
        beam_width=vocabulary**max_length, length_penalty_weight=alpha,
        num_return=10,
    )
    found = result.to_lists(strip_end=False)[0]
    assert found == [tokens for _, tokens in everything[:10]]
    np.testing.assert_allclose(
        result.scores.numpy()[0], [s for s, _ in everything[:10]], rtol=1e-5
    )


def garden_path():
    """From BOS, greedy takes 'a' (p .6) but every continuation of 'a' is
    unlikely (p .1 each); 'b' (p .4) continues with 'c' (p .99)."""
    table = np.full((len(VOCAB), len(VOCAB)), -30.0, "float32")
    table[BOS, VOCAB.index("a")] = np.log(0.6)
    table[BOS, VOCAB.index("b")] = np.log(0.4)
    table[VOCAB.index("a"), VOCAB.index("d"):VOCAB.index("n")] = np.log(0.1)
    table[VOCAB.index("b"), VOCAB.index("c")] = np.log(0.99)
    table[VOCAB.index("b"), EOS] = np.log(0.01)
    for letter in "cdefghijklm":
        table[VOCAB.index(letter), EOS] = 0.0

    def step_fn(token_ids, state):
        return tf.gather(tf.constant(table), token_ids), state

    return step_fn


def test_beam_beats_greedy_on_a_garden_path():
    step_fn = garden_path()
    greedy = decoding.greedy_search(
        step_fn, [BOS], steps(1), end_id=EOS, max_length=5
    )
    beam = decoding.beam_search(
        step_fn, [BOS], steps(1), end_id=EOS, max_length=5, beam_width=3,
        num_return=3,
    )
    assert decode_ids(greedy.ids.numpy()[0, 0])[0] == "a"
    assert next(decode_ids(h) for h in beam.ids.numpy()[0]) == "bc"
    np.testing.assert_allclose(
        beam.log_probs.numpy()[0, 0], np.log(0.4 * 0.99), rtol=1e-4
    )
    assert beam.log_probs.numpy()[0, 0] > greedy.log_probs.numpy()[0, 0]
    scores = beam.scores.numpy()[0]
    assert np.all(np.diff(scores) <= 0)
    assert len({tuple(h) for h in beam.to_lists(end_id=EOS)[0]}) == 3


def test_beam_spells_scripted_strings():
    words = ["hello", "beam", "x"]
    step_fn, state = scripted(words)
    beam = decoding.beam_search(
        step_fn, [BOS] * 3, state, end_id=EOS, max_length=8, beam_width=3,
    )
    assert [decode_ids(r[0]) for r in beam.ids.numpy()] == words
    assert beam.lengths.numpy()[:, 0].tolist() == [6, 5, 2]


def test_finished_hypotheses_keep_their_tokens_and_log_probs():
    """Hypotheses that ended at different steps, while the live beams went
    on and were reordered, keep their tokens and exact log-probability."""
    alpha = 0.6
    step_fn, logits_fn = markov(seed=5, vocabulary=6)
    result = decoding.beam_search(
        step_fn, [3], steps(1), end_id=EOS, max_length=9,
        beam_width=4, num_return=4, length_penalty_weight=alpha,
    )
    ended_lengths = set()
    for k in range(4):
        length = result.lengths.numpy()[0, k]
        tokens = result.ids.numpy()[0, k, :length].tolist()
        assert np.all(result.ids.numpy()[0, k, length:] == PAD)
        if length < 9:
            ended_lengths.add(length)
        assert tokens[-1] == EOS or length == 9
        assert EOS not in tokens[:-1]
        log_prob = sequence_log_prob(lambda p: logits_fn(3, p), tokens)
        np.testing.assert_allclose(
            result.log_probs.numpy()[0, k], log_prob, rtol=1e-5
        )
        np.testing.assert_allclose(
            result.scores.numpy()[0, k],
            log_prob / ((5 + length) / 6) ** alpha, rtol=1e-5,
        )
    assert len(ended_lengths) >= 2


@pytest.mark.parametrize("jit_compile", [False, True])
def test_rows_with_too_few_hypotheses_are_filled_with_empty_ones(
    jit_compile,
):
    """Only '</s>' and 'a</s>' have nonzero probability: of 4 hypotheses
    the last two are empty (length 0, -inf), never impossible sequences
    passed off as finished. Eagerly and under XLA, whose ``top_k`` must
    break the ties between -inf scores the same way."""
    table = np.full((len(VOCAB), len(VOCAB)), -np.inf, "float32")
    table[BOS, [EOS, VOCAB.index("a")]] = [np.log(0.3), np.log(0.7)]
    table[VOCAB.index("a"), EOS] = 0.0

    def step_fn(token_ids, state):
        return tf.gather(tf.constant(table), token_ids), state

    def run():
        return decoding.beam_search(
            step_fn, [BOS], steps(1), end_id=EOS, max_length=4,
            beam_width=4, num_return=4,
        )

    result = tf.function(run, jit_compile=True)() if jit_compile else run()
    assert result.to_lists(strip_end=False)[0] == [
        encode("a"), [EOS], [], []
    ]
    assert result.lengths.numpy()[0].tolist() == [2, 1, 0, 0]
    assert np.all(result.ids.numpy()[0, 2:] == PAD)
    np.testing.assert_allclose(
        result.log_probs.numpy()[0],
        [np.log(0.7), np.log(0.3), -np.inf, -np.inf], rtol=1e-5,
    )
    np.testing.assert_array_equal(result.scores.numpy()[0, 2:], -np.inf)


def test_beam_reorders_state_with_parents():
    """The logits depend on the whole history through the state (a running
    sum of the tokens), so a state not reordered with its beam would give
    other hypotheses than the plain-Python reference."""
    vocabulary = 6
    table = np.random.default_rng(6).normal(
        size=(vocabulary, vocabulary)).astype("float32") * 2

    def step_fn(token_ids, state):
        total = state + token_ids
        return tf.gather(tf.constant(table), total % vocabulary), total

    def history_logits(start, tokens):
        return table[(start + sum(tokens)) % vocabulary]

    result = decoding.beam_search(
        step_fn, [3, 4], tf.zeros([2], "int32"), end_id=EOS, max_length=6,
        beam_width=3, num_return=3, length_penalty_weight=0.5,
    )
    for row, start in enumerate([3, 4]):
        expected = reference_beam(
            lambda tokens, start=start: history_logits(start, tokens),
            3, 6, 0.5,
        )
        assert result.to_lists(strip_end=False)[row] == [
            tokens for tokens, _, _ in expected
        ]


# --- graphs, XLA, dispatch ---------------------------------------------------

@pytest.mark.parametrize("method,options", [
    ("greedy", {}),
    ("sample", {"seed": 5, "top_k": 3, "top_p": 0.9, "temperature": 0.7}),
    ("beam", {"beam_width": 3, "num_return": 2,
              "length_penalty_weight": 0.6}),
])
def test_same_result_eager_in_tf_function_and_under_xla(method, options):
    step_fn, _ = markov(seed=7, vocabulary=8)
    start = tf.constant([3, 4, 5])

    def run(start_ids):
        return decoding.decode(
            step_fn, start_ids, tf.zeros_like(start_ids), end_id=EOS,
            max_length=9, method=method, min_length=1, **options,
        )

    eager = run(start)
    # A dynamic batch size inside the graph.
    spec = [tf.TensorSpec([None], "int32")]
    graph = tf.function(run, input_signature=spec)(start)
    compiled = tf.function(run, input_signature=spec, jit_compile=True)
    xla = compiled(start)
    # XLA implements the stateless random ops with another generator:
    # its samples are reproducible but not those of the CPU kernels.
    xla_reference = compiled(start) if method == "sample" else eager
    # A static batch size, which the loop must keep from step to step.
    static_xla = tf.function(run, jit_compile=True)(start)
    for field in eager._fields:
        np.testing.assert_allclose(getattr(graph, field),
                                   getattr(eager, field), rtol=1e-5)
        np.testing.assert_allclose(getattr(xla, field),
                                   getattr(xla_reference, field), rtol=1e-5)
        np.testing.assert_allclose(getattr(static_xla, field),
                                   getattr(xla_reference, field), rtol=1e-5)


# --- bad input ---------------------------------------------------------------

def call(method, **overrides):
    step_fn, _ = markov(seed=0, vocabulary=6)
    arguments = {
        "step_fn": step_fn, "start_ids": [3, 4], "initial_state": steps(2),
        "end_id": EOS, "max_length": 5,
    }
    arguments.update(overrides)
    return decoding.decode(method=method, **arguments)


@pytest.mark.parametrize("method,overrides,message", [
    ("beam", {"beam_width": 0}, (r"`beam_width` must be an integer >= 1.*"
     r"Received: beam_width=0")),
    ("beam", {"beam_width": -2}, r"Received: beam_width=-2"),
    ("beam", {"beam_width": 2, "num_return": 3}, (r"`num_return` must not "
     r"exceed `beam_width`")),
    ("beam", {"length_penalty_weight": -1.0}, "length_penalty_weight=-1.0"),
    ("sample", {"temperature": 0.0}, (r"`temperature` must be a number > 0"
     r".*greedy.*Received: temperature=0.0")),
    ("sample", {"temperature": -1}, "temperature=-1"),
    ("sample", {"top_p": 0.0}, (r"`top_p` must be None or a number in "
     r"\(0, 1\]. Received: top_p=0.0")),
    ("sample", {"top_p": 1.5}, "top_p=1.5"),
    ("sample", {"top_k": 0}, "top_k=0"),
    ("sample", {"seed": "x"}, "`seed` must be None, an int"),
    ("sample", {"num_samples": 0}, "num_samples=0"),
    ("greedy", {"max_length": 0}, "max_length=0"),
    ("greedy", {"min_length": 6}, (r"`min_length` must not exceed "
     r"`max_length`. Received: min_length=6, max_length=5")),
    ("greedy", {"end_id": 6}, (r"`end_id` must be a token id below the "
     r"vocabulary size 6. Received: end_id=6")),
    ("beam", {"end_id": -1}, "end_id=-1"),
    ("greedy", {"start_ids": [[3, 4]]}, r"`start_ids` must be a 1-D"),
    ("greedy", {"start_ids": [3.0, 4.0]}, r"integer token ids"),
    ("greedy", {"initial_state": steps(3)}, (r"batch as its leading axis "
     r"\(2 rows")),
    ("greedy", {"step_fn": lambda ids, s: (tf.zeros([2, 6]), [s])},
     "same structure|structure of the state"),
    ("greedy", {"step_fn": lambda ids, s: (tf.zeros([2, 6, 1]), s)},
     r"logits of shape \(batch, vocabulary\)"),
    ("greedy", {"step_fn": "f"}, "`step_fn` must be callable"),
    ("viterbi", {}, (r"`method` must be one of \['beam', 'greedy', "
     r"'sample'\]. Received: method='viterbi'")),
])
def test_bad_input_raises_clear_errors(method, overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(method, **overrides)


def test_result_to_lists_needs_end_id():
    step_fn, state = scripted(["ab"])
    result = decoding.greedy_search(
        step_fn, [BOS], state, end_id=EOS, max_length=4
    )
    assert result.to_lists(strip_end=False) == [[encode("ab")]]
    with pytest.raises(ValueError, match="`end_id` is needed"):
        result.to_lists()


# --- forbidden tokens and per-call tensors ----------------------------------

def pad_loving(steps=4):
    """Logits that put most mass on PAD, then BOS, then 'a'; EOS after
    ``steps`` steps (a model that never learnt that PAD and BOS are not
    output)."""
    def step_fn(token_ids, t):
        base = np.full(len(VOCAB), -5.0, "float32")
        base[[PAD, BOS, VOCAB.index("a")]] = [9.0, 8.0, 3.0]
        end = np.full(len(VOCAB), -5.0, "float32")
        end[EOS] = 9.0
        logits = tf.where((t >= steps)[:, None], end, base)
        return logits, t + 1
    return step_fn, tf.zeros([2], "int32")


@pytest.mark.parametrize("method,options", [
    ("greedy", {}), ("sample", {"seed": 3}), ("sample", {"top_k": 2}),
    ("beam", {"beam_width": 3, "num_return": 3}),
])
def test_forbidden_ids_are_never_generated(method, options):
    step_fn, state = pad_loving()
    start = tf.constant([BOS, BOS])
    plain = decoding.decode(step_fn, start, state, EOS, 6, method=method,
                            **options)
    assert PAD in plain.ids.numpy()[:, :, :1]    # the defect, unmasked
    result = decoding.decode(step_fn, start, state, EOS, 6, method=method,
                             forbidden_ids=(PAD, BOS), **options)
    for row in result.to_lists(strip_end=False, end_id=EOS):
        for hypothesis in row:
            assert PAD not in hypothesis and BOS not in hypothesis
            assert hypothesis[-1] == EOS
    # Probabilities are over the allowed tokens: four 'a' (each
    # log(1 + 25 e^-8) from certain), then a near-certain EOS.
    best = result.log_probs.numpy()[:, 0]
    if method != "sample":
        assert best == pytest.approx(-4 * math.log1p(25 * math.exp(-8)),
                                     abs=2e-3)


def test_forbidden_ids_must_not_hold_the_end_token():
    step_fn, state = pad_loving()
    with pytest.raises(ValueError, match="must not contain the end token"):
        decoding.greedy_search(step_fn, [BOS, BOS], state, EOS, 5,
                               forbidden_ids=[PAD, EOS])
    with pytest.raises(ValueError, match="below the vocabulary size"):
        decoding.greedy_search(step_fn, [BOS, BOS], state, EOS, 5,
                               forbidden_ids=[len(VOCAB)])


def test_per_call_options_as_tensors_reuse_one_trace():
    """max_length, min_length, temperature, top_k, top_p, seed and the
    length penalty may be scalar tensors: one graph serves every value
    and gives the results of the Python values."""
    step_fn, _ = markov(0)
    state = tf.zeros([2], "int32")
    start = tf.constant([0, 3])

    @tf.function
    def search(method, values):
        return decoding.decode(step_fn, start, state, 5, **values,
                               method=method)

    sampled = {k: tf.constant(v) for k, v in dict(
        max_length=8, min_length=2, temperature=0.7, top_k=4, top_p=0.9,
        seed=11).items()}
    beam = {k: tf.constant(v) for k, v in dict(
        max_length=8, min_length=1, length_penalty_weight=0.6).items()}
    for method, values, python in [
        ("sample", sampled, dict(max_length=8, min_length=2,
                                 temperature=0.7, top_k=4, top_p=0.9,
                                 seed=11)),
        ("beam", beam, dict(max_length=8, min_length=1,
                            length_penalty_weight=0.6)),
    ]:
        traced = search(method, values)
        eager = decoding.decode(step_fn, start, state, 5, method=method,
                                **python)
        np.testing.assert_array_equal(traced.ids, eager.ids)
        np.testing.assert_allclose(traced.scores, eager.scores, atol=1e-5)
    other = dict(sampled, seed=tf.constant(12), top_p=tf.constant(1.0))
    search("sample", other)
    assert search.experimental_get_tracing_count() == 2   # one per method
