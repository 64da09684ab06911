"""Several server processes on one port, supervised.

    python -m kerasrnn_serving serve DIR --workers 4

One Python process answers with one event loop, so it uses about one core
for HTTP and JSON however many the machine has. ``serve_workers`` runs
``count`` of them on one port:

* the parent binds the port with ``SO_REUSEPORT`` (which keeps it while
  the workers start), then spawns ``count`` worker processes. Each opens
  its own onnxruntime sessions and runs its own uvicorn event loop on its
  own ``SO_REUSEPORT`` socket of the port, and the kernel spreads new
  connections over the workers by a hash of their addresses;
* the banner is printed once every worker is ready (model loaded, warm-up
  inference passed), so ``serving on http://...`` means what it does for
  one process;
* a worker that dies is replaced, and its live gauges are dropped;
* SIGTERM or SIGINT is passed on to every worker, whose graceful shutdown
  answers what it accepted; the parent exits 0 when every worker did;
* ``/metrics`` adds up all the workers: ``prometheus_client``'s
  multiprocess mode, in a temporary directory the parent removes at the
  end. Counters and histograms are summed; the in-flight and queue-depth
  gauges are summed over the live workers.

Workers are spawned (fresh interpreters), not forked: an onnxruntime
session's thread pool does not survive a fork. Linux and macOS only
(``SO_REUSEPORT``).
"""

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time

LOG = logging.getLogger("kerasrnn_serving")
# Seconds a worker may take to load its model and warm up.
START_TIMEOUT = 120.0
# The least seconds between two replacements of dead workers.
RESPAWN_INTERVAL = 1.0


def serve_workers(open_model, count, host="127.0.0.1", port=8000,
                  banner=True, **options):
    """Serves ``open_model()`` (a picklable function returning a
    ``Predictor`` or ``Generator``) from ``count`` worker processes on
    ``port`` (0: a free one) until SIGTERM or SIGINT; returns the exit
    code (0 after a graceful shutdown of every worker). ``options`` are
    ``kerasrnn_serving.server.config``'s."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("--workers needs SO_REUSEPORT (Linux, macOS); "
                           "run one process per port instead.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    port = holder.getsockname()[1]
    metrics = tempfile.mkdtemp(prefix="kerasrnn-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    context = multiprocessing.get_context("spawn")
    stop = []

    def start_worker():
        ready = context.Event()
        process = context.Process(
            target=_worker, args=(open_model, host, port, options, ready),
            name="kerasrnn-worker", daemon=False)
        process.start()
        return process, ready

    previous = {number: signal.signal(number, lambda n, _: stop.append(n))
                for number in (signal.SIGINT, signal.SIGTERM)}
    workers = []
    try:
        workers = [start_worker() for _ in range(count)]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(ready.is_set() for _, ready in workers):
            dead = [p for p, _ in workers if p.exitcode is not None]
            if dead or stop or time.monotonic() > deadline:
                what = (f"a worker exited with code {dead[0].exitcode}"
                        if dead else "stopped" if stop else
                        f"the workers were not ready in {START_TIMEOUT:g} s")
                LOG.error("serving did not start: %s", what)
                return _shut_down(workers, options) or 2
            time.sleep(0.05)
        holder.close()
        if banner:
            shown = f"[{host}]" if ":" in host else host
            print(f"{count} worker processes (pids "
                  f"{', '.join(str(p.pid) for p, _ in workers)})",
                  flush=True)
            print(f"serving on http://{shown}:{port}", flush=True)
        last_respawn = 0.0
        while not stop:
            time.sleep(0.1)
            for index, (process, _) in enumerate(workers):
                if process.exitcode is None or stop:
                    continue
                wait = RESPAWN_INTERVAL - (time.monotonic() - last_respawn)
                if wait > 0:
                    time.sleep(wait)
                LOG.warning("worker %d exited with code %s; starting "
                            "another", process.pid, process.exitcode)
                _mark_dead(process.pid)
                workers[index] = start_worker()
                last_respawn = time.monotonic()
        return _shut_down(workers, options)
    finally:
        holder.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics, ignore_errors=True)


def _shut_down(workers, options):
    """SIGTERM to every worker, then 0 if all exited 0 (a worker still
    running after the graceful-shutdown timeout is killed)."""
    for process, _ in workers:
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGTERM)
    limits = options.get("limits")
    grace = (limits.request_timeout if limits is not None else 30.0) + 10
    deadline = time.monotonic() + grace
    codes = []
    for process, _ in workers:
        process.join(max(deadline - time.monotonic(), 0))
        if process.exitcode is None:
            LOG.error("worker %d did not stop in %g s; killing it",
                      process.pid, grace)
            process.kill()
            process.join()
        codes.append(process.exitcode)
    return 0 if all(code == 0 for code in codes) else 1


def _mark_dead(pid):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def _worker(open_model, host, port, options, ready):
    """One worker process: its own model, sessions and event loop on its
    own ``SO_REUSEPORT`` socket of ``port``."""
    from kerasrnn_serving import server

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    model = open_model()
    settings, sock = server.config(model, host, port, reuse_port=True,
                                   **options)
    worker = server.Server(settings)
    worker.on_started = ready.set
    worker.run(sockets=[sock])
