"""An ``ImageCaptioner`` -> ONNX: an image encoder graph and the
``Seq2Seq`` one-step decoder graph (``kerasrnn.export.generation``),
decoded by ``kerasrnn_serving.Generator``::

    encoder.onnx       image float32 (batch, H, W, C), pixels in [0, 1]
                       -> the decoder's first state: h_l (and c_l) =
                          tanh(W_init mean_i a_i + b) per layer; with
                          attention also attentional (zeros), memory
                          (batch, L, D) = the flattened feature map,
                          keys and memory_mask (all True)
    decoder_step.onnx  as for a Seq2Seq

The image encoder's layers become standard nodes (``Conv`` with its
groups for ``DepthwiseConv2D``, ``MaxPool``, ``AveragePool``, ``Pad``,
``Relu``, ``BatchNormalization`` folded to ``Mul``/``Add``...,
``kerasrnn.export.layers``); a layer without a converter stops the
export with its name and the supported list. The manifest's ``image``
says how a server prepares pixels (``kerasrnn_serving.images``).

    manifest = export_captioner(model, "artifacts/captioner")
    Generator("artifacts/captioner").caption([png_bytes])
"""

import numpy as np
import onnx

from kerasrnn.export import generation
from kerasrnn.export.generation import _Graph
from kerasrnn.export.generation import _affine
from kerasrnn.export.generation import _attention_keys
from kerasrnn.export.generation import _codec
from kerasrnn.export.generation import _seq2seq_step
from kerasrnn.export.generation import _state_entry
from kerasrnn.export.generation import _weight
from kerasrnn.export.generation import _zeros
from kerasrnn.export.graph import Value
from kerasrnn.export.functional import run_functional

BOOL = onnx.TensorProto.BOOL


def export_captioner(model, directory, verify=True):
    """Writes ``encoder.onnx``, ``decoder_step.onnx`` and ``manifest.json``
    of an ``ImageCaptioner`` to ``directory``; with ``verify``, checks
    them against the model first (``check_generation_parity``: first
    state, one step, greedy tokens identical). Returns the manifest."""
    generation._check_float32(model)
    tokens = {
        "bos_id": model.bos_id, "eos_id": model.eos_id,
        "pad_id": model.pad_id, "unknown_id": None,
        "forbidden_ids": sorted({model.pad_id, model.bos_id}),
    }
    encoder, state = _encoder(model)
    step = _seq2seq_step(model, state, tokens["forbidden_ids"])
    graphs = {"encoder": encoder, "decoder_step": step}
    height, width, channels = model.image_shape
    manifest = generation._manifest(
        model, "captioner", graphs, state, tokens,
        vocabularies={"target": _codec(model.target_tokenizer,
                                       "tokenizer")},
        vocabulary_sizes={"target": model.target_vocabulary_size},
        limits={"max_target_length": model.max_target_length},
        architecture={
            "cell": model.cell, "units": model.units,
            "decoder_layers": model.decoder_layers,
            "attention": model.attention,
            "tie_embeddings": model.tie_embeddings,
            "image_encoder": model.image_encoder.name,
        },
    )
    manifest["image"] = {
        "height": height, "width": width, "channels": channels,
        "grid": list(model.feature_grid), "scale": "1/255",
        "resize": "bilinear, aspect ratio not kept",
    }
    return generation._write(model, directory, manifest, graphs, verify,
                             parity=captioner_parity)


def _encoder(model):
    graph = _Graph("encoder", "encoder.onnx")
    g = graph.builder
    height, width, channels = model.image_shape
    image = graph.input("image", "float32", ["batch", height, width,
                                             channels])
    (features,) = run_functional(
        g, model.image_encoder, list(model.image_encoder.inputs),
        [Value(image, (None, height, width, channels), "float32",
               input_name="image")],
    )
    cells = int(np.prod(model.feature_grid))
    depth = model.feature_dim
    memory = g.op("Reshape", [features.name, g.ints(0, cells, depth)],
                  "encoder/memory")
    pooled = g.op("ReduceMean", [memory], "encoder/mean", axes=[1],
                  keepdims=0)
    dense = model.initial_state_dense
    initial = g.op("Tanh", [_affine(g, pooled, _weight(dense.kernel),
                                    _weight(dense.bias), "initial_state")],
                   "initial_state/tanh")
    units = model.units
    state = []
    for index, name in enumerate(
        model.decoder.state_names()[:model.decoder_layers
                                    * model.states_per_cell]
    ):
        piece = g.op("Slice", [initial, g.ints(index * units),
                               g.ints((index + 1) * units), g.ints(1)],
                     f"initial/{name}")
        entry = _state_entry(name, units)
        state.append(entry)
        graph.output(name, piece, "float32", entry["shape"])
    decoder = model.decoder
    if decoder.feeds_attention:
        entries = [
            (_state_entry("attentional", units),
             _zeros(g, image, units, "initial/attentional")),
            (_state_entry("memory", depth, constant=True,
                          shape=["batch", cells, depth]), memory),
        ]
        keys = _attention_keys(g, decoder, memory)
        if keys is not None:
            entries.append((_state_entry(
                "keys", keys[1], constant=True,
                shape=["batch", cells, keys[1]]), keys[0]))
        mask_shape = g.op(
            "Concat", [g.op("Shape", [image], "image/batch", end=1),
                       g.ints(cells)], "memory_mask/shape", axis=0)
        mask = g.op("ConstantOfShape", [mask_shape], "encoder/mask",
                    value=onnx.helper.make_tensor("true", BOOL, [1],
                                                  [True]))
        entries.append((_state_entry("memory_mask", None, constant=True,
                                     dtype="bool", shape=["batch", cells]),
                        mask))
        for entry, name in entries:
            state.append(entry)
            graph.output(entry["name"], name, entry["dtype"], entry["shape"])
    return graph.finish(), state


def random_images(model, batch_size, seed):
    """Uniform random images in [0, 1] of the model's input shape."""
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, *model.image_shape)).astype("float32")


def captioner_parity(model, generator, rng, batch_size, max_length):
    """``generation.decoder_parity`` on random images."""
    images = random_images(model, batch_size, int(rng.integers(2**31)))
    return generation.decoder_parity(model, generator, images, rng,
                                     max_length)
