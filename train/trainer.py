"""The training loop behind `htr-train`: fit, validate by CER, checkpoint, resume, plot.

Files written to the output folder:

    model.keras, model.h5   the inference model (image -> per-step softmax "probs") at the
                            best validation CER (ties: lower val_loss); export reads these
    model.json              its `ModelSpec` (what export embeds), with training facts
    best_loss.keras         the inference model at the lowest val_loss (the notebook's choice)
    last.weights.h5         training model + optimizer state after the last finished epoch
    state.json              the epoch and best scores that `--resume` continues from
    epochs/epoch-NNN.keras  with `keep_epochs` (`--keep-epochs`): every epoch's inference model,
                            its metadata beside it as epoch-NNN.json
    history.csv, history.png  loss, val_loss, val_cer, val_wer, lr, images/s per epoch

Mixed precision (float16 compute, float32 softmax and loss) is switched on only when a GPU
is present. Several GPUs of one machine: with the TensorFlow backend the model is built
and compiled under `tf.distribute.MirroredStrategy`; with JAX, `keras.distribution`'s
`DataParallel` is set before building. Both are automatic when more than one GPU is seen.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import re
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from htr.runtime.atomic import atomic_open, atomic_path, atomic_write_text
from htr.runtime.constants import SEED_LINE_CHARSET, SEED_WORD_CHARSET
from htr.runtime.decoding import greedy_decode
from htr.runtime.metadata import ModelSpec
from htr.runtime.metrics import error_rates

from . import models
from .config import TrainConfig
from .data import ConcatSource, CTCDataset, LabelEncoder, Source, open_source

# ---- devices ------------------------------------------------------------------------


def gpu_count() -> int:
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return len(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return sum(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken GPU stack means no GPU
        return 0
    return 0


def distribution_scope(gpus: int):
    """A scope that replicates the model over this machine's GPUs (a no-op for 0-1 GPU)."""
    if gpus < 2:
        return contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return contextlib.nullcontext()


# ---- callbacks ------------------------------------------------------------------------


class Validation(keras.callbacks.Callback):
    """val_loss, val_cer and val_wer with greedy decoding, in one pass over the validation set.

    Runs first among the callbacks, so checkpointing, early stopping and the CSV log see
    its numbers in `logs`.
    """

    def __init__(self, built: models.Built, data: CTCDataset, max_batches: int | None = None, show: int = 4):
        super().__init__()
        self.built, self.data = built, data
        self.max_batches = max_batches
        self.show = show
        self.encoder = LabelEncoder(built.spec.charset)
        self.logits_model = keras.Model(built.inference.inputs, built.inference.get_layer(models.LOGITS).output)

    def evaluate(self) -> dict[str, float]:
        spec = self.built.spec
        pairs, losses, weights = [], [], []
        batches = len(self.data) if self.max_batches is None else min(self.max_batches, len(self.data))
        for i in range(batches):
            batch = self.data.batch(i)
            logits = np.asarray(self.logits_model.predict_on_batch(batch.pixels), dtype=np.float32)
            targets = {"labels": batch.labels, "label_length": batch.label_length, "logit_length": batch.logit_length}
            losses.append(float(keras.ops.convert_to_numpy(models.ctc_loss(targets, logits, spec.blank))))
            weights.append(len(batch.texts))
            probs = _softmax(logits)
            decoded = greedy_decode(probs, spec.charset, spec.blank, lengths=batch.logit_length)
            pairs.extend(zip(batch.texts, (d.text for d in decoded)))
        rates = error_rates(pairs)
        self.samples = pairs[: self.show]
        return {"val_loss": float(np.average(losses, weights=weights)), "val_cer": rates.cer, "val_wer": rates.wer}

    def on_epoch_end(self, epoch, logs=None):
        result = self.evaluate()
        if logs is not None:
            logs.update(result)
        print(
            f"\nepoch {epoch + 1}: val_loss {result['val_loss']:.4f}  val_cer {result['val_cer']:.4f}  "
            f"val_wer {result['val_wer']:.4f}"
        )
        for ref, hyp in self.samples:
            mark = "ok" if ref == hyp else "  "
            print(f"  {mark} {ref!r:>30} -> {hyp!r}")


class Throughput(keras.callbacks.Callback):
    """Training images per second (first batch of each epoch excluded: compilation)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.first = None
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.count += 1
            self.last = now

    def on_epoch_end(self, epoch, logs=None):
        rate = self.count * self.batch_size / (self.last - self.first) if self.count else float("nan")
        self.rates.append(rate)
        if logs is not None:
            logs["images_per_s"] = rate
            lr = self.model.optimizer.learning_rate
            logs["lr"] = float(keras.ops.convert_to_numpy(lr))


class Checkpoints(keras.callbacks.Callback):
    """Best inference model by val_cer (ties: val_loss), best by val_loss, and the last state."""

    def __init__(self, trainer: "Trainer"):
        super().__init__()
        self.t = trainer

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        t, state = self.t, self.t.state
        cer, loss = logs.get("val_cer", math.inf), logs.get("val_loss", math.inf)
        if (cer, loss) < (state["best_cer"], state["best_cer_loss"]):
            state.update(best_cer=cer, best_cer_loss=loss, best_epoch=epoch + 1)
            t.save_inference(t.out / "model.keras", h5=t.out / "model.h5")
            t.write_spec(final=False)
            print(f"  saved best model (val_cer {cer:.4f}) to {t.out / 'model.keras'}")
        if loss < state["best_loss"]:
            state["best_loss"] = loss
            t.save_inference(t.out / "best_loss.keras")
        state["epoch"] = epoch + 1
        if t.cfg.keep_epochs:  # this epoch's model, with its metadata beside it (export, average)
            kept = t.out / "epochs" / f"epoch-{epoch + 1:03d}.keras"
            kept.parent.mkdir(exist_ok=True)
            t.save_inference(kept)
            t.spec_with_facts().with_source(
                epochs=epoch + 1, best_epoch=epoch + 1, val_cer=_finite(cer), val_loss=_finite(loss), file=kept.name,
            ).save_json(kept.with_suffix(".json"))
        state["history"].append({k: float(v) for k, v in logs.items() if np.isscalar(v)})
        with atomic_path(t.out / "last.weights.h5") as tmp:
            t.training.save_weights(tmp, overwrite=True)
        t.save_state()
        write_history(state["history"], t.out / "history.csv")


class Plot(keras.callbacks.Callback):
    """history.png: loss / val_loss and val_cer per epoch (matplotlib, Agg)."""

    def __init__(self, trainer: "Trainer"):
        super().__init__()
        self.t = trainer

    def on_epoch_end(self, epoch, logs=None):
        try:
            plot_history(self.t.state["history"], self.t.out / "history.png")
        except Exception as err:  # noqa: BLE001 - a plot must never stop training
            print(f"  (no plot: {err})")


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss"):
        ax1.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax1.set_xlabel("epoch"), ax1.set_ylabel("CTC loss"), ax1.legend(), ax1.grid(alpha=0.3)
    for key in ("val_cer", "val_wer"):
        ax2.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax2.set_xlabel("epoch"), ax2.set_ylabel("error rate"), ax2.legend(), ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_history(history: list[dict], path: Path) -> None:
    """history.csv from the saved history: one `epoch` column first, then every other key.

    Rewritten whole (atomically) after each epoch, so a kill never leaves half a row and a
    resumed run's file is exactly the history it resumed from plus its own epochs.
    """
    keys = sorted({k for row in history for k in row} - {"epoch"})
    with atomic_open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["epoch", *keys])
        for i, row in enumerate(history):
            epoch = row.get("epoch", i + 1)
            out.writerow([int(epoch), *(row.get(k, "") for k in keys)])


class EpochNumber(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch"] = epoch + 1


# ---- the trainer -----------------------------------------------------------------------


def data_kind(data: str) -> str:
    """"lines" or "words": what `--data` holds, told from the data, not from its name.

    `synth:lines` and an IAM lines.txt are lines; a labels.tsv folder is lines when any
    label holds a space (a folder of one's own scanned lines is named anything).
    """
    if data.startswith("synth:"):
        return "lines" if data.split(":", 1)[1] == "lines" else "words"
    from htr.runtime.datasets import load_labelled

    labelled = load_labelled(data, check_files=False)
    if labelled.kind == "iam-lines" or any(" " in sample.text for sample in labelled.samples):
        return "lines"
    return "words"


def default_charset(cfg: TrainConfig, kind: str) -> str:
    if cfg.charset:
        return {"words": SEED_WORD_CHARSET, "lines": SEED_LINE_CHARSET}.get(cfg.charset, cfg.charset)
    if cfg.arch == "seed-line" or kind == "lines":
        return SEED_LINE_CHARSET
    return models.DEFAULT_CHARSETS.get(cfg.arch, SEED_WORD_CHARSET)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.gpus = gpu_count()
        # The dtype policy and the seeds are process-wide: `train` sets them, not this object.
        self.mixed_precision = keras.mixed_precision.global_policy().name == "mixed_float16"

        kinds = {data_kind(data) for data in dict.fromkeys(cfg.all_data)}  # each folder read once
        charset = default_charset(cfg, "lines" if "lines" in kinds else "words")
        if cfg.resume and not cfg.charset and (self.out / "model.json").is_file():
            charset = "".join(ModelSpec.from_json(self.out / "model.json").charset)  # the run's own, whatever the data
        train_src = self._open_training(charset)
        with distribution_scope(self.gpus):
            self.built = models.build(cfg.arch, charset)
            self.training = self.built.training_model()
            self.training.compile(optimizer=self._optimizer(len(train_src)))
        self.spec = with_background(self.built.spec, cfg)
        self.initialised: dict[str, list[str]] = {}
        if cfg.init_from and not cfg.resume:
            self.initialised = init_from(self.built.inference, cfg.init_from)

        if cfg.val:
            val_src = open_source(cfg.val, charset, "val" if cfg.val.startswith("synth:") else "all", size=cfg.val_size, seed=cfg.seed)
        else:
            val_src = open_source(cfg.data, charset, "val", size=cfg.val_size, seed=cfg.seed, split_file=cfg.split_file)
        real = any(not data.startswith("synth:") for data in cfg.all_data)
        self.train_data = CTCDataset(
            train_src, self.spec, cfg.batch_size, shuffle=True, augment_images=cfg.augment and real,
            seed=cfg.seed, workers=cfg.workers, use_multiprocessing=cfg.use_multiprocessing,
            steps_per_epoch=cfg.steps_per_epoch,
        )
        self.val_data = CTCDataset(val_src, self.spec, cfg.batch_size, shuffle=False, seed=cfg.seed, workers=1)
        self.state = {
            "epoch": 0, "best_cer": math.inf, "best_cer_loss": math.inf, "best_loss": math.inf,
            "best_epoch": 0, "history": [], "commands": [],
        }

    def _open_training(self, charset: str) -> Source:
        """`--data`'s training split, and each further `--data`'s after it (one named twice counts twice)."""
        cfg = self.cfg
        sources = [
            open_source(
                data, charset, "train", size=cfg.train_size, seed=cfg.seed + 104_729 * n,
                split_file=cfg.split_file if data == cfg.data else None, digit_fraction=cfg.digit_fraction,
            )
            for n, data in enumerate(cfg.all_data)
        ]
        return sources[0] if len(sources) == 1 else ConcatSource(sources)

    def _optimizer(self, train_samples: int):
        """Adam; with the cosine schedule over every step of the run (`train_samples` per
        epoch unless `steps_per_epoch` says)."""
        cfg = self.cfg
        lr = cfg.lr
        if cfg.schedule == "cosine":
            steps = cfg.steps_per_epoch or max(1, -(-train_samples // cfg.batch_size))
            lr = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, steps * cfg.epochs), alpha=0.05)
        return keras.optimizers.Adam(learning_rate=lr, clipnorm=5.0)

    # -- files --------------------------------------------------------------------------
    def save_inference(self, path: Path, h5: Path | None = None) -> None:
        for target in (path, h5):
            if target is not None:
                with atomic_path(target) as tmp:
                    self.built.inference.save(tmp)

    def spec_with_facts(self) -> "models.ModelSpec":
        cfg = self.cfg
        facts = {
            "architecture": cfg.arch,
            "command": " ".join(cfg.command),
            **({"commands": list(self.state["commands"])} if len(self.state["commands"]) > 1 else {}),
            "data": cfg.data if not cfg.more_data else list(cfg.all_data),
            "val_data": cfg.val or f"{cfg.data} (validation split)",
            "train_samples": len(self.train_data.indices),
            "val_samples": len(self.val_data.indices),
            "skipped_train": dict(self.train_data.skipped),
            "epochs": self.state["epoch"],
            "best_epoch": self.state["best_epoch"],
            "val_cer": _finite(self.state["best_cer"]),
            "val_loss": _finite(self.state["best_cer_loss"]),
            "batch_size": cfg.batch_size,
            **({"init_from": cfg.init_from} if cfg.init_from else {}),
            **({"digit_fraction": cfg.digit_fraction} if any(d.startswith("synth:") for d in cfg.all_data) else {}),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "mixed_precision": self.mixed_precision,
            "file": "model.keras",
        }
        rates = getattr(self, "throughput", None)
        if rates is not None and rates.rates and math.isfinite(rates.rates[-1]):
            facts["train_images_per_s"] = round(float(rates.rates[-1]), 2)
        return self.spec.with_source(**facts)

    def write_spec(self, final: bool = True) -> None:
        self.spec_with_facts().save_json(self.out / "model.json")

    def save_state(self) -> None:
        state = {k: (_finite(v) if isinstance(v, float) else v) for k, v in self.state.items()}
        state["config"] = {k: v for k, v in asdict(self.cfg).items()}
        atomic_write_text(self.out / "state.json", json.dumps(state, indent=1, default=str))

    def load_state(self) -> int:
        path = self.out / "state.json"
        weights = self.out / "last.weights.h5"
        if not path.is_file() or not weights.is_file():
            raise FileNotFoundError(f"{self.out}: nothing to resume (no state.json / last.weights.h5)")
        saved = json.loads(path.read_text(encoding="utf-8"))
        for key in ("best_cer", "best_cer_loss", "best_loss"):
            saved[key] = math.inf if saved.get(key) is None else saved[key]
        self.state.update({k: saved[k] for k in self.state if k in saved})
        # Build the optimizer's slots so that its saved state can be loaded into them.
        self.training.optimizer.build(self.training.trainable_variables)
        self.training.load_weights(weights)
        self.train_data.set_epoch(int(self.state["epoch"]))
        return int(self.state["epoch"])

    # -- run ----------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg = self.cfg
        initial_epoch = self.load_state() if cfg.resume else 0
        # Every run that led to this model, in order (a resumed run may change the schedule).
        self.state["commands"] = [*self.state.get("commands", []), " ".join(cfg.command)]
        print(
            f"htr-train: {cfg.arch} ({self.built.inference.count_params():,} params) on {self.train_data.source.name}: "
            f"{len(self.train_data.indices)} samples, validation {self.val_data.source.name}: "
            f"{len(self.val_data.indices)} samples; skipped: train {self.train_data.skipped_summary()}, "
            f"val {self.val_data.skipped_summary()}; Keras backend {keras.backend.backend()}, gpus {self.gpus}, mixed precision {self.mixed_precision}"
        )
        if initial_epoch >= cfg.epochs:
            print(f"htr-train: {self.out} already finished epoch {initial_epoch} of {cfg.epochs}; nothing to do")
            self.write_spec()
            return self.summary()
        if self.initialised:
            copied, skipped = self.initialised["copied"], self.initialised["skipped"]
            print(
                f"htr-train: started from {cfg.init_from}: {len(copied)} layers copied"
                + (f", {len(skipped)} left as built ({', '.join(skipped)})" if skipped else "")
            )
        if initial_epoch:
            print(f"htr-train: resuming after epoch {initial_epoch} (best val_cer {self.state['best_cer']:.4f})")
        self.throughput = Throughput(cfg.batch_size)
        callbacks = [
            EpochNumber(),
            Validation(self.built, self.val_data, cfg.val_batches, cfg.show_samples),
            self.throughput,
            Checkpoints(self),
            Plot(self),
            keras.callbacks.EarlyStopping(monitor="val_cer", mode="min", patience=cfg.patience, min_delta=1e-4),
            keras.callbacks.TerminateOnNaN(),
        ]
        if cfg.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, cfg.patience // 3)))
        self.training.fit(
            self.train_data,
            epochs=cfg.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=cfg.verbose,
        )
        self.write_spec()
        return self.summary()

    def summary(self) -> dict:
        rates = getattr(self, "throughput", None)
        return {
            "epochs": self.state["epoch"],
            "best_epoch": self.state["best_epoch"],
            "val_cer": _finite(self.state["best_cer"]),
            "val_loss": _finite(self.state["best_cer_loss"]),
            "images_per_s": rates.rates[-1] if rates and rates.rates else None,
            "out": str(self.out),
            "history": self.state["history"],
        }


def train(cfg: TrainConfig) -> dict:
    """Train as configured; returns a summary (epochs, best val CER, images/s, history).

    The one place that sets Keras' process-wide state: the dtype policy (mixed float16
    when `cfg.mixed_precision` is "on", or "auto" with a GPU) and the random seeds."""
    use_mp = cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpu_count() > 0)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    keras.utils.set_random_seed(cfg.seed)
    return Trainer(cfg).fit()


def with_background(spec: ModelSpec, cfg: TrainConfig) -> ModelSpec:
    """`spec` with the run's background policy: `cfg.background`, else the one of the
    `--init-from` model (its .json beside it), so a fine-tune reads as its donor does."""
    policy = cfg.background
    if policy is None and cfg.init_from:
        sidecar = Path(cfg.init_from).with_suffix(".json")
        if sidecar.is_file():
            policy = ModelSpec.from_json(sidecar).preprocess.background
    if policy is None or policy == spec.preprocess.background:
        return spec
    return dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, background=policy))


def init_from(model: keras.Model, source: str | Path) -> dict[str, list[str]]:
    """Copy the weights of a trained model into `model`, layer by layer, where they fit.

    This is fine-tuning: e.g. a line model started from a word model of the same
    architecture, where only the output layer differs (one more character, the space).
    Layers that hold weights are paired by name (less Keras's auto-number, `_layer_keys`)
    when one model's names are all among the other's (the same architecture, or one with
    extra named layers: `lean-deep` from `lean` keeps its `deep_*` layers fresh, `lean`
    from `lean-deep` leaves them out), otherwise in order; a pair of another type or other weight
    shapes keeps its initial values and is listed as skipped. Raises if nothing at all fits
    (the wrong model was given).
    """
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: --init-from expects a trained model file (.keras or .h5)")
    try:
        donor = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - any load failure is a wrong file for the user
        raise ValueError(f"{path}: not a Keras model that htr-train can start from ({type(err).__name__}: {err})") from None
    ours = [layer for layer in model.layers if layer.weights]
    theirs = [layer for layer in donor.layers if layer.weights]

    by_key = dict(zip(_layer_keys(theirs), theirs))
    keys = _layer_keys(ours)
    if set(by_key) <= set(keys) or set(keys) <= set(by_key):  # the same model, or one has extra named layers
        pairs = {id(layer): by_key[key] for layer, key in zip(ours, keys) if key in by_key}
    else:  # other names: in order
        pairs = {id(layer): other for layer, other in zip(ours, theirs)}
    copied, skipped = [], []
    for layer in ours:
        other = pairs.get(id(layer))
        given = other.get_weights() if other is not None and type(other) is type(layer) else []
        mine = layer.get_weights()
        if len(given) == len(mine) and all(a.shape == b.shape for a, b in zip(mine, given)):
            layer.set_weights(given)
            copied.append(layer.name)
        else:
            skipped.append(layer.name)
    if not copied:
        raise ValueError(f"{path}: none of its layers fits this architecture; expected a model of the same architecture")
    return {"copied": copied, "skipped": skipped}


def _layer_keys(layers: list) -> list[tuple[str, int]]:
    """(name without Keras's "_N" auto-number, its count so far): "bidirectional_3" in one
    process and "bidirectional" in the saved file are the same first BiLSTM."""
    seen: dict[str, int] = {}
    keys = []
    for layer in layers:
        base = re.sub(r"_\d+$", "", layer.name)
        keys.append((base, seen.get(base, 0)))
        seen[base] = seen.get(base, 0) + 1
    return keys


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
