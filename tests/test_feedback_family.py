"""The feedback family of SPEC §1 (docs/feedback.md) on every executor.

Oracle: hand numpy. The fan rule written per layer kind, the magnitudes drawn
from a separately seeded Generator with ``Generator.uniform`` (the engines draw
with ``Generator.random`` into preallocated buffers), F formed from the
engine's own W, and the backward wave's F·δ computed by hand (a loop-written
transposed convolution for conv vertices).
"""
import numpy as np
import pytest

from simulator import Model
from simulator.engine.tick import GraphEngine
from simulator.errors import SimulatorError
from simulator.options import fans
from graph_models import CONV

SEED = 5


class GenericNumpy(GraphEngine):
    """GraphEngine with its fast builder off: the generic step on numpy."""

    def _build_fast(self):
        self._fast = False


def compiled():
    pytest.importorskip("jax")
    from simulator.engine.compiled import CompiledEngine
    return CompiledEngine


EXECUTORS = {"generic": lambda: GenericNumpy, "fast": lambda: GraphEngine, "jax": compiled}
MODELS = {"chain": (lambda: Model.chain([4, 5, 5, 5, 3], ["tanh", "logistic", "tanh",
                                                          "linear"], seed=1), (4,), 3),
          "conv": (lambda: Model.from_layers(CONV, (2, 8, 12), seed=2), (2, 8, 12), 3)}


def hand_fans(shape):
    """fan_in, fan_out by layer kind: dense W (out, in), conv W (C_out, C_in, kh, kw)."""
    if len(shape) == 2:
        return shape[1], shape[0]
    o, c, kh, kw = shape
    return c * kh * kw, o * kh * kw


class HandFeedback:
    """The magnitudes of ``kind`` as the definitions say, from its own Generator."""

    def __init__(self, kind, shapes, scale=1.0):
        self.kind, self.shapes, self.scale = kind, shapes, scale
        self.rng = np.random.default_rng(SEED)
        self.mags = {}
        self.draw() if kind != "sign" else None

    def draw(self):
        for k, shape in self.shapes.items():       # vertex order
            a = np.sqrt(6.0 / sum(hand_fans(shape)))
            self.mags[k] = self.scale * np.abs(self.rng.uniform(-a, a, shape))

    def F(self, k, W):
        if self.kind == "sign":
            return np.sign(W) * (self.scale * np.sqrt(2.0 / sum(hand_fans(W.shape))))
        return np.sign(W) * self.mags[k]


def make(executor, model_name, kind, **kw):
    build, ins, outs = MODELS[model_name]
    model = build()
    opts = dict(feedback=kind, feedback_seed=SEED, batch=2, supervision_delay=0,
                learning_rate=0.05, weight_decay=0.3)
    opts.update(kw)
    return EXECUTORS[executor]()(model, **opts), ins, outs


def frames(ins, outs, ticks, seed=0):
    g = np.random.default_rng(seed)
    return g.normal(size=(ticks, 2) + ins), g.normal(size=(ticks, 2, outs))


def check_F(engine, hand):
    W, F = engine.parameters(), engine.feedback_weights()
    assert list(F) == list(hand.shapes)
    for k in F:
        np.testing.assert_allclose(F[k], hand.F(k, W[k]), rtol=1e-15, atol=0, err_msg=k)


@pytest.mark.parametrize("executor", ["generic", "fast", "jax"])
@pytest.mark.parametrize("model_name", ["chain", "conv"])
@pytest.mark.parametrize("kind", ["sign", "frsf", "brsf"])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_F_is_the_definition_after_construction_and_each_tick(executor, model_name, kind,
                                                              accumulate):
    """brsf redraws on each update (every ``accumulate`` ticks) and not between;
    frsf's magnitudes stay; sign is scaled by √(2/(fan_in+fan_out))."""
    if executor == "jax" and kind == "brsf":
        pytest.skip("refused (test_jax_refuses_brsf)")
    engine, ins, outs = make(executor, model_name, kind, accumulate=accumulate)
    hand = HandFeedback(kind, {k: a.shape for k, a in engine.feedback_weights().items()})
    check_F(engine, hand)
    U, Y = frames(ins, outs, 7)
    for t, (u, y) in enumerate(zip(U, Y)):
        engine.step(u, y) if executor != "jax" else engine.run_chunk(u[None], y[None])
        if kind == "brsf" and (t + 1) % accumulate == 0:
            hand.draw()
        check_F(engine, hand)


def test_feedback_scale_multiplies_the_sign_family_magnitudes():
    for kind in ("sign", "frsf", "brsf"):
        engine, ins, outs = make("fast", "chain", kind, feedback_scale=0.25)
        hand = HandFeedback(kind, {k: a.shape for k, a in engine.feedback_weights().items()},
                            scale=0.25)
        check_F(engine, hand)
        U, Y = frames(ins, outs, 3)
        for u, y in zip(U, Y):
            engine.step(u, y)
            hand.draw() if kind == "brsf" else None
        check_F(engine, hand)


def hand_conv_vjp(delta, F, stride, padding, in_hw):
    """δ_in[b,c,y,x] = Σ F[o,c,i,j] δ[b,o,yo,xo] over y+ph = yo·sh+i, x+pw = xo·sw+j."""
    (sh, sw), (ph, pw) = stride, padding
    b, o, ho, wo = delta.shape
    _, c, kh, kw = F.shape
    out = np.zeros((b, c, in_hw[0] + 2 * ph, in_hw[1] + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            for yo in range(ho):
                for xo in range(wo):
                    out[:, :, yo * sh + i, xo * sw + j] += delta[:, :, yo, xo] @ F[:, :, i, j]
    return out[:, :, ph:ph + in_hw[0], pw:pw + in_hw[1]]


@pytest.mark.parametrize("executor", ["generic", "fast", "jax"])
@pytest.mark.parametrize("model_name", ["chain", "conv"])
@pytest.mark.parametrize("kind", ["sign", "frsf", "brsf"])
def test_delta_one_tick_later_is_F_times_delta(executor, model_name, kind):
    """δ[t+1, p] = δ[t, c] · F_c[t] for p the parent of c (derivative none: no σ')."""
    if executor == "jax" and kind == "brsf":
        pytest.skip("refused")
    engine, ins, outs = make(executor, model_name, kind, derivative="none")
    verts = engine.model.vertices
    U, Y = frames(ins, outs, 9)
    for t, (u, y) in enumerate(zip(U, Y)):
        F = engine.feedback_weights()
        deltas = [None] + [np.array(engine.delta(i)) for i in range(1, len(verts))]
        engine.step(u, y) if executor != "jax" else engine.run_chunk(u[None], y[None])
        if t < 4:
            continue
        for v in verts[2:]:
            if "W" not in v.param_names:
                continue
            p = v.parents[0]
            if v.kind == "dense":
                want = deltas[v.index] @ F[f"{v.name}.W"]
            else:
                want = hand_conv_vjp(deltas[v.index], F[f"{v.name}.W"], v.cfg["stride"],
                                     v.cfg["padding"], verts[p].shape[1:])
            np.testing.assert_allclose(engine.delta(p), want, rtol=1e-12, atol=1e-14,
                                       err_msg=f"tick {t} vertex {verts[p].name}")


def _brsf_run(seed, executor="fast"):
    engine, ins, outs = make(executor, "conv", "brsf", feedback_seed=seed, accumulate=2)
    U, Y = frames(ins, outs, 6)
    for u, y in zip(U, Y):
        engine.step(u, y)
    return engine.feedback_weights(), engine.parameters()


def test_brsf_is_reproducible_and_differs_across_seeds():
    (f1, w1), (f2, w2), (f3, _) = _brsf_run(3), _brsf_run(3), _brsf_run(4)
    for k in f1:
        np.testing.assert_array_equal(f1[k], f2[k])
        assert not np.array_equal(np.abs(f1[k]), np.abs(f3[k])), k
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k])
    # the generic step draws the same numbers in the same order
    fg, _ = _brsf_run(3, "generic")
    for k in f1:
        np.testing.assert_allclose(fg[k], f1[k], rtol=1e-12, atol=1e-14)


def test_frsf_magnitudes_stay_and_brsf_magnitudes_change():
    for kind, same in (("frsf", True), ("brsf", False)):
        engine, ins, outs = make("fast", "chain", kind)
        first = {k: np.abs(f) for k, f in engine.feedback_weights().items()}
        U, Y = frames(ins, outs, 4)
        for u, y in zip(U, Y):
            engine.step(u, y)
        W = engine.parameters()
        for k, f in engine.feedback_weights().items():
            nz = W[k] != 0
            assert np.array_equal(np.abs(f)[nz], first[k][nz]) == same, (kind, k)


def test_fan_rule_for_every_layer_kind_with_weights():
    assert fans((7, 5)) == (5, 7)
    assert fans((4, 3, 3, 2)) == (18, 24)
    seen = set()
    for build, _, _ in MODELS.values():
        for v in build().vertices[1:]:
            if "W" in v.param_names:
                shape = v.layer.param_shapes["W"]
                assert fans(shape) == hand_fans(shape), v.kind
                assert fans(shape)[0] == v.layer.fan_in()       # random's N(0, 1/fan_in)
                seen.add(v.kind)
    assert seen == {"dense", "conv2d"}


def test_random_feedback_numbers_are_unchanged():
    """random's B: N(0, scale²/fan_in) from default_rng(seed) in vertex order."""
    engine, _, _ = make("fast", "conv", "random", feedback_scale=0.7)
    g = np.random.default_rng(SEED)
    for k, f in engine.feedback_weights().items():
        want = g.normal(0.0, 0.7 / np.sqrt(hand_fans(f.shape)[0]), f.shape)
        np.testing.assert_array_equal(f, want, err_msg=k)


@pytest.mark.parametrize("model_name", ["chain", "conv"])
@pytest.mark.parametrize("kind", ["sign", "frsf"])
def test_jax_equals_numpy_over_learning_ticks(model_name, kind):
    CompiledEngine = compiled()
    kw = dict(accumulate=2, derivative="local")
    a, ins, outs = make("fast", model_name, kind, **kw)
    b, _, _ = make("jax", model_name, kind, **kw)
    U, Y = frames(ins, outs, 30)
    assert isinstance(b, CompiledEngine)
    for u, y in zip(U, Y):
        a.step(u, y)
    b.run_chunk(U, Y)
    for got, want in ((b.feedback_weights(), a.feedback_weights()),
                      (b.parameters(), a.parameters())):
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    for i in range(1, len(a.model)):
        np.testing.assert_allclose(b.delta(i), a.delta(i), rtol=1e-12, atol=1e-12)


def test_jax_refuses_brsf_and_auto_never_picks_it():
    CompiledEngine = compiled()
    with pytest.raises(SimulatorError, match="brsf.*numpy executor"):
        CompiledEngine(MODELS["chain"][0](), feedback="brsf")
    from simulator import scene
    from simulator.build import build
    for kind, want in (("frsf", "jax"), ("brsf", "numpy")):
        name, raw = scene.load("fig1_constant")
        sc = scene.apply_overrides(raw, [f"rule.feedback={kind}", "rule.learning_rate=0.1",
                                         "run.backend=auto"], name)
        parts = build(sc)
        assert parts.backend == want, kind
        assert isinstance(parts.engine(), CompiledEngine) == (want == "jax"), kind


def test_learned_feedback_gap_shrinks_by_one_minus_eta_lambda_per_update():
    """Kolen–Pollack: B and W take the same step and decay, so W − B → (1 − ηλ)(W − B)
    at each update (every 2nd tick here), whatever the gradients."""
    for executor in ("generic", "fast"):
        engine, ins, outs = make(executor, "conv", "learned", accumulate=2)
        gap = {k: engine.parameters()[k] - f for k, f in engine.feedback_weights().items()}
        assert all(np.abs(g).max() > 0.1 for g in gap.values())
        U, Y = frames(ins, outs, 6)
        for t, (u, y) in enumerate(zip(U, Y)):
            engine.step(u, y)
            W = engine.parameters()
            for k, f in engine.feedback_weights().items():
                want = gap[k] * (1 - 0.05 * 0.3) ** ((t + 1) // 2)
                np.testing.assert_allclose(W[k] - f, want, rtol=1e-12, atol=1e-14)


# Machado, Oliveira & Fernandes 2009, severity 1: linear-RGB simulation matrices.
VISION = {"normal": np.eye(3),
          "deuteranope": np.array([[0.367322, 0.860646, -0.227968],
                                   [0.280085, 0.672501, 0.047413],
                                   [-0.011820, 0.042940, 0.968881]]),
          "protanope": np.array([[0.152286, 1.052583, -0.204868],
                                 [0.114503, 0.786281, 0.099216],
                                 [-0.003882, -0.048116, 1.051998]])}


def _lab(hex_colour, vision):
    """CIELAB (D65) of an sRGB colour as seen with ``vision``."""
    c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ np.clip(VISION[vision] @ lin, 0, 1)
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_frsf_and_brsf_colours_stay_apart_for_colour_blind_readers():
    """ΔE ≥ 15 (CIELAB) from each other, every other rule and the fallback grey,
    with normal, deuteranope and protanope vision."""
    from simulator.render.learning import RULE_COLOURS, rule_colour
    from simulator.scene.sections import TRAIN_RULES
    others = {r: c for r, c in RULE_COLOURS.items() if r not in ("frsf", "brsf")}
    others["fallback"] = rule_colour("no such rule")
    for rule in ("frsf", "brsf"):
        assert rule in TRAIN_RULES
        against = dict(others, **({"frsf": RULE_COLOURS["frsf"]} if rule == "brsf" else {}))
        for name, colour in against.items():
            for vision in VISION:
                d = np.linalg.norm(_lab(RULE_COLOURS[rule], vision) - _lab(colour, vision))
                assert d >= 15, (rule, name, vision, d)
