#!/usr/bin/env python3
"""Compatibility suite: vidfeat's shards and sample exports read by TensorFlow (with the
YouTube-8M reader feature specs) and by the PyPI `tfrecord` package (the loader behind its
PyTorch `TFRecordDataset`), checked against what vidfeat itself reports (`vidfeat inspect
--values`).

    tests/compat/check.py VIDFEAT_BINARY

Runs vidfeat on tests/compat/list.csv (clip windows of the bundled samples, a multi-label row
with YouTube-8M 2019 segment labels) three ways (plain; GZIP + --legacy-2017 + --audio zero;
ZLIB), exports samples as tfrecord, npz and webdataset, trains examples/train_classifier.py
briefly, and prints one `test result:` line in cargo's format for CI's totals.
"""
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import traceback
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import dequantize, same_rows, shards, truth, vidfeat  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = common.BIN = str(Path(sys.argv[1]).resolve())
WORK = Path(tempfile.mkdtemp(prefix="vidfeat-compat-"))
LIST = ROOT / "tests/compat/list.csv"
RESULTS = []


def check(name):
    def wrap(fn):
        try:
            fn()
            RESULTS.append((name, True))
            print(f"test compat::{name} ... ok", flush=True)
        except Exception:
            traceback.print_exc()
            RESULTS.append((name, False))
            print(f"test compat::{name} ... FAILED", flush=True)
        return fn

    return wrap


def tf_frame_level(files, dims, compression=None, id_key="id", audio=False, segments=False):
    ctx = {id_key: tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
    if segments:
        # The 2019 segment-rated reader's context features.
        ctx.update({
            "segment_labels": tf.io.VarLenFeature(tf.int64),
            "segment_start_times": tf.io.VarLenFeature(tf.int64),
            "segment_scores": tf.io.VarLenFeature(tf.float32),
        })
    seq = {"rgb": tf.io.FixedLenSequenceFeature([], dtype=tf.string)}
    if audio:
        seq["audio"] = tf.io.FixedLenSequenceFeature([], dtype=tf.string)
    out = {}
    for rec in tf.data.TFRecordDataset(files, compression_type=compression):
        c, s = tf.io.parse_single_sequence_example(rec, context_features=ctx, sequence_features=seq)
        rgb = tf.reshape(tf.cast(tf.io.decode_raw(s["rgb"], tf.uint8), tf.float32), [-1, dims])
        v = {"labels": sorted(tf.sparse.to_dense(c["labels"]).numpy().tolist()), "rgb": dequantize(rgb.numpy())}
        if audio:
            v["audio"] = dequantize(tf.reshape(tf.cast(tf.io.decode_raw(s["audio"], tf.uint8), tf.float32), [-1, 128]).numpy())
        if segments:
            v["segments"] = [tf.sparse.to_dense(c[k]).numpy().tolist() for k in ("segment_start_times", "segment_labels", "segment_scores")]
        out[c[id_key].numpy().decode()] = v
    return out


def tf_video_level(files, dims, compression=None, id_key="id", audio=False):
    spec = {
        id_key: tf.io.FixedLenFeature([], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
        "mean_rgb": tf.io.FixedLenFeature([dims], tf.float32),
    }
    if audio:
        spec["mean_audio"] = tf.io.FixedLenFeature([128], tf.float32)
    out = {}
    for rec in tf.data.TFRecordDataset(files, compression_type=compression):
        f = tf.io.parse_single_example(rec, spec)
        out[f[id_key].numpy().decode()] = {
            "labels": sorted(tf.sparse.to_dense(f["labels"]).numpy().tolist()),
            "mean_rgb": f["mean_rgb"].numpy(),
            "mean_audio": f["mean_audio"].numpy() if audio else None,
        }
    return out


# ---------------------------------------------------------------------------------------------
PLAIN, GZ, ZL = WORK / "plain", WORK / "gzip", WORK / "zlib"
vidfeat("run", LIST, "--vocab", "kinetics-400", "--out", PLAIN, "--max-frames", "5", "--shards", "2")
T = truth(PLAIN)
DIMS = next(v["rgb"].shape[1] for v in T.values() if len(v["rgb"]))
PCA = PLAIN / "pca.npz"
vidfeat("run", LIST, "--vocab", "kinetics-400", "--out", GZ, "--max-frames", "5", "--shards", "2", "--pca", PCA,
        "--compression", "gzip", "--legacy-2017", "--audio", "zero")
vidfeat("run", LIST, "--vocab", "kinetics-400", "--out", ZL, "--max-frames", "5", "--shards", "2", "--pca", PCA,
        "--compression", "zlib")
SUMMARY = json.loads((PLAIN / "summary.json").read_text())
print(f"compat: {len(T)} videos, {DIMS} dims, work dir {WORK}", flush=True)


@check("run_reports_every_row")
def _():
    assert SUMMARY["videos_ok"] == 11 and SUMMARY["videos_failed"] == 0, SUMMARY
    assert sum(len(v["rgb"]) for v in T.values()) == SUMMARY["rows"]


@check("tensorflow_frame_level")
def _():
    got = tf_frame_level(shards(PLAIN, "frame"), DIMS, segments=True)
    assert set(got) == set(T), (set(got) ^ set(T))
    for i, v in got.items():
        assert v["labels"] == sorted(T[i]["labels"]), i
        same_rows(v["rgb"], T[i]["rgb"], i)
        starts, labels, scores = v["segments"]
        assert starts == [s["start"] for s in T[i]["segments"]], i
        assert labels == [s["label"] for s in T[i]["segments"]], i
        assert np.allclose(scores, [s["score"] for s in T[i]["segments"]]), i
    assert got["both"]["segments"][0] == [0, 5] and got["both"]["segments"][2] == [1.0, 0.0]


@check("tensorflow_video_level")
def _():
    got = tf_video_level(shards(PLAIN, "video"), DIMS)
    assert set(got) == set(T)
    for i, v in got.items():
        assert v["labels"] == sorted(T[i]["labels"]), i
        same_rows(v["mean_rgb"], T[i]["mean_rgb"], i)
        # The mean is of the unquantized features: where no row was clipped to [-2, 2], within
        # half a bin plus the read-side bias (4/512) of the dequantized rows' mean.
        rows = T[i]["rgb"]
        inside = (rows > -1.98).all(0) & (rows < 1.98).all(0)
        assert inside.sum() > DIMS // 4, inside.sum()
        err = np.abs(v["mean_rgb"] - rows.mean(0))[inside].max()
        assert err <= 2 / 255 + 4 / 512 + 1e-5, (i, err)


@check("tensorflow_gzip_legacy_2017_audio_zero")
def _():
    fr = tf_frame_level(shards(GZ, "frame"), DIMS, compression="GZIP", id_key="video_id", audio=True)
    vl = tf_video_level(shards(GZ, "video"), DIMS, compression="GZIP", id_key="video_id", audio=True)
    assert set(fr) == set(T) == set(vl)
    for i in T:
        same_rows(fr[i]["rgb"], T[i]["rgb"], i)  # same PCA: same bytes as the plain run
        assert fr[i]["audio"].shape == (len(T[i]["rgb"]), 128), i
        assert np.abs(fr[i]["audio"]).max() < 1e-3, "placeholder audio reads back as ~0"
        assert np.all(vl[i]["mean_audio"] == 0.0)
        same_rows(vl[i]["mean_rgb"], T[i]["mean_rgb"], i)


@check("tensorflow_zlib")
def _():
    fr = tf_frame_level(shards(ZL, "frame"), DIMS, compression="ZLIB")
    assert set(fr) == set(T)
    for i in T:
        same_rows(fr[i]["rgb"], T[i]["rgb"], i)
    # And a plain reader must not mistake a compressed shard for records.
    try:
        list(tf.data.TFRecordDataset(shards(ZL, "frame")[:1]))
        raise AssertionError("ZLIB shard read as plain")
    except tf.errors.DataLossError:
        pass


@check("tensorflow_reads_google_shard_with_the_same_specs")
def _():
    # Control: the reader specs used above parse Google's own YouTube-8M video-level shard.
    got = tf_video_level([str(ROOT / "tests/fixtures/yt8m_video_level_validate0000.tfrecord")], 1024, audio=True)
    want = json.loads((ROOT / "tests/fixtures/yt8m_video_level.DERIVED_summary.json").read_text())
    want = want["yt8m_video_level_validate0000.tfrecord"]
    assert len(got) == want["num_records"] and sorted(got) == sorted(want["all_ids"])
    first = want["records_first3"][0]
    assert got[first["id"]]["labels"] == sorted(first["labels"])
    assert np.allclose(got[first["id"]]["mean_rgb"][:4], first["mean_rgb_first4"])
    assert np.allclose(got[first["id"]]["mean_audio"][:4], first["mean_audio_first4"])


@check("pypi_tfrecord_sequence_and_example_loaders")
def _():
    # In its own process, as a PyTorch trainer would run it (see common.py).
    r = subprocess.run([sys.executable, str(ROOT / "tests/compat/pypi_tfrecord.py"), BIN, str(PLAIN), str(GZ)],
                       capture_output=True, text=True, timeout=600)
    print(r.stdout.strip())
    assert r.returncode == 0, r.stderr


def sample(fmt, k=2, seed=3, extra=()):
    out = WORK / f"sample-{fmt}-{k}-{seed}"
    vidfeat("sample", "--from", PLAIN, "--out", out, "--per-class", k, "--seed", seed, "--format", fmt, *extra)
    return out, json.loads((out / "sample.json").read_text())


@check("sample_is_stratified_and_reproducible")
def _():
    out, m = sample("tfrecord")
    out2, m2 = sample("tfrecord")
    assert m["ids"] == m2["ids"], "same seed, same sample"
    counts = defaultdict(int)
    for i in m["ids"]:
        for lab in T[i]["labels"]:
            counts[lab] += 1
    available = defaultdict(int)
    for v in T.values():
        for lab in v["labels"]:
            available[lab] += 1
    for lab, n in available.items():
        assert counts[lab] >= min(2, n), (lab, counts[lab], n)
    got = tf_frame_level(shards(out, "frame"), DIMS)
    assert sorted(got) == sorted(m["ids"])
    for i, v in got.items():
        same_rows(v["rgb"], T[i]["rgb"], i)
    assert (out / "vocabulary.csv").exists()
    _, only = sample("tfrecord", k=1, extra=("--classes", "flipping pancake"))
    assert len(only["ids"]) == 1 and T[only["ids"][0]]["labels"] == [only["classes"][0]], only


@check("sample_npz")
def _():
    out, m = sample("npz")
    z = np.load(out / "sample.npz")
    ids = z["ids"].tolist()
    assert ids == m["ids"]
    assert z["rgb"].dtype == np.float32 and z["rgb"].shape == (m["rows"], DIMS)
    off = z["row_offsets"]
    for n, i in enumerate(ids):
        same_rows(z["rgb"][off[n]:off[n + 1]], T[i]["rgb"], i)
        assert (z["row_video"][off[n]:off[n + 1]] == n).all()
        assert sorted(x for x in z["labels"][n].tolist() if x >= 0) == sorted(T[i]["labels"]), i
        same_rows(z["mean_rgb"][n], T[i]["mean_rgb"], i)


@check("sample_webdataset")
def _():
    out, m = sample("webdataset", extra=("--shard-size", "2"))
    tars = sorted(out.glob("*.tar"))
    assert len(tars) == (len(m["ids"]) + 1) // 2, tars
    got = {}
    for t in tars:
        with tarfile.open(t) as tf_:
            members = {x.name: tf_.extractfile(x).read() for x in tf_.getmembers()}
        keys = {n.split(".", 1)[0] for n in members}
        for key in keys:
            meta = json.loads(members[f"{key}.json"])
            got[meta["id"]] = (meta, np.load(io.BytesIO(members[f"{key}.rgb.npy"])))
    assert sorted(got) == sorted(m["ids"])
    for i, (meta, rgb) in got.items():
        same_rows(rgb, T[i]["rgb"], i)
        assert sorted(meta["labels"]) == sorted(T[i]["labels"])


@check("example_trainer_runs")
def _():
    out, _ = sample("npz", k=3)
    r = subprocess.run([sys.executable, str(ROOT / "examples/train_classifier.py"), str(out / "sample.npz"), "--epochs", "40"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    acc = float(next(ln for ln in r.stdout.splitlines() if ln.startswith("accuracy")).split()[-1])
    print(r.stdout.strip())
    assert acc > 0.5, acc  # four clips, four classes: chance is 0.25


@check("tensorflow_two_model_shard")
def _():
    # EfficientNet (rgb) and Kinetics I3D (clip rows) from one decode into the same records;
    # --predict puts I3D's logits beside them. TensorFlow reads both models' features with the
    # YouTube-8M specs plus the second model's keys; the values are vidfeat's own.
    out = WORK / "two"
    vidfeat("run", LIST, "--vocab", "kinetics-400", "--out", out, "--max-frames", "2", "--shards", "2",
            "--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--feature-name", "rgb", "--feature-name", "i3d",
            "--resize", "center-crop", "--pca-dims", "64", "--predict", "5")
    s = json.loads((out / "summary.json").read_text())
    assert [(f["name"], f["dims"]) for f in s["features"]] == [("rgb", 64), ("i3d", 64)], s["features"]
    want = {}
    for line in vidfeat("inspect", "--values", *shards(out, "frame")).splitlines():
        r = json.loads(line)
        want[r["id"]] = {"rgb": np.array(r["rgb"], dtype=np.float32).reshape(-1, 64),
                         "i3d": np.array(r["values"]["i3d"], dtype=np.float32).reshape(-1, 64)}
    for line in vidfeat("inspect", "--values", *shards(out, "video")).splitlines():
        r = json.loads(line)
        want[r["id"]]["mean_i3d"] = np.array(r["values"]["mean_i3d"], dtype=np.float32)
    seq = {"rgb": tf.io.FixedLenSequenceFeature([], tf.string), "i3d": tf.io.FixedLenSequenceFeature([], tf.string)}
    seen = 0
    for rec in tf.data.TFRecordDataset(shards(out, "frame")):
        c, f = tf.io.parse_single_sequence_example(rec, context_features={"id": tf.io.FixedLenFeature([], tf.string)}, sequence_features=seq)
        i = c["id"].numpy().decode()
        for name in ("rgb", "i3d"):
            rows = dequantize(tf.reshape(tf.cast(tf.io.decode_raw(f[name], tf.uint8), tf.float32), [-1, 64]).numpy())
            same_rows(rows, want[i][name], f"{i} {name}")
        assert len(want[i]["rgb"]) == len(want[i]["i3d"]) > 0, i
        seen += 1
    assert seen == s["videos_ok"] == len(want), (seen, s["videos_ok"])
    # The plain YouTube-8M video-level reader still reads it; the second model's mean and the
    # logits are there too.
    spec = {"id": tf.io.FixedLenFeature([], tf.string), "mean_rgb": tf.io.FixedLenFeature([64], tf.float32),
            "mean_i3d": tf.io.FixedLenFeature([64], tf.float32), "logits": tf.io.FixedLenFeature([400], tf.float32)}
    for rec in tf.data.TFRecordDataset(shards(out, "video")):
        f = tf.io.parse_single_example(rec, spec)
        i = f["id"].numpy().decode()
        assert np.allclose(f["mean_i3d"].numpy(), want[i]["mean_i3d"]), i
    assert tf_video_level(shards(out, "video"), 64).keys() == want.keys()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == seen


failed = [n for n, ok in RESULTS if not ok]
print(f"test result: {'ok' if not failed else 'FAILED'}. {len(RESULTS) - len(failed)} passed; {len(failed)} failed; (compatibility suite, TensorFlow {tf.__version__})")
if not failed:
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if failed else 0)
