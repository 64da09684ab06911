"""Dynamic batching: concurrent requests share one ``session.run``.

``Batcher`` (classifiers): requests wait up to ``max_delay`` seconds in a
queue; the ones whose feeds have the same shapes apart from the batch
axis (the same sequence length: rows are grouped by length, so nothing is
padded and every row's result is what it would be alone) are concatenated
into batches of at most ``max_rows`` rows, run on one worker thread, and
their outputs split back. A request whose client went away is dropped
from the queue before it runs.

``StepBatcher`` (generation): each request's search runs in its own
thread and calls ``step(feeds, outputs)`` once per decoding step; the
calls that arrive while the worker is busy are merged into the next
``session.run`` (continuous batching: a request joins the running batch
at its next step and leaves when its search ends). Rows of different
source lengths are padded along ``source_time`` with zeros and a False
``memory_mask``, which the attention gives weight exactly 0.
"""

import asyncio
import collections
import concurrent.futures
import queue
import threading

import numpy as np


class Batcher:
    """Coalesces ``run(feeds) -> {output: array}`` calls (see module doc).

    Args:
        run: the function one batch goes through (``Predictor``'s
            session); called on one worker thread.
        batch_axes: ``{name: batch axis}`` of every input and output.
        max_rows: the most rows one run gets.
        max_delay: seconds the first request of a batch waits for others.
        observe: optional ``observe(rows, queue_depth)`` after each run
            (metrics).
    """

    def __init__(self, run, batch_axes, max_rows=64, max_delay=0.002,
                 observe=None):
        self.run = run
        self.batch_axes = batch_axes
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.observe = observe
        self.executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="kerasrnn-batch")
        self._queue = None
        self._task = None

    @property
    def depth(self):
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self):
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    def submit(self, feeds):
        """A future of the outputs of ``feeds`` (one request), run with
        others; cancelling it drops the request if it has not run yet."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((feeds, _rows(feeds, self.batch_axes),
                                future))
        return future

    async def _serve(self):
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.max_delay
            rows = jobs[0][1]
            while rows < self.max_rows:
                if self._queue.empty():   # wait for more, up to the delay
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(),
                                                     timeout)
                    except asyncio.TimeoutError:
                        break
                else:
                    job = self._queue.get_nowait()
                jobs.append(job)
                rows += job[1]
            for group in _groups(jobs, self.max_rows, self.batch_axes):
                group = [job for job in group if not job[2].done()]
                if group:
                    await self._run_group(loop, group)

    async def _run_group(self, loop, group):
        feeds = _concatenate([job[0] for job in group], self.batch_axes)
        try:
            outputs = await loop.run_in_executor(self.executor, self.run,
                                                 feeds)
        except Exception as error:  # noqa: BLE001 - handed to the callers
            for _, _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        if self.observe is not None:
            self.observe(sum(job[1] for job in group), self.depth)
        start = 0
        for _, rows, future in group:
            if not future.done():
                future.set_result({
                    name: _take(value, self.batch_axes[name], start, rows)
                    for name, value in outputs.items()
                })
            start += rows


def _rows(feeds, batch_axes):
    name, value = next(iter(feeds.items()))
    return int(value.shape[batch_axes[name]])


def _key(feeds, batch_axes):
    """Shapes without the batch axis, and dtypes: feeds that agree
    concatenate exactly."""
    return tuple(sorted(
        (name, str(value.dtype), tuple(
            size for axis, size in enumerate(value.shape)
            if axis != batch_axes[name]))
        for name, value in feeds.items()
    ))


def _groups(jobs, max_rows, batch_axes):
    """Jobs with equal keys, in arrival order, in groups of at most
    ``max_rows`` rows (a larger single job runs alone)."""
    by_key = collections.OrderedDict()
    for job in jobs:
        by_key.setdefault(_key(job[0], batch_axes), []).append(job)
    for same in by_key.values():
        group, rows = [], 0
        for job in same:
            if group and rows + job[1] > max_rows:
                yield group
                group, rows = [], 0
            group.append(job)
            rows += job[1]
        if group:
            yield group


def _concatenate(feeds_list, batch_axes):
    if len(feeds_list) == 1:
        return feeds_list[0]
    return {name: np.concatenate([feeds[name] for feeds in feeds_list],
                                 axis=batch_axes[name])
            for name in feeds_list[0]}


def _take(value, axis, start, rows):
    index = [slice(None)] * value.ndim
    index[axis] = slice(start, start + rows)
    return value[tuple(index)]


class Cancelled(Exception):
    """Raised in a search whose request was abandoned."""


# The request a search thread works for: ``cancelled()`` says whether its
# client went away (set by the server around each generation call).
request_context = threading.local()


def is_cancelled():
    check = getattr(request_context, "cancelled", None)
    return check is not None and check()


class StepBatcher:
    """Merges concurrent decoding steps into one ``session.run`` (see the
    module doc).

    Args:
        session: the step graph's onnxruntime session.
        padded: ``{input name: (axis, fill value)}`` of the inputs whose
            ``axis`` may differ between requests (``memory``, ``keys``,
            ``memory_mask`` along ``source_time``).
        shared: inputs every merged call must agree on (``top_k``,
            ``forbid_end``): calls are grouped by them.
        observe: optional ``observe(rows, waiting)`` after each run.
    """

    def __init__(self, session, padded=None, shared=("top_k", "forbid_end"),
                 observe=None):
        self.session = session
        self.padded = padded or {}
        self.shared = shared
        self.observe = observe
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name="kerasrnn-steps")
        self._thread.start()

    def step(self, feeds, outputs):
        """``session.run(outputs, feeds)``, merged with the other calls
        waiting; raises ``Cancelled`` when this thread's request was
        abandoned (``request_context``)."""
        if is_cancelled():
            raise Cancelled()
        call = _Call(feeds, list(outputs))
        self._queue.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _serve(self):
        while True:
            calls = [self._queue.get()]
            while True:
                try:
                    calls.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            groups = collections.OrderedDict()
            for call in calls:
                key = (tuple(call.outputs), tuple(
                    np.asarray(call.feeds[name]).tobytes()
                    for name in self.shared if name in call.feeds))
                groups.setdefault(key, []).append(call)
            for group in groups.values():
                self._run(group)

    def _run(self, group):
        try:
            if len(group) == 1:
                call = group[0]
                values = self.session.run(call.outputs, call.feeds)
                call.result = dict(zip(call.outputs, values))
            else:
                self._run_merged(group)
        except Exception as error:  # noqa: BLE001 - handed to the callers
            for call in group:
                call.error = error
        if self.observe is not None:
            self.observe(sum(len(c.feeds["token_ids"]) for c in group),
                         self._queue.qsize())
        for call in group:
            call.done.set()

    def _run_merged(self, group):
        feeds = {}
        for name, value in group[0].feeds.items():
            if name in self.shared:
                feeds[name] = value
                continue
            parts = [np.asarray(call.feeds[name]) for call in group]
            if name in self.padded:
                axis, fill = self.padded[name]
                parts = _pad_to_longest(parts, axis, fill)
            feeds[name] = np.concatenate(parts, axis=0)
        outputs = group[0].outputs
        values = dict(zip(outputs, self.session.run(outputs, feeds)))
        start = 0
        for call in group:
            rows = len(call.feeds["token_ids"])
            call.result = {name: value[start:start + rows]
                           for name, value in values.items()}
            start += rows


class _Call:
    __slots__ = ("feeds", "outputs", "done", "result", "error")

    def __init__(self, feeds, outputs):
        self.feeds = feeds
        self.outputs = outputs
        self.done = threading.Event()
        self.result = None
        self.error = None


def _pad_to_longest(parts, axis, fill):
    longest = max(part.shape[axis] for part in parts)
    padded = []
    for part in parts:
        missing = longest - part.shape[axis]
        if missing:
            widths = [(0, 0)] * part.ndim
            widths[axis] = (0, missing)
            part = np.pad(part, widths, constant_values=fill)
        padded.append(part)
    return padded
