"""Int8 dynamic quantization of an exported ONNX model, with its cost.

    report = kerasrnn.export.quantize_onnx("artifacts/model")

``onnxruntime.quantization.quantize_dynamic`` stores weights as int8 and
quantizes activations on the fly: ``MatMul`` becomes ``MatMulInteger``-based
ops, a native ``LSTM`` becomes ``com.microsoft::DynamicQuantizeLSTM``,
embedding tables ``Gather`` int8. onnxruntime has no quantized ``GRU`` or
``RNN`` kernel: those nodes stay float32. The report says how much the
outputs move (on the caller's inputs, or on random right-padded ones) and,
given labels, how the accuracy changes.
"""

import logging
import pathlib

import numpy as np

from kerasrnn_serving import manifest as manifest_lib
from kerasrnn.export.onnx import op_inventory
from kerasrnn.export.onnx import sample_inputs

QUANTIZED_FILE = "model.int8.onnx"


def quantize_onnx(directory, feeds=None, labels=None, label_output=None,
                  per_channel=False):
    """Writes ``directory/model.int8.onnx`` and reports the change.

    Args:
        directory: an export directory (``model.onnx`` + manifest).
        feeds: optional ``{input name: array}`` to measure on (default:
            64 random right-padded sequences of 20 steps).
        labels: optional integer class labels for ``feeds``; the accuracy
            of ``argmax`` over the last axis of ``label_output`` is
            compared.
        label_output: the output the labels refer to (default: the
            first).
        per_channel: quantize weights per output channel.

    Returns:
        dict (also stored as ``manifest["quantized"]``): ``file``, sizes in
        bytes, the op inventory, per-output ``max_abs_change`` and
        ``argmax_agreement``, and with labels ``accuracy_float32`` and
        ``accuracy_int8``.
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic

    directory = pathlib.Path(directory)
    manifest = manifest_lib.read(directory)
    if "graphs" in manifest:
        raise ValueError(
            f"{directory} holds a {manifest['kind']} export (encoder and "
            "decoder-step graphs); quantize_onnx quantizes one-graph models "
            "such as classifiers."
        )
    source = directory / manifest["model_file"]
    target = directory / QUANTIZED_FILE
    # The quantizer logs advice on pre-processing at WARNING level.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            source, target, weight_type=QuantType.QInt8,
            per_channel=per_channel,
        )
    finally:
        logger.setLevel(level)
    if feeds is None:
        feeds = sample_inputs(manifest, batch_size=64, steps=20, seed=1)
    sessions = [
        onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        for path in (source, target)
    ]
    reference, quantized = (session.run(None, feeds) for session in sessions)
    import onnx

    report = {
        "file": QUANTIZED_FILE,
        "bytes_float32": source.stat().st_size,
        "bytes_int8": target.stat().st_size,
        "ops": op_inventory(onnx.load(target)),
        "outputs": {},
    }
    for entry, ours, theirs in zip(manifest["outputs"], quantized,
                                   reference):
        change = {"max_abs_change": float(np.abs(ours - theirs).max())}
        if ours.ndim >= 2 and ours.shape[-1] > 1:
            change["argmax_agreement"] = float(
                np.mean(ours.argmax(-1) == theirs.argmax(-1))
            )
        report["outputs"][entry["name"]] = change
    if labels is not None:
        names = [entry["name"] for entry in manifest["outputs"]]
        index = names.index(label_output) if label_output else 0
        labels = np.asarray(labels)
        for key, results in (("accuracy_float32", reference),
                             ("accuracy_int8", quantized)):
            report[key] = float(
                np.mean(results[index].argmax(-1) == labels)
            )
    manifest["quantized"] = report
    manifest_lib.write(directory, manifest)
    return report
