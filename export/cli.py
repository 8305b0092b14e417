"""`htr-export MODEL`: Keras model (.keras, .h5, legacy Keras-2 checkpoints) -> verified ONNX.

Exit codes: 0 exported and verified; 1 exported but verification failed (ONNX differs
from Keras beyond tolerance, checker fails); 2 cannot export (bad file, charset that
does not fit, bad options).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)


def _quiet_tensorflow() -> None:
    # Export always runs on the CPU: GPU kernels change LSTM numerics and grab memory.
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


def _err(msg: str) -> None:
    typer.echo(f"htr-export: {msg}", err=True)


@app.command()
def main(
    model: Path = typer.Argument(..., help="Keras model: .keras, .h5/.hdf5 (Keras 3 or the notebook's Keras-2 checkpoints)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="ONNX file to write (default: MODEL with .onnx)"),
    charset: Optional[str] = typer.Option(None, "--charset", help="output characters in class order (string or file); default: sidecar JSON beside MODEL"),
    opset: int = typer.Option(13, "--opset", help="ONNX opset"),
    dynamic_width: bool = typer.Option(False, "--dynamic-width", help="export with a dynamic input width (if the graph allows)"),
    fp16: bool = typer.Option(False, "--fp16", help="also write OUT.fp16.onnx (for GPUs)"),
    int8: bool = typer.Option(False, "--int8", help="also write OUT.int8.onnx (static QDQ convolutions + int8 LSTM weights, needs --calibrate)"),
    lstm8: bool = typer.Option(False, "--lstm8", help="also write OUT.lstm8.onnx (float32 with int8 LSTM weights, for CPUs; no calibration)"),
    calibrate: Optional[List[Path]] = typer.Option(None, "--calibrate", help="folder of real images for int8 calibration"),
    check: Optional[List[Path]] = typer.Option(None, "--check", help="images or folders to verify parity on, besides random probes"),
    output_layer: Optional[str] = typer.Option(None, "--output-layer", help="layer whose output to export (default: last 3-D softmax)"),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="max |Keras - ONNX| allowed on probabilities"),
    width: Optional[int] = typer.Option(None, "--width", help="show the time steps for this input width"),
) -> None:
    """Export MODEL to ONNX with htr metadata, verify it against Keras and print a summary."""
    if int8 and not calibrate:
        _err("--int8 needs --calibrate FOLDER (real images for static quantization)")
        raise typer.Exit(2)
    _quiet_tensorflow()
    from htr.runtime.errors import HtrError

    from .errors import VerifyError

    out = output or model.with_suffix(".onnx")
    try:
        code = _export(model, out, charset, opset, dynamic_width, fp16, int8, lstm8, calibrate, check,
                       output_layer, tolerance, width)
    except VerifyError as err:
        _err(str(err))
        raise typer.Exit(1)
    except HtrError as err:
        _err(str(err))
        raise typer.Exit(2)
    raise typer.Exit(code)


def _export(model, out, charset, opset, dynamic_width, fp16, int8, lstm8, calibrate, check, output_layer, tolerance,
            width) -> int:
    from . import convert, keras_model, quantize, verify

    warn = lambda m: _err(f"warning: {m}")  # noqa: E731
    loaded = keras_model.load(model, output_layer=output_layer, dynamic_width=dynamic_width)
    for note in loaded.notes:
        typer.echo(f"note: {note}", err=True)
    path, spec = convert.export(loaded, out, charset=charset, opset=opset, warn=warn)
    results = verify.verify_export(path, loaded.model, spec, [str(c) for c in check] if check else None, tolerance)
    _summary(path, loaded, spec, width)
    for r in results:
        typer.echo(f"  parity     {r.line()}")
    check_batches: list = []
    if check and (fp16 or int8 or lstm8):
        check_batches, _ = verify.image_pixels(spec, verify.image_files([str(c) for c in check]))
    if fp16:
        v = quantize.to_fp16(path, path.with_suffix(".fp16.onnx"), spec, check_batches)
        typer.echo(f"  {v.line()}")
    if int8:
        v = quantize.to_int8(path, path.with_suffix(".int8.onnx"), spec, [str(c) for c in calibrate], check_batches)
        typer.echo(f"  {v.line()}")
    if lstm8:
        v = quantize.to_lstm8(path, path.with_suffix(".lstm8.onnx"), spec, check_batches)
        typer.echo(f"  {v.line()}")
    return 0


def _summary(path: Path, loaded, spec, width: int | None) -> None:
    from .verify import session

    sess = session(path)
    fmt = lambda xs: ", ".join(f"{x.name} {x.type} {list(x.shape)}" for x in xs)  # noqa: E731
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) from {loaded.path.name} ({loaded.kind})")
    typer.echo(f"  inputs     {fmt(sess.get_inputs())}")
    typer.echo(f"  outputs    {fmt(sess.get_outputs())}  [layer {loaded.output_layer}]")
    typer.echo(f"  parameters {loaded.count_params():,}")
    cs = "".join(spec.charset)
    typer.echo(f"  charset    {len(spec.charset)} characters + blank at {spec.blank}: {cs[:60]}{'...' if len(cs) > 60 else ''}")
    typer.echo(f"  input      height {spec.input.height}, width {spec.input.width or 'dynamic'}, "
               f"preprocess {spec.preprocess.resize}")
    if spec.time_steps is not None:
        widths = [width] if width else ([spec.input.width] if spec.input.width else [128, 256, 800])
        steps = ", ".join(f"{w} px -> {spec.time_steps.for_width(w)}" for w in widths)
        typer.echo(f"  time steps T = W // {spec.time_steps.stride} {spec.time_steps.offset:+d}: {steps}")
    src = spec.source
    typer.echo(f"  source     {src.get('file')} sha256 {str(src.get('sha256'))[:16]}..., Keras {src.get('keras_version')}, "
               f"charset from {src.get('charset_from')}")


if __name__ == "__main__":  # pragma: no cover
    app()
