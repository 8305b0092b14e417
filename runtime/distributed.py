"""Recognise images on a Ray cluster with Ray Data (the `ray` extra).

The documented Ray Data batch-inference pattern, with htr's own stages inside:

    files -> ray.data.read_binary_files(include_paths=True)   (read tasks, anywhere on the cluster)
          -> map_batches(RecognizeBatch, ActorPoolStrategy(size=workers))
               __init__: one Engine (intra_op_num_threads = the actor's CPUs), one Recognizer
                         (preprocessor + decoder), built once per actor
               __call__: decode_image (bytes -> grey, the loader htr-run uses) -> the Recognizer's
                         two stages: emissions_of_images (fit, stack, Engine.run) -> decode
          -> rows: path, text, confidence, char_confidences, time_steps, log_prob, nbest, error

`htr-run --engine ray` sends rows of paths instead: one row per window of the local run
(`plan_windows`), recognised by `RecognizeWindows` with the Recognizer's own stages,
so each model batch holds the same images as on one machine and the output is byte for
byte the local run's, also for dynamic-width models (whose BiLSTM sees a batch's padding:
with Ray's own batches, 42 of 2,000 word texts differed). Workers read those files.

A bad image becomes a row with its one-line error, never a failed task. Actors that die
(killed, out of memory) are restarted by Ray and their unfinished batches retried
(`max_restarts`, `max_task_retries`); a batch's rows exist only once its task has
finished, so nothing is lost or emitted twice.

`recognize` is the library entry point (a `ray.data.Dataset` in, a `Dataset` out);
`run_cluster` is what `htr-run --engine ray` calls. Nothing here imports ray at module
load: `htr.runtime` works without the extra, and ray is imported by the functions that
need it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .constants import DEFAULT_BATCH_SIZE, IMAGE_SUFFIXES, MAX_FILE_BYTES, WIDTH_GROUPING_WINDOW
from .decoding import Decoded
from .decoding.options import DecoderOptions, GreedyOptions, decoder_name
from .decoding.options import decoder_options as decoder_options_of
from .errors import HtrError, ImageError
from .pipeline import Recognition, Recognizer, _item_error, decode

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyarrow
    import ray.data

#: Shard formats `--output-dir` writes, and their file suffixes.
SHARD_SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet"}
#: A shard that could not be read completely on --resume is renamed with this suffix
#: (a run stopped while Ray was writing it); its images are recognised again.
INCOMPLETE_SUFFIX = ".incomplete"

#: Model batches per Ray task: a task carries batch_size x TASK_BATCHES images, so Ray's
#: cost per task (scheduling, transfer; ~0.1 s on the loaded 2-core VM) is spread thin.
TASK_BATCHES = 8

#: Retries when a worker dies: actors always come back (-1); a batch is retried this
#: many times before the run fails (a batch that kills its worker every time).
DEFAULT_MAX_RESTARTS = -1
DEFAULT_MAX_TASK_RETRIES = 5


class RayUnavailable(HtrError):
    """The `ray` extra is not installed."""


def import_ray() -> Any:
    """`import ray` (and ray.data), or `RayUnavailable` saying which extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is a separate extra of ray)
    except ImportError as err:
        raise RayUnavailable(None, f"--engine ray needs Ray Data: pip install 'htr[cpu,ray]' ({err})") from None
    return ray


@dataclass(frozen=True)
class RecognizerSettings:
    """Everything an actor needs to build its stages; small, so it travels cheaply.

    model: path of the .onnx file (as every node sees it; bundled models resolve to the
        installed package on each node). decoder: the decoder's options (`GreedyOptions`,
        `BeamOptions`, `LexiconOptions`: what `build_decoder` takes; the CLI fills them
        from its flags, `RecognitionArgs.decoder_options`); lexicon and LM files must be
        readable at the same path on every node. batch_size: images per engine call; a
        Ray task carries TASK_BATCHES of them. threads: onnxruntime's intra_op_num_threads
        in each actor (= the CPUs Ray gives the actor).
    """

    model: str
    provider: str = "cpu"
    decoder: DecoderOptions = field(default_factory=GreedyOptions)
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int = 1
    dynamic_width: bool = False  # the model's; decides the local run's windows (window_recognize)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.threads < 1:
            raise ValueError(f"threads per worker must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class ClusterOptions:
    """How the work is spread: `workers` actors with `threads` CPUs and `gpus` GPUs each.

    address: None starts a local Ray for the run (and shuts it down after); "auto" or
    HOST:PORT joins a running cluster (`ray start --head` / `ray start --address ...`).
    """

    address: str | None = None
    workers: int = 1
    threads: int = 1
    gpus: float = 0.0
    max_restarts: int = DEFAULT_MAX_RESTARTS
    max_task_retries: int = DEFAULT_MAX_TASK_RETRIES

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.threads < 1:
            raise ValueError(f"threads per worker must be at least 1, got {self.threads}")
        if self.gpus < 0:
            raise ValueError(f"GPUs per worker must be at least 0, got {self.gpus}")


def result_schema() -> "pyarrow.Schema":
    """The columns of every recognised batch (fixed, so blocks and shards always agree)."""
    import pyarrow as pa

    nbest = pa.struct([("text", pa.string()), ("confidence", pa.float64()), ("log_prob", pa.float64()),
                       ("char_confidences", pa.list_(pa.float64())), ("time_steps", pa.list_(pa.int64()))])
    return pa.schema([
        ("path", pa.string()),
        ("text", pa.string()),
        ("confidence", pa.float64()),
        ("char_confidences", pa.list_(pa.float64())),
        ("time_steps", pa.list_(pa.int64())),
        ("log_prob", pa.float64()),
        ("nbest", pa.list_(nbest)),
        ("error", pa.string()),
    ])


class RecognizeBatch:
    """Ray Data callable class: builds one Engine + Recognizer in `__init__`, recognises batches.

    `__call__` takes a batch with `bytes` and `path` columns (what `read_binary_files(...,
    include_paths=True)` gives) and returns a pyarrow table in `result_schema()`, one
    row per input row, in input order.
    """

    def __init__(self, settings: RecognizerSettings):
        from .decoding import build_decoder
        from .engine import Engine

        # One session per actor, its pool sized to the CPUs Ray gave the actor (Ray sets
        # OMP_NUM_THREADS to the same; onnxruntime's default would take every core).
        engine = Engine(settings.model, provider=settings.provider, threads=settings.threads, streams=1)
        spec = engine.spec
        decoder = build_decoder(settings.decoder, spec.charset, spec.blank)
        self.recognizer = Recognizer(engine, decoder, batch_size=settings.batch_size, workers=1)

    def __call__(self, batch: Any) -> "pyarrow.Table":
        paths = [str(p) for p in _column(batch, "path")]
        blobs = _column(batch, "bytes")
        return records_table(recognise_blobs(self.recognizer, paths, blobs))


class RecognizeWindows(RecognizeBatch):
    """Ray Data callable class for `htr-run --engine ray`: each row is one window of paths.

    The window is recognised exactly as `Recognizer.recognise_paths` recognises that window
    on one machine: each file read by `load_image` (a file that fails gets the local run's
    one-line error), then the images that loaded go through the Recognizer's two stages as
    one window (`emissions_of_images`: fit, group by width, batch, engine; then `decode`).
    Leaving out the failed files keeps the others' order, so every batch holds the same
    images as in the local run and the results are the same to the last bit, also for
    dynamic-width models, where the BiLSTM sees each batch's padding.
    """

    def __call__(self, batch: Any) -> "pyarrow.Table":
        from .images import load_image

        results: list[Recognition] = []
        for paths in _column(batch, "paths"):
            loaded: list[tuple[int, Any]] = []
            window: list[Recognition | None] = [None] * len(paths)
            for i, name in enumerate(paths):
                try:
                    loaded.append((i, load_image(name)))
                except Exception as err:  # one file's failure, whatever it is, is that file's
                    window[i] = Recognition(Path(name), error=_item_error(Path(name), err))
            _recognise_loaded(self.recognizer, [str(p) for p in paths], loaded, window)
            results.extend(r for r in window if r is not None)
        return records_table(results)


def _recognise_loaded(recognizer: Recognizer, names: Sequence[str], loaded: Sequence[tuple[int, Any]],
                      out: list[Recognition | None]) -> None:
    """Recognise the loaded grey images (index into `names`, image) as one window into `out`."""
    if not loaded:
        return
    emissions = recognizer.emissions_of_images([im for _, im in loaded], [names[i] for i, _ in loaded])
    for (i, _), rec in zip(loaded, decode(emissions, recognizer.decoder)):
        out[i] = rec


def plan_windows(count: int, batch_size: int, window: int) -> list[tuple[int, int]]:
    """(start, end) of each window `Recognizer.recognise_paths` makes of `count` paths.

    The first window is one batch, then each doubles up to `window` (the Recognizer's
    `window`: batch_size, or batch_size x WIDTH_GROUPING_WINDOW for dynamic widths).
    """
    spans, start, size = [], 0, min(batch_size, window)
    while start < count:
        end = min(count, start + size)
        spans.append((start, end))
        start, size = end, min(2 * size, window)
    return spans


def recognise_blobs(recognizer: Recognizer, paths: Sequence[str], blobs: Sequence[bytes]) -> list[Recognition]:
    """Image bytes -> one `Recognition` per image, in order, through the Recognizer's stages.

    Each image is decoded on its own by `decode_image`, the loader htr-run uses (size
    checked from the header, decodes held to the process's memory budget; a file over
    MAX_FILE_BYTES is refused as `load_image` refuses it), and a bad one gets its one-line
    error; the good ones go through `emissions_of_images` and `decode` as one window, so
    a model or decoder failure costs only the images it concerns.
    """
    from .images import decode_image

    results: list[Recognition | None] = [None] * len(paths)
    loaded: list[tuple[int, Any]] = []
    for i, (name, data) in enumerate(zip(paths, blobs)):
        try:
            if len(data) > MAX_FILE_BYTES:
                raise ImageError(name, f"is {len(data):,} bytes, expected at most {MAX_FILE_BYTES:,} (HTR_MAX_FILE_MB)")
            loaded.append((i, decode_image(bytes(data), name)))
        except Exception as err:  # one file's failure, whatever it is, is that file's
            results[i] = Recognition(Path(name), error=_item_error(Path(name), err))
    _recognise_loaded(recognizer, paths, loaded, results)
    return [r for r in results if r is not None]


def records_table(results: Iterable[Recognition]) -> "pyarrow.Table":
    """Recognitions -> a pyarrow table in `result_schema()` (full float precision)."""
    import pyarrow as pa

    rows = [_row(rec) for rec in results]
    schema = result_schema()
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def _row(rec: Recognition) -> dict[str, Any]:
    d = rec.decoded
    if d is None or not rec.ok:
        return {"path": str(rec.path), "text": "", "confidence": 0.0, "char_confidences": [],
                "time_steps": [], "log_prob": 0.0, "nbest": [], "error": rec.error}
    return {
        "path": str(rec.path),
        "text": d.text,
        "confidence": float(d.confidence),
        "char_confidences": [float(c) for c in d.char_confidences],
        "time_steps": [int(t) for t in d.time_steps],
        "log_prob": float(d.log_prob),
        "nbest": [{"text": n.text, "confidence": float(n.confidence), "log_prob": float(n.log_prob),
                   "char_confidences": [float(c) for c in n.char_confidences],
                   "time_steps": [int(t) for t in n.time_steps]} for n in d.nbest],
        "error": None,
    }


def row_recognition(row: Mapping[str, Any]) -> Recognition:
    """A result row (from the dataset or a shard) back to the `Recognition` it was made from."""
    path = Path(row["path"])
    if row.get("error"):
        return Recognition(path, error=str(row["error"]))
    nbest = tuple(
        Decoded(n["text"], float(n["confidence"]), tuple(float(c) for c in n.get("char_confidences") or ()),
                tuple(int(t) for t in n.get("time_steps") or ()), float(n["log_prob"]))
        for n in (row.get("nbest") or ())
    )
    decoded = Decoded(
        str(row["text"]),
        float(row["confidence"]),
        tuple(float(c) for c in row["char_confidences"]),
        tuple(int(t) for t in row["time_steps"]),
        float(row["log_prob"]),
        nbest,
    )
    return Recognition(path, decoded)


def _column(batch: Any, name: str) -> Sequence[Any]:
    """One column of a batch (a pyarrow table or a dict of columns) as a Python list."""
    names = list(batch.column_names) if hasattr(batch, "column_names") else list(batch)
    if name not in names:
        raise ValueError(f"expected a batch with columns 'path' and 'bytes', got {', '.join(map(str, names))}")
    column = batch[name]
    return column.to_pylist() if hasattr(column, "to_pylist") else list(column)


def read_images(paths: str | Sequence[str], file_extensions: Sequence[str] | None = None,
                read_cpus: float = 0) -> "ray.data.Dataset":
    """Ray Data lists and reads image files (local paths, or any filesystem Ray reads).

    file_extensions: keep only these suffixes in folders (None: every file named or found).
    Read tasks ask for `read_cpus` CPUs: reading is I/O, and the actors hold the cores.
    """
    ray = import_ray()
    return ray.data.read_binary_files(
        paths if isinstance(paths, str) else [str(p) for p in paths],
        include_paths=True,
        file_extensions=None if file_extensions is None else [s.lstrip(".") for s in file_extensions],
        num_cpus=read_cpus,
    )


def recognize(
    dataset_or_paths: "ray.data.Dataset | str | Path | Sequence[str | Path]",
    model: str | Path | None = None,
    *,
    provider: str = "cpu",
    decoder: str | DecoderOptions = "greedy",
    decoder_options: Mapping[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    threads_per_worker: int = 1,
    gpus_per_worker: float = 0.0,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    max_task_retries: int = DEFAULT_MAX_TASK_RETRIES,
) -> "ray.data.Dataset":
    """Recognise images with Ray Data; returns a lazy `ray.data.Dataset` of result rows.

    dataset_or_paths: a Dataset with `path` and `bytes` columns (e.g. from
        `ray.data.read_binary_files(..., include_paths=True)`), or files / folders /
        URIs that Ray Data lists and reads (folders: image suffixes only).
    model: a bundled name or an .onnx path (default: the bundled word model); it must
        be readable at the same path on every node.
    decoder, decoder_options: as `htr.runtime.make_decoder(name, charset, blank, **options)`;
        or decoder options (`BeamOptions(...)` etc.) as `decoder`, with no decoder_options.
    workers, threads_per_worker, gpus_per_worker: the actor pool (one Engine each);
        with GPUs pass provider="cuda".

    Rows: path, text, confidence, char_confidences, time_steps, log_prob, nbest, error
    (None, or the image's one-line error). Row order follows the input where
    `DataContext.execution_options.preserve_order` is set. Ray must be initialised
    (`ray.init(...)`), or Ray Data starts a local one.
    """
    from .models import resolve_model

    if isinstance(decoder, str):
        options = decoder_options_of(decoder, **dict(decoder_options or {}))
    elif decoder_options:
        raise ValueError("decoder_options go with a decoder name; with options dataclasses pass them alone")
    else:
        options = decoder
    settings = RecognizerSettings(
        model=str(resolve_model(None if model is None else str(model), provider)), provider=provider, decoder=options,
        batch_size=batch_size, threads=threads_per_worker,
    )
    cluster = ClusterOptions(workers=workers, threads=threads_per_worker, gpus=gpus_per_worker,
                             max_restarts=max_restarts, max_task_retries=max_task_retries)
    if isinstance(dataset_or_paths, (str, Path)) or _is_path_list(dataset_or_paths):
        items = [dataset_or_paths] if isinstance(dataset_or_paths, (str, Path)) else dataset_or_paths
        dataset = read_images([str(p) for p in items], file_extensions=IMAGE_SUFFIXES)
    else:
        dataset = dataset_or_paths
    return map_recognize(dataset, settings, cluster)


def _is_path_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value)


def map_recognize(dataset: "ray.data.Dataset", settings: RecognizerSettings,
                  cluster: ClusterOptions) -> "ray.data.Dataset":
    """`dataset.map_batches(RecognizeBatch, ...)` with the actor pool and retries of `cluster`."""
    return _map_actors(dataset, RecognizeBatch, settings, cluster, settings.batch_size * TASK_BATCHES)


def _map_actors(dataset: "ray.data.Dataset", actor: type, settings: RecognizerSettings,
                cluster: ClusterOptions, batch_size: int, zero_copy: bool = True) -> "ray.data.Dataset":
    """`dataset.map_batches(actor, ...)` over an actor pool, with the retries of `cluster`."""
    ray = import_ray()
    # Actor restarts and task retries: Ray Data takes them only as ray_remote_args (which
    # Ray 2.60 warns about); its own defaults are -1/-1, ours bound the retries of a batch.
    remote_args: dict[str, Any] = {"max_restarts": cluster.max_restarts, "max_task_retries": cluster.max_task_retries}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return dataset.map_batches(
            actor,
            fn_constructor_kwargs={"settings": settings},
            compute=ray.data.ActorPoolStrategy(size=cluster.workers),
            num_cpus=cluster.threads,
            num_gpus=cluster.gpus or None,
            batch_size=batch_size,
            batch_format="pyarrow",
            zero_copy_batch=zero_copy,
            **remote_args,
        )


def window_recognize(paths: Sequence[Path], settings: RecognizerSettings,
                     cluster: ClusterOptions) -> "ray.data.Dataset":
    """The CLI's dataset: the local run's windows of `paths`, one row each, recognised by actors.

    Each actor reads its window's files itself (from the same paths, so on a cluster
    they must be on storage every node sees) and batches them as the local run does.
    """
    ray = import_ray()
    window = settings.batch_size * (WIDTH_GROUPING_WINDOW if settings.dynamic_width else 1)
    items = [{"paths": [str(p) for p in paths[a:b]]} for a, b in plan_windows(len(paths), settings.batch_size, window)]
    blocks = max(1, min(len(items), 4 * cluster.workers * cluster.threads))
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    return _map_actors(dataset, RecognizeWindows, settings, cluster, 1, zero_copy=False)


# --- htr-run --engine ray ------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a cluster run did: images recognised this run, failures, time, and skipped (resume)."""

    images: int = 0
    failed: int = 0
    seconds: float = 0.0
    skipped: int = 0
    shards: list[Path] = field(default_factory=list)


class _RayLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def start_ray(cluster: ClusterOptions) -> bool:
    """Connect to `cluster.address`, or start a local Ray sized for the pool.

    Returns True when this call started (and so must shut down) a local Ray.
    """
    ray = import_ray()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True,
             "configure_logging": True}
    if ray.is_initialized():
        return False
    if cluster.address is None:
        from .engine import available_cores

        cpus = max(available_cores(), cluster.workers * cluster.threads)
        ray.init(address="local", num_cpus=cpus, **quiet)  # a new one, never a cluster found on this machine
        started = True
    else:
        # A cluster from `ray start` checks Ray's token (~/.ray/auth_token); a driver that
        # joins it must send the token too, which Ray does only in token mode.
        if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").exists():
            os.environ["RAY_AUTH_MODE"] = "token"
        try:
            ray.init(address=cluster.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise HtrError(None, f"--address {cluster.address}: cannot join a Ray cluster ({err})") from None
        started = False
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows stream back in input order
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).addFilter(_RayLogFilter())
    return started


def run_cluster(
    images: Sequence[Path],
    settings: RecognizerSettings,
    cluster: ClusterOptions,
    on_result: Callable[[Recognition], None] | None = None,
    output_dir: Path | None = None,
    shard_format: str = "jsonl",
    resume: bool = False,
    on_error: Callable[[str], None] | None = None,
) -> RunSummary:
    """Recognise `images` on Ray; what `htr-run --engine ray` does after parsing.

    Without `output_dir`, every result is passed to `on_result` in the order of `images`.
    With it, Ray Data writes shards there (jsonl or parquet) and `on_error` gets each
    failed image's one-line error; `resume` first drops the images DIR's shards already
    hold. Starts a local Ray (and stops it) unless `cluster.address` is set.
    """
    if shard_format not in SHARD_SUFFIXES:
        raise ValueError(f"unknown shard format {shard_format!r} (expected jsonl or parquet)")
    summary = RunSummary()
    todo = list(images)
    if output_dir is not None and resume:
        done = shard_paths(output_dir)
        todo = [p for p in todo if str(p) not in done]
        summary.skipped = len(images) - len(todo)
    started = start_ray(cluster) if todo else False
    ray = import_ray()
    begin = time.perf_counter()  # after Ray is up: the rate is that of the recognition
    try:
        if todo:
            dataset = window_recognize(todo, settings, cluster)
            if output_dir is None:
                for rec in _in_order(dataset, todo):
                    summary.images += 1
                    summary.failed += 0 if rec.ok else 1
                    if on_result is not None:
                        on_result(rec)
            else:
                summary.shards = write_shards(dataset, output_dir, shard_format)
                for error in shard_errors(summary.shards):
                    summary.failed += 1
                    if on_error is not None:
                        on_error(error)
                summary.images = len(todo)
    finally:
        summary.seconds = time.perf_counter() - begin
        if started:
            ray.shutdown()
    return summary


def _in_order(dataset: "ray.data.Dataset", paths: Sequence[Path]) -> Iterator[Recognition]:
    """Stream the dataset's rows as Recognitions in the order of `paths`.

    Ray Data keeps the order (preserve_order), so the buffer stays empty; it is there so
    that order never depends on that setting. Each path must come back exactly once.
    """
    position = {str(p): i for i, p in enumerate(paths)}
    if len(position) != len(paths):
        raise ValueError("the same image is listed twice")
    waiting: dict[int, Recognition] = {}
    expected = 0
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        for row in batch.to_pylist():
            i = position.get(row["path"])
            if i is None or i < expected or i in waiting:
                raise RuntimeError(f"Ray returned {row['path']} twice or unasked; this is a bug")
            waiting[i] = row_recognition(row)
            while expected in waiting:
                yield waiting.pop(expected)
                expected += 1
    if expected != len(paths):
        raise RuntimeError(f"Ray returned {expected} of {len(paths)} images; this is a bug")


class _ShardNames:
    """Shard file names: Ray's write id, then the write task's index (a retried task rewrites its file)."""

    def __new__(cls, suffix: str) -> Any:
        from ray.data.datasource import FilenameProvider

        class ShardNames(FilenameProvider):  # type: ignore[misc]  # ray's classes are Any to mypy
            def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
                return f"shard-{write_uuid}-{task_index:06d}{suffix}"

            def get_filename_for_block(self, block: Any, write_uuid: str, task_index: int, block_index: int) -> str:
                return f"shard-{write_uuid}-{task_index:06d}-{block_index:06d}{suffix}"

        return ShardNames()


def write_shards(dataset: "ray.data.Dataset", output_dir: Path, shard_format: str) -> list[Path]:
    """Write the result rows to shards in `output_dir` through Ray Data; returns this run's shards."""
    output_dir.mkdir(parents=True, exist_ok=True)
    before = set(shard_files(output_dir))
    names = _ShardNames(SHARD_SUFFIXES[shard_format])
    target = str(output_dir.resolve())
    if shard_format == "parquet":
        dataset.write_parquet(target, filename_provider=names)
    else:
        dataset.write_json(target, filename_provider=names, lines=True, orient="records",
                           force_ascii=False, double_precision=15)
    return sorted(set(shard_files(output_dir)) - before)


def read_shard(path: Path) -> list[dict[str, Any]]:
    """Every row of one shard; ValueError if the shard is incomplete or not a shard."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table: list[dict[str, Any]] = pq.read_table(path).to_pylist()
            return table
        except Exception as err:  # pyarrow raises its own types for truncated files
            raise ValueError(f"{path}: unreadable parquet shard ({err})") from None
    rows = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}: line {number} is not complete JSON") from None
            if not isinstance(row, dict) or "path" not in row:
                raise ValueError(f"{path}: line {number} has no path")
            rows.append(row)
    return rows


def shard_files(output_dir: Path) -> list[Path]:
    """The shards in `output_dir`, sorted by name."""
    return sorted(p for s in SHARD_SUFFIXES.values() for p in output_dir.glob(f"shard-*{s}"))


def shard_paths(output_dir: Path) -> set[str]:
    """Image paths already recognised in `output_dir`'s shards (for --resume).

    A shard that cannot be read to its end (the run was stopped while Ray wrote it) is
    renamed to `*.incomplete`, so its images are recognised again and none is kept twice.
    """
    done: set[str] = set()
    if not output_dir.is_dir():
        return done
    for shard in shard_files(output_dir):
        try:
            rows = read_shard(shard)
        except ValueError as err:
            sys.stderr.write(f"htr-run: warning: {err}; its images will be recognised again\n")
            shard.rename(shard.with_name(shard.name + INCOMPLETE_SUFFIX))
            continue
        done.update(str(r["path"]) for r in rows)
    return done


def shard_errors(shards: Iterable[Path]) -> Iterator[str]:
    """The one-line error of every failed image in these shards, in path order."""
    failed = sorted((str(r["path"]), str(r["error"])) for s in shards for r in read_shard(s) if r.get("error"))
    for _, error in failed:
        yield error


@dataclass(frozen=True)
class RayRun:
    """What `htr-run --engine ray` was asked, after parsing (see `run_from_cli`).

    options: the decoder's options (`RecognitionArgs.decoder_options`); fmt: the
    --format; the rest are the flags of the same names (None: not given).
    """

    options: DecoderOptions
    provider: str = "cpu"
    batch_size: int = DEFAULT_BATCH_SIZE
    fmt: str = "txt"
    output: Path | None = None
    progress: bool | None = None
    address: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    gpus_per_worker: float | None = None
    output_dir: Path | None = None
    shard_format: str = "jsonl"
    resume: bool = False


def run_from_cli(prog: str, images: Sequence[Path], listing_failed: bool, recognizer: Recognizer, run: RayRun) -> int:
    """`htr-run --engine ray` after the options are parsed: returns the exit code.

    `recognizer` is the one the CLI built here from `run.options` (it checked the model
    and the decoder options, so usage errors exit 2 before Ray starts); every actor
    builds the same. Results, error lines and the summary line are those of the local run.
    """
    from .output import OutputError, Progress, ResultWriter, open_output

    def usage(message: str) -> int:
        sys.stderr.write(f"{prog}: error: {message}\n")
        return 2

    output, output_dir, resume = run.output, run.output_dir, run.resume
    if output_dir is not None and output is not None:
        return usage("--output-dir writes shards; it cannot be combined with --output")
    if resume and output_dir is None:
        return usage("--resume needs --output-dir (the shards it resumes from)")
    if (run.gpus_per_worker or 0) > 0 and run.provider == "cpu":
        return usage("--gpus-per-worker needs --provider cuda or tensorrt")
    if run.shard_format == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            return usage("--shard-format parquet needs pyarrow (pip install pyarrow)")
    engine = recognizer.engine
    decoder = decoder_name(run.options)
    threads = run.threads_per_worker or 1
    try:
        settings = RecognizerSettings(model=str(engine.path.resolve()), provider=run.provider, decoder=run.options,
                                      batch_size=run.batch_size, threads=threads,
                                      dynamic_width=engine.spec.dynamic_width)
        cluster = ClusterOptions(address=run.address, workers=run.workers or 1, threads=threads,
                                 gpus=run.gpus_per_worker or 0.0)
    except ValueError as err:
        return usage(str(err))
    stream = None
    if output_dir is None:
        try:
            stream = open_output(output, list(images))
        except OutputError as err:
            return usage(str(err))
    writer = ResultWriter(stream, run.fmt) if stream is not None else None
    bar = Progress(len(images), enabled=run.progress if output_dir is None else False)

    def on_result(rec: Recognition) -> None:
        if not rec.ok:
            if bar.enabled:
                sys.stderr.write("\n")
            sys.stderr.write(f"{prog}: error: {rec.error}\n")
        assert writer is not None
        writer.write(rec)
        bar.update()

    def on_error(message: str) -> None:
        sys.stderr.write(f"{prog}: error: {message}\n")

    try:
        try:
            summary = run_cluster(images, settings, cluster, on_result=on_result, output_dir=output_dir,
                                  shard_format=run.shard_format, resume=resume, on_error=on_error)
        finally:
            if writer is not None:
                writer.close()
    except HtrError as err:  # OutputError included: results cannot be written
        sys.stderr.write(f"{prog}: error: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted after {bar.done} images; results so far were written\n")
        return 130
    bar.close()
    if summary.skipped:
        sys.stderr.write(f"{prog}: --resume: {summary.skipped} images already in {output_dir}, skipped\n")
    if output_dir is not None:
        sys.stderr.write(f"{prog}: {len(summary.shards)} shards written to {output_dir}\n")
    rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
    where = f"ray {cluster.address or 'local'}, {cluster.workers} workers x {cluster.threads} threads"
    sys.stderr.write(
        f"{prog}: {summary.images} images, {summary.failed} failed, {rate:.1f} images/s "
        f"({engine.path.name}, {engine.providers[0]}, {decoder}; {where})\n"
    )
    return 1 if summary.failed or listing_failed else 0
