"""Captioning data: a synthetic set rendered on the fly, a COCO-format
loader, training pairs, and BLEU / exact-match evaluation.

* ``synthetic_captions(count, seed)``: scenes of coloured shapes on a dark
  background -- one to three identical shapes ("two red circles"), or two
  different ones side by side or one above the other ("a red circle left
  of a blue square") -- each with two reference captions and its objects'
  boxes (to check where the attention looks). Deterministic by seed.
* ``coco_captions(annotations, images_dir, size)``: a COCO caption JSON
  (``{"images": [{id, file_name}], "annotations": [{image_id,
  caption}]}``) and its images, decoded by Pillow, resized and scaled
  as ``kerasrnn_serving.images.decode_image`` (grey or RGBA images are
  converted to RGB), cached as a ``.npy`` array under ``cache_dir``.
* ``caption_pairs``: one ``(image, [bos, ..., eos])`` row per caption.
* ``bleu`` (sacrebleu, corpus level, every reference) and
  ``exact_match``; ``evaluate_captions`` runs a model on a set.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import re

import numpy as np

from kerasrnn.models.text import _PUNCTUATION
from kerasrnn_serving.images import decode_image

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (0.9, 0.15, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.85, 0.1),
}
COUNT_WORDS = ("one", "two", "three")
RELATIONS = {"left": "right", "above": "below"}
DEFAULT_CACHE = "~/.cache/kerasrnn/captions"


@dataclasses.dataclass
class CaptionSet:
    """Images ``(N, H, W, 3)`` float32 in [0, 1], their reference
    captions (``captions[i]``: a list of strings), names (file names or
    scene ids) and, for synthetic scenes, ``objects[i]``: per object
    ``{"shape", "colour", "box": (top, left, bottom, right)}`` in
    pixels, bottom/right exclusive."""

    images: np.ndarray
    captions: list
    names: list
    objects: list = None

    def __len__(self):
        return len(self.images)


# --- synthetic scenes ------------------------------------------------------


def synthetic_captions(count, seed=0, image_size=32, object_size=8):
    """``count`` rendered scenes (see the module doc), the same for the
    same arguments; returns a ``CaptionSet``."""
    if image_size < 3 * object_size:
        raise ValueError(
            f"`image_size`={image_size} leaves no room for two objects of "
            f"`object_size`={object_size}: it needs at least "
            f"{4 * object_size}."
        )
    rng = np.random.default_rng(seed)
    images = np.empty((count, image_size, image_size, 3), np.float32)
    captions, objects = [], []
    for index in range(count):
        canvas = 0.08 + 0.04 * rng.random((image_size, image_size, 1))
        canvas = np.repeat(canvas, 3, axis=-1)
        if rng.random() < 0.4:
            scene, texts = _count_scene(rng, image_size, object_size)
        else:
            scene, texts = _pair_scene(rng, image_size, object_size)
        for item in scene:
            colour = np.array(COLOURS[item["colour"]])
            colour = np.clip(colour + rng.uniform(-0.08, 0.08, 3), 0, 1)
            mask = _shape_mask(item["shape"], item["box"], image_size)
            canvas[mask] = colour
        images[index] = canvas
        captions.append(texts)
        objects.append(scene)
    return CaptionSet(images, captions,
                      [f"scene_{seed}_{i}" for i in range(count)], objects)


def _count_scene(rng, image_size, size):
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    number = int(rng.integers(1, 4))
    boxes = _free_boxes(rng, image_size, size, number)
    scene = [{"shape": shape, "colour": colour, "box": box} for box in boxes]
    if number == 1:
        texts = [f"a {colour} {shape}", f"one {colour} {shape}"]
    else:
        word = COUNT_WORDS[number - 1]
        texts = [f"{word} {colour} {shape}s",
                 f"a group of {word} {colour} {shape}s"]
    return scene, texts


def _pair_scene(rng, image_size, size):
    first = (SHAPES[rng.integers(3)], list(COLOURS)[rng.integers(4)])
    second = first
    while second == first:
        second = (SHAPES[rng.integers(3)], list(COLOURS)[rng.integers(4)])
    relation = list(RELATIONS)[rng.integers(2)]
    # Along the relation's axis the objects are apart by at least one
    # object; across it they overlap, so only one relation holds.
    span = image_size - size
    while True:
        along = np.sort(rng.integers(0, span + 1, 2))
        if along[1] - along[0] >= size + 3:
            break
    across = int(rng.integers(0, span + 1))
    shift = int(np.clip(across + rng.integers(-2, 3), 0, span))
    if relation == "left":
        corners = [(across, along[0]), (shift, along[1])]
    else:
        corners = [(along[0], across), (along[1], shift)]
    scene = [
        {"shape": shape, "colour": colour,
         "box": (int(top), int(left), int(top) + size, int(left) + size)}
        for (shape, colour), (top, left) in zip((first, second), corners)
    ]
    a, b = (f"{c} {s}" for s, c in (first, second))
    if relation == "left":
        texts = [f"a {a} left of a {b}", f"a {b} right of a {a}"]
    else:
        texts = [f"a {a} above a {b}", f"a {b} below a {a}"]
    return scene, texts


def _free_boxes(rng, image_size, size, number):
    """``number`` boxes of side ``size`` that do not touch."""
    while True:
        corners = rng.integers(0, image_size - size + 1, (number, 2))
        apart = all(
            np.abs(corners[i] - corners[j]).max() >= size + 2
            for i in range(number) for j in range(i)
        )
        if apart:
            return [(int(t), int(left), int(t) + size, int(left) + size)
                    for t, left in corners]


def _shape_mask(shape, box, image_size):
    top, left, bottom, right = box
    rows, cols = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    centre_y, centre_x = (top + bottom - 1) / 2, (left + right - 1) / 2
    radius = (bottom - top) / 2
    if shape == "circle":
        return (rows - centre_y) ** 2 + (cols - centre_x) ** 2 <= radius ** 2
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (
        cols < right)
    if shape == "square":
        return inside
    # Triangle pointing up: the half-width grows from 0 at the top row.
    half = (rows - top + 1) / 2
    return inside & (np.abs(cols - centre_x) <= half)


# --- COCO ------------------------------------------------------------------


def coco_captions(annotations, images_dir, size=(64, 64), cache_dir=None,
                  limit=None):
    """A COCO-format caption set.

    Args:
        annotations: path of the caption JSON.
        images_dir: the folder holding the images' ``file_name`` s.
        size: ``(height, width)`` the images are resized to.
        cache_dir: where the decoded array is cached as ``.npy`` (default
            ``$KERASRNN_CACHE`` or ``~/.cache/kerasrnn/captions``; False:
            no cache). The cache key is the JSON's content, the images'
            names and byte sizes, and ``size``.
        limit: keep the first ``limit`` images (by id).

    Returns:
        a ``CaptionSet`` (images in id order; every image with at least one
        caption).

    Raises:
        ValueError: a malformed JSON (naming the missing key), an image
            that is missing or cannot be decoded (naming its file).
    """
    annotations = pathlib.Path(annotations)
    images_dir = pathlib.Path(images_dir)
    raw = annotations.read_bytes()
    try:
        data = json.loads(raw)
        entries = {image["id"]: image["file_name"]
                   for image in data["images"]}
        by_image = {}
        for note in data["annotations"]:
            by_image.setdefault(note["image_id"], []).append(
                note["caption"].strip())
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{annotations} is not COCO caption JSON ({{'images': [{{id, "
            f"file_name}}], 'annotations': [{{image_id, caption}}]}}): "
            f"{type(error).__name__} {error}"
        ) from None
    unknown = sorted(set(by_image) - set(entries))
    if unknown:
        raise ValueError(
            f"{annotations}: captions of image ids {unknown[:5]} that "
            "'images' does not list."
        )
    ids = sorted(i for i in entries if i in by_image)[:limit]
    files = [images_dir / entries[i] for i in ids]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) of {annotations} are missing, e.g. "
            f"{missing[0]}"
        )
    key = hashlib.sha256(raw)
    for file in files:
        key.update(f"{file.name}:{file.stat().st_size};".encode())
    key.update(repr(tuple(size)).encode())
    cache = None
    if cache_dir is not False:
        folder = pathlib.Path(os.path.expanduser(
            cache_dir or os.environ.get("KERASRNN_CACHE", DEFAULT_CACHE)))
        cache = folder / f"{annotations.stem}_{key.hexdigest()[:16]}.npy"
    if cache is not None and cache.is_file():
        images = np.load(cache)
    else:
        images = np.stack([load_image(file, size) for file in files])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, images)
    return CaptionSet(images, [by_image[i] for i in ids],
                      [entries[i] for i in ids])


def load_image(path, size):
    """One image file as float32 ``(H, W, 3)`` in [0, 1], converted to
    RGB (``kerasrnn_serving.images.decode_image``)."""
    path = pathlib.Path(path)
    return decode_image(path.read_bytes(), size, strict=False,
                        what=f"Image {path}")


# --- training pairs and evaluation -------------------------------------------


def caption_pairs(dataset, tokenizer, max_length=None):
    """``(images (M, H, W, 3), targets (M, T))``: each image once per
    reference caption, the captions as ``[bos, ..., eos]`` right-padded
    with 0 (``tokenizer``: a ``kerasrnn.models.text.Tokenizer``).
    ``max_length`` cuts longer targets (their EOS kept)."""
    rows = [i for i, texts in enumerate(dataset.captions) for _ in texts]
    texts = [text for texts in dataset.captions for text in texts]
    ids = tokenizer.encode(texts, bos_eos=True).to_list()
    if max_length is not None:
        ids = [row if len(row) <= max_length
               else row[:max_length - 1] + [tokenizer.eos_id] for row in ids]
    targets = np.zeros((len(ids), max(len(row) for row in ids)), np.int32)
    for index, row in enumerate(ids):
        targets[index, :len(row)] = row
    return dataset.images[rows], targets


def normalise(text):
    """Lower case, punctuation split off, single spaces (as the word
    ``Tokenizer`` reads text): how captions are compared."""
    return " ".join(re.sub(_PUNCTUATION, r" \g<0> ", text.lower()).split())


def exact_match(hypotheses, references):
    """The share of hypotheses equal (``normalise``) to one of their
    references."""
    hits = [normalise(h) in {normalise(r) for r in refs}
            for h, refs in zip(hypotheses, references, strict=True)]
    return float(np.mean(hits))


def bleu(hypotheses, references):
    """Corpus BLEU-1..4 (sacrebleu, every reference of each hypothesis),
    on a 0-1 scale: ``{"bleu_1": ..., "bleu_4": ...}``. Hypotheses and
    references are first ``normalise`` d (as the word tokenizer splits
    them: "don't" is "don ' t" on both sides), then sacrebleu's 13a
    tokenisation runs. Rows with fewer references get their first one
    repeated (a repeated reference changes no clipped count)."""
    import sacrebleu

    most = max(len(refs) for refs in references)
    streams = [[normalise(refs[k] if k < len(refs) else refs[0])
                for refs in references] for k in range(most)]
    hypotheses = [normalise(text) for text in hypotheses]
    scores = {}
    for order in range(1, 5):
        metric = sacrebleu.metrics.BLEU(max_ngram_order=order)
        scores[f"bleu_{order}"] = metric.corpus_score(
            hypotheses, streams).score / 100
    return scores


def evaluate_captions(model, dataset, method="greedy", batch_size=64,
                      **options):
    """Captions ``dataset``'s images with ``model.generate_text`` and
    scores them: ``{"bleu_1".."bleu_4", "exact_match", "captions"}``."""
    captions = []
    for start in range(0, len(dataset), batch_size):
        captions += model.generate_text(
            dataset.images[start:start + batch_size], method=method,
            **options)
    return {**bleu(captions, dataset.captions),
            "exact_match": exact_match(captions, dataset.captions),
            "captions": captions}
