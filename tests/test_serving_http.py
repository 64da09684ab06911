"""Hostile HTTP against real ``python -m kerasrnn_serving serve`` processes.

Three servers on free ports: a classifier, a seq2seq generator, and a
classifier with an API key and small limits. Every bad request is checked
for its exact status and an ``{"error", "kind"}`` body naming the problem,
and each one is followed by a good request that must still be answered.
Then the real KServe v2 client (``tritonclient.http``), schemathesis on
``/openapi.json``, and the Prometheus metrics.

What the HTTP layer answers (httptools through uvicorn): a request head
the parser refuses (garbage, a bad Content-Length, an unknown method) is
a JSON 400 from ``GuardedHttpToolsProtocol`` with the connection closed,
the HTTP/2 preface a 505, and a head still arriving past 16 KiB a 431;
a complete head is checked by the app (431 over 100 headers or 16 KiB,
400 without exactly one Host on HTTP/1.1, 505 for HTTP/0.9).
The tests under "bugs found" fail until the server is fixed.
"""

import dataclasses
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kerasrnn
import kerasrnn_serving as serving
from kerasrnn.export import to_onnx
from kerasrnn.models import Seq2Seq
from kerasrnn.models.text import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KEY = "k3y-for-the-tests"
ECHO = 200          # characters of a request an error message may quote
HEAD_BYTES = 16 * 1024
HUGE = "Q" * 100_000
TOKENS = [[3, 4, 5, 0], [7, 0, 0, 0]]
PAIRS = [("3 march 99", "99-3-3"), ("12 may", "5-12"),
         ("1 june 2", "02-6-1"), ("4 jan", "1-4")]
GOOD_TEXT = {"texts": ["12 may"], "max_length": 4}
# The third server: an API key, small limits, short timeouts.
LIMITED_FLAGS = ["--api-key", KEY, "--max-body-bytes", "2000",
                 "--max-rows", "4", "--max-length", "16", "--max-cells",
                 "32", "--body-timeout", "1", "--header-timeout", "1"]


# --- models and servers ------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny token classifier and a tiny char-level Seq2Seq, exported."""
    keras.utils.set_random_seed(5)
    ids = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(12, 4, mask_zero=True)(ids)
    x = kerasrnn.LSTM(6)(x)
    classifier = tmp_path_factory.mktemp("http_classifier")
    to_onnx(keras.Model(ids, keras.layers.Dense(2, name="logits")(x)),
            classifier)
    sources = Tokenizer("char")
    sources.adapt([source for source, _ in PAIRS])
    targets = Tokenizer("char")
    targets.adapt([target for _, target in PAIRS])
    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id, embedding_dim=8,
        units=8, cell="gru", attention="bahdanau", max_source_length=10,
        max_target_length=12, source_tokenizer=sources,
        target_tokenizer=targets,
    )
    seq2seq = tmp_path_factory.mktemp("http_seq2seq")
    to_onnx(model, seq2seq)
    return {"classifier": classifier, "seq2seq": seq2seq}


@dataclasses.dataclass
class Server:
    name: str
    url: str
    port: int
    directory: pathlib.Path
    model: str
    key: str = None


@pytest.fixture(scope="module")
def servers(exports, tmp_path_factory):
    """The three server processes, started together; ``{name: Server}``."""
    logs = tmp_path_factory.mktemp("http_logs")
    specs = {"classifier": ("classifier", []), "seq2seq": ("seq2seq", []),
             "limited": ("classifier", LIMITED_FLAGS)}
    processes, started = {}, {}
    try:
        for name, (kind, flags) in specs.items():
            log = open(logs / f"{name}.log", "w")
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "kerasrnn_serving", "serve",
                 str(exports[kind]), "--port", "0", *flags],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
                env=ENV)
            log.close()
        for name, process in processes.items():
            banner = process.stdout.readline()
            address = process.stdout.readline().strip()
            log = (logs / f"{name}.log").read_text()
            assert "tensorflow imported: False" in banner, banner + log
            assert address.startswith("serving on http://"), address + log
            url = address.split()[-1]
            directory = exports[specs[name][0]]
            manifest = json.loads((directory / "manifest.json").read_text())
            started[name] = Server(
                name, url, int(url.rsplit(":", 1)[1]), directory,
                manifest["model_name"], KEY if name == "limited" else None)
        yield started
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def expected(exports):
    """What the in-process runtime answers to the good requests."""
    predictor = serving.Predictor(exports["classifier"])
    generator = serving.Generator(exports["seq2seq"])
    return {
        "logits": predictor.predict(np.array(TOKENS, "int32"))["logits"],
        "predictor": predictor,
        "generation": generator.generate(GOOD_TEXT["texts"],
                                         max_length=GOOD_TEXT["max_length"]),
    }


# --- raw HTTP ----------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict   # lower-case name -> value
    body: bytes

    def json(self):
        return json.loads(self.body)


def read_answer(reader):
    """One HTTP/1.1 answer from a buffered socket reader."""
    line = reader.readline()
    if not line:
        raise ConnectionError("the server closed without an answer")
    status = int(line.split(b" ", 2)[1])
    headers = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if 100 <= status < 200:
        return Answer(status, headers, b"")
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            size = int(reader.readline().split(b";")[0], 16)
            if not size:
                reader.readline()
                break
            body += reader.read(size)
            reader.readline()
    else:
        body = reader.read()
    return Answer(status, headers, body)


def exchange(server, data, answers=1, timeout=30):
    """Sends ``data`` on a fresh connection; the first ``answers``
    answers (a list when more than one)."""
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=timeout) as client:
        client.sendall(data)
        reader = client.makefile("rb")
        received = [read_answer(reader) for _ in range(answers)]
    return received if answers > 1 else received[0]


def build(server, method, path, body=None, headers=None, close=True):
    """The bytes of one request: Host, Content-Type (JSON), Content-Length,
    the API key of a keyed server, ``Connection: close``; ``headers``
    overrides them (``None`` removes one). ``body``: bytes, or a value sent
    as JSON (NaN allowed)."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    fields = {"Host": f"127.0.0.1:{server.port}"}
    if body is not None:
        fields["Content-Type"] = "application/json"
        fields["Content-Length"] = str(len(body))
    if server.key:
        fields["X-API-Key"] = server.key
    if close:
        fields["Connection"] = "close"
    for name, value in (headers or {}).items():
        fields = {k: v for k, v in fields.items()
                  if k.lower() != name.lower()}
        if value is not None:
            fields[name] = value
    head = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + b"".join(
        f"{k}: {v}\r\n".encode("latin-1") if isinstance(v, str)
        else k.encode() + b": " + v + b"\r\n" for k, v in fields.items())
    return head + b"\r\n" + (body or b"")


def send(server, method, path, body=None, headers=None):
    return exchange(server, build(server, method, path, body, headers))


def first_answer_to_part(server, data, timeout=10):
    """Sends ``data`` (a head the server should refuse before it ends)
    and reads the answer without sending the rest."""
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=timeout) as client:
        client.sendall(data)
        return read_answer(client.makefile("rb"))


def longest_run(text, char="Q"):
    return max((len(run) for run in re.findall(f"{char}+", text)),
               default=0)


def assert_no_python(answer):
    """No header names Python, uvicorn or a Python version."""
    for name, value in answer.headers.items():
        lowered = value.lower()
        assert "python" not in lowered and "uvicorn" not in lowered, (
            name, value)
        assert not re.search(r"\b3\.\d+\.\d+\b", value), (name, value)


@pytest.fixture(scope="module")
def good(servers, expected):
    """``good(name)``: a good request to that server, answered right."""

    def check(name):
        server = servers[name]
        if name == "seq2seq":
            answer = send(server, "POST", "/v1/generate", GOOD_TEXT)
            assert answer.status == 200, answer
            results = answer.json()["results"]
            assert [r["text"] for r in results] == [
                r["text"] for r in expected["generation"]]
            return
        answer = send(server, "POST", "/v1/predict",
                      {"inputs": {"tokens": TOKENS}})
        assert answer.status == 200, answer
        np.testing.assert_allclose(answer.json()["outputs"]["logits"],
                                   expected["logits"], atol=1e-6)

    return check


# --- the bad-input suite -----------------------------------------------------


@dataclasses.dataclass
class Case:
    id: str
    server: str
    status: int
    says: str
    method: str = "POST"
    path: str = None
    body: object = None
    headers: dict = None
    raw: bytes = None       # the whole request, as is
    part: bytes = None      # a head refused before it ends
    kind: str = None
    head: bool = False      # answered by the HTTP layer, not the app
    allow: str = None       # the Allow header of a 405

    def request(self, server):
        if self.raw is not None:
            return exchange(server, self.raw)
        if self.part is not None:
            return first_answer_to_part(server, self.part)
        path = self.path or ("/v1/generate" if server.name == "seq2seq"
                             else "/v1/predict")
        return send(server, self.method, path.format(model=server.model),
                    self.body, self.headers)


def v2(data, shape, datatype="INT32", name="tokens", **extra):
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                        "data": data}], **extra}


INFER = "/v2/models/{model}/infer"
MALFORMED = "malformed request head"
LIMITS = "the limits are 100 headers and 16384 bytes"
DEEP = b"[" * 100_000 + b"]" * 100_000
DIGITS = b"9" * 5000


def predict_cases():
    c = "classifier"

    def bad(id, body, says, kind="invalid_input", **options):
        return Case(id, c, options.pop("status", 400), says, body=body,
                    kind=kind, **options)

    return [
        # malformed JSON
        bad("json-truncated", b'{"inputs": [[1, 2]', "not JSON",
            "bad_request"),
        bad("json-single-quotes", b"{'inputs': [[1]]}", "not JSON",
            "bad_request"),
        bad("json-trailing-comma", b'{"inputs": [[1]],}', "not JSON",
            "bad_request"),
        bad("json-trailing-data", b'{"inputs": [[1]]} and more',
            "Extra data", "bad_request"),
        bad("json-invalid-utf8", b'{"inputs": "\xff\xfe"}', "not JSON",
            "bad_request"),
        bad("json-empty-body", b"", "no body", "bad_request"),
        bad("json-whitespace-only", b"   \n", "not JSON", "bad_request"),
        bad("json-bare-word", b"inputs", "not JSON", "bad_request"),
        # hostile JSON
        bad("hostile-deep-nesting", DEEP, "no model input can be",
            "bad_request"),
        bad("hostile-5000-digit-integer",
            b'{"inputs": [[' + DIGITS + b"]]}", "4300 digits",
            "bad_request"),
        bad("hostile-huge-string", {"inputs": {"tokens": HUGE}},
            "must hold numbers"),
        bad("hostile-huge-string-in-row", {"inputs": [[HUGE]]},
            "must hold numbers"),
        bad("hostile-nan", b'{"inputs": [[1, NaN]]}', "integer ids"),
        bad("hostile-infinity", b'{"inputs": [[Infinity, -Infinity]]}',
            "integer ids"),
        bad("hostile-duplicate-keys-last-wins",
            b'{"inputs": [[1]], "inputs": [["a"]]}', "must hold numbers"),
        bad("hostile-integer-over-int64", {"inputs": [[10**30]]},
            "must hold numbers"),
        bad("hostile-integer-over-int32", {"inputs": [[2**40]]},
            "outside the int32 range"),
        # wrong types
        bad("type-array-body", [1, 2], '"inputs"', "invalid_request"),
        bad("type-string-body", "inputs", '"inputs"', "invalid_request"),
        bad("type-null-body", b"null", '"inputs"', "invalid_request"),
        bad("type-no-inputs-key", {"tokens": TOKENS}, '"inputs"',
            "invalid_request"),
        bad("type-inputs-null", {"inputs": None}, "must hold numbers"),
        bad("type-inputs-number", {"inputs": 5}, "must have rank 2"),
        bad("type-inputs-string", {"inputs": "abc"}, "must hold numbers"),
        bad("type-inputs-bool", {"inputs": True}, "must have rank 2"),
        bad("type-floats", {"inputs": [[1.5, 2]]}, "integer ids"),
        bad("type-bools", {"inputs": [[True, False]]}, "integer ids"),
        bad("type-strings", {"inputs": [["a", "b"]]}, "must hold numbers"),
        bad("type-nulls", {"inputs": [[None]]}, "must hold numbers"),
        bad("type-objects", {"inputs": [[{"a": 1}]]}, "must hold numbers"),
        bad("type-unknown-input", {"inputs": {"other": TOKENS}},
            "Unknown input(s) ['other']"),
        bad("type-missing-input", {"inputs": {}}, "Missing input 'tokens'"),
        bad("type-lengths-floats", {"inputs": [[1, 2]],
                                    "lengths": [1.5]}, "`lengths`"),
        bad("type-lengths-strings", {"inputs": [[1, 2]],
                                     "lengths": ["2"]}, "`lengths`"),
        bad("type-lengths-for-unknown", {"inputs": [[1, 2]],
                                         "lengths": {"other": [1]}},
            "`lengths` given for 'other'"),
        # wrong shapes, ragged
        bad("shape-rank-1", {"inputs": [1, 2, 3]}, "must have rank 2"),
        bad("shape-rank-3", {"inputs": [[[1]]]}, "must have rank 2"),
        bad("shape-empty-batch", {"inputs": []}, "must have rank 2"),
        bad("shape-empty-row", {"inputs": [[]]}, "is empty"),
        bad("shape-ragged-nested", {"inputs": [[1, [2]], [3]]},
            "not a list of sequences"),
        bad("shape-ragged-scalar-row", {"inputs": [[1, 2], 3]},
            "not a list of sequences"),
        bad("shape-left-padded", {"inputs": [[1, 0, 2]]}, "right-padded"),
        bad("shape-token-out-of-vocabulary", {"inputs": [[1, 99]]},
            "token id 99"),
        bad("shape-negative-token", {"inputs": [[-1]]}, "token id -1"),
        bad("shape-lengths-too-long", {"inputs": [[1, 2]],
                                       "lengths": [5]}, "outside 0..2"),
        bad("shape-lengths-negative", {"inputs": [[1, 2]],
                                       "lengths": [-1]}, "outside 0..2"),
        bad("shape-lengths-count", {"inputs": [[1, 2]],
                                    "lengths": [1, 2]}, "one per row"),
        bad("shape-lengths-rank-2", {"inputs": [[1, 2]],
                                     "lengths": [[1]]}, "one per row"),
    ]


def v2_cases():
    c = "classifier"

    def bad(id, body, says, kind="invalid_request", status=400,
            path=INFER):
        return Case(id, c, status, says, path=path, body=body, kind=kind)

    return [
        bad("v2-not-an-object", [1], 'an "inputs" list'),
        bad("v2-inputs-object", {"inputs": {}}, 'an "inputs" list'),
        bad("v2-input-not-an-object", {"inputs": [5]},
            "needs name, shape, datatype and data"),
        bad("v2-input-without-data",
            {"inputs": [{"name": "tokens", "shape": [1, 1],
                         "datatype": "INT32"}]},
            "needs name, shape, datatype and data"),
        bad("v2-no-inputs", {"inputs": []}, "Missing input 'tokens'",
            "invalid_input"),
        bad("v2-datatype-bytes", v2(["a"], [1, 1], "BYTES"),
            "datatype must be one of"),
        bad("v2-datatype-fp32", v2([1.5], [1, 1], "FP32"), "integer ids",
            "invalid_input"),
        bad("v2-datatype-bool", v2([True], [1, 1], "BOOL"), "integer ids",
            "invalid_input"),
        # The message speaks of the datatype only (app.py _v2_inputs).
        bad("v2-name-not-a-string", v2([1], [1, 1], name=5), "name"),
        bad("v2-shape-string", v2([1], "1,1"), "shape must be a list"),
        bad("v2-shape-negative", v2([1], [1, -1]), "shape must be a list"),
        bad("v2-shape-bool", v2([1], [1, True]), "shape must be a list"),
        bad("v2-shape-mismatch", v2([1, 2, 3], [2, 2]),
            "do not fill shape [2, 2]", "invalid_input"),
        bad("v2-shape-huge", v2([1], [2**40, 2**40]), "do not fill shape",
            "invalid_input"),
        bad("v2-shape-rank-5000", v2([1], list(range(5000))),
            "do not fill shape", "invalid_input"),
        bad("v2-data-strings", v2(["x"], [1, 1]), "do not fill shape",
            "invalid_input"),
        bad("v2-data-null", v2([None], [1, 1]), "do not fill shape",
            "invalid_input"),
        bad("v2-data-out-of-int32", v2([2**40], [1, 1]),
            "out of bounds for int32", "invalid_input"),
        bad("v2-data-out-of-uint8", v2([300], [1, 1], "UINT8"),
            "out of bounds for uint8", "invalid_input"),
        bad("v2-data-nan", b'{"inputs": [{"name": "tokens", "shape": [1, 1]'
            b', "datatype": "FP32", "data": [NaN]}]}', "integer ids",
            "invalid_input"),
        bad("v2-empty-batch", v2([], [0, 1]), "is empty", "invalid_input"),
        bad("v2-unknown-output", v2([1], [1, 1], outputs=[{"name": "no"}]),
            "Unknown output(s) ['no']"),
        bad("v2-outputs-not-a-list", v2([1], [1, 1], outputs="logits"),
            '"outputs" must be a list'),
        bad("v2-id-not-a-string", v2([1], [1, 1], id=5),
            '"id" must be a string'),
        bad("v2-unknown-model", v2([1], [1, 1]), "No model 'nope'",
            "not_found", 404, path="/v2/models/nope/infer"),
        bad("v2-bad-json", b"{", "not JSON", "bad_request"),
    ]


def generation_cases():
    s = "seq2seq"

    def bad(id, body, says, kind="invalid_input", status=400, **options):
        return Case(id, s, status, says, body=body, kind=kind, **options)

    def option(id, says, **options):
        return bad(f"option-{id}", {"texts": ["12 may"], **options}, says)

    return [
        bad("gen-json-truncated", b'{"texts": ["12 may"]', "not JSON",
            "bad_request"),
        bad("gen-json-empty", b"", "no body", "bad_request"),
        bad("gen-deep-nesting", DEEP, "no model input can be",
            "bad_request"),
        bad("gen-5000-digit-integer",
            b'{"texts": ["12 may"], "seed": ' + DIGITS + b"}",
            "4300 digits", "bad_request"),
        bad("gen-huge-text", {"texts": [HUGE]},
            "Source 0 has 100000 tokens"),
        bad("gen-nan-temperature", b'{"texts": ["12 may"], "method": '
            b'"sample", "temperature": NaN}', "finite number"),
        bad("gen-infinite-top-p", b'{"texts": ["12 may"], "method": '
            b'"sample", "top_p": Infinity}', "finite number"),
        bad("gen-duplicate-keys-last-wins",
            b'{"texts": ["12 may"], "texts": 5}',
            "`texts` must be a string or a non-empty list"),
        bad("gen-not-an-object", [], "a JSON object"),
        bad("gen-empty-object", {}, 'exactly one of "texts"'),
        bad("gen-texts-and-ids", {"texts": ["12 may"], "ids": [[4]]},
            'exactly one of "texts"'),
        bad("gen-texts-empty", {"texts": []}, "non-empty list of strings"),
        bad("gen-texts-number", {"texts": 5}, "non-empty list of strings"),
        bad("gen-texts-numbers", {"texts": [5]},
            "non-empty list of strings"),
        bad("gen-texts-null", {"texts": None}, "non-empty list of strings"),
        bad("gen-text-empty", {"texts": [""]}, "Source 0 is empty"),
        bad("gen-text-too-long", {"texts": ["3 march 2021"]},
            "more than the limit of 10"),
        bad("gen-unknown-token", {"texts": ["3 @ may"], "unknown": "error"},
            "missing from the vocabulary: ['@']"),
        bad("gen-ids-empty", {"ids": []}, "non-empty list"),
        bad("gen-ids-empty-row", {"ids": [[]]}, "Source 0 is empty"),
        bad("gen-ids-out-of-vocabulary", {"ids": [[999]]},
            "must lie in [0, 20)"),
        bad("gen-ids-negative", {"ids": [[-1]]}, "must lie in [0, 20)"),
        bad("gen-ids-floats", {"ids": [[1.5]]}, "integer token ids"),
        bad("gen-ids-strings", {"ids": [["a"]]}, "integer token ids"),
        bad("gen-ids-flat", {"ids": [4, 5]}, "integer token ids"),
        bad("gen-ids-string", {"ids": "abc"}, "non-empty list"),
        bad("gen-ids-left-padded", {"ids": [[0, 4]]}, "padding goes only"),
        bad("gen-ids-too-long", {"ids": [list(range(1, 12))]},
            "more than the limit of 10"),
        bad("gen-ids-huge", {"ids": [[10**30]]}, "id too large"),
        bad("gen-ids-with-unknown", {"ids": [[4]], "unknown": "map"},
            '"unknown" applies to "texts"'),
        bad("gen-too-many-texts", {"texts": ["12 may"] * 300},
            "300 inputs; the limit is 256", "too_large", 413),
        bad("gen-too-many-ids", {"ids": [[4]] * 257},
            "257 inputs; the limit is 256", "too_large", 413),
        option("beam-width-0", "`beam_width` must be an integer in [1, 16]",
               method="beam", beam_width=0),
        option("beam-width-17", "`beam_width` must be an integer in [1, 16]",
               method="beam", beam_width=17),
        option("beam-width-float", "`beam_width` must be an integer",
               method="beam", beam_width=2.5),
        option("beam-width-bool", "`beam_width` must be an integer",
               method="beam", beam_width=True),
        option("beam-width-string", "`beam_width` must be an integer",
               method="beam", beam_width="3"),
        option("num-return-over-width", "`num_return` must be an integer "
               "in [1, 3]", method="beam", beam_width=3, num_return=4),
        option("length-penalty-negative", "`length_penalty_weight` must be",
               method="beam", length_penalty_weight=-1),
        option("temperature-0", "`temperature` must be a number > 0",
               method="sample", temperature=0),
        option("temperature-negative", "`temperature` must be a number > 0",
               method="sample", temperature=-1),
        option("top-k-0", "`top_k` must be an integer >= 1",
               method="sample", top_k=0),
        option("top-p-0", "`top_p` must be a number in (0, 1]",
               method="sample", top_p=0),
        option("top-p-over-1", "`top_p` must be a number in (0, 1]",
               method="sample", top_p=1.5),
        option("seed-negative", "`seed` must be an integer",
               method="sample", seed=-1),
        option("seed-over-int64", "`seed` must be an integer",
               method="sample", seed=2**64),
        option("num-samples-0", "`num_samples` must be an integer in "
               "[1, 16]", method="sample", num_samples=0),
        option("num-samples-17", "`num_samples` must be an integer in "
               "[1, 16]", method="sample", num_samples=17),
        option("greedy-with-beam-width", "unknown options: ['beam_width']",
               method="greedy", beam_width=3),
        option("unknown-option", "unknown options: ['colour']", colour=1),
        option("method-unknown", "`method` must be one of", method="nope"),
        option("method-number", '"method" must be a string', method=5),
        option("max-length-0", "`max_length` must be an integer in [1, 256]",
               max_length=0),
        option("max-length-257", "`max_length` must be an integer in "
               "[1, 256]", max_length=257),
        option("max-length-string", "`max_length` must be an integer",
               max_length="5"),
        option("min-length-negative", "`min_length` must be an integer",
               min_length=-1),
        option("min-length-over-max", "`min_length` must be an integer in "
               "[0, 12]", min_length=300),
        option("stream-not-bool", '"stream" must be true or false',
               stream="yes"),
        option("attention-not-bool", '"attention" must be true or false',
               attention=1),
        option("stop-at-eos-on-seq2seq", '"stop_at_eos" applies to language',
               stop_at_eos=True),
        option("unknown-mode", "`unknown` must be 'map' or 'error'",
               unknown="drop"),
        bad("option-stream-two-texts", {"texts": ["12 may", "4 jan"],
                                        "stream": True},
            '"stream": true takes one text'),
        bad("option-stream-ids", {"ids": [[4]], "stream": True},
            '"stream": true takes "texts"'),
    ]


def limit_cases():
    limited = "limited"

    def over(id, says, body, path=None, status=413):
        return Case(f"limit-{id}", limited, status, says, body=body, path=path,
                    kind="too_large")

    return [
        over("rows", "5 rows; the limit is 4", {"inputs": [[1]] * 5}),
        over("length", "sequences of 17 steps; the limit is 16",
             {"inputs": [[1] * 17]}),
        over("cells", "4 x 9 = 36 steps; the limit is 32",
             {"inputs": [[1] * 9] * 4}),
        over("body-declared", "The body (2001 bytes) exceeds 2000 bytes",
             b" " * 2001),
        over("body-big", "exceeds 2000 bytes", {"inputs": [[1] * 16] * 100}),
        over("v2-rows", "5 rows; the limit is 4", v2([1] * 5, [5, 1]),
             INFER),
        over("v2-length", "17 steps; the limit is 16", v2([1] * 17, [1, 17]),
             INFER),
        over("v2-cells", "36 steps; the limit is 32", v2([1] * 36, [4, 9]),
             INFER),
        Case("limit-body-chunked", limited, 413, "The body exceeds 2000 bytes",
             kind="too_large", body=b"5\r\n     \r\n" * 500 + b"0\r\n\r\n",
             headers={"Content-Length": None,
                      "Transfer-Encoding": "chunked"}),
        Case("limit-body-timeout", limited, 408, "did not arrive within 1 s",
             kind="timeout", body=b'{"inputs"',
             headers={"Content-Length": "100"}),
        Case("limit-content-length-over", "classifier", 413,
             "The body (99999999999 bytes) exceeds", kind="too_large",
             body=b"{}", headers={"Content-Length": "99999999999"}),
    ]


def key_cases():
    no_key = {"X-API-Key": None}

    def refused(id, method, path, headers=no_key, body=None):
        if method == "POST" and body is None:
            body = {"inputs": [[1]]}
        return Case(f"key-{id}", "limited", 401, "A valid API key is needed",
                    method=method, path=path, body=body, headers=headers,
                    kind="unauthorized")

    return [
        refused("missing-predict", "POST", "/v1/predict"),
        refused("missing-metadata", "GET", "/v1/metadata"),
        refused("missing-metrics", "GET", "/metrics"),
        refused("missing-openapi", "GET", "/openapi.json"),
        refused("missing-v2", "GET", "/v2"),
        refused("missing-v2-model", "GET", "/v2/models/{model}"),
        refused("missing-v2-model-ready", "GET", "/v2/models/{model}/ready"),
        refused("missing-v2-infer", "POST", INFER, body=v2([1], [1, 1])),
        refused("wrong-x-api-key", "POST", "/v1/predict",
                {"X-API-Key": "wrong"}),
        refused("wrong-bearer", "POST", "/v1/predict",
                {"X-API-Key": None, "Authorization": "Bearer wrong"}),
        refused("wrong-bearer-on-v2", "POST", INFER,
                {"X-API-Key": None, "Authorization": "Bearer wrong"},
                v2([1], [1, 1])),
        refused("basic-scheme", "POST", "/v1/predict",
                {"X-API-Key": None, "Authorization": f"Basic {KEY}"}),
        refused("empty-x-api-key", "POST", "/v1/predict", {"X-API-Key": ""}),
        refused("key-prefix", "POST", "/v1/predict",
                {"X-API-Key": KEY[:-1]}),
        refused("bearer-wins-over-x-api-key", "POST", "/v1/predict",
                {"X-API-Key": KEY, "Authorization": "Bearer wrong"}),
        refused("unknown-route", "GET", "/nope"),
    ]


def header_cases():
    c = "classifier"
    good = {"inputs": [[1, 2]]}

    def bad(id, status, says, headers=None, body=good, kind=None,
            **options):
        return Case(f"header-{id}", c, status, says, body=body,
                    headers=headers, kind=kind, **options)

    def head(id, raw=None, part=None):
        return Case(f"header-{id}", c, 400, MALFORMED, raw=raw, part=part,
                    kind="bad_request", head=True)

    post = (b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n")
    get = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    return [
        bad("content-length-missing", 411, "needs a Content-Length",
            {"Content-Length": None}, b"", "length_required"),
        head("content-length-letters",
             post + b"Content-Length: abc\r\n\r\n{}"),
        head("content-length-negative",
             post + b"Content-Length: -1\r\n\r\n{}"),
        head("content-length-plus", post + b"Content-Length: +2\r\n\r\n{}"),
        head("content-length-hex", post + b"Content-Length: 0x2\r\n\r\n{}"),
        head("content-length-5000-digits",
             post + b"Content-Length: " + DIGITS + b"\r\n\r\n{}"),
        head("content-length-twice",
             post + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
        head("transfer-encoding-gzip",
             post + b"Transfer-Encoding: gzip\r\n\r\n{}"),
        head("chunk-size-garbage",
             post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
        bad("content-length-zero", 400, "no body",
            {"Content-Length": "0"}, b"", "bad_request"),
        bad("content-type-missing", 415, "must be JSON",
            {"Content-Type": None}, kind="unsupported_media_type"),
        bad("content-type-text", 415, "Received: 'text/plain'",
            {"Content-Type": "text/plain"}, kind="unsupported_media_type"),
        bad("content-type-form", 415, "application/x-www-form-urlencoded",
            {"Content-Type": "application/x-www-form-urlencoded"},
            kind="unsupported_media_type"),
        bad("content-type-jsonx", 415, "Received: 'application/jsonx'",
            {"Content-Type": "application/jsonx"},
            kind="unsupported_media_type"),
        bad("host-evil", 421, "Host 'evil.example' is refused",
            {"Host": "evil.example"}, kind="bad_host"),
        bad("host-evil-with-port", 421, "evil.example:80",
            {"Host": "evil.example:80"}, kind="bad_host"),
        bad("host-other-loopback", 421, "Host '127.0.0.2' is refused",
            {"Host": "127.0.0.2"}, kind="bad_host"),
        bad("host-suffix", 421, "127.0.0.1.evil.example",
            {"Host": "127.0.0.1.evil.example"}, kind="bad_host"),
        bad("host-userinfo", 421, "is refused",
            {"Host": "evil.example@127.0.0.1"}, kind="bad_host"),
        bad("host-on-get", 421, "loopback only", {"Host": "evil.example"},
            None, "bad_host", method="GET", path="/v1/metadata"),
        Case("header-host-empty-http10", c, 421, "Host '' is refused",
             raw=b"GET /v1/metadata HTTP/1.0\r\n\r\n", kind="bad_host"),
        Case("header-host-missing-http11", c, 400, "exactly one Host header",
             raw=b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
             kind="bad_request"),
        Case("header-host-twice", c, 400, "this one has 2",
             raw=b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Host: evil.example\r\nConnection: close\r\n\r\n",
             kind="bad_request"),
        head("header-without-colon", get + b"NoColonHere\r\n\r\n"),
        # An over-long head still arriving: 431 from the protocol.
        Case("header-too-long", c, 431, LIMITS, part=get + b"X-Long: "
             + b"a" * (HEAD_BYTES + 1024), kind="head_too_large", head=True),
        Case("headers-too-many", c, 431, LIMITS, part=get + b"".join(
            b"X-H%d: v\r\n" % i for i in range(2000)),
            kind="head_too_large", head=True),
    ]


def method_route_cases():
    def m(id, server, method, path, allow):
        return Case(f"method-{id}", server, 405,
                    f"{method} is not allowed on {path.split('{')[0]}",
                    method=method, path=path, kind="method_not_allowed",
                    allow=allow)

    def r(id, server, path, says, method="GET", body=None):
        return Case(f"route-{id}", server, 404, says, method=method,
                    path=path, body=body, kind="not_found")

    c, s = "classifier", "seq2seq"
    return [
        m("get-predict", c, "GET", "/v1/predict", "POST"),
        m("put-predict", c, "PUT", "/v1/predict", "POST"),
        m("delete-predict", c, "DELETE", "/v1/predict", "POST"),
        m("patch-predict", c, "PATCH", "/v1/predict", "POST"),
        m("options-predict", c, "OPTIONS", "/v1/predict", "POST"),
        m("get-infer", c, "GET", INFER, "POST"),
        m("delete-health", c, "DELETE", "/health", "GET, HEAD"),
        m("put-metadata", c, "PUT", "/v1/metadata", "GET, HEAD"),
        m("get-generate", s, "GET", "/v1/generate", "POST"),
        m("put-generate", s, "PUT", "/v1/generate", "POST"),
        m("delete-generate", s, "DELETE", "/v1/generate", "POST"),
        Case("method-post-health", c, 405, "POST is not allowed on /health",
             path="/health", body={}, kind="method_not_allowed",
             allow="GET, HEAD"),
        r("unknown", c, "/nope", "No route /nope"),
        r("unknown-post", c, "/v1/nope", "No route /v1/nope", "POST", {}),
        r("unknown-v3", c, "/v3/models", "No route /v3/models"),
        r("double-slash", c, "//health", "No route //health"),
        r("predict-on-seq2seq", s, "/v1/predict", "No route /v1/predict",
          "POST", {"inputs": [[1]]}),
        r("v2-on-seq2seq", s, "/v2/models/x/infer", "No route /v2/",
          "POST", v2([1], [1, 1])),
        r("generate-on-classifier", c, "/v1/generate",
          "No route /v1/generate", "POST", GOOD_TEXT),
        r("v2-unknown-model", c, "/v2/models/nope", "No model 'nope'"),
        r("v2-unknown-model-ready", c, "/v2/models/nope/ready",
          "No model 'nope'"),
        r("v2-versions", c, "/v2/models/{model}/versions/1/infer",
          "No route /v2/models/", "POST", v2([1], [1, 1])),
    ]


def protocol_cases():
    c = "classifier"

    def head(id, raw):
        return Case(f"protocol-{id}", c, 400, MALFORMED, raw=raw,
                    kind="bad_request", head=True)

    return [
        head("garbage-line", b"GARBAGE\r\n\r\n"),
        Case("protocol-http09", c, 505, "HTTP/0.9 is not served",
             raw=b"GET /health\r\n\r\n", kind="http_version_not_supported"),
        head("binary", bytes(range(256)) + b"\r\n\r\n"),
        head("nul-in-target", b"GET /he\x00alth HTTP/1.1\r\n"
             b"Host: 127.0.0.1\r\n\r\n"),
        head("space-in-target", b"GET /he alth HTTP/1.1\r\n"
             b"Host: 127.0.0.1\r\n\r\n"),
        head("no-target", b"GET HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        head("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
             + b"\x00" * 64 + b"\r\n\r\n"),
        Case("protocol-http2-preface", c, 505, "not HTTP/2",
             raw=b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
             kind="http_version_not_supported", head=True),
        Case("protocol-unknown-method", c, 400, "not an HTTP method",
             raw=b"BREW /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
             kind="bad_request", head=True),
    ]


CASES = (predict_cases() + v2_cases() + generation_cases() + limit_cases()
         + key_cases() + header_cases() + method_route_cases()
         + protocol_cases())


def test_the_suite_is_large_and_covers_both_servers():
    assert len(CASES) >= 100
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.server for case in CASES} == {"classifier", "seq2seq",
                                               "limited"}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_request_is_named_and_serving_goes_on(servers, good, case):
    server = servers[case.server]
    answer = case.request(server)
    assert answer.status == case.status, (answer.status, answer.body[:400])
    assert answer.headers.get("content-type", "").startswith(
        "application/json"), answer.headers
    error = answer.json()
    assert set(error) == {"error", "kind"}, error
    assert case.says in error["error"], error
    if case.kind is not None:
        assert error["kind"] == case.kind, error
    assert_no_python(answer)
    if not case.head:
        assert re.fullmatch(r"[0-9a-f]{32}",
                            answer.headers.get("x-request-id", "")), (
            answer.headers)
        assert answer.headers.get("server") == "kerasrnn-serving"
    if case.allow is not None:
        allowed = answer.headers.get("allow", "").split(",")
        assert {m.strip() for m in allowed} == set(case.allow.split(", "))
    if case.status == 401:
        assert answer.headers.get("www-authenticate") == "Bearer"
    good(case.server)


# --- what is accepted --------------------------------------------------------


ACCEPTED = [
    ("query-on-health", "classifier", "GET", "/health?x=1", None, None),
    ("query-on-metadata", "classifier", "GET", "/v1/metadata?a&b=c", None,
     None),
    ("query-on-predict", "classifier", "POST", "/v1/predict?debug=1",
     {"inputs": TOKENS}, None),
    ("query-on-infer", "classifier", "POST", INFER + "?x=1",
     v2(sum(TOKENS, []), [2, 4]), None),
    ("query-on-generate", "seq2seq", "POST", "/v1/generate?x=1", GOOD_TEXT,
     None),
    ("long-query", "classifier", "GET", "/health?" + "a=1&" * 2000, None,
     None),
    ("percent-encoded-path", "classifier", "GET", "/%68ealth", None, None),
    ("content-type-charset", "classifier", "POST", "/v1/predict",
     {"inputs": TOKENS},
     {"Content-Type": "application/json; charset=utf-8"}),
    ("content-type-upper-case", "classifier", "POST", "/v1/predict",
     {"inputs": TOKENS}, {"Content-Type": "APPLICATION/JSON"}),
    ("host-localhost", "classifier", "GET", "/v1/metadata", None,
     {"Host": "localhost:9"}),
    ("host-ipv6-loopback", "classifier", "GET", "/v1/metadata", None,
     {"Host": "[::1]:9"}),
    ("host-without-port", "classifier", "GET", "/v1/metadata", None,
     {"Host": "127.0.0.1"}),
    ("ragged-rows-padded", "classifier", "POST", "/v1/predict",
     {"inputs": [[3, 4, 5], [7]]}, None),
    ("chunked-body", "classifier", "POST", "/v1/predict",
     b"%x\r\n%s\r\n0\r\n\r\n" % (len(json.dumps({"inputs": TOKENS})),
                                 json.dumps({"inputs": TOKENS}).encode()),
     {"Content-Length": None, "Transfer-Encoding": "chunked"}),
    ("key-x-api-key", "limited", "POST", "/v1/predict", {"inputs": TOKENS},
     {"X-API-Key": KEY}),
    ("key-bearer", "limited", "POST", "/v1/predict", {"inputs": TOKENS},
     {"X-API-Key": None, "Authorization": f"Bearer {KEY}"}),
    ("key-bearer-lower-case", "limited", "POST", "/v1/predict",
     {"inputs": TOKENS},
     {"X-API-Key": None, "Authorization": f"bearer {KEY}"}),
    ("key-on-v2-infer", "limited", "POST", INFER,
     v2(sum(TOKENS, []), [2, 4]), {"X-API-Key": KEY}),
    ("key-on-metadata", "limited", "GET", "/v1/metadata", None,
     {"X-API-Key": None, "Authorization": f"Bearer {KEY}"}),
    ("health-without-key", "limited", "GET", "/health", None,
     {"X-API-Key": None}),
    ("v2-live-without-key", "limited", "GET", "/v2/health/live", None,
     {"X-API-Key": None}),
    ("v2-ready-without-key", "limited", "GET", "/v2/health/ready", None,
     {"X-API-Key": None}),
    ("ready-without-key", "limited", "GET", "/ready", None,
     {"X-API-Key": None}),
    ("limit-rows-inclusive", "limited", "POST", "/v1/predict",
     {"inputs": [[1]] * 4}, None),
    ("limit-length-inclusive", "limited", "POST", "/v1/predict",
     {"inputs": [[1] * 16]}, None),
    ("limit-cells-inclusive", "limited", "POST", "/v1/predict",
     {"inputs": [[1] * 8] * 4}, None),
    ("v2-nested-data", "classifier", "POST", INFER,
     v2(TOKENS, [2, 4]), None),
]


@pytest.mark.parametrize("name, server, method, path, body, headers",
                         ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_variants_are_200(servers, expected, name, server, method,
                                   path, body, headers):
    server = servers[server]
    answer = send(server, method, path.format(model=server.model), body,
                  headers)
    assert answer.status == 200, (answer.status, answer.body[:300])
    payload = answer.json()
    assert_no_python(answer)
    assert answer.headers["x-request-id"]
    if "outputs" in payload and "/v2/" in path:
        logits = np.reshape(payload["outputs"][0]["data"], (2, 2))
    elif "/v1/predict" in path and len(payload["outputs"]["logits"]) == 2:
        logits = payload["outputs"]["logits"]
    else:
        return
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-6)


def test_duplicate_keys_last_one_wins(servers, expected):
    """Python's JSON parser keeps the last of duplicate keys; the server
    answers that one (noted: no 400 for duplicate keys)."""
    body = (b'{"inputs": [[1]], "inputs": ' + json.dumps(TOKENS).encode()
            + b"}")
    answer = send(servers["classifier"], "POST", "/v1/predict", body)
    assert answer.status == 200, answer
    np.testing.assert_allclose(answer.json()["outputs"]["logits"],
                               expected["logits"], atol=1e-6)


def test_expect_100_continue_then_the_body(servers, expected):
    server = servers["classifier"]
    body = json.dumps({"inputs": TOKENS}).encode()
    head = build(server, "POST", "/v1/predict", body,
                 {"Expect": "100-continue"})[:-len(body)]
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=30) as client:
        client.sendall(head)
        reader = client.makefile("rb")
        interim = read_answer(reader)
        assert interim.status == 100
        client.sendall(body)
        answer = read_answer(reader)
    assert answer.status == 200, answer
    np.testing.assert_allclose(answer.json()["outputs"]["logits"],
                               expected["logits"], atol=1e-6)


def test_pipelined_requests_are_all_answered_in_order(servers, expected):
    server = servers["classifier"]
    body = {"inputs": TOKENS}
    data = b"".join([
        build(server, "POST", "/v1/predict", body,
              {"X-Request-ID": "pipe-1", "Connection": None}),
        build(server, "POST", "/v1/predict", b"{not json",
              {"X-Request-ID": "pipe-2", "Connection": None}),
        build(server, "POST", "/v1/predict", body,
              {"X-Request-ID": "pipe-3", "Connection": None}),
        build(server, "GET", "/health", None, {"X-Request-ID": "pipe-4"}),
    ])
    answers = exchange(server, data, answers=4)
    assert [a.status for a in answers] == [200, 400, 200, 200]
    assert [a.headers["x-request-id"] for a in answers] == [
        "pipe-1", "pipe-2", "pipe-3", "pipe-4"]
    for answer in (answers[0], answers[2]):
        np.testing.assert_allclose(answer.json()["outputs"]["logits"],
                                   expected["logits"], atol=1e-6)
    assert "not JSON" in answers[1].json()["error"]


def test_a_half_sent_head_is_closed_after_the_header_timeout(servers, good):
    """--header-timeout 1: a slowloris connection is closed."""
    server = servers["limited"]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=10) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert client.recv(1024) == b""
    assert time.monotonic() - started < 5
    good("limited")


# --- bugs found (these fail until fixed) -------------------------------------


@pytest.mark.parametrize("what, head", [
    ("one long header", b"X-Long: " + b"a" * (2 * HEAD_BYTES) + b"\r\n"),
    ("many headers", b"".join(b"X-H%d: v\r\n" % i for i in range(3000))),
])
def test_head_limit_holds_when_the_head_arrives_at_once(servers, what,
                                                         head):
    """The protocol bounds a head still arriving; a head that arrives in
    one read is checked by the app: 431 naming the limits."""
    server = servers["classifier"]
    answer = exchange(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      + head + b"Connection: close\r\n\r\n")
    assert answer.status == 431, (what, answer.status)
    assert "the limits are 100 headers and 16384 bytes" in (
        answer.json()["error"])


@pytest.mark.parametrize("option", ["temperature", "top_p",
                                    "length_penalty_weight"])
def test_an_integer_too_large_for_a_float_option_is_400(servers, good,
                                                         option):
    """search._number: np.isfinite(10**400) raises TypeError -> 500."""
    method = "beam" if option == "length_penalty_weight" else "sample"
    body = (b'{"texts": ["12 may"], "method": "%s", "%s": 1%s}'
            % (method.encode(), option.encode(), b"0" * 400))
    answer = send(servers["seq2seq"], "POST", "/v1/generate", body)
    assert answer.status == 400, (answer.status, answer.body[:200])
    assert f"`{option}` must be a finite number" in answer.json()["error"]
    good("seq2seq")


@pytest.mark.parametrize("lengths", [
    [[1], [1, 2]], {"tokens": [[1], [1, 2]]}, {"tokens": [1, [2]]}])
def test_ragged_lengths_are_400(servers, good, lengths):
    """server.parse_inputs: np.asarray of ragged lengths raises
    ValueError outside the InputError handling -> 500."""
    answer = send(servers["classifier"], "POST", "/v1/predict",
                  {"inputs": [[1, 2]], "lengths": lengths})
    assert answer.status == 400, (answer.status, answer.body[:200])
    assert "`lengths`" in answer.json()["error"]
    good("classifier")


@pytest.mark.parametrize("body, statuses", [
    ({"inputs": [[1, 2]], "lengths": {"\udfff": [1]}}, (400,)),
    (v2([1], [1, 1], id="\ud800"), (200, 400)),
], ids=["predict-lengths-name", "v2-id"])
def test_lone_surrogates_are_answered_as_json(servers, good, body,
                                              statuses):
    """A lone surrogate quoted raw in an error message (the `lengths`
    name, predictor.py) or echoed as the v2 "id" (app.py v2_infer) cannot
    be encoded as UTF-8 by JSONResponse -> 500."""
    server = servers["classifier"]
    path = "/v1/predict" if "lengths" in body else INFER.format(
        model=server.model)
    answer = send(server, "POST", path, json.dumps(body).encode())
    assert answer.status in statuses, (answer.status, answer.body[:200])
    answer.json()
    good("classifier")


ECHOES = [
    ("predict-unknown-input", "classifier", "/v1/predict",
     {"inputs": {HUGE: [[1]]}}, None),
    ("predict-lengths-name", "classifier", "/v1/predict",
     {"inputs": [[1]], "lengths": {HUGE: [1]}}, None),
    ("predict-string-values", "classifier", "/v1/predict",
     {"inputs": {"tokens": HUGE}}, None),
    ("v2-input-name", "classifier", INFER, v2([1], [1, 1], name=HUGE),
     None),
    ("v2-output-name", "classifier", INFER,
     v2([1], [1, 1], outputs=[{"name": HUGE}]), None),
    ("v2-datatype", "classifier", INFER, v2([1], [1, 1], HUGE), None),
    ("v2-string-data", "classifier", INFER, v2([HUGE], [1, 1]), None),
    ("v2-model-name", "classifier", "/v2/models/" + HUGE[:8000] + "/infer",
     v2([1], [1, 1]), None),
    ("route", "classifier", "/" + HUGE[:8000], {}, None),
    ("content-type", "classifier", "/v1/predict", {},
     {"Content-Type": HUGE[:8000]}),
    ("host", "classifier", "/v1/predict", {}, {"Host": HUGE[:8000]}),
    ("gen-method", "seq2seq", "/v1/generate",
     {"texts": ["12 may"], "method": HUGE}, None),
    ("gen-option-name", "seq2seq", "/v1/generate",
     {"texts": ["12 may"], HUGE: 1}, None),
    ("gen-beam-width", "seq2seq", "/v1/generate",
     {"texts": ["12 may"], "method": "beam", "beam_width": HUGE}, None),
    ("gen-stream", "seq2seq", "/v1/generate",
     {"texts": ["12 may"], "stream": HUGE}, None),
    ("gen-unknown", "seq2seq", "/v1/generate",
     {"texts": ["12 may"], "unknown": HUGE}, None),
    ("gen-text", "seq2seq", "/v1/generate", {"texts": [HUGE]}, None),
]


@pytest.mark.parametrize("name, server, path, body, headers", ECHOES,
                         ids=[e[0] for e in ECHOES])
def test_errors_never_echo_more_than_200_characters(servers, name, server,
                                                    path, body, headers):
    """app.py: "error messages never echo more than 200 characters of the
    request"; a predictor or search message is cut at 4 * ECHO = 800
    characters instead, and v2's unknown outputs are not cut at all."""
    server = servers[server]
    answer = send(server, "POST", path.format(model=server.model), body,
                  headers)
    assert 400 <= answer.status < 500, (answer.status, answer.body[:200])
    message = answer.json()["error"]
    assert longest_run(message) <= ECHO, (len(message), message[:120])


def test_an_unexpected_error_is_json_with_the_request_id(exports):
    """The _Guard answers an unexpected exception as JSON {"error",
    "kind": "internal"} with the request id; Starlette's own
    ServerErrorMiddleware answers first, in plain text, and the Guard's
    answer then fails (RuntimeError: response already completed)."""
    import urllib.error
    import urllib.request

    from kerasrnn_serving.server import running

    class Broken:
        def __init__(self, session):
            self.session = session

        def run(self, *args, **kwargs):
            raise RuntimeError("the session broke")

    predictor = serving.Predictor(exports["classifier"])
    with running(predictor) as url:
        predictor.session = Broken(predictor.session)
        request = urllib.request.Request(
            url + "/v1/predict",
            data=json.dumps({"inputs": TOKENS}).encode(),
            headers={"X-Request-ID": "broken-1",
                     "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("a broken session answered 200")
        except urllib.error.HTTPError as error:
            status, headers, text = error.code, error.headers, error.read()
    assert status == 500
    assert headers["x-request-id"] == "broken-1"
    assert headers["content-type"] == "application/json", (
        headers["content-type"], text)
    body = json.loads(text)
    assert body["kind"] == "internal" and "broken-1" in body["error"]


def test_a_malformed_head_answer_carries_a_request_id(servers):
    """Every answer carries an X-Request-ID, the protocol's own refusals
    (GuardedHttpToolsProtocol, server.py) too."""
    answer = exchange(servers["classifier"], b"GARBAGE\r\n\r\n")
    assert answer.status == 400
    assert answer.headers.get("x-request-id"), answer.headers


# --- request ids and the Server header ---------------------------------------


PROBES = [
    ("GET", "/health", None, None, 200),
    ("POST", "/v1/predict", {"inputs": TOKENS}, None, 200),
    ("POST", "/v1/predict", b"{", None, 400),
    ("GET", "/nope", None, None, 404),
    ("DELETE", "/v1/predict", None, None, 405),
    ("POST", "/v1/predict", b"", {"Content-Length": None}, 411),
    ("POST", "/v1/predict", b"{}", {"Content-Length": "9999999999"}, 413),
    ("POST", "/v1/predict", b"{}", {"Content-Type": "text/plain"}, 415),
    ("GET", "/health", None, {"Host": "evil.example"}, 421),
]


@pytest.mark.parametrize("method, path, body, headers, status", PROBES,
                         ids=[f"{p[4]}" for p in PROBES])
def test_every_answer_has_a_request_id_and_no_python_server(
    servers, method, path, body, headers, status
):
    server = servers["classifier"]
    answer = send(server, method, path, body, headers)
    assert answer.status == status
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
    assert answer.headers["server"] == "kerasrnn-serving"
    assert_no_python(answer)
    mine = send(server, method, path, body,
                {**(headers or {}), "X-Request-ID": f"client-{status}"})
    assert mine.status == status
    assert mine.headers["x-request-id"] == f"client-{status}"


def test_a_long_request_id_is_cut_to_64_characters(servers):
    answer = send(servers["classifier"], "GET", "/health", None,
                  {"X-Request-ID": "r" * 500})
    assert answer.headers["x-request-id"] == "r" * 64


# --- KServe v2 with tritonclient ---------------------------------------------


def triton(server):
    http = pytest.importorskip("tritonclient.http")
    return http, http.InferenceServerClient(server.url[len("http://"):])


def test_tritonclient_health_and_metadata(servers):
    server = servers["classifier"]
    _, client = triton(server)
    from tritonclient.utils import InferenceServerException

    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(server.model)
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata()["name"] == "kerasrnn-serving"
    metadata = client.get_model_metadata(server.model)
    assert metadata["name"] == server.model
    assert metadata["inputs"] == [{"name": "tokens", "datatype": "INT32",
                                   "shape": [-1, -1]}]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32",
                                    "shape": [-1, 2]}]
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("nope")
    assert "No model 'nope'" in error.value.message()


def infer_tokens(http, client, server, tokens, **options):
    data = np.array(tokens, np.int32)
    tensor = http.InferInput("tokens", list(data.shape), "INT32")
    tensor.set_data_from_numpy(data, binary_data=False)
    outputs = [http.InferRequestedOutput("logits", binary_data=False)]
    return client.infer(server.model, [tensor], outputs=outputs, **options)


def test_tritonclient_infer_equals_predictor(servers, expected):
    """tritonclient sends its JSON inference requests without a
    Content-Type header, which the _Guard answers 415 (app.py
    _Guard._check): the real KServe v2 client cannot infer."""
    server = servers["classifier"]
    http, client = triton(server)
    result = infer_tokens(http, client, server, TOKENS)
    np.testing.assert_allclose(result.as_numpy("logits"),
                               expected["logits"], atol=1e-6)


def test_tritonclient_infer_with_a_json_content_type(servers, expected):
    """The same inference with Content-Type set by hand: equal to
    Predictor.predict, the request id echoed, binary outputs asked for
    but JSON returned."""
    server = servers["classifier"]
    http, client = triton(server)
    json_type = {"Content-Type": "application/json"}
    result = infer_tokens(http, client, server, TOKENS, headers=json_type,
                          request_id="triton-1")
    np.testing.assert_allclose(result.as_numpy("logits"),
                               expected["logits"], atol=1e-6)
    assert result.get_response()["id"] == "triton-1"
    tokens = [[1, 2, 3, 4, 5, 6], [11, 10, 9, 0, 0, 0], [2, 0, 0, 0, 0, 0]]
    data = np.array(tokens, np.int32)
    tensor = http.InferInput("tokens", list(data.shape), "INT32")
    tensor.set_data_from_numpy(data, binary_data=False)
    result = client.infer(server.model, [tensor], headers=json_type,
                          outputs=[http.InferRequestedOutput("logits")])
    np.testing.assert_allclose(
        result.as_numpy("logits"),
        expected["predictor"].predict(data)["logits"], atol=1e-6)


def test_tritonclient_bad_infer_raises_the_servers_message(servers, good):
    server = servers["classifier"]
    http, client = triton(server)
    from tritonclient.utils import InferenceServerException

    json_type = {"Content-Type": "application/json"}
    floats = http.InferInput("tokens", [1, 2], "FP32")
    floats.set_data_from_numpy(np.array([[1.5, 2]], np.float32),
                               binary_data=False)
    with pytest.raises(InferenceServerException) as error:
        client.infer(server.model, [floats], headers=json_type)
    assert "takes integer ids (int32)" in error.value.message()
    assert str(error.value.status()) == "400"
    shaped = http.InferInput("tokens", [1, 3], "INT32")
    shaped.set_data_from_numpy(np.array([[1, 2, 3]], np.int32),
                               binary_data=False)
    shaped.set_shape([2, 2])
    with pytest.raises(InferenceServerException) as error:
        client.infer(server.model, [shaped], headers=json_type)
    assert "do not fill shape [2, 2]" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        infer_tokens(http, client, server, [[1, 99]], headers=json_type)
    assert "token id 99" in error.value.message()
    good("classifier")


def test_tritonclient_with_an_api_key(servers):
    server = servers["limited"]
    _, client = triton(server)
    from tritonclient.utils import InferenceServerException

    assert client.is_server_live()
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata(server.model)
    assert "API key" in error.value.message()
    metadata = client.get_model_metadata(server.model,
                                         headers={"X-API-Key": KEY})
    assert metadata["name"] == server.model


# --- schemathesis on /openapi.json -------------------------------------------


OPERATIONS = {
    "classifier": ["GET /health", "GET /ready", "GET /v1/metadata",
                   "POST /v1/predict", "POST /v2/models/{name}/infer"],
    "seq2seq": ["GET /health", "GET /ready", "GET /v1/metadata",
                "POST /v1/generate"],
}


@pytest.mark.parametrize("server", sorted(OPERATIONS))
def test_openapi_lists_the_routes(servers, server):
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_url(
        servers[server].url + "/openapi.json")
    listed = sorted(f"{op.method.upper()} {op.path}" for op in (
        result.ok() for result in schema.get_all_operations()))
    assert listed == sorted(OPERATIONS[server])


@pytest.mark.parametrize("server, operation", [
    (server, operation) for server, operations in sorted(OPERATIONS.items())
    for operation in operations])
def test_schemathesis_finds_no_5xx_and_only_declared_statuses(
    servers, server, operation
):
    """Bounded (derandomized, 15 examples a mode): positive and negative
    bodies; no 5xx, every status and content type as declared. (The
    pytest plugin's from_fixture fails on pytest 9: ``Function`` has no
    ``_nodeid``; so hypothesis drives ``as_strategy`` directly.)"""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck
    from hypothesis import Phase
    from hypothesis import given
    from hypothesis import settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance)
    from schemathesis.specs.openapi.checks import status_code_conformance

    schema = schemathesis.openapi.from_url(
        servers[server].url + "/openapi.json")
    method, path = operation.split()
    api_operation = schema[path][method]
    checks = [not_a_server_error, status_code_conformance,
              content_type_conformance, response_schema_conformance]
    modes = [schemathesis.GenerationMode.POSITIVE]
    if method == "POST":
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    statuses = []
    for mode in modes:
        @given(case=api_operation.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, database=None,
                  derandomize=True, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call_and_validate(checks=checks, timeout=30)
            statuses.append(response.status_code)

        run()
    assert statuses and max(statuses) < 500


# --- metrics -----------------------------------------------------------------


def scrape(server):
    from prometheus_client.parser import text_string_to_metric_families

    answer = send(server, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_latency_batches_and_errors(servers):
    server = servers["classifier"]
    before = scrape(server)
    for _ in range(3):
        assert send(server, "POST", "/v1/predict",
                    {"inputs": TOKENS}).status == 200
    for bad in ({"inputs": [[1, 99]]}, {"inputs": [["a"]]}):
        assert send(server, "POST", "/v1/predict", bad).status == 400
    assert send(server, "GET", "/nope").status == 404
    assert send(server, "POST", "/v1/predict", {},
                {"Host": "evil.example"}).status == 421
    after = scrape(server)

    def grew(name, by=1, **labels):
        delta = value(after, name, **labels) - value(before, name, **labels)
        assert delta >= by, (name, labels, delta)

    grew("kerasrnn_requests_total", 3, route="/v1/predict", status="200")
    grew("kerasrnn_requests_total", 2, route="/v1/predict", status="400")
    grew("kerasrnn_requests_total", 1, route="other", status="404")
    grew("kerasrnn_requests_total", 1, route="/v1/predict", status="421")
    grew("kerasrnn_request_seconds_count", 6, route="/v1/predict")
    grew("kerasrnn_request_seconds_bucket", 6, route="/v1/predict",
         le="+Inf")
    assert value(after, "kerasrnn_request_seconds_sum",
                 route="/v1/predict") > 0
    grew("kerasrnn_batch_rows_count", 1, kind="predict")
    grew("kerasrnn_batch_rows_sum", 2 * 3, kind="predict")
    grew("kerasrnn_batch_rows_bucket", 1, kind="predict", le="256.0")
    grew("kerasrnn_errors_total", 2, kind="invalid_input")
    grew("kerasrnn_errors_total", 1, kind="not_found")
    grew("kerasrnn_errors_total", 1, kind="bad_host")
    assert ("kerasrnn_in_flight", ()) in after
    assert ("kerasrnn_queue_depth", ()) in after


def test_generation_metrics_count_decoder_steps(servers):
    server = servers["seq2seq"]
    before = scrape(server)
    assert send(server, "POST", "/v1/generate", GOOD_TEXT).status == 200
    assert send(server, "POST", "/v1/generate",
                {"texts": ["12 may"], "method": "beam",
                 "beam_width": 0}).status == 400
    after = scrape(server)
    for name, labels, by in [
        ("kerasrnn_requests_total", {"route": "/v1/generate",
                                     "status": "200"}, 1),
        ("kerasrnn_requests_total", {"route": "/v1/generate",
                                     "status": "400"}, 1),
        ("kerasrnn_batch_rows_count", {"kind": "step"}, 1),
        ("kerasrnn_errors_total", {"kind": "invalid_input"}, 1),
        ("kerasrnn_request_seconds_count", {"route": "/v1/generate"}, 2),
    ]:
        delta = value(after, name, **labels) - value(before, name, **labels)
        assert delta >= by, (name, labels, delta)
