"""The one builder: a diffusion run, online training and the relaxation kinds
get their network and stream from simulator.build, so the same scene keys give
the same objects wherever they are used, and bad pairs are refused there."""
import numpy as np

from oracles import per_layer
import pytest

from simulator import build, scene
from simulator.engine import Engine
from simulator.errors import SceneError
from simulator.kinds import ar_converge
from simulator.experiments.activation_relaxation import run_converge
from simulator.runner import Prepared
from simulator.experiments.training import Setup

NET = {"depth": 3, "width": 5, "inputs": 4, "outputs": 3, "scale": 0.7}


def diffusion(**sections):
    raw = {"network": dict(NET), "stream": {"kind": "held", "hold": 4}, "run": {"seed": 5}}
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return scene.validate(raw, "test")


def test_seeds_are_the_seed_sequence_children():
    """Closed form from numpy's documented SeedSequence: child i's first word."""
    s = build.seeds(42)
    kids = np.random.SeedSequence(42).spawn(4)
    assert tuple(s) == tuple(int(k.generate_state(1)[0]) for k in kids)
    assert len(set(s)) == 4 and s.network == s[0] and s.feedback == s[3]


def test_network_follows_the_scene_keys():
    net = build.build_network(scene.spec_of(diffusion()).network, seed=1)
    assert net.param_shapes() == {"1.W": (5, 4), "1.b": (5,), "2.W": (5, 5), "2.b": (5,),
                                  "3.W": (3, 5), "3.b": (3,)}
    assert [v.layer.activation for v in net.vertices[1:]] == ["tanh", "tanh", "linear"]
    # W ~ N(0, scale²/n_in): over many draws the variance is scale²/n_in
    big = scene.spec_of(diffusion(network={"width": 400, "inputs": 400})).network
    w = build.build_network(big, seed=2).parameters()["2.W"]
    assert w.var() * 400 == pytest.approx(0.7 ** 2, rel=0.05)


def test_diffusion_run_and_training_build_the_same_network_and_frames():
    d = diffusion(rule={"loss": "mse"})
    t = scene.validate({"kind": "train", "network": dict(NET), "stream": {"kind": "held", "hold": 4},
                        "run": {"seed": 5}, "train": {"loss": "mse"}}, "test")
    run, setup = Prepared("d", d), Setup(scene.spec_of(t))
    want = setup.model.parameters()
    assert list(run.network.parameters()) == list(want)
    for k, a in run.network.parameters().items():
        np.testing.assert_array_equal(a, want[k])
    u1, y1, _ = run.stream.take(20)
    u2, y2, _ = setup.new_stream().take(20)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(y1, y2)
    # and a second stream from the same setup repeats the frames (every rule sees them)
    np.testing.assert_array_equal(setup.new_stream().take(20)[0], u2)


def test_parts_engine_is_fresh_and_carries_the_rule():
    d = diffusion(rule={"feedback": "random", "learning_rate": 0.01})
    parts = build.build(d)
    e1, e2 = parts.engine(), parts.engine()
    assert isinstance(e1, Engine) and e1 is not e2
    assert e1.feedback == "random" and e1.learning_rate == 0.01
    u, y, _ = parts.stream.take(6)
    for k in range(6):
        e1.step(u[k], y[k])
    np.testing.assert_array_equal(per_layer(e2.parameters())[0],
                                  parts.network.parameters()["1.W"])  # untouched


@pytest.mark.parametrize("sections,key", [
    ({"stream": {"kind": "dataset"}}, "target.kind"),
    ({"target": {"kind": "labels"}}, "target.kind"),
    ({"stream": {"kind": "held", "hold": 2, "crossfade": 3}}, "stream.crossfade"),
])
def test_bad_stream_target_pairs_are_refused_naming_the_key(sections, key):
    with pytest.raises(SceneError, match=key.replace(".", r"\.")):
        build.build(diffusion(**sections))


def test_relaxation_network_is_what_the_ar_kinds_run():
    _, sc = scene.load("ar_converge")
    sc = scene.apply_overrides(sc, ["network.sizes=[6, 5, 4, 3]", 'relaxation.data="gaussian"',
                                    "relaxation.eta_x=[1.0]", "relaxation.batch=2"], "ar")
    kw = build.relaxation_network(scene.spec_of(sc))
    assert kw["sizes"] == [6, 5, 4, 3] and kw["activations"] == ["relu", "relu", "linear"]
    res = run_converge(eta_x=[1.0], batch=2, data="gaussian", iterations=5, **kw)
    assert res["errors"].shape == (1, 6, 4)
    with pytest.raises(SceneError, match="network.sizes"):
        ar_converge.prepare("ar", scene.apply_overrides(sc, ["network.sizes=[6, 3]"], "ar"))
