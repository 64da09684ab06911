"""The cell registry and the cell contract.

Every registered cell works through every path the registry feeds: its
sequence layer (deep, bidirectional, masked) trains with ``fit`` and
round-trips through ``.keras``; models take its name, its class or a cell
object as a template. A cell that follows ``RecurrentCell``'s contract but
has no fused backward trains on the generic loop; one with no equations is
a clear error. Registration refuses incomplete or clashing descriptions.
"""

import keras
import numpy as np
import pytest

import kerasrnn
from kerasrnn.cells import cell_names
from kerasrnn.cells import cell_spec
from kerasrnn.cells import register_cell
from kerasrnn.cells.registry import resolve_cell
from kerasrnn.models import LanguageModel
from kerasrnn.models import Seq2Seq
from kerasrnn.weights import to_torch_state_dict


def test_names_aliases_classes_and_objects_find_one_spec():
    lstm = cell_spec("lstm")
    assert cell_spec(kerasrnn.LSTMCell) is lstm
    assert cell_spec(kerasrnn.LSTMCell(3)) is lstm
    assert cell_spec("elman") is cell_spec("simple_rnn")
    assert lstm.layer_class is kerasrnn.LSTM
    assert lstm.state_names == ("h", "c") and lstm.gate_count == 4
    assert cell_spec("gru").permutation("torch") == (1, 0, 2)
    assert cell_spec("indrnn").recurrent == "diagonal"
    assert set(cell_names()) >= {"simple_rnn", "lstm", "gru",
                                 "peephole_lstm", "indrnn"}


def test_a_later_layer_class_does_not_replace_the_registered_one():
    class MyLSTM(kerasrnn.layers.StackedRecurrent):
        cell_class = kerasrnn.LSTMCell

    assert cell_spec("lstm").layer_class is kerasrnn.LSTM
    assert MyLSTM(3).cell_class is kerasrnn.LSTMCell


def test_unknown_cells_are_refused_with_the_registered_names():
    with pytest.raises(ValueError, match="Unknown cell 'transformer'.*lstm"):
        cell_spec("transformer")

    class MyLSTMCell(kerasrnn.LSTMCell):
        pass

    # A subclass may compute other equations: it is not the LSTM.
    with pytest.raises(ValueError, match="MyLSTMCell is not a registered"):
        cell_spec(MyLSTMCell)
    with pytest.raises(ValueError, match="`cell` must be one of"):
        Seq2Seq(10, 10, bos_id=1, eos_id=2, cell=MyLSTMCell(4))
    with pytest.raises(ValueError, match="no PyTorch equivalent"):
        to_torch_state_dict(
            _built(kerasrnn.IndRNN(3))
        )
    with pytest.raises(ValueError, match="no torch layout|has no torch"):
        cell_spec("peephole_lstm").permutation("torch")


def test_registration_refuses_incomplete_or_clashing_cells():
    class NoGates(kerasrnn.RecurrentCell):
        gate_names = ()

    with pytest.raises(TypeError, match="must define `gate_names`"):
        register_cell("no_gates")(NoGates)

    class BadOrder(kerasrnn.RecurrentCell):
        gate_names = ("a", "b")

    with pytest.raises(ValueError, match="permutation of"):
        register_cell("bad_order", gate_orders={"onnx": ("a", "c")})(
            BadOrder)
    with pytest.raises(ValueError, match="already registered for lstm"):
        register_cell("lstm_again", aliases=("lstm",))(BadOrder)
    assert "bad_order" not in cell_names()
    assert "lstm_again" not in cell_names()


def _built(layer, features=2):
    layer.build((None, None, features))
    return layer


@pytest.mark.parametrize("name", cell_names())
def test_every_registered_layer_fits_and_round_trips(name, tmp_path):
    layer_class = cell_spec(name).layer_class
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 3)).astype("float32")
    x[:, 4:] = 0.0
    model = keras.Sequential([
        keras.Input((6, 3)),
        keras.layers.Masking(0.0),
        layer_class(4, num_layers=2, bidirectional=True, dropout=0.1,
                    recurrent_dropout=0.1, seed=1),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, rng.normal(size=(8, 1)), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(np.abs(a - b).max() > 0
               for a, b in zip(before, model.get_weights()))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_models_take_a_name_a_class_or_a_template_cell(tmp_path):
    template = kerasrnn.PeepholeLSTMCell(
        99, peephole_initializer="ones", recurrent_dropout=0.25
    )
    model = LanguageModel(20, embedding_dim=6, units=5, num_layers=2,
                          cell=template)
    model(np.zeros((2, 3), "int32"))
    cells = [rnn.cell for rnn in model.recurrent.recurrent_layers]
    assert all(type(cell) is kerasrnn.PeepholeLSTMCell for cell in cells)
    # The template's configuration, the model's units.
    assert all(cell.units == 5 and cell.recurrent_dropout == 0.25
               for cell in cells)
    np.testing.assert_array_equal(cells[0].peephole_kernel.numpy(),
                                  np.ones(15, "float32"))
    path = tmp_path / "lm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    tokens = np.array([[3, 4, 5]], "int32")
    np.testing.assert_array_equal(loaded(tokens), model(tokens))
    assert type(loaded.recurrent.recurrent_layers[0].cell) is (
        kerasrnn.PeepholeLSTMCell
    )

    by_class = Seq2Seq(12, 12, bos_id=1, eos_id=2, units=4,
                       embedding_dim=4, cell=kerasrnn.IndRNNCell)
    by_name = Seq2Seq(12, 12, bos_id=1, eos_id=2, units=4,
                      embedding_dim=4, cell="indrnn")
    for model in (by_class, by_name):
        assert isinstance(model.encoder, kerasrnn.IndRNN)
        assert all(type(cell) is kerasrnn.IndRNNCell
                   for cell in model.decoder.cells)
        assert model.get_config()["cell"] == "indrnn"
    spec, arguments = resolve_cell(keras.saving.serialize_keras_object(
        template))
    assert spec is cell_spec("peephole_lstm")
    assert arguments["recurrent_dropout"] == 0.25 and "units" not in arguments


def test_a_cell_with_only_step_trains_on_the_generic_loop():
    """The documented contract: ``gate_names``, ``state_names`` and the
    equations in ``step``; no backward means no fused path."""

    class LeakyCell(kerasrnn.RecurrentCell):
        """h_t = (1 - a) h_{t-1} + a tanh(x W + h U + b), a = 0.5."""

        def step(self, projected, states, parameters, recurrent_mask=None):
            (recurrent_kernel,) = parameters
            h = states[0]
            new = keras.ops.tanh(projected + keras.ops.matmul(
                h, recurrent_kernel))
            h = 0.5 * h + 0.5 * new
            return [h], ()

    layer = kerasrnn.RNN(LeakyCell(3), return_sequences=True)
    assert not layer.cell.supports_fused
    assert layer.cell.fused_path_note == (
        "LeakyCell does not define fused_step_backward, "
        "fused_parameter_gradients: it trains on the generic loop."
    )
    assert "'hard_sigmoid' has no derivative" in kerasrnn.LSTMCell(
        2, recurrent_activation="hard_sigmoid").fused_path_note
    assert kerasrnn.IndRNNCell(2).fused_path_note is None
    x = np.random.default_rng(1).normal(size=(4, 5, 2)).astype("float32")
    model = keras.Sequential([keras.Input((5, 2)), layer,
                              keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((4, 5, 1)), verbose=0)
    # The same equations by hand.
    cell = layer.cell
    W, U, b = (v.numpy() for v in (cell.kernel, cell.recurrent_kernel,
                                   cell.bias))
    h = np.zeros((4, 3))
    for t in range(5):
        h = 0.5 * h + 0.5 * np.tanh(x[:, t] @ W + h @ U + b)
    np.testing.assert_allclose(layer(x)[:, -1], h, atol=1e-5)


def test_a_cell_without_equations_is_a_clear_error():
    class Empty(kerasrnn.RecurrentCell):
        pass

    with pytest.raises(NotImplementedError,
                       match="defines neither `step` nor `recurrent_step`"):
        kerasrnn.RNN(Empty(2))(np.zeros((1, 3, 2), "float32"))


def test_indrnn_keeps_its_recurrent_weights_bounded():
    layer = kerasrnn.IndRNN(4, recurrent_max_abs=0.5)
    model = keras.Sequential([keras.Input((3, 2)), layer,
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(10.0), "mse")
    x = np.ones((8, 3, 2), "float32")
    model.fit(x, np.full((8, 1), 100.0), epochs=3, verbose=0)
    u = layer.recurrent_layers[0].cell.recurrent_kernel.numpy()
    assert np.abs(u).max() <= 0.5 + 1e-7
    with pytest.raises(ValueError, match="not both"):
        kerasrnn.IndRNNCell(3, recurrent_constraint="non_neg")
    with pytest.raises(ValueError, match="`max_value` must be a number"):
        kerasrnn.IndRNNCell(3, recurrent_max_abs=0)
