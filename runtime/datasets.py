"""Labelled data sets: `labels.tsv` folders and IAM roots (`words.txt` / `lines.txt`).

Used by `htr-eval` here and imported by training; nothing else parses these formats.

IAM, as it ships:
    words.txt: `a01-000u-00-00 ok 154 408 768 27 51 AT A`
        id, segmentation status, grey level, x, y, w, h, grammatical tag, transcription
        image: words/a01/a01-000u/a01-000u-00-00.png
    lines.txt: `a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE|to|stop|Mr.|Gaitskell|from`
        id, status, grey level, components, x, y, w, h, transcription ('|' between words)
        image: lines/a01/a01-000u/a01-000u-00.png
Comment lines start with '#'. The seed notebook kept only status `ok` and sent every
10th line of the file (counting from 0, comments included) to validation; `split`
reproduces that, or a split file (one id per line) chooses the validation ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import DatasetError

Split = Literal["all", "train", "val"]


@dataclass(frozen=True)
class Sample:
    """One labelled image: where it is and what it says."""

    path: Path
    text: str
    id: str = ""


@dataclass(frozen=True)
class LabelledSet:
    """Samples of a labelled folder, plus what was skipped while reading it and why."""

    root: Path
    kind: str  # "tsv", "iam-words" or "iam-lines"
    samples: tuple[Sample, ...]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)


def find_labels(root: str | Path) -> tuple[str, Path]:
    """Which labelled format `root` holds: ("tsv"|"iam-words"|"iam-lines", labels file)."""
    root = Path(root)
    if root.is_file() and root.suffix == ".tsv":
        return "tsv", root
    if not root.is_dir():
        raise DatasetError(root, "no such folder (expected a folder with labels.tsv, words.txt or lines.txt)")
    candidates = [
        ("tsv", root / "labels.tsv"),
        ("iam-words", root / "words.txt"),
        ("iam-words", root / "ascii" / "words.txt"),
        ("iam-lines", root / "lines.txt"),
        ("iam-lines", root / "ascii" / "lines.txt"),
    ]
    for kind, path in candidates:
        if path.is_file():
            return kind, path
    raise DatasetError(root, "has no labels.tsv, words.txt or lines.txt (expected a labelled folder or an IAM root)")


def load_labelled(
    root: str | Path,
    split: Split = "all",
    split_file: str | Path | None = None,
    check_files: bool = True,
) -> LabelledSet:
    """Read a labelled folder or IAM root. Missing/empty images are skipped and counted."""
    kind, labels = find_labels(root)
    root = Path(root) if Path(root).is_dir() else labels.parent
    if kind == "tsv":
        samples, skipped = _read_tsv(labels, root)
        if split != "all" or split_file is not None:
            samples = _apply_split(samples, split, split_file, [i % 10 == 0 for i in range(len(samples))])
    else:
        samples, skipped = _read_iam(labels, root, kind, split, split_file)
    if check_files:
        kept = []
        for s in samples:
            try:
                size = s.path.stat().st_size
            except OSError:
                skipped["missing image"] = skipped.get("missing image", 0) + 1
                continue
            if size == 0:
                skipped["empty image"] = skipped.get("empty image", 0) + 1
                continue
            kept.append(s)
        samples = kept
    return LabelledSet(root, kind, tuple(samples), skipped)


def _read_tsv(labels: Path, root: Path) -> tuple[list[Sample], dict[str, int]]:
    samples: list[Sample] = []
    try:
        lines = labels.read_text(encoding="utf-8-sig").splitlines()  # a BOM is no part of the first path
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(labels, f"cannot read labels ({err})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        rel, sep, text = line.partition("\t")
        if not sep:
            raise DatasetError(labels, f"line {number}: expected 'relative/path.png<TAB>text', got {line[:60]!r}")
        if _leaves(rel):
            raise DatasetError(
                labels, f"line {number}: path {rel!r} is outside the folder; expected a path relative to {root}"
            )
        samples.append(Sample(root / rel, text, rel))
    return samples, {}


def _leaves(rel: str) -> bool:
    """Whether a labels.tsv path is absolute or climbs out of its folder with '..'."""
    if os.path.isabs(rel) or rel.startswith("~"):
        return True
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith(".." + os.sep)


def _read_iam(
    labels: Path, root: Path, kind: str, split: Split, split_file: str | Path | None
) -> tuple[list[Sample], dict[str, int]]:
    image_dir = root / ("words" if kind == "iam-words" else "lines")
    first_field = 8  # transcription starts here in both files
    samples: list[Sample] = []
    is_val: list[bool] = []
    skipped: dict[str, int] = {}
    try:
        lines = labels.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as err:
        raise DatasetError(labels, f"cannot read ({err.strerror or err})") from None
    for index, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(" ")
        if len(fields) <= first_field:
            skipped["malformed line"] = skipped.get("malformed line", 0) + 1
            continue
        if fields[1] != "ok":
            skipped["status err"] = skipped.get("status err", 0) + 1
            continue
        ident = fields[0]
        text = " ".join(fields[first_field:])
        if kind == "iam-lines":
            text = text.replace("|", " ")
        parts = ident.split("-")
        if len(parts) < 3:
            skipped["malformed id"] = skipped.get("malformed id", 0) + 1
            continue
        path = image_dir / parts[0] / f"{parts[0]}-{parts[1]}" / f"{ident}.png"
        samples.append(Sample(path, text, ident))
        is_val.append(index % 10 == 0)
    return _apply_split(samples, split, split_file, is_val), skipped


def _apply_split(samples: list[Sample], split: Split, split_file: str | Path | None, is_val: list[bool]) -> list[Sample]:
    if split_file is not None:
        try:
            val_ids = {ln.strip() for ln in Path(split_file).read_text(encoding="utf-8").splitlines() if ln.strip()}
        except OSError as err:
            raise DatasetError(split_file, f"cannot read split file ({err.strerror or err})") from None
        is_val = [s.id in val_ids or s.path.stem in val_ids for s in samples]
    if split == "all":
        return samples
    want = split == "val"
    return [s for s, v in zip(samples, is_val) if v == want]
