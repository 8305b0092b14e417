"""`htr-export MODEL`: Keras model (.keras, .h5, legacy Keras-2 checkpoints) -> verified ONNX.

`-o OUT` is the model asked for: fp32, or with --fp16, --int8 or --lstm8 that variant
(checked against the fp32 export, which is written beside it as OUT.fp32.onnx only
with --keep-fp32).

Exit codes: 0 exported and verified; 1 exported but verification failed (ONNX differs
from Keras beyond tolerance, checker fails); 2 cannot export (bad file, charset that
does not fit, bad options).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from htr.runtime.cli_options import new_app, version_option

app = new_app(help=__doc__, no_args_is_help=True)


def _quiet_tensorflow() -> None:
    # Export always runs on the CPU: GPU kernels change LSTM numerics and grab memory.
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    # tf2onnx converts TensorFlow graphs: a model trained on any Keras backend is read here
    # with the TensorFlow one (.keras files are backend-neutral).
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


def _err(msg: str) -> None:
    typer.echo(f"htr-export: {msg}", err=True)


@app.command()
def main(
    model: Path = typer.Argument(..., help="Keras model: .keras, .h5/.hdf5 (Keras 3 or the notebook's Keras-2 checkpoints)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="ONNX file to write: the model asked for (default: MODEL with .onnx, or .fp16/.int8/.lstm8.onnx)"),
    charset: Optional[str] = typer.Option(None, "--charset", help="output characters in class order (string or file); default: sidecar JSON beside MODEL"),
    opset: int = typer.Option(13, "--opset", help="ONNX opset"),
    dynamic_width: bool = typer.Option(False, "--dynamic-width", help="export with a dynamic input width (if the graph allows)"),
    fp16: bool = typer.Option(False, "--fp16", help="write the float16 model (for GPUs)"),
    int8: bool = typer.Option(False, "--int8", help="write the int8 model (static QDQ convolutions + int8 LSTM weights, needs --calibrate)"),
    lstm8: bool = typer.Option(False, "--lstm8", help="write float32 with int8 LSTM weights (for CPUs; no calibration)"),
    keep_fp32: bool = typer.Option(False, "--keep-fp32", help="with --fp16/--int8/--lstm8: keep the fp32 model too, as OUT.fp32.onnx"),
    calibrate: Optional[list[Path]] = typer.Option(None, "--calibrate", help="folder of real images for int8 calibration"),
    check: Optional[list[Path]] = typer.Option(None, "--check", help="images or folders to verify parity on, besides random probes"),
    output_layer: Optional[str] = typer.Option(None, "--output-layer", help="layer whose output to export (default: last 3-D softmax)"),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="max |Keras - ONNX| allowed on probabilities"),
    width: Optional[int] = typer.Option(None, "--width", help="show the time steps for this input width"),
    version: bool = version_option(),
) -> None:
    """Export MODEL to ONNX with htr metadata, verify it against Keras and print a summary."""
    variants = [name for name, asked in (("fp16", fp16), ("int8", int8), ("lstm8", lstm8)) if asked]
    if len(variants) > 1:
        _err(f"error: --{' and --'.join(variants)}: one precision per export (-o names the model written); "
             "run htr-export once for each")
        raise typer.Exit(2)
    variant = variants[0] if variants else None
    if int8 and not calibrate:
        _err("--int8 needs --calibrate FOLDER (real images for static quantization)")
        raise typer.Exit(2)
    if keep_fp32 and variant is None:
        _err("error: --keep-fp32 is for --fp16, --int8 or --lstm8 (without them OUT is the fp32 model)")
        raise typer.Exit(2)
    _quiet_tensorflow()
    from htr.runtime.errors import HtrError

    from .errors import VerifyError

    out = output or model.with_suffix(f".{variant}.onnx" if variant else ".onnx")
    try:
        with tempfile.TemporaryDirectory(prefix="htr-export-", dir=out.parent if out.parent.is_dir() else None) as tmp:
            if variant is None:
                fp32 = out
            elif keep_fp32:
                fp32 = out.with_name(out.name.removesuffix(".onnx") + ".fp32.onnx")
            else:
                fp32 = Path(tmp) / "fp32.onnx"
            code = _export(model, fp32, out, variant, charset, opset, dynamic_width, calibrate, check,
                           output_layer, tolerance, width)
    except VerifyError as err:
        _err(str(err))
        raise typer.Exit(1)
    except HtrError as err:
        _err(str(err))
        raise typer.Exit(2)
    raise typer.Exit(code)


def _export(model: Path, fp32: Path, out: Path, variant: str | None, charset: str | None, opset: int,
            dynamic_width: bool, calibrate: list[Path] | None, check: list[Path] | None, output_layer: str | None,
            tolerance: float, width: int | None) -> int:
    """Export to `fp32` and verify it against Keras; then, for a `variant`, write it to `out`."""
    from . import convert, keras_model, quantize, verify

    warn = lambda m: _err(f"warning: {m}")  # noqa: E731
    loaded = keras_model.load(model, output_layer=output_layer, dynamic_width=dynamic_width)
    for note in loaded.notes:
        typer.echo(f"note: {note}", err=True)
    path, spec = convert.export(loaded, fp32, charset=charset, opset=opset, warn=warn)
    results = verify.verify_export(path, loaded.model, spec, [str(c) for c in check] if check else None, tolerance)
    _summary(path, loaded, spec, width, kept=variant is None or path.parent == out.parent)
    for r in results:
        typer.echo(f"  parity     {r.line()}")
    if variant is None:
        return 0
    check_batches: list[Any] = []
    if check:
        check_batches, _ = verify.image_pixels(spec, verify.image_files([str(c) for c in check]))
    if variant == "fp16":
        v = quantize.to_fp16(path, out, spec, check_batches)
    elif variant == "int8":
        v = quantize.to_int8(path, out, spec, [str(c) for c in calibrate or []], check_batches)
    else:
        v = quantize.to_lstm8(path, out, spec, check_batches)
    typer.echo(f"wrote {v.line()}")
    return 0


def _summary(path: Path, loaded: Any, spec: Any, width: int | None, kept: bool = True) -> None:
    from .verify import session

    sess = session(path)
    fmt = lambda xs: ", ".join(f"{x.name} {x.type} {list(x.shape)}" for x in xs)  # noqa: E731
    what = f"wrote {path}" if kept else "exported fp32 (not kept)"
    typer.echo(f"{what} ({path.stat().st_size / 1e6:.2f} MB) from {loaded.path.name} ({loaded.kind})")
    typer.echo(f"  inputs     {fmt(sess.get_inputs())}")
    typer.echo(f"  outputs    {fmt(sess.get_outputs())}  [layer {loaded.output_layer}]")
    typer.echo(f"  parameters {loaded.count_params():,}")
    cs = "".join(spec.charset)
    typer.echo(f"  charset    {len(spec.charset)} characters + blank at {spec.blank}: {cs[:60]}{'...' if len(cs) > 60 else ''}")
    typer.echo(f"  input      height {spec.input.height}, width {spec.input.width or 'dynamic'}, "
               f"preprocess {spec.preprocess.resize}"
               + ("" if spec.preprocess.background == "none" else f", background {spec.preprocess.background}"))
    if spec.time_steps is not None:
        widths = [width] if width else ([spec.input.width] if spec.input.width else [128, 256, 800])
        steps = ", ".join(f"{w} px -> {spec.time_steps.for_width(w)}" for w in widths)
        typer.echo(f"  time steps T = W // {spec.time_steps.stride} {spec.time_steps.offset:+d}: {steps}")
    src = spec.source
    typer.echo(f"  source     {src.get('file')} sha256 {str(src.get('sha256'))[:16]}..., Keras {src.get('keras_version')}, "
               f"charset from {src.get('charset_from')}")


if __name__ == "__main__":  # pragma: no cover
    app()
