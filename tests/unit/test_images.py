"""Every refusal path and every conversion of `matching.images`, on files built here."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from matching.images import (
    AnimatedImage,
    EmptyFile,
    FileTooLarge,
    ImageLimits,
    InputRejected,
    NotAnImage,
    SideTooLong,
    TooManyPixels,
    TruncatedImage,
    UnusualShape,
    decode_image,
    load_image_file,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    red = np.tile(x, (height, 1))
    green = np.tile(y[:, None], (1, width))
    return Image.fromarray(np.dstack([red, green, np.full_like(red, 90)]), mode="RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size and carries almost no data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


# --- refusals -------------------------------------------------------------------------


def test_empty_file_is_refused():
    with pytest.raises(EmptyFile, match="empty"):
        decode_image(b"")


def test_file_over_the_byte_limit_is_refused_before_decoding():
    data = encode(gradient(), "PNG")
    with pytest.raises(FileTooLarge, match="MB"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert decode_image(data, ImageLimits(max_bytes=len(data))).width == 64


def test_file_size_is_checked_from_disk_before_reading(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 2048)
    with pytest.raises(FileTooLarge):
        load_image_file(path, ImageLimits(max_bytes=1024))


@pytest.mark.parametrize(
    "data",
    [b"hello, this is text", b"%PDF-1.4\n%\xe2\xe3", b"\x00" * 500, b"GIF89a" + b"\x01" * 3],
    ids=["text", "pdf", "zeros", "gif-header-only"],
)
def test_bytes_that_are_not_an_image_are_refused(data):
    with pytest.raises(NotAnImage, match="not a photo"):
        decode_image(data)


def test_formats_outside_the_accepted_list_are_refused():
    data = encode(gradient(), "PPM")
    with pytest.raises(NotAnImage):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_are_refused(fmt):
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)), fmt)
    with pytest.raises((TruncatedImage, NotAnImage)):
        decode_image(data[: len(data) // 2])


def test_truncated_jpeg_is_still_refused_after_face_recognition_is_imported():
    import matching.faces  # noqa: F401  (face_recognition turns on LOAD_TRUNCATED_IMAGES)

    data = encode(gradient(300, 300), "JPEG")
    with pytest.raises(TruncatedImage):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_from_its_header():
    with pytest.raises(TooManyPixels, match="megapixels"):
        decode_image(png_header_only(60_000, 60_000))


def test_a_strip_at_the_pixel_cap_is_refused_from_its_header_before_decoding(monkeypatch):
    def decoding(*args):
        raise AssertionError("decoding began")

    monkeypatch.setattr(Image.Image, "load", decoding)  # the header is all that may be read
    with pytest.raises(SideTooLong, match="40,000,000 pixels; photos up to 12,000 pixels on their longest side"):
        decode_image(png_header_only(1, 40_000_000))
    with pytest.raises(UnusualShape, match="up to 20 times as long as wide"):
        decode_image(png_header_only(400, 8_001))


def test_side_and_aspect_limits_are_configurable():
    wide = encode(gradient(210, 10), "PNG")
    with pytest.raises(UnusualShape):
        decode_image(wide)
    assert decode_image(wide, ImageLimits(max_aspect=21)).width == 210
    with pytest.raises(SideTooLong):
        decode_image(wide, ImageLimits(max_aspect=21, max_side=200))


def test_pixel_cap_is_configurable():
    data = encode(gradient(100, 100), "PNG")
    with pytest.raises(TooManyPixels):
        decode_image(data, ImageLimits(max_pixels=9_999))
    assert decode_image(data, ImageLimits(max_pixels=10_000)).height == 100


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_are_refused(fmt):
    frames = [gradient(), gradient().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(AnimatedImage, match="still photo"):
        decode_image(data)


def test_single_frame_gif_is_accepted():
    assert decode_image(encode(gradient(), "GIF")).pixels.shape == (48, 64, 3)


def test_refusals_share_one_base_with_a_code_and_a_message():
    with pytest.raises(InputRejected) as caught:
        decode_image(b"")
    assert caught.value.code == "empty_file"
    assert caught.value.message == str(caught.value)


# --- conversions ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb_uint8(fmt):
    decoded = decode_image(encode(gradient(), fmt))
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.source_format == fmt


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90° clockwise
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.pixels.shape == (40, 20, 3)  # now portrait
    top_right = decoded.pixels[2, 17]
    assert top_right[0] > 200 and top_right[2] < 60  # the marker moved to the top-right


def test_broken_exif_does_not_crash():
    exif = Image.Exif()
    exif[0x0112] = 99  # not an orientation
    decoded = decode_image(encode(gradient(), "JPEG", exif=exif.tobytes()))
    assert decoded.pixels.shape == (48, 64, 3)


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    pixels = decode_image(encode(image, "PNG")).pixels
    assert tuple(pixels[5, 5]) == (255, 255, 255)
    assert tuple(pixels[0, 0]) == (255, 0, 0)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped():
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    pixels = decode_image(encode(image, "PNG")).pixels
    assert pixels[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "CMYK", "I", "F", "YCbCr"])
def test_every_pixel_mode_becomes_rgb(mode):
    image = gradient().convert(mode) if mode not in ("I", "F") else gradient().convert("L").convert(mode)
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    decoded = decode_image(encode(image, fmt))
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.max() > decoded.pixels.min()  # content survived the conversion


def test_large_photos_get_a_bounded_working_copy_and_keep_full_pixels():
    decoded = decode_image(encode(gradient(3000, 1500), "PNG"), ImageLimits(working_max_side=1000))
    assert decoded.pixels.shape == (1500, 3000, 3)
    assert decoded.working.shape == (500, 1000, 3)
    assert decoded.scale == pytest.approx(1000 / 3000)


def test_small_photos_are_not_resampled():
    decoded = decode_image(encode(gradient(), "PNG"))
    assert decoded.scale == 1.0
    assert np.array_equal(decoded.working, decoded.pixels)
