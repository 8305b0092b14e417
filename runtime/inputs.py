"""Input paths from users: only regular files are read, and nothing here ever blocks.

A FIFO, a character device (`/dev/zero`), a folder named `x.png`, a dangling symbolic
link or a loop of them is refused with one line naming it, whether it was named on the
command line or found inside a folder. Files are opened with `O_NONBLOCK` (opening a FIFO
without a writer would otherwise wait forever) and checked with `fstat` on the open
descriptor, so a file swapped for a FIFO between the check and the read is still refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .constants import MAX_FILE_BYTES
from .errors import HtrError, ImageError

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def path_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as an image file (one phrase), or None for a regular file.

    Never blocks: only `stat`/`lstat` are called.
    """
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop, expected an image file"
        if err.errno == errno.ENOENT and os.path.lexists(path):
            return f"is a dangling symbolic link (to {os.readlink(path)!r}), expected an image file"
        if err.errno == errno.ENOENT:
            return "no such file or folder"
        return f"cannot read file ({err.strerror or err})"
    if not stat.S_ISREG(st.st_mode):
        return f"is {_kind(st.st_mode)}, expected an image file"
    return None


def read_regular_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES, error: type[HtrError] = ImageError) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; `error(path, ...)` for anything else.

    Refuses FIFOs, devices and folders without blocking or reading them, and files over
    the size limit before reading them (a file that grows while read is cut at the limit
    and refused too).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        problem = path_problem(path)
        raise error(path, problem or f"cannot read file ({err.strerror or err})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(path, f"is {_kind(st.st_mode)}, expected an image file")
        if st.st_size > max_bytes:
            raise error(path, f"is {st.st_size:,} bytes, expected at most {max_bytes:,} (HTR_MAX_FILE_MB)")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise error(path, f"grew past {max_bytes:,} bytes while read, expected at most {max_bytes:,}")
        return b"".join(chunks)
    except OSError as err:
        raise error(path, f"cannot read file ({err.strerror or err})") from None
    finally:
        os.close(fd)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def output_problem(output: str | Path, inputs: list[Path]) -> str | None:
    """Why results must not be written to `output`, or None.

    Outputs are never written over an input: an output that is one of the input files (or
    a link to one) is refused before anything is opened.
    """
    for path in inputs:
        if same_file(output, path):
            return f"is an input ({path}); results are never written over an input, choose another --output"
    if os.path.isdir(output):
        return "is a folder, expected a file to write results to"
    return None
