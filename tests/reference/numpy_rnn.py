"""Float64 NumPy reference: Elman, LSTM, GRU, peephole LSTM and IndRNN
networks from their equations.

Written from the papers, independently of kerasrnn: each gate is its own
expression, time is a plain Python loop, everything is float64. It is the
oracle of ``tests/test_numpy_reference.py``.

Conventions (the Keras weight layout):

* a cell has ``W (F, G*H)``, ``U (H, G*H)`` and a bias; column block ``k`` of
  each belongs to gate ``k``, in the order ``i, f, c, o`` (LSTM) and
  ``z, r, h`` (GRU); the GRU with ``reset_after=True`` has a ``(2, 3H)`` bias
  (row 0 for the input, row 1 for the recurrent term);
* sequences are ``(B, T, F)``; a batch of variable-length sequences is
  right-padded: row ``b`` holds ``lengths[b]`` real steps, then padding;
* a step mask ``(B, T)`` is True at real steps. At a masked step the states
  carry over unchanged and the output is the previous output (zeros before
  the first step) or zeros.
"""

import numpy as np


def sigmoid(x):
    """σ(x) = 1 / (1 + e^{-x})."""
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid(x):
    """Piecewise-linear σ: clip(x / 6 + 1/2, 0, 1)."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0.0)


def softsign(x):
    """x / (1 + |x|)."""
    return x / (1.0 + np.abs(x))


def linear(x):
    """The identity."""
    return x


ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "relu": relu,
    "softsign": softsign,
    "linear": linear,
}


def blocks(array, count):
    """Splits the last axis into ``count`` equal gate blocks."""
    return np.split(array, count, axis=-1)


def masked(h, recurrent_mask):
    """``h ⊙ m`` (recurrent dropout on the input of ``U``), or ``h``."""
    return h if recurrent_mask is None else h * recurrent_mask


def elman_step(x, h, W, U, b=None, g=np.tanh, recurrent_mask=None):
    """Elman (1990): ``h_t = g(x_t W + h_{t-1} U + b)``."""
    z = x @ W + masked(h, recurrent_mask) @ U
    if b is not None:
        z = z + b
    return g(z)


def lstm_step(
    x, h, c, W, U, b=None, g=np.tanh, sigma=sigmoid, recurrent_mask=None
):
    """LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers 2000)::

        i_t = σ(x_t W_i + h_{t-1} U_i + b_i)
        f_t = σ(x_t W_f + h_{t-1} U_f + b_f)
        g_t = g(x_t W_c + h_{t-1} U_c + b_c)
        o_t = σ(x_t W_o + h_{t-1} U_o + b_o)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ g(c_t)

    Returns ``(h_t, c_t)``.
    """
    W_i, W_f, W_c, W_o = blocks(W, 4)
    U_i, U_f, U_c, U_o = blocks(U, 4)
    if b is None:
        b = np.zeros(W.shape[-1])
    b_i, b_f, b_c, b_o = blocks(b, 4)
    h_in = masked(h, recurrent_mask)
    i = sigma(x @ W_i + h_in @ U_i + b_i)
    f = sigma(x @ W_f + h_in @ U_f + b_f)
    candidate = g(x @ W_c + h_in @ U_c + b_c)
    o = sigma(x @ W_o + h_in @ U_o + b_o)
    c_new = f * c + i * candidate
    return o * g(c_new), c_new


def peephole_lstm_step(
    x, h, c, W, U, P, b=None, g=np.tanh, sigma=sigmoid, recurrent_mask=None
):
    """LSTM with peephole connections (Gers & Schmidhuber 2000)::

        i_t = σ(x_t W_i + h_{t-1} U_i + p_i ⊙ c_{t-1} + b_i)
        f_t = σ(x_t W_f + h_{t-1} U_f + p_f ⊙ c_{t-1} + b_f)
        g_t = g(x_t W_c + h_{t-1} U_c + b_c)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        o_t = σ(x_t W_o + h_{t-1} U_o + p_o ⊙ c_t + b_o)
        h_t = o_t ⊙ g(c_t)

    ``P = [p_i, p_f, p_o]`` (3H,). Returns ``(h_t, c_t)``.
    """
    W_i, W_f, W_c, W_o = blocks(W, 4)
    U_i, U_f, U_c, U_o = blocks(U, 4)
    p_i, p_f, p_o = blocks(P, 3)
    if b is None:
        b = np.zeros(W.shape[-1])
    b_i, b_f, b_c, b_o = blocks(b, 4)
    h_in = masked(h, recurrent_mask)
    i = sigma(x @ W_i + h_in @ U_i + p_i * c + b_i)
    f = sigma(x @ W_f + h_in @ U_f + p_f * c + b_f)
    candidate = g(x @ W_c + h_in @ U_c + b_c)
    c_new = f * c + i * candidate
    o = sigma(x @ W_o + h_in @ U_o + p_o * c_new + b_o)
    return o * g(c_new), c_new


def indrnn_step(x, h, W, u, b=None, g=relu, recurrent_mask=None):
    """IndRNN (Li et al. 2018): ``h_t = g(x_t W + u ⊙ h_{t-1} + b)``, each
    unit its own recurrent weight ``u`` (H,)."""
    a = x @ W + u * masked(h, recurrent_mask)
    if b is not None:
        a = a + b
    return g(a)


def gru_step(
    x,
    h,
    W,
    U,
    b=None,
    g=np.tanh,
    sigma=sigmoid,
    reset_after=True,
    recurrent_mask=None,
):
    """GRU (Cho et al. 2014)::

        z_t = σ(x_t W_z + b_z + h_{t-1} U_z + b'_z)
        r_t = σ(x_t W_r + b_r + h_{t-1} U_r + b'_r)
        reset_after=True:  n_t = g(x_t W_h + b_h + r_t ⊙ (h_{t-1} U_h + b'_h))
        reset_after=False: n_t = g(x_t W_h + b_h + (r_t ⊙ h_{t-1}) U_h)
        h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ n_t

    ``b`` is ``(2, 3H)`` (rows ``b``, ``b'``) with ``reset_after=True``, else
    ``(3H,)`` with no ``b'``. Recurrent dropout masks ``h_{t-1}`` inside the
    matmuls with ``U`` only, not in the last line.
    """
    W_z, W_r, W_h = blocks(W, 3)
    U_z, U_r, U_h = blocks(U, 3)
    if b is None:
        b = np.zeros((2, W.shape[-1]) if reset_after else W.shape[-1])
    if reset_after:
        b_z, b_r, b_h = blocks(b[0], 3)
        b2_z, b2_r, b2_h = blocks(b[1], 3)
    else:
        b_z, b_r, b_h = blocks(b, 3)
        b2_z = b2_r = 0.0
    h_in = masked(h, recurrent_mask)
    z = sigma(x @ W_z + b_z + h_in @ U_z + b2_z)
    r = sigma(x @ W_r + b_r + h_in @ U_r + b2_r)
    if reset_after:
        n = g(x @ W_h + b_h + r * (h_in @ U_h + b2_h))
    else:
        n = g(x @ W_h + b_h + (r * h_in) @ U_h)
    return z * h + (1.0 - z) * n


class Cell:
    """One cell: its kind, float64 parameters and activations.

    Args:
        kind: ``"elman"`` (or ``"simple_rnn"``), ``"lstm"``, ``"gru"``,
            ``"peephole_lstm"`` or ``"indrnn"``.
        W, U, b: the parameters (``b`` None without bias); ``U`` is
            ``(H,)`` for the IndRNN.
        P: the peephole LSTM's ``(3H,)`` peephole weights.
        activation, recurrent_activation: names in ``ACTIVATIONS``.
        reset_after: GRU reset placement.
    """

    def __init__(
        self,
        kind,
        W,
        U,
        b=None,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        P=None,
    ):
        kind = {"simple_rnn": "elman"}.get(kind, kind)
        if kind not in ("elman", "lstm", "gru", "peephole_lstm", "indrnn"):
            raise ValueError(f"Unknown cell kind {kind!r}.")
        self.kind = kind
        self.P = None if P is None else np.asarray(P, np.float64)
        self.W = np.asarray(W, np.float64)
        self.U = np.asarray(U, np.float64)
        self.b = None if b is None else np.asarray(b, np.float64)
        self.g = ACTIVATIONS[activation]
        self.sigma = ACTIVATIONS[recurrent_activation]
        self.reset_after = reset_after

    @property
    def units(self):
        return self.U.shape[0]

    @property
    def num_states(self):
        """2 for the LSTMs (``h``, ``c``), else 1 (``h``)."""
        return 2 if self.kind in ("lstm", "peephole_lstm") else 1

    def zero_state(self, batch_size):
        return [np.zeros((batch_size, self.units))] * self.num_states

    def step(self, x, states, recurrent_mask=None):
        """One step: returns ``(output, new_states)``; the output is h_t."""
        if self.kind == "elman":
            h = elman_step(
                x, states[0], self.W, self.U, self.b, self.g, recurrent_mask
            )
            return h, [h]
        if self.kind == "lstm":
            h, c = lstm_step(
                x, states[0], states[1], self.W, self.U, self.b, self.g,
                self.sigma, recurrent_mask,
            )
            return h, [h, c]
        if self.kind == "peephole_lstm":
            h, c = peephole_lstm_step(
                x, states[0], states[1], self.W, self.U, self.P, self.b,
                self.g, self.sigma, recurrent_mask,
            )
            return h, [h, c]
        if self.kind == "indrnn":
            h = indrnn_step(
                x, states[0], self.W, self.U, self.b, self.g, recurrent_mask
            )
            return h, [h]
        h = gru_step(
            x, states[0], self.W, self.U, self.b, self.g, self.sigma,
            self.reset_after, recurrent_mask,
        )
        return h, [h]


def lengths_to_mask(lengths, steps):
    """Right-padding mask: ``mask[b, t] = t < lengths[b]``."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def flip_valid(x, lengths):
    """Reverses ``x[b, :lengths[b]]`` in time; the padding stays in place."""
    flipped = np.array(x, copy=True)
    for row, length in enumerate(lengths):
        flipped[row, :length] = x[row, :length][::-1]
    return flipped


def run(
    cell,
    x,
    mask=None,
    initial_state=None,
    go_backwards=False,
    zero_output_for_mask=False,
    input_mask=None,
    recurrent_mask=None,
):
    """Runs ``cell`` over the time axis of ``x (B, T, F)``::

        s = initial_state (zeros by default);  y = 0
        for t in 0..T-1 (T-1..0 with go_backwards, padding included):
            y', s' = step(x_t ⊙ input_mask, s, recurrent_mask)
            s = s'  where mask[b, t] else s
            y = y'  where mask[b, t] else (0 if zero_output_for_mask else y)
            outputs[t'] = y   (t' = the step's position in processing order)

    ``input_mask (B, F)`` and ``recurrent_mask (B, H)`` are variational
    dropout masks: the same at every step (Gal & Ghahramani 2016).

    Returns ``(outputs (B, T, H), last_output (B, H), final_states)``;
    ``last_output`` is ``y`` after the last step.
    """
    x = np.asarray(x, np.float64)
    batch_size, steps = x.shape[:2]
    if mask is None:
        mask = np.ones((batch_size, steps), bool)
    if go_backwards:
        x, mask = x[:, ::-1], mask[:, ::-1]
    if input_mask is not None:
        x = x * input_mask[:, None, :]
    if initial_state is None:
        states = cell.zero_state(batch_size)
    else:
        states = [np.asarray(s, np.float64) for s in initial_state]
    output = np.zeros((batch_size, cell.units))
    outputs = []
    for t in range(steps):
        real = mask[:, t][:, None]
        new_output, new_states = cell.step(x[:, t], states, recurrent_mask)
        states = [np.where(real, new, old)
                  for new, old in zip(new_states, states)]
        fallback = 0.0 if zero_output_for_mask else output
        output = np.where(real, new_output, fallback)
        outputs.append(output)
    return np.stack(outputs, axis=1), output, states


def merge(merge_mode, forward, backward):
    """Keras merge modes; None gives the list of both."""
    if merge_mode == "concat":
        return np.concatenate([forward, backward], axis=-1)
    if merge_mode == "sum":
        return forward + backward
    if merge_mode == "mul":
        return forward * backward
    if merge_mode == "ave":
        return (forward + backward) / 2.0
    if merge_mode is None:
        return [forward, backward]
    raise ValueError(f"Unknown merge_mode {merge_mode!r}.")


def last_valid(sequences, lengths):
    """``sequences[b, lengths[b] - 1]`` (zeros where ``lengths[b] = 0``)."""
    picked = np.zeros((sequences.shape[0],) + sequences.shape[2:])
    for row, length in enumerate(lengths):
        if length > 0:
            picked[row] = sequences[row, length - 1]
    return picked


def bidirectional(
    forward, backward, x, lengths=None, merge_mode="concat",
    initial_state=None,
):
    """Forward and backward passes over right-padded sequences.

    The backward cell reads each sequence's real steps in reverse
    (``flip_valid``), its outputs are flipped back, so position ``t`` merges
    the forward state after ``x_0..x_t`` with the backward state after
    ``x_{L-1}..x_t``. Padding positions output zeros in both directions.

    Args:
        initial_state: forward states then backward states, or None.

    Returns:
        ``(sequence_output, last_output, forward_states, backward_states)``
        with ``last_output`` merging the forward output at the last real step
        and the backward output at step 0.
    """
    batch_size, steps = x.shape[:2]
    if lengths is None:
        lengths = np.full(batch_size, steps)
    mask = lengths_to_mask(lengths, steps)
    forward_init = backward_init = None
    if initial_state is not None:
        count = forward.num_states
        forward_init = initial_state[:count]
        backward_init = initial_state[count:]
    forward_seq, _, forward_states = run(
        forward, x, mask, forward_init, zero_output_for_mask=True
    )
    backward_seq, _, backward_states = run(
        backward, flip_valid(x, lengths), mask, backward_init,
        zero_output_for_mask=True,
    )
    backward_seq = flip_valid(backward_seq, lengths)
    sequence_output = merge(merge_mode, forward_seq, backward_seq)
    last_output = merge(
        merge_mode, last_valid(forward_seq, lengths), backward_seq[:, 0]
    )
    return sequence_output, last_output, forward_states, backward_states


def stack(
    layers,
    x,
    lengths=None,
    merge_mode="concat",
    residual=False,
    initial_states=None,
    dropout_masks=None,
):
    """A deep RNN with PyTorch stacking semantics::

        y_0 = x
        o_k = Layer_k(y_k) (+ y_k when residual and k >= 1)
        y_{k+1} = o_k ⊙ D_k          (inter-layer dropout, k < L - 1)

    ``Layer_k`` is one direction (``layers[k] = (cell,)``: padding repeats
    the last output, as a Keras RNN) or both (``(forward, backward)``, see
    ``bidirectional``).

    Args:
        initial_states: per layer, its states (forward then backward), or
            None for zeros.
        dropout_masks: per layer but the last, a multiplicative mask of
            ``o_k``'s shape (already scaled by 1 / (1 - rate)), or None.

    Returns:
        ``(o_{L-1} (B, T, D*H), last_output, final_states)``.
        ``last_output`` is the last layer's last output (see ``run`` and
        ``bidirectional``) plus, with ``residual``, ``y_{L-1}`` at the last
        real step. The final states are one flat list, layer-major, forward
        before backward, ``[h, c]`` within.
    """
    batch_size, steps = x.shape[:2]
    if lengths is None:
        lengths = np.full(batch_size, steps)
    mask = lengths_to_mask(lengths, steps)
    inputs = np.asarray(x, np.float64)
    final_states = []
    for index, cells in enumerate(layers):
        init = None if initial_states is None else initial_states[index]
        if len(cells) == 1:
            output, last_output, states = run(cells[0], inputs, mask, init)
        else:
            output, last_output, forward_states, backward_states = (
                bidirectional(
                    cells[0], cells[1], inputs, lengths, merge_mode, init
                )
            )
            states = forward_states + backward_states
        final_states += states
        if residual and index > 0:
            output = output + inputs
            last_output = last_output + last_valid(inputs, lengths)
        if dropout_masks is not None and index < len(layers) - 1:
            output = output * dropout_masks[index]
        inputs = output
    return inputs, last_output, final_states


def pool(x, lengths, mode):
    """Pools ``x (B, T, F)`` over the real steps ``0..lengths[b]-1``::

        last: x[b, L_b - 1]    mean: Σ_t x[b, t] / L_b    max: max_t x[b, t]

    A row of length 0 pools to zeros.
    """
    pooled = np.zeros((x.shape[0], x.shape[2]))
    for row, length in enumerate(lengths):
        if length == 0:
            continue
        valid = np.asarray(x[row, :length], np.float64)
        if mode == "last":
            pooled[row] = valid[-1]
        elif mode == "mean":
            pooled[row] = valid.sum(axis=0) / length
        elif mode == "max":
            pooled[row] = valid.max(axis=0)
        else:
            raise ValueError(f"Unknown pooling mode {mode!r}.")
    return pooled
