"""``vitkit serve``: one model behind a local web page and a JSON API (issue 24).

    >>> from vitkit.deploy.serve import Service, create_app
    >>> service = Service(vitkit.load_model("runs/s16/model"))
    >>> app = create_app(service)          # an ASGI app: uvicorn.run(app), or httpx's ASGITransport

Routes: ``GET /`` the page (drop or pick an image: top-k classes, the attention overlay, an MAE
model's reconstruction at a chosen mask ratio); ``GET /health``; ``POST /predict`` (top-k classes
and probabilities), ``POST /attention`` (the attention-rollout overlay of a ViT, the centre window's
attention of a Swin, as a PNG data URL and the map), ``POST /reconstruct?mask_ratio=R`` (an MAE
checkpoint: the masked input and its reconstruction). An image is the request body (``image/*`` or
``application/octet-stream``) or the ``file`` field of a ``multipart/form-data`` form.

What a user relies on:

* the model is loaded once; each request's forward pass waits for one of ``max_concurrent`` slots, so
  however many clients call at once, no more than that many forwards run (``/health`` reports the
  peak);
* an image is read exactly as ``vitkit predict`` reads it: the upload is written to a private
  temporary file and goes through :func:`vitkit.evaluate.predict.predict_images` itself (the same
  decoder -- 16-bit scaled, CMYK converted, an animation's first frame, EXIF orientation -- and the
  checkpoint's own evaluation transform), so the probabilities are ``predict``'s;
* bad input is an HTTP 4xx with one line of JSON, ``{"error": "..."}``, and the server keeps
  serving: zero bytes, not an image, truncated, a decompression bomb (400), over
  ``max_upload_mb`` (413, refused from its Content-Length before the body is read, or as soon as a
  streamed body passes the limit), a content type that is not an image or a form (415).

Framework: FastAPI on Starlette, served by uvicorn. Starlette is a small, well-kept ASGI toolkit
(streaming request bodies, so the size limit holds before a large upload is buffered; a thread pool
for the blocking forwards); FastAPI adds little on top but validated query parameters and is what
most Python model servers use, so the code reads familiar; uvicorn is Starlette's own server and
shuts down gracefully on Ctrl-C (requests in flight finish). All three are imported lazily, so
vitkit without the ``serve`` extra still imports, and a missing one is a one-line error naming it.
"""


import base64
import contextlib
import copy
import importlib.util
import io
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from vitkit.errors import VitkitError
from vitkit.options import COMMAND_OPTIONS, check_args

_EXTRA = "pip install 'vitkit[serve]'"
#: what a forward needs beyond torch: FastAPI (Starlette), uvicorn, python-multipart (forms)
SERVE_MODULES = ("fastapi", "uvicorn", "multipart")
PAGE = Path(__file__).resolve().parent.parent / "assets" / "serve.html"
MB = 1 << 20
#: the content types an image may come as; a form's ``file`` field may be any file
IMAGE_TYPES = ("image/", "application/octet-stream")

def require_serve() -> None:
    """A one-line error naming the missing packages of the ``serve`` extra."""
    missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        names = ["python-multipart" if m == "multipart" else m for m in missing]
        raise VitkitError(f"vitkit serve needs {', '.join(names)}: {_EXTRA}")


class UploadError(VitkitError):
    """A request the server refuses: ``status`` is its HTTP code, the message its one-line JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _array_image(array: np.ndarray) -> Image.Image:
    """(H, W, 3) in [0, 1] -> an RGB picture."""
    return Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _safe_name(name: str | None) -> str:
    """An upload's file name, reduced to a harmless base name for the temporary file and messages."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").name)[:80].lstrip(".")
    return base or "upload"


class Service:
    """The model and what the routes do with it, without any web framework (tested directly too).

    ``objective``: an MAE checkpoint's decoder (:func:`vitkit.objectives.load_pretraining`), for
    ``/reconstruct``. ``max_concurrent``: forwards run at once; ``max_upload_mb``: the upload limit.
    """

    def __init__(self, model: nn.Module, *, objective: Any = None, top_k: int = 5, max_upload_mb: float = 20.0,
                 max_concurrent: int = 1, name: str | None = None) -> None:
        check_args(COMMAND_OPTIONS, top_k=top_k, max_upload_mb=max_upload_mb, max_concurrent=max_concurrent)
        self.model = model.eval()
        self.objective = objective
        self.top_k = top_k
        self.max_upload_bytes = int(max_upload_mb * MB)
        self.max_concurrent = max_concurrent
        self.name = name or model.config.name
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._count = threading.Lock()
        self.in_flight = 0
        #: the most forwards that ever ran at once (never above ``max_concurrent``)
        self.peak_in_flight = 0
        self.forwards = 0
        self._tmp = Path(tempfile.mkdtemp(prefix="vitkit-serve-"))

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ----------------------------------------------------------------------------- model facts
    def health(self) -> dict[str, Any]:
        from vitkit.models.registry import family_of

        family = family_of(self.model)
        return {"status": "ok", "model": self.name, "family": family.name,
                "num_classes": int(self.model.config.num_classes), "image_size": list(self.model.config.image_size),
                "attention": ("rollout" if "rollout.png" in family.figures
                              else "window" if "window_attention.png" in family.figures else None),
                "reconstruction": self.objective is not None and getattr(self.objective, "name", None) == "mae",
                "top_k": self.top_k, "max_upload_mb": self.max_upload_bytes / MB,
                "max_concurrent": self.max_concurrent, "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight, "forwards": self.forwards}

    # ----------------------------------------------------------------------------- one request
    @contextlib.contextmanager
    def _forward_slot(self) -> Iterator[None]:
        """Wait for one of the ``max_concurrent`` slots; counts what runs at once."""
        with self._slots:
            with self._count:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                with self._count:
                    self.in_flight -= 1
                    self.forwards += 1

    @contextlib.contextmanager
    def _staged(self, data: bytes, name: str | None) -> Iterator[tuple[Path, Image.Image, str]]:
        """The upload as a private temporary file, decoded as ``predict`` decodes files; removed after."""
        from vitkit.data.images import BadImageError, open_rgb

        shown = _safe_name(name)
        if not data:
            raise UploadError(400, f"{shown}: empty upload (zero bytes)")
        if len(data) > self.max_upload_bytes:
            raise UploadError(413, self.too_large())
        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            path = folder / shown
            path.write_bytes(data)
            try:
                image = open_rgb(path)
            except BadImageError as exc:
                raise UploadError(400, str(exc).replace(str(path), shown)) from None
            yield path, image, shown
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def too_large(self) -> str:
        return f"upload over the limit of {self.max_upload_bytes / MB:g} MiB (--max-upload-mb)"

    def predict(self, data: bytes, name: str | None = None, top_k: int | None = None) -> dict[str, Any]:
        """``vitkit predict``'s row for the uploaded image: ``{"name", "top": [{"label", "index",
        "probability"}...]}``."""
        from vitkit.evaluate.predict import predict_images

        top_k = self.top_k if top_k is None else check_args(COMMAND_OPTIONS, top_k=top_k)["top_k"]
        if not self.model.config.num_classes:
            raise UploadError(400, "this model has no classification head (a pre-trained encoder): nothing to "
                                   "predict; /reconstruct shows what an MAE model predicts")
        with self._staged(data, name) as (path, _, shown), self._forward_slot():
            (row,) = predict_images(self.model, [path], top_k=top_k, batch_size=1)
        return {"name": shown, "top": row["top"]}

    def attention(self, data: bytes, name: str | None = None, stage: int = 0) -> dict[str, Any]:
        """The attention overlay of the uploaded image: Attention Rollout (ViT, Fig. 6) or the centre
        token's window attention in the first block of Swin stage ``stage``, over the crop the model saw."""
        from vitkit.data.transforms import eval_transform
        from vitkit.inspect.overlay import overlay_map, rollout_overlay, seen_region
        from vitkit.inspect.windows import swin_attention_analysis

        kind = self.health()["attention"]
        if kind is None:
            raise UploadError(400, f"a {self.health()['family']} model has no attention overlay to draw")
        with self._staged(data, name) as (_, image, shown), self._forward_slot():
            device = next(self.model.parameters()).device
            if kind == "rollout":
                x = eval_transform(self.model.preprocessing)(image).unsqueeze(0).to(device)
                picture, attention_map = rollout_overlay(self.model, x, image)
            else:
                maps = swin_attention_analysis(self.model, [image], batch_size=1).window_maps
                if not 0 <= stage < len(maps):
                    raise UploadError(400, f"stage {stage} is out of range: this model has {len(maps)} stages")
                attention_map = maps[stage][0]
                size = tuple(self.model.preprocessing.image_size)
                picture = overlay_map(seen_region(image, self.model.preprocessing, size), attention_map)
        return {"name": shown, "kind": kind, "overlay": _png_data_url(picture),
                "map": np.round(np.asarray(attention_map, dtype=np.float64), 6).tolist()}

    def reconstruct(self, data: bytes, name: str | None = None, mask_ratio: float = 0.75,
                    seed: int = 0) -> dict[str, Any]:
        """An MAE checkpoint's masked input and reconstruction (pasted into the visible patches) at
        ``mask_ratio``, masks drawn with ``seed``."""
        from vitkit.inspect.images import NamedImage
        from vitkit.inspect.reconstruction import mae_reconstructions
        from vitkit.objectives.mae import MAEOptions
        from vitkit.options import field_options

        if not self.health()["reconstruction"]:
            raise UploadError(400, "reconstruction needs an MAE checkpoint (with its decoder); this is not one")
        field_options(MAEOptions)["mask_ratio"].check(mask_ratio, "mask_ratio")
        objective = copy.copy(self.objective)  # the decoder shared, the mask ratio this request's own
        objective.options = self.objective.options.replace(mask_ratio=mask_ratio)
        with self._staged(data, name) as (_, image, shown), self._forward_slot():
            out = mae_reconstructions(self.model, objective, [NamedImage(shown, image)], seed=seed, batch_size=1)
        return {"name": shown, "mask_ratio": mask_ratio, "loss": float(out["loss"][0]),
                **{key: _png_data_url(_array_image(out[key][0])) for key in ("masked", "reconstruction", "pasted")}}


# ----------------------------------------------------------------------------------- the web app
def create_app(service: Service):
    """The FastAPI application of ``service`` (see the module notes for the routes)."""
    require_serve()
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser

    app = FastAPI(title=f"vitkit serve: {service.name}", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(VitkitError)
    async def _vitkit_error(_request: Request, exc: VitkitError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
        return error(422, f"{where}: {first.get('msg')}" if where else first.get("msg"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail)

    async def read_image(request: Request) -> tuple[bytes, str | None]:
        """The uploaded image's bytes and file name, the size limit held while reading (see the notes)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > service.max_upload_bytes + 64 * 1024:
            raise UploadError(413, service.too_large())  # the form's own fields may add a little
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        form = kind == "multipart/form-data"
        if not form and not kind.startswith(IMAGE_TYPES):
            raise UploadError(415, f"content type {kind or '(none)'!r} is not an image: send the image as the body "
                                   f"(image/*) or as the 'file' field of a multipart/form-data form")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > service.max_upload_bytes + 64 * 1024:
                raise UploadError(413, service.too_large())
        if not form:
            return bytes(body), request.headers.get("x-filename")

        async def again():
            yield bytes(body)

        try:
            fields = await MultiPartParser(request.headers, again(), max_files=1, max_fields=8).parse()
        except MultiPartException as exc:
            raise UploadError(400, f"unreadable form: {exc.message}") from None
        upload = fields.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "the form has no 'file' field holding an image")
        try:
            return await upload.read(), upload.filename
        finally:
            await upload.close()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.post("/predict")
    async def predict(request: Request, top_k: int | None = Query(None)) -> dict[str, Any]:
        data, name = await read_image(request)
        return await run_in_threadpool(service.predict, data, name, top_k)

    @app.post("/attention")
    async def attention(request: Request, stage: int = Query(0)) -> dict[str, Any]:
        data, name = await read_image(request)
        return await run_in_threadpool(service.attention, data, name, stage)

    @app.post("/reconstruct")
    async def reconstruct(request: Request, mask_ratio: float = Query(0.75), seed: int = Query(0)) -> dict[str, Any]:
        data, name = await read_image(request)
        return await run_in_threadpool(service.reconstruct, data, name, mask_ratio, seed)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error (a port in use, an unknown address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise VitkitError(f"cannot listen on {host}:{port}: unknown address ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = ": pick another --port" if exc.errno in (98, 48, 10048) else ""
        raise VitkitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.set_inheritable(True)
    return sock


def make_server(service: Service, *, on_ready: Callable[[], None] | None = None):
    """The uvicorn server of ``service`` (``server.run(sockets=[sock])`` serves until ``server.should_exit``
    or, in the main thread, Ctrl-C); ``on_ready`` is called once it accepts connections."""
    require_serve()
    import uvicorn

    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets=None) -> None:
            await original(sockets=sockets)
            if server.started:
                on_ready()

        server.startup = startup
    return server


def serve(service: Service, sock: socket.socket, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``service`` on the bound socket until Ctrl-C (SIGINT) or SIGTERM: uvicorn finishes the
    requests in flight, then returns (and re-raises the signal for the caller's handler)."""
    server = make_server(service, on_ready=on_ready)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        service.close()
