"""Layer probing (``kerasrnn.diagnostics.probing``).

The extracted states are checked against the float64 NumPy reference of
``reference/numpy_rnn.py`` run layer by layer (each direction on its own,
the backward one over the valid prefix reversed), so a wrong layer order,
direction, flip or residual shows. The features' row selection and
pooling are checked against NumPy indexing, and the probe against
separable and random labels.
"""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest
from keras import ops
from matplotlib.image import imread
from reference import numpy_rnn as ref

import kerasrnn
from kerasrnn.diagnostics import probing
from kerasrnn.models import LanguageModel
from kerasrnn.models.lm_data import Vocabulary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KINDS = {kerasrnn.LSTM: "lstm", kerasrnn.GRU: "gru",
         kerasrnn.SimpleRNN: "elman"}


def randomize(layer, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, scale, w.shape).astype("float32")
                       for w in layer.get_weights()])


def reference_cell(rnn, kind):
    W, U, b = (np.float64(w) for w in rnn.cell.get_weights())
    return ref.Cell(kind, W, U, b,
                    reset_after=getattr(rnn.cell, "reset_after", True))


def reference_layers(stack, x, lengths):
    """``{name: (B, T, H)}`` of every layer and direction, in NumPy."""
    kind = KINDS[type(stack)]
    mask = ref.lengths_to_mask(lengths, x.shape[1])
    inputs = np.float64(x)
    found = {"input": inputs}
    for index, layer in enumerate(stack.recurrent_layers):
        name = f"layer_{index}"
        if stack.bidirectional:
            forward, _, _ = ref.run(reference_cell(layer.forward_layer, kind),
                                    inputs, mask, zero_output_for_mask=True)
            backward, _, _ = ref.run(
                reference_cell(layer.backward_layer, kind),
                ref.flip_valid(inputs, lengths), mask,
                zero_output_for_mask=True)
            backward = ref.flip_valid(backward, lengths)
            found[f"{name}/forward"] = forward
            found[f"{name}/backward"] = backward
            output = ref.merge(stack.merge_mode, forward, backward)
        else:
            output, _, _ = ref.run(reference_cell(layer, kind), inputs, mask)
        if stack.residual and index > 0:
            output = output + inputs
        found[name] = output
        inputs = output
    return found


@pytest.mark.parametrize("layer_class, options", [
    # return_sequences=False: the last layer is re-run as a sequence copy.
    (kerasrnn.LSTM, dict(num_layers=3, bidirectional=True, residual=True,
                         return_sequences=True)),
    (kerasrnn.GRU, dict(num_layers=2, bidirectional=True, merge_mode="sum")),
    (kerasrnn.SimpleRNN, dict(num_layers=3)),
])
def test_layer_states_equal_the_numpy_reference(layer_class, options):
    stack = layer_class(4, **options)
    stack.build((None, None, 3))
    randomize(stack)
    x = np.random.default_rng(1).normal(size=(3, 6, 3)).astype("float32")
    lengths = np.array([6, 4, 2])
    mask = ref.lengths_to_mask(lengths, 6)
    states = probing.layer_states(stack, x, mask)
    expected = reference_layers(stack, x, lengths)
    assert [s.name for s in states] == list(expected)
    for state in states:
        got = ops.convert_to_numpy(state.values)
        np.testing.assert_allclose(got[mask], expected[state.name][mask],
                                   atol=2e-5, err_msg=state.name)
    depths = {s.name: s.depth for s in states}
    assert depths["input"] == 0 and depths["layer_1"] == 2
    # The last merged layer is what the stack itself returns.
    stack_output = stack(x, mask=mask)
    if isinstance(stack_output, (list, tuple)):
        stack_output = stack_output[0]
    stack_output = ops.convert_to_numpy(stack_output)
    last = ops.convert_to_numpy(states[-1].values)
    if stack.return_sequences:
        np.testing.assert_allclose(last[mask], stack_output[mask],
                                   atol=1e-6)
    elif not stack.bidirectional:
        np.testing.assert_allclose(last[np.arange(3), lengths - 1],
                                   stack_output, atol=1e-6)


def test_layer_states_follow_trained_weights():
    # The sequence copy of a return_sequences=False layer reads the
    # original's current weights, not those of the first call.
    stack = kerasrnn.LSTM(3, num_layers=2)
    stack.build((None, None, 2))
    x = np.ones((1, 4, 2), "float32")
    before = ops.convert_to_numpy(probing.layer_states(stack, x)[-1].values)
    randomize(stack, seed=7)
    after = ops.convert_to_numpy(probing.layer_states(stack, x)[-1].values)
    np.testing.assert_allclose(after[:, -1], ops.convert_to_numpy(stack(x)),
                               atol=1e-6)
    assert np.abs(after - before).max() > 1e-3


def tagger(seed=0):
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(20, 5, mask_zero=True),
        kerasrnn.LSTM(4, num_layers=2, bidirectional=True),
        keras.layers.Dense(2),
    ])
    randomize(model.layers[1], seed)
    return model


def padded_ids(seed=0, rows=7, steps=8):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, steps + 1, rows)
    ids = rng.integers(1, 20, (rows, steps)).astype("int32")
    mask = ref.lengths_to_mask(lengths, steps)
    return np.where(mask, ids, 0), mask, lengths


def test_layer_features_select_rows_and_pool():
    model = tagger()
    ids, mask, lengths = padded_ids()
    embedded = model.layers[0](ids)
    states = probing.layer_states(model.layers[1], embedded, mask)
    tokens = probing.layer_features(model, ids, mask, batch_size=3)
    pooled = probing.layer_features(model, ids, mask, pooling="mean",
                                    batch_size=2)
    assert [s.name for s in tokens] == [s.name for s in states]
    assert len(tokens[0].values) == lengths.sum()
    for state, rows, means in zip(states, tokens, pooled):
        values = ops.convert_to_numpy(state.values)
        np.testing.assert_allclose(rows.values, values[mask], atol=1e-5)
        expected = np.stack([values[b, :lengths[b]].mean(axis=0)
                             for b in range(len(ids))])
        np.testing.assert_allclose(means.values, expected, atol=1e-5)


def test_language_model_stack_is_found():
    model = LanguageModel(15, embedding_dim=6, units=6, num_layers=3)
    ids, mask, lengths = padded_ids(rows=4)
    ids = np.minimum(ids, 14)
    features = probing.layer_features(model, ids, mask)
    assert [f.name for f in features] == [
        "input", "layer_0", "layer_1", "layer_2"]
    assert probing.find_stack(model) is model.recurrent
    # The top layer's rows are the hidden states the softmax reads.
    _, states = model(ids, return_state=True)
    last = [b for b in range(4) if lengths[b] == ids.shape[1]]
    rows = np.cumsum(lengths) - 1
    np.testing.assert_allclose(features[-1].values[rows[last]],
                               ops.convert_to_numpy(states[-2])[last],
                               atol=1e-5)


def test_fit_probe_reads_a_linear_rule_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 10)).astype("float32") * 5 + 3
    rule = rng.normal(size=(10, 3))
    y = (x @ rule).argmax(axis=1)
    accuracy, train_accuracy, majority = probing.fit_probe(
        x[:400], y[:400], x[400:], y[400:], epochs=30, learning_rate=3e-2,
        min_steps=0, seed=0)
    assert accuracy > 0.9 and train_accuracy > 0.9
    assert majority == pytest.approx(
        np.mean(y[400:] == np.bincount(y[:400]).argmax()))
    noise = rng.integers(0, 3, 600)
    chance, _, _ = probing.fit_probe(x[:400], noise[:400], x[400:],
                                     noise[400:], epochs=30,
                                     learning_rate=3e-2, min_steps=0, seed=0)
    assert chance < 0.5
    again = probing.fit_probe(x[:400], y[:400], x[400:], y[400:],
                              epochs=30, learning_rate=3e-2, min_steps=0,
                              seed=0)
    assert again[0] == accuracy


def test_probe_layers_table_and_plot(tmp_path):
    model = tagger()
    ids, mask, _ = padded_ids(rows=20)
    train_rows, test_rows = probing.held_out_split(20, 0.25, seed=0)
    assert sorted(np.concatenate([train_rows, test_rows])) == list(range(20))
    # Three of the seven entries keep the test fast: input, layer_0/forward
    # and the top layer, merged.
    keep = [0, 1, 6]
    train = probing.layer_features(model, ids[train_rows], mask[train_rows])
    test = probing.layer_features(model, ids[test_rows], mask[test_rows])
    assert len(train) == 7
    train = [train[i] for i in keep]
    test = [test[i] for i in keep]
    # Token task: is the token id even (readable from the embedding).
    train_labels = (ids[train_rows][mask[train_rows]] % 2).astype(int)
    test_labels = (ids[test_rows][mask[test_rows]] % 2).astype(int)
    results = probing.probe_layers("parity", train, train_labels, test,
                                   test_labels, epochs=3, min_steps=10)
    assert [r.name for r in results] == [s.name for s in train]
    assert all(0 <= r.accuracy <= 1 for r in results)
    assert results[0].test_rows == len(test_labels)
    assert results[1].features == 4 and results[2].features == 8
    assert [r.depth for r in results] == [0, 1, 2]
    table = probing.format_probe_table({"a": results, "b": results})
    lines = table.splitlines()
    assert lines[0] == "| layer | parity (a) | parity (b) |"
    assert len(lines) == 2 + len(results) + 1
    assert lines[2].startswith("| input | ")
    path = probing.plot_probes({"trained": results}, tmp_path / "p.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert imread(path).shape[1] > 200


def test_bad_input():
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="exactly one kerasrnn stack"):
        probing.find_stack(model)
    with pytest.raises(TypeError, match="`stack` must be a kerasrnn"):
        probing.layer_states(keras.layers.Dense(2), np.ones((1, 2, 2)))
    stack = kerasrnn.GRU(3)
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        probing.layer_states(stack, np.ones((2, 3)))
    tagged = tagger()
    ids, mask, _ = padded_ids()
    with pytest.raises(ValueError, match="`pooling` must be None"):
        probing.layer_features(tagged, ids, mask, pooling="median")
    with pytest.raises(ValueError, match="at least one real step"):
        probing.layer_features(tagged, ids, np.zeros_like(mask))
    with pytest.raises(ValueError, match="one row per input"):
        probing.layer_features(tagged, ids, mask[:2])
    x = np.ones((4, 3), "float32")
    with pytest.raises(ValueError, match="one integer label per row"):
        probing.fit_probe(x, np.zeros(3, int), x, np.zeros(4, int))
    with pytest.raises(ValueError, match="integers ≥ 0"):
        probing.fit_probe(x, -np.ones(4, int), x, np.zeros(4, int))
    with pytest.raises(ValueError, match="same number of features"):
        probing.fit_probe(x, np.zeros(4, int), np.ones((4, 2)),
                          np.zeros(4, int))
    with pytest.raises(ValueError, match="num_classes=2"):
        probing.fit_probe(x, np.arange(4), x, np.zeros(4, int),
                          num_classes=2)
    with pytest.raises(ValueError, match="`fraction`"):
        probing.held_out_split(10, 1.5)
    with pytest.raises(ValueError, match="`direction`"):
        probing.plot_probes([], "x.png", direction="up")


def load_lab():
    """examples/probing_lab.py as a module (examples are not a package)."""
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / (
        "probing_lab.py")
    spec = importlib.util.spec_from_file_location("probing_lab", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lab_bilm_rows_realign_the_backward_lm(tmp_path):
    lab = load_lab()
    words = ["a", "b", "c", "d", "e"]
    vocabulary = Vocabulary(["<unk>", "<eos>"] + words)
    forward = LanguageModel(7, embedding_dim=4, units=4, num_layers=2)
    backward = LanguageModel(7, embedding_dim=4, units=4, num_layers=2)
    rows = [(["a", "b", "c", "d"], [0, 1, 2, 3]), (["e", "a"], [4, 5]),
            (["c", "b", "e"], [6, 7, 8])]
    entries, labels = lab.bilm_features(forward, backward, rows, vocabulary,
                                        None)
    # Rows come sorted by sentence length (stable): 2, 3, 4 tokens.
    np.testing.assert_array_equal(labels, [4, 5, 6, 7, 8, 0, 1, 2, 3])
    by_name = {e.name: e for e in entries}
    top = by_name["layer_1/backward"].values
    start = 0
    for sentence, _ in sorted(rows, key=lambda r: len(r[0])):
        ids, _ = vocabulary.encode(sentence[::-1])
        _, states = backward(ids[None], return_state=True)
        # Token 0 of the sentence is the backward LM's last step.
        np.testing.assert_allclose(top[start],
                                   ops.convert_to_numpy(states[-2])[0],
                                   atol=1e-5)
        start += len(sentence)
    both = by_name["layer_1"].values
    np.testing.assert_array_equal(
        both, np.concatenate([by_name["layer_1/forward"].values, top], 1))


def test_lab_readers(tmp_path):
    lab = load_lab()
    conllu = tmp_path / "x.conllu"
    conllu.write_text(
        "# text = Don't go.\n1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tDo\tdo\tAUX\t_\t_\t0\t_\t_\t_\n2\tn't\tnot\tPART\t_\t_\t0\t_\t_\t_\n"
        "3\tgo\tgo\tVERB\t_\t_\t0\t_\t_\t_\n\n", encoding="utf-8")
    assert lab.read_conllu(conllu) == [(["Do", "n't", "go"],
                                        ["AUX", "PART", "VERB"])]
    sst = tmp_path / "sst.txt"
    sst.write_text("(3 (2 A) (4 good\u00a0film))\n(2 (2 meh) (2 .))\n"
                   "(1 (1 bad) (2 .))\n", encoding="utf-8")
    assert lab.read_sst(sst) == [(["A", "good\u00a0film"], 1),
                                 (["bad", "."], 0)]
    assert [lab.ptb_word(w) for w in ("Bush", "1,000", "3.5", "N.Y.")] == [
        "bush", "N", "N", "n.y."]


def test_plot_points_pick_one_entry_per_depth():
    def result(name, depth, direction, accuracy):
        return probing.ProbeResult("t", name, depth, direction, accuracy,
                                   1.0, 0.5, 10, 10, 4)

    bidirectional = [result("input/forward", 0, "forward", 0.1),
                     result("input", 0, "both", 0.2),
                     result("layer_0/forward", 1, "forward", 0.3),
                     result("layer_0", 1, "both", 0.4)]
    assert probing._points(bidirectional, "t", "both") == [(0, 0.2),
                                                          (1, 0.4)]
    assert probing._points(bidirectional, "t", "forward") == [(0, 0.1),
                                                             (1, 0.3)]
    unidirectional = [result("input", 0, "both", 0.2),
                      result("layer_0", 1, "forward", 0.5)]
    assert probing._points(unidirectional, "t", "both") == [(0, 0.2),
                                                           (1, 0.5)]
