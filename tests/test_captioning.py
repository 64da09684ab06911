"""``ImageCaptioner`` and its data: shapes, the doubly stochastic
regulariser against NumPy, attention weights, the synthetic scenes, the
COCO loader on a generated COCO folder, BLEU against a hand count, and a
``.keras`` round trip."""

import io
import json

import keras
import numpy as np
import pytest
from PIL import Image

from kerasrnn.diagnostics import caption_attention as seeing
from kerasrnn.models import caption_data
from kerasrnn.models import default_optimizer
from kerasrnn.models import text
from kerasrnn.models.captioning import ImageCaptioner
from kerasrnn.models.captioning import attention_coverage_penalty
from kerasrnn.models.captioning import conv_encoder


def small_model(tokenizer, attention="bahdanau", regularization=1.0,
                **kwargs):
    return ImageCaptioner(
        conv_encoder((32, 32, 3), filters=(8, 16), pools=(True, True)),
        tokenizer.vocabulary_size, tokenizer.bos_id, tokenizer.eos_id,
        embedding_dim=16, units=24, attention=attention,
        attention_regularization=regularization, max_target_length=12,
        tokenizer=tokenizer, seed=3, **kwargs,
    )


@pytest.fixture(scope="module")
def scenes():
    data = caption_data.synthetic_captions(48, seed=5)
    tokenizer = text.Tokenizer("word")
    tokenizer.adapt([c for texts in data.captions for c in texts])
    images, targets = caption_data.caption_pairs(data, tokenizer)
    return data, tokenizer, images, targets


# --- synthetic scenes -------------------------------------------------------


def test_synthetic_set_is_deterministic_by_seed():
    first = caption_data.synthetic_captions(30, seed=11)
    again = caption_data.synthetic_captions(30, seed=11)
    other = caption_data.synthetic_captions(30, seed=12)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.captions == again.captions
    assert first.objects == again.objects
    assert not np.array_equal(first.images, other.images)
    assert first.images.shape == (30, 32, 32, 3)
    assert first.images.dtype == np.float32
    assert 0 <= first.images.min() and first.images.max() <= 1


def test_synthetic_captions_describe_the_scene():
    data = caption_data.synthetic_captions(200, seed=2)
    numbers = {"a": 1, "one": 1, "two": 2, "three": 3}
    kinds = set()
    for image, captions, objects in zip(data.images, data.captions,
                                        data.objects):
        assert len(captions) == 2
        for item in objects:
            # The colour named is drawn at the object's centre.
            top, left, bottom, right = item["box"]
            pixel = image[(top + bottom) // 2, (left + right) // 2]
            np.testing.assert_allclose(
                pixel, caption_data.COLOURS[item["colour"]], atol=0.081)
        words = captions[0].split()
        relation = {"left", "above"} & set(words)
        if relation:
            kinds.add(relation.pop())
            first, second = objects
            assert words[1:3] == [first["colour"], first["shape"]]
            assert words[-2:] == [second["colour"], second["shape"]]
            axis = 1 if "left" in words else 0
            assert first["box"][axis + 2] <= second["box"][axis]
            mirrored = captions[1].split()
            assert mirrored[1:3] == words[-2:]
            assert ({"right", "below"} & set(mirrored))
        else:
            number = numbers[words[0] if len(words) == 3 else words[3]]
            kinds.add(number)
            assert len(objects) == number
            assert {(o["colour"], o["shape"]) for o in objects} == {
                (words[-2], words[-1].rstrip("s"))}
    assert kinds == {1, 2, 3, "left", "above"}


def test_caption_pairs_repeat_images_per_reference(scenes):
    data, tokenizer, images, targets = scenes
    assert len(images) == len(targets) == 2 * len(data)
    np.testing.assert_array_equal(images[0], images[1])
    np.testing.assert_array_equal(images[2], data.images[1])
    assert np.all(targets[:, 0] == tokenizer.bos_id)
    assert tokenizer.decode(targets[:2]) == data.captions[0]


# --- the model ----------------------------------------------------------------


def test_shapes_and_attention_weights_sum_to_one(scenes):
    _, tokenizer, images, targets = scenes
    model = small_model(tokenizer)
    assert model.feature_grid == (8, 8)
    logits = model((images[:4], targets[:4, :-1]))
    assert tuple(logits.shape) == (4, targets.shape[1] - 1,
                                   tokenizer.vocabulary_size)
    weights = keras.ops.convert_to_numpy(
        model.alignments(images[:4], targets[:4]))
    assert weights.shape == (4, targets.shape[1] - 1, 64)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    maps = model.attention_maps(images[:4], targets[:4])
    assert maps.shape == (4, targets.shape[1] - 1, 8, 8)


def test_regularizer_matches_numpy():
    rng = np.random.default_rng(0)
    alignments = rng.random((3, 5, 7)).astype("float32")
    alignments /= alignments.sum(-1, keepdims=True)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = [
        sum((1 - sum(alignments[b, t, i] for t in range(5) if mask[b, t]))
            ** 2 for i in range(7))
        for b in range(3)
    ]
    ours = keras.ops.convert_to_numpy(
        attention_coverage_penalty(alignments, mask))
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_training_loss_adds_the_regularizer(scenes):
    """loss(training) - loss(eval) = λ Σ_b Σ_i (1 - Σ_t α)² / tokens, the
    steps after the caption's end excluded (NumPy on the alignments)."""
    _, tokenizer, images, targets = scenes
    model = small_model(tokenizer, regularization=0.5)
    model.compile()
    batch_images, batch = images[:6], targets[:6]
    inputs, labels = batch[:, :-1], batch[:, 1:]
    weights = (labels != 0).astype("float32")
    logits, alignments = model.teacher_forced(batch_images, inputs,
                                              training=True)
    trained = float(model.compute_loss(y=labels, y_pred=logits,
                                       sample_weight=weights))
    plain = float(model.compute_loss(y=labels, y_pred=logits,
                                     sample_weight=weights, training=False))
    real = weights.astype(bool)
    alignments = keras.ops.convert_to_numpy(alignments)
    coverage = (alignments * real[..., None]).sum(1)
    expected = 0.5 * ((1 - coverage) ** 2).sum() / real.sum()
    assert trained - plain == pytest.approx(expected, rel=1e-4)
    assert expected > 0
    # Show and Tell (no attention) adds nothing.
    plain_model = small_model(tokenizer, attention=None)
    plain_model.compile()
    logits, alignments = plain_model.teacher_forced(batch_images, inputs,
                                                    training=True)
    assert alignments is None
    assert float(plain_model.compute_loss(
        y=labels, y_pred=logits, sample_weight=weights)) == pytest.approx(
        float(plain_model.compute_loss(y=labels, y_pred=logits,
                                       sample_weight=weights,
                                       training=False)))


@pytest.mark.parametrize("attention", ["bahdanau", None])
def test_fit_with_scheduled_sampling_and_every_decoding(scenes, attention):
    data, tokenizer, images, targets = scenes
    model = small_model(tokenizer, attention=attention)
    model.compile(optimizer=default_optimizer(0.01))
    model.sampling_probability.assign(0.25)
    history = model.fit(images, targets, batch_size=16, epochs=3,
                        verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    for method, options in (("greedy", {}), ("beam", {"beam_width": 3}),
                            ("sample", {"seed": 4, "num_samples": 2})):
        result = model.generate(data.images[:3], method=method, **options)
        ids = result.ids.numpy()
        assert ids.shape[0] == 3 and ids.shape[2] <= 12
        assert not np.isin(ids, [tokenizer.bos_id]).any()
    again = model.generate(data.images[:3], method="sample", seed=4,
                           num_samples=2)
    np.testing.assert_array_equal(again.ids, result.ids)
    captions = model.generate_text(data.images[:3])
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)


def test_bad_images_and_encoders_are_named(scenes):
    _, tokenizer, images, targets = scenes
    model = small_model(tokenizer)
    with pytest.raises(ValueError, match=r"shape \(batch, 32, 32, 3\)"):
        model.generate(np.zeros((1, 16, 16, 3), "float32"))
    with pytest.raises(TypeError, match="float pixels"):
        model.generate(np.zeros((1, 32, 32, 3), "uint8"))
    with pytest.raises(ValueError, match="2 images but 3 targets"):
        model.fit(images[:2], targets[:3], verbose=0)
    bad = targets[:2].copy()
    bad[1, 0] = 7
    with pytest.raises(ValueError, match="target row 1 starts with id 7"):
        model.fit(images[:2], bad, verbose=0)
    pooled = keras.Sequential([keras.Input((32, 32, 3)),
                               keras.layers.Conv2D(4, 3),
                               keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match=r"feature map \(B, h, w, D\)"):
        ImageCaptioner(pooled, 10, 2, 3)
    with pytest.raises(TypeError, match="must be a keras.Model"):
        ImageCaptioner("resnet", 10, 2, 3)
    with pytest.raises(ValueError, match="three different"):
        ImageCaptioner(conv_encoder(), 10, 2, 2)


def test_keras_applications_backbone():
    backbone = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(64, 64, 3),
        alpha=0.25)
    model = ImageCaptioner(backbone, 12, 2, 3, units=16,
                           max_target_length=5)
    assert model.feature_grid == (2, 2) and model.feature_dim == 256
    images = np.random.default_rng(0).random((2, 64, 64, 3), "float32")
    assert model.generate(images, method="beam",
                          beam_width=2).ids.shape[:2] == (2, 1)


def test_save_load_round_trip(scenes, tmp_path):
    data, tokenizer, images, targets = scenes
    model = small_model(tokenizer, decoder_layers=2, cell="gru")
    model.compile()
    model.fit(images[:32], targets[:32], batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "captioner.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ImageCaptioner)
    config, expected = loaded.get_config(), model.get_config()
    assert config.pop("image_encoder")["class_name"] == expected.pop(
        "image_encoder")["class_name"] == "Sequential"
    assert config == expected
    assert [layer.name for layer in loaded.image_encoder.layers] == [
        layer.name for layer in model.image_encoder.layers]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded((images[:4], targets[:4, :-1]))),
        keras.ops.convert_to_numpy(model((images[:4], targets[:4, :-1]))))
    for method in ("greedy", "beam"):
        np.testing.assert_array_equal(
            loaded.generate(data.images[:4], method=method).ids,
            model.generate(data.images[:4], method=method).ids)
    assert loaded.generate_text(data.images[:4]) == model.generate_text(
        data.images[:4])


# --- seeing inside ----------------------------------------------------------


def test_attention_plot_and_object_attention(scenes, tmp_path):
    data, tokenizer, _, _ = scenes
    model = small_model(tokenizer)
    index = next(i for i, o in enumerate(data.objects) if len(o) == 2)
    caption = data.captions[index][0]
    ((words, maps),) = seeing.caption_attention(
        model, data.images[index:index + 1], [caption])
    assert words == caption.split()
    assert maps.shape == (len(words) + 1, 8, 8)
    path = seeing.plot_caption_attention(data.images[index], words, maps,
                                         tmp_path / "attention.png")
    assert Image.open(path).format == "PNG"
    # A map all on the first object's cells gives mass 1 there.
    first = data.objects[index][0]
    cells = seeing.object_cells(first["box"], (32, 32), (8, 8))
    focused = np.zeros_like(maps)
    focused[:, cells] = 1 / cells.sum()
    found = seeing.object_attention(words, focused, data.objects[index],
                                    (32, 32))
    assert found[0]["phrase"] == f"{first['colour']} {first['shape']}"
    assert found[0]["colour_step"] == pytest.approx(1.0)
    assert found[1]["shape_step"] < 1.0
    assert found[0]["chance"] == pytest.approx(cells.mean())


# --- COCO -------------------------------------------------------------------


def _jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture()
def coco(tmp_path):
    """A COCO caption folder: three JPEGs (one grey), four captions."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    arrays = {
        "a.jpg": rng.integers(0, 256, (40, 60, 3), dtype=np.uint8),
        "b.jpg": rng.integers(0, 256, (30, 30, 3), dtype=np.uint8),
        "c.jpg": rng.integers(0, 256, (50, 20), dtype=np.uint8),
    }
    for name, array in arrays.items():
        (folder / name).write_bytes(_jpeg(array))
    annotations = {
        "info": {}, "licenses": [],
        "images": [{"id": 9, "file_name": "a.jpg"},
                   {"id": 4, "file_name": "b.jpg"},
                   {"id": 5, "file_name": "c.jpg"},
                   {"id": 6, "file_name": "unused.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 9, "caption": "A dog runs."},
            {"id": 2, "image_id": 4, "caption": "Two cats "},
            {"id": 3, "image_id": 9, "caption": "a brown dog"},
            {"id": 4, "image_id": 5, "caption": "grey sky"},
        ],
    }
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(annotations))
    return path, folder


def test_coco_loader_decodes_resizes_and_caches(coco, tmp_path,
                                                monkeypatch):
    path, folder = coco
    cache = tmp_path / "cache"
    data = caption_data.coco_captions(path, folder, size=(16, 24),
                                      cache_dir=cache)
    assert data.names == ["b.jpg", "c.jpg", "a.jpg"]      # by image id
    assert data.captions == [["Two cats"], ["grey sky"],
                             ["A dog runs.", "a brown dog"]]
    assert data.images.shape == (3, 16, 24, 3)
    for name, image in zip(data.names, data.images):
        reference = Image.open(folder / name).convert("RGB").resize(
            (24, 16), Image.BILINEAR)
        np.testing.assert_allclose(
            image, np.asarray(reference, np.float32) / 255, atol=1e-6)
    # The grey image became three equal channels.
    np.testing.assert_array_equal(data.images[1][..., 0],
                                  data.images[1][..., 2])
    assert len(list(cache.glob("*.npy"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(caption_data, "load_image", refuse)
    again = caption_data.coco_captions(path, folder, size=(16, 24),
                                       cache_dir=cache)
    np.testing.assert_array_equal(again.images, data.images)


def test_coco_loader_errors_name_the_problem(coco, tmp_path):
    path, folder = coco
    (folder / "b.jpg").unlink()
    with pytest.raises(ValueError, match=r"missing, e\.g\. .*b\.jpg"):
        caption_data.coco_captions(path, folder, cache_dir=False)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not COCO caption JSON"):
        caption_data.coco_captions(broken, folder, cache_dir=False)
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="b.jpg is not an image"):
        caption_data.coco_captions(path, folder, cache_dir=False)


# --- evaluation -------------------------------------------------------------


def test_bleu_and_exact_match():
    references = [["a red circle left of a blue square",
                   "a blue square right of a red circle"],
                  ["two blue squares on black"]]
    assert caption_data.exact_match(
        ["A blue square right of  a red circle", "two blue circles"],
        references) == 0.5
    assert caption_data.exact_match(["a dog , running ."],
                                    [["A dog, running."]]) == 1.0
    perfect = caption_data.bleu(
        ["a red circle left of a blue square", "two blue squares on black"],
        references)
    assert perfect == pytest.approx({f"bleu_{n}": 1.0 for n in (1, 2, 3, 4)})
    # Written as the tokenizer writes it, a reference still matches.
    assert caption_data.bleu(["a man ' s t - shirt , blue ."],
                             [["A man's T-shirt, blue."]])["bleu_4"] == \
        pytest.approx(1.0)
    # Row 2 "two blue circles on black" matches 4 of 5 words and 2 of 4
    # bigrams; row 1 all 8 and 7: p1 = 12/13, p2 = 9/11, no brevity
    # penalty (13 words for 13).
    scores = caption_data.bleu(
        ["a red circle left of a blue square", "two blue circles on black"],
        references)
    assert scores["bleu_1"] == pytest.approx(12 / 13, abs=1e-4)
    assert scores["bleu_2"] == pytest.approx(np.sqrt(12 / 13 * 9 / 11),
                                             abs=1e-4)
