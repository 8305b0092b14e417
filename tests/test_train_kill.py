"""htr-train killed in the middle of each checkpoint write, then resumed.

strace kills the real `htr-train` process (SIGKILL) at the Nth write into the file being
written; each write goes to `.partial-NAME` first, so the kill must leave NAME exactly as
it was before, and the next `--resume` (the next kill's run) must start from it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
cv2 = pytest.importorskip("cv2")

from htr.runtime.atomic import partial_path  # noqa: E402

STRACE = shutil.which("strace")
HTR_TRAIN = Path(sys.executable).with_name("htr-train")

# In the order Checkpoints.on_epoch_end writes them; history.csv after state.json.
# (name, which write into it is killed)
TARGETS = [
    ("model.keras", 3),
    ("model.h5", 3),
    ("model.json", 1),
    ("best_loss.keras", 3),
    ("last.weights.h5", 3),
    ("state.json", 1),
    ("history.csv", 1),
]


def _strace_works() -> str | None:
    if STRACE is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run([STRACE, "-f", "-o", os.devnull, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[:200]}"
    return None


def _draw(text: str) -> np.ndarray:
    image = np.full((40, 22 * len(text) + 16), 255, np.uint8)
    cv2.putText(image, text, (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
    return image


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(data: Path, out: Path, epochs: int, resume: bool, kill: tuple[str, int] | None = None):
    cmd = [
        str(HTR_TRAIN), "--arch", "tiny", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
        "--batch-size", "8", "--steps-per-epoch", "3", "--lr", "0.01", "--schedule", "constant",
        "--charset", "abcdef", "--workers", "1", "--no-augment", "--verbose", "0",
    ] + (["--resume"] if resume else [])
    if kill is not None:
        name, when = kill
        # strace matches a file descriptor by its absolute path; h5py writes with pwrite64.
        cmd = [
            STRACE, "-f", "-qq", "-o", os.devnull, "-e", "trace=write,pwrite64",
            "-e", f"inject=write,pwrite64:signal=SIGKILL:when={when}",
            "-P", str(partial_path(out.resolve() / name)), *cmd,
        ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(_strace_works() is not None, reason=str(_strace_works()))
def test_a_kill_during_any_checkpoint_write_keeps_the_old_file_and_resume_works(tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    words = ["cab", "bad", "dab", "ace", "bead", "face", "fad", "add"]
    lines = []
    for i in range(32):
        cv2.imwrite(str(data / f"w{i:02d}.png"), _draw(words[i % len(words)]))
        lines.append(f"w{i:02d}.png\t{words[i % len(words)]}")
    (data / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"

    first = _train(data, out, epochs=1, resume=False)
    assert first.returncode == 0, first.stderr[-2000:]

    for name, when in TARGETS:
        before = {p.name: _sha(p) for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
        killed = _train(data, out, epochs=2, resume=True, kill=(name, when))
        # -9: strace delivered SIGKILL to htr-train, and strace exits with its tracee's status
        assert killed.returncode in (-9, 137), (name, killed.returncode, killed.stderr[-2000:])
        assert partial_path(out / name).is_file(), f"{name}: the kill did not happen during its write"
        assert _sha(out / name) == before[name], f"{name} was changed by a write that was killed"

    # The last kill came after state.json said epoch 2: resume continues with epoch 3.
    final = _train(data, out, epochs=3, resume=True)
    assert final.returncode == 0, final.stderr[-2000:]
    assert "done: 3 epochs" in final.stdout
    with open(out / "history.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0].count("epoch") == 1 and rows[0][0] == "epoch"
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    for name in ("model.keras", "model.h5", "best_loss.keras"):
        model = keras.saving.load_model(out / name, compile=False)
        assert model.output.shape[-1] == 7, name
