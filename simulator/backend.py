"""Array namespace, device, dtype and host transfer, resolved once per engine:
numpy itself on the CPU (its main namespace is the standard), cupy through
array-api-compat, array-api-strict to prove nothing else slips in. Random
numbers are always drawn on the host from a seeded numpy Generator.
"""
import numpy as np
from array_api_compat import array_namespace

from .errors import DeviceError

DEVICES = ("cpu", "cuda", "strict")
DTYPES = ("float32", "float64")


def _load_namespace(device):
    if device == "cpu":
        return np
    if device == "strict":
        try:
            import array_api_strict
        except ImportError as exc:  # only the test extra installs it
            raise DeviceError("device 'strict' needs array-api-strict "
                              "(pip install -e '.[test]')") from exc
        return array_api_strict
    if device == "cuda":
        try:
            import cupy
            from array_api_compat import cupy as cupy_xp
        except ImportError as exc:
            raise DeviceError("device 'cuda' needs cupy: pip install -e '.[gpu]' "
                              "on a machine with an NVIDIA GPU") from exc
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise DeviceError("device 'cuda': cupy is installed but sees no GPU")
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            raise DeviceError(f"device 'cuda': no usable GPU ({exc})") from exc
        return cupy_xp
    raise DeviceError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")


def cuda_available():
    """True when cupy is installed and sees at least one GPU."""
    try:
        _load_namespace("cuda")
    except DeviceError:
        return False
    return True


def to_host(array):
    """numpy view/copy of an array from any supported namespace."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get") and type(array).__module__.startswith("cupy"):
        return array.get()
    return np.from_dlpack(array)


class Backend:
    """One array namespace and dtype, resolved at engine construction."""

    def __init__(self, device="cpu", dtype="float64"):
        if dtype not in DTYPES:
            raise DeviceError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        self.device = device
        self.xp = _load_namespace(device)
        self.dtype_name = dtype
        self.dtype = getattr(self.xp, dtype)
        self.host_dtype = np.dtype(dtype)
        # array_api_compat imports a library's wrapper on first use (the
        # oracle's): here, not inside a timed simulation.
        array_namespace(self.zeros((1,)))

    def asarray(self, host_array, dtype=None):
        """Copy a host (numpy) array to the device, in the engine dtype by default."""
        dt = self.dtype if dtype is None else dtype
        return self.xp.asarray(np.ascontiguousarray(host_array), dtype=dt)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=self.dtype)

    # A numpy copy of a device array: the only way data leaves the device.
    to_host = staticmethod(to_host)

    def __repr__(self):
        return f"Backend(device={self.device!r}, dtype={self.dtype_name!r})"


def rng(seed):
    """The seeded host Generator every random draw comes from."""
    return np.random.default_rng(seed)
