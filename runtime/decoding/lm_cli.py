"""`htr-lm TEXT -o lm.json[.gz]`: train a character language model for beam search."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from ..cli_options import new_app, version_option
from .constants import DEFAULT_LM_ORDER

app = new_app(help=__doc__, no_args_is_help=True)


@app.command()
def main(
    text: list[Path] = typer.Argument(..., help="Text files to learn from (UTF-8, one line of text per line)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the model (JSON; gzipped if the name ends in .gz)."),
    order: int = typer.Option(DEFAULT_LM_ORDER, "--order", min=1, max=10, help="n-gram order in characters."),
    min_count: int = typer.Option(1, "--min-count", min=1, help="Drop contexts seen fewer times (smaller, faster to load)."),
    weight: Optional[float] = typer.Option(
        None, "--weight", min=0.0,
        help="Weight decoders use with this LM unless --lm-weight says otherwise (choose it on held-out data).",
    ),
    version: bool = version_option(),
) -> None:
    """Train a character n-gram model (Witten-Bell smoothing) from TEXT files."""
    from .lm import CharLM

    lines: list[str] = []
    for path in text:
        try:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as err:
            typer.echo(f"htr-lm: {path}: cannot read ({err})", err=True)
            raise typer.Exit(2) from None
    try:
        model = CharLM.train(lines, order=order, min_count=min_count)
        model.weight = weight
        args = [str(p) for p in text] + ["-o", str(output), "--order", str(order), "--min-count", str(min_count)]
        args += ["--weight", str(weight)] if weight is not None else []
        model.source = "htr-lm " + " ".join(shlex.quote(a) for a in args)
    except ValueError as err:
        typer.echo(f"htr-lm: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        model.save(output)
    except OSError as err:
        typer.echo(f"htr-lm: {output}: cannot write ({err})", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"htr-lm: {len(lines)} lines, {len(model.vocabulary)} characters, "
        f"{len(model.counts)} contexts, order {order} -> {output}",
        err=True,
    )
    typer.echo(str(output))
