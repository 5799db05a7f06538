"""``vitkit serve`` in a test: a real server on 127.0.0.1 (a free port) in a background thread, stopped
within a bounded time; the image files an upload test sends."""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from vitkit.deploy.serve import Service, bind, make_server

HOST = "127.0.0.1"


@contextlib.contextmanager
def running_server(service: Service, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``service`` on 127.0.0.1 and yield its base URL (``http://127.0.0.1:PORT``)."""
    sock = bind(HOST, 0)
    ready = threading.Event()
    server = make_server(service, on_ready=ready.set)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout):
            raise AssertionError(f"the server did not start within {timeout:.0f} s")
        yield f"http://{HOST}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop within 30 s"


def _picture(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 10000 x 10000 pixels (100 million: over vitkit's limit of 89 million)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 10000, 10000, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def good_images(folder: Path) -> dict[str, Path]:
    """Readable images in the forms ``predict`` handles: RGB PNG, 16-bit grayscale PNG, CMYK JPEG, an
    animated GIF (its first frame is the image)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(_picture())
    paths = {"rgb.png": folder / "rgb.png", "gray16.png": folder / "gray16.png",
             "cmyk.jpg": folder / "cmyk.jpg", "animated.gif": folder / "animated.gif"}
    rgb.save(paths["rgb.png"])
    ramp = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(paths["gray16.png"])  # mode I;16
    rgb.convert("CMYK").save(paths["cmyk.jpg"], quality=95)
    frames = [Image.fromarray(_picture(seed=s)).convert("P") for s in (1, 2)]
    frames[0].save(paths["animated.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return paths


def png_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_picture(seed=seed)).save(buffer, format="PNG")
    return buffer.getvalue()
