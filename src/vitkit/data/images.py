"""Decoding image files and arrays into 8-bit RGB, the one input form the transforms accept.

Every image a model sees goes through :func:`to_rgb`, whatever mode the file stored:

- grayscale ("L", "1"), palette ("P"), CMYK, YCbCr -> RGB (PIL's conversions; CMYK uses PIL's
  plain formula, not an ICC profile);
- 16-bit and 32-bit integer ("I;16*", "I") and float ("F") grayscale are *scaled* to 8 bits
  (PIL's own ``convert`` clips them at 255, which turns most 16-bit images white);
- alpha ("RGBA", "LA", "PA", palette with transparency) is composited on a white background:
  dropping alpha instead would expose whatever colour the file keeps under transparent pixels
  (often black), which is noise to a classifier;
- EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`), so a phone photo taken
  sideways is seen upright.

Files are refused, never half-read: a file PIL cannot identify or decode, a truncated file, or a
header that claims more than ``max_pixels`` pixels (a "decompression bomb") raises
:class:`BadImageError`. :func:`read_image` turns that into ``None`` plus a logged warning, which
is how a corrupt file in a dataset is skipped instead of crashing an epoch.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from vitkit.errors import VitkitError
from vitkit.files import special_file_kind

log = logging.getLogger("vitkit.data")

#: PIL's own limit at import time (89,478,485 pixels, about 0.25 GB of RGB). PIL raises
#: DecompressionBombError at twice its limit, so a ``max_pixels`` above
#: ``2 * PIL.Image.MAX_IMAGE_PIXELS`` only takes effect once that global is raised too.
DEFAULT_MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)

WHITE = (255, 255, 255)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImageError(VitkitError):
    """A file that is not a readable image, or is too large to decode safely."""


def _scaled_to_uint8(image: Image.Image) -> Image.Image:
    """High-bit-depth grayscale -> 8-bit "L", scaling rather than clipping.

    16-bit modes map 0..65535 to 0..255. Mode "I" (32-bit) is read as 16-bit data when any value
    exceeds 255 (that is how PIL returns 16-bit PNG/TIFF from some encoders), else used as is.
    Mode "F" is read as [0, 1] when its maximum is at most 1, else as [0, 255].
    """
    array = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        array = array * 255.0 if array.size and np.nanmax(array) <= 1.0 else array
    elif image.mode != "I" or (array.size and array.max() > 255):
        array = array / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(array).round(), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any PIL image -> 8-bit "RGB" (alpha composited on ``background``; see the module notes)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _INT_MODES or mode == "F":
        return _scaled_to_uint8(image).convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise BadImageError(f"cannot convert image mode {mode!r} to RGB: {err}") from err


def open_rgb(path: str | os.PathLike, *, max_pixels: int | None = None) -> Image.Image:
    """Decode ``path`` fully into an upright 8-bit RGB image.

    Raises :class:`BadImageError` for an unreadable/corrupt/truncated file or one whose header
    claims more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`); the size check
    happens before any pixel data is decoded.
    """
    kind = special_file_kind(path)
    if kind is not None:  # opening a FIFO would wait for a writer; a device never ends
        raise BadImageError(f"{path}: is {kind}, not an image file")
    return _decode(path, str(path), max_pixels)


def decode_rgb(data: bytes, name: str, *, max_pixels: int | None = None) -> Image.Image:
    """:func:`open_rgb` for an encoded image held in memory (a tar member, a dataset cell); ``name``
    says where it came from in the :class:`BadImageError`."""
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: str | os.PathLike | io.BytesIO, name: str, max_pixels: int | None) -> Image.Image:
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        # A decoder can raise nearly anything on a hostile or damaged file (OSError, SyntaxError,
        # ValueError, EOFError, struct/zlib errors, DecompressionBombError): all mean "bad file".
        with warnings.catch_warnings():
            # We enforce our own limit below; PIL's warning between its limit and 2x is redundant.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > limit:
                    raise BadImageError(f"{name}: {width}x{height} = {width * height:,} pixels exceeds the "
                                        f"limit of {limit:,} (possible decompression bomb)")
                image.load()
                image = ImageOps.exif_transpose(image)
    except BadImageError:
        raise
    except Image.DecompressionBombError as err:
        raise BadImageError(f"{name}: refused as a possible decompression bomb ({err})") from err
    except Exception as err:  # any decoder failure: see the comment above
        raise BadImageError(f"{name}: not a readable image ({type(err).__name__}: {err})") from err
    return to_rgb(image)


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> Image.Image | None:
    """:func:`open_rgb`, or ``None`` with a logged warning when the file is bad (dataset use)."""
    try:
        return open_rgb(path, max_pixels=max_pixels)
    except BadImageError as err:
        log.warning("skipping image: %s", err)
        return None


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values -> uint8: floats with max <= 1 are [0, 1], other floats [0, 255]; uint16 is
    16-bit; other integers must already be 0..255.

    Values that fit none of these are refused with their count, never clipped or wrapped: NaN or
    infinite floats, negative pixels (e.g. an already normalised array), integers above 255 in a
    type that does not say 16-bit (``int64`` pixels would otherwise wrap around or be guessed at).
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise VitkitError(f"image array holds {int(array.size - finite.sum()):,} NaN or infinite pixel values")
        peak = float(array.max()) if array.size else 0.0
        high = 1.0 if peak <= 1.0 else 255.0
        outside = int(np.count_nonzero((array < 0) | (array > high)))
        if outside:
            raise VitkitError(f"image array holds {outside:,} pixel values outside [0, 255] (floats are read as "
                              f"[0, 1] when their maximum is at most 1, else as [0, 255])")
        scaled = array * 255.0 if high == 1.0 else array
        return np.clip(scaled.round(), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype == np.uint16:
            return np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8)
        outside = int(np.count_nonzero((array < 0) | (array > 255)))
        if outside:
            raise VitkitError(f"image array of {array.dtype} holds {outside:,} pixel values outside 0..255 "
                              f"(store 16-bit pixels as uint16)")
        return array.astype(np.uint8)
    raise VitkitError(f"image array has dtype {array.dtype}; expected integer or float pixels")


def images_to_rgb_uint8(images: np.ndarray, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """A stack of images -> uint8 (N, H, W, 3).

    Accepts (N, H, W) grayscale, (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4} (channels-last
    wins when both readings fit), uint8/uint16/other ints in 0..255/bool/float (see :func:`_to_uint8`).
    Four channels are RGBA and are composited on ``background`` like :func:`to_rgb` does.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise VitkitError(f"image array has shape {images.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if images.shape[-1] not in (1, 3, 4):
        if images.shape[1] not in (1, 3, 4):
            raise VitkitError(f"image array has shape {images.shape}: no axis of 1, 3 or 4 channels")
        images = images.transpose(0, 2, 3, 1)
    images = _to_uint8(images)
    channels = images.shape[-1]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(images, 3, axis=-1))
    if channels == 4:
        alpha = images[..., 3:4].astype(np.float32) / 255.0
        rgb = images[..., :3].astype(np.float32) * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
        return np.clip(rgb.round(), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images)
