"""Safe decoding of untrusted photo bytes into RGB pixels.

Every photo Reunite sees comes from outside: a caseworker's phone, a scanned print,
an e-mail attachment. This module turns those bytes into an upright 8-bit RGB
array or refuses them with an `InputRejected` subclass whose message a caseworker
can act on. It caps the byte size, the pixel count, the long side and the aspect
ratio before decoding (so a decompression bomb, or a 1×40,000,000 "photo" that
would tie a thread up for seconds, is refused from its header), decodes only well-known still
formats, applies the EXIF orientation, converts every pixel mode to RGB and makes
a downscaled working copy so detection cost stays bounded on large photos.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Still formats a camera, phone or scanner produces. Restricting Pillow to these
# keeps its rarely used parsers away from untrusted bytes. (The JPEG opener
# also yields MPO, the multi-picture JPEG of phones and 3D cameras.)
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class InputRejected(Exception):
    """A photo (or its faces) cannot be used; `message` says why in plain words."""

    code = "rejected_input"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class EmptyFile(InputRejected):
    code = "empty_file"


class FileTooLarge(InputRejected):
    code = "file_too_large"


class NotAnImage(InputRejected):
    code = "not_an_image"


class TruncatedImage(InputRejected):
    code = "truncated_image"


class TooManyPixels(InputRejected):
    code = "too_many_pixels"


class AnimatedImage(InputRejected):
    code = "animated_image"


class SideTooLong(InputRejected):
    code = "side_too_long"


class UnusualShape(InputRejected):
    code = "unusual_shape"


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied before and during decoding."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    # A camera's longest side is under 12,000 px (100 MP medium format: 11,648) and no photo
    # of a face is a line: a strip of pixels costs seconds to decode and shows nobody.
    max_side: int = 12_000
    max_aspect: float = 20.0
    # Detection runs on a copy no larger than this on its long side; embedding
    # uses the full-resolution pixels.
    working_max_side: int = 1024


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB photo and its downscaled working copy for detection."""

    pixels: np.ndarray  # (height, width, 3) uint8, full resolution
    working: np.ndarray  # (h, w, 3) uint8, at most working_max_side on its long side
    scale: float  # working size / original size (1.0 when not downscaled)
    source_format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Decode photo bytes, or raise an `InputRejected` saying what is wrong."""
    _check_size(len(data), limits)
    image = _open(data, limits)
    try:
        rgb = _to_rgb(_upright(image))
    except (OSError, ValueError) as exc:
        raise NotAnImage("This photo uses a colour format we cannot read. Please send a JPEG or PNG copy.") from exc
    finally:
        image.close()
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    working, scale = _working_copy(rgb, limits.working_max_side)
    return DecodedImage(pixels=pixels, working=working, scale=scale, source_format=image.format or "")


def load_image_file(path: str | Path, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Read and decode a photo file; the byte cap is checked before reading it."""
    path = Path(path)
    _check_size(path.stat().st_size, limits)
    return decode_image(path.read_bytes(), limits)


def _check_size(size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise EmptyFile("The file is empty. Please choose the photo again.")
    if size > limits.max_bytes:
        raise FileTooLarge(
            f"The file is {size / 1_048_576:.1f} MB; photos up to "
            f"{limits.max_bytes / 1_048_576:.0f} MB are accepted. Please send a smaller copy."
        )


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open from the header only, then refuse oversize, animated or broken files."""
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own cap, far above ours
        raise _too_many_pixels_error(limits, "This photo has") from exc
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as exc:
        raise NotAnImage("This file is not a photo we can read. Please send a JPEG, PNG or WebP photo.") from exc
    width, height = image.size
    if width * height > limits.max_pixels or width <= 0 or height <= 0:
        image.close()
        raise _too_many_pixels_error(limits, f"The photo is {width}×{height} pixels,")
    _check_shape(width, height, limits, image)
    # MPO (phone and 3D cameras) stores extra views after the main photo; the
    # first frame is the photo itself. Other multi-frame files are animations.
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        image.close()
        raise AnimatedImage(
            "This file holds several images (an animation or several pages). Please send one still photo."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        image.close()
        raise TruncatedImage("The photo file is damaged or incomplete. Please send the original file again.") from exc
    return image


def _check_shape(width: int, height: int, limits: ImageLimits, image: Image.Image) -> None:
    """Refuse, from the header, a side longer than any camera's or a strip no face fits in."""
    long_side, short_side = max(width, height), min(width, height)
    if long_side > limits.max_side:
        image.close()
        raise SideTooLong(
            f"The photo is {width:,}×{height:,} pixels; photos up to {limits.max_side:,} pixels "
            "on their longest side are accepted. Please send a smaller copy."
        )
    if long_side > limits.max_aspect * short_side:
        image.close()
        raise UnusualShape(
            f"The photo is {width:,}×{height:,} pixels, far longer than it is wide; photos up to "
            f"{limits.max_aspect:g} times as long as wide are accepted. Please send the photo "
            "as taken, not a strip cut from it."
        )


def _too_many_pixels_error(limits: ImageLimits, subject: str) -> TooManyPixels:
    return TooManyPixels(
        f"{subject} more than the {limits.max_pixels / 1e6:.0f} megapixels accepted. Please send a smaller copy."
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block leaves the photo as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any pixel mode to 8-bit RGB, compositing transparency onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_grey_to_rgb(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale: rescale to 8 bits instead of clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        span = high - low if high > low else 1.0
        grey = (np.nan_to_num(values, nan=low) - low) * (255.0 / span)
    else:
        grey = values * (255.0 / 65535.0)
    grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return Image.fromarray(grey8, mode="L").convert("RGB")


def _working_copy(rgb: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    long_side = max(rgb.size)
    if long_side <= max_side:
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), 1.0
    scale = max_side / long_side
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), scale
