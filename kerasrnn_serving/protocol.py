"""The request bodies of ``/v1/predict`` and ``/v1/generate``, parsed
into calls of a ``Predictor`` or a ``Generator`` (``kerasrnn_serving.app``
serves them).

``POST /v1/generate`` takes ``{"texts": [str, ...]}`` or ``{"ids": [[int,
...], ...]}``, ``"method"`` (``"greedy"``, ``"sample"``, ``"beam"``),
``"max_length"``, the method's options (``beam_width``,
``length_penalty_weight``, ``num_return``, ``min_length``, ``temperature``,
``top_k``, ``top_p``, ``seed``, ``num_samples``), ``"unknown"`` (``"map"``
unknown tokens to the unknown id, or ``"error"``), ``"attention": true``
(a seq2seq model's attention weights for each hypothesis) and, for a
language model, ``"stop_at_eos"`` -> ``{"results": [{"text",
"hypotheses": [{"text", "ids", "score", "log_prob", "length",
"attention"?}]}]}``. With ``"stream": true`` (one text) the answer is
server-sent events: one ``data: {"index", "id", "text"}`` event per
decoded token, then ``event: done`` with the whole answer.

A captioner takes ``{"images": [base64 PNG or JPEG, ...]}`` instead of
texts (the search options as above; no streaming); with ``"attention":
true`` each hypothesis carries ``"attention"``, per token (the end token
last) the ``h × w`` grid of weights over the image.

``POST /v1/predict`` takes ``{"inputs": {name: nested lists}, "lengths":
{name: [ints]}}`` -> ``{"outputs": {name: nested lists}}``.
"""

import base64
import binascii

import numpy as np

from kerasrnn_serving.predictor import InputError

# The keys a /v1/generate request may hold besides the search options.
GENERATE_KEYS = {"texts", "ids", "images", "method", "max_length",
                 "unknown", "stream", "attention", "stop_at_eos"}


def generation_request(generator, request):
    """``(run, stream, attention)`` for a checked /v1/generate body:
    ``run()`` answers it (with ``stream``, an iterator of events)."""
    if not isinstance(request, dict):
        raise InputError('The request must be a JSON object with "texts" or '
                         '"ids" ("images" for a captioner).')
    if generator.kind == "captioner":
        return _caption_request(generator, request)
    if "images" in request:
        raise InputError('"images" apply to captioners; this model takes '
                         '"texts" or "ids".')
    has_texts, has_ids = "texts" in request, "ids" in request
    if has_texts == has_ids:
        raise InputError('The request needs exactly one of "texts" (a list '
                         'of strings) and "ids" (a list of id lists).')
    method = request.get("method")
    if method is not None and not isinstance(method, str):
        raise InputError(f'"method" must be a string. Received: {method!r}')
    options = {k: v for k, v in request.items() if k not in GENERATE_KEYS}
    max_length = request.get("max_length")
    stream = _flag(request, "stream")
    attention = _flag(request, "attention")
    if attention and generator.kind != "seq2seq":
        raise InputError('"attention" applies to seq2seq models.')
    if attention and not generator.manifest["architecture"].get(
        "attention"
    ):
        raise InputError('"attention": this model has no attention.')
    if attention and stream:
        raise InputError('"attention" is not sent with "stream": true; ask '
                         "without streaming.")
    stop_at_eos = None
    if "stop_at_eos" in request:
        if generator.kind == "seq2seq":
            raise InputError('"stop_at_eos" applies to language models.')
        stop_at_eos = _flag(request, "stop_at_eos")
    unknown = request.get("unknown", "map")
    if has_texts:
        texts = request["texts"]
        if isinstance(texts, str):
            texts = [texts]
        if stream:
            if not isinstance(texts, list) or len(texts) != 1:
                raise InputError('"stream": true takes one text: "texts": '
                                 '["..."].')
            return (lambda: generator.stream(
                texts[0], method, max_length, unknown, stop_at_eos,
                **options), True, False)
        return (lambda: generator.generate(
            texts, method, max_length, unknown, stop_at_eos, **options),
            False, attention)
    if stream:
        raise InputError('"stream": true takes "texts".')
    if "unknown" in request:
        raise InputError('"unknown" applies to "texts".')

    def from_ids():
        result = generator.generate_ids(request["ids"], method, max_length,
                                        stop_at_eos, **options)
        return generator.describe(result, text=_has_text(generator))

    return from_ids, False, attention


def _caption_request(generator, request):
    """``generation_request`` for a captioner: the images are decoded
    (and refused, naming the image) before anything runs."""
    for key in ("texts", "ids", "stream", "unknown", "stop_at_eos"):
        if key in request:
            raise InputError(f'"{key}" does not apply to a captioner: send '
                             '"images" (base64 PNG or JPEG bytes).')
    encoded = request.get("images")
    if isinstance(encoded, str):
        encoded = [encoded]
    if not isinstance(encoded, list) or not encoded:
        raise InputError('A captioner needs "images": a non-empty list of '
                         "base64 PNG or JPEG strings.")
    data = []
    for index, item in enumerate(encoded):
        if not isinstance(item, str):
            raise InputError(f"Image {index} must be a base64 string. "
                             f"Received: {type(item).__name__}")
        try:
            data.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InputError(f"Image {index} is not valid base64.") \
                from None
    images = generator.decode_images(data)
    method = request.get("method")
    if method is not None and not isinstance(method, str):
        raise InputError(f'"method" must be a string. Received: {method!r}')
    options = {k: v for k, v in request.items() if k not in GENERATE_KEYS}
    attention = _flag(request, "attention")
    if attention and not generator.manifest["architecture"].get(
        "attention"
    ):
        raise InputError('"attention": this model has no attention.')

    def run():
        results = generator.describe(generator.generate_ids(
            images, method, request.get("max_length"), **options))
        if attention:
            for image, result in zip(images, results):
                for hypothesis in result["hypotheses"]:
                    weights = generator.image_alignments(
                        image, hypothesis["ids"])
                    hypothesis["attention"] = np.round(weights, 5).tolist()
        return results

    return run, False, False


def _has_text(generator):
    side = "target" if generator.kind == "seq2seq" else "tokens"
    return generator.manifest["vocabularies"].get(side) is not None


def add_attention(generator, request, results):
    if "texts" in request:
        texts = request["texts"]
        sources = generator.encode_texts(
            [texts] if isinstance(texts, str) else texts,
            request.get("unknown", "map"))
    else:
        sources = request["ids"]
    for source, result in zip(sources, results):
        for hypothesis in result["hypotheses"]:
            weights = generator.alignments(source, hypothesis["ids"])
            hypothesis["attention"] = np.round(weights, 5).tolist()


def _flag(request, name):
    value = request.get(name, False)
    if not isinstance(value, bool):
        raise InputError(f'"{name}" must be true or false. Received: '
                         f"{value!r}")
    return value


def parse_inputs(predictor, inputs, lengths):
    """``(inputs, lengths)`` of a /v1/predict body for
    ``Predictor.prepare``: ``inputs`` is ``{name: nested lists}`` or, for a
    one-input model, the nested list itself."""
    if isinstance(inputs, dict):
        inputs = {name: _array(predictor, name, value)
                  for name, value in inputs.items()}
    elif len(predictor.inputs) == 1:
        name = next(iter(predictor.inputs))
        inputs = {name: _array(predictor, name, inputs)}
    else:
        raise InputError(f'"inputs" must map the names '
                         f"{sorted(predictor.inputs)} to arrays.")
    try:
        if lengths is not None and isinstance(lengths, dict):
            lengths = {name: np.asarray(value) for name, value in
                       lengths.items()}
        elif lengths is not None:
            lengths = np.asarray(lengths)
    except (ValueError, TypeError, OverflowError):
        raise InputError("`lengths` must hold one integer per row of each "
                         "input.") from None
    return inputs, lengths


def _array(predictor, name, value):
    """A JSON value as an array; integers become floats for float inputs."""
    entry = predictor.inputs.get(name)
    try:
        array = np.asarray(value)
    except ValueError:
        return value  # ragged: the predictor pads or explains
    if array.dtype == object or array.dtype.kind in "USV":
        raise InputError(f"Input '{name}' must hold numbers. Received "
                         f"{array.dtype} values.")
    if entry is not None and entry["dtype"] == "float32" and (
        array.dtype.kind in "iu"
    ):
        array = array.astype(np.float32)
    return array
