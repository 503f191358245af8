"""Sliding windows over the last two axes: im2col stacks the kh·kw strided
slices of a (B, C, H, W) array (slice (i, j) holds pixel (i + r·sh, j + c·sw)
of output pixel (r, c)), col2im scatters them back; basic slicing only, so any
array namespace (``.at`` under jax).
"""


def zeros(xp, shape, like, dtype=None):
    """Zeros of ``shape`` in ``like``'s dtype (or ``dtype``) on its device (the
    default one for a jax array traced inside jit, which has none)."""
    dtype = like.dtype if dtype is None else dtype
    try:
        device = like.device
    except AttributeError:
        return xp.zeros(shape, dtype=dtype)
    return xp.zeros(shape, dtype=dtype, device=device)


def out_size(n, k, s, p):
    """Windows of size k, stride s over n samples padded by p on both sides:
    floor((n + 2p − k)/s) + 1."""
    return (n + 2 * p - k) // s + 1


def pad2d(xp, x, ph, pw):
    """x zero-padded by ph rows above and below and pw columns left and right."""
    if ph:
        z = zeros(xp, x.shape[:-2] + (ph, x.shape[-1]), x)
        x = xp.concat([z, x, z], axis=-2)
    if pw:
        z = zeros(xp, x.shape[:-1] + (pw,), x)
        x = xp.concat([z, x, z], axis=-1)
    return x


def crop2d(x, ph, pw):
    """Undo pad2d: drop ph rows and pw columns from each side."""
    h, w = x.shape[-2], x.shape[-1]
    return x[..., ph:h - ph, pw:w - pw]


def slices(kernel, stride, out_hw):
    """The (row, column) slices of every kernel offset, offset k = i·kw + j."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    return [(slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
            for i in range(kh) for j in range(kw)]


def windows(xp, x, kernel, stride, out_hw):
    """(B, C, kh·kw, Ho, Wo): every window of the (already padded) x, offsets
    in row-major order k = i·kw + j."""
    return xp.stack([x[..., r, c] for r, c in slices(kernel, stride, out_hw)], axis=2)


def scatter(xp, parts, shape, kernel, stride, out_hw, like):
    """col2im: the sum, into a zero array of ``shape`` (padded input shape), of
    ``parts[k]`` (B, C, Ho, Wo) added at offset k's strided positions."""
    g = zeros(xp, shape, like)
    for part, (r, c) in zip(parts, slices(kernel, stride, out_hw)):
        if hasattr(g, "at"):                 # jax: a functional update
            g = g.at[..., r, c].add(part)
        else:
            g[..., r, c] = g[..., r, c] + part
    return g
