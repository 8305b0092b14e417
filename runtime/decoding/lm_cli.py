"""`htr-lm TEXT -o lm.json`: train a character language model for beam search."""

from __future__ import annotations

from pathlib import Path

import typer

from .constants import DEFAULT_LM_ORDER

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    text: list[Path] = typer.Argument(..., help="Text files to learn from (UTF-8, one line of text per line)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the model (JSON)."),
    order: int = typer.Option(DEFAULT_LM_ORDER, "--order", min=1, max=10, help="n-gram order in characters."),
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
        model = CharLM.train(lines, order=order)
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
