"""An exported ``ImageCaptioner``: the image encoder graph against Keras,
greedy and beam tokens identical to ``model.generate``, the TF-free
``Generator`` on image bytes, and ``POST /v1/generate`` with images (the
server on a free port, real HTTP), bad images answered 400 naming the
problem."""

import base64
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
from PIL import Image

import kerasrnn_serving as serving
from kerasrnn.export import to_onnx
from kerasrnn.export.generation import keras_state
from kerasrnn.models import caption_data
from kerasrnn.models import default_optimizer
from kerasrnn.models import text
from kerasrnn.models.captioning import ImageCaptioner
from kerasrnn.models.captioning import conv_encoder
from kerasrnn_serving.server import running

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _png(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(images):
    """Float images as the uint8 pixels a PNG of them holds."""
    return np.round(np.asarray(images) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small attention captioner trained a little on synthetic scenes
    (so that its captions vary in length and words), exported."""
    keras.utils.set_random_seed(3)
    train = caption_data.synthetic_captions(160, seed=21)
    tokenizer = text.Tokenizer("word")
    tokenizer.adapt([c for texts in train.captions for c in texts])
    model = ImageCaptioner(
        conv_encoder((32, 32, 3), filters=(8, 16), pools=(True, True)),
        tokenizer.vocabulary_size, tokenizer.bos_id, tokenizer.eos_id,
        embedding_dim=16, units=32, max_target_length=10,
        attention_regularization=0.1, tokenizer=tokenizer, seed=1,
    )
    model.compile(optimizer=default_optimizer(0.01))
    model.fit(*caption_data.caption_pairs(train, tokenizer), batch_size=32,
              epochs=10, verbose=0)
    directory = tmp_path_factory.mktemp("captioner")
    manifest = to_onnx(model, directory)
    test = caption_data.synthetic_captions(6, seed=22)
    # The pixels a PNG carries, so Keras and the server read the same.
    images = _pixels(test.images).astype(np.float32) / 255
    return model, manifest, serving.Generator(directory), images, directory


def test_encoder_graph_matches_keras(exported):
    model, manifest, generator, images, _ = exported
    assert manifest["kind"] == "captioner"
    assert set(manifest["graphs"]["encoder"]["ops"]) >= {"Conv", "MaxPool"}
    received = generator.encode(images)
    expected = keras_state(model, manifest["state"], model.encode(images))
    for name, value in expected.items():
        np.testing.assert_allclose(received[name], value, atol=1e-5,
                                   err_msg=name)
    features = keras.ops.convert_to_numpy(model.image_encoder(images))
    np.testing.assert_allclose(received["memory"],
                               features.reshape(len(images), 64, 16),
                               atol=1e-5)
    assert manifest["parity"]["greedy_tokens_identical"]


@pytest.mark.parametrize("method,options", [
    ("greedy", {}), ("beam", {"beam_width": 3}),
    ("beam", {"beam_width": 4, "num_return": 2,
              "length_penalty_weight": 0.6}),
])
def test_exported_tokens_equal_generate(exported, method, options):
    model, _, generator, images, _ = exported
    ours = generator.generate_ids(images, method, **options)
    theirs = model.generate(images, method=method, **options)
    np.testing.assert_array_equal(ours.ids, theirs.ids.numpy())
    np.testing.assert_allclose(ours.scores, theirs.scores.numpy(),
                               atol=1e-4)
    # Captions that differ between images, or a check that proves little.
    assert len({tuple(row) for row in ours.ids[:, 0]}) > 2


def test_caption_bytes_and_attention(exported):
    model, _, generator, images, _ = exported
    answers = generator.caption([_png(_pixels(image)) for image in images])
    assert [a["text"] for a in answers] == model.generate_text(images)
    ids = answers[0]["hypotheses"][0]["ids"]
    maps = generator.image_alignments(images[0], ids)
    target = np.array([[model.bos_id, *ids, model.eos_id]], np.int32)
    np.testing.assert_allclose(
        maps, model.attention_maps(images[:1], target)[0], atol=1e-5)


def test_captions_without_tensorflow(exported, tmp_path):
    model, _, _, images, directory = exported
    (tmp_path / "image.png").write_bytes(_png(_pixels(images[0])))
    script = (
        "import sys; sys.modules['tensorflow'] = None; "
        "sys.modules['keras'] = None; import kerasrnn_serving, pathlib; "
        f"g = kerasrnn_serving.Generator({str(directory)!r}); "
        f"data = pathlib.Path({str(tmp_path / 'image.png')!r}).read_bytes(); "
        "print(g.caption([data])[0]['text'])")
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == model.generate_text(images[:1])[0]


def test_backbone_from_keras_applications_exports(tmp_path):
    backbone = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(64, 64, 3),
        alpha=0.25)
    model = ImageCaptioner(backbone, 12, 2, 3, units=16,
                           max_target_length=5, attention="luong_general")
    manifest = to_onnx(model, tmp_path)
    assert {"Conv", "Pad"} <= set(manifest["graphs"]["encoder"]["ops"])
    images = np.random.default_rng(1).random((2, 64, 64, 3), "float32")
    received = serving.Generator(tmp_path).encode(images)
    features = keras.ops.convert_to_numpy(backbone(images))
    np.testing.assert_allclose(received["memory"],
                               features.reshape(2, 4, 256), atol=1e-5)


def test_image_layers_convert(tmp_path):
    """Strided, grouped and "same"-padded convolutions, average pooling
    over padding, rescaling and batch norm against Keras."""
    encoder = keras.Sequential([
        keras.Input((15, 17, 3)),
        keras.layers.Rescaling(2.0, offset=-1.0),
        keras.layers.Conv2D(4, 3, strides=2, padding="same",
                            activation="tanh"),
        keras.layers.Conv2D(6, (3, 2), padding="valid", groups=2,
                            dilation_rate=(1, 2)),
        keras.layers.BatchNormalization(),
        keras.layers.AveragePooling2D(3, strides=2, padding="same"),
        keras.layers.ZeroPadding2D(((1, 0), (0, 2))),
        keras.layers.MaxPooling2D(2, padding="same"),
    ])
    rng = np.random.default_rng(2)
    batch_norm = encoder.layers[3]
    batch_norm.moving_mean.assign(rng.normal(size=6).astype("float32"))
    batch_norm.moving_variance.assign(rng.random(6).astype("float32") + 0.5)
    model = ImageCaptioner(encoder, 10, 2, 3, units=8)
    manifest = to_onnx(model, tmp_path)
    assert {"Conv", "AveragePool", "MaxPool", "Pad"} <= set(
        manifest["graphs"]["encoder"]["ops"])
    images = rng.random((3, 15, 17, 3), dtype="float32")
    received = serving.Generator(tmp_path).encode(images)
    expected = keras_state(model, manifest["state"], model.encode(images))
    for name, value in expected.items():
        np.testing.assert_allclose(received[name], value, atol=1e-5)


def test_unsupported_layer_is_named(tmp_path):
    encoder = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
        keras.layers.UpSampling2D(name="upsample")])
    model = ImageCaptioner(encoder, 10, 2, 3, units=8)
    with pytest.raises(ValueError, match=r"layer 'upsample' "
                       r"\(UpSampling2D\).*Supported layers: .*Conv2D"):
        to_onnx(model, tmp_path)


def test_other_exports_refuse_a_captioner_by_name(tmp_path):
    from kerasrnn.export import to_saved_model
    from kerasrnn.export import to_triton

    model = ImageCaptioner(conv_encoder((8, 8, 3), filters=(4,),
                                        pools=(True,)), 10, 2, 3, units=8)
    for export in (to_triton, to_saved_model):
        with pytest.raises(ValueError, match="does not export an "
                           "ImageCaptioner yet: use kerasrnn.export.to_onnx"):
            export(model, tmp_path / export.__name__)


# --- HTTP -------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(exported):
    """The server's URL, on a Generator that decodes images of at most
    64×64 pixels."""
    generator = serving.Generator(exported[4],
                                  limits={"image_pixels": 64 * 64})
    with running(generator) as url:
        yield url


def _post(url, body):
    """``(status, JSON answer)`` of a POST to /v1/generate."""
    request = urllib.request.Request(
        url + "/v1/generate", json.dumps(body).encode(),
        {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_captions_with_attention(exported, client):
    model, _, _, images, _ = exported
    body = {"images": [base64.b64encode(_png(_pixels(image))).decode()
                       for image in images[:3]],
            "method": "beam", "beam_width": 3, "attention": True}
    status, answer = _post(client, body)
    assert status == 200, answer
    results = answer["results"]
    expected = model.generate(images[:3], method="beam", beam_width=3)
    for result, row in zip(results, expected.ids.numpy()[:, 0]):
        hypothesis = result["hypotheses"][0]
        ids = [int(t) for t in row if t not in (0, model.eos_id)]
        assert hypothesis["ids"] == ids
        attention = np.array(hypothesis["attention"])
        assert attention.shape == (len(ids) + 1, 8, 8)
        np.testing.assert_allclose(attention.sum((1, 2)), 1, atol=1e-4)
    assert [r["text"] for r in results] == model.generate_text(
        images[:3], method="beam", beam_width=3)


def _encoded(data):
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("images,message", [
    ([_encoded(b"GIF89a not really")], "Image 0 is not an image"),
    (["%%%"], "Image 0 is not valid base64"),
    ([_encoded(_png(np.zeros((32, 32, 3), np.uint8))),
      _encoded(_png(np.zeros((80, 80, 3), np.uint8)))],
     r"Image 1 is too large: 80×80 = 6400 pixels, more than the limit "
     "of 4096"),
    ([_encoded(_png(np.zeros((32, 32), np.uint8)))],
     r"Image 0 has 1 channel \(mode L\); the model reads 3 \(RGB\)"),
    ([_encoded(_png(np.zeros((32, 32, 4), np.uint8)))],
     r"Image 0 has 4 channels \(mode RGBA\)"),
    ([], '"images": a non-empty list'),
    ([7], "Image 0 must be a base64 string"),
])
def test_http_bad_images_are_400_naming_the_problem(client, images,
                                                    message):
    status, answer = _post(client, {"images": images})
    assert status == 400
    assert answer["kind"] == "invalid_input"
    assert re.search(message, answer["error"]), answer["error"]


def test_http_text_request_to_a_captioner_is_400(client):
    status, answer = _post(client, {"texts": ["a red circle"]})
    assert status == 400
    assert '"texts" does not apply to a captioner' in answer["error"]
