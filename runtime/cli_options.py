"""What every htr command shares: the Typer app setup, --version, typed choices, and the
recognition options of htr-run and htr-eval, defined once.

Defaults come from the options dataclasses (`BeamOptions`, `LexiconOptions`, ...), not
from the CLI. Nothing heavy is imported here, so --help answers at once.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from .constants import DEFAULT_BATCH_SIZE, DEFAULT_DECODER
from .decoding.constants import LEXICON_MODES
from .decoding.options import DECODER_NAMES, BeamOptions, DecoderOptions, decoder_options


class Provider(str, Enum):
    """Execution providers (--provider): the keys of `engine.PROVIDERS`."""

    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


class DecoderName(str, Enum):
    """CTC decoders (--decoder): `decoding.options.DECODER_NAMES`."""

    greedy = "greedy"
    beam = "beam"
    lexicon = "lexicon"


class LexiconMode(str, Enum):
    """Lexicon decoding modes (--lexicon-mode): `decoding.constants.LEXICON_MODES`."""

    words = "words"
    lines = "lines"


# The choices above are spelled out for type checkers and --help; they must stay the
# library's own names (tests/test_cli.py checks this too).
if ([m.value for m in DecoderName] != list(DECODER_NAMES)
        or [m.value for m in LexiconMode] != list(LEXICON_MODES)):  # pragma: no cover
    raise ImportError("htr.runtime.cli_options: the CLI's choices differ from the library's names")

F = TypeVar("F", bound=Callable[..., Any])


def new_app(help: str | None = None, no_args_is_help: bool = False) -> typer.Typer:
    """A Typer app set up as every htr command is: no shell-completion commands, plain
    tracebacks and plain help text."""
    return typer.Typer(
        add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None, help=help,
        no_args_is_help=no_args_is_help,
    )


def _print_version(value: bool) -> None:
    if value:
        from htr import __version__

        typer.echo(f"{Path(sys.argv[0]).name} (htr) {__version__}")
        raise typer.Exit(0)


def version_option() -> Any:
    """The --version option: print the installed htr version and exit."""
    return typer.Option(False, "--version", callback=_print_version, is_eager=True,
                        help="Print the htr version and exit.")


def fail(prog: str, message: str, code: int = 2) -> typer.Exit:
    """Write `prog: error: message` to stderr; the Exit to raise (2: usage error)."""
    sys.stderr.write(f"{prog}: error: {message.rstrip()}\n")
    return typer.Exit(code)


_BEAM = BeamOptions()

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m",
    help="Model: a bundled name (word, line: on the CPU their int8-LSTM files, on CUDA float32; NAME.fp32 / NAME.lstm8 pick one precision) or an .onnx file from htr-export. Default: the bundled word model.")]
ProviderOpt = Annotated[Provider, typer.Option(
    "--provider", "-p", help="Execution provider; cuda/tensorrt fail loudly if not active.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=1, help="CPU threads for the model (default: all cores).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per inference call.")]


@dataclass(frozen=True)
class RecognitionArgs:
    """The options htr-run and htr-eval share, as the commands receive them."""

    model: Optional[str]
    provider: Provider
    decoder: DecoderName
    beam_width: int
    batch_size: int
    threads: Optional[int]
    streams: Optional[int]
    lexicon: Optional[Path]
    lm: Optional[str]
    lm_weight: Optional[float]
    spell: bool
    lexicon_mode: Optional[LexiconMode]
    chars: Optional[str]

    def decoder_options(self, nbest: int | None = None) -> DecoderOptions:
        """The decoder's options dataclass (ValueError for a bad combination)."""
        name = self.decoder.value
        if name == "greedy" and (self.lm or self.lm_weight is not None):
            raise ValueError("--lm and --lm-weight need --decoder beam or lexicon (greedy uses no LM)")
        if name != "lexicon" and self.lexicon_mode is not None:
            raise ValueError("--lexicon-mode needs --decoder lexicon")
        options: dict[str, Any] = {"chars": self.chars}
        if name != "greedy":
            options.update(beam_width=self.beam_width, nbest=nbest, lm=self.lm, lm_weight=self.lm_weight)
        if name == "lexicon":
            if self.spell:
                raise ValueError("--spell is for greedy and beam (the lexicon decoder reads only lexicon words)")
            options.update(lexicon=self.lexicon, mode=self.lexicon_mode.value if self.lexicon_mode else None)
        elif self.spell:
            options["spell"] = self.lexicon if self.lexicon else True
        return decoder_options(name, **options)


#: RecognitionArgs field -> (type, its typer.Option with the default).
_RECOGNITION_PARAMS: dict[str, tuple[Any, Any]] = {
    "model": (ModelOpt, None),
    "provider": (ProviderOpt, Provider.cpu),
    "decoder": (DecoderName, typer.Option(DecoderName(DEFAULT_DECODER), "--decoder", "-d", help="CTC decoder.")),
    "beam_width": (int, typer.Option(_BEAM.beam_width, "--beam-width", min=1, help="Beam width (beam, lexicon).")),
    "batch_size": (BatchOpt, DEFAULT_BATCH_SIZE),
    "threads": (ThreadsOpt, None),
    "streams": (Optional[int], typer.Option(
        None, "--streams", min=1, help="Batches the model runs at once (default: 2 on the CPU with 2+ threads, else 1).")),
    "lexicon": (Optional[Path], typer.Option(
        None, "--lexicon", help="Lexicon file (one word per line, or 'word count'); default English list.")),
    "lm": (Optional[str], typer.Option(
        None, "--lm", help="Character n-gram LM for beam/lexicon: a bundled name (words, lines) or an htr-lm file.")),
    "lm_weight": (Optional[float], typer.Option(
        None, "--lm-weight", min=0.0, help="Weight of the character LM (default: the one stored in the LM file, else 0.5).")),
    "spell": (bool, typer.Option(False, "--spell", help="Spelling-correction post-pass (greedy, beam), as the line-level seed had.")),
    "lexicon_mode": (Optional[LexiconMode], typer.Option(
        None, "--lexicon-mode", help="Lexicon decoding for 'words' (one word per image) or 'lines'. Default: from the model.")),
    "chars": (Optional[str], typer.Option(
        None, "--chars", help="Read only these characters, e.g. '0-9/' for a column of dates (ranges as in tr); "
                              "'digits' = 0-9 and the separators / . , : - and space.")),
}
if set(_RECOGNITION_PARAMS) != {f.name for f in fields(RecognitionArgs)}:  # pragma: no cover
    raise ImportError("htr.runtime.cli_options: _RECOGNITION_PARAMS and RecognitionArgs differ")


def recognition_options(command: F) -> F:
    """Give `command` the shared recognition options, handed to it as one `RecognitionArgs`
    in its keyword-only parameter `common` (its own parameters come first in --help)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "common"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in _RECOGNITION_PARAMS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        common = RecognitionArgs(**{name: kwargs.pop(name) for name in _RECOGNITION_PARAMS})
        return command(common=common, **kwargs)

    hints = {p.name: p.annotation for p in own + shared}
    wrapper.__signature__ = signature.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, "return": signature.return_annotation}
    return wrapper  # type: ignore[return-value]
