"""Learning report: accuracy vs hold per rule (sweep_rules, mean ± std over
seeds), diffusion vs backprop at hold ≥ 4L, and the largest stable learning
rate per rule and hold (stable = no blow-up and final test loss below the
initial one) from a learning-rate grid.

    python benchmarks/report_learning.py [--out DIR] [--workers N]
"""
import argparse
import os
import tempfile

from simulator import sweep
from simulator.render.phase import accuracy_table

LR_GRID = """description = "largest stable learning rate per rule and hold"
kind = "sweep"

[sweep]
base = "train_digits"
seeds = [0]
summary = "training"

[sweep.set]
"run.ticks" = 2000
"train.eval_every" = 500

[sweep.grid]
"train.rules" = ["diffusion", "random", "sign", "learned", "itd-y", "itd-dy", "backprop"]
"stream.hold" = [4, 16]
"train.learning_rate" = [0.005, 0.02, 0.08, 0.32]
"""


def accuracy_report(out, workers):
    """Run/resume sweep_rules and print final accuracy mean ± std per rule and hold."""
    sweep.run_sweep("sweep_rules", out, workers=workers)
    _, sc, _, _ = sweep.load_sweep("sweep_rules")
    records = [r for r in sweep.sweep_records("sweep_rules", out) if r["status"] == "ok"]
    table = accuracy_table(records)
    holds = sc["sweep"]["grid"]["stream.hold"]
    print(f"final test accuracy (mean ± std over seeds) by hold {holds}")
    for rule, by_hold in table.items():
        print(f"{rule:10s} " + " ".join(f"{by_hold[h][0]:.3f}±{by_hold[h][1]:.3f}" for h in holds))
    return table


def stable_rates(workers):
    """Largest stable learning rate per (rule, hold) on the LR_GRID."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "lr.toml")
        with open(path, "w") as f:
            f.write(LR_GRID)
        sweep.run_sweep(path, os.path.join(folder, "out"), workers=workers)
        _, sc, _, _ = sweep.load_sweep(path)
        records = sweep.sweep_records(path, os.path.join(folder, "out"))
    best = {}
    for r in records:
        p = r["params"]
        key = (p["train.rules"], p["stream.hold"])
        best.setdefault(key, None)
        if r["status"] == "ok" and r["summary"].get("stable"):
            lr = p["train.learning_rate"]
            best[key] = lr if best[key] is None else max(best[key], lr)
    print("\nlargest stable learning rate (of 0.005, 0.02, 0.08, 0.32) per rule × hold (4, 16)")
    for rule in sorted({k[0] for k in best}):
        print(f"{rule:10s} " + " ".join(f"h={h}: {best[(rule, h)]}" for h in (4, 16)))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join("outputs", "sweep_rules"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-lr", action="store_true")
    args = ap.parse_args()
    accuracy_report(args.out, args.workers)
    if not args.skip_lr:
        stable_rates(args.workers)


if __name__ == "__main__":
    main()
