"""The public Python API refuses bad arguments with ONE SimulatorError (a
ValueError) naming the call's argument, what was expected and what was given
-- never a raw numpy KeyError, AttributeError, TypeError or broadcast error,
and never a silent coercion (a float layer index, a string array stepped as
numbers, a NaN learning rate). The table below is what a script calling each
public function with wrong types, shapes, names, sizes, None, strings and
wrong-length lists found; the expected text is the argument's name as the
caller wrote it."""
import types

import numpy as np
import pytest

import simulator
from simulator import (Engine, GraphEngine, Model, Network, SimulatorError, Trace, reference,
                       simulate, sync_set)
from simulator.api import resolve
from simulator.errors import MissingKeyError
from simulator.model import reference as graph_reference
from simulator.streams import make_stream

LAYERS = [{"name": "h", "kind": "dense", "units": 3}, {"name": "o", "kind": "dense", "units": 2}]


@pytest.fixture(scope="module")
def o(tmp_path_factory):
    """One of each public object, small: a model, a network, engines on them,
    a recorded trace, a batch of 2 frames and a stream."""
    model = Model.from_layers(LAYERS, [4], seed=0)
    net = Network.random([4, 3, 2], seed=0)
    trace = simulate("fig3_fast", ticks=12, seed=1, **{"network.depth": 3,
                                                       "record.states": True})
    stream = make_stream("held", 4, 2, np.random.default_rng(0),
                         lambda u, ids: np.zeros(u.shape[:-1] + (2,)), hold=2)
    return types.SimpleNamespace(
        model=model, net=net, trace=trace, stream=stream, eng=Engine(net, batch=2),
        geng=GraphEngine(model, batch=2), u=np.zeros((2, 4)), y=np.zeros((2, 2)),
        tmp=str(tmp_path_factory.mktemp("pictures")))


def render():
    # matplotlib loads only when a picture is drawn: the module's other cases stay quick.
    import simulator.render as r
    return r


CASES = [
    # simulate / resolve
    ("simulate(None)", lambda o: simulate(None), "scene_or_path"),
    ("simulate(overrides=5)", lambda o: simulate("fig3_fast", 5), "overrides"),
    ("simulate(overrides=[1])", lambda o: simulate("fig3_fast", [1]), "overrides"),
    ("simulate(out=5)", lambda o: simulate("fig3_fast", ticks=2, out=5), "out"),
    ("resolve({5: 1})", lambda o: resolve("fig3_fast", {5: 1}), "overrides"),
    # Trace
    ("trace['nope']", lambda o: o.trace["nope"], "Trace['nope']"),
    ("trace[5]", lambda o: o.trace[5], "Trace[5]"),
    ("select(ticks=('a','b'))", lambda o: o.trace.select(ticks=("a", "b")), "ticks"),
    ("stream_frames_of('a')", lambda o: o.trace.stream_frames_of("a"), "tags"),
    ("stream_frames_of(None)", lambda o: o.trace.stream_frames_of(None), "tags"),
    ("stream_frames_of([1.5])", lambda o: o.trace.stream_frames_of([1.5]), "tags"),
    ("trace.save(None)", lambda o: o.trace.save(None), "folder"),
    ("trace.save(missing)", lambda o: o.trace.save(o.tmp + "/no/such"), "folder"),
    # Model
    ("from_layers(seed='x')", lambda o: Model.from_layers(LAYERS, [4], seed="x"), "seed"),
    ("from_layers(seed=-1)", lambda o: Model.from_layers(LAYERS, [4], seed=-1), "seed"),
    ("from_weights(None)", lambda o: Model.from_weights(None), "weights"),
    ("from_weights(activations='nope')",
     lambda o: Model.from_weights([np.zeros((2, 3))], activations="nope"), "activations"),
    ("chain(None)", lambda o: Model.chain(None), "sizes"),
    ("chain(scale='x')", lambda o: Model.chain([4, 3, 2], scale="x"), "scale"),
    ("with_parameters(None)", lambda o: o.model.with_parameters(None), "params"),
    ("with_parameters(strings)",
     lambda o: o.model.with_parameters({k: "x" for k in o.model.param_keys()}), "params['h.W']"),
    ("model.vertex([1])", lambda o: o.model.vertex([1]), "vertex [1]"),
    # the graph oracle
    ("model.reference.forward(u=None)", lambda o: graph_reference.forward(o.model, None), "u"),
    ("model.reference.forward(u=list)",
     lambda o: graph_reference.forward(o.model, [[1, 2, 3, 4]]), "u"),
    ("model.reference.forward(None)", lambda o: graph_reference.forward(None, o.u), "model"),
    ("model.reference.forward(params={})",
     lambda o: graph_reference.forward(o.model, o.u, params={}), "params"),
    ("model.reference.backprop(y shape)",
     lambda o: graph_reference.backprop(o.model, o.u, np.zeros((2, 3))), "y"),
    ("model.reference.backprop(y=None)",
     lambda o: graph_reference.backprop(o.model, o.u, None), "y"),
    ("model.reference.backprop(loss)",
     lambda o: graph_reference.backprop(o.model, o.u, o.y, loss="nope"), "loss"),
    ("model.reference.backprop(feedback=5)",
     lambda o: graph_reference.backprop(o.model, o.u, o.y, feedback=5), "feedback"),
    ("model.reference.loss_value(y batch)",
     lambda o: graph_reference.loss_value(o.model, o.u, np.zeros((3, 2))), "y"),
    ("model.reference.frame_gradients(2-D u)",
     lambda o: graph_reference.frame_gradients(o.model, o.u, o.y), "u"),
    ("model.reference.factors(loss=5)",
     lambda o: graph_reference.factors(o.model, o.u, o.y, loss=5), "loss"),
    # simulator.reference: the same oracle, on the chain alias too
    ("reference.forward(u width)", lambda o: reference.forward(o.net, np.zeros((2, 5))), "u"),
    ("reference.backprop(None)", lambda o: reference.backprop(None, o.u, o.y), "model"),
    ("reference.backprop(loss)", lambda o: reference.backprop(o.net, o.u, o.y, loss="x"), "loss"),
    ("reference.factors(feedback=[1])",
     lambda o: reference.factors(o.net, o.u, o.y, feedback=[1]), "feedback"),
    # Network
    ("Network.random(None)", lambda o: Network.random(None), "sizes"),
    ("Network.random(['a', 2])", lambda o: Network.random(["a", 2]), "sizes[0]"),
    ("Network.random([4.5, 3, 2])", lambda o: Network.random([4.5, 3, 2]), "sizes[0]"),
    ("Network.random(seed='x')", lambda o: Network.random([4, 3, 2], seed="x"), "seed"),
    ("Network.random(scale=-1)", lambda o: Network.random([4, 3, 2], scale=-1), "scale"),
    ("Network.random(bias_scale='x')",
     lambda o: Network.random([4, 3, 2], bias_scale="x"), "bias_scale"),
    ("Network.random(activations=5)",
     lambda o: Network.random([4, 3, 2], activations=5), "activations"),
    ("Network(None)", lambda o: Network(None), "weights"),
    ("Network([['a']])", lambda o: Network([["a"]]), "weights[0]"),
    ("Network(biases=5)", lambda o: Network([np.zeros((2, 3))], biases=5), "biases"),
    # Engine
    ("Engine(None)", lambda o: Engine(None), "network"),
    ("Engine(learning_rate='x')", lambda o: Engine(o.net, learning_rate="x"), "learning_rate"),
    ("Engine(learning_rate=nan)",
     lambda o: Engine(o.net, learning_rate=float("nan")), "learning_rate"),
    ("Engine(itd_epsilon='x')", lambda o: Engine(o.net, itd_epsilon="x"), "itd_epsilon"),
    ("Engine(feedback_scale='x')",
     lambda o: Engine(o.net, feedback="random", feedback_scale="x"), "feedback_scale"),
    ("Engine(feedback_seed=-1)",
     lambda o: Engine(o.net, feedback="random", feedback_seed=-1), "feedback_seed"),
    ("Engine.step(strings)", lambda o: o.eng.step(o.u.astype(str), o.y), "input frame u"),
    ("Engine.step(complex)", lambda o: o.eng.step(o.u.astype(complex), o.y), "input frame u"),
    ("Engine.activity(5)", lambda o: o.eng.activity(5), "layer"),
    ("Engine.activity('x')", lambda o: o.eng.activity("x"), "vertex"),
    ("Engine.activity(1.5)", lambda o: o.eng.activity(1.5), "layer"),
    ("Engine.delta(0)", lambda o: o.eng.delta(0), "layer"),
    ("Engine.preactivation(9)", lambda o: o.eng.preactivation(9), "layer"),
    ("Engine.run(None, 5)", lambda o: o.eng.run(None, 5), "stream"),
    ("Engine.run(ticks='x')", lambda o: o.eng.run(o.stream, "x"), "ticks"),
    ("Engine.run(ticks=-1)", lambda o: o.eng.run(o.stream, -1), "ticks"),
    ("Engine.run(chunk=0)", lambda o: o.eng.run(o.stream, 2, chunk=0), "chunk"),
    ("Engine.run(recorder=5)", lambda o: o.eng.run(o.stream, 2, recorder=5), "recorder"),
    # GraphEngine, sync_set
    ("GraphEngine(None)", lambda o: GraphEngine(None), "model"),
    ("GraphEngine(levelled='x')", lambda o: GraphEngine(o.model, levelled="x"), "levelled"),
    ("GraphEngine(learning_rate='x')",
     lambda o: GraphEngine(o.model, learning_rate="x"), "learning_rate"),
    ("GraphEngine.step(None, y)", lambda o: o.geng.step(None, o.y), "u"),
    ("GraphEngine.step(u, None)", lambda o: o.geng.step(o.u, None), "y"),
    ("GraphEngine.step(strings)", lambda o: o.geng.step(o.u.astype(str), o.y), "u"),
    ("GraphEngine.activity(None)", lambda o: o.geng.activity(None), "vertex"),
    ("GraphEngine.activity(1.5)", lambda o: o.geng.activity(1.5), "vertex"),
    ("GraphEngine.run(None, 5)", lambda o: o.geng.run(None, 5), "stream"),
    ("sync_set(None)", lambda o: sync_set(None), "model"),
    # simulator.render
    ("raster_figure(None)", lambda o: render().raster_figure(None), "trace"),
    ("raster_figure(windows=5)", lambda o: render().raster_figure(o.trace, windows=5),
     "windows"),
    ("mismatch_figure(None)", lambda o: render().mismatch_figure(None), "trace"),
    ("mismatch({})", lambda o: render().mismatch({}), "trace"),
    ("gif_figure(None)", lambda o: render().gif_figure(None), "trace"),
    ("gif_frame(row=999)", lambda o: render().gif_frame(o.trace, 999), "row"),
    ("gif_frame(row='a')", lambda o: render().gif_frame(o.trace, "a"), "row"),
    ("write_gif(path=None)", lambda o: render().write_gif(None, o.trace), "path"),
    ("write_gif(missing folder)",
     lambda o: render().write_gif(o.tmp + "/no/such.gif", o.trace), "path"),
    ("write_gif(every='a')",
     lambda o: render().write_gif(o.tmp + "/w.gif", o.trace, every="a"), "every"),
    ("write_gif(trace=None)", lambda o: render().write_gif(o.tmp + "/w.gif", None), "trace"),
    ("write_pictures(folder=None)", lambda o: render().write_pictures(None, o.trace), "folder"),
    ("write_pictures(trace=None)", lambda o: render().write_pictures(o.tmp, None), "trace"),
    ("write_mismatch(trace=None)",
     lambda o: render().write_mismatch(o.tmp + "/m.png", None), "trace"),
    ("save_png(fig=None)", lambda o: render().save_png(None, o.tmp + "/f.png"), "fig"),
]


@pytest.mark.parametrize("call,needle", [(c, n) for _, c, n in CASES],
                         ids=[name for name, _, _ in CASES])
def test_a_bad_argument_is_one_simulator_error_naming_it(o, call, needle):
    with pytest.raises(SimulatorError) as err:
        call(o)
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "\n" not in message and len(message) < 600, message
    assert needle in message, (needle, message)
    assert "expected" in message or "no such" in message or "has no" in message, message


def test_a_missing_trace_array_is_a_key_error_too_listing_what_exists(o):
    with pytest.raises(KeyError) as err:
        o.trace["mismatch_co"]
    assert isinstance(err.value, MissingKeyError) and isinstance(err.value, SimulatorError)
    message = str(err.value)
    assert message.startswith("Trace['mismatch_co']: no such array")
    assert "did you mean 'mismatch_cos'" in message and "x_norm" in message
    assert "mismatch_co" not in o.trace and "mismatch_cos" in o.trace
    with pytest.raises(KeyError):
        o.model.vertex("nope")


def test_valid_calls_still_work(o):
    """The checks take what the API documents: numpy ints, tuples, a Model to
    Engine, negative GIF rows, integral float tags."""
    assert Network.random((4, np.int64(3), 2), seed=np.int64(2)).sizes == [4, 3, 2]
    assert Model.chain((4, np.int64(3), 2), seed=np.int64(2)).output_shape == (2,)
    assert isinstance(Network.random([4, 3, 2]), Model)     # the alias is a chain Model
    assert isinstance(Engine(o.model, batch=2), GraphEngine)
    tags = o.trace.stream_frames_of(np.array([0.0, 3.0, -1.0]))
    assert tags.dtype.kind == "i" and tags[-1] == -1
    assert o.trace.select(ticks=(np.int64(2), None)).ticks[0] == 2
    assert render().gif_frame(o.trace, -1, size=(320, 200)).shape == (200, 320, 3)
    assert simulator.SimulatorError is SimulatorError
