"""Multipart form parsing entirely in memory.

Starlette's own form parser spools uploads over 1 MiB to temporary files; here every
byte stays in memory (the body is already capped by `ServeLimits.max_bytes`), so
nothing from a request ever touches the file system, and a client's file name is
only ever echoed back as a label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header


class FormError(ValueError):
    """The request body is not a well-formed multipart form."""


class TooManyParts(FormError):
    """The form has more parts than allowed (the server answers 413, not 400)."""


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave it (a label only) and its bytes."""

    filename: str
    data: bytes


@dataclass
class Form:
    """A parsed form: `files` in the order sent, and the text fields (last value wins)."""

    files: dict[str, list[Upload]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


def parse_multipart(content_type: str, body: bytes, max_parts: int = 1000) -> Form:
    """Parse a multipart/form-data body held in memory.

    Raises `FormError` for another content type, a missing boundary, a malformed
    body or more than `max_parts` parts.
    """
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise FormError(f"expected a multipart/form-data body, got {kind.decode('latin-1') or 'none'}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError("multipart/form-data body without a boundary")

    form = Form()
    state: dict = {"headers": {}, "field": b"", "value": b"", "chunks": [], "parts": 0}

    def on_part_begin() -> None:
        state["parts"] += 1
        if state["parts"] > max_parts:
            raise TooManyParts(f"more than {max_parts} form parts")
        state["headers"], state["chunks"] = {}, []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["chunks"].append(data[start:end])

    def on_part_end() -> None:
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        data = b"".join(state["chunks"])
        if b"filename" in options:
            filename = options[b"filename"].decode("utf-8", "replace")
            form.files.setdefault(name, []).append(Upload(filename, data))
        else:
            form.fields[name] = data.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except FormError:
        raise
    except Exception as err:  # python-multipart raises its own error types
        raise FormError(f"malformed multipart body ({err})") from None
    return form
