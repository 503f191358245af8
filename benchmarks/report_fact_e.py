"""Fact E report: run (or resume) sweep_speed_depth and print the steady mean
cosine over hold × depth, h*(L) overall and per layer, its fits, and the
paper's τs = L − 1 beside it.

    python benchmarks/report_fact_e.py [--out DIR] [--workers N]
"""
import argparse
import json
import os

from simulator import sweep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join("outputs", "sweep_speed_depth"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    result = sweep.run_sweep("sweep_speed_depth", args.out, workers=args.workers)
    _, sc, _, _ = sweep.load_sweep("sweep_speed_depth")
    records = sweep.sweep_records("sweep_speed_depth", args.out)
    holds = sc["sweep"]["grid"]["stream.hold"]
    for value in ("mean_cos", "cos_ls", "cos_others"):
        means = sweep.mean_over_seeds(records, ["network.depth", "stream.hold"], value)
        print(f"\n{value} (mean ± std over seeds) by depth (rows) × hold {holds}")
        for depth in sc["sweep"]["grid"]["network.depth"]:
            cells = [f"{means[(depth, h)][0]:.3f}±{means[(depth, h)][1]:.3f}" for h in holds]
            print(f"L={depth:2d} " + " ".join(cells))
    with open(os.path.join(args.out, "boundary.json")) as f:
        b = json.load(f)
    print(f"\nh*(L) (threshold {b['threshold']}): {b['h_star']}  paper τs = L−1: {b['paper_tau_s']}")
    print("fit:", b["fit"])
    print("h*(L, l) per layer l = 1..L:")
    for depth, per in b["h_star_layers"].items():
        print(f"  L={depth}: {per}  (ls = {(int(depth) + 1) // 2})")
    print(f"\n{result['points']} points, {result['failed']} failed, pictures: {result['pictures']}")


if __name__ == "__main__":
    main()
