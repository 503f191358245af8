"""Table 2 of Salvatori et al.: time per update of BP, Z-IL and IL, measured
in the same run (interleaved, fastest of the repeats), with the ratios to BP.

    python benchmarks/bench_pc.py [--dtype float64] [--T 20] [--repeats 20]

Columns: bp (graph backprop), zil (Z-IL, op vertices levelled, wavefront
schedule), zil_alg2 (the same on Algorithm 2's fully levelled graph, shared
weights copied down identity chains), zil_full (Z-IL relaxing every vertex at
every tick), il (T inference ticks at γ = 0.1). Prints; never asserts.

Unless MALLOC_MMAP_THRESHOLD_ is already set, the script re-runs itself with
glibc told to keep freed memory for reuse: otherwise every fresh multi-MB
array page-faults, which on a VM costs more than the matmul that fills it and
makes the ratios measure the allocator (BP then looks slower than Z-IL).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from allocator import ensure  # noqa: E402
from simulator.experiments.pc.tables import format_markdown, table2  # noqa: E402


def main():
    ensure()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--T", type=int, default=20, help="IL inference ticks")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    rows = table2(dtype=args.dtype, T=args.T, repeats=args.repeats)
    print(format_markdown(rows))
    for r in rows:
        print(f"{r['architecture']:>10}: Z-IL/BP = {r['zil_over_bp']:.2f}  "
              f"(Alg. 2 graph {r['zil_alg2_over_bp']:.2f}, full relaxation "
              f"{r['zil_full_over_bp']:.1f})   IL/BP = {r['il_over_bp']:.1f} at T = {r['T']}")


if __name__ == "__main__":
    main()
