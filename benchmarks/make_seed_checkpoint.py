"""Build the seed notebook's *training* model with tf_keras (Keras 2), fit one step on
random data and save it the way its `ModelCheckpoint(save_best_only=True)` does: the
whole training model (4 inputs, `Lambda(K.squeeze)`, `Lambda(ctc_lambda_func)`, the
optimizer state) as legacy HDF5.

    python benchmarks/make_seed_checkpoint.py out/best_model.hdf5            # full size
    python benchmarks/make_seed_checkpoint.py out/tiny.hdf5 --tiny           # for tests

Also writes `<out>.probe.npz` with a random probe batch and the Keras prediction of the
inference sub-model on it, so parity with the exported ONNX can be checked without
loading the file with tf_keras again.

Runs on the CPU (CUDA_VISIBLE_DEVICES=-1). Needs tensorflow and tf-keras.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SEED_WORD_CHARSET = "!\"#&'()*+,-./0123456789:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

import tf_keras  # noqa: E402
from tf_keras.callbacks import ModelCheckpoint  # noqa: E402
from tf_keras.layers import (  # noqa: E402
    LSTM,
    BatchNormalization,
    Bidirectional,
    Conv2D,
    Dense,
    Input,
    Lambda,
    MaxPool2D,
)
from tf_keras.models import Model  # noqa: E402

# The notebook does `from keras import backend as K` at module level; its Lambdas close over it.
K = tf_keras.backend


def ctc_lambda_func(args):
    y_pred, labels, input_length, label_length = args
    return K.ctc_batch_cost(labels, y_pred, input_length, label_length)


def build(tiny: bool, num_classes: int, max_label_len: int):
    """The notebook's graph; `tiny` divides every width by 16 (same layers, same names)."""
    d = 16 if tiny else 1
    inputs = Input(shape=(32, 128, 1))
    conv_1 = Conv2D(64 // d, (3, 3), activation="relu", padding="same")(inputs)
    pool_1 = MaxPool2D(pool_size=(2, 2), strides=2)(conv_1)
    conv_2 = Conv2D(128 // d, (3, 3), activation="relu", padding="same")(pool_1)
    pool_2 = MaxPool2D(pool_size=(2, 2), strides=2)(conv_2)
    conv_3 = Conv2D(256 // d, (3, 3), activation="relu", padding="same")(pool_2)
    conv_4 = Conv2D(256 // d, (3, 3), activation="relu", padding="same")(conv_3)
    pool_4 = MaxPool2D(pool_size=(2, 1))(conv_4)
    conv_5 = Conv2D(512 // d, (3, 3), activation="relu", padding="same")(pool_4)
    batch_norm_5 = BatchNormalization()(conv_5)
    conv_6 = Conv2D(512 // d, (3, 3), activation="relu", padding="same")(batch_norm_5)
    batch_norm_6 = BatchNormalization()(conv_6)
    pool_6 = MaxPool2D(pool_size=(2, 1))(batch_norm_6)
    conv_7 = Conv2D(512 // d, (2, 2), activation="relu")(pool_6)
    squeezed = Lambda(lambda x: K.squeeze(x, 1))(conv_7)
    blstm_1 = Bidirectional(LSTM(256 // d, return_sequences=True, dropout=0.2))(squeezed)
    blstm_2 = Bidirectional(LSTM(256 // d, return_sequences=True, dropout=0.2))(blstm_1)
    outputs = Dense(num_classes, activation="softmax")(blstm_2)
    act_model = Model(inputs, outputs)

    labels = Input(name="the_labels", shape=[max_label_len], dtype="float32")
    input_length = Input(name="input_length", shape=[1], dtype="int64")
    label_length = Input(name="label_length", shape=[1], dtype="int64")
    loss_out = Lambda(ctc_lambda_func, output_shape=(1,), name="ctc")(
        [outputs, labels, input_length, label_length]
    )
    model = Model(inputs=[inputs, labels, input_length, label_length], outputs=loss_out)
    model.compile(loss={"ctc": lambda y_true, y_pred: y_pred}, optimizer="adam")
    return act_model, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the HDF5 checkpoint")
    parser.add_argument("--tiny", action="store_true", help="1/16 of the widths (tests)")
    parser.add_argument("--classes", type=int, default=len(SEED_WORD_CHARSET) + 1)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inference-out", help="also save the inference model (act_model) as Keras-2 HDF5 here")
    args = parser.parse_args(argv)

    tf_keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    max_label_len = 16
    act_model, model = build(args.tiny, args.classes, max_label_len)
    n = args.samples
    x = rng.random((n, 32, 128, 1), dtype=np.float32)
    y = rng.integers(0, args.classes - 1, (n, max_label_len)).astype(np.float32)
    in_len = np.full((n, 1), 31, np.int64)
    lab_len = rng.integers(1, max_label_len + 1, (n, 1)).astype(np.int64)
    checkpoint = ModelCheckpoint(
        filepath=args.out, monitor="val_loss", verbose=0, save_best_only=True, mode="auto"
    )
    model.fit(
        x=[x, y, in_len, lab_len],
        y=np.zeros(n),
        batch_size=n,
        epochs=1,
        validation_data=([x, y, in_len, lab_len], np.zeros(n)),
        verbose=0,
        callbacks=[checkpoint],
    )
    if not os.path.exists(args.out):
        print(f"{args.out}: ModelCheckpoint wrote nothing", file=sys.stderr)
        return 1
    if args.inference_out:
        act_model.save(args.inference_out)  # the notebook's act_model.save(...), legacy HDF5
    probe = rng.random((4, 32, 128, 1), dtype=np.float32)
    np.savez(args.out + ".probe.npz", x=probe, y=act_model.predict(probe, verbose=0))
    print(f"{args.out}: {model.count_params()} parameters (inference model {act_model.count_params()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
