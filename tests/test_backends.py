"""kerasrnn on each Keras backend: which loop runs, and each fast path
against the NumPy equations and against the generic loop (values and
gradients), models training with ``fit`` (float32 and mixed precision),
``.keras`` files moving between backends, and the clear errors of what
stays TensorFlow's.

The suite runs on the backend of ``KERAS_BACKEND`` (CI runs it on all three,
``make test``): TensorFlow's fused loop, JAX's compiled ``lax.scan``, torch's
fused ``lstm``/``gru``/``rnn_tanh``/``rnn_relu`` kernels.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from backend_autodiff import gradients
from keras import ops
from on_backend import run_on_backend
from reference import numpy_rnn as ref
from test_numpy_reference import KIND_CONFIGS
from test_numpy_reference import assert_close
from test_numpy_reference import config_id
from test_numpy_reference import float32
from test_numpy_reference import randomize
from test_numpy_reference import reference_cell
from test_numpy_reference import stack_cells

import kerasrnn
from kerasrnn.cells import cell_spec
from kerasrnn.layers import torch_kernels

BACKEND = keras.config.backend()
# Configurations torch's kernels compute (and the one each kernel is).
TORCH_KERNEL_CONFIGS = [
    ("elman", {"activation": "tanh"}),
    ("elman", {"activation": "relu"}),
    ("lstm", {}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": True, "use_bias": False}),
]
FAST_CONFIGS = TORCH_KERNEL_CONFIGS + KIND_CONFIGS
# Right-padded lengths, a full row and a length-1 row.
LENGTHS = [5, 3, 1]


def expected_fast_path(kind, arguments, training, mask=None):
    """The loop each backend should choose, from the rules in
    ``RNN.fast_path``'s docstring (written out here, not asked of the
    layer)."""
    if BACKEND == "jax":
        return "scan"
    spec = cell_spec(kind)
    activation = arguments.get("activation", "tanh")
    kernel = (
        spec.torch_module is not None
        and (activation == "tanh"
             or (activation == "relu" and spec.torch_module == "RNN"))
        and arguments.get("recurrent_activation", "sigmoid") == "sigmoid"
        and arguments.get("reset_after", True)
        and not (training and arguments.get("recurrent_dropout", 0) > 0)
    )
    if BACKEND == "tensorflow":
        import tensorflow as tf

        # With a GPU: cuDNN by Keras' route (LSTM and GRU, with a bias;
        # a mask is decided in the graph).
        if (kernel and spec.torch_module in ("LSTM", "GRU")
                and arguments.get("use_bias", True)
                and tf.config.list_logical_devices("GPU")):
            return "cudnn"
        # The fused backward knows the derivatives of these activations.
        known = {"tanh", "sigmoid", "relu", "linear"}
        used = {arguments.get("activation", "tanh"),
                arguments.get("recurrent_activation", "sigmoid")}
        if not used <= known:
            return "generic"
        return "fused" if training else "forward"
    if mask is not None:
        lengths = mask.sum(axis=1)
        steps = np.arange(mask.shape[1])
        right = ((steps[None] < lengths[:, None]) == mask).all()
        left = ((steps[None] >= (mask.shape[1] - lengths)[:, None])
                == mask).all()
        kernel = kernel and (right or left) and (lengths > 0).all()
    return "torch_kernel" if kernel else "generic"


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("config", FAST_CONFIGS, ids=config_id)
def test_fast_path_choice(config, training):
    kind, arguments = config
    layer = kerasrnn.RNN(cell_spec(kind).cell_class(3, **arguments))
    layer.build((2, 4, 2))
    assert layer.fast_path(training=training) == expected_fast_path(
        kind, arguments, training)
    assert kerasrnn.RNN(layer.cell, fused=False).fast_path() == "generic"
    assert kerasrnn.RNN(layer.cell, unroll=True).fast_path() == "generic"


@pytest.mark.parametrize("mask", [
    [[1, 1, 0, 0], [1, 1, 1, 1]],    # right-padded
    [[0, 0, 1, 1], [1, 1, 1, 1]],    # left-padded (go_backwards)
    [[1, 0, 1, 1], [1, 1, 1, 1]],    # a gap
    [[0, 0, 0, 0], [1, 1, 1, 1]],    # an empty row
], ids=["right", "left", "gap", "empty"])
def test_fast_path_choice_with_masks(mask):
    mask = np.array(mask, bool)
    layer = kerasrnn.RNN(kerasrnn.LSTMCell(3))
    layer.build((2, 4, 2))
    assert layer.fast_path(mask) == expected_fast_path("lstm", {}, False,
                                                       mask)


def test_recurrent_dropout_leaves_the_torch_kernel_in_training_only():
    layer = kerasrnn.RNN(kerasrnn.GRUCell(3, recurrent_dropout=0.3))
    layer.build((2, 4, 2))
    arguments = {"recurrent_dropout": 0.3}
    assert layer.fast_path(training=True) == expected_fast_path(
        "gru", arguments, True)
    assert layer.fast_path(training=False) == expected_fast_path(
        "gru", arguments, False)


def test_kernel_notes_name_the_reason():
    notes = {
        "hard_sigmoid": torch_kernels.kernel_note(
            kerasrnn.LSTMCell(2, recurrent_activation="hard_sigmoid")),
        "reset_after": torch_kernels.kernel_note(
            kerasrnn.GRUCell(2, reset_after=False)),
        "indrnn": torch_kernels.kernel_note(kerasrnn.IndRNNCell(2)),
        "dropout": torch_kernels.kernel_note(kerasrnn.LSTMCell(2), True),
    }
    assert "sigmoid" in notes["hard_sigmoid"]
    assert "reset_after=True" in notes["reset_after"]
    assert "IndRNNCell" in notes["indrnn"]
    assert "recurrent dropout" in notes["dropout"]
    assert torch_kernels.kernel_note(kerasrnn.LSTMCell(2)) is None


def _run(layer, x, mask, initial_state, training=False):
    return layer(x, mask=mask, initial_state=initial_state,
                 training=training)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("config", FAST_CONFIGS, ids=config_id)
def test_fast_path_equals_numpy_and_generic_loop(config, go_backwards):
    """Values against the NumPy equations; values and gradients against
    the generic loop (``fused=False``; on JAX, whose fast path is the
    generic loop, against the Python loop of ``unroll=True``)."""
    kind, arguments = config
    rng = np.random.default_rng(len(config_id(config)) + go_backwards)
    batch_size, steps, features, units = len(LENGTHS), 5, 3, 4
    cell = cell_spec(kind).cell_class(units, **arguments)
    options = dict(return_sequences=True, return_state=True,
                   go_backwards=go_backwards)
    fast = kerasrnn.RNN(cell, **options)
    slow = kerasrnn.RNN(cell, **options, **(
        {"unroll": True} if BACKEND == "jax" else {"fused": False}))
    x = float32(rng, batch_size, steps, features)
    mask = ref.lengths_to_mask(LENGTHS, steps)
    initial_state = [float32(rng, batch_size, units)
                     for _ in cell_spec(kind).state_names]
    fast.build(x.shape)
    randomize(fast, rng)
    assert fast.fast_path(mask, training=True) == expected_fast_path(
        kind, arguments, True, mask[:, ::-1] if go_backwards else mask)
    output, *states = _run(fast, x, mask, initial_state)
    expected, _, expected_states = ref.run(
        reference_cell(cell, kind, arguments), x, mask, initial_state,
        go_backwards=go_backwards)
    assert_close(output, expected)
    for state, expected_state in zip(states, expected_states, strict=True):
        assert_close(state, expected_state)

    projections = [float32(rng, *np.shape(expected))] + [
        float32(rng, batch_size, units) for _ in states]

    def loss(layer):
        def value(x, *initial_state):
            results = _run(layer, x, mask, list(initial_state), True)
            return sum(ops.sum(r * ops.convert_to_tensor(p))
                       for r, p in zip(results, projections))
        return value

    variables = fast.trainable_weights
    ours = gradients(loss(fast), [x, *initial_state], variables)
    theirs = gradients(loss(slow), [x, *initial_state], variables)
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b.astype(np.float64),
                     reference=f"{BACKEND} fast path = generic loop "
                               "(gradients)")


@pytest.mark.parametrize("config", KIND_CONFIGS[:3], ids=config_id)
def test_deep_bidirectional_residual_stack(config):
    kind, arguments = config
    rng = np.random.default_rng(5)
    steps, units = 5, 3
    layer = cell_spec(kind).layer_class(
        units, num_layers=2, bidirectional=True, residual=True,
        return_sequences=True, **arguments)
    x = float32(rng, len(LENGTHS), steps, 2 * units)
    layer.build(x.shape)
    randomize(layer, rng)
    output = layer(x, mask=ref.lengths_to_mask(LENGTHS, steps))
    sequence, _, _ = ref.stack(stack_cells(layer, kind, arguments), x,
                               np.array(LENGTHS), residual=True)
    assert_close(output, sequence)


def _classifier(dtype_policy=None):
    """Embedding (masking) -> bidirectional LSTM -> GRU -> softmax."""
    keras.utils.set_random_seed(7)
    return keras.Sequential([
        keras.Input((6,), dtype="int32"),
        keras.layers.Embedding(12, 8, mask_zero=True, dtype=dtype_policy),
        kerasrnn.LSTM(8, bidirectional=True, return_sequences=True,
                      dtype=dtype_policy),
        kerasrnn.GRU(8, dtype=dtype_policy),
        keras.layers.Dense(2, dtype="float32"),
    ])


def _classification_data():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 7, size=64)
    ids = rng.integers(1, 12, size=(64, 6)) * (
        np.arange(6)[None] < lengths[:, None])
    # Label: whether token 1..5 outnumber 6..11 (needs the whole sequence).
    low = ((ids > 0) & (ids < 6)).sum(axis=1)
    high = (ids >= 6).sum(axis=1)
    return ids.astype("int32"), (low > high).astype("int32")


def _fit(model):
    ids, labels = _classification_data()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    history = model.fit(ids, labels, batch_size=16, epochs=6, verbose=0,
                        shuffle=False)
    return history.history["loss"]


def test_fit_trains_a_masked_stack():
    losses = _fit(_classifier())
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.75 * losses[0]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_tracks_float32(policy):
    """Mixed precision trains without dtype errors; its losses stay within
    0.05 of float32's (6 epochs, the same data and initial weights)."""
    reference = _fit(_classifier())
    mixed = _fit(_classifier(keras.DTypePolicy(policy)))
    assert np.all(np.isfinite(mixed))
    assert np.max(np.abs(np.array(mixed) - reference)) < 0.05


_SAVE = """
import sys, numpy as np, keras
sys.path.insert(0, {tests!r})
from test_backends import _classifier, _classification_data
model = _classifier()
model.build((None, 6))
rng = np.random.default_rng(3)
for w in model.trainable_weights:
    w.assign(rng.normal(0, 0.5, w.shape))
model.save({path!r})
ids, _ = _classification_data()
np.save({outputs!r}, keras.ops.convert_to_numpy(model(ids[:8])))
"""


@pytest.mark.parametrize("source", [
    b for b in ("tensorflow", "jax", "torch") if b != BACKEND])
def test_keras_file_moves_between_backends(source, tmp_path):
    """A ``.keras`` file saved on ``source`` loads here with the same
    outputs (float32 tolerance)."""
    path, outputs = tmp_path / "model.keras", tmp_path / "outputs.npy"
    code = _SAVE.format(tests=os.path.dirname(__file__), path=str(path),
                        outputs=str(outputs))
    run_on_backend(source, code)
    model = keras.saving.load_model(path)
    ids, _ = _classification_data()
    assert_close(model(ids[:8]), np.load(outputs).astype(np.float64),
                 reference=f".keras from {source} (outputs)")
    assert json.loads(model.to_json())["config"]["layers"]


@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="run once, from the full suite")
def test_a_command_line_run_resumes_on_another_backend(tmp_path, capsys):
    """``kerasrnn train`` here (TensorFlow), ``--resume`` on JAX (the
    checkpoint, optimizer included, is backend-neutral), then ``evaluate``
    and ``generate`` back here."""
    from kerasrnn import cli

    other = {"tensorflow": "jax"}
    out = str(tmp_path / "run")
    train = ["train", "seq2seq", "--data", "builtin", "--out", out,
             "--units", "16", "--embedding-dim", "8", "--verbose", "0",
             "--max-examples", "400"]
    assert cli.main(train + ["--epochs", "1"]) == 0, capsys.readouterr().err
    run_on_backend(other[BACKEND], (
        "import sys\nfrom kerasrnn import cli\n"
        f"sys.exit(cli.main({train + ['--epochs', '2', '--resume']!r}))"))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2]
    capsys.readouterr()
    assert cli.main(["evaluate", out, "--data", "builtin"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] > 0
    assert cli.main(["generate", out, "12+7", "--method", "greedy"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_tensorflow_only_parts_say_so():
    """The SavedModel export, ``stream_dataset`` (tf.data), the gradient
    tapes of the diagnostics and ``TBPTTTrainer(strategy=...)`` are
    TensorFlow's: elsewhere they refuse with an error naming the backend.
    Seq2Seq, the decoders (``test_backends_seq2seq.py``) and the TBPTT
    trainer (``test_backends_lm.py``) run on every backend."""
    from kerasrnn import decoding
    from kerasrnn.export import saved_model
    from kerasrnn.models import Seq2Seq

    def build():
        return Seq2Seq(source_vocabulary_size=8, target_vocabulary_size=8,
                       bos_id=1, eos_id=2, embedding_dim=4, units=4)

    def search():
        return decoding.greedy_search(
            lambda ids, state: (ops.one_hot(ids, 4), state),
            start_ids=np.zeros(2, "int32"), initial_state=np.zeros((2, 1)),
            max_length=3, end_id=3)

    def export():
        return saved_model.to_saved_model(_classifier(), "/nonexistent")

    def tbptt(**options):
        from kerasrnn.models import LanguageModel
        from kerasrnn.models.lm_training import TBPTTTrainer

        return TBPTTTrainer(LanguageModel(8, embedding_dim=4, units=4),
                            batch_size=2, num_steps=3, **options)

    def distributed():
        return tbptt(strategy=object())

    def dataset():
        from kerasrnn.models.lm_data import stream_dataset

        return stream_dataset(np.arange(40), 2, 3)

    def flow():
        from kerasrnn.diagnostics import gradient_flow

        model = keras.Sequential([keras.Input((5, 2)), kerasrnn.LSTM(3),
                                  keras.layers.Dense(1)])
        return gradient_flow(model, np.zeros((2, 5, 2), "float32"),
                             np.zeros((2, 1), "float32"), loss="mse")

    build()
    assert tuple(search().ids.shape) == (2, 1, 3)
    tbptt()
    if BACKEND == "tensorflow":
        dataset()
        flow()
        return
    for attempt in (export, distributed, dataset, flow):
        with pytest.raises(RuntimeError, match="TensorFlow backend only"):
            attempt()


def test_trained_classifier_exports_to_onnx_and_serves(tmp_path):
    """Trained on this backend, exported to native ONNX recurrent nodes and
    answered by the TensorFlow-free Predictor like Keras (1e-5)."""
    from kerasrnn.export import to_onnx
    from kerasrnn_serving import Predictor

    model = _classifier()
    _fit(model)
    manifest = to_onnx(model, tmp_path)
    assert [(node["op"], node["direction"])
            for node in manifest["recurrent_nodes"]] == [
        ("LSTM", "bidirectional"), ("GRU", "forward")]
    ids, _ = _classification_data()
    served = Predictor(tmp_path).predict(ids[:16])
    assert_close(served[manifest["outputs"][0]["name"]],
                 ops.convert_to_numpy(model(ids[:16])).astype(np.float64),
                 reference=f"onnxruntime = Keras on {BACKEND}")


def test_use_cudnn_false_keeps_torch_off_its_fused_kernel():
    """Keras' ``use_cudnn``: on torch, False runs the generic loop (the
    kernel is cuDNN's on CUDA); on TensorFlow it keeps the fused loop
    (with a GPU "auto" runs cuDNN: ``test_cudnn_route.py``); on JAX the
    loop does not change."""
    layers = {flag: kerasrnn.LSTM(3, use_cudnn=flag) for flag in
              ("auto", False)}
    for layer in layers.values():
        layer.build((2, 4, 2))
    paths = {flag: layer.recurrent_layers[0].fast_path()
             for flag, layer in layers.items()}
    if BACKEND == "torch":
        assert paths == {"auto": "torch_kernel", False: "generic"}
    else:
        assert paths["auto"] == expected_fast_path("lstm", {}, False)
        assert paths[False] == ("forward" if BACKEND == "tensorflow"
                                else "scan")


@pytest.mark.skipif(BACKEND != "torch", reason="torch's kernel parameters")
def test_torch_kernel_parameters_follow_every_weight_change():
    """Under torch.no_grad the fused kernel's reordered weights are kept
    between calls; assign, set_weights and an optimizer step must each be
    seen (outputs against the NumPy equations after every change)."""
    import torch

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 3)).astype("float32")
    layer = kerasrnn.GRU(4, return_sequences=True)
    layer(x)
    cell = layer.recurrent_layers[0].cell

    def expected():
        twin = reference_cell(cell, "gru", {"reset_after": True})
        return ref.run(twin, x.astype(np.float64))[0]

    def check(what):
        with torch.no_grad():
            got = layer(x)
            again = layer(x)
        assert_close(got, expected(), reference=f"after {what}")
        assert_close(again, expected(), reference=f"after {what}, again")

    check("building")
    cell.kernel.assign(rng.standard_normal(cell.kernel.shape))
    check("assign")
    layer.set_weights([w * 0.5 for w in layer.get_weights()])
    check("set_weights")
    optimizer = keras.optimizers.SGD(0.5)
    with torch.enable_grad():
        loss = ops.sum(layer(x) ** 2)
        loss.backward()
    optimizer.apply([v.value.grad for v in layer.trainable_variables],
                    layer.trainable_variables)
    check("an optimizer step")


@pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow's own backend")
def test_kerasrnn_runs_without_tensorflow_installed():
    """Off TensorFlow, kerasrnn needs no TensorFlow (the GPU machines have
    none): with ``import tensorflow`` made to fail, every package loads, a
    Seq2Seq trains and generates, and a tokenizer says what it needs."""
    script = """
import sys
sys.modules["tensorflow"] = None   # as if it were not installed
import numpy as np
import kerasrnn, kerasrnn.models, kerasrnn.decoding, kerasrnn.export
import kerasrnn.training, kerasrnn.diagnostics, kerasrnn.trees, kerasrnn.cli
from kerasrnn.models import Seq2Seq
from kerasrnn.models.text import Tokenizer
model = Seq2Seq(8, 8, bos_id=1, eos_id=2, embedding_dim=4, units=4)
rng = np.random.default_rng(0)
source = rng.integers(3, 8, (16, 5)).astype("int32")
target = np.concatenate([np.ones((16, 1), "int32"), source,
                         np.full((16, 1), 2, "int32")], axis=1)
model.compile()
model.fit(source, target, epochs=1, batch_size=8, verbose=0)
ids = model.generate(source[:2], method="beam", beam_width=2,
                     max_length=4).ids
assert tuple(ids.shape)[:2] == (2, 1), ids.shape
try:
    Tokenizer("char").adapt(["abc"])
except ImportError as error:
    assert "needs TensorFlow" in str(error), error
else:
    raise AssertionError("a tokenizer was built without TensorFlow")
assert "tensorflow" not in [m for m in sys.modules if sys.modules[m]]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": BACKEND})
    assert result.returncode == 0 and result.stdout.strip() == "ok", (
        result.stdout[-1000:] + result.stderr[-3000:])
