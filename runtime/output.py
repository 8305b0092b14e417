"""Result writers (txt, tsv, csv, jsonl) and the stderr progress line.

File names are kept byte-exact in every format. txt and tsv escape a backslash, tab,
newline and carriage return in a path as `\\`, `\t`, `\n`, `\r` (so one result is one
line); csv quotes any field holding a comma, quote, CR or LF (RFC 4180); bytes of a
name that are not UTF-8 are written as they are (txt, tsv, csv: the stream uses
`surrogateescape`). jsonl is always valid UTF-8: such a name's `path` shows U+FFFD for
the undecodable bytes, and `path_bytes` holds the exact bytes in base64.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from .errors import HtrError
from .inputs import output_problem
from .pipeline import Recognition


class OutputError(HtrError):
    """Results cannot be written where they were asked for (disk full, an input, a folder)."""


def open_output(output: str | Path | None, inputs: list[Path]) -> IO[str]:
    """The stream results go to: stdout, or the file `output`, which must not be an input.

    Raises `OutputError` (one line) before anything is truncated.
    """
    if output is None:
        return sys.stdout
    problem = output_problem(output, inputs)
    if problem:
        raise OutputError(output, problem)
    try:
        return open(output, "w", encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as err:
        raise OutputError(output, f"cannot write ({err.strerror or err})") from None


def report_problem(path: str | Path) -> str | None:
    """Why a report could not be written to `path` (checked before the work starts), or None."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        return "is a folder, expected a file to write the report to"
    if not folder.is_dir():
        return f"cannot write: folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "cannot write: permission denied"
    return None


def _utf8(text: str) -> str:
    """`text` with the undecodable bytes of a file name (lone surrogates) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _path_fields(path: Path | str) -> dict[str, str]:
    name = str(path)
    clean = _utf8(name)
    if clean == name:
        return {"path": name}
    return {"path": clean, "path_bytes": base64.b64encode(os.fsencode(name)).decode("ascii")}


_LINE_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape_path(path: Path | str) -> str:
    """A path as one txt/tsv field: backslash, tab, newline and CR escaped."""
    return str(path).translate(_LINE_ESCAPES)


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value

FORMATS = ("txt", "tsv", "jsonl", "csv")


def recognition_record(rec: Recognition) -> dict[str, Any]:
    """A JSON-ready dict: path, text, confidence, per-character confidences, n-best or error."""
    if not rec.ok or rec.decoded is None:
        return {**_path_fields(rec.path), "error": _utf8(rec.error or "")}
    d = rec.decoded
    record: dict[str, Any] = {
        **_path_fields(rec.path),
        "text": d.text,
        "confidence": round(float(d.confidence), 6),
        "char_confidences": [round(float(c), 4) for c in d.char_confidences],
        "time_steps": [int(t) for t in d.time_steps],
        "log_prob": round(float(d.log_prob), 6),
    }
    if d.nbest:
        record["nbest"] = [
            {"text": n.text, "confidence": round(float(n.confidence), 6), "log_prob": round(float(n.log_prob), 6)}
            for n in d.nbest
        ]
    return record


class ResultWriter:
    """Writes one result at a time to `stream` and flushes, so output appears as it is ready.

    Failed images are not written here (they go to stderr as errors), except in jsonl,
    where a record with an "error" field keeps the output complete. A write that fails
    (disk full, closed pipe) raises `OutputError`, one line naming the destination.
    """

    def __init__(self, stream: IO[str], fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
        self.stream, self.fmt = stream, fmt
        self.name = "stdout" if stream is sys.stdout else getattr(stream, "name", "output")
        self.failed = False
        if fmt != "jsonl" and hasattr(stream, "reconfigure") and getattr(stream, "errors", "") != "surrogateescape":
            stream.reconfigure(errors="surrogateescape")  # a file name's non-UTF-8 bytes, as they are
        if fmt == "tsv":
            self._put("path\ttext\tconfidence\n")
        elif fmt == "csv":
            self._put("path,text,confidence\n")

    def write(self, rec: Recognition) -> None:
        if self.fmt == "jsonl":
            self._put(json.dumps(recognition_record(rec), ensure_ascii=False) + "\n")
        elif rec.ok:
            text, conf = rec.text, f"{rec.confidence:.4f}"
            if self.fmt == "txt":
                self._put(f"{escape_path(rec.path)}\t{text}\n")
            elif self.fmt == "tsv":
                self._put(f"{escape_path(rec.path)}\t{_tsv_field(text)}\t{conf}\n")
            else:
                self._put(",".join(_csv_field(v) for v in (str(rec.path), text, conf)) + "\n")

    def _put(self, line: str) -> None:
        try:
            self.stream.write(line)
            self.stream.flush()
        except OSError as err:
            self.failed = True
            if self.stream is sys.stdout:
                # Python flushes stdout again at exit; send what is left to /dev/null
                # (the documented idiom for a closed pipe) so that fails no second time.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            raise OutputError(self.name, f"cannot write results ({err.strerror or err})") from None

    def close(self) -> None:
        """Close the stream unless it is stdout (a failed stream is closed without a word)."""
        if self.stream is sys.stdout:
            return
        try:
            self.stream.close()
        except OSError as err:
            if not self.failed:
                raise OutputError(self.name, f"cannot write results ({err.strerror or err})") from None


def _tsv_field(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


class Progress:
    """A one-line progress display on stderr, shown only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool | None = None, label: str = "images"):
        self.total, self.label = total, label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            rate = self.done / max(now - self.start, 1e-9)
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {self.label} {rate:7.1f}/s")
            sys.stderr.flush()

    def close(self) -> float:
        """Clear the line; returns the elapsed seconds."""
        if self.enabled:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()
        return time.perf_counter() - self.start
