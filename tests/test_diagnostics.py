"""kerasrnn.diagnostics: gradient flow, long-range tasks, plots, lab, callback.

The gradient-flow oracle is independent of TensorFlow: the float64 NumPy
cells of ``reference/numpy_rnn.py`` run the same loops with a perturbation
``δ e_j`` added to state ``s`` at step ``k``, and central differences of the
loss give ``∂L/∂s_k[j]``. A linear Elman cell with ``U = a·I`` checks the
closed form ``‖∂L/∂h_k‖ = a^(T-1-k) ‖∂L/∂h_{T-1}‖``.
"""

import keras
import numpy as np
import pytest
from keras import ops
from matplotlib.image import imread
from reference import numpy_rnn as ref

import kerasrnn
from kerasrnn import diagnostics
from kerasrnn.diagnostics import lab
from kerasrnn.diagnostics import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KINDS = {
    "elman": kerasrnn.SimpleRNNCell,
    "lstm": kerasrnn.LSTMCell,
    "gru": kerasrnn.GRUCell,
}


def randomize(layer, seed=0, scale=0.6):
    """Random weights everywhere (zero biases would hide bias bugs)."""
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.normal(0, scale, w.shape).astype("float32")
         for w in layer.get_weights()]
    )


def reference_cell(cell):
    W, U, b = (np.float64(w) for w in cell.get_weights())
    kind = {"SimpleRNNCell": "elman", "LSTMCell": "lstm",
            "GRUCell": "gru"}[type(cell).__name__]
    return ref.Cell(kind, W, U, b, reset_after=getattr(cell, "reset_after",
                                                      True))


def reference_loop(cell, x, perturb=None):
    """Runs a NumPy cell over ``x (B, T, F)``; ``perturb(k, states)`` may
    change the states computed at step k. Returns ``(outputs, states)``."""
    states = cell.zero_state(x.shape[0])
    outputs = []
    for k in range(x.shape[1]):
        _, states = cell.step(x[:, k], states)
        if perturb is not None:
            states = perturb(k, states)
        outputs.append(states[0])
    return np.stack(outputs, axis=1), states


def central_difference(loss_of_perturbation, shape, delta=1e-6):
    """∂L/∂ε for every entry of ε (shape ``(B, H)``), float64."""
    gradient = np.zeros(shape)
    for index in np.ndindex(*shape):
        bump = np.zeros(shape)
        bump[index] = delta
        gradient[index] = (
            loss_of_perturbation(bump) - loss_of_perturbation(-bump)
        ) / (2 * delta)
    return gradient


def mse_sum(prediction, y):
    """``Σ_b mean_j (p - y)²``: the L of gradient_flow for loss="mse"."""
    return ((prediction - y) ** 2).mean(axis=-1).sum()


def data(batch=2, steps=5, features=2, units=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    y = rng.normal(size=(batch, units)).astype("float32")
    return x, y


# Gradient values against finite differences --------------------------------


@pytest.mark.parametrize(
    "kind, options",
    [
        ("elman", {}),
        ("lstm", {}),
        ("gru", {"reset_after": True}),
        ("gru", {"reset_after": False}),
    ],
)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_single_loop_matches_finite_differences(kind, options, go_backwards):
    x, y = data()
    layer = kerasrnn.RNN(KINDS[kind](3, **options), go_backwards=go_backwards)
    layer(x)
    randomize(layer)
    flow = diagnostics.gradient_flow(layer, x, y, loss="mse")
    track = flow.tracks[0]
    assert flow.names == [layer.name] and track.go_backwards == go_backwards
    np.testing.assert_allclose(flow.outputs, layer(x), atol=1e-6)

    cell = reference_cell(layer.cell)
    x64 = np.float64(x)[:, ::-1] if go_backwards else np.float64(x)
    names = ("h", "c") if kind == "lstm" else ("h",)
    for k in range(x.shape[1]):
        for s, name in enumerate(names):
            def loss(bump, k=k, s=s):
                def perturb(step, states):
                    if step == k:
                        states = list(states)
                        states[s] = states[s] + bump
                    return states
                outputs, _ = reference_loop(cell, x64, perturb)
                return mse_sum(outputs[:, -1], y)

            expected = central_difference(loss, (2, 3))
            np.testing.assert_allclose(
                track.gradients[name][:, k], expected, rtol=1e-3, atol=1e-6
            )


def test_stack_matches_finite_differences():
    """Both layers of a 2-layer LSTM stack, perturbing layer 0 and 1."""
    x, y = data(steps=4)
    layer = kerasrnn.LSTM(3, num_layers=2, name="lstm")
    layer(x)
    randomize(layer, seed=2, scale=0.5)
    flow = diagnostics.gradient_flow(layer, x, y, loss="mse")
    assert flow.names == ["lstm/layer_0", "lstm/layer_1"]
    np.testing.assert_allclose(flow.outputs, layer(x), atol=1e-6)
    cells = [reference_cell(sub.cell) for sub in layer.recurrent_layers]

    def forward(perturb_layer, perturb):
        inputs = np.float64(x)
        for index, cell in enumerate(cells):
            inputs, _ = reference_loop(
                cell, inputs, perturb if index == perturb_layer else None
            )
        return mse_sum(inputs[:, -1], y)

    for index, name in enumerate(flow.names):
        for k in (0, 2):
            def loss(bump, index=index, k=k):
                def perturb(step, states):
                    if step == k:
                        return [states[0] + bump, states[1]]
                    return states
                return forward(index, perturb)

            np.testing.assert_allclose(
                flow[name].gradients["h"][:, k],
                central_difference(loss, (2, 3)),
                rtol=1e-3, atol=1e-6,
            )


def test_bidirectional_matches_finite_differences():
    x, y = data(steps=4)
    layer = kerasrnn.Bidirectional(
        kerasrnn.RNN(kerasrnn.GRUCell(3)), merge_mode="sum"
    )
    layer(x)
    randomize(layer, seed=3)
    flow = diagnostics.gradient_flow(layer, x, y, loss="mse")
    forward_name, backward_name = flow.names
    assert flow[backward_name].go_backwards
    forward_cell = reference_cell(layer.forward_layer.cell)
    backward_cell = reference_cell(layer.backward_layer.cell)
    x64 = np.float64(x)

    for name, direction in ((forward_name, 0), (backward_name, 1)):
        for k in (0, 3):
            def loss(bump, direction=direction, k=k):
                def perturb(step, states):
                    return [states[0] + bump] if step == k else states
                forward, _ = reference_loop(
                    forward_cell, x64, perturb if direction == 0 else None
                )
                backward, _ = reference_loop(
                    backward_cell, x64[:, ::-1],
                    perturb if direction == 1 else None,
                )
                return mse_sum(forward[:, -1] + backward[:, -1], y)

            np.testing.assert_allclose(
                flow[name].gradients["h"][:, k],
                central_difference(loss, (2, 3)),
                rtol=1e-3, atol=1e-6,
            )


# The probe reproduces the layers' own outputs -------------------------------


def test_probe_reproduces_deep_bidirectional_masked_model():
    tokens = np.array([[3, 1, 4, 1, 5, 0, 0], [2, 7, 1, 8, 2, 8, 1]])
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(10, 4, mask_zero=True),
            kerasrnn.GRU(5, num_layers=2, bidirectional=True, residual=True,
                         return_sequences=True),
            kerasrnn.Bidirectional(kerasrnn.LSTM(3)),
            keras.layers.Dense(2),
        ]
    )
    model(tokens)
    y = np.array([0, 1])
    flow = diagnostics.gradient_flow(
        model, tokens, y, loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True
        ),
    )
    np.testing.assert_allclose(flow.outputs, model(tokens), atol=1e-6)
    assert len(flow.tracks) == 6
    assert flow.finite
    # The first sequence has 5 real steps: padding steps carry the state, so
    # a perturbation there has no effect on the forward loops.
    first = flow.tracks[0]
    assert first.name.endswith("layer_0_forward")
    assert np.all(first.norms()[0, 5:] == 0)
    assert np.all(first.norms()[0, :5] > 0)


def test_functional_model_with_initial_state_and_return_state():
    inputs = keras.Input((6, 2))
    state = keras.Input((4,))
    output, final = kerasrnn.RNN(
        kerasrnn.SimpleRNNCell(4), return_state=True, name="rnn"
    )(inputs, initial_state=[state])
    model = keras.Model(
        [inputs, state], keras.layers.Dense(1)(output + final)
    )
    x = [np.random.default_rng(0).normal(size=(3, 6, 2)),
         np.ones((3, 4))]
    model.compile(loss="mse")
    flow = diagnostics.gradient_flow(model, x, np.zeros((3, 1)))
    np.testing.assert_allclose(flow.outputs, model(x), atol=1e-6)
    assert flow.names == ["rnn"]
    assert flow["rnn"].mean_norms().shape == (6,)


# The closed form of a linear Elman cell ------------------------------------


@pytest.mark.parametrize("a", [0.5, 0.9, 1.1])
def test_linear_elman_gradient_scales_as_a_to_the_distance(a):
    steps, units = 30, 4
    layer = kerasrnn.RNN(
        kerasrnn.SimpleRNNCell(
            units,
            activation="linear",
            use_bias=False,
            recurrent_initializer=keras.initializers.Identity(gain=a),
        )
    )
    x = np.random.default_rng(0).normal(size=(2, steps, 3))
    layer(x)
    # L = Σ_b Σ_j h_{T-1}: ∂L/∂h_{T-1} = 1, so ‖∂L/∂h_k‖ = √H a^(T-1-k).
    flow = diagnostics.gradient_flow(
        layer, x, None, loss=lambda y_true, y_pred: ops.sum(y_pred, axis=-1)
    )
    track = flow.tracks[0]
    expected = np.sqrt(units) * a ** track.distance.astype("float64")
    np.testing.assert_allclose(track.mean_norms(), expected, rtol=1e-4)
    assert diagnostics.spectral_radius(layer) == {
        layer.name: {"h": pytest.approx(a)}
    }


def test_spectral_radius_names_every_gate_of_every_loop():
    model = keras.Sequential(
        [keras.Input((None, 2)), kerasrnn.LSTM(4, num_layers=2, name="lstm"),
         keras.layers.Dense(1)]
    )
    radii = diagnostics.spectral_radius(model)
    assert list(radii) == ["lstm/layer_0", "lstm/layer_1"]
    assert list(radii["lstm/layer_0"]) == ["i", "f", "c", "o"]
    kernel = model.layers[0].recurrent_layers[0].cell.recurrent_kernel
    forget = np.asarray(kernel)[:, 4:8]
    assert radii["lstm/layer_0"]["f"] == pytest.approx(
        max(abs(np.linalg.eigvals(forget))), rel=1e-6
    )


# Task generators ------------------------------------------------------------


def test_adding_problem_targets():
    x, y = diagnostics.adding_problem(11, 500, seed=0)
    assert x.shape == (500, 11, 2) and y.shape == (500, 1)
    assert x.dtype == y.dtype == np.float32
    markers = x[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :5].sum(axis=1) == 1)   # one in [0, T//2)
    assert np.all(markers[:, 5:].sum(axis=1) == 1)   # one in [T//2, T)
    values = x[..., 0]
    assert values.min() >= 0 and values.max() < 1
    np.testing.assert_allclose(
        y[:, 0], (values * markers).sum(axis=1), rtol=1e-6
    )
    again, _ = diagnostics.adding_problem(11, 500, seed=0)
    np.testing.assert_array_equal(x, again)


def test_adding_baseline_is_the_variance_of_the_target():
    _, y = diagnostics.adding_problem(4, 200_000, seed=1)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.003)
    assert diagnostics.ADDING_BASELINE_MSE == pytest.approx(0.1667, abs=1e-4)


def test_copy_memory_targets():
    x, y = diagnostics.copy_memory(7, 50, copy_length=3, alphabet=4, seed=0)
    assert x.shape == y.shape == (50, 7 + 6)
    symbols = x[:, :3]
    assert symbols.min() >= 1 and symbols.max() <= 4
    np.testing.assert_array_equal(x[:, 3:9], 0)          # T - 1 blanks
    np.testing.assert_array_equal(x[:, 9], 5)            # the delimiter
    np.testing.assert_array_equal(x[:, 10:], 0)
    np.testing.assert_array_equal(y[:, :10], 0)          # T + K blanks
    np.testing.assert_array_equal(y[:, 10:], symbols)    # then the copy
    assert diagnostics.copy_memory_baseline(7, 3, 4) == pytest.approx(
        3 * np.log(4) / 13
    )


@pytest.mark.parametrize("length", [0, -3, 1, 2.5, True])
def test_task_lengths_are_checked(length):
    with pytest.raises(ValueError, match="length"):
        diagnostics.adding_problem(length, 4)
    if length != 1:
        with pytest.raises(ValueError, match="length"):
            diagnostics.copy_memory(length, 4)


# Plots ----------------------------------------------------------------------


def assert_png(path, width_at_least=300):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000
    height, width = imread(path).shape[:2]
    assert width >= width_at_least and height >= 200


def test_plots_write_valid_pngs(tmp_path):
    norms = {
        "elman": 0.9 ** np.arange(40)[::-1],
        "lstm": np.full(40, 0.5),
        "gru": np.r_[np.inf, 0.0, np.full(38, 0.3)],   # left out, counted
    }
    path = plots.plot_gradient_flow(norms, tmp_path / "flow.png")
    assert_png(path)
    two = plots.plot_gradient_flow(
        {"at init": norms, "trained": norms}, tmp_path / "sub" / "two.png",
        title="two panels",
    )
    assert_png(two, width_at_least=800)

    grid = {"elman": ([50, 100], [0.01, 0.16]),
            "lstm": ([50, 100], [1e-4, 2e-3])}
    assert_png(plots.plot_mse_vs_length(grid, tmp_path / "mse.png"))

    history = {"loss": [0.2, 0.1, 0.05], "val_loss": [0.19, 0.08, 0.04]}
    assert_png(plots.plot_history(history, tmp_path / "h1.png"))
    assert_png(
        plots.plot_history(
            {"lstm T=50": history, "gru T=50": history},
            tmp_path / "h2.png", steps_per_epoch=100, baseline=1 / 6,
            threshold=0.01,
        )
    )
    panels = {"T = 50": {"lstm": history}, "T = 100": {"gru": history}}
    assert_png(plots.plot_history(panels, tmp_path / "h3.png"),
               width_at_least=1000)


def test_plot_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        plots.plot_mse_vs_length({"a": ([1], [1])}, tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="empty"):
        plots.plot_gradient_flow({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="1-D"):
        plots.plot_gradient_flow({"a": np.ones((2, 2))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="accuracy"):
        plots.plot_history({"loss": [1.0]}, tmp_path / "x.png",
                           metric="accuracy")


# Bad input ------------------------------------------------------------------


def test_model_without_recurrent_layers_is_refused():
    model = keras.Sequential(
        [keras.Input((5, 2)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    with pytest.raises(ValueError, match="no kerasrnn recurrent layer"):
        diagnostics.gradient_flow(model, np.zeros((1, 5, 2)), np.zeros((1, 1)),
                                  loss="mse")
    with pytest.raises(ValueError, match="no kerasrnn recurrent layer"):
        diagnostics.spectral_radius(model)
    with pytest.raises(TypeError, match="keras.Model or a kerasrnn"):
        diagnostics.gradient_flow(keras.layers.Dense(1), None, None)


def test_missing_loss_unbuilt_model_and_bad_state_are_clear():
    model = keras.Sequential([kerasrnn.GRU(2), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="not built"):
        diagnostics.gradient_flow(model, None, None, loss="mse")
    x, y = data(units=1)
    model(x)
    with pytest.raises(ValueError, match="needs a loss"):
        diagnostics.gradient_flow(model, x, y)
    flow = diagnostics.gradient_flow(model, x, y, loss="mse")
    with pytest.raises(ValueError, match="state='c'"):
        flow.tracks[0].norms("c")
    with pytest.raises(KeyError, match="Available"):
        flow["nope"]


def test_non_finite_gradients_are_reported_not_raised():
    # A linear Elman cell with U = 10·I: ∂L/∂h_k = 10^(T-1-k) overflows
    # float32 (max ≈ 3.4e38) from distance 39 on.
    layer = kerasrnn.RNN(
        kerasrnn.SimpleRNNCell(
            2, activation="linear", use_bias=False,
            recurrent_initializer=keras.initializers.Identity(gain=10.0),
        )
    )
    x = np.full((1, 45, 1), 1e-3, dtype="float32")
    layer(x)
    with pytest.warns(RuntimeWarning, match="Non-finite gradient flow"):
        flow = diagnostics.gradient_flow(
            layer, x, None,
            loss=lambda y_true, y_pred: ops.sum(y_pred, axis=-1),
        )
    track = flow.tracks[0]
    assert not flow.finite
    np.testing.assert_array_equal(
        track.nonfinite_steps(), np.flatnonzero(track.distance >= 39)
    )
    assert np.all(np.isfinite(track.mean_norms()[track.distance < 38]))
    assert "non-finite" in flow.summary()


def test_lab_config_is_checked():
    with pytest.raises(ValueError, match="lengths"):
        lab.LabConfig(lengths=(0,))
    with pytest.raises(ValueError, match="cells"):
        lab.LabConfig(cells=("transformer",))
    with pytest.raises(ValueError, match="multiple of `eval_every`"):
        lab.LabConfig(steps=150, eval_every=100)


# Callback and lab (tiny budgets: plumbing only, no learning claims) ---------


def test_recorder_records_before_training_and_every_epoch():
    x, y = diagnostics.adding_problem(8, 16, seed=0)
    model = lab.build_model("lstm", 8, units=4)
    model.compile("adam", "mse")
    before = diagnostics.gradient_flow(model, x, y)
    recorder = diagnostics.GradientFlowRecorder(x, y, every=2,
                                                states=("h", "c"))
    model.fit(x, y, epochs=5, batch_size=8, verbose=0,
              callbacks=[recorder])
    # Before training, every 2nd epoch, and after the last one.
    assert [r["epoch"] for r in recorder.records] == [0, 2, 4, 5]
    first = recorder.records[0]["norms"][before.names[0]]
    np.testing.assert_allclose(first["h"], before.tracks[0].mean_norms(),
                               rtol=1e-5)
    assert first["c"].shape == (8,)
    last = recorder.records[-1]
    assert last["finite"] and last["loss"] > 0


def test_lab_runs_and_reports(capsys):
    config = lab.LabConfig(
        lengths=(4, 6), cells=("gru",), units=3, steps=4, eval_every=2,
        batch_size=8, eval_size=16, jit_compile=False, threshold=10.0,
    )
    runs = lab.run_lab(config)
    assert "gru T=4" in capsys.readouterr().out
    assert [(r.cell, r.length) for r in runs] == [("gru", 4), ("gru", 6)]
    for run in runs:
        # threshold 10 > any MSE here: solved at the first evaluation.
        assert run.solved and run.steps == 2
        assert run.mse == run.history["val_loss"][-1]
    table = lab.format_table(runs)
    assert table.count("| gru |") == 2 and "| yes |" in table
    lengths, mses = lab.mse_grid(runs)["gru"]
    np.testing.assert_array_equal(lengths, [4, 6])
    np.testing.assert_array_equal(mses, [run.mse for run in runs])


def test_adding_batches_are_fresh_each_epoch():
    batches = lab.AddingProblemBatches(5, 4, batches=2, seed=0)
    first = batches[0][0]
    np.testing.assert_array_equal(first, batches[0][0])
    batches.on_epoch_end()
    assert not np.array_equal(first, batches[0][0])


def test_a_loop_over_another_cell_is_refused_with_its_name():
    model = keras.Sequential([
        keras.Input((5, 2)), kerasrnn.RNN(keras.layers.GRUCell(3), name="k"),
        keras.layers.Dense(1)])
    x = np.zeros((2, 5, 2), "float32")
    with pytest.raises(TypeError, match="layer 'k' runs a GRUCell"):
        diagnostics.gradient_flow(model, x, np.zeros((2, 1), "float32"),
                                  loss="mse")
