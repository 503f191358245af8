"""The tick engine on an NVIDIA GPU (cupy) against a hand-written cupy backprop
step of the same network and against the numpy engine on the CPU, measured in
the same run (ratios are the result). Needs cupy and a GPU:

    python benchmarks/bench_gpu.py [--quick]

Shapes users have: the paper scale (L = 9, width 16, batch 1, float64, where
every kernel is tiny and launch overhead rules), the large scale (L = 4, width
1024, batch 64, float32), a wide batch (L = 4, width 1024, batch 1024, float32),
an image-shaped unequal chain (784-256-256-10, batch 256, float32) and a deep
chain (L = 64, width 32, batch 8, float32); frozen and learning.
"""
import argparse
import time

import numpy as np

from bench_engine import backprop_step  # noqa: E402 (benchmarks/ is on sys.path)
from simulator import Network
from simulator.backend import cuda_available
from simulator.engine import Engine

SHAPES = [
    ("paper L=9 w=16 B=1 f64", [16] * 10, 1, "float64"),
    ("large L=4 w=1024 B=64 f32", [1024] * 5, 64, "float32"),
    ("wide batch L=4 w=1024 B=1024 f32", [1024] * 5, 1024, "float32"),
    ("image 784-256-256-10 B=256 f32", [784, 256, 256, 10], 256, "float32"),
    ("deep L=64 w=32 B=8 f32", [32] * 65, 8, "float32"),
]


def cupy_backprop_step(cp, ws, bs, u, y, eta):
    """bench_engine's backprop step on cupy arrays, then (when eta) SGD in place."""
    for w, g in zip(ws, backprop_step(ws, bs, u, y, xp=cp)):
        if eta:
            w -= eta * g


def timed(fn, n, sync, repeats=3):
    """Best per-call seconds of ``n`` calls over ``repeats`` runs, device synchronised."""
    best = np.inf
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def measure(label, sizes, batch, dtype, eta, n):
    import cupy as cp
    acts = ["tanh"] * (len(sizes) - 2) + ["linear"]
    net = Network.random(sizes, acts, seed=0)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(batch, sizes[0])).astype(dtype)
    y = rng.normal(size=(batch, sizes[-1])).astype(dtype)
    gpu = Engine(net, batch=batch, dtype=dtype, learning_rate=eta, device="cuda")
    cpu = Engine(net, batch=batch, dtype=dtype, learning_rate=eta, device="cpu")
    ud, yd = cp.asarray(u), cp.asarray(y)
    ws = [cp.asarray(w, dtype=dtype) for w in net.weights]
    bs = [cp.asarray(b, dtype=dtype) for b in net.biases]
    sync = cp.cuda.Device().synchronize
    for _ in range(3):      # warm up kernels and the memory pool
        gpu.step(ud, yd)
        cupy_backprop_step(cp, ws, bs, ud, yd, eta)
    t_gpu = timed(lambda: gpu.step(ud, yd), n, sync)
    t_bp = timed(lambda: cupy_backprop_step(cp, ws, bs, ud, yd, eta), n, sync)
    t_cpu = timed(lambda: cpu.step(u, y), max(2, n // 10), lambda: None)
    mode = "learning" if eta else "frozen"
    print(f"{label:34s} {mode:8s} gpu tick {t_gpu * 1e6:9.1f} us | cupy backprop step "
          f"{t_bp * 1e6:9.1f} us | ratio {t_gpu / t_bp:5.2f}x | numpy engine on CPU "
          f"{t_cpu * 1e6:10.1f} us = {t_cpu / t_gpu:6.1f}x the GPU tick")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    if not cuda_available():
        raise SystemExit("bench_gpu: needs cupy and an NVIDIA GPU (pip install -e '.[gpu]')")
    import cupy as cp
    print(f"GPU: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}, cupy {cp.__version__}")
    n = 50 if args.quick else 300
    for label, sizes, batch, dtype in SHAPES:
        for eta in (0.0, 1e-6):
            measure(label, sizes, batch, dtype, eta, n)


if __name__ == "__main__":
    main()
