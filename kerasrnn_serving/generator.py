"""``Generator``: TensorFlow-free generation from an exported ``Seq2Seq``,
``LanguageModel`` or ``ImageCaptioner`` (``kerasrnn.export.to_onnx``).

Only numpy and onnxruntime are imported. The export directory holds the
graphs and ``manifest.json`` (see ``kerasrnn.export.generation``); the
searches are ``kerasrnn_serving.search`` (NumPy ports of
``kerasrnn.decoding``, held to them by tests).

    generator = Generator("artifacts/dates")
    generator.generate(["3 march 2021"])                   # text -> text
    generator.generate(["3 march 2021"], method="beam", beam_width=5,
                       length_penalty_weight=0.6, num_return=3)
    generator.generate_ids([[5, 9, 4]])                    # ids -> ids
    for event in generator.stream("3 march 2021"):          # token by token
        print(event["text"], end="")
    Generator("artifacts/captioner").caption([png_bytes])  # image -> text

Every request is checked before anything runs (``InputError`` naming
what is wrong): empty or over-long sources, ids outside the vocabulary,
unknown characters or words (mapped to the unknown id, as the model's
tokenizer does, or refused with ``unknown="error"``), and every search
option (``search.check_options``, with this generator's ``limits``).
"""

import pathlib

import numpy as np
import onnxruntime

from kerasrnn_serving import search
from kerasrnn_serving.images import MAX_PIXELS
from kerasrnn_serving.images import ImageError
from kerasrnn_serving.images import decode_image
from kerasrnn_serving.predictor import CPU
from kerasrnn_serving.predictor import CUDA
from kerasrnn_serving.predictor import InputError
from kerasrnn_serving.predictor import check_graph
from kerasrnn_serving.predictor import session_options
from kerasrnn_serving.manifest import read as read_manifest

KINDS = ("seq2seq", "language_model", "captioner")
DEFAULT_METHOD = {"seq2seq": "greedy", "language_model": "sample",
                  "captioner": "greedy"}
# The kinds whose decoder starts from an encoded input at BOS.
CONDITIONAL = ("seq2seq", "captioner")


class Generator:
    """An exported generation model and its onnxruntime sessions.

    Args:
        directory: the export directory.
        providers: onnxruntime execution providers (default: CUDA when
            available, then CPU).
        threads: onnxruntime intra-op threads per session (default 1,
            for latency: on this project's 2 shared cores one thread kept
            the p99 gap between streamed tokens at 0.5-0.8 ms against
            4-12 ms with onnxruntime's pool, and was 2.5-3.5x faster on
            a loaded machine; on an idle one the pool was up to 1.5x
            faster for batch-32 beam search, ``benchmarks/
            generation_speed.py``. None: onnxruntime's default pool).
        limits: the largest ``max_length``, ``beam_width``,
            ``num_samples`` and ``source_length`` a request may ask for
            (defaults: ``search.LIMITS`` and the model's
            ``max_source_length``, else 512 source tokens).

    Attributes:
        manifest, kind (``"seq2seq"``, ``"language_model"`` or
        ``"captioner"``), provider,
        limits.
    """

    def __init__(self, directory, providers=None, threads=1,
                 limits=None):
        directory = pathlib.Path(directory)
        manifest = read_manifest(directory)
        graphs = {name: str(directory / graph["file"])
                  for name, graph in _graphs(manifest, directory).items()}
        self._setup(manifest, graphs, providers, threads, limits)

    @classmethod
    def from_graphs(cls, manifest, graphs, providers=None, threads=1,
                    limits=None):
        """A generator on in-memory graphs (``{name: serialized bytes}``),
        as the export's parity check runs them."""
        generator = cls.__new__(cls)
        generator._setup(manifest, graphs, providers, threads, limits)
        return generator

    def _setup(self, manifest, graphs, providers, threads, limits):
        self.manifest = manifest
        self.kind = manifest["kind"]
        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [CUDA, CPU] if CUDA in available else [CPU]
        options = session_options(threads)
        self.sessions = {
            name: onnxruntime.InferenceSession(graph, options,
                                               providers=providers)
            for name, graph in graphs.items()
        }
        for name, session in self.sessions.items():
            if not hasattr(session, "get_inputs"):
                continue   # a remote graph (Triton BLS): it checks itself
            described = manifest["graphs"][name]
            check_graph(f"manifest of {manifest['model_name']!r}",
                        described["file"], session, described["inputs"],
                        described["outputs"])
        self.provider = next(iter(self.sessions.values())).get_providers()[0]
        self.state_entries = manifest["state"]
        self.constant = tuple(e["name"] for e in self.state_entries
                              if e["constant"])
        self.tokens = manifest["tokens"]
        step_graph = ("decoder_step" if self.kind in CONDITIONAL
                      else "step")
        self._step_session = self.sessions[step_graph]
        self._changing = [e for e in self.state_entries if not e["constant"]]
        self._state_outputs = [e["output"] for e in self._changing]
        self._attention = [o.name for o in self._step_session.get_outputs()
                           if o.name == "attention_weights"]
        sizes = manifest["vocabulary_sizes"]
        self.vocabulary_size = sizes.get("target", sizes.get("tokens"))
        self.source_vocabulary_size = sizes.get("source")
        max_source = manifest["limits"].get("max_source_length") or 512
        self.limits = {**search.LIMITS, "source_length": max_source,
                       "vocabulary_size": self.vocabulary_size,
                       **({"image_pixels": MAX_PIXELS}
                          if self.kind == "captioner" else {}),
                       **(limits or {})}
        self._codecs = {}
        self.step_batcher = None

    def __repr__(self):
        return (f"Generator({self.kind} '{self.manifest['model_name']}', "
                f"provider={self.provider})")

    # --- the graphs ----------------------------------------------------------

    def encode(self, source):
        """``encoder.onnx`` on int ids ``(B, S)`` (right-padded with the
        padding id), or a captioner's float32 images ``(B, H, W, C)``: the
        decoder's first state ``{name: array}``."""
        session = self.sessions["encoder"]
        if self.kind == "captioner":
            feeds = {"image": np.asarray(source, np.float32)}
        else:
            feeds = {"source": np.asarray(source, np.int32)}
        values = session.run(None, feeds)
        return dict(zip([o.name for o in session.get_outputs()], values))

    def prompt(self, prompts, state=None):
        """``prompt.onnx`` on a list of id sequences (each may be empty):
        the state after each, from ``state`` (default zeros)."""
        batch = len(prompts)
        longest = max([len(p) for p in prompts] + [1])
        tokens = np.zeros((batch, longest), np.int32)
        for row, prompt in enumerate(prompts):
            tokens[row, :len(prompt)] = prompt
        feeds = {"tokens": tokens,
                 "lengths": np.array([len(p) for p in prompts], np.int32)}
        feeds.update(state or self.zero_state(batch))
        values = self.sessions["prompt"].run(
            [e["output"] for e in self.state_entries], feeds
        )
        return {e["name"]: v for e, v in zip(self.state_entries, values)}

    def zero_state(self, batch):
        return {e["name"]: np.zeros((batch, e["shape"][1]), np.float32)
                for e in self.state_entries}

    def step(self, token_ids, state):
        """One decoder step: ``(log_probs (B, V), state, attention weights
        (B, S) or None)``; the state keeps its constant entries."""
        outputs = ["log_probs", *self._state_outputs, *self._attention]
        values = self._run_step(token_ids, state, outputs, 1, False)
        return (values["log_probs"], self._new_state(state, values),
                values.get("attention_weights"))

    def candidates(self, token_ids, state, count, forbid_end):
        """The step graph's ``TopK`` head: ``(log_probs (B, m), ids (B, m),
        state)``, each row's ``m = min(count, V)`` best next tokens without
        the forbidden ids (and the end token with ``forbid_end``); the
        ``candidates_fn`` of ``search.beam_search``."""
        count = min(count, self.vocabulary_size)
        outputs = ["top_log_probs", "top_ids", *self._state_outputs]
        values = self._run_step(token_ids, state, outputs, count,
                                forbid_end)
        return (values["top_log_probs"], values["top_ids"],
                self._new_state(state, values))

    def _run_step(self, token_ids, state, outputs, count, forbid_end):
        feeds = {"token_ids": np.asarray(token_ids, np.int32),
                 "top_k": np.array([count], np.int64),
                 "forbid_end": np.array(bool(forbid_end)), **state}
        if self.step_batcher is not None:
            return self.step_batcher.step(feeds, outputs)
        return dict(zip(outputs, self._step_session.run(outputs, feeds)))

    def batch_steps(self, observe=None):
        """From now on, concurrent searches share each ``session.run``
        (``batching.StepBatcher``: continuous batching across requests,
        for a server that runs each request in its own thread)."""
        from kerasrnn_serving.batching import StepBatcher

        padded = {}
        for entry in self.state_entries:
            if entry["constant"] and "source_time" in entry["shape"]:
                fill = False if entry["dtype"] == "bool" else 0.0
                padded[entry["name"]] = (
                    entry["shape"].index("source_time"), fill)
        self.step_batcher = StepBatcher(self._step_session, padded,
                                        observe=observe)

    def _new_state(self, state, values):
        new_state = dict(state)
        for entry in self._changing:
            new_state[entry["name"]] = values[entry["output"]]
        return new_state

    def _step_fn(self, token_ids, state):
        """``step`` as the searches' ``step_fn``."""
        log_probs, state, _ = self.step(token_ids, state)
        return log_probs, state

    # --- searches ------------------------------------------------------------

    def search(self, start_ids, state, method="greedy", max_length=None,
               end_id="model", **options):
        """Runs one search from ``start_ids (B,)`` and ``state``; returns
        a ``search.DecodingResult``. ``end_id`` defaults to
        ``end_id(None)``; options are checked (``search.check_options``).
        """
        values = self._options(method, max_length, options)
        if end_id == "model":
            end_id = self.end_id(None)
        function = search.SEARCHES[method]
        extra = {}
        if method == "beam":
            extra = {"constant": self.constant,
                     "candidates_fn": self.candidates}
        return function(
            self._step_fn, np.asarray(start_ids, np.int32), state, end_id,
            pad_id=self.tokens["pad_id"],
            forbidden_ids=self.tokens["forbidden_ids"], **values, **extra,
        )

    def end_id(self, stop_at_eos):
        """The token that ends a hypothesis: a seq2seq model's end token
        (always); for a language model ``<eos>`` with ``stop_at_eos``, else
        none (``LanguageModel.generate``'s default)."""
        if self.kind in CONDITIONAL:
            if stop_at_eos is not None and not stop_at_eos:
                raise InputError(
                    "`stop_at_eos` applies to language models: a seq2seq "
                    "model always stops at its end token."
                )
            return self.tokens["eos_id"]
        if stop_at_eos and self.tokens["eos_id"] is None:
            raise InputError(
                "`stop_at_eos`: this character-level language model has no "
                "<eos> token."
            )
        return self.tokens["eos_id"] if stop_at_eos else None

    def _options(self, method, max_length, options):
        if max_length is None:
            max_length = self.manifest["limits"].get(
                "max_target_length") or 100
        try:
            values = search.check_options(method, max_length, options,
                                          self.limits)
        except search.OptionError as error:
            raise InputError(str(error)) from None
        top_k = values.get("top_k")
        if top_k is not None and top_k > self.vocabulary_size:
            values["top_k"] = self.vocabulary_size
        return values

    def generate_ids(self, source, method=None, max_length=None,
                     stop_at_eos=None, **options):
        """Generates from token ids.

        Args:
            source: a ``Seq2Seq``'s sources (a list of id lists or an int
                array ``(B, S)`` padded with the padding id), or a language
                model's prompts (id lists; the search continues from each
                prompt's last token, as ``LanguageModel.generate``).
            method: ``"greedy"``, ``"sample"`` or ``"beam"`` (default:
                greedy for seq2seq, sample for a language model, as the
                Keras models).
            max_length, **options: as ``Seq2Seq.generate``.
            stop_at_eos: see ``end_id``.

        Returns:
            a ``search.DecodingResult``: ``ids (B, K, max_length)`` after
            the start token, ending with the end token, then padding.
        """
        method = method or DEFAULT_METHOD[self.kind]
        end_id = self.end_id(stop_at_eos)
        start, state = self._start(source)
        return self.search(start, state, method, max_length, end_id=end_id,
                           **options)

    def _start(self, source):
        """``(start_ids, first state)`` for checked sources or prompts."""
        if self.kind in CONDITIONAL:
            source = (self.check_images(source) if self.kind == "captioner"
                      else self.check_source(source))
            state = self.encode(source)
            return np.full(len(source), self.tokens["bos_id"], np.int32), \
                state
        prompts = self.check_prompts(source)
        state = self.prompt([p[:-1] for p in prompts])
        return np.array([p[-1] for p in prompts], np.int32), state

    def check_source(self, source):
        """Sources as a right-padded int32 array ``(B, S)``, or an
        ``InputError`` naming the row."""
        pad = self.tokens["pad_id"]
        rows = _rows("source", source, pad)
        longest = self.limits["source_length"]
        for index, row in enumerate(rows):
            if not len(row):
                raise InputError(
                    f"Source {index} is empty: a source needs at least one "
                    "token."
                )
            if len(row) > longest:
                raise InputError(
                    f"Source {index} has {len(row)} tokens, more than the "
                    f"limit of {longest}."
                )
            _check_ids(f"source {index}", row,
                       self.source_vocabulary_size, pad)
        array = np.full((len(rows), max(len(r) for r in rows)), pad,
                        np.int32)
        for index, row in enumerate(rows):
            array[index, :len(row)] = row
        return array

    def check_images(self, images):
        """A captioner's images as float32 ``(B, H, W, C)`` (pixels in
        [0, 1], as ``decode_images`` makes them), or an ``InputError``."""
        spec = self.manifest["image"]
        shape = (spec["height"], spec["width"], spec["channels"])
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != shape or not len(images):
            raise InputError(
                f"Images must be an array (batch, {', '.join(map(str, shape))})"
                f". Received: shape {images.shape}"
            )
        if images.dtype.kind != "f":
            raise InputError(
                "Images must hold float pixels in [0, 1]. Received: dtype "
                f"{images.dtype}"
            )
        return images.astype(np.float32)

    def decode_images(self, images):
        """PNG/JPEG bytes (one or a list) as the ``(B, H, W, C)`` array
        the encoder reads (``kerasrnn_serving.images``); an ``InputError``
        names the first bad image: not an image, more than
        ``limits["image_pixels"]``, or another channel count than the
        model's."""
        if self.kind != "captioner":
            raise InputError(f"Images apply to captioners; this is a "
                             f"{self.kind} model.")
        if isinstance(images, (bytes, bytearray)):
            images = [images]
        if not isinstance(images, (list, tuple)) or not images:
            raise InputError("Send a non-empty list of images (PNG or JPEG "
                             f"bytes). Received: {_kind(images)}")
        spec = self.manifest["image"]
        try:
            return np.stack([
                decode_image(data, (spec["height"], spec["width"]),
                             spec["channels"], strict=True,
                             max_pixels=self.limits["image_pixels"],
                             what=f"Image {index}")
                for index, data in enumerate(images)])
        except ImageError as error:
            raise InputError(str(error)) from None

    def caption(self, images, method=None, max_length=None, **options):
        """Image bytes in, captions out: as ``generate``, for a
        captioner (``decode_images`` reads the bytes)."""
        return self.describe(self.generate_ids(
            self.decode_images(images), method, max_length, **options))

    def image_alignments(self, image, target):
        """Attention ``(len(target) + 1, h, w)`` over the grid of one
        image ``(H, W, C)`` while reading ``target`` (ids without BOS)."""
        state = self.encode(self.check_images(np.asarray(image)[None]))
        weights = self._alignments(state, target)
        return weights.reshape(len(weights), *self.manifest["image"]["grid"])

    def check_prompts(self, prompts):
        rows = _rows("prompt", prompts, None)
        for index, row in enumerate(rows):
            if not len(row):
                raise InputError(
                    f"Prompt {index} is empty: a prompt needs at least one "
                    "token to continue from."
                )
            if len(row) > self.limits["source_length"]:
                raise InputError(
                    f"Prompt {index} has {len(row)} tokens, more than the "
                    f"limit of {self.limits['source_length']}."
                )
            _check_ids(f"prompt {index}", row, self.vocabulary_size, None)
        return rows

    # --- text ----------------------------------------------------------------

    def codec(self, side):
        """The ``kerasrnn_serving.text`` codec of ``side`` (``"source"``,
        ``"target"`` or, for a language model, ``"tokens"``)."""
        if side not in self._codecs:
            from kerasrnn_serving.text import codec_from_config

            config = self.manifest["vocabularies"].get(side)
            if config is None:
                raise InputError(
                    f"This model was exported without its {side} "
                    "vocabulary, so it takes token ids, not text. Build "
                    "the model with its tokenizers (Seq2Seq("
                    "source_tokenizer=, target_tokenizer=) or "
                    "LanguageModel(vocabulary=)) and export it again."
                )
            self._codecs[side] = codec_from_config(config)
        return self._codecs[side]

    def encode_texts(self, texts, unknown="map"):
        """Token ids of ``texts`` (sources, or prompts for a language
        model). ``unknown``: ``"map"`` to the unknown id (the tokenizer's
        own behaviour) or ``"error"`` to refuse, naming the tokens."""
        from kerasrnn_serving.text import TextError

        if self.kind == "captioner":
            raise InputError("A captioner reads images, not texts: send "
                             '"images" (base64 PNG or JPEG).')
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts or not all(
            isinstance(text, str) for text in texts
        ):
            raise InputError(
                "`texts` must be a string or a non-empty list of strings. "
                f"Received: {_kind(texts)}"
            )
        if unknown not in ("map", "error"):
            raise InputError(
                "`unknown` must be 'map' or 'error'. Received: "
                f"unknown={unknown!r}"
            )
        try:
            if self.kind == "seq2seq":
                codec = self.codec("source")
                if unknown == "error":
                    for index, text in enumerate(texts):
                        missing = codec.unknown_tokens(text)
                        if missing:
                            raise InputError(
                                f"Text {index} holds tokens missing from "
                                f"the vocabulary: {missing[:10]}."
                            )
                return codec.encode(list(texts))
            codec = self.codec("tokens")
            ids = []
            for text in texts:
                row = list(codec.encode_text(text, strict=unknown == "error"))
                if codec.eos_id is not None:
                    row = [codec.eos_id] + row
                ids.append(row)
            return ids
        except TextError as error:
            raise InputError(str(error)) from None
        except ValueError as error:
            if isinstance(error, InputError):
                raise
            raise InputError(str(error)) from None

    def decode_ids(self, ids):
        """The text of generated ids (one sequence)."""
        if self.kind in CONDITIONAL:
            return self.codec("target").decode([list(ids)])[0]
        return self.codec("tokens").decode(list(ids))

    def generate(self, texts, method=None, max_length=None, unknown="map",
                 stop_at_eos=None, **options):
        """Text in, text out: for each text the hypotheses, best first.

        Args:
            texts: a string or a list of strings (sources; prompts for a
                language model, preceded by ``<eos>`` at word level as
                ``LanguageModel.generate`` does).
            method, max_length, **options: as ``generate_ids``.
            unknown: see ``encode_texts``.
            stop_at_eos: see ``end_id``.

        Returns:
            one dict per text: ``{"text": best, "hypotheses": [{"text",
            "ids", "score", "log_prob", "length"}]}``; ``ids`` exclude the
            end token.
        """
        ids = self.encode_texts(texts, unknown)
        return self.describe(self.generate_ids(
            ids, method, max_length, stop_at_eos, **options))

    def describe(self, result, text=True):
        """A ``DecodingResult`` as the dicts ``generate`` returns (without
        ``"text"`` when ``text`` is False: a model exported without its
        vocabulary)."""
        end_id = (self.tokens["eos_id"] if self.kind in CONDITIONAL
                  else None)
        answers = []
        for lists, scores, log_probs, lengths in zip(
            result.to_lists(end_id), result.scores, result.log_probs,
            result.lengths,
        ):
            hypotheses = []
            for tokens, score, log_prob, length in zip(
                lists, scores, log_probs, lengths
            ):
                hypothesis = {"ids": tokens, "score": float(score),
                              "log_prob": float(log_prob),
                              "length": int(length)}
                if text:
                    hypothesis["text"] = self.decode_ids(tokens)
                hypotheses.append(hypothesis)
            answer = {"hypotheses": hypotheses}
            if text:
                answer["text"] = hypotheses[0]["text"]
            answers.append(answer)
        return answers

    def alignments(self, source, target):
        """Attention weights ``(len(target) + 1, S)`` of a seq2seq model
        reading ``target`` (ids without BOS; the end token is appended)
        after ``source``: row t is what the step that produced token t
        attended to (as ``Seq2Seq.alignments``)."""
        return self._alignments(
            self.encode(self.check_source([list(source)])), target)

    def _alignments(self, state, target):
        tokens = [self.tokens["bos_id"], *target]
        weights = []
        for token in tokens:
            _, state, attention = self.step(np.array([token], np.int32),
                                            state)
            if attention is None:
                raise InputError("This model has no attention.")
            weights.append(attention[0])
        return np.stack(weights)

    def stream(self, text, method=None, max_length=None, unknown="map",
               stop_at_eos=None, **options):
        """Generates for one text, token by token: yields ``{"index",
        "id", "text"}`` as each token is decoded (greedy or sampling; the
        ``"text"`` pieces join into the answer's text), then ``{"done":
        True, **generate's answer}``. Beam search yields only the final
        answer (its best hypothesis is known at the end). Closing the
        iterator stops the decoding."""
        method = method or DEFAULT_METHOD[self.kind]
        end_id = self.end_id(stop_at_eos)
        ids = self.encode_texts([text], unknown)
        start, state = self._start(ids)
        if method == "beam":
            result = self.search(start, state, method, max_length,
                                 end_id=end_id, **options)
            yield {"done": True, **self.describe(result)[0]}
            return
        values = self._options(method, max_length, options)
        if values.get("num_samples", 1) != 1:
            raise InputError(
                "Streaming sends one hypothesis: `num_samples` must be 1. "
                f"Received: num_samples={values['num_samples']}"
            )
        steps = search.STEP_SEARCHES[method](
            self._step_fn, start, state, end_id,
            pad_id=self.tokens["pad_id"],
            forbidden_ids=self.tokens["forbidden_ids"], **values,
        )
        emitted, text = [], ""
        try:
            while True:
                try:
                    t, tokens, alive = next(steps)
                except StopIteration as stop:
                    result = stop.value
                    break
                token = int(tokens[0])
                if not alive[0] or token == end_id:
                    continue
                # The piece is what the token adds to the decoded text, so
                # the pieces join into the answer (spaces between words).
                emitted.append(token)
                longer = self.decode_ids(emitted)
                yield {"index": t, "id": token, "text": longer[len(text):]}
                text = longer
        finally:
            steps.close()
        yield {"done": True, **self.describe(result)[0]}

    def metadata(self):
        """What a client needs: kind, methods with their options and
        defaults, the limits, the special ids and vocabulary sizes."""
        return {
            "model": self.manifest["model_name"],
            "kind": self.kind,
            "provider": self.provider,
            "default_method": DEFAULT_METHOD[self.kind],
            "methods": search.OPTIONS,
            "limits": {k: v for k, v in self.limits.items()},
            "tokens": self.tokens,
            "vocabulary_sizes": self.manifest["vocabulary_sizes"],
            "text": {side: config is not None for side, config in
                     self.manifest["vocabularies"].items()},
            "architecture": self.manifest["architecture"],
            "parity": self.manifest.get("parity"),
            **({"image": self.manifest["image"]}
               if self.kind == "captioner" else {}),
        }


def _graphs(manifest, directory):
    kind = manifest.get("kind", "classifier")
    if kind not in KINDS:
        raise ValueError(
            f"{directory} holds a {kind} export; Generator runs seq2seq, "
            "language-model and captioner exports (use Predictor for a "
            "classifier)."
        )
    return manifest["graphs"]


def _kind(value):
    return type(value).__name__


def _rows(what, value, pad):
    """A batch of id sequences as a list of int arrays (a 2-D array's rows
    lose their trailing padding)."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        if value.dtype.kind not in "iu":
            raise InputError(
                f"Each {what} must hold integer token ids. Received: "
                f"dtype {value.dtype}"
            )
        if not len(value):
            raise InputError(f"No {what}s given: send at least one.")
        rows = [row.astype(np.int64) for row in value]
        return rows if pad is None else [_strip(row, pad) for row in rows]
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(
            f"The {what}s must be a non-empty list of token id lists. "
            f"Received: {_kind(value)}"
        )
    rows = []
    for index, row in enumerate(value):
        if not isinstance(row, (list, tuple, np.ndarray)) or not all(
            isinstance(token, (int, np.integer))
            and not isinstance(token, bool) for token in row
        ):
            raise InputError(
                f"{what.capitalize()} {index} must be a list of integer "
                f"token ids. Received: {str(row)[:80]}"
            )
        try:
            rows.append(np.asarray(row, np.int64).reshape(-1))
        except OverflowError:
            raise InputError(
                f"{what.capitalize()} {index} holds an id too large: token "
                "ids must lie in [0, vocabulary size)."
            ) from None
    if pad is not None:
        rows = [_strip(row, pad) for row in rows]
    return rows


def _strip(row, pad):
    """``row`` without its trailing padding."""
    real = np.flatnonzero(row != pad)
    return row[:real[-1] + 1] if real.size else row[:0]


def _check_ids(what, row, vocabulary_size, pad):
    if not row.size:
        return
    low, high = int(row.min()), int(row.max())
    if low < 0 or high >= vocabulary_size:
        raise InputError(
            f"The ids of {what} must lie in [0, {vocabulary_size}). "
            f"Received ids in [{low}, {high}]."
        )
    if pad is not None and np.any(row == pad):
        position = int(np.flatnonzero(row == pad)[0])
        raise InputError(
            f"{what.capitalize()} holds the padding id {pad} at position "
            f"{position}, before its last token: padding goes only at the "
            "end."
        )
