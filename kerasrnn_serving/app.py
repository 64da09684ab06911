"""The HTTP application: an ASGI app (Starlette) around a ``Predictor`` or
a ``Generator``, served by uvicorn (``kerasrnn_serving.server``).

Routes (query strings are ignored; every answer is JSON unless noted):

* ``GET /health``: alive (the process answers). ``GET /ready``: the model
  is loaded and a warm-up inference passed at start-up (else 503).
* ``GET /metrics``: Prometheus text: requests by route and status,
  latency histograms, batch sizes, queue depth, in-flight requests,
  errors by kind.
* ``GET /v1/metadata``; ``POST /v1/predict`` (classifiers) and ``POST
  /v1/generate`` (seq2seq and language models, ``"stream": true`` as
  server-sent events), with the bodies described in
  ``kerasrnn_serving.server``.
* Open Inference Protocol (KServe v2), for classifiers: ``GET /v2``,
  ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET
  /v2/models/{name}``, ``GET /v2/models/{name}/ready``, ``POST
  /v2/models/{name}/infer`` (``tritonclient.http`` talks to it).
* ``GET /openapi.json``: the OpenAPI description of the above.

Limits (``Limits``, from the manifest and the command line): body size
(413), rows, sequence length and rows × length per request (413 with
what was asked and the limit), in-flight requests (503 with
``Retry-After``), a deadline per request (504), the body read timeout
(408). Security: an optional API key (``Authorization: Bearer KEY`` or
``X-API-Key``) on every route but the health ones; on a loopback bind the
``Host`` header must name the loopback (DNS rebinding); a POST must be
``application/json`` (415); error messages never echo more than 200
characters of the request.
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import re
import time
import uuid

import numpy as np
import prometheus_client
from prometheus_client import multiprocess
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from kerasrnn_serving import batching
from kerasrnn_serving.generator import Generator
from kerasrnn_serving.predictor import InputError
from kerasrnn_serving.protocol import add_attention
from kerasrnn_serving.protocol import generation_request
from kerasrnn_serving.protocol import parse_inputs

ACCESS_LOG = logging.getLogger("kerasrnn_serving.access")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
DTYPES_V2 = {"float32": "FP32", "int32": "INT32", "int64": "INT64",
             "bool": "BOOL"}
NUMPY_OF_V2 = {"FP32": "float32", "FP64": "float64", "INT32": "int32",
               "INT64": "int64", "BOOL": "bool", "INT8": "int8",
               "INT16": "int16", "UINT8": "uint8", "FP16": "float16"}
ECHO = 200   # characters of a request an error message may quote
# The largest request head (request line and headers), and header count.
HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100


@dataclasses.dataclass
class Limits:
    """What one request may ask for; ``None``: no limit of that kind.

    ``max_rows`` × ``max_length`` bounds a classifier request's cells
    unless ``max_cells`` is smaller; generation requests are bounded by
    the ``Generator``'s own limits (``max_length``, ``beam_width``,
    ``num_samples``, ``source_length``) and by ``max_rows`` texts.
    """

    max_body_bytes: int = 4 * 2**20
    max_rows: int = 256
    max_length: int = 2048
    max_cells: int = 256 * 512
    max_in_flight: int = 64
    request_timeout: float = 30.0
    body_timeout: float = 10.0


class HTTPError(Exception):
    def __init__(self, status, message, kind="bad_request", headers=None):
        message = clip(message)
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}


def clip(message):
    """``message`` with every run of more than ``ECHO`` characters without
    a space cut to ``ECHO`` (a quoted request value never comes back
    whole), and lone surrogates escaped (they cannot be UTF-8)."""
    message = re.sub(r"\S{%d,}" % (ECHO + 1),
                     lambda match: match.group(0)[:ECHO] + "...", message)
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def make_app(model, limits=None, api_key=None, loopback=True,
             max_batch_rows=64, max_delay=0.002):
    """The ASGI application serving ``model`` (a ``Predictor`` or a
    ``Generator``); see the module doc. ``loopback``: the server listens on
    a loopback address, so the Host header is checked."""
    state = _State(model, limits or Limits(), api_key, loopback,
                   max_batch_rows, max_delay)
    generation = isinstance(model, Generator)
    routes = [
        Route("/health", state.health, methods=["GET"]),
        Route("/ready", state.ready, methods=["GET"]),
        Route("/metrics", state.metrics_route, methods=["GET"]),
        Route("/openapi.json", state.openapi, methods=["GET"]),
        Route("/v1/metadata", state.metadata, methods=["GET"]),
    ]
    if generation:
        routes.append(Route("/v1/generate", state.generate,
                            methods=["POST"]))
    else:
        routes += [
            Route("/v1/predict", state.predict, methods=["POST"]),
            Route("/v2", state.v2_server, methods=["GET"]),
            Route("/v2/health/live", state.health, methods=["GET"]),
            Route("/v2/health/ready", state.ready, methods=["GET"]),
            Route("/v2/models/{name}", state.v2_model, methods=["GET"]),
            Route("/v2/models/{name}/ready", state.v2_model_ready,
                  methods=["GET"]),
            Route("/v2/models/{name}/infer", state.v2_infer,
                  methods=["POST"]),
        ]
    app = Starlette(routes=routes, lifespan=state.lifespan,
                    exception_handlers={404: state.not_found,
                                        405: state.not_allowed,
                                        HTTPError: state.error_answer,
                                        Exception: state.internal_error})
    app.state.serving = state
    return _Guard(app, state)


class _Metrics:
    """The Prometheus metrics of one app (its own registry), or, under
    ``kerasrnn_serving.workers`` (``$PROMETHEUS_MULTIPROC_DIR`` set),
    this worker's share of the metrics of all workers."""

    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry()
        self.shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.requests = prometheus_client.Counter(
            "kerasrnn_requests", "Requests answered", ["route", "status"],
            registry=self.registry)
        self.latency = prometheus_client.Histogram(
            "kerasrnn_request_seconds", "Request latency", ["route"],
            registry=self.registry,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                     5, 10, 30))
        self.batch_rows = prometheus_client.Histogram(
            "kerasrnn_batch_rows", "Rows per session.run", ["kind"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue_depth = prometheus_client.Gauge(
            "kerasrnn_queue_depth", "Requests waiting for a batch",
            registry=self.registry, multiprocess_mode="livesum")
        self.in_flight = prometheus_client.Gauge(
            "kerasrnn_in_flight", "Requests being answered",
            registry=self.registry, multiprocess_mode="livesum")
        self.errors = prometheus_client.Counter(
            "kerasrnn_errors", "Errors by kind", ["kind"],
            registry=self.registry)
        self.cancelled = prometheus_client.Counter(
            "kerasrnn_cancelled", "Requests whose client went away",
            registry=self.registry)

    def exposition(self):
        """The Prometheus text of this app, or of every worker."""
        registry = self.registry
        if self.shared:
            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, self.shared)
        return prometheus_client.generate_latest(registry)


class _State:
    def __init__(self, model, limits, api_key, loopback, max_batch_rows,
                 max_delay):
        self.model = model
        self.limits = limits
        self.api_key = api_key
        self.loopback = loopback
        self.metrics = _Metrics()
        self.generation = isinstance(model, Generator)
        self.is_ready = False
        self.in_flight = 0
        self.batcher = None
        self.max_batch_rows = max_batch_rows
        self.max_delay = max_delay
        self.name = model.manifest["model_name"]
        # One thread per generation in flight: every search waits on the
        # step batcher, so a smaller pool would cap how many share a step.
        self.searches = concurrent.futures.ThreadPoolExecutor(
            limits.max_in_flight + 1, thread_name_prefix="kerasrnn-search")

    # --- life cycle ----------------------------------------------------------

    def lifespan(self, app):
        return _Lifespan(self)

    async def start(self):
        if self.generation:
            self.model.batch_steps(observe=self._observe("step"))
            await asyncio.to_thread(self._warm_up_generation)
        else:
            axes = {e["name"]: e["batch_axis"] for e in
                    self.model.manifest["inputs"]
                    + self.model.manifest["outputs"]}
            self.batcher = batching.Batcher(
                self._run_batch, axes, self.max_batch_rows, self.max_delay,
                observe=self._observe("predict"))
            await self.batcher.start()
            await asyncio.to_thread(self._warm_up_predictor)
        self.is_ready = True

    async def stop(self):
        self.is_ready = False
        if self.batcher is not None:
            await self.batcher.stop()
        self.searches.shutdown(wait=False, cancel_futures=True)

    def _observe(self, kind):
        def observe(rows, depth):
            self.metrics.batch_rows.labels(kind).observe(rows)
            self.metrics.queue_depth.set(depth)

        return observe

    def _warm_up_predictor(self):
        feeds = _warm_up_feeds(self.model.manifest)
        self.model.session.run(None, feeds)

    def _warm_up_generation(self):
        if self.model.kind == "captioner":
            image = self.model.manifest["image"]
            self.model.generate_ids(np.zeros(
                (1, image["height"], image["width"], image["channels"]),
                np.float32), "greedy", 2)
            return
        start = [[1]] if self.model.kind == "language_model" else None
        if start is None:
            pad = self.model.tokens["pad_id"]
            token = 1 if pad != 1 else 2
            start = [[min(token, self.model.source_vocabulary_size - 1)]]
        self.model.generate_ids(start, "greedy", 2)

    def _run_batch(self, feeds):
        outputs = self.model.session.run(self.model.outputs, feeds)
        return dict(zip(self.model.outputs, outputs))

    # --- routes ------------------------------------------------------------

    async def health(self, request):
        return JSONResponse({"status": "ok", "model": self.name,
                             "provider": self.model.provider})

    async def ready(self, request):
        if not self.is_ready:
            raise HTTPError(503, "The model is still loading.", "not_ready")
        return JSONResponse({"status": "ready", "model": self.name,
                             "provider": self.model.provider})

    async def metrics_route(self, request):
        return Response(self.metrics.exposition(),
                        media_type=prometheus_client.CONTENT_TYPE_LATEST)

    async def openapi(self, request):
        return JSONResponse(openapi_description(self))

    async def metadata(self, request):
        if self.generation:
            return JSONResponse(self.model.metadata())
        manifest = self.model.manifest
        return JSONResponse({
            "model": self.name, "provider": self.model.provider,
            "inputs": manifest["inputs"], "outputs": manifest["outputs"],
            "limits": dataclasses.asdict(self.limits),
        })

    async def error_answer(self, request, error):
        """An ``HTTPError`` raised by a route, as JSON."""
        self.metrics.errors.labels(error.kind).inc()
        return JSONResponse({"error": error.message, "kind": error.kind},
                            status_code=error.status, headers=error.headers)

    async def internal_error(self, request, error):
        """An unexpected exception, as JSON with the request id (Starlette
        re-raises it afterwards; the guard logs it)."""
        request_id = request.scope.get("request_id", "?")
        return await self.error_answer(request, HTTPError(
            500, f"Internal error ({type(error).__name__}); request id "
            f"{request_id}.", "internal"))

    async def not_found(self, request, error):
        return await self.error_answer(request, HTTPError(
            404, f"No route {request.url.path[:ECHO]}; see /openapi.json "
            "for the routes.", "not_found"))

    async def not_allowed(self, request, error):
        return await self.error_answer(request, HTTPError(
            405, f"{request.method} is not allowed on "
            f"{request.url.path[:ECHO]}.", "method_not_allowed",
            headers=dict(error.headers or {})))

    async def predict(self, request):
        body = await _json_body(request, self.limits)
        if not isinstance(body, dict) or "inputs" not in body:
            raise HTTPError(400, 'The request must be a JSON object with '
                            '"inputs" (and optionally "lengths").',
                            "invalid_request")
        feeds = self._prepare(body.get("inputs"), body.get("lengths"))
        outputs = await self._infer(request, feeds)
        return JSONResponse({"outputs": {name: value.tolist() for name,
                                         value in outputs.items()}})

    def _prepare(self, inputs, lengths):
        try:
            inputs, lengths = parse_inputs(self.model, inputs, lengths)
            feeds = self.model.prepare(inputs, lengths)
        except InputError as error:
            raise HTTPError(400, str(error), "invalid_input") \
                from None
        self._check_size(feeds)
        return feeds

    def _check_size(self, feeds):
        """Rows, sequence length and rows × length within the limits."""
        limits = self.limits
        for entry in self.model.manifest["inputs"]:
            value = feeds[entry["name"]]
            rows = value.shape[entry["batch_axis"]]
            if limits.max_rows is not None and rows > limits.max_rows:
                raise HTTPError(413, f"Input '{entry['name']}' has {rows} "
                                f"rows; the limit is {limits.max_rows}. Split "
                                "the request.", "too_large")
            axis = entry["time_axis"]
            if axis is None:
                continue
            length = value.shape[axis]
            if limits.max_length is not None and length > limits.max_length:
                raise HTTPError(413, f"Input '{entry['name']}' has "
                                f"sequences of {length} steps; the limit is "
                                f"{limits.max_length}.", "too_large")
            if limits.max_cells is not None and rows * length > (
                limits.max_cells
            ):
                raise HTTPError(413, f"Input '{entry['name']}' holds {rows} "
                                f"x {length} = {rows * length} steps; the "
                                f"limit is {limits.max_cells} per request. "
                                "Split it.", "too_large")

    @contextlib.contextmanager
    def admitted(self):
        """Counts one request in flight (its body read, its model work
        ahead), or refuses it with 503 at the limit: a slow client that is
        still sending its body holds a socket, not a place."""
        if self.in_flight >= self.limits.max_in_flight:
            raise HTTPError(503, "The server is at its limit of "
                            f"{self.limits.max_in_flight} requests in "
                            "flight; retry shortly.", "overloaded",
                            headers={"Retry-After": "1"})
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)

    async def _infer(self, request, feeds):
        """Runs ``feeds`` through the batcher, abandoning them when the
        client goes away or the deadline passes."""
        with self.admitted():
            return await self._infer_admitted(request, feeds)

    async def _infer_admitted(self, request, feeds):
        work = self.batcher.submit(feeds)
        watch = asyncio.ensure_future(_disconnected(request.receive))
        try:
            done, _ = await asyncio.wait(
                {work, watch}, timeout=self.limits.request_timeout,
                return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if work in done:
            return work.result()
        work.cancel()
        if watch in done:
            self.metrics.cancelled.inc()
            raise ClientDisconnect()
        raise HTTPError(504, "The request did not finish within "
                        f"{self.limits.request_timeout:g} s.", "timeout")

    async def generate(self, request):
        body = await _json_body(request, self.limits)
        inputs = [body.get(key) for key in ("texts", "ids", "images")] \
            if isinstance(body, dict) else []
        count = next((len(value) for value in inputs
                      if isinstance(value, list)), 1)
        if self.limits.max_rows is not None and count > self.limits.max_rows:
            raise HTTPError(413, f"The request holds {count} inputs; the "
                            f"limit is {self.limits.max_rows}. Split it.",
                            "too_large")
        try:
            run, stream, attention = generation_request(self.model, body)
        except InputError as error:
            raise HTTPError(400, str(error), "invalid_input") \
                from None
        if stream:
            return await self._stream(request, run)
        with self.admitted():
            return await self._generate_admitted(request, run, body,
                                                 attention)

    async def _generate_admitted(self, request, run, body, attention):
        cancelled = asyncio.Event()

        def work():
            batching.request_context.cancelled = cancelled.is_set
            try:
                results = run()
                if attention:
                    add_attention(self.model, body, results)
                return results
            finally:
                batching.request_context.cancelled = None

        task = asyncio.ensure_future(asyncio.get_running_loop()
                                     .run_in_executor(self.searches, work))
        watch = asyncio.ensure_future(_disconnected(request.receive))
        try:
            done, _ = await asyncio.wait(
                {task, watch}, timeout=self.limits.request_timeout,
                return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if task not in done:
            cancelled.set()   # the search stops at its next step
            if watch in done:
                self.metrics.cancelled.inc()
                raise ClientDisconnect()
            raise HTTPError(504, "The generation did not finish within "
                            f"{self.limits.request_timeout:g} s.",
                            "timeout")
        try:
            results = task.result()
        except InputError as error:
            raise HTTPError(400, str(error), "invalid_input") \
                from None
        return JSONResponse({"results": results})

    async def _stream(self, request, run):
        """Server-sent events, one per decoded token; the decoding stops
        when the client goes away or a send stalls."""
        loop = asyncio.get_running_loop()
        admission = self.admitted()
        admission.__enter__()   # left when the stream ends (_EventStream)
        try:
            events = run()
        except BaseException:
            admission.__exit__(None, None, None)
            raise
        cancelled = [False]

        def next_event():
            batching.request_context.cancelled = lambda: cancelled[0]
            try:
                return next(events, None)
            finally:
                batching.request_context.cancelled = None

        try:
            first = await loop.run_in_executor(self.searches, next_event)
        except InputError as error:
            admission.__exit__(None, None, None)
            raise HTTPError(400, str(error), "invalid_input") \
                from None
        except BaseException:
            admission.__exit__(None, None, None)
            raise
        return _EventStream(first, next_event, events, cancelled, self,
                            admission)

    # --- KServe v2 -----------------------------------------------------------

    def _check_name(self, name):
        if name != self.name:
            raise HTTPError(404, f"No model '{name[:ECHO]}'; this server "
                            f"serves '{self.name}'.", "not_found")

    async def v2_server(self, request):
        import kerasrnn_serving

        return JSONResponse({"name": "kerasrnn-serving",
                             "version": kerasrnn_serving.__version__,
                             "extensions": []})

    async def v2_model(self, request):
        self._check_name(request.path_params["name"])
        manifest = self.model.manifest

        def tensor(entry):
            return {"name": entry["name"],
                    "datatype": DTYPES_V2[entry["dtype"]],
                    "shape": [s if isinstance(s, int) else -1
                              for s in entry["shape"]]}

        return JSONResponse({
            "name": self.name, "versions": ["1"], "platform":
            "onnxruntime_onnx",
            "inputs": [tensor(e) for e in manifest["inputs"]],
            "outputs": [tensor(e) for e in manifest["outputs"]],
        })

    async def v2_model_ready(self, request):
        self._check_name(request.path_params["name"])
        return await self.ready(request)

    async def v2_infer(self, request):
        self._check_name(request.path_params["name"])
        body = await _json_body(request, self.limits)
        inputs, wanted, request_id = _v2_inputs(self.model, body)
        feeds = self._prepare(inputs, None)
        outputs = await self._infer(request, feeds)
        names = wanted or list(outputs)
        unknown = sorted(set(names) - set(outputs))
        if unknown:
            raise HTTPError(400, f"Unknown output(s) {unknown[:3]}; the "
                            f"model gives {sorted(outputs)}.",
                            "invalid_request")
        answer = {
            "model_name": self.name, "model_version": "1",
            "outputs": [
                {"name": name,
                 "datatype": DTYPES_V2.get(str(outputs[name].dtype), "FP32"),
                 "shape": list(outputs[name].shape),
                 "data": outputs[name].ravel().tolist()}
                for name in names
            ],
        }
        if request_id is not None:
            answer["id"] = request_id
        return JSONResponse(answer)


class _Lifespan:
    def __init__(self, state):
        self.state = state

    async def __aenter__(self):
        await self.state.start()

    async def __aexit__(self, *exc):
        await self.state.stop()


class _EventStream(Response):
    """A ``text/event-stream`` answer from a blocking event iterator."""

    media_type = "text/event-stream"

    def __init__(self, first, next_event, events, cancelled, state,
                 admission):
        self.admission = admission
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache")]
        self.first, self.next_event = first, next_event
        self.events, self.cancelled, self.state = events, cancelled, state

    async def __call__(self, scope, receive, send):
        loop = asyncio.get_running_loop()
        await send({"type": "http.response.start", "status": 200,
                    "headers": self.raw_headers})
        watch = asyncio.ensure_future(_disconnected(receive))
        event = self.first
        try:
            while event is not None:
                kind = "event: done\n" if event.get("done") else ""
                chunk = f"{kind}data: {json.dumps(event)}\n\n".encode()
                if watch.done():
                    raise ClientDisconnect()
                await asyncio.wait_for(
                    send({"type": "http.response.body", "body": chunk,
                          "more_body": True}),
                    self.state.limits.body_timeout)
                event = await loop.run_in_executor(self.state.searches,
                                                   self.next_event)
            await send({"type": "http.response.body", "body": b""})
        except (ClientDisconnect, OSError, asyncio.TimeoutError):
            self.state.metrics.cancelled.inc()
        finally:
            watch.cancel()
            self.cancelled[0] = True
            await loop.run_in_executor(self.state.searches,
                                       self.events.close)
            self.admission.__exit__(None, None, None)


async def _disconnected(receive):
    """Returns when the client has gone away: after the body is read, the
    server's next ASGI message is ``http.disconnect`` (no polling)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _json_body(request, limits):
    """The request body parsed as JSON, read under the size and time
    limits."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise HTTPError(400, "Content-Length must be a non-negative "
                            f"integer. Received: {declared[:40]!r}")
        if int(declared) > limits.max_body_bytes:
            raise HTTPError(413, f"The body ({declared} bytes) exceeds "
                            f"{limits.max_body_bytes} bytes; split the "
                            "request.", "too_large")
    elif "chunked" not in request.headers.get("transfer-encoding", ""):
        raise HTTPError(411, "A POST needs a Content-Length (or chunked "
                        "transfer encoding).", "length_required")
    chunks, size = [], 0

    async def read():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise HTTPError(413, "The body exceeds "
                                f"{limits.max_body_bytes} bytes; split the "
                                "request.", "too_large")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), limits.body_timeout)
    except asyncio.TimeoutError:
        raise HTTPError(408, "The body did not arrive within "
                        f"{limits.body_timeout:g} s.", "timeout") from None
    body = b"".join(chunks)
    if not body:
        raise HTTPError(400, "The request has no body: send a JSON object.")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HTTPError(400, f"The body is not JSON: {str(error)[:ECHO]}") \
            from None
    except (RecursionError, ValueError) as error:
        # Too deeply nested, or an integer of more than 4,300 digits.
        raise HTTPError(400, "The body is JSON no model input can be: "
                        f"{str(error)[:ECHO]}") from None


def _v2_inputs(model, body):
    """``({name: array}, requested output names or None, id)`` of a
    KServe v2 inference request."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"),
                                                    list):
        raise HTTPError(400, 'A v2 inference request is a JSON object with '
                        'an "inputs" list.', "invalid_request")
    inputs = {}
    for index, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not all(
            key in tensor for key in ("name", "shape", "datatype", "data")
        ):
            raise HTTPError(400, f"inputs[{index}] needs name, shape, "
                            "datatype and data.", "invalid_request")
        name, shape = tensor["name"], tensor["shape"]
        if not isinstance(name, str):
            raise HTTPError(400, f"inputs[{index}]: name must be a string.",
                            "invalid_request")
        dtype = NUMPY_OF_V2.get(tensor["datatype"])
        if dtype is None:
            raise HTTPError(400, f"inputs[{index}]: datatype must be one of "
                            f"{sorted(NUMPY_OF_V2)}.", "invalid_request")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0
            for s in shape
        ):
            raise HTTPError(400, f"inputs[{index}] ('{name[:ECHO]}'): shape "
                            "must be a list of sizes >= 0.",
                            "invalid_request")
        try:
            data = np.asarray(tensor["data"], dtype=dtype).ravel()
            inputs[name] = data.reshape(shape)
        except (ValueError, TypeError, OverflowError) as error:
            raise HTTPError(400, f"inputs[{index}] ('{name[:ECHO]}'): the "
                            f"data do not fill shape {shape[:8]} with "
                            f"{tensor['datatype']} values "
                            f"({str(error)[:ECHO]}).", "invalid_input") \
                from None
    wanted = None
    if "outputs" in body:
        outputs = body["outputs"]
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str)
            for o in outputs
        ):
            raise HTTPError(400, '"outputs" must be a list of {"name": ...}.',
                            "invalid_request")
        wanted = [o["name"] for o in outputs]
    request_id = body.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or len(request_id) > ECHO
        or request_id != clip(request_id)
    ):
        raise HTTPError(400, f'"id" must be a string of at most {ECHO} '
                        "characters (valid Unicode).", "invalid_request")
    return inputs, wanted, request_id


def _warm_up_feeds(manifest):
    feeds = {}
    for entry in manifest["inputs"]:
        shape = [size if isinstance(size, int) else 1
                 for size in entry["shape"]]
        dtype = entry["dtype"]
        if dtype == "bool":
            feeds[entry["name"]] = np.ones(shape, bool)
        elif dtype.startswith("int"):
            feeds[entry["name"]] = np.ones(shape, dtype)
        else:
            feeds[entry["name"]] = np.zeros(shape, dtype)
    return feeds


class _Guard:
    """The ASGI middleware around the routes: request ids, the access
    log, metrics, the API key, the Host check, the JSON content type, the
    in-flight limit, and errors as JSON ``{"error", "kind"}``."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    def __getattr__(self, name):
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        scope["request_id"] = request_id
        path = scope["path"]
        route = _route_label(path)
        status = [500]
        sent = [0]
        answered = [False]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                answered[0] = True
                message = dict(message, headers=list(message.get(
                    "headers", [])) + [
                    (b"x-request-id", request_id.encode("latin-1")),
                    (b"server", b"kerasrnn-serving")])
            elif message["type"] == "http.response.body":
                sent[0] += len(message.get("body", b""))
            await send(message)

        try:
            self._check(scope, headers, path)
            await self.app(scope, receive, send_with_id)
        except HTTPError as error:
            state.metrics.errors.labels(error.kind).inc()
            await _error(send_with_id, error)
        except ClientDisconnect:
            status[0] = 499
        except Exception as error:  # noqa: BLE001 - keep serving
            state.metrics.errors.labels("internal").inc()
            logging.getLogger("kerasrnn_serving").exception(
                "request %s failed", request_id)
            if not answered[0]:   # nothing answered yet
                await _error(send_with_id, HTTPError(
                    500, f"Internal error ({type(error).__name__}); request "
                    f"id {request_id}.", "internal"))
        finally:
            seconds = time.perf_counter() - started
            state.metrics.requests.labels(route, str(status[0])).inc()
            state.metrics.latency.labels(route).observe(seconds)
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                ACCESS_LOG.info(json.dumps({
                    "request_id": request_id, "method": scope["method"],
                    "path": path[:ECHO], "status": status[0],
                    "ms": round(seconds * 1e3, 2), "bytes": sent[0],
                    "client": (scope.get("client") or ["?"])[0],
                }))

    def _check(self, scope, headers, path):
        state = self.state
        head = len(scope.get("raw_path") or b"") + sum(
            len(name) + len(value) + 4 for name, value in scope["headers"])
        if head > HEAD_BYTES or len(scope["headers"]) > MAX_HEADERS:
            raise HTTPError(431, f"The request head holds "
                            f"{len(scope['headers'])} headers and {head} "
                            f"bytes; the limits are {MAX_HEADERS} headers "
                            f"and {HEAD_BYTES} bytes.", "head_too_large")
        if scope["http_version"] not in ("1.0", "1.1"):
            raise HTTPError(505, f"HTTP/{scope['http_version']} is not "
                            "served: speak HTTP/1.1 (or 1.0).",
                            "http_version_not_supported")
        hosts = sum(name == b"host" for name, _ in scope["headers"])
        if hosts > 1 or (hosts == 0 and scope["http_version"] == "1.1"):
            raise HTTPError(400, "An HTTP/1.1 request needs exactly one "
                            f"Host header (RFC 9112); this one has {hosts}.",
                            "bad_request")
        if state.loopback:
            host = headers.get("host", "").lower()
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else (
                host.split("]")[0] + "]")
            if name not in LOOPBACK_HOSTS:
                raise HTTPError(421, "This server listens on the loopback "
                                f"only; Host {host[:ECHO]!r} is refused.",
                                "bad_host")
        if state.api_key is not None and path not in (
            "/health", "/ready", "/v2/health/live", "/v2/health/ready"
        ):
            given = headers.get("x-api-key")
            authorization = headers.get("authorization", "")
            if authorization.lower().startswith("bearer "):
                given = authorization[7:]
            if given is None or not hmac.compare_digest(
                given.encode(), state.api_key.encode()
            ):
                raise HTTPError(401, "A valid API key is needed "
                                "(Authorization: Bearer KEY, or X-API-Key).",
                                "unauthorized",
                                headers={"WWW-Authenticate": "Bearer"})
        if scope["method"] == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip()
            # tritonclient's v2 requests carry no Content-Type at all.
            v2_untyped = path.startswith("/v2/") and not kind
            if kind.lower() != "application/json" and not v2_untyped:
                raise HTTPError(415, "A POST body must be JSON (Content-Type:"
                                f" application/json). Received: "
                                f"{kind[:ECHO]!r}", "unsupported_media_type")


def _route_label(path):
    if path.startswith("/v2/models/"):
        return "/v2/models/{name}" + (
            "/infer" if path.endswith("/infer") else "")
    known = ("/health", "/ready", "/metrics", "/openapi.json",
             "/v1/metadata", "/v1/predict", "/v1/generate", "/v2",
             "/v2/health/live", "/v2/health/ready")
    return path if path in known else "other"


async def _error(send, error):
    body = json.dumps({"error": error.message, "kind": error.kind},
                      ensure_ascii=True).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode())
                for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status,
                "headers": headers})
    await send({"type": "http.response.body", "body": body})


def openapi_description(state):
    """A small OpenAPI 3.0 description of the routes this app serves."""
    json_body = {"content": {"application/json": {"schema": {
        "type": "object"}}}}
    answers = {
        "200": {"description": "the answer",
                "content": {"application/json": {"schema": {
                    "type": "object"}}}},
        "400": {"description": "a request the model cannot take (the "
                "message names the problem)"},
        "401": {"description": "no or a wrong API key"},
        "404": {"description": "no such route or model"},
        "405": {"description": "method not allowed"},
        "408": {"description": "the body came too slowly"},
        "411": {"description": "no Content-Length"},
        "413": {"description": "over a limit"},
        "415": {"description": "not JSON"},
        "421": {"description": "Host is not the loopback"},
        "431": {"description": "request head too large"},
        "505": {"description": "HTTP version not supported"},
        "503": {"description": "overloaded or not ready"},
        "504": {"description": "over the request deadline"},
    }
    paths = {
        "/health": {"get": {"responses": {"200": answers["200"]}}},
        "/ready": {"get": {"responses": {"200": answers["200"],
                                         "503": {"description": "loading"}}}},
        "/v1/metadata": {"get": {"responses": {"200": answers["200"]}}},
    }
    if state.generation:
        paths["/v1/generate"] = {"post": {"requestBody": json_body,
                                          "responses": answers}}
    else:
        paths["/v1/predict"] = {"post": {"requestBody": json_body,
                                         "responses": answers}}
        paths["/v2/models/{name}/infer"] = {"post": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": json_body, "responses": answers}}
    return {"openapi": "3.0.3",
            "info": {"title": "kerasrnn-serving", "version": "1"},
            "paths": paths}
