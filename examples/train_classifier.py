#!/usr/bin/env python3
"""A minimal downstream trainer on a vidfeat sample export (TensorFlow/Keras, CPU).

    vidfeat run list.csv --vocab kinetics-400 --out out
    vidfeat sample --from out --out sample --per-class 20 --format npz
    python examples/train_classifier.py sample/sample.npz --epochs 20 [--holdout 0.2]

Each video becomes the mean of its dequantized 1-fps rows (YouTube-8M's video-level baseline
input); a multi-label logistic regression (one sigmoid per class) is trained on them. Accuracy
counts a video as right when its top-scoring class is one of its labels.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def load(path):
    z = np.load(path)
    rgb, off = z["rgb"], z["row_offsets"]
    dims = rgb.shape[1]
    x = np.stack([rgb[a:b].mean(0) if b > a else np.zeros(dims, np.float32) for a, b in zip(off[:-1], off[1:])])
    classes = sorted({int(c) for row in z["labels"] for c in row if c >= 0})
    col = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(x), len(classes)), np.float32)
    for n, row in enumerate(z["labels"]):
        for c in row:
            if c >= 0:
                y[n, col[int(c)]] = 1.0
    return x, y, classes


def accuracy(model, x, y):
    if len(x) == 0:
        return float("nan")
    top = model.predict(x, verbose=0).argmax(1)
    return float((y[np.arange(len(x)), top] == 1.0).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", help="sample.npz written by `vidfeat sample --format npz`")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--holdout", type=float, default=0.0, help="fraction of videos held out for evaluation")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    tf.keras.utils.set_random_seed(a.seed)
    x, y, classes = load(a.npz)
    order = np.random.default_rng(a.seed).permutation(len(x))
    n_test = int(round(len(x) * a.holdout))
    test, train = order[:n_test], order[n_test:]

    model = tf.keras.Sequential([tf.keras.Input((x.shape[1],)), tf.keras.layers.Dense(len(classes))])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    hist = model.fit(x[train], y[train], epochs=a.epochs, batch_size=32, verbose=0)

    print(f"videos {len(x)} ({len(train)} train, {len(test)} held out), classes {len(classes)}, dims {x.shape[1]}, epochs {a.epochs}")
    print(f"loss first {hist.history['loss'][0]:.4f} last {hist.history['loss'][-1]:.4f}")
    if n_test:
        print(f"held-out accuracy {accuracy(model, x[test], y[test]):.3f}")
    print(f"accuracy (train, top-1 among labels) {accuracy(model, x[train], y[train]):.3f}")


if __name__ == "__main__":
    main()
