"""Paper 001's experiments (Activation Relaxation, Millidge et al.): Fig. 1
(``run_converge``) and Figs. 2–3 (``run_train``), as arrays; ``converge_arrays``
/ ``train_arrays`` give what a run saves and ``simulator.render.convergence`` draws."""
from types import SimpleNamespace

import numpy as np
from array_api_compat import array_namespace

from ..backend import Backend, rng, to_host
from ..datasets import batch_indices, load_digits
from ..errors import NumericalError, SimulatorError
from ..model import reference
from ..model.graph import Model
from ..rules.relaxation import (VARIANTS, ActivationRelaxation, check_count, check_eta_x,
                               check_variant, model_fixed_point, model_weight_gradients,
                               param_gradients, predicted_errors, relax_sweep, send_vjp, sends)
from ..options import loss_and_grad

PAPER_SIZES = (64, 300, 300, 100, 10)
PAPER_ACTIVATIONS = ("relu", "relu", "relu", "linear")
DATA = ("digits", "gaussian")
BASELINE = "backprop"


def convergence_batch(data, sizes, batch, seed, split_seed):
    """A host batch (u, y) for Fig. 1: digits and one-hot labels, or gaussian."""
    if data == "digits":
        d = load_digits(seed=split_seed)
        if sizes[0] != d.n_features or sizes[-1] != d.n_classes:
            raise SimulatorError(f"digits need sizes from {d.n_features} to {d.n_classes}, "
                                 f"got {sizes}")
        if batch > d.train_x.shape[0]:
            raise SimulatorError(f"batch {batch} exceeds the {d.train_x.shape[0]} training digits")
        idx = batch_indices(d.train_x.shape[0], batch, seed=seed)[0]
        return d.train_x[idx], d.train_targets[idx]
    if data == "gaussian":
        g = rng((seed, 2))
        return g.normal(size=(batch, sizes[0])), g.normal(size=(batch, sizes[-1]))
    raise SimulatorError(f"unknown data {data!r}; expected {' or '.join(DATA)}")


def run_converge(sizes=PAPER_SIZES, activations=PAPER_ACTIVATIONS, variant="exact",
                 eta_x=(0.05, 0.1, 0.2, 0.5, 1.0), iterations=100, batch=64, loss="mse",
                 seed=0, data="digits", weight_scale=1.0, bias_scale=0.0, feedback_scale=1.0,
                 init="forward", split_seed=0, device="cpu", dtype="float64"):
    """Fig. 1 of Millidge et al. 2020: relax one batch for each η_x. Returns numpy arrays:
    ``errors`` (relative error to the variant's fixed point), ``predicted`` (its
    closed-form linear prediction), ``norms``, ``changes`` (the relaxation wave),
    each (E, K+1, L+1); ``weight_error`` (E, L) = ‖ΔW_AR − ΔW_BP‖/‖ΔW_BP‖ after K
    ticks; ``grad_error`` (L+1,), the fixed point against backprop's ∂ℓ/∂x^l;
    ``eta_x``, ``ticks``, ``layers``, ``variant`` and ``sizes``."""
    variant = check_variant(variant)
    etas = [check_eta_x(e) for e in np.atleast_1d(eta_x)]
    iterations = check_count("iterations", iterations)
    batch = check_count("batch", batch, minimum=1)
    model = Model.chain(sizes, activations, seed=seed, scale=weight_scale, bias_scale=bias_scale)
    if model.depth < 2:
        raise SimulatorError("relaxation needs at least one hidden layer (L >= 2)")
    u_host, y_host = convergence_batch(data, list(sizes), batch, seed, split_seed)
    learner = ActivationRelaxation(model, variant, etas[0], iterations, loss, init,
                                   feedback_seed=(seed, 1), feedback_scale=feedback_scale,
                                   device=device, dtype=dtype)
    be, xp = learner.backend, learner.xp
    u, y = be.asarray(u_host), be.asarray(y_host)
    sweep = learner.sweep(u, y)
    target = model_fixed_point(sweep, learner.feedback, learner.use_derivative, xp)
    bp_x = true_activation_gradients(model, u, y, loss)
    bp = reference.backprop(model, u, y, loss)
    keys = [k for k in model.param_keys() if k.endswith(".W")]
    L = model.depth
    out = {k: [] for k in ("errors", "predicted", "norms", "changes", "weight_error")}
    # a relative error to a fixed point of 0 is NaN by design (0/0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for eta in etas:
            xs, rec = relax_sweep(sweep, learner.feedback, eta, iterations,
                                  learner.use_derivative, init, record=True, targets=target,
                                  xp=xp)
            for key in ("errors", "norms", "changes"):
                out[key].append(getattr(rec, key))
            out["predicted"].append(predicted_errors(sweep, learner.feedback, eta, iterations,
                                                     target, learner.use_derivative, init, xp))
            gw = model_weight_gradients(sweep, xs, xp)
            out["weight_error"].append([_relative(xp, gw[k], bp[k]) for k in keys])
        grad_error = [np.nan] + [_relative(xp, target[l], bp_x[l]) for l in range(1, L + 1)]
    return dict({k: np.asarray(v, dtype=np.float64) for k, v in out.items()},
                grad_error=np.array(grad_error), eta_x=np.asarray(etas),
                ticks=np.arange(iterations + 1), layers=np.arange(L + 1), variant=variant,
                sizes=[int(n) for n in sizes])


def true_activation_gradients(model, u, y, loss="mse"):
    """∂ℓ/∂x_v per vertex index by the oracle's backprop: the loss gradient at
    the output, below it the sum over children c of c's VJP of δ_c (index 0: u)."""
    xp = array_namespace(u)
    outs, deltas, _ = reference.factors(model, u, y, loss)
    oracle = SimpleNamespace(params=reference.device_params(xp, model, u.dtype), outs=outs,
                             pres=reference.evaluate(model, u)[0])
    grads = [None] * len(model)
    grads[0], grads[-1] = u, loss_and_grad(xp, loss, outs[-1], y)[1]
    for c in model.vertices[1:]:
        if sends(c):
            send_vjp(xp, oracle, c, deltas[c.index], {}, grads)
    return grads


def converge_arrays(result):
    """What a run saves of a ``run_converge`` result (relaxation.npz), the
    variant as a 0-d string array (loadable without pickle)."""
    return dict({k: np.asarray(result[k]) for k in
                 ("errors", "predicted", "norms", "changes", "weight_error", "grad_error",
                  "eta_x", "ticks", "layers")}, variant=np.asarray(str(result["variant"])))


def _relative(xp, a, b):
    """‖a − b‖/‖b‖ as a host float (inf when b is 0 and a is not, NaN for 0/0)."""
    return float(xp.sqrt(xp.sum((a - b) ** 2)) / xp.sqrt(xp.sum(b * b)))


class BackpropBaseline:
    """Figs. 2–3's baseline: minibatch SGD on the oracle's gradients,
    p ← p − lr ∂ℓ/∂p / B, on host parameters."""

    def __init__(self, model, loss):
        self.model, self.loss, self.params = model, loss, model.parameters()
        self.backend = Backend("cpu", "float64")

    def _sums(self, u, y):
        """Each parameter's gradient summed over the batch (u, y), on the host;
        NumericalError if the loss is not finite."""
        outs, deltas, value = reference.factors(self.model, u, y, self.loss, self.params)
        if not np.isfinite(float(value)):
            raise NumericalError(0, self.model.depth, "loss")
        return {k: to_host(g) for k, g in
                param_gradients(array_namespace(u), self.model, outs, deltas).items()}

    def gradients(self, u, y):
        """The batch-mean gradient of every parameter (what an optimizer steps on)."""
        return {k: g / u.shape[0] for k, g in self._sums(u, y).items()}

    def step(self, u, y, lr):
        """One SGD step on the batch (u, y); NumericalError if its loss is not finite."""
        scale = float(lr) / u.shape[0]
        for k, g in self._sums(u, y).items():
            self.params[k] -= scale * g

    def predict(self, u):
        return reference.evaluate(self.model, u, self.params)[1][-1]


def _train_one(model, data, seed, lr, batch, epochs, eval_every):
    """Train ``model`` on the seeded batches: ((train, test) accuracy per eval
    point, the step at which it diverged or -1)."""
    xp, asarray = model.backend.xp, model.backend.asarray
    sets = [(asarray(data.train_x), asarray(data.train_labels, xp.int64)),
            (asarray(data.test_x), asarray(data.test_labels, xp.int64))]
    train_x, train_y = sets[0][0], asarray(data.train_targets)
    accs, step = [], 0

    def evaluate():         # the fraction of rows whose largest output is the label
        accs.append(tuple(float(xp.mean(xp.astype(xp.argmax(model.predict(x), axis=1) == labels,
                                                  xp.float64))) for x, labels in sets))

    evaluate()
    with np.errstate(all="ignore"):
        for epoch in range(epochs):
            for idx in batch_indices(data.train_x.shape[0], batch, seed=(seed, epoch)):
                i = asarray(idx, xp.int64)
                try:
                    model.step(xp.take(train_x, i, axis=0), xp.take(train_y, i, axis=0), lr)
                except NumericalError:
                    return np.asarray(accs, dtype=np.float64), step
                step += 1
                if step % eval_every == 0:
                    evaluate()
    return np.asarray(accs, dtype=np.float64), -1


def run_train(sizes=PAPER_SIZES, activations=PAPER_ACTIVATIONS, variants=VARIANTS,
              eta_x=0.1, iterations=100, lr=0.1, batch=64, epochs=20, seeds=(0, 1, 2),
              loss="mse", weight_scale=1.0, bias_scale=0.0, feedback_scale=1.0,
              init="forward", split_seed=0, test_fraction=0.25, eval_every=None,
              device="cpu", dtype="float64", progress=None, solver="closed-form"):
    """Figs. 2–3 of Millidge et al. 2020 on the digits: per seed, each AR variant and
    backprop train from the same weights on the same minibatches (SGD, lr on the
    batch-mean gradient, K relaxation ticks per batch; ``solver`` as
    ActivationRelaxation's). Returns ``steps`` (T,) updates at each evaluation;
    ``curves[name]`` {train, test} accuracies (S, T), NaN after a divergence;
    ``final_test[name]`` (S,); ``diverged_at[name]`` (S,) step or −1.
    ``progress(1)`` after each (seed, model) run."""
    variants = [check_variant(v) for v in ([variants] if isinstance(variants, str) else variants)]
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    batch = check_count("batch", batch, minimum=1)
    epochs = check_count("epochs", epochs, minimum=1)
    if not float(lr) > 0:
        raise SimulatorError(f"lr must be > 0, got {lr}")
    data = load_digits(seed=split_seed, test_fraction=test_fraction)
    per_epoch = data.train_x.shape[0] // batch
    if per_epoch < 1:
        raise SimulatorError(f"batch {batch} exceeds the {data.train_x.shape[0]} training digits")
    eval_every = per_epoch if eval_every is None else check_count("eval_every", eval_every, 1)
    steps = np.arange(0, per_epoch * epochs + 1, eval_every)
    names = [BASELINE] + variants
    curves = {n: {part: np.full((len(seeds), steps.size), np.nan) for part in ("train", "test")}
              for n in names}
    diverged_at = {n: np.full(len(seeds), -1) for n in names}
    for s, seed in enumerate(seeds):
        network = Model.chain(sizes, activations, seed=seed, scale=weight_scale,
                              bias_scale=bias_scale)
        for name in names:
            model = BackpropBaseline(network, loss) if name == BASELINE else \
                ActivationRelaxation(network, name, eta_x, iterations, loss, init,
                                     feedback_seed=(seed, 1), feedback_scale=feedback_scale,
                                     device=device, dtype=dtype, solver=solver)
            accs, div = _train_one(model, data, seed, lr, batch, epochs, eval_every)
            for k, part in enumerate(("train", "test")):
                curves[name][part][s, :accs.shape[0]] = accs[:, k]
            diverged_at[name][s] = div
            if progress is not None:
                progress(1)
    return {"steps": steps, "curves": curves, "diverged_at": diverged_at,
            "final_test": {n: curves[n]["test"][:, -1] for n in names},
            "steps_per_epoch": per_epoch, "seeds": np.asarray(seeds), "variants": variants}


def train_arrays(result):
    """What a run saves of a ``run_train`` result (training.npz): ``steps`` and
    per model (backprop first) ``test_<name>``, ``train_<name>`` (seeds × evals)."""
    return {"steps": np.asarray(result["steps"]),
            **{f"{part}_{name}": np.asarray(curve[part])
               for name, curve in result["curves"].items() for part in ("test", "train")}}
