"""Continuous batching of generation: concurrent /v1/generate requests of
different source lengths share decoding steps and get exactly the answers
each would get alone."""

import concurrent.futures
import json
import urllib.request

import keras
import numpy as np

from kerasrnn.export import to_onnx
from kerasrnn.models import Seq2Seq
from kerasrnn.models import text
from kerasrnn_serving import Generator
from kerasrnn_serving.server import running

TEXTS = ["3 may 1979", "21 june 2024", "1 jan", "12.11.2001", "sep 3 1979",
         "the 4th of july, 1990"]


def post(url, body):
    request = urllib.request.Request(
        url + "/v1/generate", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def step_rows(url):
    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    values = {}
    for line in metrics.splitlines():
        for name in ("sum", "count"):
            if line.startswith(f'kerasrnn_batch_rows_{name}{{kind="step"}}'):
                values[name] = float(line.split()[-1])
    return values


def test_concurrent_generations_share_steps_and_answer_as_alone(tmp_path):
    keras.utils.set_random_seed(2)
    tokens = text.Tokenizer("char")
    tokens.adapt(TEXTS + ["0123456789-"])
    model = Seq2Seq(tokens.vocabulary_size, tokens.vocabulary_size,
                    bos_id=tokens.bos_id, eos_id=tokens.eos_id, units=16,
                    cell="gru", bidirectional=True, attention="bahdanau",
                    max_target_length=12, source_tokenizer=tokens,
                    target_tokenizer=tokens)
    rng = np.random.default_rng(2)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0, 0.4, weight.shape).astype("float32"))
    to_onnx(model, tmp_path)
    alone = Generator(tmp_path)
    jobs = [(text_, method) for text_ in TEXTS * 2
            for method in ("greedy", "beam")]

    def options(job):
        return {"beam_width": 3, "num_return": 2} if job[1] == "beam" \
            else {}

    def body(job):
        return {"texts": [job[0]], "method": job[1], **options(job)}

    expected = [alone.generate([job[0]], job[1], **options(job))[0]
                for job in jobs]
    with running(Generator(tmp_path)) as url:
        before = step_rows(url)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda job: post(url, body(job)), jobs))
        after = step_rows(url)
    for job, answer, reference in zip(jobs, answers, expected):
        got = answer["results"][0]["hypotheses"]
        assert [h["ids"] for h in got] == [
            h["ids"] for h in reference["hypotheses"]], job
        np.testing.assert_allclose([h["score"] for h in got],
                                   [h["score"] for h in reference[
                                       "hypotheses"]], atol=1e-5)
    rows = after["sum"] - before.get("sum", 0)
    runs = after["count"] - before.get("count", 0)
    assert rows / runs > 1.0, (rows, runs)   # steps were shared
