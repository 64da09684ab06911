"""Generation serving end to end: ``kerasrnn_serving.Generator`` on an
exported ``Seq2Seq`` and ``LanguageModel`` held to the Keras models, the
/v1/generate server (a real process on a free port, real HTTP), the
``generate`` command line, and all of it without TensorFlow."""

import contextlib
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

import kerasrnn_serving as serving
from kerasrnn.export import to_onnx
from kerasrnn.models import LanguageModel
from kerasrnn.models import Seq2Seq
from kerasrnn.models import default_optimizer
from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import tokenize
from kerasrnn.models.text import Tokenizer
from kerasrnn_serving.server import running

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
MAX_SOURCE = 10
MAX_TARGET = 12
# Every source fits max_source_length=10; "3 march 99" is exactly 10.
PAIRS = [("3 march 99", "99-3-3"), ("12 may", "5-12"),
         ("1 june 2", "02-6-1"), ("4 jan", "1-4")]
SOURCES = [source for source, _ in PAIRS]
UNKNOWN_TEXT = "3 @ may"   # "@" is not in the source vocabulary
LONG_TEXT = "3 march 2021"  # 12 characters, over the limit
CORPUS = ("the cat sat on the mat\nthe dog ate the bone\na cat and a dog\n"
          "a dog sat on a cat\n")
PROMPTS = ["the cat", "a dog", "the", ""]


# --- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    """A tiny char-level Seq2Seq (bidirectional GRU, Bahdanau attention,
    max_source_length=10) with its tokenizers, trained a little on PAIRS
    so that its hypotheses end at various lengths; exported; its
    Generator."""
    keras.utils.set_random_seed(7)
    sources = Tokenizer("char")
    sources.adapt(SOURCES)
    targets = Tokenizer("char")
    targets.adapt([target for _, target in PAIRS])
    assert "@" not in sources.vocabulary
    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id, embedding_dim=8,
        units=16, cell="gru", bidirectional=True, attention="bahdanau",
        max_source_length=MAX_SOURCE, max_target_length=MAX_TARGET,
        source_tokenizer=sources, target_tokenizer=targets,
    )
    model.compile(optimizer=default_optimizer(0.02))
    model.fit(source_ids(model, SOURCES),
              targets.encode([target for _, target in PAIRS], bos_eos=True)
              .to_tensor().numpy(), epochs=20, batch_size=4, verbose=0)
    directory = tmp_path_factory.mktemp("seq2seq")
    to_onnx(model, directory)
    return model, directory, serving.Generator(directory)


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    """A tiny word-level LanguageModel with its vocabulary, exported."""
    keras.utils.set_random_seed(10)
    vocabulary = Vocabulary.build(tokenize(CORPUS))
    model = LanguageModel(vocabulary.size, embedding_dim=8, units=8,
                          num_layers=2, vocabulary=vocabulary)
    directory = tmp_path_factory.mktemp("language_model")
    to_onnx(model, directory)
    return model, directory, serving.Generator(directory)


@contextlib.contextmanager
def served(directory):
    """``python -m kerasrnn_serving serve DIR --port 0``: yields (url,
    banner)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasrnn_serving", "serve", str(directory),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=ENV,
    )
    try:
        banner = process.stdout.readline()
        address = process.stdout.readline().strip()
        assert address.startswith("serving on http://"), (
            banner + address + process.stderr.read())
        yield address.split()[-1], banner
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def seq2seq_server(seq2seq):
    with served(seq2seq[1]) as server:
        yield server


@pytest.fixture(scope="module")
def lm_server(language_model):
    with served(language_model[1]) as server:
        yield server


# --- helpers -----------------------------------------------------------------


def call(url, payload=None, raw=None, timeout=30):
    """``(status, content type, body bytes)`` of a GET (no payload) or a
    JSON POST."""
    data = raw if raw is not None else (
        None if payload is None else json.dumps(payload).encode())
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (response.status, response.headers["Content-Type"],
                    response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def post(url, payload=None, raw=None):
    """``(status, decoded JSON)`` of a POST to /v1/generate."""
    status, kind, body = call(url + "/v1/generate", payload, raw)
    assert kind == "application/json", (kind, body)
    return status, json.loads(body)


def events_of(body):
    """Server-sent events as ``[(event name, decoded data)]``."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        events.append((name, data))
    return events


def source_ids(model, texts):
    """Texts as the right-padded ids the Keras model reads."""
    return model.source_tokenizer.encode(texts).to_tensor(
        default_value=model.pad_id).numpy().astype("int32")


def assert_same_answers(received, expected, atol=1e-6):
    """The same texts and ids, scores within ``atol``."""
    assert len(received) == len(expected)
    for ours, theirs in zip(received, expected):
        assert ours.get("text") == theirs.get("text")
        assert len(ours["hypotheses"]) == len(theirs["hypotheses"])
        for a, b in zip(ours["hypotheses"], theirs["hypotheses"]):
            assert a.get("text") == b.get("text")
            assert a["ids"] == b["ids"] and a["length"] == b["length"]
            assert a["score"] == pytest.approx(b["score"], abs=atol)
            assert a["log_prob"] == pytest.approx(b["log_prob"], abs=atol)


def keras_hypotheses(model, result):
    """``[B][K]`` id lists of a Keras ``DecodingResult`` without EOS."""
    ids = keras.ops.convert_to_numpy(result.ids)
    lengths = keras.ops.convert_to_numpy(result.lengths)
    rows = []
    for row_ids, row_lengths in zip(ids, lengths):
        row = []
        for tokens, length in zip(row_ids, row_lengths):
            tokens = tokens[:length].tolist()
            if tokens and tokens[-1] == model.eos_id:
                tokens = tokens[:-1]
            row.append(tokens)
        rows.append(row)
    return rows


def send(url, body, content_length=None):
    """A raw socket with ``POST /v1/generate`` and ``body`` sent (with the
    given Content-Length header value, default the body's length)."""
    host, port = url[len("http://"):].split(":")
    if content_length is None:
        content_length = str(len(body)).encode()
    client = socket.create_connection((host, int(port)), timeout=30)
    client.sendall(
        b"POST /v1/generate HTTP/1.1\r\nHost: " + host.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + content_length + b"\r\n\r\n" + body
    )
    return client


def open_stream(url, payload):
    """A raw socket with a streaming request sent and its first event
    read; returns the socket."""
    client = send(url, json.dumps(payload).encode())
    received = b""
    while True:
        head, _, events = received.partition(b"\r\n\r\n")
        if b"\n\n" in events:
            break
        chunk = client.recv(4096)
        assert chunk, received
        received += chunk
    assert head.split(b"\r\n")[0].split()[1] == b"200", head
    assert b"text/event-stream" in head
    if b"transfer-encoding: chunked" in head.lower():   # HTTP/1.1
        size, _, events = events.partition(b"\r\n")
        assert int(size, 16) > 0, events
    assert events.startswith(b"data: {\"index\": 0"), events
    return client


def hang_up(client):
    """Closes with a reset (SO_LINGER 0), as a client that went away."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    client.close()


# --- TensorFlow-free ---------------------------------------------------------


def test_generator_in_a_fresh_process_never_imports_tensorflow(seq2seq):
    _, directory, generator = seq2seq
    code = (
        "import json, sys\n"
        "import kerasrnn_serving\n"
        f"g = kerasrnn_serving.Generator({str(directory)!r})\n"
        f"texts = {SOURCES!r}\n"
        "answers = g.generate(texts, method='beam', beam_width=3,\n"
        "                     num_return=2)\n"
        "ids = g.describe(g.generate_ids(g.encode_texts(texts)))\n"
        "streamed = list(g.stream(texts[0]))\n"
        "weights = g.alignments(g.encode_texts(texts[:1])[0], [4, 5])\n"
        "g.metadata()\n"
        "loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print(json.dumps({'answers': answers, 'ids': ids,\n"
        "                  'done': streamed[-1], 'shape': weights.shape,\n"
        "                  'loaded': loaded}))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                               env=ENV, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert_same_answers(out["answers"], generator.generate(
        SOURCES, method="beam", beam_width=3, num_return=2))
    assert_same_answers(out["ids"], generator.generate(SOURCES))
    assert out["done"]["text"] == generator.generate(SOURCES[:1])[0]["text"]
    assert out["shape"] == [3, len(SOURCES[0])]


def test_server_process_never_imports_tensorflow(seq2seq_server, lm_server):
    for _, banner in (seq2seq_server, lm_server):
        assert "tensorflow imported: False" in banner, banner


# --- Generator == Keras ------------------------------------------------------

BATCHES = {"batch1": SOURCES[:1], "batch4": SOURCES[1:] + [UNKNOWN_TEXT]}


@pytest.mark.parametrize("batch", sorted(BATCHES))
def test_greedy_equals_keras(seq2seq, batch):
    model, _, generator = seq2seq
    texts = BATCHES[batch]
    ids = source_ids(model, texts)
    expected = model.generate(ids, method="greedy")
    result = generator.generate_ids(ids, method="greedy")
    np.testing.assert_array_equal(
        result.ids, keras.ops.convert_to_numpy(expected.ids))
    np.testing.assert_array_equal(
        result.lengths, keras.ops.convert_to_numpy(expected.lengths))
    np.testing.assert_allclose(
        result.scores, keras.ops.convert_to_numpy(expected.scores),
        atol=1e-4)
    answers = generator.generate(texts)
    assert [a["text"] for a in answers] == model.generate_text(texts)
    assert [[h["ids"] for h in a["hypotheses"]] for a in answers] == (
        keras_hypotheses(model, expected))


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("width", [1, 3, 5])
def test_beam_search_equals_keras(seq2seq, width, alpha):
    model, _, generator = seq2seq
    for texts in BATCHES.values():
        ids = source_ids(model, texts)
        for num_return in sorted({1, width}):
            options = dict(method="beam", beam_width=width,
                           length_penalty_weight=alpha,
                           num_return=num_return)
            expected = model.generate(ids, **options)
            result = generator.generate_ids(ids, **options)
            np.testing.assert_array_equal(
                result.ids, keras.ops.convert_to_numpy(expected.ids))
            np.testing.assert_array_equal(
                result.lengths, keras.ops.convert_to_numpy(expected.lengths))
            for field in ("scores", "log_probs"):
                np.testing.assert_allclose(
                    getattr(result, field),
                    keras.ops.convert_to_numpy(getattr(expected, field)),
                    atol=1e-4, err_msg=field)
            answers = generator.generate(texts, **options)
            assert [a["text"] for a in answers] == model.generate_text(
                texts, **options)
            assert [[h["ids"] for h in a["hypotheses"]] for a in answers] \
                == keras_hypotheses(model, expected)
            for answer, scores in zip(answers, keras.ops.convert_to_numpy(
                expected.scores
            )):
                np.testing.assert_allclose(
                    [h["score"] for h in answer["hypotheses"]], scores,
                    atol=1e-4)
                assert [h["score"] for h in answer["hypotheses"]] == sorted(
                    (h["score"] for h in answer["hypotheses"]),
                    reverse=True)


def test_language_model_greedy_equals_keras(language_model):
    model, _, generator = language_model
    answers = generator.generate(PROMPTS, method="greedy", max_length=15)
    for prompt, answer in zip(PROMPTS, answers):
        assert answer["text"] == model.generate(prompt, method="greedy",
                                                max_length=15), prompt
        assert len(answer["hypotheses"][0]["ids"]) == 15


def test_language_model_seeded_sampling_is_reproducible(language_model):
    _, directory, generator = language_model
    options = dict(method="sample", max_length=15, temperature=0.8, top_k=6,
                   num_samples=3)
    first = generator.generate(PROMPTS, seed=5, **options)
    again = serving.Generator(directory).generate(PROMPTS, seed=5, **options)
    assert first == again
    assert all(len(a["hypotheses"]) == 3 for a in first)
    others = [generator.generate(PROMPTS, seed=seed, **options)
              for seed in (6, 7)]
    assert any(other != first for other in others)


def lm_prompt_with_eos(generator, max_length=15):
    """A prompt whose greedy continuation holds ``<eos>`` before its last
    token, and that continuation."""
    eos = generator.tokens["eos_id"]
    for prompt in PROMPTS:
        answer = generator.generate([prompt], "greedy", max_length)[0]
        if eos in answer["hypotheses"][0]["ids"][:-1]:
            return prompt, answer
    raise AssertionError("no prompt's greedy continuation holds <eos>")


def test_language_model_stream_ends_with_generates_answer(language_model):
    """``Generator.stream``: its last event is ``generate``'s answer; a
    language model does not stop at ``<eos>`` by default."""
    _, _, generator = language_model
    prompt, expected = lm_prompt_with_eos(generator)
    events = list(generator.stream(prompt, "greedy", 15))
    done = events[-1]
    assert done.pop("done") is True
    assert done == expected
    assert len(events) == 16


def test_language_model_stream_pieces_join_into_the_text(language_model):
    """Each event's ``text`` is what the token adds (a space before a
    word), so the pieces join into the answer."""
    _, _, generator = language_model
    eos = generator.tokens["eos_id"]
    ids = generator.generate(["the"], "greedy", 15)[0]["hypotheses"][0][
        "ids"]
    length = ids.index(eos) if eos in ids else len(ids)
    assert length >= 3, ids
    events = list(generator.stream("the", "greedy", length))
    assert "".join(e["text"] for e in events[:-1]) == events[-1]["text"]


# --- the server --------------------------------------------------------------


def test_health_and_metadata(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    _, _, generator = seq2seq
    status, _, body = call(url + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = call(url + "/v1/metadata")
    metadata = json.loads(body)
    assert status == 200
    assert metadata["kind"] == "seq2seq"
    assert metadata["default_method"] == "greedy"
    assert sorted(metadata["methods"]) == ["beam", "greedy", "sample"]
    assert metadata["methods"]["beam"]["beam_width"] == 4
    assert metadata["limits"] == {
        "max_length": 256, "beam_width": 16, "num_samples": 16,
        "source_length": MAX_SOURCE,
        "vocabulary_size": generator.vocabulary_size,
    }
    assert metadata["tokens"]["eos_id"] == generator.tokens["eos_id"]
    assert metadata["text"] == {"source": True, "target": True}


def test_texts_in_texts_out(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    model, _, generator = seq2seq
    texts = SOURCES + [UNKNOWN_TEXT]   # "unknown" defaults to "map"
    status, body = post(url, {"texts": texts})
    assert status == 200, body
    assert_same_answers(body["results"], generator.generate(texts))
    assert [r["text"] for r in body["results"]] == model.generate_text(texts)
    status, body = post(url, {"texts": SOURCES[0], "max_length": 4})
    assert status == 200, body
    assert_same_answers(body["results"],
                        generator.generate(SOURCES[:1], max_length=4))


def test_ids_in_ids_out(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    model, _, generator = seq2seq
    ids = source_ids(model, SOURCES)
    status, body = post(url, {"ids": ids.tolist()})
    assert status == 200, body
    assert_same_answers(body["results"], generator.describe(
        generator.generate_ids(ids)))
    assert_same_answers(body["results"], generator.generate(SOURCES))
    ragged = [row[row != model.pad_id].tolist() for row in ids]
    status, again = post(url, {"ids": ragged})
    assert status == 200 and again == body


def test_beam_n_best_with_scores(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    model, _, generator = seq2seq
    options = {"method": "beam", "beam_width": 4, "num_return": 3,
               "length_penalty_weight": 0.6}
    status, body = post(url, {"texts": SOURCES, **options})
    assert status == 200, body
    assert_same_answers(body["results"], generator.generate(SOURCES,
                                                            **options))
    expected = model.generate(source_ids(model, SOURCES), **options)
    for result, scores in zip(body["results"],
                              keras.ops.convert_to_numpy(expected.scores)):
        hypotheses = result["hypotheses"]
        assert len(hypotheses) == 3
        assert result["text"] == hypotheses[0]["text"]
        np.testing.assert_allclose([h["score"] for h in hypotheses], scores,
                                   atol=1e-4)


def test_attention_weights_match_keras_alignments(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    model, _, _ = seq2seq
    texts = SOURCES[:3]
    ids = source_ids(model, texts)
    request = {"method": "beam", "beam_width": 3, "num_return": 3,
               "attention": True}
    status, by_text = post(url, {"texts": texts, **request})
    assert status == 200, by_text
    status, by_ids = post(url, {"ids": ids.tolist(), **request})
    assert status == 200, by_ids
    assert by_ids == by_text
    checked = 0
    for row, result in zip(ids, by_text["results"]):
        source = row[row != model.pad_id][None]
        for hypothesis in result["hypotheses"]:
            weights = np.asarray(hypothesis["attention"])
            assert weights.shape == (len(hypothesis["ids"]) + 1,
                                     source.shape[1])
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)
            target = np.array([[model.bos_id, *hypothesis["ids"],
                                model.eos_id]], "int32")
            expected = keras.ops.convert_to_numpy(
                model.alignments(source, target))[0]
            np.testing.assert_allclose(weights, expected, atol=1e-5)
            checked += 1
    assert checked == 9
    status, plain = post(url, {"texts": texts, "method": "beam",
                               "beam_width": 3, "num_return": 3})
    assert all("attention" not in h for r in plain["results"]
               for h in r["hypotheses"])


def test_stream_sends_each_token_then_the_answer(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    for options in ({}, {"method": "sample", "seed": 3, "temperature": 0.7},
                    {"method": "beam", "beam_width": 3}):
        text = SOURCES[0]
        status, plain = post(url, {"texts": [text], **options})
        assert status == 200, plain
        answer = plain["results"][0]
        status, kind, body = call(url + "/v1/generate",
                                  {"texts": [text], "stream": True,
                                   **options})
        assert status == 200 and kind == "text/event-stream", body
        events = events_of(body)
        name, done = events[-1]
        assert name == "done" and done.pop("done") is True
        assert_same_answers([done], [answer])
        tokens = [data for _, data in events[:-1]]
        assert all(name == "message" for name, _ in events[:-1])
        if options.get("method") == "beam":
            assert tokens == []   # beam search sends only the answer
            continue
        best = answer["hypotheses"][0]
        assert len(best["ids"]) >= 2, best
        assert [t["id"] for t in tokens] == best["ids"]
        assert [t["index"] for t in tokens] == list(range(len(tokens)))
        assert "".join(t["text"] for t in tokens) == answer["text"]


BAD_REQUESTS = {
    "unknown-character": ({"texts": [UNKNOWN_TEXT], "unknown": "error"},
                          "missing from the vocabulary: ['@']"),
    "unknown-mode": ({"texts": ["3"], "unknown": "drop"}, "`unknown`"),
    "unknown-with-ids": ({"ids": [[4]], "unknown": "map"}, '"unknown"'),
    "empty-text": ({"texts": [""]}, "Source 0 is empty"),
    "empty-second-text": ({"texts": ["3", ""]}, "Source 1 is empty"),
    "source-over-limit": ({"texts": [LONG_TEXT]},
                          "12 tokens, more than the limit of 10"),
    "ids-over-limit": ({"ids": [[4] * 11]}, "more than the limit of 10"),
    "max-length-0": ({"texts": ["3"], "max_length": 0}, "`max_length`"),
    "max-length-over": ({"texts": ["3"], "max_length": 257},
                        "`max_length`"),
    "max-length-string": ({"texts": ["3"], "max_length": "5"},
                          "`max_length`"),
    "beam-width-0": ({"texts": ["3"], "method": "beam", "beam_width": 0},
                     "`beam_width`"),
    "beam-width-over": ({"texts": ["3"], "method": "beam",
                         "beam_width": 17}, "`beam_width`"),
    "num-return-over-width": ({"texts": ["3"], "method": "beam",
                               "beam_width": 3, "num_return": 4},
                              "`num_return`"),
    "length-penalty-negative": ({"texts": ["3"], "method": "beam",
                                 "length_penalty_weight": -1},
                                "`length_penalty_weight`"),
    "temperature-0": ({"texts": ["3"], "method": "sample",
                       "temperature": 0}, "`temperature`"),
    "temperature-negative": ({"texts": ["3"], "method": "sample",
                              "temperature": -0.5}, "`temperature`"),
    "top-p-0": ({"texts": ["3"], "method": "sample", "top_p": 0},
                "`top_p`"),
    "top-p-1.5": ({"texts": ["3"], "method": "sample", "top_p": 1.5},
                  "`top_p`"),
    "top-k-negative": ({"texts": ["3"], "method": "sample", "top_k": -1},
                       "`top_k`"),
    "num-samples-over": ({"texts": ["3"], "method": "sample",
                          "num_samples": 17}, "`num_samples`"),
    "seed-negative": ({"texts": ["3"], "method": "sample", "seed": -1},
                      "`seed`"),
    "texts-number": ({"texts": 5}, "`texts`"),
    "texts-of-numbers": ({"texts": [1, 2]}, "`texts`"),
    "texts-empty-list": ({"texts": []}, "`texts`"),
    "ids-string": ({"ids": "abc"}, "token id lists"),
    "ids-empty-list": ({"ids": []}, "token id lists"),
    "ids-with-string": ({"ids": [[1, "x"]]}, "integer token ids"),
    "ids-with-float": ({"ids": [[4, 2.5]]}, "integer token ids"),
    "method-number": ({"texts": ["3"], "method": 3}, '"method"'),
    "method-unknown": ({"texts": ["3"], "method": "top"}, "`method`"),
    "stream-string": ({"texts": ["3"], "stream": "yes"}, '"stream"'),
    "attention-string": ({"texts": ["3"], "attention": 1}, '"attention"'),
    "unknown-option": ({"texts": ["3"], "beams": 3}, "['beams']"),
    "option-of-another-method": ({"texts": ["3"], "beam_width": 3},
                                 "['beam_width']"),
    "stop-at-eos-for-seq2seq": ({"texts": ["3"], "stop_at_eos": True},
                                '"stop_at_eos"'),
    "texts-and-ids": ({"texts": ["3"], "ids": [[4]]}, "exactly one of"),
    "neither": ({"method": "greedy"}, "exactly one of"),
    "not-an-object": ([["3"]], "JSON object"),
    "id-over-vocabulary": ({"ids": [[4, 99]]}, "must lie in [0, "),
    "id-negative": ({"ids": [[-1, 4]]}, "must lie in [0, "),
    "id-beyond-int64": ({"ids": [[4, 2**70]]}, "must lie in [0, "),
    "padding-in-the-middle": ({"ids": [[4, 0, 5]]},
                              "padding id 0 at position 1"),
    "stream-two-texts": ({"texts": ["3", "4"], "stream": True},
                         '"stream": true takes one text'),
    "stream-ids": ({"ids": [[4]], "stream": True}, '"stream"'),
    "stream-unknown-character": ({"texts": [UNKNOWN_TEXT], "stream": True,
                                  "unknown": "error"}, "['@']"),
    "stream-max-length-0": ({"texts": ["3"], "stream": True,
                             "max_length": 0}, "`max_length`"),
    "stream-num-samples": ({"texts": ["3"], "stream": True,
                            "method": "sample", "num_samples": 2},
                           "`num_samples`"),
}


@pytest.fixture(scope="module")
def good_answer(seq2seq):
    return seq2seq[2].generate(SOURCES[:2])


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_400_naming_it_and_serving_goes_on(
        seq2seq_server, good_answer, case):
    url, _ = seq2seq_server
    payload, message = BAD_REQUESTS[case]
    status, body = post(url, payload)
    assert status == 400, body
    assert message in body["error"], body["error"]
    status, body = post(url, {"texts": SOURCES[:2]})
    assert status == 200, body
    assert_same_answers(body["results"], good_answer)


def test_invalid_json_and_empty_body(seq2seq_server, good_answer):
    url, _ = seq2seq_server
    for raw, message in ((b'{"texts": ["3"', "not JSON"),
                         (b"\xff\xfe", "not JSON"),
                         (b"", "no body")):
        status, body = post(url, raw=raw)
        assert status == 400, body
        assert message in body["error"]
    status, body = post(url, {"texts": SOURCES[:2]})
    assert status == 200
    assert_same_answers(body["results"], good_answer)


def test_malformed_content_length_is_400(seq2seq_server, good_answer):
    url, _ = seq2seq_server
    for value in (b"abc", b"1.5"):
        client = send(url, b'{"texts": ["3"]}', content_length=value)
        with client, client.makefile("rb") as response:
            reply = response.read()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.split()[1] == b"400", reply
        assert "Content-Length" in json.loads(body)["error"], body
    status, body = post(url, {"texts": SOURCES[:2]})
    assert status == 200
    assert_same_answers(body["results"], good_answer)


def test_limits_are_inclusive(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    _, _, generator = seq2seq
    assert len(SOURCES[0]) == MAX_SOURCE
    for payload in ({"texts": [SOURCES[0]], "max_length": 256,
                     "method": "greedy", "min_length": 256},
                    {"texts": [SOURCES[0]], "method": "beam",
                     "beam_width": 16, "num_return": 16, "max_length": 5},
                    {"texts": [SOURCES[0]], "method": "sample",
                     "num_samples": 16, "max_length": 5, "top_p": 1,
                     "top_k": 10**6, "seed": 2**63 - 1}):
        status, body = post(url, payload)
        assert status == 200, (payload, body)
        options = {k: v for k, v in payload.items() if k != "texts"}
        assert_same_answers(body["results"],
                            generator.generate(payload["texts"], **options))


def test_a_client_that_hangs_up_mid_stream(seq2seq_server, seq2seq):
    url, _ = seq2seq_server
    long = {"texts": [SOURCES[0]], "stream": True, "max_length": 256,
            "min_length": 256}
    expected = seq2seq[2].generate(SOURCES[:2])
    for _ in range(3):
        hang_up(open_stream(url, long))
        start = time.monotonic()
        status, body = post(url, {"texts": SOURCES[:2]})
        assert status == 200, body
        assert time.monotonic() - start < 5
        assert_same_answers(body["results"], expected)
    status, _, _ = call(url + "/health")
    assert status == 200


class CountingGenerator(serving.Generator):
    """A real Generator whose steps are counted and take at least 5 ms
    each (a slower model), so that a decoding that goes on is seen."""

    steps = 0

    def step(self, token_ids, state):
        self.steps += 1
        time.sleep(0.005)
        return super().step(token_ids, state)


def test_hanging_up_stops_the_decoding(seq2seq):
    generator = CountingGenerator(seq2seq[1])
    with running(generator) as url:
        hang_up(open_stream(url, {"texts": [SOURCES[0]], "stream": True,
                                  "max_length": 256, "min_length": 256}))
        time.sleep(0.3)
        stopped_at = generator.steps
        time.sleep(0.3)
        # 256 steps take over 1.3 s; the decoding stopped soon after the
        # client went away and does not go on.
        assert generator.steps == stopped_at < 100
        status, body = post(url, {"texts": SOURCES[:1]})
        assert status == 200, body


def test_language_model_server(lm_server, language_model):
    url, _ = lm_server
    _, _, generator = language_model
    status, body = post(url, {"texts": PROMPTS, "method": "greedy",
                              "max_length": 15})
    assert status == 200, body
    assert_same_answers(body["results"], generator.generate(
        PROMPTS, "greedy", 15))
    sample = {"texts": PROMPTS, "method": "sample", "max_length": 15,
              "seed": 9, "top_p": 0.9}
    status, first = post(url, sample)
    status, again = post(url, sample)
    assert status == 200 and first == again
    assert_same_answers(first["results"], generator.generate(
        PROMPTS, "sample", 15, seed=9, top_p=0.9))
    status, body = post(url, {"texts": PROMPTS, "method": "greedy",
                              "max_length": 15, "stop_at_eos": True})
    assert status == 200, body
    assert_same_answers(body["results"], generator.generate(
        PROMPTS, "greedy", 15, stop_at_eos=True))
    status, body = post(url, {"texts": ["the zebra"], "unknown": "error"})
    assert status == 400 and "zebra" in body["error"], body
    status, body = post(url, {"texts": ["the"], "attention": True})
    assert status == 400 and '"attention"' in body["error"], body


def test_language_model_ids_in_equal_texts_in(lm_server, language_model):
    """The same prompts as ids or as texts give the same continuations
    (neither stops at ``<eos>`` unless ``"stop_at_eos": true``)."""
    url, _ = lm_server
    _, _, generator = language_model
    prompt, _ = lm_prompt_with_eos(generator)
    request = {"method": "greedy", "max_length": 15}
    status, by_text = post(url, {"texts": [prompt], **request})
    assert status == 200, by_text
    status, by_ids = post(url, {"ids": generator.encode_texts([prompt]),
                                **request})
    assert status == 200, by_ids
    assert_same_answers(by_ids["results"], by_text["results"])


def test_language_model_stream_with_stop_at_eos(lm_server, language_model):
    url, _ = lm_server
    _, _, generator = language_model
    prompt, _ = lm_prompt_with_eos(generator)
    expected = generator.generate([prompt], "greedy", 15, stop_at_eos=True)
    status, kind, body = call(url + "/v1/generate", {
        "texts": [prompt], "method": "greedy", "max_length": 15,
        "stream": True, "stop_at_eos": True})
    assert status == 200 and kind == "text/event-stream", body
    name, done = events_of(body)[-1]
    assert name == "done" and done.pop("done") is True
    assert_same_answers([done], expected)


# --- the command line --------------------------------------------------------


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "kerasrnn_serving", "generate", *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60,
    )


def test_command_line_generate_json(seq2seq):
    _, directory, generator = seq2seq
    completed = cli(str(directory), SOURCES[0], SOURCES[1], "--method",
                    "beam", "--beam-width", "3", "--num-return", "2",
                    "--length-penalty", "0.6", "--json")
    assert completed.returncode == 0, completed.stderr
    banner, answer = completed.stdout.strip().splitlines()
    assert "tensorflow imported: False" in banner
    assert_same_answers(json.loads(answer), generator.generate(
        SOURCES[:2], method="beam", beam_width=3, num_return=2,
        length_penalty_weight=0.6))


def test_command_line_generate_stream(seq2seq):
    _, directory, generator = seq2seq
    completed = cli(str(directory), SOURCES[0], "--stream")
    assert completed.returncode == 0, completed.stderr
    best = generator.generate(SOURCES[:1])[0]
    lines = completed.stdout.splitlines()
    assert lines[1] == (f"{best['text']}   (score "
                        f"{best['hypotheses'][0]['score']:.4f})")


@pytest.mark.parametrize("args, message", [
    (["--method", "beam", "--beam-width", "0"], "`beam_width`"),
    (["--method", "sample", "--top-p", "1.5"], "`top_p`"),
    (["--beam-width", "3"], "['beam_width']"),
    (["--stream", "--max-length", "0"], "`max_length`"),
    (["--beams", "3"], "unrecognized arguments: --beams"),
    (["--method", "top"], "invalid choice: 'top'"),
    (["--top-k", "many"], "--top-k"),
])
def test_command_line_bad_option_exits_2(seq2seq, args, message):
    completed = cli(str(seq2seq[1]), SOURCES[0], *args)
    assert completed.returncode == 2, completed.stdout
    assert message in completed.stderr, completed.stderr
