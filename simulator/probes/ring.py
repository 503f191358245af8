"""The pieces both kinds of metric share: Gram products of stacked factors
(``gram``), the slots of a reference ring (``ring_pieces``) and which frames
of a block need their own reference (``repeat_sources``)."""
import numpy as np


def gram(xp, d1, x1, d2, x2):
    """⟨d1ᵀ x1, d2ᵀ x2⟩_F over the last two axes (batch, neurons) of stacked
    factors: Gram products of the batch, or, for a batch of one, the product
    of two dot products (the same number without a tiny matrix product per layer)."""
    if d1.shape[-2] == 1:
        return (xp.vecdot(d1[..., 0, :], d2[..., 0, :])
                * xp.vecdot(x1[..., 0, :], x2[..., 0, :]))
    dd = d1 @ xp.matrix_transpose(d2)
    xx = x1 @ xp.matrix_transpose(x2)
    return xp.sum(dd * xx, axis=(-2, -1))


def ring_pieces(ring, i0, lo, hi):
    """Slots of a reference ring of ``ring`` frames (tick i in slot i % ring)
    holding ticks i0 + lo .. i0 + hi − 1, as contiguous pieces (pos_lo,
    pos_hi, slot_lo, slot_hi): at most two (the ring wraps)."""
    out, p = [], lo
    while p < hi:
        s = (i0 + p) % ring
        q = min(hi, p + ring - s)
        out.append((p, q, s, s + q - p))
        p = q
    return out


def repeat_sources(frames, ref_frame, ring):
    """For a block of pending ``frames`` (tick index i, ..., repeat flag) the
    reference to use per frame: (src, fresh) with ``fresh`` the positions of
    the frames needing their own backprop and ``src[k]`` the index into
    ``fresh`` of frame k's reference, or −1 for a leading repeat whose
    reference is the ring slot of the tick before (``ref_frame`` says which
    frame each of the ``ring`` slots holds)."""
    src, fresh = np.empty(len(frames), dtype=np.int64), []
    for k, (i, _, _, rep) in enumerate(frames):
        if rep and i > 0 and (k > 0 or ref_frame[(i - 1) % ring] == i - 1):
            src[k] = src[k - 1] if k else -1
        else:
            src[k] = len(fresh)
            fresh.append(k)
    return src, fresh
