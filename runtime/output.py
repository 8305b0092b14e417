"""Result writers (txt, tsv, csv, jsonl) and the stderr progress line."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import IO, Any

from .pipeline import Recognition

FORMATS = ("txt", "tsv", "jsonl", "csv")


def recognition_record(rec: Recognition) -> dict[str, Any]:
    """A JSON-ready dict: path, text, confidence, per-character confidences, n-best or error."""
    if not rec.ok or rec.decoded is None:
        return {"path": str(rec.path), "error": rec.error}
    d = rec.decoded
    record: dict[str, Any] = {
        "path": str(rec.path),
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
    where a record with an "error" field keeps the output complete.
    """

    def __init__(self, stream: IO[str], fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
        self.stream, self.fmt = stream, fmt
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if fmt == "tsv":
            stream.write("path\ttext\tconfidence\n")
        elif self._csv is not None:
            self._csv.writerow(["path", "text", "confidence"])

    def write(self, rec: Recognition) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(recognition_record(rec), ensure_ascii=False) + "\n")
        elif rec.ok:
            text, conf = rec.text, f"{rec.confidence:.4f}"
            if self.fmt == "txt":
                self.stream.write(f"{rec.path}\t{text}\n")
            elif self.fmt == "tsv":
                self.stream.write(f"{rec.path}\t{_tsv_field(text)}\t{conf}\n")
            else:
                assert self._csv is not None
                self._csv.writerow([str(rec.path), text, conf])
        self.stream.flush()


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
