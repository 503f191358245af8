"""Tables 1 and 2 of Salvatori et al., measured on the five builders: the
divergence of one Z-IL update from one BP update, and time per update."""
import time

import numpy as np

from ... import files, threads
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
    """(‖Δ − Δ_ref‖ / ‖Δ_ref‖, ‖Δ − Δ_ref‖) over all parameters of two {name: Δζ}."""
    with np.errstate(over="ignore", invalid="ignore"):
        diff = sum(float(np.sum((updates[k].astype(np.float64) - reference[k]) ** 2))
                   for k in reference)
        ref = sum(float(np.sum(reference[k].astype(np.float64) ** 2)) for k in reference)
    absolute = float(np.sqrt(diff)) if np.isfinite(diff) else float("inf")
    return absolute / np.sqrt(ref), absolute


def table1(dtype="float64", levelled=True, seed=0):
    """Table 1: one BP update (original graph) vs one Z-IL update (Algorithm 3)
    from identical weights per architecture, on the levelled graph (Algorithm 2)
    or the original one; a Z-IL run that overflows is reported as inf."""
    rows = []
    for name in ARCHITECTURES:
        problem = build(name, seed=seed, dtype=dtype)
        graph = level(problem.graph) if levelled else problem.graph
        reference = bp_update(problem.graph, problem.values, problem.target, LR)
        with np.errstate(over="ignore", invalid="ignore"):
            result = zil(graph, problem.values, problem.target, LR)
        rel, absolute = divergence(result.updates, reference)
        rows.append({"architecture": name, "dtype": dtype, "levelled": levelled,
                     "was_levelled": is_levelled(problem.graph), "vertices": len(graph),
                     "identities": inserted_identities(problem.graph, graph),
                     "levels": max(distances(graph)[1]) + 1, "ticks": result.ticks,
                     "divergence_rel": rel, "divergence_abs": absolute})
    return rows


def table2(dtype="float64", T=20, repeats=10, seed=0, gamma=0.1, sizes=None):
    """Table 2: milliseconds per update, with ratios to BP, of BP; Z-IL's
    wavefront (zil_wave) on the op-levelled graph and on Algorithm 2's;
    full Z-IL (every vertex relaxed every tick); IL (T ticks at rate γ). In a
    fresh random order per repeat, each timed call after an untimed one,
    fastest of ``repeats``; ``sizes`` overrides BENCH_SIZES per architecture."""
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
        # one BLAS thread: multi-threaded BLAS makes small matmuls erratic; the
        # wake behind the front may overflow, never reaching an update
        with threads.one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
            times = {m: [] for m in methods}
            for _ in range(repeats):
                for m in rng.permutation(list(methods)):
                    methods[m]()            # untimed first: timed in steady state
                    start = time.perf_counter()
                    methods[m]()
                    times[m].append(time.perf_counter() - start)
        # the fastest repeat: disturbances only ever add time
        ms = {m: 1e3 * float(np.min(t)) for m, t in times.items()}
        rows.append({"architecture": name, "dtype": dtype, "T": T,
                     "levels": max(distances(ops_levelled)[1]) + 1,
                     **{f"{m}_ms": v for m, v in ms.items()},
                     **{f"{m}_over_bp": ms[m] / ms["bp"] for m in methods if m != "bp"}})
    return rows


def format_markdown(rows):
    """A Markdown table of row dicts (columns in the order of the first row)."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                for v in (r.get(c, "") for c in cols)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    """Write row dicts as CSV atomically (columns: the first row's keys; \\r\\n)."""
    return files.write_csv(path, list(rows[0]) if rows else [], rows, newline="\r\n")

