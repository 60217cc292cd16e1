"""Datasets over .npy files read what the user sees (issue 18): a
copy-on-write map's changes, never a file replaced under the Dataset, never
a write mode that truncates, and files that are not .npy named as such."""

from __future__ import annotations

import os

import numpy as np
import pytest

import portnn
from portnn.data import Dataset


def _save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


def _xy(tmp_path, n=64):
    rs = np.random.default_rng(0)
    x = (rs.normal(size=(n, 4)) * 50 + 100).astype(np.float32)  # raw scale
    y = (x[:, 0] > 100).astype(np.int64)
    return _save(tmp_path, "x.npy", x), _save(tmp_path, "y.npy", y), x, y


@pytest.mark.parametrize("via", ["from_npy", "from_arrays"])
def test_copy_on_write_changes_are_what_training_reads(tmp_path, via):
    px, py, x, _ = _xy(tmp_path)
    if via == "from_npy":
        ds = Dataset.from_npy(px, py, mmap_mode="c")
        mapped = ds.arrays[0]
    else:
        mapped = np.load(px, mmap_mode="c")
        ds = Dataset.from_arrays(mapped, np.load(py, mmap_mode="r"))
    mapped -= mapped.mean(axis=0)  # standardize in memory
    mapped /= mapped.std(axis=0)
    rows = np.array([5, 0, 7])
    np.testing.assert_array_equal(ds[rows][0], np.asarray(mapped)[rows])
    assert abs(float(ds[np.arange(64)][0].mean())) < 1e-4
    assert np.array_equal(np.load(px), x)  # the file is untouched


def test_a_file_replaced_after_the_dataset_was_made_is_refused(tmp_path):
    px, py, x, _ = _xy(tmp_path)
    ds = Dataset.from_npy(px, py)
    ds[np.array([0, 1])]  # opened and read once
    np.save(px, np.zeros((32, 8), np.float64))  # another dtype and shape
    with pytest.raises(OSError, match="changed on disk after the Dataset was made"):
        ds[np.array([2, 3])]
    px2, _, _, _ = _xy(tmp_path / "..")
    ds = Dataset.from_npy(px2, py)
    os.replace(_save(tmp_path, "other.npy", x[:10]), px2)  # before any read
    with pytest.raises(OSError, match="make the Dataset again"):
        ds[np.array([0])]


def test_write_modes_are_refused_and_the_file_kept(tmp_path):
    px, _, x, _ = _xy(tmp_path)
    for mode in ("w+", "r+", "x"):
        with pytest.raises(ValueError, match="mmap_mode must be 'r' or 'c'"):
            Dataset.from_npy(px, mmap_mode=mode)
    assert np.array_equal(np.load(px), x) and os.path.getsize(px) > 1000


def test_files_that_are_not_npy_arrays_are_named(tmp_path):
    npz = tmp_path / "data.npz"
    np.savez(npz, x=np.ones((4, 2)))
    with pytest.raises(ValueError, match="is an .npz archive.*from_arrays"):
        Dataset.from_npy(npz)
    text = tmp_path / "data.csv"
    text.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="is not an .npy file.*loadtxt"):
        Dataset.from_npy(text)
    scalar = _save(tmp_path, "s.npy", np.float32(3.0))
    with pytest.raises(ValueError, match="0-d array; a dataset needs one row"):
        Dataset.from_npy(scalar)


def test_a_standardized_copy_on_write_map_trains_as_the_array_does(tmp_path):
    px, py, x, y = _xy(tmp_path, n=128)
    mapped = np.load(px, mmap_mode="c")
    mapped -= mapped.mean(axis=0)
    mapped /= mapped.std(axis=0)
    losses = []
    for data in (Dataset.from_arrays(mapped, np.load(py, mmap_mode="r")),
                 Dataset.from_arrays(np.array(mapped), y)):
        portnn.seed(0)
        model = portnn.Sequential(portnn.Dense(4, 8), portnn.Tanh(), portnn.Dense(8, 2))
        h = model.fit(data, loss="cross_entropy", epochs=2, verbose=0, shuffle=False)
        losses.append(h["loss"])
    assert losses[0] == losses[1]
