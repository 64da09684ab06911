"""Serving over HTTP: uvicorn runs the ASGI app of
``kerasrnn_serving.app`` (Starlette) for a ``Predictor`` or a
``Generator``.

    python -m kerasrnn_serving serve artifacts/model --port 8000

Why this stack: uvicorn and Starlette are the maintained, widely
deployed ASGI server and toolkit; one event loop (uvloop where installed)
holds thousands of idle or slow connections at the cost of a socket each
(the previous stdlib server pinned a thread per connection). The HTTP/1.1
parser is httptools (llhttp, Node.js' parser, in C): keep-alive,
pipelining and ``Expect: 100-continue`` come with it, and it costs about
30 % less CPU per request than h11 (measured with
``benchmarks/serving_load.py``). SIGTERM is a graceful shutdown (stop
accepting, finish what was accepted, exit 0). What uvicorn lacks, this
module adds (``GuardedHttpToolsProtocol``): a deadline on the request head
(a client that opens a connection and sends nothing, or half a header, is
closed after ``header_timeout`` seconds), a bound on a head still
arriving, JSON refusals, and the port-0 banner.

The request formats are ``kerasrnn_serving.protocol``; routes, limits,
batching and protocols are ``kerasrnn_serving.app``.
"""

import contextlib
import http
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
import uuid

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kerasrnn_serving.app import HEAD_BYTES
from kerasrnn_serving.app import MAX_HEADERS
from kerasrnn_serving.app import Limits
from kerasrnn_serving.app import make_app
from kerasrnn_serving.generator import Generator
from kerasrnn_serving.predictor import Predictor

HEADER_TIMEOUT = 10.0


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (the httptools parser, llhttp in C)
    with the guards it lacks:

    * a deadline on the request head: a connection that has not sent a
      complete request head within ``header_timeout`` seconds of opening
      (or of its previous answer) is closed, so idle and slowloris
      sockets cannot pile up (uvicorn's keep-alive timer stops at the
      first byte);
    * a bound on a head still arriving: more than ``HEAD_BYTES`` bytes
      without its end is answered 431 and closed (httptools would buffer
      a header without end; a complete head is checked by the app);
    * JSON answers, with a request id, for requests the parser refuses;
    * an answer's head and body in one ``send`` (``_CorkedTransport``).
    """

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport):
        super().connection_made(transport)
        self.transport = _CorkedTransport(transport, self.loop)
        self._heads = 0            # complete request heads so far
        self._in_head = False      # a head has begun and not ended
        self._head_bytes = 0       # bytes read while in that head
        self._head_deadline = None
        self._arm_head_deadline()

    def data_received(self, data):
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            self._refuse(*_parser_refusal(error))
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_BYTES:
                self._refuse(431, "The request head exceeds "
                             f"{HEAD_BYTES} bytes without ending; the limits "
                             f"are {MAX_HEADERS} headers and {HEAD_BYTES} "
                             "bytes.", "head_too_large")

    def on_message_begin(self):
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self):
        self._in_head = False
        self._heads += 1
        super().on_headers_complete()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self):
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._armed_heads = self._heads
        self._head_deadline = self.loop.call_later(
            self.header_timeout, self._head_deadline_passed)

    def _head_deadline_passed(self):
        # No new request head since the deadline was set, and nothing
        # being answered: close.
        waiting = self._heads == self._armed_heads and (
            self.cycle is None or self.cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status, message, kind):
        """Answers ``status`` with a JSON body and closes the connection
        (the parser cannot go on)."""
        body = json.dumps({"error": message, "kind": kind}).encode()
        reason = http.HTTPStatus(status).phrase.encode()
        head = [b"HTTP/1.1 %d %s" % (status, reason),
                b"content-type: application/json",
                b"content-length: %d" % len(body),
                b"connection: close",
                b"server: kerasrnn-serving",
                b"x-request-id: " + uuid.uuid4().hex.encode()]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()

    def send_400_response(self, msg):
        self._refuse(400, msg, "bad_request")

    def connection_lost(self, exc):
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)


class _CorkedTransport:
    """A connection's transport whose writes of one event-loop turn go out
    together: uvicorn writes an answer's head and its body separately, two
    ``send`` calls (and two wake-ups of the client) where one will do.
    Closing sends what is pending first; everything else is the
    transport's."""

    def __init__(self, transport, loop):
        self._transport, self._loop = transport, loop
        self._pending = []

    def write(self, data):
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self):
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self):
        self._flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _parser_refusal(error):
    """``(status, message, kind)`` for a request the parser refused."""
    reason = str(error)
    if "PRI" in reason:   # the HTTP/2 connection preface
        return (505, "This server speaks HTTP/1.1 (and 1.0), not HTTP/2.",
                "http_version_not_supported")
    if "Invalid method" in reason:
        return (400, "The request method is not an HTTP method (malformed "
                "request head); the routes take GET and POST.",
                "bad_request")
    return (400, f"{reason} (malformed request head: check the request "
            "line, the headers and Content-Length; heads are limited to "
            f"{HEAD_BYTES} bytes)", "bad_request")


def open_export(directory, kind, batch_size=256, quantized=False,
                threads=None):
    """The ``Predictor`` (``kind`` "classifier") or ``Generator`` (the
    generation kinds) of an export directory: picklable with
    ``functools.partial``, so each worker process opens its own."""
    if kind == "classifier":
        return Predictor(directory, batch_size=batch_size,
                         quantized=quantized, threads=threads)
    return Generator(directory, threads=threads or 1)


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def config(model, host="127.0.0.1", port=0, limits=None, api_key=None,
           max_connections=1024, keep_alive=5, header_timeout=None,
           max_batch_rows=64, max_delay=0.002, access_log=False,
           reuse_port=False):
    """The uvicorn ``Config`` and the bound socket for ``model`` (``port``
    0: any free port, read it from the socket; ``reuse_port``: several
    processes share the port, ``kerasrnn_serving.workers``)."""
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
    protocol = type("Protocol", (GuardedHttpToolsProtocol,), {
        "header_timeout": header_timeout or HEADER_TIMEOUT})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    settings = uvicorn.Config(
        app, http=protocol, lifespan="on", server_header=False,
        limit_concurrency=max_connections, timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=int(limits.request_timeout) + 5,
        access_log=False,
        log_level="warning",
    )
    logging.getLogger("kerasrnn_serving.access").setLevel(
        logging.INFO if access_log else logging.WARNING)
    return settings, sock


class Server(uvicorn.Server):
    """uvicorn's server that says where it serves once it does (the
    model warmed up, the socket accepting: ``banner`` printed,
    ``on_started()`` called), and exits 0 after a graceful shutdown on
    SIGTERM or SIGINT (uvicorn re-raises the signal, so the process would
    end "killed by SIGTERM")."""

    banner = None
    on_started = None

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
        if self.started:
            if self.banner:
                print(self.banner, flush=True)
            if self.on_started is not None:
                self.on_started()


def serve(model, host="127.0.0.1", port=8000, banner=True, **options):
    """Serves ``model`` (a ``Predictor`` or ``Generator``) until SIGTERM or
    Ctrl-C (graceful: the requests accepted are answered first, then exit
    0); prints ``serving on http://HOST:PORT`` once it answers requests.
    Several processes on one port: ``kerasrnn_serving.workers``."""
    settings, sock = config(model, host, port, **options)
    server = Server(settings)
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

