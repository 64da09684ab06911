"""SavedModel export: ``serving_default`` with named inputs and outputs,
reload parity with Keras, no cuDNN ops.

Parity runs on the matrix models of ``test_export_onnx_parity`` at the same
four shapes. A SavedModel export costs about two seconds, so the default run
takes a covering subset of 12 models: every cell × every direction, with
layers, masking and initial states cycling so that each of their eight
combinations occurs. ``KERASRNN_FULL_EXPORT_MATRIX=1`` runs all 96.
"""

import itertools
import os

import keras
import numpy as np
import parity
import pytest
import tensorflow as tf
from test_export_onnx_parity import ATOL
from test_export_onnx_parity import CELLS
from test_export_onnx_parity import CONFIGS
from test_export_onnx_parity import DIRECTIONS
from test_export_onnx_parity import SHAPES
from test_export_onnx_parity import Case
from test_export_onnx_parity import config_id

import kerasrnn
from kerasrnn.export import to_saved_model
from kerasrnn.export.saved_model import saved_ops


def covering_subset():
    configs = []
    for index, (cell, direction) in enumerate(
        itertools.product(CELLS, DIRECTIONS)
    ):
        layers = 1 + index % 2
        masked, initial = bool(index // 2 % 2), bool(index // 4 % 2)
        configs.append((cell, direction, layers, masked, initial))
    return configs


SUBSET = (
    CONFIGS if os.environ.get("KERASRNN_FULL_EXPORT_MATRIX") == "1"
    else covering_subset()
)


def test_subset_covers_every_level_pair():
    assert {(c[0], c[1]) for c in SUBSET} == set(
        itertools.product(CELLS, DIRECTIONS))
    assert {c[2:] for c in SUBSET} == set(
        itertools.product((1, 2), (False, True), (False, True)))


@pytest.mark.parametrize("config", SUBSET, ids=map(config_id, SUBSET))
def test_reload_parity(config, tmp_path):
    case = Case(*config)
    info = to_saved_model(case.model, tmp_path / "1", verify=False)
    assert info["signature"] == "serving_default"
    assert [entry["name"] for entry in info["inputs"]] == [
        tensor.name for tensor in case.model.inputs
    ]
    function = tf.saved_model.load(str(tmp_path / "1")).signatures[
        "serving_default"
    ]
    names = [entry["name"] for entry in info["outputs"]]
    assert sorted(function.structured_outputs) == sorted(names)
    for index, (batch, steps) in enumerate(SHAPES):
        feeds = case.feeds(batch, steps, seed=index)
        expected = case.keras_outputs(feeds)
        received = function(**{k: tf.constant(v) for k, v in feeds.items()})
        for name, theirs in zip(names, expected):
            parity.record("exported SavedModel, reloaded",
                          received[name].numpy(), theirs)
            np.testing.assert_allclose(
                received[name].numpy(), theirs, atol=ATOL, rtol=0
            )


def test_named_signature_and_verification(tmp_path):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    sequence, state = kerasrnn.GRU(
        8, return_sequences=True, return_state=True)(embedded)
    model = keras.Model(
        tokens,
        {"logits": keras.layers.Dense(3)(
            kerasrnn.SequencePooling("last")(sequence)),
         "state": state},
    )
    info = to_saved_model(model, tmp_path / "model")
    assert info["parity"]["max_abs_error"] <= ATOL
    assert info["inputs"] == [
        {"name": "tokens", "dtype": "int32", "shape": [None, None]}
    ]
    assert [o["name"] for o in info["outputs"]] == ["logits", "state"]
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert "serving_default" in loaded.signatures
    function = loaded.signatures["serving_default"]
    assert list(function.structured_input_signature[1]) == ["tokens"]
    # Keras' masked semantics survive: padding does not change the result.
    short = function(tokens=tf.constant([[3, 4, 5]], tf.int32))
    padded = function(tokens=tf.constant([[3, 4, 5, 0, 0]], tf.int32))
    np.testing.assert_allclose(short["logits"].numpy(),
                               padded["logits"].numpy(), atol=1e-6)
    ops = saved_ops(tmp_path / "model")
    assert "MatMul" in ops and not any("Cudnn" in op for op in ops)
