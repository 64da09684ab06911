"""``kerasrnn.export.to_triton``: Triton model repositories for a
classifier, a streaming (implicit-state) model, a ``Seq2Seq`` and a
``LanguageModel``.

* Every ``config.pbtxt`` parses with Triton's own ``ModelConfig`` schema
  (the real ``model_config.proto``: ``tests/scripts/triton_model_config.py``)
  and says what its graph takes and returns.
* The graphs Triton serves equal the exported ones: the step graph with
  per-row ``top_k``/``forbid_end``, the stateful graph with ``START``
  (and chunk after chunk it equals Keras on the whole sequence).
* The Python-backend ``model.py`` files (generation by BLS, the
  onnxruntime runner) run under a stand-in for Triton's Python backend
  (``tests/scripts/triton_fake_server.py``, which checks every request
  against the configs) and answer as ``kerasrnn_serving`` does, batching
  the requests of one execution into the same graph calls.
* With a real Triton -- the ``tritonserver`` inside ``nvidia-pytriton``,
  found in this Python or in ``KERASRNN_TRITON_PYTHON`` (a Python with
  pytriton, numpy < 2 and onnxruntime) -- the repository is served and
  queried with ``tritonclient`` (HTTP, and gRPC streaming). Skipped,
  saying why, when there is none.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
from google.protobuf import text_format

import kerasrnn
import kerasrnn_serving as serving
from kerasrnn.export import to_onnx
from kerasrnn.export import to_triton
from kerasrnn.export.onnx import call_model
from kerasrnn.models import LanguageModel
from kerasrnn.models import Seq2Seq
from kerasrnn.models.lm_data import Vocabulary
from kerasrnn.models.lm_data import tokenize
from kerasrnn.models.text import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"
sys.path.insert(0, str(SCRIPTS))

import triton_fake_server  # noqa: E402
import triton_model_config  # noqa: E402

VOCABULARY = 20
PAIRS = [("3 march 99", "99-3-3"), ("12 may", "5-12"),
         ("1 june 2", "02-6-1"), ("4 jan", "1-4")]
SOURCES = [source for source, _ in PAIRS]
CORPUS = "the cat sat on the mat\nthe dog ate the bone\na cat and a dog\n"
PROMPTS = ["the cat", "a dog", "the"]


def spread_weights(model, seed):
    """N(0, 0.4) weights: peaked distributions, answers that differ."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0, 0.4, weight.shape).astype("float32"))


def classifier():
    keras.utils.set_random_seed(1)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCABULARY, 8, mask_zero=True)(tokens)
    x = kerasrnn.LSTM(8)(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="scores")(x),
                       name="sentiment")


def streamer():
    """Frames + state in, per-step outputs + final state out."""
    keras.utils.set_random_seed(2)
    frames = keras.Input((None, 3), name="frames")
    h = keras.Input((6,), name="h")
    out, h_n = kerasrnn.GRU(6, return_sequences=True, return_state=True)(
        frames, initial_state=[h])
    return keras.Model([frames, h], {"y": keras.layers.Dense(2)(out),
                                     "new_h": h_n}, name="streamer")


def seq2seq():
    keras.utils.set_random_seed(3)
    sources = Tokenizer("char")
    sources.adapt(SOURCES)
    targets = Tokenizer("char")
    targets.adapt([target for _, target in PAIRS])
    model = Seq2Seq(
        sources.vocabulary_size, targets.vocabulary_size,
        bos_id=targets.bos_id, eos_id=targets.eos_id, embedding_dim=8,
        units=8, cell="gru", attention="bahdanau", max_source_length=12,
        max_target_length=10, source_tokenizer=sources,
        target_tokenizer=targets, name="dates")
    spread_weights(model, 3)
    return model


def language_model():
    keras.utils.set_random_seed(4)
    vocabulary = Vocabulary.build(tokenize(CORPUS))
    model = LanguageModel(vocabulary.size, embedding_dim=8, units=8,
                          num_layers=2, vocabulary=vocabulary, name="words")
    model(np.ones((1, 2), "int32"))
    spread_weights(model, 4)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two repositories (onnxruntime backend; Python backend for the
    graphs, as the real-server test serves) and the plain exports."""
    root = tmp_path_factory.mktemp("triton")
    models = {"sentiment": classifier(), "streamer": streamer(),
              "dates": seq2seq(), "words": language_model()}
    ort, python = root / "onnxruntime", root / "python"
    results = {
        "sentiment": to_triton(models["sentiment"], ort, kind="gpu",
                               instance_count=2),
        "streamer": to_triton(models["streamer"], ort, stateful=True),
        "dates": to_triton(models["dates"], ort),
        "words": to_triton(models["words"], ort,
                           max_queue_delay_microseconds=2000),
    }
    for name in ("sentiment", "dates", "words"):
        to_triton(models[name], python, backend="python",
                  python_path=str(ROOT), verify=False)
        to_onnx(models[name], root / "plain" / name, verify=False)
    to_onnx(models["streamer"], root / "plain" / "streamer", verify=False)
    return {"models": models, "ort": ort, "python": python,
            "plain": root / "plain", "results": results}


@pytest.fixture(scope="module")
def generators(exported):
    return {name: serving.Generator(exported["plain"] / name)
            for name in ("dates", "words")}


@pytest.fixture(scope="module")
def fake(exported):
    return triton_fake_server.FakeServer(exported["python"])


def config(repository, name):
    return triton_model_config.parse(
        (pathlib.Path(repository) / name / "config.pbtxt").read_text())


def dims(tensor):
    return list(tensor.dims)


# --- configs -----------------------------------------------------------------


def test_every_config_parses_with_tritons_model_config(exported):
    names = set()
    for repository in (exported["ort"], exported["python"]):
        for path in sorted(repository.glob("*/config.pbtxt")):
            parsed = triton_model_config.parse(path.read_text())
            assert parsed.name == path.parent.name
            version = path.parent / "1"
            assert (version / "manifest.json").exists()
            if parsed.backend == "onnxruntime":
                onnx.checker.check_model(str(version / "model.onnx"))
            else:
                assert parsed.backend == "python"
                compile((version / "model.py").read_text(), "model.py",
                        "exec")
            names.add(parsed.name)
    assert names == {
        "sentiment", "streamer", "dates", "dates_stream", "dates_encoder",
        "dates_decoder_step", "words", "words_stream", "words_prompt",
        "words_step"}
    # A real schema: a misspelt field or a wrong enum is refused.
    for bad in ('name: "x" inputs [ { name: "a" } ]',
                'name: "x" input [ { name: "a" data_type: TYPE_FLOAT32 } ]',
                'name: "x" dynamic_batching { max_delay: 3 }'):
        with pytest.raises(text_format.ParseError):
            triton_model_config.parse(bad)


ONNX_TYPES = {1: 11, 6: 8, 7: 9, 9: 1}   # onnx elem_type -> TYPE_*


def graph_dims(value):
    return [d.dim_value if d.HasField("dim_value") else -1
            for d in value.type.tensor_type.shape.dim]


def test_configs_match_their_graphs_as_the_onnxruntime_backend_checks(
    exported,
):
    """What the onnxruntime backend checks at load: each config tensor is
    a graph tensor of its type, its dims (after ``reshape``) the graph's
    without the batch axis, which is variable; every graph input is a
    config input, a control input or an implicit state."""
    for path in sorted(exported["ort"].glob("*/config.pbtxt")):
        parsed = triton_model_config.parse(path.read_text())
        if parsed.backend != "onnxruntime":
            continue
        graph = onnx.load(str(path.parent / "1" / "model.onnx")).graph
        values = {v.name: v for v in [*graph.input, *graph.output]}
        fed = {t.name for t in parsed.input}
        fed |= {c.name for c in parsed.sequence_batching.control_input}
        fed |= {s.input_name for s in parsed.sequence_batching.state}
        assert fed == {v.name for v in graph.input}, path
        states = [(s.input_name, s) for s in parsed.sequence_batching.state]
        states += [(s.output_name, s) for s in
                   parsed.sequence_batching.state]
        for name, tensor in [*[(t.name, t) for t in parsed.input],
                             *[(t.name, t) for t in parsed.output],
                             *states]:
            value = values[name]
            assert ONNX_TYPES[value.type.tensor_type.elem_type] == (
                tensor.data_type), (path, name)
            shape = graph_dims(value)
            assert shape[0] == -1, (path, name)    # the batch axis
            reshaped = "reshape" in tensor.DESCRIPTOR.fields_by_name and (
                tensor.HasField("reshape"))
            expected = (list(tensor.reshape.shape) if reshaped
                        else dims(tensor))
            assert shape[1:] == expected, (path, name)


def test_emitted_model_py_files_pass_ruff(exported):
    ruff = shutil.which("ruff") or shutil.which(
        "ruff", path=str(pathlib.Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
    files = sorted(str(p) for p in exported["python"].glob("*/1/model.py"))
    assert len(files) == 9
    run = subprocess.run([ruff, "check", "--no-cache", "--isolated",
                          "--line-length", "80", "--select", "E,F,W",
                          *files], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_classifier_config_matches_its_graph(exported):
    parsed = config(exported["ort"], "sentiment")
    assert parsed.backend == "onnxruntime"
    assert parsed.max_batch_size == 64
    assert [(t.name, t.data_type, dims(t)) for t in parsed.input] == [
        ("tokens", 8, [-1])]                    # TYPE_INT32
    assert [(t.name, t.data_type, dims(t)) for t in parsed.output] == [
        ("scores", 11, [3])]                    # TYPE_FP32
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 500
    group = parsed.instance_group[0]
    assert (group.count, group.kind) == (2, 1)  # KIND_GPU
    text = (exported["ort"] / "sentiment" / "config.pbtxt").read_text()
    assert "non-batch dims agree" in text and "'time'" in text
    # The graph is to_onnx's, as the plain export serves it.
    version = exported["ort"] / "sentiment" / "1"
    tokens = np.array([[3, 4, 5, 0], [7, 1, 0, 0]], np.int32)
    session = onnxruntime.InferenceSession(str(version / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["tokens"]
    received = session.run(None, {"tokens": tokens})[0]
    expected = serving.Predictor(exported["plain"] / "sentiment").predict(
        tokens)["scores"]
    np.testing.assert_array_equal(received, expected)
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["parity"]["max_abs_error"] < 1e-4
    readme = exported["results"]["sentiment"]["readme"]
    assert readme == (exported["ort"] / "sentiment" / "README.md"
                      ).read_text()
    assert "/v2/models/sentiment/infer" in readme


def test_unbatched_config_keeps_the_batch_axis(exported, tmp_path):
    to_triton(exported["models"]["sentiment"], tmp_path, max_batch_size=0,
              verify=False)
    parsed = config(tmp_path, "sentiment")
    assert parsed.max_batch_size == 0
    assert dims(parsed.input[0]) == [-1, -1]
    assert parsed.WhichOneof("scheduling_choice") is None


def test_bad_arguments_are_refused(exported, tmp_path):
    model = exported["models"]["sentiment"]
    for arguments, message in (
        ({"kind": "tpu"}, "`kind`"), ({"backend": "tensorrt"}, "`backend`"),
        ({"max_batch_size": -1}, "`max_batch_size`"),
        ({"instance_count": 0}, "`instance_count`"),
        ({"name": "a/b"}, "`name`"),
        ({"stateful": True}, "stateful=True pairs"),
    ):
        with pytest.raises(ValueError, match=message):
            to_triton(model, tmp_path, verify=False, **arguments)
    with pytest.raises(ValueError, match="onnxruntime backend"):
        to_triton(exported["models"]["streamer"], tmp_path, stateful=True,
                  backend="python", verify=False)
    with pytest.raises(ValueError, match="one-graph"):
        to_triton(exported["models"]["dates"], tmp_path, stateful=True,
                  verify=False)


# --- implicit state ----------------------------------------------------------


def test_stateful_model_streams_chunks_as_one_sequence(exported):
    parsed = config(exported["ort"], "streamer")
    assert parsed.WhichOneof("scheduling_choice") == "sequence_batching"
    batching = parsed.sequence_batching
    assert [t.name for t in parsed.input] == ["frames"]
    assert [t.name for t in parsed.output] == ["y"]
    (state,) = batching.state
    assert (state.input_name, state.output_name, dims(state)) == (
        "h", "new_h", [6])
    assert state.initial_state[0].zero_data
    (control,) = batching.control_input
    assert control.name == "START"
    assert control.control[0].kind == 0        # CONTROL_SEQUENCE_START
    assert list(control.control[0].int32_false_true) == [0, 1]
    assert batching.oldest.max_candidate_sequences == 64
    # What Triton does: the first request with START=1 (and whatever state
    # it holds), then each with the state the previous one returned.
    session = onnxruntime.InferenceSession(
        str(exported["ort"] / "streamer" / "1" / "model.onnx"))
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(2, 7, 3)).astype("float32")
    state = rng.normal(size=(2, 6)).astype("float32")   # garbage
    pieces = []
    for start, chunk in ((1, frames[:, :4]), (0, frames[:, 4:])):
        y, state = session.run(["y", "new_h"], {
            "frames": chunk, "h": state,
            "START": np.full((2, 1), start, np.int32)})
        pieces.append(y)
    model = exported["models"]["streamer"]
    expected = call_model(model, [frames, np.zeros((2, 6), "float32")])
    names = ["new_h", "y"]     # flattened dict outputs: sorted keys
    expected = dict(zip(names, [keras.ops.convert_to_numpy(e)
                                for e in expected]))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1),
                               expected["y"], atol=1e-5)
    np.testing.assert_allclose(state, expected["new_h"], atol=1e-5)


# --- generation --------------------------------------------------------------


def test_generation_configs(exported):
    ort = exported["ort"]
    dates = config(ort, "dates")
    assert dates.backend == "python" and dates.max_batch_size == 64
    assert dates.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(t.name, t.optional) for t in dates.input] == [
        ("TEXT", True), ("SOURCE_IDS", True), ("SOURCE_LENGTHS", True),
        ("OPTIONS", True)]
    assert dates.input[1].allow_ragged_batch
    assert [t.name for t in dates.output] == [
        "OUTPUT_TEXT", "OUTPUT_IDS", "OUTPUT_LENGTHS", "SCORES", "RESULTS"]
    parameters = {k: v.string_value for k, v in dates.parameters.items()}
    assert parameters["encoder_model"] == "dates_encoder"
    assert parameters["decoder_step_model"] == "dates_decoder_step"
    assert parameters["graph_max_batch_size"] == "64"
    stream = config(ort, "dates_stream")
    assert stream.model_transaction_policy.decoupled
    assert stream.max_batch_size == 0
    step = config(ort, "dates_decoder_step")
    inputs = {t.name: t for t in step.input}
    assert dims(inputs["top_k"]) == [1] and not inputs["top_k"].HasField(
        "reshape")
    assert dims(inputs["forbid_end"]) == [1]
    assert list(inputs["forbid_end"].reshape.shape) == []
    assert dims(inputs["memory"]) == [-1, 8]
    words = config(ort, "words")
    assert [t.name for t in words.input][1:3] == ["PROMPT_IDS",
                                                  "PROMPT_LENGTHS"]
    assert words.dynamic_batching.max_queue_delay_microseconds == 2000
    parameters = {k: v.string_value for k, v in words.parameters.items()}
    assert (parameters["prompt_model"], parameters["step_model"]) == (
        "words_prompt", "words_step")
    readme = exported["results"]["dates"]["readme"]
    assert "generate_stream" in readme and "numpy<2" in readme


def test_step_graph_takes_top_k_and_forbid_end_per_row(exported,
                                                       generators):
    generator = generators["dates"]
    original = onnxruntime.InferenceSession(
        str(exported["plain"] / "dates" / "decoder_step.onnx"))
    triton = onnxruntime.InferenceSession(
        str(exported["ort"] / "dates_decoder_step" / "1" / "model.onnx"))
    source = generator.check_source(generator.encode_texts(SOURCES[:3]))
    state = generator.encode(source)
    tokens = np.array([1, 5, 7], np.int32)
    names = ["top_log_probs", "top_ids", "log_probs"]
    received = triton.run(names, {
        "token_ids": tokens, **state,
        "top_k": np.array([[2], [5], [3]], np.int64),
        "forbid_end": np.array([True, False, True])})
    assert received[1].shape == (3, 5)       # the largest top_k
    for row, forbid in enumerate([True, False, True]):
        expected = original.run(names, {
            "token_ids": tokens, **state, "top_k": np.array([5]),
            "forbid_end": np.array(forbid)})
        for ours, theirs in zip(received, expected):
            np.testing.assert_array_equal(ours[row], theirs[row])


def answers(response):
    assert not response.has_error(), response.error().message()
    tensors = {t.name(): t.as_numpy() for t in response.output_tensors()}
    return tensors, [json.loads(r.decode()) for r in
                     tensors["RESULTS"].reshape(-1)]


def assert_same(received, expected):
    assert len(received) == len(expected)
    for ours, theirs in zip(received, expected):
        assert ours.get("text") == theirs.get("text")
        for a, b in zip(ours["hypotheses"], theirs["hypotheses"], strict=True):
            assert a["ids"] == b["ids"]
            assert abs(a["score"] - b["score"]) < 1e-5


def texts(values):
    return np.array(values, dtype=object).reshape(-1, 1)


def test_generate_model_answers_as_kerasrnn_serving(fake, generators):
    generator = generators["dates"]
    response = fake.infer("dates", {"TEXT": texts(SOURCES)})
    tensors, received = answers(response)
    assert_same(received, generator.generate(SOURCES))
    assert tensors["OUTPUT_TEXT"].shape == (4, 1)
    assert [t.decode() for t in tensors["OUTPUT_TEXT"][:, 0]] == [
        answer["text"] for answer in received]
    beam = {"method": "beam", "beam_width": 3, "num_return": 2,
            "length_penalty_weight": 0.6}
    tensors, received = answers(fake.infer(
        "dates", {"TEXT": texts(SOURCES[:2])}, parameters=beam))
    assert_same(received, generator.generate(SOURCES[:2], **beam))
    ids, lengths = tensors["OUTPUT_IDS"], tensors["OUTPUT_LENGTHS"]
    assert ids.shape[:2] == (2, 2) and lengths.shape == (2, 2)
    for b, answer in enumerate(received):
        for k, hypothesis in enumerate(answer["hypotheses"]):
            assert ids[b, k, :lengths[b, k]].tolist() == hypothesis["ids"]
    # Ids in: padded rows, with and without lengths.
    source = generator.encode_texts(SOURCES[:2])
    padded = generator.check_source(source)
    expected = generator.describe(generator.generate_ids(padded))
    _, received = answers(fake.infer("dates", {"SOURCE_IDS": padded}))
    assert_same(received, expected)
    _, received = answers(fake.infer("dates", {
        "SOURCE_IDS": np.pad(padded, ((0, 0), (0, 2)), constant_values=7),
        "SOURCE_LENGTHS": np.array([[len(s)] for s in source], np.int32)}))
    assert_same(received, expected)
    # Attention weights, each hypothesis', as Generator.alignments.
    _, (received,) = answers(fake.infer("dates", {"TEXT": texts(
        SOURCES[:1])}, parameters={"attention": True}))
    hypothesis = received["hypotheses"][0]
    np.testing.assert_allclose(hypothesis["attention"], generator.alignments(
        source[0], hypothesis["ids"]), atol=1e-5)


def test_a_dynamic_batch_is_decoded_together(fake, generators):
    generator = generators["dates"]
    beam = {"method": "beam", "beam_width": 2}
    batch = [({"TEXT": texts([source])}, None) for source in SOURCES]
    batch.append(({"TEXT": texts(SOURCES[:2])}, beam))
    batch.append(({"TEXT": texts(["3 @ may"])}, {"unknown": "error"}))
    batch.append(({"TEXT": texts(["4 jan"])}, {"beam_width": 3}))
    before = fake.executions.get("dates_decoder_step", 0)
    responses = fake.infer_batch("dates", batch)
    steps = fake.executions["dates_decoder_step"] - before
    for source, response in zip(SOURCES, responses):
        assert_same(answers(response)[1], generator.generate([source]))
    assert_same(answers(responses[4])[1],
                generator.generate(SOURCES[:2], **beam))
    # The bad requests fail alone, each naming what is wrong.
    assert "missing from the vocabulary: ['@']" in (
        responses[5].error().message())
    assert "beam_width" in responses[6].error().message()
    # The four greedy requests ran as one search: as many step calls as
    # the longest of them (at most max_target_length), plus the beam's.
    alone = sum(len(answer["hypotheses"][0]["ids"]) + 1 for answer in
                generator.generate(SOURCES))
    assert steps < alone


def test_language_model_generation(fake, generators):
    generator = generators["words"]
    options = {"method": "sample", "seed": 5, "max_length": 6,
               "temperature": 0.8}
    _, received = answers(fake.infer("words", {"TEXT": texts(PROMPTS)},
                                     parameters=options))
    assert_same(received, generator.generate(PROMPTS, **options))
    # Per-row OPTIONS; prompt ids with lengths.
    prompts = generator.encode_texts(PROMPTS[:2])
    width = max(len(p) for p in prompts)
    padded = np.array([p + [0] * (width - len(p)) for p in prompts],
                      np.int32)
    rows = [json.dumps({"method": "greedy", "max_length": 4})] * 2
    _, received = answers(fake.infer("words", {
        "PROMPT_IDS": padded,
        "PROMPT_LENGTHS": np.array([[len(p)] for p in prompts], np.int32),
        "OPTIONS": texts(rows)}))
    expected = generator.describe(generator.generate_ids(
        prompts, method="greedy", max_length=4))
    assert_same(received, expected)


def test_stream_model_sends_each_token_then_the_answer(fake, generators):
    generator = generators["dates"]
    responses = fake.infer("dates_stream", {"TEXT": np.array(
        ["3 march 99"], dtype=object)}, parameters={"max_length": 8})
    events = [{t.name(): t.as_numpy() for t in r.output_tensors()}
              for r in responses]
    pieces = [e["OUTPUT_TEXT"][0].decode() for e in events[:-1]]
    final = json.loads(events[-1]["RESULTS"][0].decode())
    (expected,) = generator.generate(["3 march 99"], max_length=8)
    assert "".join(pieces) == final["text"] == expected["text"]
    assert [int(e["OUTPUT_IDS"][0]) for e in events[:-1]] == (
        expected["hypotheses"][0]["ids"])
    error = fake.infer("dates_stream", {"TEXT": np.array(
        ["3 march 99"], dtype=object)}, parameters={"attention": True})
    assert error[0].has_error() and "attention" in error[0].error(
    ).message()


def test_onnx_runner_batches_requests_of_one_shape(fake, exported):
    predictor = serving.Predictor(exported["plain"] / "sentiment")
    rng = np.random.default_rng(1)
    requests = [rng.integers(1, VOCABULARY, (n, steps)).astype(np.int32)
                for n, steps in ((2, 5), (1, 5), (3, 2))]
    responses = fake.infer_batch("sentiment", [({"tokens": tokens}, None)
                                               for tokens in requests])
    for tokens, response in zip(requests, responses):
        (scores,) = response.output_tensors()
        np.testing.assert_allclose(scores.as_numpy(), predictor.predict(
            tokens)["scores"], atol=1e-6)
    with pytest.raises(ValueError, match="dims"):
        fake.infer("sentiment", {"tokens": np.ones(3, np.int32)})


# --- a real Triton server ----------------------------------------------------


def triton_python():
    """``(python, facts)`` of a Python with nvidia-pytriton, or a reason
    to skip."""
    python = os.environ.get("KERASRNN_TRITON_PYTHON")
    if python is None:
        import importlib.util

        if importlib.util.find_spec("pytriton") is None:
            return None, (
                "no Triton server: nvidia-pytriton (which bundles "
                "tritonserver) is not installed here; set "
                "KERASRNN_TRITON_PYTHON to a Python that has it")
        python = sys.executable
    probe = subprocess.run([python, "-c", (
        "import json, pathlib, sys, numpy, onnxruntime, pytriton, "
        "tritonclient.http, tritonclient.grpc\n"
        "print(json.dumps({'numpy': numpy.__version__, 'pytriton': "
        "str(pathlib.Path(pytriton.__file__).parent), 'version': "
        "'%d.%d' % sys.version_info[:2], 'prefix': sys.prefix}))")],
        capture_output=True, text=True, timeout=60)
    if probe.returncode:
        return None, (f"{python} cannot serve: "
                      f"{probe.stderr.strip().splitlines()[-1]}")
    facts = json.loads(probe.stdout)
    if int(facts["numpy"].split(".")[0]) >= 2:
        return None, (
            f"{python} has numpy {facts['numpy']}: the Python backend "
            "bundled with nvidia-pytriton needs numpy < 2 (with numpy 2 "
            "every response fails: 'output tensor shape does not match "
            "size of output')")
    return python, facts


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_triton(python, facts, repository, directory):
    """tritonserver from the pytriton package, its Python backend with
    the stub of ``python``'s version, on free loopback ports."""
    server = pathlib.Path(facts["pytriton"]) / "tritonserver"
    backend = directory / "backends" / "python"
    backend.mkdir(parents=True)
    for item in (server / "backends" / "python").iterdir():
        if item.is_file():
            (backend / item.name).symlink_to(item)
    shutil.copy(server / "python_backend_stubs" / facts["version"] /
                "triton_python_backend_stub", backend)
    libraries = [server.parent.parent / "nvidia_pytriton.libs",
                 server / "lib"]
    env = {**os.environ,
           "PATH": f"{pathlib.Path(python).parent}:{os.environ['PATH']}",
           "LD_LIBRARY_PATH": ":".join(str(p) for p in libraries)}
    ports = {kind: free_port() for kind in ("http", "grpc", "metrics")}
    command = [str(server / "bin" / "tritonserver"),
               f"--model-repository={repository}",
               f"--backend-directory={directory / 'backends'}",
               "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
               "--metrics-address=127.0.0.1", "--log-verbose=0",
               "--exit-timeout-secs=5"]
    command += [f"--{kind}-port={port}" for kind, port in ports.items()]
    log = open(directory / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{ports['http']}/v2/health/ready",
                timeout=2,
            ) as reply:
                if reply.status == 200:
                    return process, ports
        except OSError:
            time.sleep(0.5)
    process.terminate()
    process.wait(timeout=30)
    raise AssertionError("tritonserver did not become ready:\n"
                         + (directory / "server.log").read_text()[-4000:])


def test_a_real_triton_serves_the_repository(exported, generators,
                                            tmp_path):
    python, facts = triton_python()
    if python is None:
        pytest.skip(facts)
    process, ports = start_triton(python, facts, exported["python"],
                                  tmp_path)
    try:
        tokens = np.array([[3, 4, 5, 0], [7, 1, 0, 0]], np.int32)
        beam = {"method": "beam", "beam_width": 3, "num_return": 2}
        sample = {"method": "sample", "seed": 3, "max_length": 6}

        def query(key, model, inputs, parameters=None):
            return {"id": key, "model": model, "inputs": inputs,
                    "parameters": parameters}

        def text_input(values):
            return [{"name": "TEXT", "datatype": "BYTES",
                     "shape": [len(values), 1], "data": values}]

        queries = [
            query("classifier", "sentiment", [{
                "name": "tokens", "datatype": "INT32", "shape": [2, 4],
                "data": tokens.tolist()}]),
            query("greedy", "dates", text_input(SOURCES)),
            query("beam", "dates", text_input(SOURCES[:2]), beam),
            query("bad", "dates", text_input(["4 jan"]), {"beam_width": 3}),
            query("words", "words", text_input(PROMPTS), sample),
        ] + [query(f"one_{i}", "dates", text_input([SOURCES[i % 4]]))
             for i in range(8)]
        job = {"http": f"127.0.0.1:{ports['http']}",
               "grpc": f"127.0.0.1:{ports['grpc']}", "queries": queries,
               "streams": [{"id": "stream", "model": "dates_stream",
                            "text": SOURCES[0],
                            "parameters": {"max_length": 8}}],
               "stats": ["dates_decoder_step"]}
        run = subprocess.run([python, str(SCRIPTS / "triton_query.py")],
                             input=json.dumps(job), capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        report = json.loads(run.stdout)
    finally:
        process.terminate()
        process.wait(timeout=30)
    results = report["results"]
    predictor = serving.Predictor(exported["plain"] / "sentiment")
    np.testing.assert_allclose(results["classifier"]["scores"],
                               predictor.predict(tokens)["scores"],
                               atol=1e-6)
    dates, words = generators["dates"], generators["words"]

    def received(key):
        return [json.loads(r[0]) for r in results[key]["RESULTS"]]

    assert_same(received("greedy"), dates.generate(SOURCES))
    assert_same(received("beam"), dates.generate(SOURCES[:2], **beam))
    assert_same(received("words"), words.generate(PROMPTS, **sample))
    for i in range(8):
        assert_same(received(f"one_{i}"), dates.generate([SOURCES[i % 4]]))
    assert "beam_width" in report["errors"]["bad"]
    # Concurrent requests shared the step model's executions.
    stats = report["stats"]["dates_decoder_step"]
    assert stats["executions"] < stats["inferences"]
    events = report["streams"]["stream"]
    (expected,) = dates.generate([SOURCES[0]], max_length=8)
    assert "".join(e["OUTPUT_TEXT"][0] for e in events[:-1]) == (
        expected["text"])
    assert_same([json.loads(events[-1]["RESULTS"][0])], [expected])
