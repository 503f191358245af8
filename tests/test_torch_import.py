"""Model.from_torch / model.to_torch (simulator/model/torch_import.py).

Oracle: torch itself, an implementation that shares no code with the model
core: the module's own float64 forward (values to 1e-12) and torch.autograd's
gradients of Σ_batch ½‖out − y‖² (to 1e-10) against ``reference.backprop``;
BatchNorm folding against torch's ``fuse_conv_bn_eval``; fact A′ on the
imported nets with path lengths enumerated in the test (oracles.paths); Z-IL
and exact Activation Relaxation on them against torch's gradients.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

from simulator import Model, SimulatorError
from simulator.backend import Backend
from simulator.model import reference as R

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
_spec = importlib.util.spec_from_file_location(
    "torch_models", os.path.join(os.path.dirname(__file__), "..", "examples", "torch_models.py"))
EX = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(EX)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def torch_grads(module, u, y):
    """{"<FX name>.W": ∂ℓ/∂weight, "<FX name>.b": ∂ℓ/∂bias} by torch.autograd."""
    module.zero_grad()
    out = module(t64(u))
    (0.5 * ((out - t64(y)) ** 2).sum()).backward()
    grads = {}
    for name, m in module.named_modules():
        for short, p in (("W", getattr(m, "weight", None)), ("b", getattr(m, "bias", None))):
            if isinstance(p, torch.Tensor) and p.grad is not None:
                grads[f"{name.replace('.', '_')}.{short}"] = p.grad.numpy().copy()
    return out.detach().numpy(), grads


def round_trip(module, in_shape, rng, batch=3):
    """Import ``module`` (float64, eval) and check the forward against torch's to
    1e-12 and every parameter's backprop gradient against autograd's to 1e-10."""
    module = module.double().eval()
    u = rng.normal(size=(batch,) + in_shape)
    model = Model.from_torch(module, t64(u))
    got = R.forward(model, u)[model.names[-1]]
    y = rng.normal(size=got.shape)
    want, grads = torch_grads(module, u, y)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))
    mine = R.backprop(model, u, y, "mse")
    assert set(grads) <= set(mine) and {k for k in mine if k.endswith(".W")} <= set(grads)
    for k, g in grads.items():
        assert np.linalg.norm(mine[k] - g) <= 1e-10 * max(1.0, np.linalg.norm(g)), k
    return model, u


class Seq(nn.Module):
    """Modules applied in order (a plain Sequential, but traced through its forward)."""

    def __init__(self, *mods):
        super().__init__()
        self.m = nn.ModuleList(mods)

    def forward(self, x):
        for m in self.m:
            x = m(x)
        return x


class Lambda(nn.Module):
    """forward = f(self, x): lets a test write a forward with functions inline."""

    def __init__(self, f, **mods):
        super().__init__()
        self.f = f
        for k, m in mods.items():
            setattr(self, k, m)

    def forward(self, x):
        return self.f(self, x)


# ------------------------------------------------------------------ per op
OPS = {
    "dense_tanh": (lambda: Seq(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)), (5,),
                   ["dense", "dense"]),
    "linear_no_bias": (lambda: Seq(nn.Linear(5, 3, bias=False), nn.Sigmoid()), (5,),
                       ["linear"]),
    "linear_tokens": (lambda: Seq(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)), (6, 5),
                      ["linear", "linear"]),
    "conv": (lambda: Seq(nn.Conv2d(2, 3, 3, padding=1), nn.Sigmoid(),
                         nn.Conv2d(3, 2, (3, 2), stride=(2, 1), padding=(1, 0), bias=False),
                         nn.Flatten(), nn.Linear(2 * 4 * 6, 3)), (2, 7, 7),
             ["conv2d", "conv2d", "flatten", "dense"]),
    "conv_same": (lambda: Seq(nn.Conv2d(1, 2, 3, padding="same"), nn.Tanh(), nn.Flatten(),
                              nn.Linear(2 * 5 * 5, 2)), (1, 5, 5), ["conv2d", "flatten", "dense"]),
    "avg_pool": (lambda: Seq(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(2 * 3 * 3, 2)), (1, 8, 8),
                 ["conv2d", "pool", "flatten", "dense"]),
    "max_pool": (lambda: Seq(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, stride=2), nn.Flatten(),
                             nn.Linear(2 * 3 * 3, 2)), (1, 9, 9),
                 ["conv2d", "pool", "flatten", "dense"]),
    "adaptive_pool": (lambda: Seq(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(3, 2)), (1, 6, 6),
                      ["conv2d", "pool", "flatten", "dense"]),
    "torch_flatten": (lambda: Lambda(lambda s, x: s.l(torch.flatten(s.c(x), 1)),
                                     c=nn.Conv2d(1, 2, 2), l=nn.Linear(18, 2)), (1, 4, 4),
                      ["conv2d", "flatten", "dense"]),
    "view": (lambda: Lambda(lambda s, x: s.l(s.c(x).view(x.size(0), -1)),
                            c=nn.Conv2d(1, 2, 2), l=nn.Linear(18, 2)), (1, 4, 4),
             ["conv2d", "flatten", "dense"]),
    "reshape": (lambda: Lambda(lambda s, x: s.l(s.c(x).reshape(x.shape[0], -1)),
                               c=nn.Conv2d(1, 2, 2), l=nn.Linear(18, 2)), (1, 4, 4),
                ["conv2d", "flatten", "dense"]),
    "add_residual": (lambda: Lambda(
        lambda s, x: s.c(F.relu(torch.tanh(s.b(h := torch.tanh(s.a(x)))) + h)),
        a=nn.Linear(4, 5), b=nn.Linear(5, 5), c=nn.Linear(5, 2)), (4,),
        ["dense", "dense", "add", "dense"]),
    "torch_add": (lambda: Lambda(lambda s, x: s.c(torch.add(s.a(x), s.b(x)).sigmoid()),
                                 a=nn.Linear(4, 3), b=nn.Linear(4, 3), c=nn.Linear(3, 2)), (4,),
                  ["dense", "dense", "add", "dense"]),
    "identity_dropout": (lambda: Seq(nn.Linear(4, 3), nn.Identity(), nn.Dropout(0.5),
                                     nn.Tanh(), nn.Linear(3, 2)), (4,), ["dense", "dense"]),
    "attention": (lambda: Lambda(
        lambda s, x: s.o(torch.softmax(s.q(x) @ s.k(x).transpose(-2, -1) / 6 ** 0.5, dim=-1)
                         @ s.v(x)),
        q=nn.Linear(6, 6), k=nn.Linear(6, 6), v=nn.Linear(6, 6), o=nn.Linear(6, 3)), (4, 6),
        ["linear", "linear", "matmul", "softmax", "linear", "matmul", "linear"]),
    "attention_functions": (lambda: Lambda(
        lambda s, x: F.softmax(0.5 * torch.matmul(s.q(x), s.k(x).mT), -1).matmul(x),
        q=nn.Linear(3, 3, bias=False), k=nn.Linear(3, 3)), (5, 3),
        ["linear", "linear", "matmul", "softmax", "matmul"]),
}


@pytest.mark.parametrize("op", list(OPS))
def test_each_mapped_op_round_trips_values_and_gradients(rng, op):
    make, shape, kinds = OPS[op]
    torch.manual_seed(0)
    model, _ = round_trip(make(), shape, rng)
    assert sorted(v.kind for v in model.vertices[1:]) == sorted(kinds)


def test_activations_fold_into_the_producing_layer(rng):
    torch.manual_seed(1)
    module = Lambda(lambda s, x: s.c(F.relu(s.b(torch.sigmoid(s.a(x))))).tanh(),
                    a=nn.Linear(3, 4), b=nn.Linear(4, 4), c=nn.Linear(4, 2))
    model, _ = round_trip(module, (3,), rng)
    assert [v.cfg["activation"] for v in model.vertices[1:]] == ["logistic", "relu", "tanh"]


def test_a_float32_sequential_imports_its_exact_float32_values(rng):
    torch.manual_seed(4)
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3)).eval()
    u = rng.normal(size=(2, 1, 5, 5))
    model = Model.from_torch(module, torch.from_numpy(u).float())
    p = model.parameters()
    assert [v.kind for v in model.vertices[1:]] == ["conv2d", "flatten", "dense"]
    assert all(a.dtype == np.float64 for a in p.values())
    torch_params = [module[0].weight, module[0].bias, module[3].weight, module[3].bias]
    for (key, a), t in zip(p.items(), torch_params):
        assert np.array_equal(a, t.detach().numpy().astype(np.float64)), key
    want = module(torch.from_numpy(u).float()).detach().numpy()
    assert np.max(np.abs(R.forward(model, u)[model.names[-1]] - want)) < 1e-5


def test_matmul_factor_and_transpose_flags():
    module = Lambda(lambda s, x: torch.matmul(s.a(x), s.b(x).transpose(1, 2)) * 3.0 / 2.0,
                    a=nn.Linear(3, 3), b=nn.Linear(3, 3)).double()
    model = Model.from_torch(module, torch.zeros(2, 4, 3, dtype=torch.float64))
    mm = model.vertices[-1]
    assert mm.kind == "matmul" and mm.cfg["transpose"] and mm.cfg["factor"] == 1.5


def test_batchnorm_folds_into_the_conv_like_torchs_own_fusion(rng):
    torch.manual_seed(2)
    conv, bn = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    module = Seq(conv, bn, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double().eval()
    u = rng.normal(size=(2, 2, 4, 4))
    model = Model.from_torch(module, t64(u))
    assert [v.kind for v in model.vertices[1:]] == ["conv2d", "flatten", "dense"]
    assert any("BatchNorm2d" in line and "folded" in line for line in model.import_report)
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
    name = model.names[1]
    p = model.parameters()
    assert np.max(np.abs(p[f"{name}.W"] - fused.weight.detach().numpy())) < 1e-13
    assert np.max(np.abs(p[f"{name}.b"] - fused.bias.detach().numpy())) < 1e-13
    # the fused torch net is the gradient oracle for the folded parameters
    twin = Seq(fused, nn.ReLU(), nn.Flatten(), module.m[4]).double().eval()
    round_trip(twin, (2, 4, 4), rng)
    got = R.forward(model, u)[model.names[-1]]
    assert np.max(np.abs(got - module(t64(u)).detach().numpy())) < 1e-12


# ------------------------------------------------------------------ refusals
def a_loop(self, x):
    if x.sum() > 0:                         # data-dependent control flow
        return self.l(x)
    return -self.l(x)


REFUSALS = {
    "grouped": (Seq(nn.Conv2d(2, 2, 3, groups=2)), (2, 5, 5), ["'m_0'", "call_module",
                                                                  "groups=2"]),
    "dilation": (Seq(nn.Conv2d(1, 2, 3, dilation=2)), (1, 7, 7), ["'m_0'", "dilation (2, 2)"]),
    "cumsum": (Lambda(lambda s, x: torch.cumsum(s.l(x), 1), l=nn.Linear(3, 3)), (3,),
               ["'cumsum'", "call_function", "target cumsum", "test_torch_import.py:"]),
    "several_outputs": (Lambda(lambda s, x: s.l(torch.chunk(x, 2, dim=1)[0]),
                               l=nn.Linear(2, 2)), (4,), ["'chunk'", "several tensors"]),
    "parameter_read": (Lambda(lambda s, x: s.l(x) + s.l.weight.sum(), l=nn.Linear(3, 3)), (3,),
                       ["op get_attr"]),
    "spatial_flatten_without_tokens": (
        Lambda(lambda s, x: s.l(s.c(x).flatten(2)), c=nn.Conv2d(1, 2, 2, stride=2),
               l=nn.Linear(4, 3)), (1, 4, 4), ["flatten of the spatial axes", "(tokens)"]),
}


# activations that cannot fold into their producer: (module, input shape, the vertices
# that become explicit activation vertices, i.e. identity + σ)
OWN_ACTIVATION = {
    "after_pool": (Seq(nn.Conv2d(1, 2, 2), nn.AvgPool2d(2), nn.Tanh()), (1, 5, 5), ["tanh"]),
    "of_a_shared_value": (
        Lambda(lambda s, x: s.b(torch.tanh(h := s.a(x)) + h), a=nn.Linear(3, 3),
               b=nn.Linear(3, 2)), (3,), ["tanh"]),
    "twice": (Seq(nn.Linear(3, 3), nn.ReLU(), nn.Tanh()), (3,), ["tanh"]),
    "of_the_input": (Seq(nn.Tanh(), nn.Linear(3, 2)), (3,), ["tanh"]),
}


@pytest.mark.parametrize("case", list(OWN_ACTIVATION))
def test_an_activation_that_cannot_fold_is_its_own_vertex(rng, case):
    """Forward and gradients against torch (round_trip), the activation vertex reported,
    and the export's forward equal to the module's."""
    torch.manual_seed(4)
    module, shape, acts = OWN_ACTIVATION[case]
    model, u = round_trip(module, shape, rng)
    own = [v for v in model.vertices[1:] if v.kind == "identity"]
    assert [v.cfg["activation"] for v in own] == acts
    assert sum("as its own vertex" in line for line in model.import_report) == len(acts)
    back = model.to_torch()(t64(u)).detach().numpy()
    np.testing.assert_allclose(back, module(t64(u)).detach().numpy(), rtol=1e-12, atol=1e-14)

@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refusal_is_one_error_naming_the_node(case):
    module, shape, words = REFUSALS[case]
    with pytest.raises(SimulatorError) as err:
        Model.from_torch(module.double().eval(), torch.zeros((2,) + shape, dtype=torch.float64))
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith("Model.from_torch: ")
    for w in words:
        assert w in text, (w, text)


def test_a_forward_that_fails_on_the_example_is_one_line():
    module = Seq(nn.Linear(3, 2)).double()
    with pytest.raises(SimulatorError) as err:
        Model.from_torch(module, torch.zeros(2, 5, dtype=torch.float64))
    assert "fails on example_input of shape (2, 5)" in str(err.value)
    assert "\n" not in str(err.value)


def test_control_flow_is_one_error_with_fxs_reason():
    module = Lambda(a_loop, l=nn.Linear(3, 3)).double()
    with pytest.raises(SimulatorError) as err:
        Model.from_torch(module, torch.zeros(2, 3, dtype=torch.float64))
    text = str(err.value)
    assert "torch.fx cannot trace" in text and "control flow" in text and "\n" not in text


def test_a_missing_torch_is_one_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SimulatorError, match=r"tickprop\[torch\]"):
        Model.from_torch(object(), None)


# ------------------------------------------------------------------ export
@pytest.mark.parametrize("op", ["conv", "max_pool", "add_residual", "attention",
                                "linear_no_bias"])
def test_export_computes_the_model_and_imports_back_unchanged(rng, op):
    make, shape, _ = OPS[op]
    torch.manual_seed(3)
    module = make().double().eval()
    u = rng.normal(size=(2,) + shape)
    model = Model.from_torch(module, t64(u))
    back = model.to_torch()
    want = R.forward(model, u)[model.names[-1]]
    assert np.max(np.abs(back(t64(u)).detach().numpy() - want)) < 1e-12
    again = Model.from_torch(back, t64(u))
    assert [v.kind for v in again.vertices] == [v.kind for v in model.vertices]
    for a, b in zip(again.parameters().values(), model.parameters().values()):
        assert np.array_equal(a, b)


# ------------------------------------------------------------------ the three example nets
def test_lenet5_imports_exactly(rng):
    torch.manual_seed(5)
    model, _ = round_trip(EX.LeNet5(), (1, 28, 28), rng, batch=4)
    assert [v.kind for v in model.vertices[1:]] == ["conv2d", "pool", "conv2d", "pool",
                                                    "flatten", "dense", "dense", "dense"]
    assert model.output_shape == (10,) and model.import_report == []


def test_resnet8_imports_exactly_with_batchnorm_folded(rng):
    torch.manual_seed(8)
    model, _ = round_trip_folded(EX.randomize_batchnorm(EX.ResNet8()), (1, 28, 28), rng)
    kinds = [v.kind for v in model.vertices[1:]]
    assert kinds.count("conv2d") == 9 and kinds.count("add") == 3 and "pool" in kinds
    assert sum("BatchNorm2d" in line for line in model.import_report) == 9


def round_trip_folded(module, shape, rng):
    """As ``round_trip`` for a net whose BatchNorms fold: values against the module;
    gradients against the module with every conv + BN pair fused by torch."""
    module = module.double().eval()
    from torch.fx.experimental.optimization import fuse
    fused = fuse(module)
    model, u = round_trip(fused, shape, rng, batch=2)
    ref = Model.from_torch(module, t64(u))
    assert [v.kind for v in ref.vertices] == [v.kind for v in model.vertices]
    for a, b in zip(ref.parameters().values(), model.parameters().values()):
        assert np.max(np.abs(a - b)) <= 1e-13 * max(1.0, np.max(np.abs(b)))
    got = R.forward(ref, u)[ref.names[-1]]
    want = module(t64(u)).detach().numpy()
    assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))
    return ref, u


def test_vit_block_imports_exactly(rng):
    torch.manual_seed(9)
    model, u = round_trip(EX.ViTBlock(), (1, 28, 28), rng, batch=2)
    kinds = [v.kind for v in model.vertices[1:]]
    assert kinds[:2] == ["conv2d", "tokens"] and model.vertices[2].shape == (16, 16)
    assert kinds.count("matmul") == 2 and kinds.count("softmax") == 1
    assert kinds.count("add") == 2 and kinds[-1] == "dense"
    # token 5 is position (1, 1): the embedding of the 7x7 patch u[:, 0, 7:14, 7:14]
    emb, tokens = (R.forward(model, u)[n] for n in model.names[1:3])
    W, b = model.parameters()[f"{model.names[1]}.W"], model.parameters()[f"{model.names[1]}.b"]
    patch = u[1, 0, 7:14, 7:14]
    np.testing.assert_allclose(tokens[1, 5], np.einsum("dij,ij->d", W[:, 0], patch) + b,
                               rtol=1e-12)
    np.testing.assert_array_equal(tokens[1, 5], emb[1, :, 1, 1])



@pytest.mark.parametrize("net", ["lenet5", "resnet8", "vit"])
def test_fact_a_prime_on_the_levelled_import(rng, net):
    """Constant u and y, frozen weights, levelled: g of vertex v equals backprop
    from tick D + bwd(v) (tests/test_graph_engine.py's derivation), not one earlier."""
    from oracles import paths
    from test_graph_engine import keys_of, param_vertices, rel

    from simulator.engine.tick import GraphEngine
    torch.manual_seed(6)
    module, shape = EX.NETS[net]()
    u = rng.normal(size=(2,) + shape)
    model = Model.from_torch(module.double().eval(), t64(u)).level()
    y = rng.normal(size=(2, 10))
    into, out_of = paths(model)
    D = max(into[model.names[-1]])
    want = R.backprop(model, u, y, "mse")
    eng = GraphEngine(model, batch=2, levelled=True)
    be = Backend("cpu")
    first = {v: D + max(out_of[v]) for v in param_vertices(model)}
    assert first[model.names[1]] == 2 * D - 1
    for t in range(max(first.values()) + 2):
        eng.step(be.asarray(u), be.asarray(y))
        g = eng.gradients()
        for v, t0 in first.items():
            keys = keys_of(model, v)
            err = rel({k: g[k] for k in keys}, {k: want[k] for k in keys})
            if t >= t0:
                assert err < 1e-10, (v, t, t0, err)
            elif t == t0 - 1:
                assert err > 1e-6, (v, t, t0, err)


@pytest.mark.parametrize("net", ["lenet5", "resnet8", "vit"])
def test_zil_and_exact_relaxation_on_the_imports_give_torchs_gradients(rng, net):
    """Other rules on the imported weights: one Z-IL update (Theorem 3 of paper 002)
    is torch's SGD step, and Activation Relaxation with η_x = 1 run past the depth
    gives torch.autograd's gradients (ResNet-8's: of torch's own conv+BN fusion)."""
    from torch.fx.experimental.optimization import fuse

    from simulator.rules.predictive_coding import zil_model
    from simulator.rules.relaxation import model_weight_gradients, relax_model
    torch.manual_seed(7)
    module, shape = EX.NETS[net]()
    module = module.double().eval()
    u = rng.normal(size=(2,) + shape)
    y = rng.normal(size=(2, 10))
    model = Model.from_torch(module, t64(u))
    _, want = torch_grads(fuse(module) if net == "resnet8" else module, u, y)
    assert {k for k in model.param_keys() if k.endswith(".W")} <= set(want)
    relaxed = relax_model(model, u, y, eta_x=1.0, iterations=model.depth + 1, variant="exact")
    ar = model_weight_gradients(relaxed.sweep, relaxed.xs)
    step = zil_model(model, u, y, 0.1)
    p = model.parameters()
    for k, g in want.items():
        assert np.linalg.norm(ar[k] - g) <= 1e-10 * max(1.0, np.linalg.norm(g)), k
        assert np.max(np.abs(step.params[k] - (p[k] - 0.1 * g))) <= 1e-12, k
