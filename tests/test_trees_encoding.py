"""Tree parsing, readers and encoding: SST brackets (U+00A0 inside words),
parent arrays, CoNLL-U, the level schedule, and clear errors for malformed
trees."""

import numpy as np
import pytest

from kerasrnn.trees import Tree
from kerasrnn.trees import TreeFormatError
from kerasrnn.trees import Vocabulary
from kerasrnn.trees import encode
from kerasrnn.trees import from_parents
from kerasrnn.trees import glove_key
from kerasrnn.trees import parse_bracketed
from kerasrnn.trees import read_bracketed
from kerasrnn.trees import read_conllu
from kerasrnn.trees import read_parents
from kerasrnn.trees import to_bracketed
from reference.tree_shapes import random_parents

SST_LINE = "(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 good)) (2 .)))"


def test_sst_line_parses_in_pre_order():
    tree = parse_bracketed(SST_LINE)
    assert tree.size == 9
    assert tree.labels == (3, 2, 2, 2, 4, 3, 2, 4, 2)
    assert [tree.tokens[n] for n in tree.leaves()] == [
        "The", "Rock", "is", "good", "."]
    assert tree.children[0] == (1, 4)
    assert tree.levels() == [3, 1, 0, 0, 2, 1, 0, 0, 0]
    assert tree.depths() == [0, 1, 2, 2, 1, 2, 3, 3, 2]
    assert to_bracketed(tree) == SST_LINE


def test_no_break_space_stays_inside_a_word():
    tree = parse_bracketed("(2 (2 8\u00a01\\/2) (2 stars))\n")
    assert tree.tokens[1] == "8\u00a01\\/2"
    assert tree.size == 3


@pytest.mark.parametrize("text, message", [
    ("", "the tree is empty"),
    ("(3 (2 a) (2 b)", "unbalanced brackets: 1 '\\(' not closed"),
    ("(3 (2 a) (2 b)))", "a .\\). at item 11 closes nothing"),
    ("(x (2 a) (2 b))", "node labels are integers; found 'x'"),
    ("(3 (2 a b))", "more than one word"),
    ("(3 a (2 b))", "holds both a word and a subtree"),
    ("(3 (2 a)) (2 b)", "a second tree starts"),
    ("(3 (2 a)) b", "outside the root's brackets"),
    ("(3)", "neither a word nor subtrees"),
    ("((2 a))", "must start with its label"),
    ("a (2 b)", "starts with '\\('"),
])
def test_malformed_brackets_are_refused_with_where_and_what(text, message):
    with pytest.raises(TreeFormatError, match="train.txt line 4: .*" + message):
        parse_bracketed(text, where="train.txt line 4")


def test_parent_array_renumbers_in_pre_order():
    # "dogs chase cats": chase is the root, dogs and cats its children.
    tree = from_parents([2, 0, 2], ["dogs", "chase", "cats"])
    assert tree.tokens == ("chase", "dogs", "cats")
    assert tree.children == ((1, 2), (), ())
    assert tree.positions == (1, 0, 2)


@pytest.mark.parametrize("parents, message", [
    ([], "the tree is empty"),
    ([0, 1, 0], "2 roots \\(words \\[1, 3\\]\\)"),
    ([2, 3, 1], "0 roots"),
    ([0, 3, 2], "a cycle: words \\[2, 3\\]"),
    ([0, 5], "word 2 has parent 5, out of range \\[0, 2\\]"),
    ([0, 2], "word 2 is its own parent"),
    ([0, -1], "out of range"),
])
def test_malformed_parent_arrays_are_refused(parents, message):
    with pytest.raises(TreeFormatError, match="a.parents line 7: .*" + message):
        from_parents(parents, where="a.parents line 7")


def test_tokens_of_another_length_are_refused():
    with pytest.raises(TreeFormatError, match="2 tokens for 3 parent"):
        from_parents([0, 1, 1], ["a", "b"])


@pytest.mark.parametrize("children, message", [
    ((), "The tree is empty"),
    (((1,), (2,)), "child 2, out of range"),
    (((1, 2), (2,), ()), "two parents"),
    (((), (0,)), "numbered above their parent"),
    (((1,), (), ()), "no parent"),
])
def test_tree_checks_its_structure(children, message):
    with pytest.raises(TreeFormatError, match=message):
        Tree(children, (None,) * len(children), (None,) * len(children))


def test_random_parent_arrays_round_trip_and_levels():
    rng = np.random.default_rng(0)
    for index in range(100):
        size = int(rng.integers(1, 25))
        parents = random_parents(rng, size, 4, ("random", "chain")[index % 2])
        tree = from_parents(parents)
        # Back to word order: the parent of each word.
        parent_of = {}
        for node, kids in enumerate(tree.children):
            for kid in kids:
                parent_of[tree.positions[kid]] = tree.positions[node] + 1
        assert [parent_of.get(w, 0) for w in range(size)] == parents
        levels = tree.levels()
        for node, kids in enumerate(tree.children):
            expected = 1 + max(levels[k] for k in kids) if kids else 0
            assert levels[node] == expected


def test_encode_pads_and_offsets_nothing():
    trees = [parse_bracketed(SST_LINE), parse_bracketed("(1 word)")]
    vocabulary = Vocabulary(["The", "good"])
    inputs, labels = encode(trees, vocabulary)
    assert inputs["tokens"].shape == (2, 9)
    assert inputs["children"].shape == (2, 9, 2)
    np.testing.assert_array_equal(
        inputs["tokens"][0], [0, 0, 2, 1, 0, 0, 1, 3, 1])
    np.testing.assert_array_equal(inputs["tokens"][1], [1] + [0] * 8)
    np.testing.assert_array_equal(inputs["levels"][1], [0] + [-1] * 8)
    np.testing.assert_array_equal(inputs["children"][1], -1)
    np.testing.assert_array_equal(labels[1], [1] + [-1] * 8)
    np.testing.assert_array_equal(inputs["children"][0, 0], [1, 4])


def test_encode_refuses_what_does_not_fit():
    tree = from_parents([0, 1, 1, 1])
    with pytest.raises(ValueError, match="3 children; expected at most "
                                         "max_children=2"):
        encode([tree], Vocabulary([]), max_children=2)
    with pytest.raises(ValueError, match="4 nodes; expected at most"):
        encode([tree], Vocabulary([]), max_nodes=3)
    with pytest.raises(ValueError, match="`trees` is empty"):
        encode([], Vocabulary([]))


def test_glove_key_unescapes_ptb():
    assert glove_key("-LRB-") == "("
    assert glove_key("9\\/11") == "9/11"
    assert glove_key("\\*\\*\\*") == "***"
    assert glove_key("Rock") == "rock"


def test_readers_name_the_file_and_line(tmp_path):
    path = tmp_path / "trees.txt"
    path.write_text(SST_LINE + "\n(2 (2 a) (2 b)\n", encoding="utf-8")
    with pytest.raises(TreeFormatError, match="trees.txt line 2: unbal"):
        read_bracketed(path)
    parents = tmp_path / "a.parents"
    parents.write_text("2 0\n0 1 x\n")
    with pytest.raises(TreeFormatError, match="a.parents line 2: parent"):
        read_parents(parents)
    toks = tmp_path / "a.toks"
    toks.write_text("a b\n")
    with pytest.raises(TreeFormatError, match="a.toks has 1 lines"):
        read_parents(parents, toks)


def test_conllu_skips_ranges_and_empty_nodes(tmp_path):
    rows = [
        "# text = I can't go",
        "1\tI\t_\t_\t_\t_\t3\tnsubj\t_\t_",
        "2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_",
        "2\tca\t_\t_\t_\t_\t3\taux\t_\t_",
        "3\tgo\t_\t_\t_\t_\t0\troot\t_\t_",
        "3.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_",
        "",
        "1\tHi\t_\t_\t_\t_\t0\troot\t_\t_",
        "",
    ]
    path = tmp_path / "x.conllu"
    path.write_text("\n".join(rows))
    first, second = read_conllu(path)
    assert first.tokens == ("go", "I", "ca")
    assert second.tokens == ("Hi",)
    path.write_text("1\tI\t_\t_\t_\t_\t1\tnsubj\t_\t_\n\n")
    with pytest.raises(TreeFormatError, match="sentence at line 1: word 1 "
                                              "is its own parent"):
        read_conllu(path)
