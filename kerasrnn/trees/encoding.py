"""Trees as arrays: ``Tree``, the PTB-bracket and parent-array parsers, the
``Vocabulary`` and ``encode`` (a batch of trees as padded NumPy arrays).

NumPy only: ``kerasrnn_serving.trees`` loads this file as it is, without
Keras or TensorFlow.

Node numbering (the contract every other part relies on): the nodes of a
tree are numbered in pre-order, so node 0 is the root and every child has a
larger number than its parent. A node's *level* is its height: 0 for a
leaf, ``1 + max(level of its children)`` otherwise. All nodes of one level
depend only on nodes of lower levels, so a batch runs level by level.

``encode(trees, vocabulary)`` gives, for ``B`` trees of at most ``N``
nodes and at most ``K`` children per node::

    tokens    int32 (B, N)     word id of each node; 0: no word (an inner
                               constituency node) or padding
    children  int32 (B, N, K)  node numbers of each node's children, left
                               to right; -1: no child / padding
    levels    int32 (B, N)     the node's level; -1: padding

and ``labels`` int32 ``(B, N)`` (-1: no label or padding).
"""

import dataclasses
import re

import numpy as np

NO_WORD = 0
UNKNOWN = 1
# PTB escapes of brackets written as words (SST writes them as -LRB-, ...).
PTB_ESCAPES = {
    "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]",
    "-LCB-": "{", "-RCB-": "}",
}
# Brackets and ASCII-space-separated words: SST has U+00A0 inside 3 words.
_BRACKET_TOKENS = re.compile(r"\(|\)|[^ ()]+")


class TreeFormatError(ValueError):
    """A malformed tree; the message says where and what is wrong."""


@dataclasses.dataclass(frozen=True)
class Tree:
    """One tree, its nodes numbered in pre-order (node 0 is the root).

    Attributes:
        children: ``children[i]`` is the tuple of node ``i``'s children,
            left to right; every child is numbered above its parent.
        tokens: the word at each node, or None (no word).
        labels: the label of each node (an int), or None.
        positions: for trees read from a parent array, the word index
            (0-based) of each node; otherwise None.

    Raises:
        TreeFormatError: an empty tree, a child out of range or not numbered
            above its parent, a node with two parents or no parent, or
            ``tokens``/``labels`` of another length.
    """

    children: tuple
    tokens: tuple
    labels: tuple
    positions: tuple = None

    def __post_init__(self):
        size = len(self.children)
        if size == 0:
            raise TreeFormatError("The tree is empty: it has no node.")
        for name in ("tokens", "labels", "positions"):
            value = getattr(self, name)
            if value is not None and len(value) != size:
                raise TreeFormatError(
                    f"`{name}` has {len(value)} entries; expected one per "
                    f"node ({size})."
                )
        parent = [None] * size
        for node, kids in enumerate(self.children):
            for child in kids:
                if not 0 <= child < size:
                    raise TreeFormatError(
                        f"Node {node} has child {child}, out of range "
                        f"[0, {size})."
                    )
                if child <= node:
                    raise TreeFormatError(
                        f"Node {node} has child {child}: children must be "
                        "numbered above their parent (pre-order)."
                    )
                if parent[child] is not None:
                    raise TreeFormatError(
                        f"Node {child} has two parents ({parent[child]} and "
                        f"{node})."
                    )
                parent[child] = node
        orphans = [n for n in range(1, size) if parent[n] is None]
        if orphans:
            raise TreeFormatError(
                f"Nodes {orphans[:5]} have no parent: a tree has one root "
                "(node 0)."
            )

    @property
    def size(self):
        return len(self.children)

    def levels(self):
        """The level (height) of every node, a list of ints."""
        levels = [0] * self.size
        # Children are numbered above their parent: reverse order is
        # bottom-up.
        for node in range(self.size - 1, -1, -1):
            kids = self.children[node]
            if kids:
                levels[node] = 1 + max(levels[k] for k in kids)
        return levels

    def leaves(self):
        """The leaf nodes, left to right."""
        return [n for n in range(self.size) if not self.children[n]]

    def depths(self):
        """Each node's distance to the root (root: 0)."""
        depths = [0] * self.size
        for node, kids in enumerate(self.children):
            for child in kids:
                depths[child] = depths[node] + 1
        return depths


def parse_bracketed(text, where="the tree"):
    """A PTB-style labelled tree, ``(3 (2 The) (4 (3 good) (2 film)))``.

    Every node is ``(label word)`` (a leaf) or ``(label subtree ...)``;
    labels are integers. Words are separated by ASCII spaces only (a U+00A0
    inside a word stays in it).

    Args:
        text: one tree (a trailing newline is allowed).
        where: how errors name the tree (e.g. ``"train.txt line 12"``).

    Returns:
        A ``Tree`` (words at the leaves, a label at every node).

    Raises:
        TreeFormatError: unbalanced brackets, a missing or non-integer
            label, a node holding both words and subtrees or two words,
            text after the root, or an empty tree.
    """
    items = _BRACKET_TOKENS.findall(text.rstrip("\r\n"))
    if not items:
        raise TreeFormatError(f"{where}: the tree is empty.")
    if items[0] != "(":
        raise TreeFormatError(
            f"{where}: a tree starts with '('; found {items[0]!r}."
        )
    children, tokens, labels = [], [], []
    stack = []
    position = 0
    while position < len(items):
        item = items[position]
        if item == "(":
            if position + 1 >= len(items) or items[position + 1] in "()":
                raise TreeFormatError(
                    f"{where}: a node must start with its label, '(label "
                    f"...'; item {position + 1} is not followed by one."
                )
            label = items[position + 1]
            try:
                label = int(label)
            except ValueError:
                raise TreeFormatError(
                    f"{where}: node labels are integers; found {label!r}."
                ) from None
            node = len(children)
            if stack:
                parent = stack[-1]
                if tokens[parent] is not None:
                    raise TreeFormatError(
                        f"{where}: node {parent} holds both a word and a "
                        "subtree."
                    )
                children[parent].append(node)
            elif node > 0:
                raise TreeFormatError(
                    f"{where}: text after the root ends: a second tree "
                    f"starts at item {position}; one tree per line."
                )
            children.append([])
            tokens.append(None)
            labels.append(label)
            stack.append(node)
            position += 2
        elif item == ")":
            if not stack:
                raise TreeFormatError(
                    f"{where}: unbalanced brackets: a ')' at item "
                    f"{position} closes nothing."
                )
            node = stack.pop()
            if not children[node] and tokens[node] is None:
                raise TreeFormatError(
                    f"{where}: node {node} has a label but neither a word "
                    "nor subtrees."
                )
            position += 1
        else:
            if not stack:
                raise TreeFormatError(
                    f"{where}: the word {item!r} lies outside the root's "
                    "brackets."
                )
            node = stack[-1]
            if children[node] or tokens[node] is not None:
                raise TreeFormatError(
                    f"{where}: node {node} holds more than one word or a "
                    f"word and subtrees (at {item!r}); a leaf is "
                    "'(label word)'."
                )
            tokens[node] = item
            position += 1
    if stack:
        raise TreeFormatError(
            f"{where}: unbalanced brackets: {len(stack)} '(' not closed at "
            "the end of the tree."
        )
    return Tree(tuple(map(tuple, children)), tuple(tokens), tuple(labels))


def from_parents(parents, tokens=None, labels=None, where="the tree"):
    """A tree from a parent array (``a.parents`` files, CoNLL-U heads).

    ``parents[i]`` is the 1-based index of word ``i``'s parent, 0 for the
    root; each word is a node, its children in word order. Nodes are
    renumbered in pre-order; ``positions`` maps them back to words.

    Args:
        parents: a sequence of ints.
        tokens: the words (as many as ``parents``), or None.
        labels: a label per word, or None.
        where: how errors name the tree.

    Raises:
        TreeFormatError: an empty array, a parent index out of range, no
            root or a second root, a word that is its own parent, a cycle,
            or ``tokens``/``labels`` of another length.
    """
    parents = [int(p) for p in parents]
    size = len(parents)
    if size == 0:
        raise TreeFormatError(f"{where}: the tree is empty.")
    for name, value in (("tokens", tokens), ("labels", labels)):
        if value is not None and len(value) != size:
            raise TreeFormatError(
                f"{where}: {len(value)} {name} for {size} parent indices; "
                "expected one per word."
            )
    kids = [[] for _ in range(size)]
    roots = []
    for word, parent in enumerate(parents):
        if not 0 <= parent <= size:
            raise TreeFormatError(
                f"{where}: word {word + 1} has parent {parent}, out of range "
                f"[0, {size}] (1-based, 0 = root)."
            )
        if parent == word + 1:
            raise TreeFormatError(
                f"{where}: word {word + 1} is its own parent."
            )
        if parent == 0:
            roots.append(word)
        else:
            kids[parent - 1].append(word)
    if len(roots) != 1:
        raise TreeFormatError(
            f"{where}: {len(roots)} roots (words "
            f"{[r + 1 for r in roots][:5]}); expected exactly one word with "
            "parent 0."
        )
    order = []
    stack = [roots[0]]
    while stack:
        word = stack.pop()
        order.append(word)
        stack.extend(reversed(kids[word]))
    if len(order) != size:
        unreached = sorted(set(range(size)) - set(order))
        raise TreeFormatError(
            f"{where}: a cycle: words {[w + 1 for w in unreached][:5]} are "
            "not reachable from the root."
        )
    number = {word: node for node, word in enumerate(order)}
    return Tree(
        tuple(tuple(number[k] for k in kids[w]) for w in order),
        tuple(tokens[w] for w in order) if tokens is not None
        else (None,) * size,
        tuple(labels[w] for w in order) if labels is not None
        else (None,) * size,
        tuple(order),
    )


def to_bracketed(tree):
    """The PTB-bracket text of a tree with a label at every node (the
    inverse of ``parse_bracketed``)."""

    def write(node):
        inner = [tree.tokens[node]] if tree.tokens[node] is not None else []
        inner += [write(child) for child in tree.children[node]]
        return f"({tree.labels[node]} {' '.join(inner)})"

    return write(0)


class Vocabulary:
    """Word ids: 0 = no word (and padding), 1 = unknown, then ``words``.

    Args:
        words: the known words, in id order (from 2).
        key: how a token is looked up, e.g. ``glove_key``; default the token
            itself.
    """

    def __init__(self, words, key=None):
        self.words = list(words)
        self.key = key
        self.index = {w: i + 2 for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("`words` holds a word twice.")

    def __len__(self):
        return len(self.words) + 2

    def id(self, token):
        if token is None:
            return NO_WORD
        if self.key is not None:
            token = self.key(token)
        return self.index.get(token, UNKNOWN)

    @classmethod
    def from_trees(cls, trees, min_count=1, key=None):
        """The words of ``trees`` seen at least ``min_count`` times, most
        frequent first (ties in order of appearance)."""
        counts = {}
        for tree in trees:
            for token in tree.tokens:
                if token is not None:
                    token = key(token) if key is not None else token
                    counts[token] = counts.get(token, 0) + 1
        words = sorted(counts, key=lambda w: -counts[w])
        return cls([w for w in words if counts[w] >= min_count], key=key)


def glove_key(token):
    """GloVe 6B's spelling of a PTB token: brackets unescaped, ``\\/`` and
    ``\\*`` unescaped, lower case."""
    token = PTB_ESCAPES.get(token, token)
    return token.replace("\\/", "/").replace("\\*", "*").lower()


def encode(trees, vocabulary, max_children=None, max_nodes=None):
    """A batch of trees as padded arrays (the module docstring's layout).

    Args:
        trees: a list of ``Tree``.
        vocabulary: a ``Vocabulary`` (or anything with ``id(token)``).
        max_children: ``K``; default the largest arity in the batch.
        max_nodes: ``N``; default the largest tree in the batch.

    Returns:
        ``(inputs, labels)``: ``inputs`` is a dict of ``tokens``,
        ``children`` and ``levels``; ``labels`` int32 ``(B, N)``.

    Raises:
        ValueError: no trees, or a tree larger than ``max_nodes`` or with
            more children than ``max_children``.
    """
    trees = list(trees)
    if not trees:
        raise ValueError("`trees` is empty; expected at least one Tree.")
    arity = max(max((len(k) for k in t.children), default=0) for t in trees)
    largest = max(t.size for t in trees)
    if max_children is None:
        max_children = max(arity, 1)
    if max_nodes is None:
        max_nodes = largest
    for index, tree in enumerate(trees):
        if tree.size > max_nodes:
            raise ValueError(
                f"Tree {index} has {tree.size} nodes; expected at most "
                f"max_nodes={max_nodes}."
            )
        wide = max((len(k) for k in tree.children), default=0)
        if wide > max_children:
            raise ValueError(
                f"Tree {index} has a node with {wide} children; expected at "
                f"most max_children={max_children}."
            )
    batch = len(trees)
    tokens = np.zeros((batch, max_nodes), np.int32)
    children = np.full((batch, max_nodes, max_children), -1, np.int32)
    levels = np.full((batch, max_nodes), -1, np.int32)
    labels = np.full((batch, max_nodes), -1, np.int32)
    for b, tree in enumerate(trees):
        n = tree.size
        tokens[b, :n] = [vocabulary.id(t) for t in tree.tokens]
        levels[b, :n] = tree.levels()
        labels[b, :n] = [-1 if y is None else y for y in tree.labels]
        for node, kids in enumerate(tree.children):
            children[b, node, :len(kids)] = kids
    inputs = {"tokens": tokens, "children": children, "levels": levels}
    return inputs, labels
