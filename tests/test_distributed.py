"""htr.runtime.distributed and `htr-run --engine ray` on a real local Ray, with the tiny real ONNX model.

One Ray session for the module (ray.init(num_cpus=2)); the CLI runs as real subprocesses
that join it with --address. Deselect with `-m "not ray"`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from runtime_fixtures import draw_word

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

HTR_RUN = [sys.executable, "-c", "from htr.runtime.cli import run_app; run_app(prog_name='htr-run')"]
WORDS = ["".join(w) for n in (1, 2, 3) for w in itertools.product("ab", repeat=n)]  # 14 words


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs for the module; its GCS address for the CLI to join."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def write_images(folder: Path, count: int, bad: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"w{i:04d}.png"), draw_word(WORDS[i % len(WORDS)]))
    if bad:
        (folder / "bad.png").write_bytes(b"this is not an image")
        (folder / "empty.png").write_bytes(b"")
        (folder / "w0001.png").write_bytes((folder / "w0001.png").read_bytes()[:40])  # truncated
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("ray") / "images", 40)


def local_results(model: Path, folder: Path, decoder: str = "greedy", batch_size: int = 3, **options):
    from htr.runtime import Engine, Recognizer, list_images, make_decoder

    engine = Engine(model, threads=1)
    decode = make_decoder(decoder, engine.spec.charset, engine.spec.blank, **options)
    paths, _ = list_images([folder])
    return list(Recognizer(engine, decode, batch_size=batch_size).recognise_paths(paths))


def test_runtime_and_local_htr_run_never_import_ray(images, tiny_models):
    code = (
        "import sys; from typer.testing import CliRunner; import htr.runtime; from htr.runtime.cli import run_app; "
        f"r = CliRunner().invoke(run_app, [{str(images)!r}, '-m', {str(tiny_models['fixed'])!r}]); "
        "print(r.exit_code, sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split(maxsplit=1) == ["1", "[]\n"], out.stderr  # 1: the bad files; no ray module


@pytest.mark.parametrize("kind, decoder, options", [
    ("fixed", "greedy", {}),
    ("fixed", "beam", {"beam_width": 4, "nbest": 2}),
    ("dynamic", "beam", {"beam_width": 4, "nbest": 2}),
])
def test_recognize_matches_the_local_recognizer(cluster, images, tiny_models, kind, decoder, options):
    from htr.runtime.distributed import recognize, row_recognition

    model = tiny_models[kind]
    rows = recognize(str(images), model=model, decoder=decoder, decoder_options=options,
                     batch_size=3, workers=2).take_all()
    local = local_results(model, images, decoder, **options)
    assert [r["path"] for r in rows] == [str(rec.path) for rec in local]
    got = [row_recognition(r) for r in rows]
    if decoder == "greedy":
        assert got == local  # texts, confidences, steps, errors: the same to the last bit
    else:
        # Ray forms batches at its block boundaries (and the local run groups dynamic widths
        # by a window), so a few batches hold other images, and the beam's CTC sums over a
        # batch may differ in the last bits; texts, n-best texts and errors are equal.
        assert [(g.text, g.error, [n.text for n in g.decoded.nbest] if g.decoded else None) for g in got] == \
            [(r.text, r.error, [n.text for n in r.decoded.nbest] if r.decoded else None) for r in local]
        assert [g.confidence for g in got] == pytest.approx([r.confidence for r in local], rel=1e-9)
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert sorted(errors) == ["bad.png", "empty.png", "w0001.png"]
    assert errors["bad.png"] == f"{images / 'bad.png'}: is not a png, jpg, tif or bmp image"
    assert "truncated" in errors["w0001.png"] and "\n" not in errors["w0001.png"]
    assert [r["text"] for r in rows if Path(r["path"]).name == "w0002.png"] == [WORDS[2]]


def test_recognize_takes_decoder_options(cluster, images, tiny_models):
    """An options dataclass (what build_decoder takes) works as the decoder name + keywords do."""
    from htr.runtime import BeamOptions
    from htr.runtime.distributed import recognize, row_recognition

    model = tiny_models["fixed"]
    rows = recognize(str(images), model=model, decoder=BeamOptions(beam_width=4, nbest=2), batch_size=3).take_all()
    local = local_results(model, images, "beam", beam_width=4, nbest=2)
    got = [row_recognition(r) for r in rows]
    assert [(g.path, g.text, g.error) for g in got] == [(r.path, r.text, r.error) for r in local]
    assert [len(g.decoded.nbest) for g in got if g.ok] == [2] * sum(r.ok for r in local)
    with pytest.raises(ValueError, match="decoder_options go with a decoder name"):
        recognize(str(images), model=model, decoder=BeamOptions(), decoder_options={"beam_width": 2})


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*HTR_RUN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("fmt, kind", [("jsonl", "dynamic"), ("tsv", "fixed")])
def test_cli_on_a_cluster_writes_what_the_local_run_writes(cluster, images, tiny_models, tmp_path, fmt, kind):
    model = str(tiny_models[kind])
    local = run_cli(str(images), "-m", model, "-f", fmt, "-o", str(tmp_path / "local"))
    remote = run_cli(str(images), "-m", model, "-f", fmt, "-o", str(tmp_path / "ray"), "--engine", "ray",
                     "--address", cluster, "--workers", "2", "-b", "4")
    assert (local.returncode, remote.returncode) == (1, 1), remote.stderr  # three bad files
    assert (tmp_path / "ray").read_bytes() == (tmp_path / "local").read_bytes()
    errors = [line for line in remote.stderr.splitlines() if line.startswith("htr-run: error:")]
    assert errors == [line for line in local.stderr.splitlines() if line.startswith("htr-run: error:")]
    assert "htr-run: 42 images, 3 failed," in remote.stderr


def test_cli_usage_errors_exit_2(images, tiny_models, tmp_path):
    model = str(tiny_models["fixed"])
    out = run_cli(str(images), "-m", model, "--workers", "2")
    assert out.returncode == 2 and "--workers need --engine ray" in out.stderr
    out = run_cli(str(images), "-m", model, "--engine", "ray", "--resume")
    assert out.returncode == 2 and "--resume needs --output-dir" in out.stderr
    out = run_cli(str(images), "-m", model, "--engine", "ray", "--gpus-per-worker", "1")
    assert out.returncode == 2 and "needs --provider cuda" in out.stderr
    out = run_cli(str(images), "-m", model, "--engine", "ray", "--segment")
    assert out.returncode == 2 and "--segment (pages) runs with --engine local only" in out.stderr
    out = run_cli(str(images), "-m", model, "--output-dir", str(tmp_path / "shards"))
    assert out.returncode == 2 and "--output-dir needs --segment (pages) or --engine ray" in out.stderr
    # The output checks of the local run: an input is never truncated to write results.
    target = images / "w0002.png"
    before = target.read_bytes()
    out = run_cli(str(images), "-m", model, "--engine", "ray", "-o", str(target))
    assert out.returncode == 2 and str(target) in out.stderr and "htr-run: error:" in out.stderr, out.stderr
    assert target.read_bytes() == before


def test_cli_starts_and_stops_its_own_ray(tiny_models, tmp_path):
    folder = write_images(tmp_path / "few", 6, bad=False)
    out = run_cli(str(folder), "-m", str(tiny_models["fixed"]), "--engine", "ray", "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{folder / f'w{i:04d}.png'}\t{WORDS[i]}" for i in range(6)]
    assert "6 images, 0 failed" in out.stderr and "ray local" in out.stderr


def shard_rows(folder: Path) -> list[dict]:
    from htr.runtime.distributed import read_shard, shard_files

    return [row for shard in shard_files(folder) for row in read_shard(shard)]


def readable_shards(folder: Path) -> int:
    from htr.runtime.distributed import read_shard, shard_files

    count = 0
    for shard in shard_files(folder):
        try:
            count += bool(read_shard(shard))
        except (ValueError, OSError):  # being written
            pass
    return count


@pytest.mark.parametrize("shard_format", ["jsonl", "parquet"])
def test_resume_after_a_stopped_run_writes_every_image_once(cluster, tiny_models, tmp_path, shard_format):
    from htr.runtime.distributed import shard_paths

    folder = write_images(tmp_path / "many", 300, bad=False)
    out_dir = tmp_path / "shards"
    args = [str(folder), "-m", str(tiny_models["fixed"]), "--engine", "ray", "--address", cluster,
            "--output-dir", str(out_dir), "--shard-format", shard_format, "-b", "2"]
    first = subprocess.Popen([*HTR_RUN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and first.poll() is None and not readable_shards(out_dir):
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the run is stopped (its own process group, by id)
        first.wait()
    stopped_with = shard_paths(out_dir)  # as --resume reads them (a half-written shard is set aside)
    assert 0 < len(stopped_with) < 300, "the first run was not stopped half way"
    second = run_cli(*args, "--resume")
    assert second.returncode == 0, second.stderr
    assert "images already in" in second.stderr
    paths = [row["path"] for row in shard_rows(out_dir)]
    assert sorted(paths) == sorted(str(p) for p in folder.glob("*.png"))  # each image exactly once
    texts = {Path(row["path"]).name: row["text"] for row in shard_rows(out_dir)}
    assert all(texts[f"w{i:04d}.png"] == WORDS[i % len(WORDS)] for i in range(300))


def test_resume_redoes_the_images_of_an_incomplete_shard(tmp_path):
    from htr.runtime.distributed import shard_paths

    (tmp_path / "shard-a-000000-000000.jsonl").write_text(
        json.dumps({"path": "x/1.png", "text": "a"}) + "\n" + json.dumps({"path": "x/2.png", "text": "b"}) + "\n")
    (tmp_path / "shard-a-000001-000000.jsonl").write_text(json.dumps({"path": "x/3.png"}) + '\n{"path": "x/4.p')
    assert shard_paths(tmp_path) == {"x/1.png", "x/2.png"}
    assert (tmp_path / "shard-a-000001-000000.jsonl.incomplete").exists()  # out of the way, redone


def recognize_actor_pids() -> dict[str, tuple[int, int]]:
    """Alive RecognizeBatch actors: id -> (pid, restarts), from Ray's actor table."""
    from ray._private import state

    return {
        actor_id: (info["Pid"], info["NumRestarts"])
        for actor_id, info in state.actors().items()
        if "RecognizeBatch" in info["ActorClassName"] and info["State"] == "ALIVE"
    }


def test_a_worker_killed_mid_run_loses_no_image(cluster, tiny_models, tmp_path):
    from htr.runtime.distributed import recognize, row_recognition

    folder = write_images(tmp_path / "kill", 400, bad=False)
    model = tiny_models["fixed"]
    dataset = recognize(str(folder), model=model, batch_size=2, workers=1)
    rows, killed = [], None
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        rows.extend(batch.to_pylist())
        if killed is None:
            actors = recognize_actor_pids()
            assert actors, "no RecognizeBatch actor alive after the first batch"
            killed = next(iter(actors))
            os.kill(actors[killed][0], signal.SIGKILL)  # as the OOM killer would
            killed_after = len(rows)
    assert killed_after < 400
    from ray._private import state

    assert state.actors()[killed]["NumRestarts"] >= 1  # Ray brought the actor back
    assert [r["path"] for r in rows] == [str(folder / f"w{i:04d}.png") for i in range(400)]  # none lost or twice
    assert [row_recognition(r) for r in rows] == local_results(model, folder)
