"""Tick cost of the graph engine (``simulator.engine.tick.GraphEngine``) against
baselines measured in the same run; ratios, not absolute times, are the result.

    python benchmarks/bench_graph.py [--quick]

Every tick is learning on (g formed and W ← W − ηg applied every tick), one
BLAS thread, float32 unless said. The baselines:

- ``hand``: a hand-written per-layer numpy tick of the same network, in this
  file: each layer moves forward one layer per tick from the previous state
  (pre = x Wᵀ + b, x = tanh(pre), σ'), the delta moves back one layer per tick
  (δ ← σ' ⊙ δ_child W), and every layer forms g = δᵀx and applies W −= ηg,
  b −= η Σδ — the same work as a tick, plain numpy with fresh arrays.
  For the conv net the same with im2col through ``sliding_window_view``.

Sections: heterogeneous dense chains (B = 16), paper scale (L = 9, width 16,
B = 1, float64), a small conv net on 28×28 inputs (B = 16) and a deep chain
(L = 64, width 32, B = 8), each vs hand; then how
tick cost grows with depth, width, batch and channels, and the per-vertex
Python floor (the width below which a tick costs the same whatever the size).
The machine is usually shared: every time is the best of several repeats.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads, in case threadpoolctl is absent

import argparse  # noqa: E402

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

from bench_engine import best_of  # noqa: E402 (benchmarks/ is on sys.path)
from simulator.model.graph import Model  # noqa: E402
from simulator.engine.tick import GraphEngine  # noqa: E402

ETA = 1e-4


def one_blas_thread():
    """Limit BLAS to one thread for the whole run (threadpoolctl if installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1)


def dense_layers(sizes):
    """Layer dicts of a dense chain: tanh hidden layers, linear output."""
    return [{"name": f"d{l}", "kind": "dense", "units": n,
             "activation": "tanh" if l < len(sizes) - 1 else "linear"}
            for l, n in enumerate(sizes[1:], 1)]


def conv_layers(c1=8, c2=16):
    """conv 1→c1 k3 p1, avgpool 2, conv c1→c2 k3 p1, avgpool 2, flatten, dense 10."""
    return [{"name": "c1", "kind": "conv2d", "channels": c1, "kernel": 3, "padding": 1},
            {"name": "p1", "kind": "pool", "size": 2},
            {"name": "c2", "kind": "conv2d", "channels": c2, "kernel": 3, "padding": 1},
            {"name": "p2", "kind": "pool", "size": 2},
            {"name": "f", "kind": "flatten"},
            {"name": "out", "kind": "dense", "units": 10, "activation": "linear"}]


class HandDense:
    """The hand-written per-layer tick of a dense chain (module docstring)."""

    def __init__(self, model, batch, dtype):
        p = model.parameters()
        L = len(model) - 1
        self.W = [p[f"d{l}.W"].astype(dtype) for l in range(1, L + 1)]
        self.b = [p[f"d{l}.b"].astype(dtype) for l in range(1, L + 1)]
        sizes = [self.W[0].shape[1]] + [w.shape[0] for w in self.W]
        self.x = [np.zeros((batch, n), dtype) for n in sizes]
        self.s = [np.zeros((batch, n), dtype) for n in sizes]
        self.d = [np.zeros((batch, n), dtype) for n in sizes]

    def step(self, u, y):
        W, b, x, s, d = self.W, self.b, self.x, self.s, self.d
        L = len(W)
        xn, sn, dn = [u], [None], [None]
        for l in range(1, L + 1):          # forward: one layer per tick
            a = x[l - 1] @ W[l - 1].T + b[l - 1]
            if l < L:
                z = np.tanh(a)
                xn.append(z)
                sn.append(1.0 - z * z)
            else:
                xn.append(a)
                sn.append(None)
        for l in range(1, L):              # backward: one layer per tick
            dn.append(s[l] * (d[l + 1] @ W[l]))
        dn.append(xn[L] - y)
        for l in range(1, L + 1):          # g = δᵀx, W −= ηg
            e = ETA * dn[l]
            W[l - 1] -= e.T @ xn[l - 1]
            b[l - 1] -= e.sum(axis=0)
        self.x, self.s, self.d = xn, sn, dn


def _cols(x, k=3, p=1):
    """im2col (B, C·k·k, H·W) of a stride-1 zero-padded convolution."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))      # B, C, H, W, k, k
    b, c, h, w = x.shape
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(b, c * k * k, h * w)


def _conv(x, W, bias):
    o = W.shape[0]
    b, _, h, w = x.shape
    return (W.reshape(o, -1) @ _cols(x)).reshape(b, o, h, w) + bias[:, None, None]


def _conv_input_grad(d, W):
    """∂/∂x of a stride-1, pad-1, 3×3 convolution: the padded delta correlated
    with the flipped kernel, channels swapped."""
    wf = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return _conv(d, np.ascontiguousarray(wf), np.zeros(wf.shape[0], d.dtype))


def _pool(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def _unpool(d):
    return np.repeat(np.repeat(d, 2, axis=2), 2, axis=3) * 0.25


class HandConv:
    """The hand-written per-layer tick of ``conv_layers`` (tanh convs, avg pools,
    linear dense output): the six vertices of the graph, one stage each."""

    def __init__(self, model, batch, dtype):
        p = {k: a.astype(dtype) for k, a in model.parameters().items()}
        self.p = p
        self.shapes = [(1, 28, 28)] + [v.shape for v in model.vertices[1:]]
        self.x = [np.zeros((batch,) + s, dtype) for s in self.shapes]
        self.s = [np.zeros((batch,) + s, dtype) for s in self.shapes]
        self.d = [np.zeros((batch,) + s, dtype) for s in self.shapes]

    def step(self, u, y):
        p, x, s, d = self.p, self.x, self.s, self.d
        xn, sn = [u, None, None, None, None, None, None], [None] * 7
        z = np.tanh(_conv(x[0], p["c1.W"], p["c1.b"]))
        xn[1], sn[1] = z, 1.0 - z * z
        xn[2] = _pool(x[1])
        z = np.tanh(_conv(x[2], p["c2.W"], p["c2.b"]))
        xn[3], sn[3] = z, 1.0 - z * z
        xn[4] = _pool(x[3])
        xn[5] = x[4].reshape(x[4].shape[0], -1)
        xn[6] = x[5] @ p["out.W"].T + p["out.b"]
        dn = [None] * 7
        dn[6] = xn[6] - y
        dn[5] = d[6] @ p["out.W"]
        dn[4] = d[5].reshape(d[4].shape)
        dn[3] = s[3] * _unpool(d[4])
        dn[2] = _conv_input_grad(d[3], p["c2.W"])
        dn[1] = s[1] * _unpool(d[2])
        for name, v, parent in (("c1", 1, 0), ("c2", 3, 2)):
            e = ETA * dn[v]
            b, o = e.shape[0], e.shape[1]
            e = e.reshape(b, o, -1)
            p[f"{name}.W"] -= (e @ _cols(xn[parent]).transpose(0, 2, 1)).sum(axis=0).reshape(
                p[f"{name}.W"].shape)
            p[f"{name}.b"] -= e.sum(axis=(0, 2))
        e = ETA * dn[6]
        p["out.W"] -= e.T @ xn[5]
        p["out.b"] -= e.sum(axis=0)
        self.x, self.s, self.d = xn, sn, dn


def frames(shape_u, shape_y, batch, dtype, seed=0):
    g = np.random.default_rng(seed)
    return (g.normal(size=(batch,) + shape_u).astype(dtype),
            g.normal(size=(batch,) + shape_y).astype(dtype))


def graph_engine(model, batch, dtype):
    return GraphEngine(model, learning_rate=ETA, batch=batch, dtype=dtype)


def time_dense(sizes, batch, dtype, n, versus=("hand",)):
    """{name: seconds per tick} of the graph engine and the baselines on a chain."""
    model = Model.from_layers(dense_layers(sizes), (sizes[0],), seed=0)
    u, y = frames((sizes[0],), (sizes[-1],), batch, dtype)
    runs = {"graph": graph_engine(model, batch, dtype)}
    if "hand" in versus:
        runs["hand"] = HandDense(model, batch, dtype)
    return {k: best_of(lambda e=e: e.step(u, y), n) for k, e in runs.items()}


def time_conv(batch, n, c1=8, c2=16, dtype="float32"):
    model = Model.from_layers(conv_layers(c1, c2), (1, 28, 28), seed=0)
    u, y = frames((1, 28, 28), (10,), batch, dtype)
    runs = {"graph": graph_engine(model, batch, dtype), "hand": HandConv(model, batch, dtype)}
    return {k: best_of(lambda e=e: e.step(u, y), n) for k, e in runs.items()}


def chain(L, width):
    return [width] * (L + 1)


def wobble(L, width):
    """Widths alternating width, width + 1: no two neighbours share a shape."""
    return [width + (l % 2) for l in range(L + 1)]


def us(t):
    return f"{t * 1e6:9.1f} us"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    q = 0.2 if args.quick else 1.0

    def n(k):
        return max(3, int(k * q))

    limits = one_blas_thread()
    print(f"one BLAS thread via {'threadpoolctl' if limits is not None else 'env vars'}; "
          "learning on; best of 5 repeats")
    results = []

    print("\n1. heterogeneous dense chains, B=16, float32 (target graph/hand <= 1.2)")
    for sizes in ([784, 32, 32, 10], [784, 256, 256, 10], [2048, 64, 64, 64, 10],
                  [64, 300, 300, 100, 10]):
        t = time_dense(sizes, 16, "float32", n(400))
        r = t["graph"] / t["hand"]
        results.append(("dense " + "-".join(map(str, sizes)), r, 1.2))
        print(f"  {'-'.join(map(str, sizes)):>20}: graph {us(t['graph'])}  hand {us(t['hand'])}"
              f"  graph/hand {r:5.2f}x")

    print("\n2. paper scale: L=9, width 16, B=1, float64 (target graph/hand <= 1.3)")
    t = time_dense(chain(9, 16), 1, "float64", n(3000))
    r = t["graph"] / t["hand"]
    results.append(("paper scale", r, 1.3))
    print(f"  graph {us(t['graph'])}  hand {us(t['hand'])}  graph/hand {r:5.2f}x")

    print("\n3. conv net on 28x28 (conv 1->8 k3 p1, avgpool 2, conv 8->16 k3 p1, avgpool 2, "
          "flatten, dense 10), B=16, float32 (target graph/hand <= 1.5)")
    t = time_conv(16, n(100))
    r = t["graph"] / t["hand"]
    results.append(("conv net", r, 1.5))
    print(f"  graph {us(t['graph'])}  hand {us(t['hand'])}  graph/hand {r:5.2f}x")

    print("\n4. deep chain: L=64, width 32, B=8, float32 (target graph/hand <= 1.0)")
    t = time_dense(chain(64, 32), 8, "float32", n(300))
    r = t["graph"] / t["hand"]
    results.append(("deep chain", r, 1.0))
    print(f"  graph {us(t['graph'])}  hand {us(t['hand'])}  graph/hand {r:5.2f}x")

    print("\n5. growth of the graph engine's tick (float32)")
    print("  depth (width 32, B=8):     L   graph          hand           graph/hand")
    for L in (2, 4, 8, 16, 32, 64, 128):
        t = time_dense(chain(L, 32), 8, "float32", n(max(30, 2000 // L)))
        print(f"  {L:30d} {us(t['graph'])}   {us(t['hand'])}   {t['graph'] / t['hand']:5.2f}x"
              f"   ({t['graph'] / L * 1e6:.1f} us/layer)")
    print("  width (L=4, B=16):         w   graph          hand           graph/hand")
    floor = None
    for w in (4, 16, 64, 256, 1024):
        t = time_dense(chain(4, w), 16, "float32", n(max(10, 20000 // w)))
        floor = floor or t["graph"]
        print(f"  {w:30d} {us(t['graph'])}   {us(t['hand'])}   {t['graph'] / t['hand']:5.2f}x"
              f"   ({t['graph'] / floor:5.1f}x the w=4 tick)")
    print("  batch (784-256-256-10):    B   graph          hand           graph/hand")
    for b in (1, 4, 16, 64, 256):
        t = time_dense([784, 256, 256, 10], b, "float32", n(max(10, 2000 // b)))
        print(f"  {b:30d} {us(t['graph'])}   {us(t['hand'])}   {t['graph'] / t['hand']:5.2f}x")
    print("  channels (conv net c->2c, B=16):  c   graph     hand           graph/hand")
    for c in (2, 4, 8, 16, 32):
        t = time_conv(16, n(max(10, 400 // c)), c, 2 * c)
        print(f"  {c:30d} {us(t['graph'])}   {us(t['hand'])}   {t['graph'] / t['hand']:5.2f}x")

    print("\n6. Python floor: per-vertex cost of a tick when arrays are tiny (widths 1/2")
    print("   alternating, B=1, so no run is stacked), against the width at which BLAS work")
    print("   doubles it (widths w/w+1 alternating, L=8, B=16, float32)")
    t1 = time_dense(wobble(8, 1), 1, "float32", n(2000), versus=())["graph"]
    print(f"  floor: {us(t1)} per tick = {t1 / 8 * 1e6:.1f} us per vertex")
    for w in (16, 32, 64, 128, 256, 512, 1024):
        tw = time_dense(wobble(8, w), 16, "float32", n(max(10, 20000 // w)),
                        versus=())["graph"]
        print(f"  width {w:5d}: {us(tw)} = {tw / t1:5.1f}x the floor")
        if tw > 2 * t1:
            print(f"  -> above width ~{w} (B=16) BLAS outweighs the Python overhead")
            break

    print("\nsummary (ratio, target, met?)")
    for name, r, target in results:
        print(f"  {name:>28}: {r:5.2f}x  <= {target:.1f}  {'met' if r <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
