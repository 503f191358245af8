"""Small real data sets on the host: inputs, labels, one-hot targets, a fixed split.

Everything here is plain numpy float64 on the host; engines and streams copy
what they need to their own device and dtype. The only data set so far is
scikit-learn's bundled digits (no download), used by Activation Relaxation
training (paper 001, Figs. 2–3) and by the `dataset` input stream (SPEC §2).
"""
from dataclasses import dataclass

import numpy as np

from .backend import rng
from .errors import SimulatorError

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


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise SimulatorError(f"the digits data set needs scikit-learn; {_SKLEARN_HINT}") from exc
    return datasets


def load_digits(seed=0, test_fraction=0.25):
    """scikit-learn's bundled 8x8 handwritten digits as a fixed train/test Dataset.

    1797 images of 64 pixels (values 0..16, scaled here to [0, 1]) and 10
    classes; the split is a seeded random permutation, so the same seed always
    gives the same split. This is the small stand-in for the MNIST experiments
    of Activation Relaxation (paper 001, Figs. 2 and 3).
    """
    raw = _sklearn_datasets().load_digits()
    x = np.asarray(raw.data, dtype=np.float64) / 16.0
    labels = np.asarray(raw.target, dtype=np.int64)
    train, test = split_indices(x.shape[0], test_fraction, seed)
    n_classes = 10
    return Dataset(
        name="digits",
        train_x=x[train], train_labels=labels[train], train_targets=one_hot(labels[train], n_classes),
        test_x=x[test], test_labels=labels[test], test_targets=one_hot(labels[test], n_classes),
        n_classes=n_classes, image_shape=(8, 8))
