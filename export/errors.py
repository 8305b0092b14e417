"""Export errors: one line naming the file, like every htr error."""

from __future__ import annotations

from htr.runtime.errors import HtrError


class ExportError(HtrError):
    """The model file cannot be exported as asked (exit code 2)."""


class VerifyError(HtrError):
    """The exported model does not match Keras within tolerance (exit code 1)."""
