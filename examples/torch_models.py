"""Three PyTorch nets that ``Model.from_torch`` imports exactly (docs/torch_import.md):
a LeNet-5-style conv net, a ResNet-8-style net (BatchNorm folded) and a one-block
vision-transformer-style net on the 7×7 patches of a 28×28 digit. tests/test_torch_import.py
checks them against torch. ``python examples/torch_models.py`` measures, per net, the import
time, the errors against torch (float64), the first exact tick of fact A′ on the levelled
import and the time of 1,000 ticks of the tick engine.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    """conv 6 5×5 pad 2 → tanh → avgpool 2 → conv 16 5×5 → tanh → avgpool 2 →
    flatten → 120 → 84 → 10 (tanh between), on 1×28×28."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.pool = nn.AvgPool2d(2)
        self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.tanh(self.c1(x)))
        x = self.pool(torch.tanh(self.c2(x)))
        x = x.view(x.size(0), -1)
        return self.f3(torch.tanh(self.f2(torch.tanh(self.f1(x)))))


class Block(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); a 1×1 conv + BN shortcut
    when the stride or the width changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.short(x))


class ResNet8(nn.Module):
    """stem conv 8 + BN + relu, 3 residual stages (8, 16, 32 channels; strides 1, 2, 2),
    global average pool, linear 10, on 1×28×28."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.stages = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2), Block(16, 32, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def randomize_batchnorm(module):
    """Running statistics and affine parameters away from their defaults (as after training)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    return module


def resnet8():
    """A ResNet8 with its BatchNorm statistics as after training (for ``tickprop import``:
    a function returning a module, examples/torch_models.py:resnet8)."""
    return randomize_batchnorm(ResNet8())


class ViTBlock(nn.Module):
    """One-block vision-transformer-style net on the 16 7×7 patches of a 28×28 digit:
    patch embedding (a 7×7 conv of stride 7, then the 4×4 positions as 16 tokens), one
    self-attention head with a residual, an MLP with a residual, a flatten + linear head
    to 10. No positional embedding (a parameter read directly does not map)."""

    def __init__(self, d=16):
        super().__init__()
        self.embed = nn.Conv2d(1, d, 7, stride=7)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.mlp1, self.mlp2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.head = nn.Linear(16 * d, 10)
        self.scale = d ** -0.5

    def forward(self, x):
        z = self.embed(x).flatten(2).transpose(1, 2)
        a = torch.softmax(self.q(z) @ self.k(z).transpose(-2, -1) * self.scale, dim=-1)
        z = z + self.o(a @ self.v(z))
        z = z + self.mlp2(F.relu(self.mlp1(z)))
        return self.head(z.flatten(1))


NETS = {"lenet5": lambda: (LeNet5(), (1, 28, 28)),
        "resnet8": lambda: (resnet8(), (1, 28, 28)),
        "vit": lambda: (ViTBlock(), (1, 28, 28))}


def measure(name, seed=0, batch=2, ticks=1000):
    """{import_s, forward_err, grad_err, depth, first_exact_tick, ticks_s} of net ``name``:
    import_s the faster of two imports (the first in a process also loads torch.fx);
    forward_err max |model − torch|; grad_err ‖g − g_torch‖/‖g_torch‖ over all parameters
    (Σ ½‖out − y‖², ``reference.backprop`` against autograd; ResNet-8's against torch's
    own conv+BN fusion); first_exact_tick: the first tick the levelled engine's
    gradients are within 1e-10 of backprop's (the same relative norm)."""
    from torch.fx.experimental.optimization import fuse

    from simulator import Model
    from simulator.backend import Backend
    from simulator.engine.tick import GraphEngine
    from simulator.model import reference as R
    torch.manual_seed(seed)
    g = np.random.default_rng(seed)
    module, shape = NETS[name]()
    module = module.double().eval()
    u = g.normal(size=(batch,) + shape)
    import_s = []
    for _ in range(2):
        t0 = time.perf_counter()
        model = Model.from_torch(module, torch.from_numpy(u))
        import_s.append(time.perf_counter() - t0)
    out = R.forward(model, u)[model.names[-1]]
    y = g.normal(size=out.shape)
    twin = fuse(module) if name == "resnet8" else module
    pred = twin(torch.from_numpy(u))
    (0.5 * ((pred - torch.from_numpy(y)) ** 2).sum()).backward()
    want = {f"{n.replace('.', '_')}.{k}": p.grad.numpy()
            for n, m in twin.named_modules()
            for k, p in (("W", getattr(m, "weight", None)), ("b", getattr(m, "bias", None)))
            if isinstance(p, torch.Tensor) and p.grad is not None}
    got = R.backprop(model, u, y, "mse")
    assert set(want) <= set(got)

    def rel(g):
        return np.sqrt(sum(np.sum((np.asarray(g[k]) - want[k]) ** 2) for k in want)
                       / sum(np.sum(w ** 2) for w in want.values()))
    grad_err = rel(got)
    forward_err = float(np.max(np.abs(out - module(torch.from_numpy(u)).detach().numpy())))
    run = model.level()
    eng, be = GraphEngine(run, batch=batch, levelled=True), Backend("cpu")
    first, t0 = None, time.perf_counter()
    for t in range(ticks):
        eng.step(be.asarray(u), be.asarray(y))
        if first is None:
            if rel(eng.gradients()) <= 1e-10:
                first = t
    return {"import_s": min(import_s), "forward_err": forward_err, "grad_err": grad_err,
            "depth": run.depth, "first_exact_tick": first, "ticks_s": time.perf_counter() - t0}


if __name__ == "__main__":
    for net in NETS:
        print(net, {k: (f"{v:.3g}" if isinstance(v, float) else v)
                    for k, v in measure(net).items()})
