"""Decoding: every file mode becomes upright 8-bit RGB; bad and oversized files are refused."""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vitkit.data.images import BadImageError, images_to_rgb_uint8, open_rgb, read_image, to_rgb


def _pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def _save(tmp_path, image: Image.Image, name: str, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit gray pixels, with no real pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_grayscale_and_bilevel_become_equal_rgb_channels(tmp_path):
    gray = Image.fromarray(np.array([[0, 77, 200]], dtype=np.uint8), mode="L")
    out = _pixels(open_rgb(_save(tmp_path, gray, "g.png")))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [77, 77, 77], [200, 200, 200]])
    bilevel = Image.fromarray(np.array([[False, True]]))
    np.testing.assert_array_equal(_pixels(open_rgb(_save(tmp_path, bilevel, "b.png")))[0], [[0, 0, 0], [255] * 3])


def test_rgba_and_la_are_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    out = _pixels(open_rgb(_save(tmp_path, Image.fromarray(rgba), "a.png")))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # fully transparent -> background
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])  # opaque -> its colour
    np.testing.assert_allclose(out[0, 2], [127, 127, 127], atol=1)  # half black over white
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8))
    np.testing.assert_array_equal(_pixels(open_rgb(_save(tmp_path, la, "la.png")))[0], [[255] * 3, [0] * 3])


def test_palette_with_and_without_transparency(tmp_path):
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    plain = _pixels(open_rgb(_save(tmp_path, palette_image, "p.png")))
    np.testing.assert_array_equal(plain[0], [[255, 0, 0], [0, 255, 0]])
    see_through = _pixels(open_rgb(_save(tmp_path, palette_image, "pt.png", transparency=0)))
    np.testing.assert_array_equal(see_through[0], [[255, 255, 255], [0, 255, 0]])


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (255, 0, 0, 0))
    cmyk.putpixel((1, 0), (0, 0, 0, 255))
    out = _pixels(open_rgb(_save(tmp_path, cmyk, "c.tiff")))
    np.testing.assert_array_equal(out[0], [[0, 255, 255], [0, 0, 0]])  # pure cyan; full black ink


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    deep = np.array([[0, 257 * 100, 65535, 32896]], dtype=np.uint16)
    image = Image.fromarray(deep)
    assert image.mode.startswith("I;16")
    out = _pixels(open_rgb(_save(tmp_path, image, "d.png")))
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255, 128])
    # 32-bit integer and float modes as some decoders return them
    np.testing.assert_array_equal(_pixels(to_rgb(Image.fromarray(deep.astype(np.int32))))[0, :, 1], [0, 100, 255, 128])
    np.testing.assert_array_equal(_pixels(to_rgb(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))))[0, :, 2],
                                  [0, 128, 255])


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = open_rgb(_save(tmp_path, image, "e.jpg", exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)  # width and height swap
    pixels = _pixels(out).astype(int)
    assert pixels[4, 15, 0] > 200 and pixels[4, 15, 2] < 60  # red now in the top-right corner
    assert pixels[4, 4, 2] > 200 and pixels[4, 4, 0] < 60  # top-left is blue


def test_decompression_bomb_is_refused_before_decoding(tmp_path, caplog):
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(20_000, 20_000))  # 400 M pixels: over twice PIL's limit
    with pytest.raises(BadImageError, match="decompression bomb"):
        open_rgb(huge)
    large = tmp_path / "large.png"
    large.write_bytes(_png_header_only(10_000, 10_000))  # 100 M: over the default limit (PIL only warns)
    with pytest.raises(BadImageError, match="decompression bomb"):
        open_rgb(large)
    small = _save(tmp_path, Image.new("RGB", (64, 64)), "small.png")
    assert open_rgb(small).size == (64, 64)
    with pytest.raises(BadImageError, match="4,096 pixels exceeds the limit of 1,000"):
        open_rgb(small, max_pixels=1000)  # the limit is configurable
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        assert read_image(huge) is None
    assert "decompression bomb" in caplog.text


def test_corrupt_and_truncated_files_are_skipped_with_a_warning(tmp_path, caplog):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        assert read_image(junk) is None
        assert read_image(truncated) is None
        assert read_image(tmp_path / "missing.png") is None
    assert caplog.text.count("skipping image") == 3
    assert read_image(whole).size == (64, 64)


def test_array_stacks_become_rgb_uint8():
    gray = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)  # (N, H, W)
    out = images_to_rgb_uint8(gray)
    assert out.shape == (2, 2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 2], gray)
    nchw = np.zeros((1, 3, 2, 2), np.float32)
    nchw[0, 1] = 1.0  # green plane, floats in [0, 1]
    np.testing.assert_array_equal(images_to_rgb_uint8(nchw)[0, 0, 0], [0, 255, 0])
    rgba = np.array([[[[10, 20, 30, 0]]]], np.uint8)
    np.testing.assert_array_equal(images_to_rgb_uint8(rgba)[0, 0, 0], [255, 255, 255])
    np.testing.assert_array_equal(images_to_rgb_uint8(np.full((1, 1, 1), 65535, np.uint16))[0, 0, 0], [255] * 3)
