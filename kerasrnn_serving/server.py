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

The request formats are ``kerasrnn_serving.protocol``; routes, limits,
batching and protocols are ``kerasrnn_serving.app``.
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
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from kerasrnn_serving.app import HEAD_BYTES
from kerasrnn_serving.app import Limits
from kerasrnn_serving.app import make_app

HEADER_TIMEOUT = 10.0


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

