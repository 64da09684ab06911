"""Image bytes -> the float32 array a captioner reads (Pillow, no
TensorFlow): the one preprocessing shared by training data
(``kerasrnn.models.caption_data``) and serving, so that an exported model
sees the pixels it was trained on.

    PNG or JPEG bytes -> RGB -> resize to (height, width), bilinear
    (the aspect ratio is not kept) -> float32 / 255, shape (H, W, 3)
"""

import io

import numpy as np

FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 40_000_000   # width × height of the largest image decoded


class ImageError(ValueError):
    """Bytes that are not an image the model can read; the message says
    what was received and what is expected."""


def decode_image(data, size, channels=3, strict=True, max_pixels=MAX_PIXELS,
                 what="The image"):
    """``data`` (PNG or JPEG bytes) as float32 ``(height, width, channels)``
    in [0, 1].

    Args:
        data: the encoded image.
        size: ``(height, width)`` to resize to.
        channels: 3 (RGB) or 1 (grey), what the model reads.
        strict: refuse an image with another channel layout (a grey image
            for an RGB model, RGBA, a palette...) instead of converting it.
        max_pixels: the largest ``width × height`` decoded (checked from
            the header, before decoding).
        what: how error messages name the image.

    Raises:
        ImageError: not PNG/JPEG, corrupt, too large, or (strict) the
            wrong channel count.
    """
    try:
        from PIL import Image
        from PIL import UnidentifiedImageError
    except ImportError:   # pragma: no cover - depends on the install
        raise ImportError(
            "Reading images needs Pillow: pip install pillow"
        ) from None

    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ImageError(f"{what} is empty: send PNG or JPEG bytes.")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(
            f"{what} is not an image: its {len(data)} bytes are neither PNG "
            "nor JPEG."
        ) from None
    if image.format not in FORMATS:
        raise ImageError(
            f"{what} is {image.format}; send PNG or JPEG."
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{what} is too large: {width}×{height} = {width * height} "
            f"pixels, more than the limit of {max_pixels}."
        )
    mode = "RGB" if channels == 3 else "L"
    if image.mode != mode:
        if strict:
            bands = len(image.getbands())
            raise ImageError(
                f"{what} has {bands} channel{'s' if bands > 1 else ''} "
                f"(mode {image.mode}); the model reads {channels} "
                f"({mode})."
            )
        image = image.convert(mode)
    try:
        image = image.resize((size[1], size[0]), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{what} is corrupt: {error}") from None
    return array.reshape(size[0], size[1], channels)
