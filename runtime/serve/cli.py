"""`htr-serve`: parse options, load one model, serve it with uvicorn.

Exit codes: 0 stopped cleanly, 2 usage error (bad option, model that cannot be
loaded, FastAPI/uvicorn not installed).
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from ..cli_options import BatchOpt, ModelOpt, Provider, ProviderOpt, ThreadsOpt, fail, new_app, version_option
from ..constants import DEFAULT_BATCH_SIZE
from .limits import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_REQUEST_PIXELS,
)

app = new_app()


class LogLevel(str, Enum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def _fail(message: str) -> typer.Exit:
    return fail("htr-serve", message)


@app.command(help="Serve a model: an upload page at / and a JSON API at /v1/recognize (OpenAPI at /openapi.json).")
def serve(
    model: ModelOpt = None,
    provider: ProviderOpt = Provider.cpu,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 exposes the server to the network)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
    max_bytes: int = typer.Option(DEFAULT_MAX_BYTES, "--max-bytes", min=1, help="Largest request body in bytes (413 above)."),
    max_files: int = typer.Option(DEFAULT_MAX_FILES, "--max-files", min=1, help="Most images in one request."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Largest image, width x height."),
    max_request_pixels: int = typer.Option(DEFAULT_MAX_REQUEST_PIXELS, "--max-request-pixels", min=1, help="Pixels of all images of one request together (413 above)."),
    body_timeout: float = typer.Option(DEFAULT_BODY_TIMEOUT, "--body-timeout", min=0.001, help="Seconds a request body may take to arrive (408 and the connection closed after)."),
    allowed_host: Optional[List[str]] = typer.Option(None, "--allowed-host", help="Accept only requests whose Host header is this (repeatable; '*.example.org' patterns). Default: any."),
    max_concurrent: int = typer.Option(DEFAULT_MAX_CONCURRENT, "--max-concurrent", min=1, help="Requests running inference at once; others queue."),
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    threads: ThreadsOpt = None,
    lexicon: Optional[Path] = typer.Option(None, "--lexicon", help="Lexicon for decoder=lexicon (default: the English word list)."),
    page_model: str = typer.Option("auto", "--page-model", help="Model that reads the lines of pages (segment=true): auto = the served model if it reads lines (a space in its charset), else the bundled line model; a bundled name or PATH.onnx; none = no pages (409)."),
    log_level: LogLevel = typer.Option(LogLevel.info, "--log-level", help="uvicorn log level."),
    version: bool = version_option(),
) -> None:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as err:
        raise _fail(f"{err.name or err} is not installed: pip install 'htr[serve]'")
    from ..engine import Engine
    from ..errors import HtrError
    from ..models import resolve_model
    from .limits import ServeLimits
    from .service import RecognitionService, page_engine_for

    try:
        limits = ServeLimits(
            max_bytes=max_bytes, max_files=max_files, max_pixels=max_pixels, max_concurrent=max_concurrent,
            max_request_pixels=max_request_pixels, body_timeout=body_timeout,
        )
        engine = Engine(resolve_model(model, provider.value), provider=provider.value, threads=threads)
        page_engine = page_engine_for(engine, page_model, provider=provider.value, threads=threads)
    except (HtrError, ValueError) as err:
        raise _fail(str(err))
    service = RecognitionService(engine, limits, batch_size=batch_size, lexicon=lexicon, page_engine=page_engine)
    pages = f"pages read by {page_engine.path.name}" if page_engine else "no page model (segment=true: 409)"
    sys.stderr.write(f"htr-serve: {engine.path.name} on {engine.providers[0]}, {pages}; open http://{host}:{port}/\n")
    uvicorn.run(create_app(service, allowed_hosts=allowed_host), host=host, port=port, log_level=log_level.value)


if __name__ == "__main__":
    app()
