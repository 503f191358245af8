# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Your own graph: levelling and facts A′–D′
#
# Betti & Gori's waves ([arXiv:1912.04635](https://arxiv.org/abs/1912.04635))
# run on a chain. tickprop runs the same tick rule on any directed acyclic graph
# of layers — convolutions, pools, residual merges, attention — vertex by vertex:
#
#     x[t+1,v] = f_v(x[t, parents(v)])
#     δ[t+1,v] = D[t,v] ⊙ Σ over children c of VJP_c(δ[t,c])
#     g[t,v]   = the parameter gradient of v from δ[t,v] and x[t, parents(v)]
#
# A skip connection makes two paths of different lengths into one vertex, so that
# vertex sums frames of different ages. **Levelling** (Algorithm 2 of Salvatori
# et al., *Reverse differentiation via predictive coding*,
# [arXiv:2103.04689](https://arxiv.org/abs/2103.04689)) inserts identity vertices
# (pure one-tick delays) on short edges until every path into a vertex has one
# length; it changes neither the function nor its gradients.
#
# The chain's facts A–D (tutorial 2) generalize with path lengths. Let fwd(v) be
# the longest path from the input to v, bwd(v) the longest path from v to the
# output and D = fwd(output):
#
# - **A′** constant input, frozen weights: the g of v's parameters equals
#   backprop's gradient from tick **D + bwd(v)** on, levelled or not.
# - **B′** levelled, `frame` derivative and pairing, d_y = D, any stream: g[t,v]
#   is exactly backprop's gradient of frame **t − 2D + level(v)**.
# - **C′/D′** linear layers, `linear` loss, d_y = 0, any stream: the
#   **synchronization set** — vertices all of whose input paths have one length
#   a + 1 and all of whose output paths have one length b = a — gets the exact
#   gradient of frame t − b; no other vertex does.

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np

import simulator
from simulator import Engine, Model, reference, render, sync_set

# %% [markdown]
# ## A graph of your own
#
# `Model.from_layers` takes a list of layer tables — exactly what a scene's
# `[[network.layers]]` holds. Each has a `name`, a `kind` and `from` (default:
# the layer listed before; `"input"` or a list for a merge). The last listed
# layer is the output. Here: a 3×3 convolution on a 6×6 image, an average pool,
# three dense layers, a residual merge `r = tanh(h3 + h1)` that skips h2 and h3,
# and two more dense layers.

# %%
LAYERS = [
    {"name": "conv", "kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1,
     "bias_scale": 0.3},
    {"name": "pool", "kind": "pool", "size": 2},
    {"name": "flat", "kind": "flatten"},
    {"name": "h1", "kind": "dense", "units": 8, "bias_scale": 0.3},
    {"name": "h2", "kind": "dense", "units": 8, "bias_scale": 0.3},
    {"name": "h3", "kind": "dense", "units": 8, "bias_scale": 0.3},
    {"name": "r", "kind": "add", "from": ["h3", "h1"], "activation": "tanh"},
    {"name": "h4", "kind": "dense", "units": 8, "bias_scale": 0.3},
    {"name": "out", "kind": "dense", "units": 3, "activation": "linear"},
]
INPUT = (1, 6, 6)
model = Model.from_layers(LAYERS, input_shape=INPUT, seed=0)
print("vertices:", model.names)
print("parameters:", {k: v.shape for k, v in model.parameters().items()})
print("levels (longest path from the input):", model.levels(), "| D =", model.depth)

# %% [markdown]
# ### Path lengths by hand
#
# As our oracle for the facts we enumerate every path of the graph from the
# layer tables themselves, not from tickprop's graph code.


# %%
def path_lengths(layers):
    """{v: (set of path lengths input -> v, set of path lengths v -> output)}."""
    parents, order = {}, []
    for i, layer in enumerate(layers):
        src = layer.get("from", layers[i - 1]["name"] if i else "input")
        parents[layer["name"]] = [src] if isinstance(src, str) else list(src)
        order.append(layer["name"])
    into = {"input": {0}}
    for v in order:
        into[v] = {k + 1 for p in parents[v] for k in into[p]}
    out_of = {order[-1]: {0}}
    for v in reversed(["input"] + order[:-1]):
        out_of[v] = {k + 1 for c in order if v in parents[c] for k in out_of[c]}
    return {v: (into[v], out_of[v]) for v in ["input"] + order}


paths = path_lengths(LAYERS)
D = max(paths["out"][0])
for v, (a, b) in paths.items():
    print(f"{v:>5}: paths in {sorted(a)}, paths out {sorted(b)}")
assert D == model.depth == 9
assert all(model.levels()[v] == max(a) for v, (a, b) in paths.items())

# %% [markdown]
# r is reached by paths of lengths 5 (over the skip) and 7, so unlevelled
# x[t,r] sums h3's value, which carries frame t − 7, and h1's, which carries the
# newer frame t − 5. This is what the waves of a residual network look like.
# `model.level()` puts two identity vertices on the skip h1 → r, named
# `_id_r_1_0`, `_id_r_1_1` (r's input number 1, steps 0 and 1); the function is
# the same, and so are backprop's gradients.

# %%
levelled = model.level()
print("levelled:", levelled.names)
rng = np.random.default_rng(0)
u, y = rng.normal(size=(2,) + INPUT), rng.normal(size=(2, 3))
G, G_lev = reference.backprop(model, u, y), reference.backprop(levelled, u, y)
assert set(G) == set(G_lev)
assert max(np.abs(G[k] - G_lev[k]).max() for k in G) < 1e-15
assert len(levelled.names) == len(model.names) + 2

# %% [markdown]
# The reference backprop `reference.backprop(model, u, y)` is the oracle the
# engine is measured against. It is itself checked against central finite
# differences of the loss; here once more, for every weight of the convolution.

# %%
params, eps = model.parameters(), 1e-6
fd = np.zeros_like(params["conv.W"])
for idx in itertools.product(*map(range, fd.shape)):
    plus, minus = dict(params), dict(params)
    plus["conv.W"], minus["conv.W"] = params["conv.W"].copy(), params["conv.W"].copy()
    plus["conv.W"][idx] += eps
    minus["conv.W"][idx] -= eps
    fd[idx] = (reference.loss_value(model, u, y, params=plus)
               - reference.loss_value(model, u, y, params=minus)) / (2 * eps)
fd_err = np.linalg.norm(fd - G["conv.W"]) / np.linalg.norm(G["conv.W"])
print(f"conv.W: backprop vs finite differences {fd_err:.1e}")
assert fd_err < 1e-7

# %% [markdown]
# ## The waves on the graph
#
# A scene can be a Python dict: the same sections as a `.toml` file. The raster
# draws one row per vertex ordered by level, the edges as arcs at the left
# (a skip over several levels is drawn dark), and outlines the synchronization
# set in amber. Unlevelled (above) r mixes the frames of its two paths;
# levelled (below) the identity vertices (grey italics) carry the skip.

# %%
scene = {"description": "tutorial 3: conv + residual graph, constant input",
         "kind": "diffusion",
         "network": {"input_shape": list(INPUT), "layers": LAYERS, "levelled": False},
         "stream": {"kind": "constant"}, "rule": {"supervision_delay": 0},
         "run": {"ticks": 30, "seed": 0}}
plain = simulator.simulate(scene)
render.show(render.waves(plain))
lev_trace = simulator.simulate(scene, {"network.levelled": True})
render.show(render.waves(lev_trace))

# %% [markdown]
# The tags say the same in numbers: at the last tick r's x holds frames from
# `tag_input` (the oldest, via the long path) to `tag_input_hi` (the newest, via
# the skip) — two frames apart unlevelled, one frame levelled.

# %%
def spread(trace, name):
    v = list(trace["vertex_names"]).index(name)
    return int(trace["tag_input_hi"][-1, v] - trace["tag_input"][-1, v])


print("frames mixed in r: unlevelled", spread(plain, "r"), "| levelled", spread(lev_trace, "r"))
assert spread(plain, "r") == max(paths["r"][0]) - min(paths["r"][0]) == 2
assert spread(lev_trace, "r") == 0

# %% [markdown]
# ## Fact A′: exact from tick D + bwd(v)
#
# We step the engine (`Engine(model, ...)` is the graph engine; `levelled=`
# chooses the graph it runs) on a constant frame and find each weight's first
# tick from which g stays within 1e-12 of backprop.

# %%
def first_exact_ticks(levelled_run, ticks=2 * D + 3):
    eng = Engine(model, supervision_delay=0, levelled=levelled_run, batch=2)
    errs = []
    for _ in range(ticks):
        eng.step(u, y)
        g = eng.gradients()
        errs.append({k: np.linalg.norm(g[k] - G[k]) / np.linalg.norm(G[k]) for k in G})
    return {k: 1 + max(t for t, e in enumerate(errs) if e[k] >= 1e-12) for k in G}, errs


want = {k: D + max(paths[k.split(".")[0]][1]) for k in G}
for run_levelled in (False, True):
    first, errs = first_exact_ticks(run_levelled)
    print("levelled" if run_levelled else "as written", {k: first[k] for k in G if k[-1] == "W"})
    assert first == want
    assert max(e[k] for e in errs[max(want.values()):] for k in G) < 1e-12

# %% [markdown]
# conv is exact from tick 9 + 8 = 17, the output layer from 9: levelling only
# lengthens short edges, so the longest paths — and A′'s ticks — are unchanged.
#
# ## Fact B′: pipelined backprop on the levelled graph
#
# With the `frame` options and the causal delay d_y = D, every vertex of the
# levelled graph holds backprop's gradient of frame t − 2D + level(v) on a
# stream of white noise.

# %%
T = 4 * D
us, ys = rng.normal(size=(T, 2) + INPUT), rng.normal(size=(T, 2, 3))
frames_G = [reference.backprop(model, us[s], ys[s]) for s in range(T)]
eng = Engine(model, derivative="frame", pairing="frame", supervision_delay=D,
             levelled=True, batch=2)
worst = 0.0
for t in range(T):
    eng.step(us[t], ys[t])
    g = eng.gradients()
    for k in G:
        s = t - 2 * D + model.levels()[k.split(".")[0]]
        if s >= 0:
            worst = max(worst, np.linalg.norm(g[k] - frames_G[s][k])
                        / np.linalg.norm(frames_G[s][k]))
print(f"B′: worst error over every parameter and tick: {worst:.1e}")
assert worst < 1e-12

# %% [markdown]
# ## Facts C′/D′: the synchronization set
#
# From the path lengths: a vertex v is synchronized when every path into its
# inputs has one length a, every path out of v one length b, and a = b.
# `sync_set(model)` computes the same from tickprop's graph. Here it is h2
# (inputs at distance 4, output 4 levels away); levelled, also the first
# identity vertex on the skip (which has no weights).

# %%
def synchronized(layers):
    p = path_lengths(layers)
    return [v for v, (a, b) in p.items() if v != "input" and len(a) == 1 and len(b) == 1
            and min(a) - 1 == min(b)]


print("sync set:", sync_set(model), "| levelled:", sync_set(levelled))
assert sync_set(model) == synchronized(LAYERS) == ["h2"]

linear_layers = [dict(layer, activation="linear") if layer["kind"] in ("conv2d", "dense", "add")
                 else layer for layer in LAYERS]
linear = Model.from_layers(linear_layers, input_shape=INPUT, seed=0)
b = max(paths["h2"][1])
eng = Engine(linear, loss="linear", supervision_delay=0, batch=2)
errs = []
for t in range(T):
    eng.step(us[t], ys[t])
    if t >= 2 * D:
        want_g = reference.backprop(linear, us[t - b], ys[t - b], "linear")
        g = eng.gradients()
        errs.append([np.linalg.norm(g[k] - want_g[k]) / np.linalg.norm(want_g[k])
                     for k in G if k.endswith(".W")])
errs = np.array(errs)
keys = [k for k in G if k.endswith(".W")]
print("worst error vs frame t − 4:", {k: round(float(e), 3) for k, e in zip(keys, errs.max(0))})
assert errs[:, keys.index("h2.W")].max() < 1e-12
assert np.delete(errs, keys.index("h2.W"), axis=1).min() > 1e-3

fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
ax.bar(keys, np.maximum(errs.max(0), 1e-17), color=["orange" if k == "h2.W" else "grey"
                                                     for k in keys])
ax.set_yscale("log")
ax.set_ylim(1e-18, 1e2)
h2_err = errs[:, keys.index("h2.W")].max()
ax.annotate(f"h2: {h2_err:.0e}" if h2_err else "h2: exactly 0", (keys.index("h2.W"), 1e-16),
            ha="center", fontsize=9)
ax.set(ylabel="worst ‖g − ∇‖/‖∇‖", title="D′: white noise, linear graph: only h2 is exact")
render.show(fig)

# %% [markdown]
# **What we checked.** Levelling adds two identity vertices and leaves
# backprop's gradients unchanged (< 1e-15); the reference matches finite
# differences (< 1e-7); r mixes frames two apart unlevelled and one levelled;
# A′ — each weight exact from D + bwd(v) (conv 17, h1 14, h2 13, h3 12, h4 10,
# out 9), levelled or not; B′ — levelled frame options are pipelined backprop to
# 1e-12; C′/D′ — the synchronization set {h2}, found by path enumeration and by
# `sync_set`, is exact on white noise, every other weight is not.
