"""Serving over HTTP: uvicorn runs the ASGI app of
``kerasrnn_serving.app`` (Starlette) for a ``Predictor`` or a
``Generator``.

    python -m kerasrnn_serving serve artifacts/model --port 8000

Why this stack: uvicorn (with h11) and Starlette are the maintained,
widely deployed ASGI server and toolkit; one event loop holds thousands
of idle or slow connections at the cost of a socket each (the previous
stdlib server pinned a thread per connection), HTTP/1.1 keep-alive,
``Expect: 100-continue`` and pipelining come from h11, and SIGTERM is a
graceful shutdown (stop accepting, finish what was accepted, exit 0).
What uvicorn lacks, this module adds: a timeout on the request head (a
client that opens a connection and sends nothing, or half a header, is
closed after ``header_timeout`` seconds), and the port-0 banner.

The request formats (``/v1/predict``, ``/v1/generate``) are parsed here;
routes, limits, batching and protocols are ``kerasrnn_serving.app``.

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

``POST /v1/predict`` takes ``{"inputs": {name: nested lists}, "lengths":
{name: [ints]}}`` -> ``{"outputs": {name: nested lists}}``.
"""

import contextlib
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
import uuid

import h11
import numpy as np
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from kerasrnn_serving.app import HEAD_BYTES
from kerasrnn_serving.app import Limits
from kerasrnn_serving.app import make_app
from kerasrnn_serving.predictor import InputError

# The keys a /v1/generate request may hold besides the search options.
GENERATE_KEYS = {"texts", "ids", "method", "max_length", "unknown",
                 "stream", "attention", "stop_at_eos"}
HEADER_TIMEOUT = 10.0


def generation_request(generator, request):
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


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on the request head:
    a connection that has not sent a complete request head within
    ``header_timeout`` seconds of opening (or of its previous answer) is
    closed, so idle and slowloris sockets cannot pile up."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self):
        previous = getattr(self, "_head_deadline", None)
        if previous is not None:
            previous.cancel()
        self._armed_cycle = self.cycle
        self._head_deadline = self.loop.call_later(
            self.header_timeout, self._head_deadline_passed)

    def _head_deadline_passed(self):
        # Still no new request since the deadline was set: close.
        waiting = self.cycle is self._armed_cycle and (
            self.cycle is None or self.cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg):
        """A request h11 cannot parse (a malformed head, a Content-Length
        that is no number, a head over the size limit), answered as JSON
        as every other error, the connection closed."""
        body = json.dumps({
            "error": f"{msg} (malformed request head: check the request "
            "line, the headers and Content-Length; heads are limited to "
            f"{HEAD_BYTES} bytes)", "kind": "bad_request",
        }).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"),
                   (b"server", b"kerasrnn-serving"),
                   (b"x-request-id", uuid.uuid4().hex.encode())]
        output = self.conn.send(h11.Response(status_code=400,
                                             headers=headers,
                                             reason=b"Bad Request"))
        self.transport.write(output)
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

    def connection_lost(self, exc):
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def config(model, host="127.0.0.1", port=0, limits=None, api_key=None,
           max_connections=1024, keep_alive=5, header_timeout=None,
           max_batch_rows=64, max_delay=0.002, access_log=False):
    """The uvicorn ``Config`` and the bound socket for ``model`` (``port``
    0: any free port, read it from the socket)."""
    limits = limits or Limits()
    loopback = is_loopback(host)
    if not loopback:
        logging.getLogger("kerasrnn_serving").warning(
            "Serving on %s, which is not a loopback address: anyone who "
            "can reach it can use the model%s.", host,
            "" if api_key else " (no API key set: --api-key or "
            "KERASRNN_API_KEY)")
    app = make_app(model, limits, api_key=api_key, loopback=loopback,
                   max_batch_rows=max_batch_rows, max_delay=max_delay)
    protocol = type("Protocol", (GuardedH11Protocol,), {
        "header_timeout": header_timeout or HEADER_TIMEOUT})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    settings = uvicorn.Config(
        app, http=protocol, lifespan="on", server_header=False,
        limit_concurrency=max_connections, timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=int(limits.request_timeout) + 5,
        h11_max_incomplete_event_size=HEAD_BYTES, access_log=False,
        log_level="warning",
    )
    logging.getLogger("kerasrnn_serving.access").setLevel(
        logging.INFO if access_log else logging.WARNING)
    return settings, sock


class _Server(uvicorn.Server):
    """uvicorn's server that says where it serves once it does (the
    model warmed up, the socket accepting), and exits 0 after a graceful
    shutdown on SIGTERM or SIGINT (uvicorn re-raises the signal, so the
    process would end "killed by SIGTERM")."""

    banner = None

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self.handle_exit)
                    for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if self.banner and self.started:
            print(self.banner, flush=True)


def serve(model, host="127.0.0.1", port=8000, banner=True, **options):
    """Serves ``model`` until SIGTERM or Ctrl-C (graceful: the requests
    accepted are answered first, then exit 0); prints ``serving on
    http://HOST:PORT`` once it answers requests."""
    settings, sock = config(model, host, port, **options)
    server = _Server(settings)
    address = sock.getsockname()
    if banner:
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        server.banner = f"serving on http://{shown}:{address[1]}"
    server.run(sockets=[sock])
    return 0


@contextlib.contextmanager
def running(model, host="127.0.0.1", **options):
    """Serves ``model`` on a free port in a background thread (tests,
    notebooks); yields the base URL and stops the server on exit."""
    settings, sock = config(model, host, 0, **options)
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run,
                              kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    port = sock.getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

