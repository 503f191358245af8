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
# # 1. The two waves
#
# Betti & Gori, *Backprop diffusion is biologically plausible*
# ([arXiv:1912.04635](https://arxiv.org/abs/1912.04635)), ask what happens to
# backpropagation when every neuron needs one time step to respond. tickprop
# simulates exactly that. Layers l = 0..L (0 the input, L the output) all update
# once per **tick**, from the state of the tick before:
#
#     x[t+1,0]   = u[t+1]                                (the input stream)
#     x[t+1,l+1] = σ(W_l x[t,l] + b_l)                   (forward, one layer per tick)
#     δ[t+1,L]   = σ'(a[t+1,L]) ⊙ ∂ℓ/∂x(x[t+1,L], y)      (the output error)
#     δ[t+1,l]   = σ'(a[t,l]) ⊙ (W_lᵀ δ[t,l+1])          (backward, one layer per tick)
#     g[t,l]     = δ[t,l] x[t,l−1]ᵀ                      (the paper's Eq. 5)
#
# So the input climbs the network as a **forward wave** (the paper's Eq. 2) and
# the output error descends it as a **backward wave** (Eq. 4). Each layer's
# g[t,l] is its local estimate of the backprop gradient ∂ℓ/∂W_{l−1}: a product of
# what has arrived from below and what has arrived from above *at this tick*.
#
# This notebook reproduces the paper's Figs. 1–3 with the shipped scenes
# `fig1_constant` (constant input), `fig2_slow` (frames held 64 ticks) and
# `fig3_fast` (a new frame every tick), all on the paper's ten-level network
# (L = 9, width 16, tanh hidden layers, a linear output, mse loss, the target
# presented with the current input).

# %%
import matplotlib.pyplot as plt
import numpy as np

import simulator
from simulator import render

# %% [markdown]
# ## Constant input: the paper's Fig. 1
#
# `simulator.simulate` runs a scene (a shipped name, a `.toml` path or a dict)
# and returns its **Trace**: named arrays with one row per recorded tick. It
# writes no files.

# %%
trace = simulator.simulate("fig1_constant")
L = trace.depth
print(trace.meta["scene"]["description"])
print("depth L =", L, "| ticks recorded:", len(trace.ticks))
print("x_norm:", trace["x_norm"].shape, "(ticks × layers 0..L)")
print("mismatch_cos:", trace["mismatch_cos"].shape, "(ticks × layers 1..L)")

# %% [markdown]
# ### Where the waves are
#
# Every layer's activity x and delta δ start at zero. Each value carries a
# **provenance tag**: the tick at which the frame it carries entered layer 0
# (−1 = empty). `tag_input[t, l]` is the frame in x[t,l]; `tag_supervision[t, l]`
# is the frame of the target whose error δ[t,l] carries. The tags are
# bookkeeping, not formulas, so we can read the physics off them and check it
# against the two wave equations: the forward wave reaches layer l at tick l,
# the backward wave (with d_y = 0 the output is compared with the target from
# tick 0 on) reaches layer l at tick L − l.

# %%
t = trace.ticks[:, None]
layers = np.arange(L + 1)[None, :]
x_tag, d_tag = trace["tag_input"], trace["tag_supervision"]
assert np.array_equal(x_tag, np.where(t >= layers, t - layers, -1))
assert np.array_equal(d_tag[:, 1:], np.where(t >= L - layers[:, 1:], t - (L - layers[:, 1:]), -1))

# the norms agree with the tags: x is non-zero exactly where a frame arrived
forward_front = [int(np.argmax(trace["x_norm"][:, l] > 0)) for l in range(L + 1)]
backward_front = [int(np.argmax(trace["delta_norm"][:, l] > 0)) for l in range(1, L + 1)]
print("first tick with x ≠ 0, layers 0..L:", forward_front)
print("first tick with δ ≠ 0, layers 1..L:", backward_front)
assert forward_front == list(range(L + 1))
assert backward_front == [L - l for l in range(1, L + 1)]

# %% [markdown]
# ### Where they meet: the synchronization layer
#
# Layer l forms g[t,l] = δ[t,l] x[t,l−1]ᵀ, so its estimate is first non-zero when
# both the forward wave has reached layer l − 1 (tick l − 1) and the backward
# wave has reached layer l (tick L − l). The two fronts cross where
# l − 1 = L − l, at the **synchronization layer** ls = (L + 1)/2 = 5, which gets
# its first estimate at tick (L − 1)/2 = 4, before any other layer.

# %%
ls = (L + 1) // 2
first_g = [max(l - 1, L - l) for l in range(1, L + 1)]
recorded_first_g = [int(np.argmax(trace["grad_norm"][:, l - 1] > 0)) for l in range(1, L + 1)]
print("first tick with g ≠ 0, layers 1..L:", recorded_first_g)
assert recorded_first_g == first_g
assert 1 + int(np.argmin(first_g)) == ls and min(first_g) == (L - 1) // 2

fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
ticks = np.arange(0, L + 1)
ax.plot(ticks, ticks, "o-", color="tab:red", label="forward front: x reaches layer t")
ax.plot(ticks, L - ticks, "s-", color="tab:blue", label="backward front: δ reaches layer L − t")
ax.axhspan(ls - 0.5, ls + 0.5, color="orange", alpha=0.25, label=f"ls = (L+1)/2 = {ls}")
ax.annotate("tick 4: g at ls pairs x[4] and δ[5]", xy=(4, 4.5), xytext=(3.6, 8.4),
            fontsize=9, arrowprops={"arrowstyle": "->"})
ax.set(xlabel="tick", ylabel="layer", yticks=range(L + 1), xlim=(-0.3, L + 0.3),
       title="The two fronts of fig1_constant (from its tags)")
ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
render.show(fig)

# %% [markdown]
# The same run drawn by tickprop's own raster (`render.waves`, the picture
# `tickprop run` saves as waves.png): time runs to the right, layers upwards.
# Red is the forward wave (x carries a frame), blue the backward wave (δ ≠ 0),
# purple the paper's *red-blue neurons* where both are present. ls is outlined
# in amber; a dark line through a layer's row marks the ticks whose g pairs an
# x and a δ of one stream frame.

# %%
render.show(render.waves(trace))

# %% [markdown]
# ### When the estimate becomes backprop
#
# Purple is not yet exact: at first δ of the lower layers still comes from the
# empty output of the first ticks. The forward wave reaches the output at
# tick L = 9; the error of that first real output then needs L − 1 more ticks
# to reach layer 1. From tick 2L − 1 = 17 on, every layer's g equals the
# gradient of instantaneous backprop (tutorial 2 proves this against an
# independent backprop). The recorded `mismatch_rel` is ‖g − G‖/‖G‖ with G the
# reference backprop gradient of the frame in the tags.

# %%
rel = trace["mismatch_rel"]
exact = rel < 1e-8          # the recorded mismatch is exact to ~1e-8 in float64
first_exact = [int(np.nonzero(~exact[:, l])[0].max() + 1) for l in range(L)]
print("first exact tick, layers 1..L:", first_exact)
assert first_exact == [2 * L - l for l in range(1, L + 1)]
assert max(first_exact) == 2 * L - 1 == 17
assert np.nanmax(rel[2 * L - 1:]) < 1e-8
render.show(render.mismatch(trace))

# %% [markdown]
# ## Slow input: the paper's Fig. 2
#
# In `fig2_slow` each input frame (and its teacher target) is held 64 ticks,
# with an 8-tick crossfade. After a network-filling phase like Fig. 1's, each
# new frame's forward edge rises while its target's backward edge falls, and
# the edges cross at ls (the paper's Eq. 6). We draw the filling phase (A) and
# a stationary window (B).

# %%
slow = simulator.simulate("fig2_slow")
render.show(render.waves(slow, windows=[(0, 40), (300, 400)]))

# %% [markdown]
# Layer l pairs x[t,l−1], which carries the frame of tick t − (l − 1), with
# δ[t,l], which carries the target of tick t − (L − l). After a frame change
# the two are of different frames for |L − 2l + 1| ticks; the dark line breaks
# for exactly that long (8 ticks at layers 1 and 9, never at ls). Between
# changes every layer's cosine with backprop returns to 1.

# %%
frames = slow.stream_frames_of
same = frames(slow["tag_input"])[:, :-1] == frames(slow["tag_supervision"])[:, 1:]
period = slice(128, 192)        # one whole hold period of 64 ticks in the stationary phase
broken = 64 - same[period].sum(axis=0)
print("ticks per hold where layer l pairs two frames, l = 1..L:", broken)
assert list(broken) == [abs(L - 2 * l + 1) for l in range(1, L + 1)]

cos = slow["mismatch_cos"]
settled = np.concatenate([cos[64 * k + 43:64 * k + 64] for k in range(1, 6)])
print("lowest cosine over the last 20 ticks of each hold:", settled.min().round(12))
assert settled.min() > 1 - 1e-9

# %% [markdown]
# ## Fast input: the paper's Fig. 3
#
# In `fig3_fast` a new frame (white noise, with its teacher target) arrives
# every tick. Colour by tag shows every 8th frame as a stripe: x's stripes climb,
# δ's descend, and they cross at ls. Only at ls does g pair x and δ of one frame
# (the dark line runs along ls alone).

# %%
fast = simulator.simulate("fig3_fast")
render.show(render.waves(fast))

# %%
cos = fast["mismatch_cos"][2 * L:]
mean_cos = np.nanmean(cos, axis=0)
same = (fast.stream_frames_of(fast["tag_input"])[2 * L:, :-1]
        == fast.stream_frames_of(fast["tag_supervision"])[2 * L:, 1:])
synced = [int(l) + 1 for l in np.nonzero(same.all(0))[0]]
print("layers pairing one frame on every tick:", synced)
print("mean cosine with backprop, layers 1..L:", mean_cos.round(3))
assert synced == [ls]
assert 1 + int(np.argmax(mean_cos)) == ls
assert np.all(np.abs(np.delete(mean_cos, ls - 1)) < 0.2)

fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.bar(np.arange(1, L + 1), mean_cos, color=["orange" if l == ls else "grey"
                                              for l in range(1, L + 1)])
ax.axhline(0, color="black", lw=0.8)
ax.set(xlabel="layer l", ylabel="mean cos(g, backprop)", xticks=range(1, L + 1),
       title="fig3_fast: only ls = 5 keeps part of the gradient's direction")
render.show(fig)

# %% [markdown]
# ls is only *approximately* right here (mean cosine about 0.35): with tanh
# layers and the mse loss, the output activity and the σ′ factors that shape
# δ come from other frames. With linear layers and a linear loss ls becomes
# exact on any stream: that is the subject of the next tutorial (facts C and D).
#
# **What we checked.** The forward wave reaches layer l at tick l, the backward
# wave at tick L − l; they meet at ls = (L+1)/2 = 5 at tick 4; with constant
# input every layer is exact from tick 2L − l (all from 17); on a slow stream
# layer l pairs two frames for |L − 2l + 1| ticks after each change and is exact
# between changes; on a fast stream only ls pairs one frame.
