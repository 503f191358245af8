"""simulator.datasets, checked against scikit-learn's raw arrays and the
definitions of a split (disjoint, complete, seeded) and of one-hot rows."""
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
