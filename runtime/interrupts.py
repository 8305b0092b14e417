"""Ctrl-C while a command is still starting: one honest line and exit 130.

Importing NumPy, OpenCV and onnxruntime takes a moment; a KeyboardInterrupt raised
inside an extension module's import surfaces as an ImportError ("onnxruntime is not
installed") or as an import traceback. Until the command starts reading images, SIGINT
therefore ends the process at once with one line: nothing has been read or written yet,
so nothing is lost. `end_startup()` restores Python's KeyboardInterrupt for the main
loop, which reports how many results were written before the interrupt.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

_prog = "htr"


def _on_startup_interrupt(signum: int, frame: Any) -> None:
    os.write(2, f"\n{_prog}: interrupted while starting; nothing was read or written\n".encode())
    os._exit(130)


def guard_startup(prog: str) -> None:
    """From now until `end_startup()`, SIGINT prints one line and exits 130."""
    global _prog
    _prog = prog
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_startup_interrupt)


def end_startup() -> None:
    """SIGINT raises KeyboardInterrupt again (Python's default)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def htr_run() -> None:
    """The `htr-run` console script."""
    guard_startup("htr-run")
    from .cli import run_app

    run_app(prog_name="htr-run")


def htr_eval() -> None:
    """The `htr-eval` console script."""
    guard_startup("htr-eval")
    from .cli import eval_app

    eval_app(prog_name="htr-eval")
