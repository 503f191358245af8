"""One allocator setting for every benchmark of this folder.

Unless MALLOC_MMAP_THRESHOLD_ is already set, ``ensure()`` re-runs the
script with glibc told to keep freed memory for reuse: otherwise every fresh
multi-MB array page-faults, which on a VM costs more than the matmul that
fills it, and a ratio measures the allocator rather than the two code paths
(bench_engine's large baseline moved 0.46× → 0.70× with it).
"""
import os
import sys

ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def ensure():
    """Re-exec this process with ALLOCATOR set (Linux, once)."""
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and sys.platform.startswith("linux"):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ALLOCATOR})
