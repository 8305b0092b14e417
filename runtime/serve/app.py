"""The FastAPI application: `/` (the page), `/v1/recognize`, `/v1/model`, `/healthz`.

Routes stay thin: check limits, parse, hand the work to `RecognitionService` in a
worker thread (never on the event loop), return JSON. OpenAPI is at `/openapi.json`.
FastAPI's `/docs` and `/redoc` pages are switched off: they load Swagger UI from a CDN,
and nothing here may assume the user's box can reach the internet.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from importlib import resources
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..constants import DEFAULT_BEAM_WIDTH
from .limits import DEFAULT_BODY_TIMEOUT, image_size
from .service import DECODERS, NoPageModel, PageUploadResult, RecognitionService, RequestError
from .uploads import FormError, TooManyParts, parse_multipart

PAGE_FILE = "page.html"
#: The page talks only to this server: no CDN, no other origin, images shown from blob: URLs.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

_RECOGNIZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more images (png, jpg, tif, bmp; the type is read from the bytes).",
                        },
                        "decoder": {"type": "string", "enum": list(DECODERS), "default": "greedy"},
                        "beam_width": {"type": "integer", "minimum": 1, "default": DEFAULT_BEAM_WIDTH},
                        "compare": {
                            "type": "boolean",
                            "default": True,
                            "description": "With decoder=greedy, also run beam search to compare.",
                        },
                        "segment": {
                            "type": "boolean",
                            "default": False,
                            "description": (
                                "The images are pages: find their lines and read them with the page model; "
                                "each result has `lines` with htr-run --segment's jsonl fields (path, line, "
                                "bbox, polygon, baseline, text, confidence) in reading order."
                            ),
                        },
                    },
                }
            }
        },
    },
    "responses": {
        "400": {"description": "Not a multipart form, no files, or a bad option"},
        "408": {"description": "The request body did not arrive within the server's body timeout"},
        "409": {"description": "segment=true, but this server has no model that reads lines (--page-model)"},
        "413": {"description": "Request body, file count or pixels over the server's limits"},
    },
}


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413.

    Checks Content-Length up front and counts streamed bytes too (chunked uploads
    have no length), so an oversize body is never read into memory whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = DEFAULT_BODY_TIMEOUT):
        self.app, self.max_bytes, self.body_timeout = app, max_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                if not value.isdigit():
                    await _send_json(send, 400, {"error": "invalid Content-Length header"})
                    return
                if int(value) > self.max_bytes:
                    await _send_json(send, 413, _too_large(int(value), self.max_bytes))
                    return
        seen = 0
        started = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def counted_receive() -> Message:
            nonlocal seen
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise _BodyTimeout(seen) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(seen)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge as err:
            if not started:
                await _send_json(send, 413, _too_large(err.size, self.max_bytes, at_least=True))
        except _BodyTimeout as err:
            if not started:
                message = (
                    f"request body not received within {self.body_timeout:g} s ({err.size:,} bytes arrived); "
                    "closing the connection (--body-timeout)"
                )
                await _send_json(send, 408, {"error": message}, close=True)


class _BodyTimeout(Exception):
    def __init__(self, size: int):
        self.size = size


class _BodyTooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


def _too_large(size: int, limit: int, at_least: bool = False) -> dict[str, str]:
    more = "at least " if at_least else ""
    return {"error": f"request body is {more}{size:,} bytes; this server accepts at most {limit:,} (--max-bytes)"}


async def _send_json(send: Send, status: int, payload: dict, close: bool = False) -> None:
    response = JSONResponse(payload, status_code=status, headers={"Connection": "close"} if close else None)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


#: Training facts `/v1/model` may show: numbers, versions, names; never a path, a command
#: line or a data set location of the machine that trained or exported the model.
PUBLIC_SOURCE_KEYS = (
    "architecture", "epochs", "best_epoch", "val_cer", "val_loss", "train_samples", "val_samples",
    "batch_size", "keras", "backend", "mixed_precision", "train_images_per_s", "digit_fraction",
    "sha256", "format", "keras_version", "output_layer", "exported_with",
)


def public_model_info(info: dict[str, Any]) -> dict[str, Any]:
    """`model_info()` with htr.source cut down to PUBLIC_SOURCE_KEYS (no training paths)."""
    metadata = dict(info.get("metadata", {}))
    source = metadata.get("htr.source")
    if isinstance(source, dict):
        metadata["htr.source"] = {k: source[k] for k in PUBLIC_SOURCE_KEYS if k in source}
    return {**info, "metadata": metadata}


def create_app(service: RecognitionService, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The ASGI application serving `service` (one engine, shared by all requests).

    allowed_hosts: if given, requests whose Host header is none of these get 400
    (starlette's TrustedHostMiddleware; "*.example.org" patterns allowed), which
    defeats DNS rebinding against a server on a private address.
    """
    app = FastAPI(
        title="htr-serve",
        summary="Handwritten text recognition over an ONNX model",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    page = resources.files(__package__).joinpath(PAGE_FILE).read_text(encoding="utf-8")
    limits = service.limits

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/healthz", summary="Liveness: the model is loaded and the server answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": service.engine.path.name, "uptime_s": round(time.time() - service.started, 1)}

    @app.get("/v1/model", summary="The model's htr metadata, providers, decoders and limits")
    async def model() -> dict[str, Any]:
        return public_model_info(service.model_info())

    @app.post(
        "/v1/recognize",
        summary="Recognise one or more uploaded images",
        description=(
            "Multipart form with one or more `files` fields. Options may also be given as "
            "query parameters. Each file gets its own result: text, confidence, per-character "
            "confidences and the greedy vs beam (or lexicon) comparison, or a one-line `error` "
            "while the other files in the request still succeed. With `segment=true` the images "
            "are pages: each result lists its `lines` (polygon, baseline, box, text, confidence)."
        ),
        openapi_extra=_RECOGNIZE_BODY,
    )
    async def recognize(request: Request) -> Response:
        begun = time.perf_counter()
        try:
            body = await request.body()
        except ClientDisconnect:  # the client went away mid-upload: nothing to answer, nothing to log
            return Response(status_code=400)
        too_many = f"this server accepts at most {limits.max_files} files per request (--max-files)"
        try:
            form = parse_multipart(request.headers.get("content-type", ""), body, max_parts=limits.max_files + 16)
        except TooManyParts as err:
            return _error(413, f"{err}; {too_many}")
        except FormError as err:
            return _error(400, str(err))
        uploads = form.files.get("files", [])
        if not uploads:
            return _error(400, "no files: send one or more images as multipart 'files' fields")
        if len(uploads) > limits.max_files:
            return _error(413, f"{len(uploads)} files in one request; {too_many}")
        # Images over the per-image limits get their own error and are never decoded;
        # the others are decoded, so together they must fit the per-request budget.
        sizes = [s for s in (image_size(u.data) for u in uploads) if s is not None and limits.check_size(*s) is None]
        pixels = sum(w * h for w, h in sizes)
        if pixels > limits.max_request_pixels:
            return _error(
                413,
                f"the images of this request have {pixels:,} pixels together; this server accepts at most "
                f"{limits.max_request_pixels:,} per request (--max-request-pixels)",
            )
        options = {**request.query_params, **form.fields}
        try:
            decoder = options.get("decoder", "greedy") or "greedy"
            beam_width = _int_option(options, "beam_width", DEFAULT_BEAM_WIDTH)
            if _bool_option(options, "segment", False):
                pages = await run_in_threadpool(partial(service.read_pages, uploads, decoder=decoder, beam_width=beam_width))
                return _pages_response(service, pages, decoder, beam_width, begun)
            compare = _bool_option(options, "compare", True)
            results = await run_in_threadpool(
                partial(service.recognise, uploads, decoder=decoder, beam_width=beam_width, compare=compare)
            )
        except NoPageModel as err:
            return _error(409, str(err))
        except RequestError as err:
            return _error(400, str(err))
        return JSONResponse(
            {
                "model": service.engine.path.name,
                "decoder": decoder,
                "beam_width": beam_width,
                "count": len(results),
                "failed": sum(not r.ok for r in results),
                "time_ms": round((time.perf_counter() - begun) * 1000, 3),
                "results": [r.to_json() for r in results],
            }
        )

    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes, body_timeout=limits.body_timeout)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


def _pages_response(service: RecognitionService, pages: list[PageUploadResult], decoder: str, beam_width: int,
                    begun: float) -> JSONResponse:
    """The answer to segment=true: the page model, and per file its lines (or its error)."""
    engine = service.page_engine or service.engine  # read_pages refused a server without a page model
    return JSONResponse(
        {
            "model": engine.path.name,
            "segment": True,
            "decoder": decoder,
            "beam_width": beam_width,
            "count": len(pages),
            "failed": sum(not p.ok for p in pages),
            "lines": sum(len(p.page.lines) for p in pages if p.ok and p.page is not None),
            "time_ms": round((time.perf_counter() - begun) * 1000, 3),
            "results": [p.to_json() for p in pages],
        }
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int_option(options: dict[str, str], name: str, default: int) -> int:
    raw = options.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise RequestError(f"{name} must be an integer, got {raw!r}") from None


def _bool_option(options: dict[str, str], name: str, default: bool) -> bool:
    raw = options.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise RequestError(f"{name} must be true or false, got {raw!r}")
