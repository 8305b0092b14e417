"""The FastAPI application: `/` (the page), `/v1/recognize`, `/v1/model`, `/healthz`.

Routes stay thin: check limits, parse, hand the work to `RecognitionService` in a
worker thread (never on the event loop), return JSON. OpenAPI is at `/openapi.json`.
FastAPI's `/docs` and `/redoc` pages are switched off: they load Swagger UI from a CDN,
and nothing here may assume the user's box can reach the internet.
"""

from __future__ import annotations

import time
from functools import partial
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..constants import DEFAULT_BEAM_WIDTH
from .service import DECODERS, RecognitionService, RequestError
from .uploads import FormError, parse_multipart

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
                    },
                }
            }
        },
    },
    "responses": {
        "400": {"description": "Not a multipart form, no files, or a bad option"},
        "413": {"description": "Request body or file count over the server's limits"},
    },
}


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413.

    Checks Content-Length up front and counts streamed bytes too (chunked uploads
    have no length), so an oversize body is never read into memory whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

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

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
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


class _BodyTooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


def _too_large(size: int, limit: int, at_least: bool = False) -> dict[str, str]:
    more = "at least " if at_least else ""
    return {"error": f"request body is {more}{size:,} bytes; this server accepts at most {limit:,} (--max-bytes)"}


async def _send_json(send: Send, status: int, payload: dict) -> None:
    response = JSONResponse(payload, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def create_app(service: RecognitionService) -> FastAPI:
    """The ASGI application serving `service` (one engine, shared by all requests)."""
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
        return service.model_info()

    @app.post(
        "/v1/recognize",
        summary="Recognise one or more uploaded images",
        description=(
            "Multipart form with one or more `files` fields. Options may also be given as "
            "query parameters. Each file gets its own result: text, confidence, per-character "
            "confidences and the greedy vs beam (or lexicon) comparison, or a one-line `error` "
            "while the other files in the request still succeed."
        ),
        openapi_extra=_RECOGNIZE_BODY,
    )
    async def recognize(request: Request) -> JSONResponse:
        begun = time.perf_counter()
        body = await request.body()
        try:
            form = parse_multipart(request.headers.get("content-type", ""), body, max_parts=limits.max_files + 16)
        except FormError as err:
            return _error(400, str(err))
        uploads = form.files.get("files", [])
        if not uploads:
            return _error(400, "no files: send one or more images as multipart 'files' fields")
        if len(uploads) > limits.max_files:
            return _error(413, f"{len(uploads)} files in one request; this server accepts at most {limits.max_files} (--max-files)")
        options = {**request.query_params, **form.fields}
        try:
            decoder = options.get("decoder", "greedy") or "greedy"
            beam_width = _int_option(options, "beam_width", DEFAULT_BEAM_WIDTH)
            compare = _bool_option(options, "compare", True)
            results = await run_in_threadpool(
                partial(service.recognise, uploads, decoder=decoder, beam_width=beam_width, compare=compare)
            )
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

    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    return app


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
