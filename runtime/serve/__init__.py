"""`htr-serve`: an upload page and a JSON API over the same runtime (the `serve` extra).

    pip install 'htr[cpu,serve]'
    htr-serve --model word --port 8000      # then open http://127.0.0.1:8000/

Why FastAPI (on Starlette) with uvicorn rather than Flask, as the line-level seed used:
the API is described by type-checked parameters, so `/openapi.json` comes for free
and stays true; blocking inference is handed to a worker thread with
`anyio.to_thread`, so the event loop keeps answering `/healthz` and new uploads while a
batch runs; uvicorn is a single-process ASGI server that needs no WSGI container, which
fits "one process, one onnxruntime session". All three are maintained, pure-Python to
install, and stay out of the core runtime: only this package imports them.

Modules, one stage each:

- `limits`: `ServeLimits` (request, file and pixel limits) and reading image sizes
  from headers, so a decompression bomb is refused before it is decoded;
- `uploads`: multipart parsing entirely in memory (no temporary files);
- `service`: `RecognitionService`, the framework-free core: one `Engine`, decoders
  built once, a bounded number of inference calls at a time;
- `app`: the FastAPI application (routes, body-size guard, the page);
- `cli`: the `htr-serve` command.
"""

from __future__ import annotations

from .limits import ServeLimits

__all__ = ["ServeLimits"]
