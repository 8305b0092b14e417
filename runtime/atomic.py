"""Writes that a kill at any moment cannot half-do: the old file or the new one, never a mix.

Every write that matters (checkpoints, models, metadata, reports, histories) goes to a
temporary file in the same folder (so the rename cannot cross file systems), is flushed
and fsync'ed, then renamed over the target with `os.replace`, and the folder is fsync'ed
so the rename itself survives a power cut.

The temporary name is the target's name behind a fixed prefix (`.partial-model.keras`):
it keeps the target's suffix, which Keras' savers insist on (`.keras`, `.h5`,
`.weights.h5`), and it is predictable, so a leftover from a killed run is overwritten by
the next one instead of piling up.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Iterator

#: Prefix of the temporary file a write goes to before it is renamed over the target.
PARTIAL_PREFIX = ".partial-"


def partial_path(path: str | Path) -> Path:
    """The temporary path that a write of `path` goes to first (same folder, same suffix)."""
    path = Path(path)
    return path.with_name(PARTIAL_PREFIX + path.name)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # some platforms cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path` through; on success it replaces `path`.

    For writers that take a path, not a stream (Keras `model.save`, `save_weights`,
    matplotlib `savefig`). If the body raises, the temporary file is removed and `path`
    is left as it was.
    """
    path = Path(path)
    tmp = partial_path(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on a clean exit it is flushed, fsync'ed and renamed over `path`."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically."""
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
