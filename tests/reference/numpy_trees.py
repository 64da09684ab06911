"""Float64 NumPy reference: the tree cells as a per-node recursion.

Written from the equations (the seed's recursive network; Tai, Socher &
Manning 2015, §3.1-3.2), independently of ``kerasrnn.trees``: every gate is
its own expression with its own weight slice, each node is visited by a
plain recursive Python function, everything is float64. The oracle of
``tests/test_trees_cells.py``.

A tree is given by ``children`` (``children[n]``: node n's children, left
to right) and ``x`` (``(nodes, F)``: each node's input); the result is
``h`` (and ``c``) of every node, ``(nodes, H)``. Weights use the Keras
layout of the kerasrnn cells: ``W (F, G*H)``, ``b (G*H,)`` with gate
blocks ``i, f, c, o``, and

* recursive: ``U`` stacked by child position ``[U_1; ...; U_K]`` or one
  ``U_c (H, H)``;
* N-ary Tree-LSTM: ``U (K*H, (K+3)*H)``, row block l = child position l,
  column blocks ``i, f_1..f_K, c, o``;
* Child-Sum Tree-LSTM: ``U (H, 4H)``, blocks ``i, f, c, o``.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _block(matrix, index, units):
    return matrix[..., index * units:(index + 1) * units]


def _run(children, visit, size):
    out = [None] * size

    def walk(node):
        kids = [walk(k) for k in children[node]]
        out[node] = visit(node, kids)
        return out[node]

    walk(0)
    return out


def recursive(children, x, W, U, b, shared):
    """h_n = tanh(x_n W + Σ_k h_k U_k + b) (positional) or
    tanh(x_n W + Σ_k h_k U_c + b) (shared)."""
    H = b.shape[0]

    def visit(node, kids):
        z = x[node] @ W + b
        for position, h_k in enumerate(kids):
            U_k = U if shared else U[position * H:(position + 1) * H]
            z = z + h_k @ U_k
        return np.tanh(z)

    return np.stack(_run(children, visit, len(children)))


def nary_tree_lstm(children, x, W, U, b, K):
    """The N-ary Tree-LSTM; missing child positions hold h = c = 0."""
    H = b.shape[0] // 4
    W_i, W_f, W_c, W_o = (_block(W, g, H) for g in range(4))
    b_i, b_f, b_c, b_o = (_block(b, g, H) for g in range(4))

    def U_of(position, column):
        return U[position * H:(position + 1) * H, column * H:(column + 1) * H]

    def visit(node, kids):
        xn = x[node]
        hs = [h for h, _ in kids]
        i = xn @ W_i + b_i
        o = xn @ W_o + b_o
        u = xn @ W_c + b_c
        for pos, h_l in enumerate(hs):
            i = i + h_l @ U_of(pos, 0)
            u = u + h_l @ U_of(pos, K + 1)
            o = o + h_l @ U_of(pos, K + 2)
        i, u, o = sigmoid(i), np.tanh(u), sigmoid(o)
        c = i * u
        for k, (_, c_k) in enumerate(kids):
            f_k = xn @ W_f + b_f
            for pos, h_l in enumerate(hs):
                f_k = f_k + h_l @ U_of(pos, 1 + k)
            c = c + sigmoid(f_k) * c_k
        return o * np.tanh(c), c

    states = _run(children, visit, len(children))
    return (np.stack([s[0] for s in states]),
            np.stack([s[1] for s in states]))


def child_sum_tree_lstm(children, x, W, U, b):
    """The Child-Sum Tree-LSTM."""
    H = b.shape[0] // 4
    W_i, W_f, W_c, W_o = (_block(W, g, H) for g in range(4))
    U_i, U_f, U_c, U_o = (_block(U, g, H) for g in range(4))
    b_i, b_f, b_c, b_o = (_block(b, g, H) for g in range(4))

    def visit(node, kids):
        xn = x[node]
        h_sum = np.zeros(H)
        for h_k, _ in kids:
            h_sum = h_sum + h_k
        i = sigmoid(xn @ W_i + h_sum @ U_i + b_i)
        u = np.tanh(xn @ W_c + h_sum @ U_c + b_c)
        o = sigmoid(xn @ W_o + h_sum @ U_o + b_o)
        c = i * u
        for h_k, c_k in kids:
            c = c + sigmoid(xn @ W_f + h_k @ U_f + b_f) * c_k
        return o * np.tanh(c), c

    states = _run(children, visit, len(children))
    return (np.stack([s[0] for s in states]),
            np.stack([s[1] for s in states]))
