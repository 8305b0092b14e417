"""`python -m htr.train.average A/model.keras B/model.keras --out DIR [--val FOLDER]`:
average the weights of models trained from one starting point (a "model soup").

Fine-tunes of one model with different seeds end near each other, and the mean of their
weights often reads better than any of them: the bundled word model is one. Every input
must be the same architecture (same layers, same weight shapes) with its `model.json`
beside it. Writes DIR/model.keras and DIR/model.json (the first input's metadata, whose
`htr.source` lists every input's training and, with `--val`, the average's own greedy
CER on that labelled folder), ready for `htr-export DIR/model.keras`. `--each` measures
every input as well: `htr-train --keep-epochs` keeps each epoch's model, and
`python -m htr.train.average RUN/epochs/epoch-03[3-8].keras --out DIR --val VAL --each` says
whether one of the last epochs or their average reads best.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np


def average_weights(weight_lists: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of several models' weight lists (ValueError if they differ in shape)."""
    first = weight_lists[0]
    for k, other in enumerate(weight_lists[1:], start=2):
        shapes = [w.shape for w in other]
        if shapes != [w.shape for w in first]:
            raise ValueError(f"model {k} has weights of other shapes than model 1: not the same architecture")
    return [np.mean([ws[i] for ws in weight_lists], axis=0).astype(first[i].dtype) for i in range(len(first))]


def greedy_cer(model, spec, folder: Path) -> tuple[float, int]:
    """Greedy CER of a Keras inference model on a labelled folder, with the runtime's
    own preprocessing and decoder (one image per call: exact, no padding)."""
    from htr.runtime.datasets import load_labelled
    from htr.runtime.decoding import greedy_decode
    from htr.runtime.images import load_image
    from htr.runtime.metrics import error_rates
    from htr.runtime.preprocess import Preprocessor

    data = load_labelled(folder)
    pre = Preprocessor.from_spec(spec)
    pairs = []
    for sample in data.samples:
        batch = pre.batch([pre(load_image(sample.path))])
        probs = np.asarray(model.predict_on_batch(batch.pixels), dtype=np.float32)
        lengths = batch.steps(spec.time_steps, probs.shape[1])
        pairs.append((sample.text, greedy_decode(probs, spec.charset, spec.blank, lengths=lengths)[0].text))
    return error_rates(pairs).cer, len(pairs)


def _commands(source: dict) -> list[str]:
    return list(source.get("commands") or ([source["command"]] if source.get("command") else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m htr.train.average", description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="model.keras files (each with model.json beside it)")
    ap.add_argument("--out", type=Path, required=True, help="folder for model.keras and model.json")
    ap.add_argument("--val", type=Path, help="labelled folder (labels.tsv) to measure the average's greedy CER on")
    ap.add_argument("--each", action="store_true",
                    help="with --val: measure every input too, to choose between them and their average")
    args = ap.parse_args(argv)
    if len(args.models) < 2:
        ap.error("give at least two models to average")
    if args.each and args.val is None:
        ap.error("--each measures on the --val folder: give --val too")
    import keras

    from htr.runtime.metadata import ModelSpec
    from htr.train import models as _models  # noqa: F401  (registers htr's layers)

    metas = []
    for path in args.models:
        sidecar = path.with_suffix(".json")  # htr-train writes model.json beside model.keras
        if not sidecar.is_file():
            print(f"{path}: no {sidecar.name} beside it (the metadata htr-train writes)", file=sys.stderr)
            return 2
        metas.append(json.loads(sidecar.read_text(encoding="utf-8")))
    loaded = [keras.saving.load_model(p, compile=False) for p in args.models]
    try:
        weights = average_weights([m.get_weights() for m in loaded])
    except ValueError as err:
        print(f"{args.models[0]}: {err}", file=sys.stderr)
        return 2
    spec = ModelSpec.from_json(args.models[0].with_suffix(".json")) if args.val is not None else None
    if args.each:
        for path, one in zip(args.models, loaded):
            cer, n = greedy_cer(one, spec, args.val)
            print(f"{path}: greedy CER {100 * cer:.2f}% on {n} images of {args.val}")
    model = loaded[0]
    model.set_weights(weights)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.keras")

    meta = dict(metas[0])
    sources = [m.get("htr.source", {}) for m in metas]
    command = "python -m htr.train.average " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    source = {k: v for k, v in sources[0].items() if k not in ("command", "commands", "val_cer", "val_loss", "best_epoch")}
    source.update({
        "command": command,
        "averaged": [{"file": str(p), **{k: s.get(k) for k in ("command", "best_epoch", "val_cer", "val_data")}}
                     for p, s in zip(args.models, sources)],
        "commands": [c for s in sources for c in _commands(s)] + [command],
        "epochs": max(int(s.get("epochs") or 0) for s in sources),
        "file": "model.keras",
    })
    if args.val is not None:
        cer, n = greedy_cer(model, spec, args.val)
        source.update({"val_cer": cer, "val_data": f"{args.val} (labelled folder, greedy)", "val_samples": n})
        print(f"average of {len(args.models)}: greedy CER {100 * cer:.2f}% on {n} images of {args.val}")
    meta["htr.source"] = source
    (args.out / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    print(f"wrote {args.out / 'model.keras'} and model.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
