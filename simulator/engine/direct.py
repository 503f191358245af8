"""Direct Feedback Alignment (Nøkland 2016, docs/feedback.md) in the tick engine: every
vertex but the input and the output reads the output's δ of the tick before through its
own fixed random B_v of shape (size(v), size(output)),

    δ[t+1, v] = D[t, v] ⊙ reshape_v(B_v δ[t, out]),

parameter-free vertices (pool, flatten, add, identity, tokens) included, so every
such δ is one tick behind the output's: bwd(v) = 1 (0 for the output). The B_v are
stacked as the columns of one (size(output), Σ size(v)) matrix Bᵀ: one product a tick.
"""
import math

import numpy as np

from ..options import feedback_draws


def direct_bwd(model):
    """bwd(v) under DFA: the δ path length from the output, 0 for it and 1 for every other."""
    return [0 if v.index == model.output else 1 for v in model.vertices]


def delta_paths(model, feedback, out_of):
    """Per vertex the lengths of its δ paths from the output: ``out_of`` (the graph's
    paths v → output) but under ``dfa``, where each is the one of ``direct_bwd``."""
    return [{b} for b in direct_bwd(model)] if feedback == "dfa" else out_of


def direct_columns(model):
    """[(vertex index, first column, end column, vertex shape)] of the stacked Bᵀ, in
    vertex order over every vertex but the input and the output."""
    out, lo = [], 0
    for v in model.vertices[1:]:
        if v.index != model.output:
            size = math.prod(v.shape)
            out.append((v.index, lo, lo + size, tuple(v.shape)))
            lo += size
    return out


def direct_draws(model, seed, scale):
    """(columns, host Bᵀ, {vertex index: host B_v}): B_v drawn in vertex order from
    np.random.default_rng(seed) as ``options.feedback_draws("dfa", ...)`` says."""
    cols = direct_columns(model)
    n_out = math.prod(model.vertices[model.output].shape)
    _, draws = feedback_draws("dfa", seed, scale, [(hi - lo, n_out) for _, lo, hi, _ in cols])
    stacked = np.concatenate([b.T for b in draws], axis=1) if draws else np.zeros((n_out, 0))
    return cols, np.ascontiguousarray(stacked), {c[0]: b for c, b in zip(cols, draws)}


def direct_cotangents(xp, cols, BT, d_out, n):
    """Per vertex index (n of them) reshape_v(B_v δ_out) of the batch ``d_out``
    (batch, *output shape), None where v takes none; one product with Bᵀ."""
    batch = d_out.shape[0]
    proj = xp.matmul(xp.reshape(d_out, (batch, -1)), BT)
    cot = [None] * n
    for i, lo, hi, shape in cols:
        cot[i] = xp.reshape(proj[:, lo:hi], (batch,) + shape)
    return cot
