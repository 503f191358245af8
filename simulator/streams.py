"""Input and target streams (SPEC §2), generated on the host, seeded, in order.

A stream hands out consecutive ticks with ``take(n)`` -> (u, y, frame_id):
u of shape (n, batch, n_0), y of shape (n, batch, n_L), and the index of the
stream frame each tick shows (a held frame keeps its index for h ticks; a
continuous stream numbers every tick). The same seed gives the same stream
whatever the chunk sizes, so traces are reproducible.
"""
import numpy as np

from .errors import SimulatorError
from .network import Network
from .reference import forward

INPUTS = ("constant", "held", "smooth", "sine", "dataset")
TARGETS = ("teacher", "labels")


class Stream:
    """Base: a source of input frames u_t paired with a target rule."""

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

    def _next(self, t):
        raise TypeError("Stream subclasses define _next")


class ConstantStream(Stream):
    """One frame for ever: the setting of the paper's Fig. 1."""

    def __init__(self, n_in, batch, rng, target, amplitude=1.0):
        super().__init__(n_in, batch, rng, target)
        self.frame = amplitude * rng.normal(size=(batch, n_in))

    def _next(self, t):
        return self.frame, 0


class HeldStream(Stream):
    """A new random frame every ``hold`` ticks; the first ``crossfade`` ticks of
    each frame blend linearly from the previous one. hold ≫ L is the paper's
    slow input (Fig. 2), hold = 1 its fast input (Fig. 3) — white noise."""

    def __init__(self, n_in, batch, rng, target, hold=1, crossfade=0, amplitude=1.0):
        super().__init__(n_in, batch, rng, target)
        if crossfade >= hold and crossfade:
            raise SimulatorError(f"stream.crossfade ({crossfade}) must be smaller than stream.hold ({hold})")
        self.hold, self.crossfade, self.amplitude = hold, crossfade, amplitude
        self.prev = self.cur = None

    def _draw(self):
        return self.amplitude * self.rng.normal(size=(self.batch, self.n_in))

    def _next(self, t):
        k, phase = divmod(t, self.hold)
        if phase == 0:
            self.prev = self.cur if self.cur is not None else np.zeros((self.batch, self.n_in))
            self.cur = self._draw()
        if phase < self.crossfade:
            w = (phase + 1) / (self.crossfade + 1)
            return (1 - w) * self.prev + w * self.cur, k
        return self.cur, k


class SmoothStream(Stream):
    """Low-pass (AR(1)) noise with correlation time τ ticks and unit variance."""

    def __init__(self, n_in, batch, rng, target, tau=8.0, amplitude=1.0):
        super().__init__(n_in, batch, rng, target)
        self.rho = float(np.exp(-1.0 / tau))
        self.amplitude = amplitude
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
    """Images shown like video frames: each held ``hold`` ticks (with optional
    crossfade), in a seeded random order, one independent sequence per batch row.
    Targets are the one-hot labels of the frame being shown."""

    def __init__(self, n_in, batch, rng, inputs, onehot, hold=1, crossfade=0):
        if inputs.shape[1] != n_in:
            raise SimulatorError(f"the data set has {inputs.shape[1]} inputs but network.inputs is {n_in}")
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
    """A stream whose flat frames are handed out in the shapes of a graph
    model: u (n, batch, *input_shape), y (n, batch, *output_shape), row-major
    (64 digit pixels are one [1, 8, 8] image)."""

    def __init__(self, stream, input_shape, output_shape):
        self.stream = stream
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)

    def take(self, n):
        u, y, ids = self.stream.take(n)
        lead = u.shape[:2]
        return u.reshape(lead + self.input_shape), y.reshape(lead + self.output_shape), ids


def teacher_target(teacher, loss):
    """y = teacher(u): a fixed random network of the student's shape, so the task
    is realizable. For `xent` the teacher's softmax is the target distribution."""

    def target(u, ids):
        n, batch, n_in = u.shape
        xs, _ = forward(teacher, u.reshape(n * batch, n_in))
        y = xs[-1]
        if loss == "xent":
            z = np.exp(y - y.max(axis=1, keepdims=True))
            y = z / z.sum(axis=1, keepdims=True)
        return y.reshape(n, batch, -1)

    return target


def make_teacher(sizes, activations, seed, scale=1.0):
    """The teacher network: same shape as the student, its own seed."""
    return Network.random(sizes, activations, seed=seed, scale=scale)


def make_stream(kind, n_in, batch, rng, target, **params):
    """Build an input stream by name (see INPUTS); ``params`` are its knobs."""
    classes = {"constant": ConstantStream, "held": HeldStream,
               "smooth": SmoothStream, "sine": SineStream}
    if kind not in classes:
        raise SimulatorError(f"unknown stream {kind!r}; expected one of {', '.join(classes)}")
    return classes[kind](n_in, batch, rng, target, **params)
