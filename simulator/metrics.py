"""Mismatch between the engine's g = Δᵀ X and backprop's G = Δ'ᵀ X' per layer from B×B
Gram matrices only: ⟨Δᵀ X, Δ'ᵀ X'⟩ = sum((Δ Δ'ᵀ) ⊙ (X X'ᵀ)). The relative
error comes from these products: below about √(machine ε) it is rounding, not mismatch."""


def gram(xp, d1, x1, d2, x2):
    """⟨d1ᵀ x1, d2ᵀ x2⟩_F over the last two axes (batch, neurons) of stacked factors;
    for a batch of one the product of two dot products (no tiny matrix products)."""
    if d1.shape[-2] == 1:
        return (xp.vecdot(d1[..., 0, :], d2[..., 0, :])
                * xp.vecdot(x1[..., 0, :], x2[..., 0, :]))
    dd = d1 @ xp.matrix_transpose(d2)
    xx = x1 @ xp.matrix_transpose(x2)
    return xp.sum(dd * xx, axis=(-2, -1))


def cosine_and_relative(xp, gg, gG, GG):
    """Cosine similarity and relative error ‖g − G‖/‖G‖ from the three inner products;
    a zero gradient gives NaN, never a silent 0."""
    cos = gG / xp.sqrt(gg * GG)
    diff = xp.maximum(gg - 2.0 * gG + GG, xp.zeros_like(gg))
    rel = xp.sqrt(diff / GG)
    return cos, rel


def mismatch(xp, d, x, d_ref, x_ref):
    """(cosine, relative error) per layer of g = dᵀx and G = d_refᵀx_ref, (L, B, N) each."""
    return cosine_and_relative(xp, gram(xp, d, x, d, x), gram(xp, d, x, d_ref, x_ref),
                               gram(xp, d_ref, x_ref, d_ref, x_ref))
