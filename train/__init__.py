"""htr.train: see the package docstring of `htr`."""

from __future__ import annotations

if __name__ != "htr.train":  # e.g. `import train` from the repository root
    raise ImportError(
        f"the folder train/ is the package htr.train: import htr.train, not {__name__} "
        "(a second copy of every module, with its own exception classes, would load)"
    )
