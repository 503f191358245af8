"""Tables 1 and 2 of Salvatori et al., measured on the five builders.

Table 1: the divergence between one BP update and one Z-IL update from the
same weights, ‖Δζ_ZIL − Δζ_BP‖ / ‖Δζ_BP‖ over all parameters together (and
the paper's absolute Euclidean distance). Table 2: wall-clock time per update
of BP, Z-IL and IL, all measured in the same run, interleaved, fastest of
``repeats``.
"""
import contextlib
import time

import numpy as np

from ... import files
from .builders import ARCHITECTURES, build
from .graph import bp_update
from .inference import il, zil, zil_wave
from .levelling import distances, inserted_identities, is_levelled, level

LR = 0.01

# Table 2 graphs: large enough that numpy work, not Python bookkeeping, dominates.
BENCH_SIZES = {
    "mlp": dict(sizes=(128, 256, 256, 256, 10), batch=32),
    "cnn": dict(image=16, channels=(3, 32, 32), n_out=10, batch=16),
    "rnn": dict(steps=8, n_in=64, hidden=256, n_out=10, batch=32),
    "residual": dict(n_in=128, width=512, blocks=4, n_out=10, batch=32),
    "attention": dict(tokens=32, n_in=64, d=512, n_out=10, batch=4),
}


def divergence(updates, reference):
    """(relative, absolute) distance between two {name: Δζ} dicts, over all
    parameters at once; relative is absolute / ‖reference‖."""
    with np.errstate(over="ignore", invalid="ignore"):
        diff = sum(float(np.sum((updates[k].astype(np.float64) - reference[k]) ** 2))
                   for k in reference)
        ref = sum(float(np.sum(reference[k].astype(np.float64) ** 2)) for k in reference)
    absolute = float(np.sqrt(diff)) if np.isfinite(diff) else float("inf")
    return absolute / np.sqrt(ref), absolute


def table1(dtype="float64", levelled=True, seed=0):
    """Table 1 of Salvatori et al.: one BP update vs one Z-IL update (Algorithm
    3, full relaxation of every vertex at every tick) from identical weights,
    per architecture, on the levelled graph (Algorithm 2) or the original one.
    BP runs on the original graph. A Z-IL run that overflows (the unstable γ = 1
    relaxation of an unlevelled graph can) is reported as inf."""
    rows = []
    for name in ARCHITECTURES:
        problem = build(name, seed=seed, dtype=dtype)
        graph = level(problem.graph) if levelled else problem.graph
        reference = bp_update(problem.graph, problem.values, problem.target, LR)
        with np.errstate(over="ignore", invalid="ignore"):
            result = zil(graph, problem.values, problem.target, LR)
        rel, absolute = divergence(result.updates, reference)
        rows.append({
            "architecture": name, "dtype": dtype, "levelled": levelled,
            "was_levelled": is_levelled(problem.graph),
            "vertices": len(graph),
            "identities": inserted_identities(problem.graph, graph),
            "levels": max(distances(graph)[1]) + 1, "ticks": result.ticks,
            "divergence_rel": rel, "divergence_abs": absolute,
        })
    return rows


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _one_blas_thread():
    """Pin BLAS to one thread while timing, when threadpoolctl is installed:
    on a shared machine multi-threaded BLAS makes small matmuls erratic."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def table2(dtype="float64", T=20, repeats=10, seed=0, gamma=0.1, sizes=None):
    """Table 2 of Salvatori et al.: milliseconds per update of BP (original
    graph); Z-IL on the graph with its op vertices levelled (wavefront
    schedule, inference.zil_wave); the same on the fully levelled graph of
    Algorithm 2 (shared parameters copied down identity chains); Z-IL with
    every vertex relaxed at every tick (inference.zil); and IL (T ticks at rate
    γ). All in one run, in a fresh random order per repeat, each timed call
preceded by an untimed one; fastest of ``repeats``, with ratios to BP.
    ``sizes`` overrides BENCH_SIZES per architecture."""
    sizes = BENCH_SIZES if sizes is None else sizes
    rng = np.random.default_rng(seed)
    rows = []
    for name in ARCHITECTURES:
        p = build(name, seed=seed, dtype=dtype, **sizes.get(name, {}))
        ops_levelled, all_levelled = level(p.graph, leaves=False), level(p.graph)
        methods = {
            "bp": lambda: bp_update(p.graph, p.values, p.target, LR),
            "zil": lambda: zil_wave(ops_levelled, p.values, p.target, LR),
            "zil_alg2": lambda: zil_wave(all_levelled, p.values, p.target, LR),
            "zil_full": lambda: zil(ops_levelled, p.values, p.target, LR),
            "il": lambda: il(p.graph, p.values, p.target, LR, gamma=gamma, T=T),
        }
        # The relaxing wake behind the front may overflow; it never reaches an update.
        with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            times = {m: [] for m in methods}
            for _ in range(repeats):
                for m in rng.permutation(list(methods)):
                    # Untimed run first: timed in steady state, as in training where
                    # updates follow updates, not after another method's memory use.
                    methods[m]()
                    times[m].append(_time(methods[m]))
        # The fastest repeat: on a shared machine disturbances only ever add time.
        ms = {m: 1e3 * float(np.min(t)) for m, t in times.items()}
        row = {"architecture": name, "dtype": dtype, "T": T,
               "levels": max(distances(ops_levelled)[1]) + 1}
        row.update({f"{m}_ms": v for m, v in ms.items()})
        row.update({f"{m}_over_bp": ms[m] / ms["bp"] for m in methods if m != "bp"})
        rows.append(row)
    return rows


def _cell(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_markdown(rows):
    """A Markdown table of row dicts (columns in the order of the first row)."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    """Write row dicts as CSV (columns: the first row's keys; csv's default
    \\r\\n line ends) atomically, so a reader never sees half a table."""
    return files.write_csv(path, list(rows[0]) if rows else [], rows, newline="\r\n")

