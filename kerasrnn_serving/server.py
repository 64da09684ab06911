"""A small JSON-over-HTTP server for a ``Predictor`` (standard library only).

    python -m kerasrnn_serving serve artifacts/model --port 8000

Endpoints:

* ``GET /health``: ``{"status": "ok", "model": ..., "provider": ...}``.
* ``GET /v1/metadata``: the model's inputs and outputs (from the manifest).
* ``POST /v1/predict`` with ``{"inputs": {name: nested lists}, "lengths":
  {name: [ints]}}`` (``lengths`` optional; ``inputs`` may be the nested
  list itself for a one-input model) -> ``{"outputs": {name: nested
  lists}}``.

A bad request gets status 400 and ``{"error": message}`` naming the input;
the server keeps serving. JSON numbers carry no dtype, so integers are
accepted for float inputs; everything else is checked as in ``Predictor``.
"""

import http.server
import json

import numpy as np

from kerasrnn_serving.predictor import InputError

MAX_BODY_BYTES = 64 * 2**20


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
            self._reply(200, {
                "model": predictor.manifest["model_name"],
                "provider": predictor.provider,
                "inputs": predictor.manifest["inputs"],
                "outputs": predictor.manifest["outputs"],
            })
        else:
            self._reply(404, {"error": f"No route {self.path}; use "
                                       "/health, /v1/metadata or POST "
                                       "/v1/predict."})

    def do_POST(self):
        if self.path != "/v1/predict":
            self._reply(404, {"error": f"No route {self.path}; POST to "
                                       "/v1/predict."})
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

    def _read_json(self):
        size = int(self.headers.get("Content-Length") or 0)
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
    """A ``ThreadingHTTPServer`` serving ``predictor`` (``port=0``: any
    free port; read it from ``server.server_address``)."""
    handler = type("Handler", (_Handler,), {"predictor": predictor,
                                            "quiet": quiet})
    return http.server.ThreadingHTTPServer((host, port), handler)

