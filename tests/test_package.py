"""The package and the conventions every command shares: `htr.__version__`, --version,
one copy of each module, typed choices that are the library's own names."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMMANDS = ["htr-run", "htr-eval", "htr-serve", "htr-train", "htr-synth", "htr-export", "htr-lm"]


def test_version_comes_from_the_installed_metadata():
    import htr

    assert htr.__version__ == importlib.metadata.version("htr")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_the_version(command):
    import htr

    r = subprocess.run([str(BIN / command), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{command} (htr) {htr.__version__}"


@pytest.mark.parametrize("folder", ["runtime", "train", "export"])
def test_a_folder_imported_by_its_bare_name_refuses(folder):
    """From the repository root `import runtime.errors` would load a second copy of every
    module (HtrError twice); it is refused with a message naming the real package."""
    r = subprocess.run([sys.executable, "-c", f"import {folder}.errors"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert f"import htr.{folder}, not {folder}" in r.stderr


def test_the_package_imports_from_the_repository_root_as_one_copy():
    code = ("import htr.runtime.errors as e, htr.runtime.engine as g; "
            "assert g.ModelError is e.ModelError; print(e.__name__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "htr.runtime.errors"


def test_typed_choices_are_the_library_names():
    from htr.runtime.cli_options import DecoderName, LexiconMode, Provider
    from htr.runtime.decoding.constants import LEXICON_MODES
    from htr.runtime.decoding.options import DECODER_NAMES
    from htr.runtime.engine import PROVIDERS

    assert [p.value for p in Provider] == list(PROVIDERS)
    assert [d.value for d in DecoderName] == list(DECODER_NAMES)
    assert [m.value for m in LexiconMode] == list(LEXICON_MODES)


def test_cli_defaults_are_the_options_defaults():
    """--beam-width's default is BeamOptions', not a number of the CLI's own."""
    from typer.main import get_command

    from htr.runtime.cli import eval_app, run_app
    from htr.runtime.decoding.options import BeamOptions

    for app in (run_app, eval_app):
        params = {p.name: p for p in get_command(app).params}
        assert params["beam_width"].default == BeamOptions().beam_width
        assert params["decoder"].default.value == "greedy"


def test_the_package_is_typed():
    assert (ROOT / "htr" / "py.typed").is_file()
    for folder in ("runtime", "train", "export"):
        assert (ROOT / "htr" / folder).resolve() == (ROOT / folder).resolve()
