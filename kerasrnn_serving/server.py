"""A small JSON-over-HTTP server for a ``Predictor`` or a ``Generator``
(standard library only).

    python -m kerasrnn_serving serve artifacts/model --port 8000

Endpoints:

* ``GET /health``: ``{"status": "ok", "model": ..., "provider": ...}``.
* ``GET /v1/metadata``: a classifier's inputs and outputs (from the
  manifest); a generation model's methods, their options and defaults,
  the limits, special ids and vocabulary sizes (``Generator.metadata``).
* ``POST /v1/predict`` (classifiers) with ``{"inputs": {name: nested
  lists}, "lengths": {name: [ints]}}`` (``lengths`` optional; ``inputs``
  may be the nested list itself for a one-input model) -> ``{"outputs":
  {name: nested lists}}``.
* ``POST /v1/generate`` (seq2seq and language models) with ``{"texts":
  [str, ...]}`` or ``{"ids": [[int, ...], ...]}``, ``"method"``
  (``"greedy"``, ``"sample"``, ``"beam"``), ``"max_length"``, the
  method's options (``beam_width``, ``length_penalty_weight``,
  ``num_return``, ``min_length``, ``temperature``, ``top_k``, ``top_p``,
  ``seed``, ``num_samples``), ``"unknown"`` (``"map"`` unknown tokens to
  the unknown id, or ``"error"``), ``"attention": true`` (a seq2seq
  model's attention weights for each hypothesis) -> ``{"results": [{"text",
  "hypotheses": [{"text", "ids", "score", "log_prob", "length",
  "attention"?}]}]}``. With ``"stream": true`` (one text) the answer is
  server-sent events (``text/event-stream``): one ``data: {"index", "id",
  "text"}`` event per decoded token, then ``event: done`` with the whole
  answer; a client that disconnects stops its decoding.

A bad request gets status 400 and ``{"error": message}`` naming the input;
the server keeps serving. JSON numbers carry no dtype, so integers are
accepted for float inputs; everything else is checked as in ``Predictor``.
"""

import http.server
import json

import numpy as np

from kerasrnn_serving.generator import Generator
from kerasrnn_serving.predictor import InputError

MAX_BODY_BYTES = 64 * 2**20
# The keys a /v1/generate request may hold besides the search options.
GENERATE_KEYS = {"texts", "ids", "method", "max_length", "unknown",
                 "stream", "attention", "stop_at_eos"}


class _Handler(http.server.BaseHTTPRequestHandler):
    predictor = None
    quiet = True

    def do_GET(self):
        predictor = self.predictor
        if self.path == "/health":
            self._reply(200, {
                "status": "ok",
                "model": predictor.manifest["model_name"],
                "provider": predictor.provider,
            })
        elif self.path == "/v1/metadata":
            if isinstance(predictor, Generator):
                self._reply(200, predictor.metadata())
                return
            self._reply(200, {
                "model": predictor.manifest["model_name"],
                "provider": predictor.provider,
                "inputs": predictor.manifest["inputs"],
                "outputs": predictor.manifest["outputs"],
            })
        else:
            self._reply(404, {"error": f"No route {self.path}; use "
                                       "/health, /v1/metadata or POST "
                                       f"{self._route}."})

    @property
    def _route(self):
        if isinstance(self.predictor, Generator):
            return "/v1/generate"
        return "/v1/predict"

    def do_POST(self):
        if self.path != self._route:
            self._reply(404, {"error": f"No route {self.path}; POST to "
                                       f"{self._route}."})
            return
        if self._route == "/v1/generate":
            self._generate()
            return
        try:
            request = self._read_json()
            inputs, lengths = _parse(self.predictor, request)
            outputs = self.predictor.predict(inputs, lengths)
        except InputError as error:
            self._reply(400, {"error": str(error)})
            return
        except Exception as error:  # noqa: BLE001 - keep serving
            self._reply(500, {"error": f"{type(error).__name__}: {error}"})
            return
        self._reply(200, {"outputs": {name: value.tolist() for name, value
                                      in outputs.items()}})

    def _generate(self):
        generator = self.predictor
        try:
            request = self._read_json()
            run, stream, attention = _generation_request(generator,
                                                         request)
            if stream:
                events = run()
                first = next(events)   # bad input fails before the headers
            else:
                results = run()
                if attention:
                    _add_attention(generator, request, results)
        except InputError as error:
            self._reply(400, {"error": str(error)})
            return
        except Exception as error:  # noqa: BLE001 - keep serving
            self._reply(500, {"error": f"{type(error).__name__}: {error}"})
            return
        if not stream:
            self._reply(200, {"results": results})
            return
        self._stream([first], events)

    def _stream(self, ready, events):
        """Writes server-sent events until the last; a client that went
        away closes ``events``, which stops the decoding."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for event in _chain(ready, events):
                kind = "event: done\n" if event.get("done") else ""
                self.wfile.write(
                    f"{kind}data: {json.dumps(event)}\n\n".encode()
                )
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            events.close()

    def _read_json(self):
        declared = self.headers.get("Content-Length") or "0"
        if not (declared.isascii() and declared.isdigit()):
            raise InputError("Content-Length must be a non-negative "
                             f"integer. Received: {declared[:40]!r}")
        size = int(declared)
        if size <= 0:
            raise InputError("The request has no body: send JSON "
                             '{"inputs": {...}}.')
        if size > MAX_BODY_BYTES:
            raise InputError(f"The request body exceeds {MAX_BODY_BYTES} "
                             "bytes; split the batch.")
        try:
            return json.loads(self.rfile.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"The request body is not JSON: {error}") \
                from None

    def _reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def _chain(ready, events):
    yield from ready
    yield from events


def _generation_request(generator, request):
    """``(run, stream, attention)`` for a checked /v1/generate body:
    ``run()`` answers it (with ``stream``, an iterator of events)."""
    if not isinstance(request, dict):
        raise InputError('The request must be a JSON object with "texts" or '
                         '"ids".')
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


def _has_text(generator):
    side = "target" if generator.kind == "seq2seq" else "tokens"
    return generator.manifest["vocabularies"].get(side) is not None


def _add_attention(generator, request, results):
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


def _parse(predictor, request):
    """``(inputs, lengths)`` from a decoded request body."""
    if not isinstance(request, dict) or "inputs" not in request:
        raise InputError('The request must be a JSON object with "inputs" '
                         '(and optionally "lengths").')
    inputs = request["inputs"]
    if isinstance(inputs, dict):
        inputs = {name: _array(predictor, name, value)
                  for name, value in inputs.items()}
    elif len(predictor.inputs) == 1:
        name = next(iter(predictor.inputs))
        inputs = {name: _array(predictor, name, inputs)}
    else:
        raise InputError(f'"inputs" must map the names '
                         f"{sorted(predictor.inputs)} to arrays.")
    lengths = request.get("lengths")
    if lengths is not None and isinstance(lengths, dict):
        lengths = {name: np.asarray(value) for name, value in
                   lengths.items()}
    elif lengths is not None:
        lengths = np.asarray(lengths)
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


def make_server(predictor, host="127.0.0.1", port=0, quiet=True):
    """A ``ThreadingHTTPServer`` serving ``predictor`` (a ``Predictor`` or
    a ``Generator``; ``port=0``: any free port; read it from
    ``server.server_address``)."""
    handler = type("Handler", (_Handler,), {"predictor": predictor,
                                            "quiet": quiet})
    return http.server.ThreadingHTTPServer((host, port), handler)

