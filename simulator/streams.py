"""Input and target streams (docs/how-to/write-a-scene.md), generated on the host, seeded, in order:
``take(n)`` hands out the next n ticks as (u (n, batch, n_0), y (n, batch, n_L),
the index of the frame each tick shows: a held frame keeps its index for h
ticks, a continuous stream numbers every tick), the same whatever the chunks.
"""
import math

import numpy as np

from .backend import Backend
from .engine.drive import changed_rows
from .errors import SceneError, SimulatorError
from .model import Model
from .model.reference import device_params, evaluate

INPUTS = ("constant", "held", "smooth", "sine", "dataset", "moving")
TARGETS = ("teacher", "labels")
EDGES = ("bounce", "wrap")


class Stream:
    """Base: frames u_t from a subclass's ``_next(t)`` -> (frame, id), targets
    from ``target(u, ids)``."""

    def __init__(self, n_in, batch, rng, target):
        self.n_in, self.batch, self.rng, self.target = n_in, batch, rng, target
        self.t = 0

    def take(self, n):
        u = np.empty((n, self.batch, self.n_in))
        ids = np.empty(n, dtype=np.int64)
        for k in range(n):
            u[k], ids[k] = self._next(self.t)
            self.t += 1
        return u, self.target(u, ids), ids


class HeldStream(Stream):
    """A new random frame every ``hold`` ticks, blended in over the first
    ``crossfade``: hold ≫ L is the paper's slow (Fig. 2), hold = 1 its fast input (Fig. 3)."""

    def __init__(self, n_in, batch, rng, target, hold=1, crossfade=0, amplitude=1.0):
        super().__init__(n_in, batch, rng, target)
        if crossfade >= hold and crossfade:
            raise SimulatorError(f"stream.crossfade ({crossfade}) must be smaller than "
                                 f"stream.hold ({hold})")
        self.hold, self.crossfade, self.amplitude = hold, crossfade, amplitude
        self.prev = self.cur = None

    def _draw(self, m=None):
        """m new frames (m, batch, n_in) in one call (None: one frame), the numbers
        of m draws of one: ``standard_normal`` is ``normal``'s z, and 0.0 + 1.0·z
        (``normal``'s loc + scale·z) is z + 0.0."""
        z = self.rng.standard_normal(size=(1 if m is None else m, self.batch, self.n_in))
        np.add(z, 0.0, out=z)
        if self.amplitude != 1.0:
            np.multiply(self.amplitude, z, out=z)
        return z[0] if m is None else z

    def _next(self, t):
        k, phase = divmod(t, self.hold)
        if phase == 0:
            self.prev = self.cur if self.cur is not None else np.zeros((self.batch, self.n_in))
            self.cur = self._draw()
        if phase < self.crossfade:
            w = (phase + 1) / (self.crossfade + 1)
            return (1 - w) * self.prev + w * self.cur, k
        return self.cur, k

    def take(self, n):
        """``Stream.take`` with the chunk's new frames drawn at once; the target
        learns which ticks repeat the one before (a held frame past its crossfade)."""
        k, phase = np.divmod(np.arange(self.t, self.t + n), self.hold)
        new = phase == 0
        drawn = self._draw(int(new.sum()))
        if self.hold == 1:
            u = drawn
            if n:
                self.prev, self.cur = drawn[-2] if n > 1 else self.cur, drawn[-1]
        else:       # frames: the one before the current, the current, the new ones
            zeros = np.zeros((1, self.batch, self.n_in))
            pool = np.concatenate([zeros if self.prev is None else self.prev[None],
                                   zeros if self.cur is None else self.cur[None], drawn])
            at = np.cumsum(new) + 1                      # each tick's current frame
            u = pool[at]
            fade = np.flatnonzero(phase < self.crossfade)
            if len(fade):
                w = ((phase[fade] + 1) / (self.crossfade + 1))[:, None, None]
                u[fade] = (1 - w) * pool[at[fade] - 1] + w * u[fade]
            if n:
                self.prev, self.cur = pool[at[-1] - 1], pool[at[-1]]
        self.t += n
        if not getattr(self.target, "takes_maybe", False):
            return u, self.target(u, k), k
        maybe = phase <= self.crossfade              # the others repeat the tick before
        return u, self.target(u, k, maybe=maybe), k


class ConstantStream(HeldStream):
    """One frame for ever (held past any run): the setting of the paper's Fig. 1."""

    def __init__(self, n_in, batch, rng, target, amplitude=1.0):
        super().__init__(n_in, batch, rng, target, hold=2**63 - 1, amplitude=amplitude)


class SmoothStream(Stream):
    """Low-pass (AR(1)) noise with correlation time τ ticks and unit variance."""

    def __init__(self, n_in, batch, rng, target, tau=8.0, amplitude=1.0):
        super().__init__(n_in, batch, rng, target)
        self.rho, self.amplitude = float(np.exp(-1.0 / tau)), amplitude
        self.state = rng.normal(size=(batch, n_in))

    def _next(self, t):
        if t:
            noise = self.rng.normal(size=self.state.shape)
            self.state = self.rho * self.state + np.sqrt(1 - self.rho ** 2) * noise
        return self.amplitude * self.state, t


class SineStream(Stream):
    """Sines of period ``period`` ticks with a random phase per input and stream."""

    def __init__(self, n_in, batch, rng, target, period=32.0, amplitude=1.0):
        super().__init__(n_in, batch, rng, target)
        self.period, self.amplitude = period, amplitude
        self.phase = rng.uniform(0, 2 * np.pi, size=(batch, n_in))

    def _next(self, t):
        return self.amplitude * np.sin(2 * np.pi * t / self.period + self.phase), t


class DatasetStream(HeldStream):
    """Images held like video frames, in a seeded random order per batch row;
    targets are the one-hot labels of the frame being shown."""

    def __init__(self, n_in, batch, rng, inputs, onehot, hold=1, crossfade=0):
        self.inputs, self.onehot = inputs, onehot
        self._order = [[] for _ in range(batch)]
        self._shown = np.zeros((batch, onehot.shape[1]))
        super().__init__(n_in, batch, rng, None, hold=hold, crossfade=crossfade)

    def _draw(self):
        rows = []
        for b in range(self.batch):
            if not self._order[b]:
                self._order[b] = list(self.rng.permutation(len(self.inputs)))
            rows.append(self._order[b].pop())
        self._shown = self.onehot[rows]
        return self.inputs[rows]

    def take(self, n):
        u = np.empty((n, self.batch, self.n_in))
        y = np.empty((n, self.batch, self.onehot.shape[1]))
        ids = np.empty(n, dtype=np.int64)
        for k in range(n):
            u[k], ids[k] = self._next(self.t)
            y[k] = self._shown
            self.t += 1
        return u, y, ids


class ShapedStream:
    """A stream's flat frames in a graph model's shapes: u (n, batch,
    *input_shape), y (n, batch, *output_shape), row-major."""

    def __init__(self, stream, input_shape, output_shape):
        self.stream = stream
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)

    def take(self, n):
        u, y, ids = self.stream.take(n)
        lead = u.shape[:2]
        return u.reshape(lead + self.input_shape), y.reshape(lead + self.output_shape), ids


def teacher_target(teacher, loss, dtype="float64", device="cpu"):
    """The target rule y = teacher(u) (for `xent` the teacher's softmax), once
    per distinct frame. Computed in the run's ``dtype`` and on its ``device``
    (on the GPU the teacher would otherwise bound the run: 11x the bare tick at
    width 1024), returned as float64 host arrays like every stream's frames."""
    backend = None
    if device != "cpu":
        backend = Backend(device, dtype)
        params = device_params(backend.xp, teacher, backend.dtype)

    def target(u, ids, maybe=None):
        """``maybe``: the ticks that can differ from the one before (``changed_rows``)."""
        n, batch, n_in = u.shape
        fresh = changed_rows(u.reshape(n, batch * n_in), maybe)
        every = bool(fresh.all())
        distinct = (u if every else u[fresh]).astype(dtype, copy=False).reshape(-1, n_in)
        if backend is None:
            y = evaluate(teacher, distinct)[1][-1]
        else:
            y = backend.to_host(evaluate(teacher, backend.asarray(distinct), params)[1][-1])
        if loss == "xent":
            z = np.exp(y - y.max(axis=1, keepdims=True))
            y = z / z.sum(axis=1, keepdims=True)
        y = y.reshape(int(fresh.sum()), batch, -1)
        return (y if every else y[np.cumsum(fresh) - 1]).astype(np.float64, copy=False)

    target.takes_maybe = True
    return target


def make_teacher(sizes, activations, seed, scale=1.0):
    """The teacher network: a chain Model of the student's shape, its own seed."""
    return Model.chain(sizes, activations, seed=seed, scale=scale)


def make_stream(kind, n_in, batch, rng, target, **params):
    """Build an input stream by name (see INPUTS); ``params`` are its knobs."""
    classes = {"constant": ConstantStream, "held": HeldStream,
               "smooth": SmoothStream, "sine": SineStream}
    if kind not in classes:
        raise SimulatorError(f"unknown stream {kind!r}; expected one of {', '.join(classes)}")
    return classes[kind](n_in, batch, rng, target, **params)


# ------------------------------------------------------------------ moving digits
def fold(position, span, edges):
    """Positions folded onto the canvas along one axis: ``bounce`` reflects them
    into [0, span] (span = canvas − image; 0 pins the image), ``wrap`` takes
    them modulo span (span = canvas)."""
    position = np.asarray(position, dtype=np.float64)
    if edges == "wrap":
        return np.mod(position, span)
    if span == 0:
        return np.zeros_like(position)
    y = np.mod(position, 2.0 * span)
    return np.where(y > span, 2.0 * span - y, y)


def render(images, canvas, positions, edges="bounce"):
    """Images (..., h, w) drawn bilinearly on blank canvases (..., H, W) at the
    folded top-left ``positions`` (..., 2) = (row, column): pixel (r, c) lands
    on the four pixels around (row + r, column + c) with weights (1 − f)(1 − g),
    f(1 − g), (1 − f)g, fg, so a sub-pixel shift keeps the total intensity and
    moves the centroid by exactly the shift. With ``wrap`` the image continues
    across the opposite edge."""
    images = np.asarray(images, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    lead, (h, w), (H, W) = images.shape[:-2], images.shape[-2:], tuple(canvas)
    whole = np.floor(positions)
    if edges != "wrap":
        # At the far wall (position = H − h) draw from one pixel before with
        # fraction 1, so the patch's zero-weight far row stays on the canvas.
        inner = np.array([max(H - h - 1, 0), max(W - w - 1, 0)])
        whole = np.minimum(whole, inner)
    frac = positions - whole
    whole = whole.astype(np.int64)
    f, g = frac[..., 0, None, None], frac[..., 1, None, None]
    patch = np.zeros(lead + (h + 1, w + 1))
    patch[..., :h, :w] = (1 - f) * (1 - g) * images
    patch[..., 1:, :w] += f * (1 - g) * images
    patch[..., :h, 1:] += (1 - f) * g * images
    patch[..., 1:, 1:] += f * g * images
    # An image as tall (wide) as a bouncing canvas sits at 0 with a zero-weight
    # row (column) one past the edge: draw on a canvas one larger and crop.
    rows_out = H + (edges != "wrap" and H == h)
    cols_out = W + (edges != "wrap" and W == w)
    if h + 1 > rows_out or w + 1 > cols_out:
        raise SimulatorError(f"a wrapping canvas ({H}x{W}) must be larger than the images "
                             f"({h}x{w})")
    m = int(np.prod(lead, dtype=np.int64))
    rows = (whole[..., 0].reshape(m, 1) + np.arange(h + 1)) % rows_out
    cols = (whole[..., 1].reshape(m, 1) + np.arange(w + 1)) % cols_out
    # No canvas pixel repeats within a patch (h + 1 <= rows_out): assignment places it.
    out = np.zeros((m, rows_out, cols_out))
    flat = patch.reshape(m, h + 1, w + 1)
    out[np.arange(m)[:, None, None], rows[:, :, None], cols[:, None, :]] = flat
    if (rows_out, cols_out) != (H, W):
        out = np.ascontiguousarray(out[:, :H, :W])
    return out.reshape(lead + (H, W))


class MovingStream:
    """The `moving` stream (README "Image streams") of seeded permutations of
    ``images`` (n, h, w) per batch row: crossfade tick k weighs the new digit
    (k+1)/(crossfade+1) (the first fades in from blank); the top-left corner
    moves on start + speed·t·(−sin θ, cos θ) in (row, column), θ = ``direction``;
    saccades displace ticks [jk, (j+1)k) (k = ``jitter_every``); with ``stagger``
    row b's k-th digit starts at tick k·hold − ⌊b·hold/batch⌋. Targets: one-hot
    labels or ``target(u, ids)``; ids number every tick, or the digits on a
    still stream (speed 0, no saccades, no stagger)."""

    _JITTER_BLOCK = 1024       # saccades drawn this many at a time

    def __init__(self, images, labels, n_classes, batch, rng, canvas, speed=1.0,
                 direction=0.0, edges="bounce", hold=64, crossfade=0, jitter=0.0,
                 jitter_every=0, amplitude=1.0, target=None, stagger=False):
        images = np.asarray(images, dtype=np.float64)
        labels = np.asarray(labels)
        if images.ndim != 3 or not images.shape[0] or labels.shape != images.shape[:1]:
            raise SimulatorError(f"a moving stream needs images (n, h, w) and n labels, got "
                                 f"images {images.shape} and labels {labels.shape}")
        H, W = (int(c) for c in canvas)
        h, w = images.shape[1:]
        if edges not in EDGES:
            raise SimulatorError(f"edges must be one of {', '.join(EDGES)}, got {edges!r}")
        if H < h or W < w or (edges == "wrap" and (H <= h or W <= w)):
            least = "larger than" if edges == "wrap" else "at least"
            raise SimulatorError(f"the canvas ({H}x{W}) must be {least} the images ({h}x{w})")
        if not (math.isfinite(speed) and speed >= 0 and math.isfinite(direction)):
            raise SimulatorError(f"speed must be finite and >= 0 and direction finite, got "
                                 f"{speed} and {direction}")
        if int(hold) < 1 or not 0 <= int(crossfade) < int(hold) and crossfade:
            raise SimulatorError(f"hold must be >= 1 and crossfade in 0..hold-1, got hold "
                                 f"{hold}, crossfade {crossfade}")
        if jitter < 0 or int(jitter_every) < 0:
            raise SimulatorError(f"jitter and jitter_every must be >= 0, got {jitter}, "
                                 f"{jitter_every}")
        self.images, self.labels, self.n_classes = images, labels.astype(np.int64), int(n_classes)
        self.batch, self.canvas, self.edges, self.n_in = int(batch), (H, W), edges, H * W
        self.hold, self.crossfade = int(hold), int(crossfade)
        # Row b's digits change at ticks ≡ −offset_b (mod hold): evenly spread
        # over the hold when staggered, all at once otherwise.
        self.offsets = (np.arange(self.batch) * self.hold // self.batch if stagger
                        else np.zeros(self.batch, dtype=np.int64))
        self.jitter, self.jitter_every = float(jitter), int(jitter_every)
        self.amplitude, self.target = float(amplitude), target
        theta = math.radians(direction)
        self.velocity = float(speed) * np.array([-math.sin(theta), math.cos(theta)])
        # Folding spans per axis (row, column) and the start points inside them.
        self.span = np.array([H - h, W - w] if edges == "bounce" else [H, W], dtype=np.float64)
        start_rng, self._order_rng, self._jitter_rng = rng.spawn(3)
        self.start = start_rng.uniform(0.0, 1.0, size=(self.batch, 2)) * self.span
        self._order = np.empty((0, self.batch), dtype=np.int64)   # digit j of row b
        self._jumps = np.empty((0, self.batch, 2))                # saccade j of row b
        self.still = (speed == 0 and not (self.jitter and self.jitter_every)
                      and not self.offsets.any())
        self.t = 0

    def _digits(self, j):
        """Indices into ``images`` of the digits number j (n, batch) of each row."""
        n = self.images.shape[0]
        while self._order.shape[0] <= j.max(initial=0):
            epoch = self._order_rng.permuted(np.tile(np.arange(n), (self.batch, 1)), axis=1)
            self._order = np.concatenate([self._order, epoch.T])
        return self._order[j, np.arange(self.batch)]

    def positions(self, t0, n):
        """Folded top-left positions (n, batch, 2) = (row, column) of ticks t0..t0+n−1."""
        t = np.arange(t0, t0 + n)
        raw = self.start + t[:, None, None] * self.velocity
        if self.jitter and self.jitter_every:
            j = t // self.jitter_every          # the saccade of each tick
            while self._jumps.shape[0] <= j.max(initial=0):
                phi = self._jitter_rng.uniform(0.0, 2 * np.pi,
                                               size=(self._JITTER_BLOCK, self.batch))
                step = self.jitter * np.stack([np.sin(phi), np.cos(phi)], axis=-1)
                self._jumps = np.concatenate([self._jumps, step])
            raw += self._jumps[j]
        return np.stack([fold(raw[..., a], self.span[a], self.edges) for a in (0, 1)], axis=-1)

    def frames(self, t0, n):
        """Ticks t0..t0+n−1 as (u (n, batch, H·W), y, ids (n,), labels (n, batch)),
        a function of the ticks alone (three child generators of ``rng``)."""
        t = np.arange(t0, t0 + n)
        j, phase = np.divmod(t[:, None] + self.offsets, self.hold)          # (n, batch)
        new = self._digits(j)
        weight = np.minimum((phase + 1) / (self.crossfade + 1), 1.0)       # (n, batch)
        fading = (phase < self.crossfade) & (j > 0)
        old = self._digits(np.maximum(j - 1, 0))
        pictures = self.images[new]
        if self.crossfade:
            blend = np.where(fading, 1 - weight, 0.0)[..., None, None]     # (n, batch, 1, 1)
            pictures = weight[..., None, None] * pictures + blend * self.images[old]
        frames = render(pictures, self.canvas, self.positions(t0, n), self.edges)
        u = frames.reshape(n, self.batch, self.n_in)
        if self.amplitude != 1.0:
            u *= self.amplitude
        shown = np.where(fading & (weight < 0.5), old, new)
        labels = self.labels[shown]
        ids = j[:, 0].astype(np.int64) if self.still else t.astype(np.int64)
        y = np.eye(self.n_classes)[labels] if self.target is None else self.target(u, ids)
        return u, y, ids, labels

    def take(self, n):
        """The next n ticks as (u, y, ids)."""
        u, y, ids, _ = self.frames(self.t, n)
        self.t += n
        return u, y, ids


def moving_canvas(st, image_shape):
    """(height, width) of a StreamSpec's canvas: ``stream.canvas``, or twice
    the image's sides; SceneError naming the key when it cannot move them."""
    h, w = (int(s) for s in image_shape)
    H, W = (tuple(int(c) for c in st.canvas) if st.canvas else (2 * h, 2 * w))
    if st.crossfade and st.crossfade >= st.hold:
        raise SceneError(f"key 'stream.crossfade': expected fewer than stream.hold = "
                         f"{st.hold} ticks, got {st.crossfade}")
    wrap = st.edges == "wrap"
    if H < h + wrap or W < w + wrap:
        least = "larger than" if wrap else "at least as large as"
        raise SceneError(f"key 'stream.canvas': expected a canvas {least} the {h}x{w} images "
                         f"of stream.data = {st.data!r}"
                         f"{' (edges = wrap)' if wrap else ''}, got [{H}, {W}]")
    return H, W


def moving_stream(st, images, labels, n_classes, rng, target=None):
    """The MovingStream of a StreamSpec over ``images`` (n, h, w) and their
    ``labels``; ``target`` None gives one-hot label targets."""
    keys = ("speed", "direction", "edges", "hold", "crossfade", "jitter", "jitter_every",
            "amplitude", "stagger")
    return MovingStream(images, labels, n_classes, st.batch, rng,
                        moving_canvas(st, np.shape(images)[1:]), target=target,
                        **{k: getattr(st, k) for k in keys})
