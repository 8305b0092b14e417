"""`Engine`: the one object that owns an onnxruntime `InferenceSession` and its `ModelSpec`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, ProviderError
from .metadata import ModelSpec

#: --provider name -> onnxruntime providers, in priority order.
PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            None,
            "onnxruntime is not installed: pip install 'htr[cpu]' (or 'htr[gpu]' for CUDA; never both)",
        ) from None
    return onnxruntime


#: Batches in flight when `Engine(streams=None)` runs on the CPU provider.
AUTO_STREAMS = 2


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _auto_streams(provider: str, threads: int | None) -> int:
    if provider != "cpu":
        return 1  # one session on one GPU: concurrent runs would only queue
    return AUTO_STREAMS if (threads or available_cores()) >= AUTO_STREAMS else 1


class Engine:
    """A loaded model: `run(batch)` maps (B, H, W, 1) float32 to (B, T, C) probabilities.

    provider: "cpu", "cuda" or "tensorrt". CUDA/TensorRT are checked after the session
        is created: if onnxruntime fell back to the CPU, `ProviderError` is raised rather
        than running slowly without saying so.
    threads: CPU threads for the model (None: onnxruntime's default, one per physical core,
        with one stream; with several, the logical CPUs this process may use). With
        several streams they are shared out: each stream gets threads // streams.
    streams: how many batches the model runs at once; a `Recognizer` keeps this many in
        flight. 1: one batch at a time on all the threads. None: AUTO_STREAMS on the CPU
        provider when there are at least two threads (each batch on its share of them),
        else 1 (benchmarks/bench_runtime.py measures the choice).
    spin: let onnxruntime's idle intra-op threads busy-wait for work (its default).
    session_options: an onnxruntime `SessionOptions`, used as given and never changed:
        its threads, spinning and log level are then the caller's (so `threads` and
        `spin=False` cannot be combined with it). Default: a fresh one set up as above.
    provider_options: passed straight to onnxruntime.
    """

    def __init__(
        self,
        model_path: str | Path,
        provider: str = "cpu",
        threads: int | None = None,
        session_options: Any = None,
        provider_options: Sequence[dict[str, Any]] | None = None,
        spin: bool = True,
        streams: int | None = 1,
    ):
        ort = _import_onnxruntime()
        self.path = Path(model_path)
        if provider not in PROVIDERS:
            raise ProviderError(None, f"unknown provider {provider!r} (expected one of {', '.join(PROVIDERS)})")
        self.provider = provider
        if not self.path.is_file():
            raise ModelError(self.path, "no such model file (expected an .onnx file exported by htr-export)")
        wanted = PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise ProviderError(
                self.path,
                f"--provider {provider} needs onnxruntime's {wanted[0]}, but this onnxruntime offers only "
                f"{', '.join(available)} (install 'htr[gpu]' and the CUDA libraries)",
            )
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.streams = streams if streams is not None else _auto_streams(provider, threads)
        if self.streams < 1:
            raise ValueError(f"streams must be at least 1, got {self.streams}")
        if session_options is not None:
            if threads is not None or not spin:
                raise ValueError("threads and spin are set in session_options when it is given")
            options = session_options
        else:
            options = ort.SessionOptions()
            if threads is not None or self.streams > 1:
                total = threads if threads is not None else available_cores()
                options.intra_op_num_threads = max(1, total // self.streams)
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            if not os.environ.get("HTR_ORT_VERBOSE"):
                options.log_severity_level = 3  # errors only; onnxruntime warns a lot by default
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=wanted, provider_options=provider_options
            )
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(self.path, f"is not a loadable ONNX model ({first[:200]})") from None
        active = self.session.get_providers()
        if active[0] != wanted[0]:
            raise ProviderError(
                self.path,
                f"--provider {provider} asked for {wanted[0]} but onnxruntime is running on {active[0]} "
                "(is CUDA/cuDNN installed and visible?); refusing to fall back silently",
            )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = ModelSpec.from_props(meta, self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(self.path, f"has {len(inputs)} inputs ({names}); expected one image input")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self._check_shapes(inputs[0].shape, outputs[0].shape)

    def _check_shapes(self, in_shape: list[int | str | None], out_shape: list[int | str | None]) -> None:
        if len(in_shape) != 4:
            raise ModelError(self.path, f"input has shape {in_shape}; expected (batch, height, width, 1)")
        h, w = in_shape[1], in_shape[2]
        spec_in = self.spec.input
        if isinstance(h, int) and h != spec_in.height:
            raise ModelError(self.path, f"input height is {h} but htr.input says {spec_in.height}")
        if isinstance(w, int) and spec_in.width is not None and w != spec_in.width:
            raise ModelError(self.path, f"input width is {w} but htr.input says {spec_in.width}")
        if isinstance(w, int) and spec_in.width is None:
            raise ModelError(self.path, f"input width is fixed at {w} but htr.input says dynamic (null)")
        if len(out_shape) != 3:
            raise ModelError(self.path, f"output has shape {out_shape}; expected (batch, steps, classes)")
        if isinstance(out_shape[2], int):
            self.spec.check_num_classes(out_shape[2], self.path)

    @property
    def providers(self) -> list[str]:
        """The providers onnxruntime actually uses, first one active."""
        providers: list[str] = self.session.get_providers()
        return providers

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model on a (B, H, W, 1) float32 batch; returns (B, T, C) float32 probabilities.

        Any failure of onnxruntime (out of memory, a kernel error) is raised as a
        `ModelError` naming the model and the batch's shape."""
        try:
            probs: np.ndarray = self.session.run([self.output_name], {self.input_name: pixels})[0]
        except Exception as err:  # onnxruntime raises its own exception types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(self.path, f"inference failed on a batch of shape {tuple(pixels.shape)} ({first[:200]})") from None
        if probs.ndim != 3:
            raise ModelError(self.path, f"output has {probs.ndim} dimensions; expected (batch, steps, classes)")
        self.spec.check_num_classes(probs.shape[2], self.path)
        return probs
